"""fastgen.data audio: mu-law companding, the WAV reader/writer (hand-built files of every
supported encoding and every corruption), resampling, the synthesized "notes" (structure of each
instrument), load_audio on "notes" and on folders written here, AudioData validation."""

import dataclasses
import math
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from fastgen.data import (
    AUDIO_DATASETS,
    AudioData,
    DataError,
    load_audio,
    mu_law_decode,
    mu_law_encode,
    read_wav,
    write_wav,
)
from fastgen.data.split import split_indices
from fastgen.data.synth_audio import CLASS_NAMES, MIDI_NOTES, synthesize_notes
from fastgen.data.wav import resample

RNG = np.random.default_rng(4321)
SR = 16000


def _match(path) -> str:
    return re.escape(str(path))


# ----------------------------------------------------------------------------------- mu-law


@pytest.mark.parametrize("levels", [2, 3, 17, 256, 65536])
def test_mu_law_every_code_round_trips(levels):
    codes = torch.arange(levels)
    x = mu_law_decode(codes, levels)
    assert x.dtype == torch.float32 and x.shape == (levels,)
    assert x[0] == -1.0 and x[-1] == 1.0
    assert (x[1:] > x[:-1]).all()  # strictly increasing
    back = mu_law_encode(x, levels)
    assert back.dtype == torch.int64
    assert torch.equal(back, codes)


def test_mu_law_decode_accepts_uint8_and_int32():
    codes = torch.arange(256)
    ref = mu_law_decode(codes)
    assert torch.equal(mu_law_decode(codes.to(torch.uint8)), ref)
    assert torch.equal(mu_law_decode(codes.to(torch.int32).reshape(16, 16)), ref.reshape(16, 16))


def test_mu_law_decode_encode_error_within_half_a_bin():
    mu = 255
    x = torch.linspace(-1, 1, 20001, dtype=torch.float64)
    err = (mu_law_decode(mu_law_encode(x)).double() - x).abs()
    # Half a code step in x: |dx/dy| * (1/mu) with dx/dy = log1p(mu) (1 + mu|x|) / mu.
    half_bin = math.log1p(mu) * (1 + mu * x.abs()) / mu / mu
    assert (err <= 1.1 * half_bin + 1e-6).all()
    assert err.max() < 0.025 and err[x.abs() < 1e-3].max() < 1e-4  # fine near 0, coarse near +-1


def test_mu_law_encode_monotonic_and_clipped():
    x = torch.sort(torch.from_numpy(RNG.uniform(-1.5, 1.5, 5000)).float()).values
    c = mu_law_encode(x)
    assert (c[1:] >= c[:-1]).all() and c.min() == 0 and c.max() == 255
    special = torch.tensor([-5.0, 5.0, -math.inf, math.inf, 0.0, -0.0])
    assert mu_law_encode(special).tolist()[:4] == [0, 255, 0, 255]
    assert mu_law_encode(special)[4] in (127, 128)
    # Symmetric: code(-x) == mu - code(x).
    assert torch.equal(mu_law_encode(-x), 255 - mu_law_encode(x))


def test_mu_law_dtypes_agree():
    x = torch.from_numpy(RNG.uniform(-1, 1, 1000))
    ref = mu_law_encode(x)
    assert torch.equal(mu_law_encode(x.float()), ref)
    assert (mu_law_encode(x.half()) - ref).abs().max() <= 1  # only the input rounding differs
    assert torch.equal(mu_law_encode(x.numpy()), ref)


@pytest.mark.parametrize("levels", [1, 0, 65537, 2.0, True, "256"])
def test_mu_law_bad_levels(levels):
    with pytest.raises(ValueError, match="levels"):
        mu_law_encode(torch.zeros(3), levels)
    with pytest.raises(ValueError, match="levels"):
        mu_law_decode(torch.zeros(3, dtype=torch.int64), levels)


@pytest.mark.parametrize("codes", [torch.tensor([0, 256]), torch.tensor([-1, 3]), torch.tensor([0.0, 1.0])])
def test_mu_law_decode_bad_codes(codes):
    with pytest.raises(ValueError, match="codes"):
        mu_law_decode(codes)


