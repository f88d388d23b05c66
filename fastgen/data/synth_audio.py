"""The embedded audio dataset "notes": short synthesized notes of four instruments.

Nothing is downloaded: every clip is computed from a seed (numpy's PCG64), the same on every
machine. Each clip is one note of a C-major scale pitch (MIDI 48..76, C3..E5), starting up to
50 ms in, scaled to a peak of 0.3..0.9, over a -50 dBFS white-noise floor:

- ``organ``: 12 steady harmonics (strongest fundamental), 20-60 ms attack, full sustain;
- ``pluck``: 16 bright harmonics (1/k) with a 2 ms attack and exponential decay (70-200 ms for
  the fundamental); harmonic k decays ``1 + (k - 1) * (0.5..1.0)`` times faster, so the tone
  darkens as it fades;
- ``bowed``: 16 sawtooth harmonics with 5-6 Hz vibrato of 15-60 cents and a 150-300 ms swell;
- ``bell``: Risset's inharmonic bell partials (0.56, 0.92, 1.19, 1.70, 2.00, 2.74, 3.00, 3.76,
  4.07 x the note's frequency), struck, upper partials decaying faster (fundamental 0.4-0.9 s).

Partials at or above the Nyquist frequency are dropped (no aliasing).
"""

from __future__ import annotations

import math

import numpy as np

from fastgen.data.errors import DataError
from fastgen.data.wav import check_rate

CLASS_NAMES = ("organ", "pluck", "bowed", "bell")
#: MIDI note numbers of the C-major scale from C3 (48) to E5 (76).
MIDI_NOTES = tuple(m for m in range(48, 77) if m % 12 in (0, 2, 4, 5, 7, 9, 11))
#: Lowest sample rate: keeps every fundamental (E5 is 659 Hz, plus vibrato) below Nyquist.
MIN_SAMPLE_RATE = 2000
NOISE_DBFS = -50.0
#: Risset's bell (Computer Sound Catalog, 1969): partial ratios, amplitudes, relative durations.
BELL_RATIOS = np.array([0.56, 0.92, 1.19, 1.70, 2.00, 2.74, 3.00, 3.76, 4.07])
BELL_AMPS = np.array([1.0, 0.67, 1.0, 1.8, 2.67, 1.67, 1.46, 1.33, 1.33])
BELL_DURATIONS = np.array([1.0, 0.9, 0.65, 0.55, 0.325, 0.35, 0.25, 0.2, 0.15])
_MAX_PARTIALS = 16


def _harmonics(phase: np.ndarray, amps: np.ndarray, step_gain: np.ndarray | None = None) -> np.ndarray:
    """``sum_k amps[:, k-1] * g**(k-1) * sin(k * phase)`` for k = 1..K, shape (m, T).

    The powers of ``exp(i * phase)`` come from repeated complex products, far cheaper than K sines;
    ``step_gain`` (m, T), when given, is an extra factor per harmonic step (faster decay).
    """
    z = np.exp(1j * phase)
    step = z if step_gain is None else z * step_gain
    p = z.copy()
    out = amps[:, :1] * p.imag
    for k in range(1, amps.shape[1]):
        p *= step
        out += amps[:, k : k + 1] * p.imag
    return out


def _audible(freqs: np.ndarray, nyquist: float) -> np.ndarray:
    """1.0 where a partial's (highest) frequency is below Nyquist, else 0.0."""
    return (freqs < nyquist).astype(np.float64)


def _organ(f0, tau, u, jitter, nyquist):
    k = np.arange(1, 13)
    amps = jitter[:, :12] / k**0.8
    amps[:, 0] = 1.0  # the fundamental is the strongest partial: the pitch is the FFT peak
    amps *= _audible(f0[:, None] * k, nyquist)
    attack = 0.02 + 0.04 * u[:, :1]
    return -np.expm1(-tau / attack) * _harmonics(2 * np.pi * f0[:, None] * tau, amps)


def _pluck(f0, tau, u, jitter, nyquist):
    k = np.arange(1, _MAX_PARTIALS + 1)
    amps = (0.7 + 0.3 * jitter) / k * _audible(f0[:, None] * k, nyquist)
    decay = 0.07 + 0.13 * u[:, :1]  # of the fundamental, seconds
    faster = (0.5 + 0.5 * u[:, 1:2]) / decay  # extra decay rate per harmonic step, 1/s
    tone = _harmonics(2 * np.pi * f0[:, None] * tau, amps, step_gain=np.exp(-faster * tau))
    return -np.expm1(-tau / 0.002) * np.exp(-tau / decay) * tone


