"""``AudioData`` and ``load_audio``: every audio source becomes uint8 mu-law clips (N, 1, T).

``load_audio(spec)`` reads:

- ``"notes"``: ``synth_audio.synthesize_notes`` (four synthesized instruments, labelled);
- a ``.wav`` file or a folder of ``.wav`` files (``wav.read_wav``), resampled and cut into clips.

The embedded name wins over a folder of the same name; write ``./notes`` for the folder.
``AudioData`` has the fields and properties of ``ImageData`` (name, train, test, levels,
train_labels, test_labels, class_names, shape, dims, num_classes), so code written for images
(``dataclasses.replace(data, train=..., ...)``, bits per dim over ``dims``) works on audio.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastgen.data.errors import DataError
from fastgen.data.labels import SplitChecks
from fastgen.data.mu_law import mu_law_encode
from fastgen.data.split import check_test_fraction, split_indices
from fastgen.data.synth_audio import synthesize_notes
from fastgen.data.wav import check_rate, read_wav, resample

#: Embedded audio datasets (nothing is downloaded).
AUDIO_DATASETS = ("notes",)
#: mu-law levels of every ``load_audio`` result (8-bit codes, as in WaveNet).
AUDIO_LEVELS = 256


@dataclass(frozen=True, eq=False, repr=False)
class AudioData(SplitChecks):
    """A train/test pair of mu-law coded audio clips.

    Attributes
    ----------
    name : str
        ``"notes"`` or the (absolute) path that was loaded.
    train, test : torch.Tensor
        uint8 (N_train, 1, T) and (N_test, 1, T): one channel of T samples per clip, mu-law codes
        in ``[0, levels - 1]`` (``mu_law_decode(x, levels)`` gives the waveform in [-1, 1]).
    levels : int
        Number of mu-law codes, in [2, 256] (256 from ``load_audio``).
    sample_rate : int
        Samples per second of every clip.
    train_labels, test_labels : torch.Tensor or None
        int64 (N_train,) and (N_test,), both or neither.
    class_names : tuple of str or None
        Names of the classes 0..K-1 (instruments of "notes", subfolders of a WAV folder).

    Construction validates all of this and raises :class:`DataError` otherwise.
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    levels: int
    sample_rate: int
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self):
        self._check_levels()
        levels = self.levels
        check_rate(self.sample_rate, f"{self.name}: sample_rate")
        for split, x in (("train", self.train), ("test", self.test)):
            if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 3 or x.shape[1] != 1:
                what = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
                raise DataError(f"{self.name}: {split} clips must be a uint8 (N, 1, T) tensor, got {what}")
            if x.numel() == 0:
                raise DataError(f"{self.name}: the {split} set is empty (shape {tuple(x.shape)})")
            top = int(x.max())
            if top >= levels:
                raise DataError(f"{self.name}: {split} clips have a code {top} >= levels ({levels})")
        if self.train.shape[1:] != self.test.shape[1:]:
            raise DataError(
                f"{self.name}: train clips are {tuple(self.train.shape[1:])} (1, T) but test clips "
                f"are {tuple(self.test.shape[1:])}"
            )
        self._check_labels()

    @property
    def shape(self) -> tuple[int, int]:
        """(1, T) of one clip."""
        return tuple(self.train.shape[1:])

    @property
    def dims(self) -> int:
        """T, the number of samples per clip (the D of bits per dimension)."""
        return self.train.shape[1] * self.train.shape[2]

    @property
    def seconds(self) -> float:
        """Length of one clip in seconds (T / sample_rate)."""
        return self.train.shape[2] / self.sample_rate

    def __repr__(self) -> str:
        def dims(x):
            return "x".join(str(s) for s in x.shape)

        classes = f", classes={self.num_classes}" if self.train_labels is not None else ""
        return (
            f"AudioData(name={self.name!r}, train={dims(self.train)}, test={dims(self.test)}, "
            f"levels={self.levels}, sample_rate={self.sample_rate}{classes})"
        )


def _wav_files(path: Path) -> list[Path]:
    """``path`` itself, or every non-hidden ``*.wav`` under the folder ``path``, sorted."""
    if path.is_file():
        if path.suffix.lower() != ".wav":
            raise DataError(
                f"{path}: unsupported file type {path.suffix!r}; give a .wav file or a folder of them"
            )
        return [path]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() == ".wav"
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise DataError(f"{path}: no .wav files in this folder or its subfolders")
    return files


def _clips(samples: np.ndarray, length: int) -> np.ndarray:
    """Consecutive (k, length) clips; the remainder is dropped, a short file padded with silence."""
    if len(samples) < length:
        return np.pad(samples, (0, length - len(samples)))[None]
    k = len(samples) // length
    return samples[: k * length].reshape(k, length)