def test_mu_law_decode_range_depends_on_levels():
    assert mu_law_decode(torch.tensor([16]), 17).item() == 1.0
    with pytest.raises(DataError, match=r"codes must be in \[0, 16\]"):
        mu_law_decode(torch.tensor([17]), 17)


def test_mu_law_encode_bad_x():
    with pytest.raises(DataError, match="NaN"):
        mu_law_encode(torch.tensor([0.0, math.nan]))
    with pytest.raises(DataError, match="floating point"):
        mu_law_encode(torch.tensor([0, 1]))


# ---------------------------------------------------------------------------- WAV: round trip


def test_write_read_round_trip(tmp_path):
    x = RNG.uniform(-0.999, 0.999, 12345)
    path = tmp_path / "a.wav"
    write_wav(path, x, 22050)
    y, rate = read_wav(path)
    assert rate == 22050 and y.dtype == np.float32 and y.shape == x.shape
    assert np.abs(y - x).max() <= 0.5 / 32768 + 1e-7
    assert os.listdir(tmp_path) == ["a.wav"]  # no temporary file left behind
    assert path.stat().st_size == 44 + 2 * len(x)


def test_write_clips_and_accepts_torch(tmp_path):
    path = tmp_path / "t.wav"
    write_wav(str(path), torch.tensor([2.0, -2.0, 1.0, -1.0, 0.5]), 8000)
    y, rate = read_wav(str(path))
    assert rate == 8000
    np.testing.assert_array_equal(y, np.float32([32767 / 32768, -1.0, 32767 / 32768, -1.0, 0.5]))


def test_write_replaces_atomically_and_failure_keeps_old_file(tmp_path):
    path = tmp_path / "x.wav"
    write_wav(path, np.zeros(10), 8000)
    write_wav(path, np.full(20, 0.25), 16000)
    y, rate = read_wav(path)
    assert rate == 16000 and len(y) == 20 and np.all(y == 0.25)
    with pytest.raises(DataError, match="NaN"):
        write_wav(path, np.array([0.0, math.nan]), 8000)
    assert len(read_wav(path)[0]) == 20 and os.listdir(tmp_path) == ["x.wav"]


@pytest.mark.parametrize(
    "samples, rate, match",
    [
        (np.zeros((2, 5)), 8000, "samples must be 1-D"),
        (np.array([0.0, np.inf]), 8000, "samples contains NaN or inf"),
        (np.array([0, 1], dtype=np.int16), 8000, "samples must be floating point"),
        (np.zeros(5), 0, "sample_rate"),
        (np.zeros(5), -8000, "sample_rate"),
        (np.zeros(5), 8000.0, "sample_rate"),
        (np.zeros(5), True, "sample_rate"),
        (np.zeros(5), 2**31, "sample_rate"),
    ],
)
def test_write_bad_arguments(tmp_path, samples, rate, match):
    with pytest.raises(DataError, match=match):
        write_wav(tmp_path / "bad.wav", samples, rate)
    assert os.listdir(tmp_path) == []


def test_write_into_missing_folder(tmp_path):
    path = tmp_path / "nope" / "a.wav"
    with pytest.raises(DataError, match=_match(path)):
        write_wav(path, np.zeros(4), 8000)


# ---------------------------------------------------------------------- WAV: hand-built files

GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")


def _chunk(cid: bytes, payload: bytes) -> bytes:
    return cid + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) % 2 else b"")


def _fmt(tag, channels, rate, bits, sub=None, cb=None) -> bytes:
    block = channels * bits // 8
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    if sub is not None:  # WAVE_FORMAT_EXTENSIBLE: cbSize, valid bits, channel mask, subformat GUID
        body += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", sub) + GUID_TAIL
    elif cb is not None:
        body += struct.pack("<H", cb)
    return _chunk(b"fmt ", body)


def _riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _wav(tmp_path, name, data: bytes, tag=1, channels=1, rate=8000, bits=16, **fmt) -> os.PathLike:
    path = tmp_path / name
    path.write_bytes(_riff(_fmt(tag, channels, rate, bits, **fmt), _chunk(b"data", data)))
    return path


