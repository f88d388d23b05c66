"""WAV files: read (PCM 8/16/24/32-bit, IEEE float 32/64, mono or multi-channel), write, resample.

The RIFF chunks are parsed here rather than with the stdlib ``wave`` module, which (in Python
3.11) refuses IEEE float files and WAVE_FORMAT_EXTENSIBLE headers. Unknown chunks (LIST, fact,
cue, ...) are skipped. Samples come back as mono float32 in [-1, 1]: integer PCM is divided by
2**(bits - 1) (8-bit is unsigned, centred on 128), float data is clipped, and channels are
averaged.
"""

from __future__ import annotations

import math
import os
import secrets
import struct
from pathlib import Path

import numpy as np
import torch

from fastgen.data.errors import DataError, require

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
#: The 14 bytes after the format tag in the KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT GUIDs.
_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")
_SUPPORTED_BITS = {_PCM: (8, 16, 24, 32), _FLOAT: (32, 64)}
_KNOWN_TAGS = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}
_SUPPORTED = "PCM integer 8/16/24/32-bit or IEEE float 32/64-bit"
#: Largest sample rate a WAV header can hold (the byte rate, 2 * rate for 16-bit mono, is 32-bit).
MAX_SAMPLE_RATE = 2**31 - 1


def check_rate(rate: int, name: str) -> int:
    """Return ``rate`` as an int, or raise :class:`DataError` naming ``name`` unless 1 <= rate < 2**31."""
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not 1 <= rate <= MAX_SAMPLE_RATE:
        raise DataError(f"{name} must be a positive integer (samples per second), got {rate!r}")
    return int(rate)