def _read_folder(root: Path, sample_rate: int, length: int):
    """(clips float32 (N, length), labels int64 (N,) or None, class names or None)."""
    files = _wav_files(root)
    clips = []
    for path in files:
        samples, rate = read_wav(path)
        if len(samples) == 0:
            raise DataError(f"{path}: the WAV file has no samples")
        clips.append(_clips(resample(samples, rate, sample_rate), length))
    # Labels only when every file sits in a class subfolder (root/<class>/.../x.wav).
    subfolders = [p.relative_to(root).parts[0] for p in files] if root.is_dir() else []
    if not subfolders or any(len(p.relative_to(root).parts) < 2 for p in files):
        return np.concatenate(clips), None, None
    class_names = tuple(sorted(set(subfolders)))
    index = {name: k for k, name in enumerate(class_names)}
    labels = np.concatenate(
        [np.full(len(c), index[name], dtype=np.int64) for c, name in zip(clips, subfolders)]
    )
    return np.concatenate(clips), labels, class_names


def load_audio(
    spec: str | os.PathLike = "notes",
    *,
    sample_rate: int = 16000,
    clip_seconds: float = 0.5,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> AudioData:
    """Load the embedded audio dataset or the WAV files at a path (never downloads anything).

    Parameters
    ----------
    spec : str or os.PathLike
        ``"notes"``: 240 synthesized notes of four instruments (organ, pluck, bowed, bell;
        60 each; see ``fastgen.data.synth_audio``), labelled, always synthesized with seed 0;
        192 train / 48 test with the defaults.
        Or a ``.wav`` file, or a folder searched recursively for ``*.wav`` (sorted paths,
        hidden files and folders skipped). Each file is averaged to mono, resampled to
        ``sample_rate`` and cut into consecutive clips (the remainder dropped; a file shorter
        than one clip is padded with silence at the end). When every file sits in a subfolder,
        the first-level subfolder names (sorted) are the classes; otherwise there are no labels.
    sample_rate : int
        Samples per second of the clips (at least 2000 for "notes").
    clip_seconds : float
        Clip length; each clip has T = ``round(clip_seconds * sample_rate)`` samples.
    test_fraction : float
        Share of the clips held out for testing, in (0, 1): ``round(N * test_fraction)`` clips,
        stratified by label. The split is by clip, so clips cut from one WAV file can land in
        both train and test.
    seed : int
        Seed of the split. The split depends on nothing else.

    Returns
    -------
    AudioData
        uint8 mu-law codes (N, 1, T), 256 levels.

    Raises
    ------
    DataError
        Missing path, a folder without .wav files, an unreadable or unsupported WAV file (named),
        fewer than 2 clips, bad arguments (named).
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise DataError(f"spec must be a dataset name or a path, got {type(spec).__name__}")
    sample_rate = check_rate(sample_rate, "sample_rate")
    if (
        isinstance(clip_seconds, bool)
        or not isinstance(clip_seconds, (int, float, np.integer, np.floating))
        or not math.isfinite(clip_seconds)
        or clip_seconds <= 0
    ):
        raise DataError(f"clip_seconds must be a positive number, got {clip_seconds!r}")
    length = round(clip_seconds * sample_rate)
    if length < 1:
        raise DataError(f"clip_seconds={clip_seconds!r} is shorter than one sample at {sample_rate} Hz")
    test_fraction = check_test_fraction(test_fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    spec = os.fspath(spec)

    if spec in AUDIO_DATASETS:
        clips, labels, class_names = synthesize_notes(sample_rate=sample_rate, seconds=clip_seconds)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise DataError(
                f"no such file or folder: {path} (embedded audio datasets: {', '.join(AUDIO_DATASETS)}; "
                "nothing is downloaded)"
            )
        clips, labels, class_names = _read_folder(path, sample_rate, length)
        if len(clips) < 2:
            raise DataError(
                f"{path}: found {len(clips)} clip of {length} samples; need at least 2 for a train/test "
                "split (use a shorter clip_seconds or more audio)"
            )

    train_idx, test_idx = map(torch.from_numpy, split_indices(len(clips), labels, test_fraction, int(seed)))
    codes = mu_law_encode(torch.from_numpy(clips), AUDIO_LEVELS).to(torch.uint8)[:, None]  # (N, 1, T)
    y = None if labels is None else torch.from_numpy(labels)
    return AudioData(
        name=spec if spec in AUDIO_DATASETS else str(Path(spec).expanduser().resolve()),  # absolute: see load_images
        train=codes[train_idx],
        test=codes[test_idx],
        levels=AUDIO_LEVELS,
        sample_rate=sample_rate,
        train_labels=None if y is None else y[train_idx],
        test_labels=None if y is None else y[test_idx],
        class_names=class_names,
    )