def _int24(values) -> bytes:
    return b"".join(int(v).to_bytes(3, "little", signed=True) for v in values)


def test_read_8bit_unsigned(tmp_path):
    y, rate = read_wav(_wav(tmp_path, "a.wav", bytes([0, 128, 255, 64]), bits=8, rate=11025))
    assert rate == 11025
    np.testing.assert_array_equal(y, np.float32([-1.0, 0.0, 127 / 128, -0.5]))


def test_read_24bit(tmp_path):
    y, _ = read_wav(_wav(tmp_path, "a.wav", _int24([-(2**23), 0, 2**23 - 1, 2**22, -1]), bits=24))
    np.testing.assert_allclose(y, [-1.0, 0.0, (2**23 - 1) / 2**23, 0.5, -(2**-23)], rtol=0, atol=1e-7)


def test_read_32bit_int(tmp_path):
    y, _ = read_wav(_wav(tmp_path, "a.wav", np.array([-(2**31), 2**30, 0], "<i4").tobytes(), bits=32))
    np.testing.assert_array_equal(y, np.float32([-1.0, 0.5, 0.0]))


@pytest.mark.parametrize("bits, dtype", [(32, "<f4"), (64, "<f8")])
def test_read_float_clipped(tmp_path, bits, dtype):
    data = np.array([0.25, -0.5, 1.5, -3.0], dtype).tobytes()
    y, rate = read_wav(_wav(tmp_path, "f.wav", data, tag=3, bits=bits, rate=48000, cb=0))
    assert rate == 48000 and y.dtype == np.float32
    np.testing.assert_array_equal(y, np.float32([0.25, -0.5, 1.0, -1.0]))


def test_read_stereo_averaged(tmp_path):
    frames = np.array([[16384, 0], [-16384, 16384], [32767, 32767]], "<i2")  # (frames, channels)
    y, _ = read_wav(_wav(tmp_path, "s.wav", frames.tobytes(), channels=2))
    np.testing.assert_allclose(y, [0.25, 0.0, 32767 / 32768], atol=1e-7)


@pytest.mark.parametrize(
    "sub, bits, data, expected",
    [
        (1, 24, _int24([2**22, -(2**22)]), [0.5, -0.5]),
        (3, 32, np.array([0.125, -0.75], "<f4").tobytes(), [0.125, -0.75]),
        (1, 16, np.array([8192, -32768], "<i2").tobytes(), [0.25, -1.0]),
    ],
)
def test_read_extensible(tmp_path, sub, bits, data, expected):
    y, _ = read_wav(_wav(tmp_path, "e.wav", data, tag=0xFFFE, bits=bits, sub=sub))
    np.testing.assert_allclose(y, expected, atol=1e-7)


def test_read_skips_odd_sized_chunks_and_pad_bytes(tmp_path):
    path = tmp_path / "odd.wav"
    pcm8 = bytes([128, 192, 64])  # odd-sized data chunk: a pad byte follows it
    path.write_bytes(
        _riff(
            _chunk(b"LIST", b"abc"),  # 3 bytes + pad
            _fmt(1, 1, 8000, 8),
            _chunk(b"fact", b"\x01\x02\x03\x04\x05"),  # 5 bytes + pad
            _chunk(b"data", pcm8),
            _chunk(b"junk", b"z"),
        )
    )
    y, _ = read_wav(path)
    np.testing.assert_array_equal(y, np.float32([0.0, 0.5, -0.5]))


def test_read_data_before_fmt(tmp_path):
    path = tmp_path / "late_fmt.wav"
    path.write_bytes(_riff(_chunk(b"data", np.array([16384], "<i2").tobytes()), _fmt(1, 1, 8000, 16)))
    assert read_wav(path)[0].tolist() == [0.5]