def _chunks(data: bytes, path: Path) -> dict[bytes, memoryview]:
    """The first chunk of each id after the RIFF/WAVE header, as views into ``data``."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        if data[:4] in (b"RIFX", b"RF64") and data[8:12] == b"WAVE":
            kind = "big-endian (RIFX)" if data[:4] == b"RIFX" else "64-bit (RF64)"
            raise DataError(f"{path}: {kind} WAV files are not supported; convert it to a plain RIFF WAV")
        what = "the file is empty" if not data else "no RIFF/WAVE header"
        raise DataError(f"{path}: not a WAV file ({what})")
    view, found, pos = memoryview(data), {}, 12
    # Trailing bytes too short for a chunk header are padding some writers leave; ignore them.
    while pos + 8 <= len(data):
        cid = bytes(view[pos : pos + 4])
        size = int.from_bytes(view[pos + 4 : pos + 8], "little")
        start = pos + 8
        if start + size > len(data):
            name = cid.decode("latin-1")
            raise DataError(
                f"{path}: truncated WAV file: the {name!r} chunk declares {size} bytes but only "
                f"{len(data) - start} follow"
            )
        found.setdefault(cid, view[start : start + size])
        pos = start + size + (size & 1)  # chunks are word-aligned: odd sizes have a pad byte
    return found


def _parse_fmt(fmt: memoryview, path: Path) -> tuple[int, int, int, int]:
    """(format tag, channels, sample rate, bits per sample) from a 'fmt ' chunk, checked."""
    if len(fmt) < 16:
        raise DataError(f"{path}: corrupt WAV file: the 'fmt ' chunk has {len(fmt)} bytes, expected >= 16")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE:
        if len(fmt) < 40:
            raise DataError(
                f"{path}: corrupt WAV file: WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk has {len(fmt)} bytes, "
                "expected >= 40"
            )
        guid = bytes(fmt[24:40])
        sub = int.from_bytes(guid[:2], "little")
        if guid[2:] != _GUID_TAIL or sub not in _SUPPORTED_BITS:
            raise DataError(
                f"{path}: unsupported WAVE_FORMAT_EXTENSIBLE subformat {guid.hex()}; supported: {_SUPPORTED}"
            )
        tag = sub
    if tag not in _SUPPORTED_BITS:
        name = f" ({_KNOWN_TAGS[tag]})" if tag in _KNOWN_TAGS else ""
        raise DataError(f"{path}: unsupported WAV format tag 0x{tag:04x}{name}; supported: {_SUPPORTED}")
    if bits not in _SUPPORTED_BITS[tag]:
        kind = "PCM" if tag == _PCM else "float"
        raise DataError(f"{path}: unsupported {bits}-bit {kind} samples; supported: {_SUPPORTED}")
    if channels < 1 or rate < 1:
        raise DataError(f"{path}: corrupt WAV header: {channels} channels at {rate} Hz")
    if block_align != channels * bits // 8:
        raise DataError(
            f"{path}: corrupt WAV header: block align {block_align} bytes, expected "
            f"{channels * bits // 8} for {channels} channel(s) of {bits} bits"
        )
    return tag, channels, rate, bits


def _samples(raw: memoryview, tag: int, channels: int, bits: int, path: Path) -> np.ndarray:
    """Decode interleaved frames to mono float32 in [-1, 1]."""
    frame = channels * bits // 8
    raw = raw[: len(raw) // frame * frame]  # a partial last frame carries no whole sample
    if tag == _FLOAT:
        x = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float64)
        if not np.isfinite(x).all():
            raise DataError(f"{path}: the float samples contain NaN or inf")
        x = np.clip(x, -1.0, 1.0)
    elif bits == 8:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif bits == 24:
        # Put each 3-byte sample in the top of an int32 so the sign comes for free.
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        wide = np.zeros((len(b), 4), dtype=np.uint8)
        wide[:, 1:] = b
        x = wide.view("<i4").ravel() / 2.0**31
    else:
        x = np.frombuffer(raw, dtype="<i2" if bits == 16 else "<i4") / 2.0 ** (bits - 1)
    return x.reshape(-1, channels).mean(axis=1).astype(np.float32)


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a WAV file as mono float samples.

    Parameters
    ----------
    path : str or os.PathLike
        A RIFF/WAVE file: PCM integer 8-bit (unsigned), 16, 24 or 32-bit, or IEEE float 32/64-bit
        (format tags 1 and 3, or WAVE_FORMAT_EXTENSIBLE with those subformats), any number of
        channels.

    Returns
    -------
    samples : np.ndarray
        float32 (T,) in [-1, 1]; multi-channel files are averaged to mono.
    sample_rate : int
        The file's sample rate in Hz.

    Raises
    ------
    DataError
        Missing or unreadable file, not a WAV file, truncated or corrupt chunks, an unsupported
        encoding, NaN/inf float samples. The message names the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such WAV file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read this file ({exc})") from exc
    chunks = _chunks(data, path)
    if b"fmt " not in chunks:
        raise DataError(f"{path}: corrupt WAV file: no 'fmt ' chunk")
    if b"data" not in chunks:
        raise DataError(f"{path}: corrupt or truncated WAV file: no 'data' chunk")
    tag, channels, rate, bits = _parse_fmt(chunks[b"fmt "], path)
    return _samples(chunks[b"data"], tag, channels, bits, path), rate


def _mono_float(samples, name: str) -> np.ndarray:
    """``samples`` (numpy or torch) as a finite float64 (T,) array, or DataError naming ``name``."""
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu()
        samples = samples.double().numpy() if samples.is_floating_point() else samples.numpy()
    x = np.asarray(samples)
    if x.dtype.kind != "f":
        raise DataError(f"{name} must be floating point samples in [-1, 1], got dtype {x.dtype}")
    if x.ndim != 1:
        raise DataError(f"{name} must be 1-D (T,) mono samples, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"{name} contains NaN or inf")
    return x.astype(np.float64)


def write_wav(path: str | os.PathLike, samples, sample_rate: int) -> None:
    """Write mono samples as a 16-bit PCM WAV file, atomically.

    The file is written to a temporary file in the same folder and renamed over ``path``, so a
    crash never leaves a half-written ``path`` (an existing file stays as it was).

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its folder must exist.
    samples : np.ndarray or torch.Tensor
        Float (T,) in [-1, 1]; values outside are clipped. Stored as ``round(x * 32768)``
        clipped to the int16 range, which :func:`read_wav` divides by 32768.
    sample_rate : int
        Positive, in Hz.

    Raises
    ------
    DataError
        Bad ``samples`` or ``sample_rate``, or the file cannot be written (named).
    """
    rate = check_rate(sample_rate, "sample_rate")
    x = _mono_float(samples, "samples")
    payload = np.clip(np.rint(x * 32768.0), -32768, 32767).astype("<i2").tobytes()
    if 36 + len(payload) > 0xFFFFFFFF:
        raise DataError(f"samples: {len(x)} samples do not fit in one WAV file (4 GiB limit)")
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + len(payload))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, _PCM, 1, rate, 2 * rate, 2, 16)
        + b"data"
        + struct.pack("<I", len(payload))
    )
    path = Path(path)
    # A unique hidden name next to the target: os.replace is atomic only within one file system.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise DataError(f"{path}: cannot write the WAV file ({exc})") from exc


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Change the sample rate with a polyphase filter (``scipy.signal.resample_poly``).

    Parameters
    ----------
    samples : np.ndarray
        Float (..., T); resampled along the last axis.
    from_rate, to_rate : int
        Positive sample rates in Hz. The ratio is reduced by their gcd (44100 -> 16000 is
        up 160, down 441).

    Returns
    -------
    np.ndarray
        (..., ceil(T * to_rate / from_rate)), the dtype of ``samples``; ``samples`` itself when
        the rates are equal.
    """
    from_rate = check_rate(from_rate, "from_rate")
    to_rate = check_rate(to_rate, "to_rate")
    x = np.asarray(samples)
    if x.dtype.kind != "f" or x.ndim == 0:
        raise DataError(f"samples must be a float array (..., T), got {x.dtype} {x.shape}")
    if from_rate == to_rate:
        return samples
    signal = require("scipy.signal", "scipy", "resampling audio")
    g = math.gcd(from_rate, to_rate)
    return signal.resample_poly(x, to_rate // g, from_rate // g, axis=-1).astype(x.dtype, copy=False)
