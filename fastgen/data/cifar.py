"""CIFAR-10, "python version" (``cifar-10-python.tar.gz`` extracted).

The folder ``cifar-10-batches-py`` (or a folder that contains it) holds the pickles
``data_batch_1`` .. ``data_batch_5`` (train) and ``test_batch``: each a dict with ``b"data"``,
uint8 (N, 3072) in channel-major order (1024 red, 1024 green, 1024 blue, rows of 32), and
``b"labels"``, a list of N ints in 0..9. Result: uint8 (N, 3, 32, 32), 256 levels, the split
as given (50,000 / 10,000 for the real files).

The pickles are read with a restricted unpickler that only rebuilds numpy arrays (plus the plain
containers pickle builds itself), so a doctored file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from fastgen.data.arrays import Loaded, labels_from_array
from fastgen.data.errors import DataError

FOLDER_NAME = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.numeric", "_frombuffer"),  # arrays in pickle protocol 5
    ("numpy.core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how Python 3 writes bytes in protocol 2
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")


def find_cifar_folder(path: Path) -> Path | None:
    """``path`` or ``path/cifar-10-batches-py`` when it looks like CIFAR-10, else None.

    A folder looks like CIFAR-10 when it is named ``cifar-10-batches-py`` or holds ``test_batch``
    or ``data_batch_1``; the batch files are checked when they are read.
    """
    for folder in (path, path / FOLDER_NAME):
        if folder.is_dir() and (
            folder.name == FOLDER_NAME
            or (folder / TEST_BATCH).is_file()
            or (folder / TRAIN_BATCHES[0]).is_file()
        ):
            return folder
    return None


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file: uint8 (N, 3, 32, 32) images and int64 (N,) labels."""
    if not path.is_file():
        raise DataError(
            f"{path}: missing CIFAR-10 batch file (expected {', '.join(TRAIN_BATCHES)}, {TEST_BATCH})"
        )
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # unpickling raises many types on corrupt input
        raise DataError(f"{path}: cannot read this CIFAR-10 batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(
            f'{path}: not a CIFAR-10 batch: expected a dict with b"data" and b"labels", found {found}'
        )
    data = np.asarray(batch[b"data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f'{path}: b"data" is {data.dtype} {tuple(data.shape)}; expected uint8 (N, 3072)')
    labels = labels_from_array(np.asarray(batch[b"labels"]), len(data), f'{path}[b"labels"]')
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(folder: Path) -> Loaded:
    """Read the five train batches and the test batch of ``folder``."""
    train = [read_batch(folder / name) for name in TRAIN_BATCHES]
    x_test, y_test = read_batch(folder / TEST_BATCH)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return Loaded(x_train, y_train, 256, x_test, y_test, class_names=CLASS_NAMES)