def _good_bytes() -> bytes:
    return _riff(_fmt(1, 1, 8000, 16), _chunk(b"data", np.arange(100, dtype="<i2").tobytes()))


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "not a WAV file"),
        (b"hello, this is text and not audio", "not a WAV file"),
        (b"RIFF\x04\x00\x00\x00AVI LIST", "not a WAV file"),
        (b"RIFX" + _good_bytes()[4:], "big-endian"),
        (_good_bytes()[:60], "truncated"),  # cut inside the data chunk
        (_good_bytes()[:30], "truncated"),  # cut inside the fmt chunk
        (_good_bytes()[:40], "no 'data' chunk"),  # cut inside the data chunk header
        (_riff(_chunk(b"data", b"\0\0")), "no 'fmt ' chunk"),
        (_riff(_fmt(1, 1, 8000, 16)), "no 'data' chunk"),
        (_riff(_chunk(b"fmt ", b"\x01\x00\x01\x00"), _chunk(b"data", b"\0\0")), "'fmt ' chunk has 4 bytes"),
        (_riff(_fmt(2, 1, 8000, 4), _chunk(b"data", b"\0\0")), "format tag 0x0002 \\(MS ADPCM\\)"),
        (_riff(_fmt(1, 1, 8000, 12), _chunk(b"data", b"\0\0")), "12-bit PCM"),
        (_riff(_fmt(3, 1, 8000, 16), _chunk(b"data", b"\0\0")), "16-bit float"),
        (_riff(_fmt(1, 0, 8000, 16), _chunk(b"data", b"\0\0")), "0 channels"),
        (_riff(_fmt(1, 1, 0, 16), _chunk(b"data", b"\0\0")), "at 0 Hz"),
        (_riff(_fmt(0xFFFE, 1, 8000, 16, sub=7), _chunk(b"data", b"\0\0")), "EXTENSIBLE subformat"),
        (_riff(_fmt(0xFFFE, 1, 8000, 16, cb=0), _chunk(b"data", b"\0\0")), "EXTENSIBLE 'fmt ' chunk"),
        (_riff(_fmt(3, 1, 8000, 32), _chunk(b"data", np.float32([0, np.nan]).tobytes())), "NaN or inf"),
    ],
)
def test_read_bad_files(tmp_path, content, match):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(DataError, match=_match(path)) as info:
        read_wav(path)
    assert re.search(match, str(info.value)), str(info.value)


def test_read_bad_block_align(tmp_path):
    fmt = _chunk(b"fmt ", struct.pack("<HHIIHH", 1, 2, 8000, 32000, 3, 16))
    path = tmp_path / "align.wav"
    path.write_bytes(_riff(fmt, _chunk(b"data", b"\0" * 8)))
    with pytest.raises(DataError, match="block align 3"):
        read_wav(path)


def test_read_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match=_match(tmp_path / "missing.wav") + ".*no such"):
        read_wav(tmp_path / "missing.wav")
    with pytest.raises(DataError, match=_match(tmp_path)):
        read_wav(tmp_path)