def _bowed(f0, tau, u, jitter, nyquist):
    k = np.arange(1, _MAX_PARTIALS + 1)
    rate = 5.0 + u[:, :1]  # vibrato, Hz
    depth = 2.0 ** ((15.0 + 45.0 * u[:, 1:2]) / 1200.0) - 1.0  # relative frequency swing
    amps = (0.8 + 0.2 * jitter) * (-1.0) ** (k + 1) / k  # sawtooth series
    amps *= _audible(f0[:, None] * k * (1.0 + depth), nyquist)
    # Phase of f0 * (1 + depth * sin(2 pi rate tau)), integrated in closed form.
    w = 2 * np.pi * rate
    phase = 2 * np.pi * f0[:, None] * (tau + depth * (1.0 - np.cos(w * tau)) / w)
    swell = 0.15 + 0.15 * u[:, 2:3]
    env = np.sin(0.5 * np.pi * np.minimum(tau / swell, 1.0)) ** 2
    return env * _harmonics(phase, amps)


def _bell(f0, tau, u, jitter, nyquist):
    ring = 0.4 + 0.5 * u[:, :1]  # decay of the lowest partial, seconds
    out = np.zeros_like(tau)
    for j, (ratio, amp, dur) in enumerate(zip(BELL_RATIOS, BELL_AMPS, BELL_DURATIONS)):
        f = f0[:, None] * ratio * (1.0 + 0.01 * (jitter[:, j : j + 1] - 0.5))  # +-0.5% detune
        out += amp * _audible(f, nyquist) * np.exp(-tau / (ring * dur)) * np.sin(2 * np.pi * f * tau)
    return -np.expm1(-tau / 0.001) * out


_RENDER = (_organ, _pluck, _bowed, _bell)


def synthesize_notes(
    n: int = 240, *, sample_rate: int = 16000, seconds: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Synthesize ``n`` labelled notes (see the module docstring for the instruments).

    Parameters
    ----------
    n : int
        Number of clips (>= 1). Label ``i % 4`` for clip i before a seeded shuffle, so the four
        classes differ in size by at most one.
    sample_rate : int
        Hz, at least 2000.
    seconds : float
        Clip length; each clip has ``round(seconds * sample_rate)`` (>= 1) samples.
    seed : int
        Seed of every random draw (pitch, gain, onset, timbre, noise, label order).

    Returns
    -------
    audio : np.ndarray
        float32 (n, T) in [-1, 1].
    labels : np.ndarray
        int64 (n,) in 0..3.
    class_names : tuple of str
        ``("organ", "pluck", "bowed", "bell")``.

    Raises
    ------
    DataError
        A bad argument (named).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"n must be a positive integer (number of notes), got {n!r}")
    sample_rate = check_rate(sample_rate, "sample_rate")
    if sample_rate < MIN_SAMPLE_RATE:
        raise DataError(f"sample_rate must be at least {MIN_SAMPLE_RATE} Hz for 'notes', got {sample_rate}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.floating, np.integer)):
        raise DataError(f"seconds must be a positive number, got {seconds!r}")
    if not math.isfinite(seconds) or round(seconds * sample_rate) < 1:
        raise DataError(
            f"seconds must be finite and give at least 1 sample at {sample_rate} Hz, got {seconds!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    n, length = int(n), round(seconds * sample_rate)

    # Every draw is made for all n notes in a fixed order, so a clip depends only on (seed, i).
    rng = np.random.default_rng(int(seed))
    labels = (np.arange(n, dtype=np.int64) % len(CLASS_NAMES))[rng.permutation(n)]
    midi = rng.choice(np.array(MIDI_NOTES), size=n)
    gain = rng.uniform(0.3, 0.9, size=n)
    onset = rng.uniform(0.0, min(0.05, 0.1 * seconds), size=n)
    u = rng.uniform(size=(n, 4))  # per-instrument timbre parameters
    jitter = rng.uniform(size=(n, _MAX_PARTIALS))  # per-partial amplitude / detune
    noise = rng.standard_normal((n, length), dtype=np.float32)

    f0 = 440.0 * 2.0 ** ((midi - 69) / 12.0)
    t = np.arange(length) / sample_rate
    tau = np.maximum(t - onset[:, None], 0.0)  # time since the onset; every envelope is 0 at 0
    tone = np.zeros((n, length))
    for c, render in enumerate(_RENDER):
        idx = np.flatnonzero(labels == c)
        if len(idx):
            tone[idx] = render(f0[idx], tau[idx], u[idx], jitter[idx], sample_rate / 2.0)
    peak = np.abs(tone).max(axis=1, keepdims=True)
    tone *= gain[:, None] / np.maximum(peak, 1e-12)
    audio = tone.astype(np.float32) + noise * np.float32(10.0 ** (NOISE_DBFS / 20.0))
    return np.clip(audio, -1.0, 1.0), labels, CLASS_NAMES
