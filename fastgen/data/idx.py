"""MNIST-style idx files (MNIST, Fashion-MNIST, KMNIST), parsed with numpy.

The idx format: a big-endian header ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32
sizes, then the data in C order. Images are ``0x00000803`` (uint8, 3-D), labels ``0x00000801``
(uint8, 1-D). Files may be gzipped (``.gz`` or gzip magic).

A folder is recognised when it (or its ``raw/`` or ``MNIST/raw/`` subfolder, the torchvision
layout) holds ``train-images-idx3-ubyte`` and ``t10k-images-idx3-ubyte`` (or the same names with
``.idx3-ubyte``), optionally ``.gz``; the label files ``train-labels-idx1-ubyte`` and
``t10k-labels-idx1-ubyte`` are read when both are there. The train/test split is used as given.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from fastgen.data.arrays import Loaded, labels_from_array, to_nchw
from fastgen.data.errors import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_STEMS = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _find(folder: Path, role: str) -> Path | None:
    for stem in _STEMS[role]:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def find_mnist_folder(path: Path) -> Path | None:
    """The folder under ``path`` that holds the idx image files, or None."""
    for folder in (path, path / "raw", path / "MNIST" / "raw"):
        if not folder.is_dir():
            continue
        train, test = _find(folder, "train_images"), _find(folder, "test_images")
        if train and test:
            return folder
        if train or test:  # half an MNIST folder: say which file is missing, not "no images"
            missing = _STEMS["test_images" if train else "train_images"][0]
            raise DataError(f"{folder}: holds {(train or test).name} but not {missing} (or {missing}.gz); "
                            "an MNIST folder needs both the train and the t10k image files")
    return None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one uint8 idx file and check its magic number and size.

    Parameters
    ----------
    path : Path
        The file, gzipped or not.
    magic : int
        Expected magic number (``IMAGES_MAGIC`` or ``LABELS_MAGIC``).

    Returns
    -------
    np.ndarray
        uint8, (N, H, W) for images, (N,) for labels.
    """
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read this idx file ({exc})") from exc
    if len(raw) < 4:
        raise DataError(f"{path}: corrupt idx file ({len(raw)} bytes, shorter than the header)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(
            f"{path}: corrupt or wrong idx file: magic number 0x{found:08x}, expected 0x{magic:08x} "
            f"({'uint8 images' if magic == IMAGES_MAGIC else 'uint8 labels'})"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: corrupt idx file (truncated header)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise DataError(
            f"{path}: corrupt idx file: header says shape {shape} ({size} bytes of data) but the "
            f"file has {len(raw) - header} bytes of data"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_mnist(folder: Path) -> Loaded:
    """Read the MNIST train/test idx files of ``folder`` (from :func:`find_mnist_folder`)."""
    train = to_nchw(read_idx(_find(folder, "train_images"), IMAGES_MAGIC), str(folder))
    test = to_nchw(read_idx(_find(folder, "test_images"), IMAGES_MAGIC), str(folder))
    if train.shape[1:] != test.shape[1:]:
        raise DataError(f"{folder}: train images are {train.shape[2:]} but test images are {test.shape[2:]}")
    label_files = [_find(folder, "train_labels"), _find(folder, "test_labels")]
    if any(label_files) and not all(label_files):
        missing = _STEMS["train_labels" if label_files[0] is None else "test_labels"][0]
        raise DataError(f"{folder}: has one idx label file but not {missing}")
    y_train = y_test = None
    if all(label_files):
        y_train = labels_from_array(read_idx(label_files[0], LABELS_MAGIC), len(train), str(label_files[0]))
        y_test = labels_from_array(read_idx(label_files[1], LABELS_MAGIC), len(test), str(label_files[1]))
    return Loaded(train, y_train, 256, test, y_test)