# -------------------------------------------------------------------------------- resampling


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), 8 * len(x)))
    return float(np.fft.rfftfreq(8 * len(x), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("from_rate, to_rate", [(44100, 16000), (8000, 16000), (22050, 16000)])
def test_resample_length_and_frequency(from_rate, to_rate):
    n = from_rate // 2
    x = (0.5 * np.sin(2 * np.pi * 440.0 * np.arange(n) / from_rate)).astype(np.float32)
    y = resample(x, from_rate, to_rate)
    assert y.dtype == np.float32 and len(y) == math.ceil(n * to_rate / from_rate)
    assert abs(_peak_hz(y, to_rate) - 440.0) < 1.0
    assert abs(np.abs(y[100:-100]).max() - 0.5) < 0.02  # amplitude kept


def test_resample_equal_rates_and_errors():
    x = np.zeros(10, np.float32)
    assert resample(x, 16000, 16000) is x
    for bad in (0, -1, 1.5, True):
        with pytest.raises(DataError, match="to_rate"):
            resample(x, 16000, bad)
        with pytest.raises(DataError, match="from_rate"):
            resample(x, bad, 16000)
    with pytest.raises(DataError, match="samples"):
        resample(np.zeros(10, np.int16), 8000, 16000)


# -------------------------------------------------------------------------- synthesized notes


@pytest.fixture(scope="module")
def notes():
    return synthesize_notes()


def test_notes_shape_range_balance(notes):
    audio, labels, names = notes
    assert audio.shape == (240, 8000) and audio.dtype == np.float32
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert labels.dtype == np.int64 and names == CLASS_NAMES == ("organ", "pluck", "bowed", "bell")
    assert np.bincount(labels).tolist() == [60, 60, 60, 60]
    assert not np.array_equal(labels, np.arange(240) % 4)  # shuffled
    peaks = np.abs(audio).max(axis=1)
    assert peaks.min() > 0.28 and peaks.max() < 0.92  # gain 0.3..0.9 (+ the noise floor)
    # The noise floor: the first samples (before most onsets) are quiet but never silent.
    head = np.abs(audio[:, :8]).max(axis=1)
    assert (head > 0).all() and np.median(head) < 0.02


def test_notes_deterministic(notes):
    a, la, _ = synthesize_notes()
    np.testing.assert_array_equal(a, notes[0])
    np.testing.assert_array_equal(la, notes[1])
    b, lb, _ = synthesize_notes(seed=1)
    assert not np.array_equal(lb, la) and np.abs(b - a).max() > 0.1


def test_notes_other_sizes():
    audio, labels, _ = synthesize_notes(10, sample_rate=8000, seconds=0.25, seed=3)
    assert audio.shape == (10, 2000) and np.bincount(labels).tolist() == [3, 3, 2, 2]
    audio, _, _ = synthesize_notes(8, sample_rate=2000, seconds=0.1)
    assert audio.shape == (8, 200) and np.isfinite(audio).all() and np.abs(audio).max() > 0.25


def _frame_rms(x: np.ndarray, width: int = 320) -> np.ndarray:
    n = x.shape[-1] // width * width
    return np.sqrt((x[..., :n].reshape(*x.shape[:-1], -1, width) ** 2).mean(-1))


def test_notes_envelopes_differ(notes):
    audio, labels, _ = notes
    rms = _frame_rms(audio)  # (240, 25) frames of 20 ms
    sustain = rms[:, -5:].mean(1) / rms.max(1)  # last 100 ms relative to the loudest frame
    by = {name: sustain[labels == k] for k, name in enumerate(CLASS_NAMES)}
    assert by["pluck"].max() < 0.2  # decays
    assert by["organ"].min() > 0.8 and by["bowed"].min() > 0.8  # sustains
    assert by["pluck"].max() < np.median(by["bell"]) < 0.5  # rings longer than a pluck, still decays
    # Bowed swells slowly: its first 100 ms are quieter than the organ's.
    rise = rms[:, 2:5].mean(1) / rms.max(1)
    assert np.median(rise[labels == 2]) < np.median(rise[labels == 0]) - 0.1


def _power_at(seg: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    t = np.arange(len(seg)) / SR
    return np.abs(np.exp(-2j * np.pi * np.outer(freqs, t)) @ (seg * np.hanning(len(seg)))) ** 2


def test_notes_pitch_on_scale_and_pluck_darkens(notes):
    audio, labels, _ = notes
    for k in (0, 1):  # organ and pluck: the fundamental is the strongest partial
        for x in audio[labels == k]:
            f0 = _peak_hz(x, SR)
            midi = 69 + 12 * math.log2(f0 / 440.0)
            assert abs(midi - round(midi)) < 0.1 and round(midi) in MIDI_NOTES, (CLASS_NAMES[k], f0)
            harmonics = f0 * np.arange(1, 9)
            harmonics = harmonics[harmonics < SR / 2]

            def brightness(seg):
                p = _power_at(seg, harmonics)
                return p[1:].sum() / p[0]

            # Harmonics 2..8 relative to the fundamental, 60-110 ms vs 250-300 ms.
            change = brightness(x[4000:4800]) / brightness(x[960:1760])
            if k == 0:
                assert 0.9 < change < 1.1  # organ: steady timbre
            else:
                assert change < 0.5  # pluck: the harmonics die before the fundamental


def test_notes_bowed_vibrato(notes):
    audio, labels, _ = notes

    def spread_cents(x):
        pitches = [_peak_hz(x[s : s + 1600], SR) for s in range(1600, 6401, 400)]
        return 1200 * math.log2(max(pitches) / min(pitches))

    assert all(spread_cents(x) > 15 for x in audio[labels == 2][:20])
    assert all(spread_cents(x) < 5 for x in audio[labels == 0][:20])


def test_notes_bell_is_inharmonic(notes):
    audio, labels, _ = notes
    x = audio[labels == 3][0]
    spectrum = np.abs(np.fft.rfft(x[:4000] * np.hanning(4000)))
    freqs = np.fft.rfftfreq(4000, 1 / SR)
    mid = spectrum[1:-1]
    peaks = np.flatnonzero((mid > spectrum[:-2]) & (mid > spectrum[2:]) & (mid > 0.1 * spectrum.max())) + 1
    ratios = freqs[peaks] / freqs[peaks[0]]
    assert len(peaks) >= 4
    # Not a harmonic series: some partial is far from every integer multiple of the lowest one.
    assert np.abs(ratios - np.round(ratios)).max() > 0.2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=0), "n must"),
        (dict(n=2.5), "n must"),
        (dict(sample_rate=1000), "sample_rate must be at least 2000"),
        (dict(sample_rate=0), "sample_rate"),
        (dict(seconds=0.0), "seconds"),
        (dict(seconds=math.nan), "seconds"),
        (dict(seconds="1"), "seconds"),
        (dict(seed=-1), "seed"),
    ],
)
def test_notes_bad_arguments(kwargs, match):
    with pytest.raises(DataError, match=match):
        synthesize_notes(**kwargs)


# ------------------------------------------------------------------------ load_audio("notes")


@pytest.fixture(scope="module")
def notes_data():
    return load_audio("notes")


def test_load_notes(notes_data, notes):
    data = notes_data
    assert AUDIO_DATASETS == ("notes",) and isinstance(data, AudioData)
    assert data.train.shape == (192, 1, 8000) and data.test.shape == (48, 1, 8000)
    assert data.train.dtype == torch.uint8 and data.levels == 256 and data.sample_rate == 16000
    assert data.shape == (1, 8000) and data.dims == 8000 and data.seconds == 0.5
    assert data.num_classes == 4 and data.class_names == CLASS_NAMES
    assert torch.bincount(data.test_labels).tolist() == [12, 12, 12, 12]  # stratified
    assert repr(data) == (
        "AudioData(name='notes', train=192x1x8000, test=48x1x8000, levels=256, sample_rate=16000, classes=4)"
    )
    # The codes are the mu-law of the synthesized clips, in split order.
    audio, labels, _ = notes
    train_idx, test_idx = split_indices(240, labels, 0.2, 0)
    assert torch.equal(data.test_labels, torch.from_numpy(labels[test_idx]))
    assert torch.equal(data.train[:, 0].long(), mu_law_encode(torch.from_numpy(audio[train_idx])))


def test_load_notes_deterministic_and_seeded(notes_data):
    again = load_audio("notes")
    assert torch.equal(again.train, notes_data.train)
    assert torch.equal(again.test_labels, notes_data.test_labels)
    other = load_audio("notes", seed=1)
    assert not torch.equal(other.test, notes_data.test)
    both = torch.cat([other.train, other.test]).sum(dim=(1, 2)).sort().values
    assert torch.equal(both, torch.cat([notes_data.train, notes_data.test]).sum(dim=(1, 2)).sort().values)


def test_load_notes_other_rate_and_length():
    data = load_audio("notes", sample_rate=8000, clip_seconds=0.25, test_fraction=0.25)
    assert data.train.shape == (180, 1, 2000) and data.test.shape == (60, 1, 2000)
    assert data.seconds == 0.25 and data.sample_rate == 8000


def test_audio_data_works_with_dataclasses_replace(notes_data):
    small = dataclasses.replace(
        notes_data,
        name="small",
        train=notes_data.train[:10],
        test=notes_data.test[:3],
        train_labels=None,
        test_labels=None,
    )
    assert small.train.shape == (10, 1, 8000) and small.num_classes is None and small.sample_rate == 16000
    assert repr(small) == (
        "AudioData(name='small', train=10x1x8000, test=3x1x8000, levels=256, sample_rate=16000)"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        small.levels = 17


# ------------------------------------------------------------------------- AudioData checks


def _i64(n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.int64)


def _audio(**kw):
    base = dict(
        name="x",
        train=torch.zeros(4, 1, 10, dtype=torch.uint8),
        test=torch.zeros(2, 1, 10, dtype=torch.uint8),
        levels=256,
        sample_rate=8000,
    )
    base.update(kw)
    return AudioData(**base)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(train=torch.zeros(4, 1, 10)), "train clips must be a uint8"),
        (dict(train=torch.zeros(4, 10, dtype=torch.uint8)), r"uint8 \(N, 1, T\)"),
        (dict(test=torch.zeros(2, 2, 10, dtype=torch.uint8)), "test clips must be"),
        (dict(train=np.zeros((4, 1, 10), np.uint8)), "ndarray"),
        (dict(test=torch.zeros(0, 1, 10, dtype=torch.uint8)), "test set is empty"),
        (dict(test=torch.zeros(2, 1, 9, dtype=torch.uint8)), "train clips are"),
        (dict(train=torch.full((4, 1, 10), 16, dtype=torch.uint8), levels=16), "code 16 >= levels"),
        (dict(levels=1), "levels"),
        (dict(levels=257), "levels"),
        (dict(sample_rate=0), "sample_rate"),
        (dict(sample_rate=8000.0), "sample_rate"),
        (dict(train_labels=_i64(4)), "both be given"),
        (dict(train_labels=_i64(4), test_labels=_i64(3)), r"shape \(2,\)"),
        (dict(train_labels=_i64(4).int(), test_labels=_i64(2)), "int64"),
        (dict(train_labels=_i64(4) - 1, test_labels=_i64(2)), ">= 0"),
        (dict(train_labels=torch.arange(4), test_labels=_i64(2), class_names=("a",)), "only 1 class names"),
    ],
)
def test_audio_data_validation(kw, match):
    with pytest.raises(DataError, match=match):
        _audio(**kw)


def test_audio_data_properties():
    data = _audio(train_labels=torch.tensor([0, 1, 2, 2]), test_labels=torch.tensor([1, 0]))
    assert data.shape == (1, 10) and data.dims == 10 and data.seconds == 10 / 8000 and data.num_classes == 3
    assert _audio().num_classes is None


# ----------------------------------------------------------------------- load_audio(folder)


def _tone(hz: float, seconds: float, rate: int) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * hz * np.arange(round(seconds * rate)) / rate)


def test_load_folder_with_classes_resampled_and_padded(tmp_path):
    (tmp_path / "b_low").mkdir()
    (tmp_path / "a_high").mkdir()
    write_wav(tmp_path / "a_high" / "x.wav", _tone(1000, 1.2, 16000), 16000)  # 2 clips, 0.2 s dropped
    write_wav(tmp_path / "b_low" / "y.wav", _tone(300, 1.0, 8000), 8000)  # resampled: 2 clips
    write_wav(tmp_path / "b_low" / "z.wav", _tone(300, 0.2, 44100), 44100)  # short: 1 padded clip
    (tmp_path / "b_low" / "notes.txt").write_text("not audio")  # ignored
    data = load_audio(tmp_path, clip_seconds=0.5, test_fraction=0.2)
    assert data.class_names == ("a_high", "b_low") and data.name == str(tmp_path.resolve())
    assert len(data.train) + len(data.test) == 5 and len(data.test) == 1
    assert data.shape == (1, 8000) and data.dims == 8000
    clips = torch.cat([data.train, data.test])
    labels = torch.cat([data.train_labels, data.test_labels])
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 1]
    wave = mu_law_decode(clips[:, 0]).numpy()
    for x, y in zip(wave, labels.tolist()):
        silent_tail = np.abs(x[4000:]).max() < 1e-3
        if silent_tail:  # the padded 0.2 s file: sound for 3200 samples, then silence
            assert y == 1 and np.abs(x[:3000]).max() > 0.4
        else:
            assert abs(_peak_hz(x, SR) - (1000 if y == 0 else 300)) < 2.0
    assert sum(np.abs(x[4000:]).max() < 1e-3 for x in wave) == 1


def test_load_flat_folder_unlabeled_in_order(tmp_path):
    x = RNG.uniform(-0.9, 0.9, 10 * 800 + 123)
    write_wav(tmp_path / "a.wav", x, 16000)
    (tmp_path / "sub").mkdir()
    write_wav(tmp_path / "sub" / "b.wav", np.zeros(800), 16000)  # recursion: not every file in a subfolder
    (tmp_path / ".hidden").mkdir()
    write_wav(tmp_path / ".hidden" / "c.wav", np.zeros(800), 16000)  # hidden: skipped
    data = load_audio(tmp_path, clip_seconds=0.05, test_fraction=0.25, seed=3)
    assert data.train_labels is None and data.class_names is None and data.num_classes is None
    assert len(data.train) + len(data.test) == 11 and data.shape == (1, 800)
    # Clips are the consecutive 800-sample pieces of a.wav (sorted first), then b.wav.
    train_idx, test_idx = split_indices(11, None, 0.25, 3)
    clips = torch.empty(11, 800, dtype=torch.uint8)
    clips[train_idx], clips[test_idx] = data.train[:, 0], data.test[:, 0]
    expected = mu_law_encode(torch.from_numpy(read_wav(tmp_path / "a.wav")[0][:8000]).reshape(10, 800))
    assert torch.equal(clips[:10].long(), expected)
    assert (mu_law_decode(clips[10]).abs() < 1e-3).all()


def test_load_single_file(tmp_path):
    path = tmp_path / "one.WAV"
    write_wav(path, _tone(440, 1.0, 22050), 22050)
    data = load_audio(path, sample_rate=8000, clip_seconds=0.25)
    assert len(data.train) + len(data.test) == 4 and data.shape == (1, 2000) and data.sample_rate == 8000
    assert abs(_peak_hz(mu_law_decode(data.train[0, 0]).numpy(), 8000) - 440) < 2.0


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match=_match(tmp_path / "missing") + ".*embedded audio datasets: notes"):
        load_audio(tmp_path / "missing")
    with pytest.raises(DataError, match="spec"):
        load_audio(123)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no audio here")
    with pytest.raises(DataError, match=_match(empty) + ": no .wav files"):
        load_audio(empty)
    text = tmp_path / "x.mp3"
    text.write_bytes(b"ID3")
    with pytest.raises(DataError, match=_match(text) + ": unsupported file type '.mp3'"):
        load_audio(text)
    one = tmp_path / "one"
    one.mkdir()
    write_wav(one / "a.wav", np.zeros(100), 8000)
    with pytest.raises(DataError, match=_match(one) + ": found 1 clip.*at least 2"):
        load_audio(one, sample_rate=8000)
    write_wav(one / "b.wav", np.zeros(0), 8000)
    with pytest.raises(DataError, match=_match(one / "b.wav") + ": the WAV file has no samples"):
        load_audio(one, sample_rate=8000)
    (one / "b.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(DataError, match=_match(one / "b.wav")):
        load_audio(one)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sample_rate=0), "sample_rate"),
        (dict(sample_rate=-16000), "sample_rate"),
        (dict(sample_rate=16000.0), "sample_rate"),
        (dict(sample_rate=True), "sample_rate"),
        (dict(sample_rate=1000), "sample_rate must be at least 2000"),
        (dict(clip_seconds=0), "clip_seconds"),
        (dict(clip_seconds=-0.5), "clip_seconds"),
        (dict(clip_seconds=math.inf), "clip_seconds"),
        (dict(clip_seconds="0.5"), "clip_seconds"),
        (dict(clip_seconds=1e-6), "clip_seconds"),
        (dict(test_fraction=0.0), "test_fraction"),
        (dict(test_fraction=1.5), "test_fraction"),
        (dict(seed=-1), "seed"),
        (dict(seed=1.5), "seed"),
    ],
)
def test_load_bad_arguments(kwargs, match):
    with pytest.raises(DataError, match=match):
        load_audio("notes", **kwargs)


def test_import_is_lazy():
    code = "import sys, fastgen.data; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
