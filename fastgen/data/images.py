"""``ImageData`` and ``load_images``: every image source becomes uint8 (N, C, H, W) levels.

``load_images(spec)`` picks the reader from ``spec`` (and whether the split is given or made here
with ``test_fraction`` / ``seed``):

- ``"digits"``, ``"faces"``: ``embedded`` (scikit-learn / scikit-image files); split made here;
- ``*.npy``: ``numpy_files.load_npy``; split made here;
- ``*.npz``: ``numpy_files.load_npz``; given (``x_train``/``x_test``) or made here;
- a folder with MNIST idx files: ``idx.load_mnist``; given;
- a ``cifar-10-batches-py`` folder or its parent: ``cifar.load_cifar10``; given;
- any other folder: ``folder.load_folder`` (pillow); made here.

The embedded names win over a folder of the same name; write ``./digits`` for the folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastgen.data import cifar, embedded, folder, idx, numpy_files
from fastgen.data.arrays import Loaded
from fastgen.data.errors import DataError
from fastgen.data.labels import SplitChecks
from fastgen.data.split import check_test_fraction, split_indices


@dataclass(frozen=True, eq=False, repr=False)
class ImageData(SplitChecks):
    """A train/test pair of integer-level image tensors.

    Attributes
    ----------
    name : str
        ``"digits"``, ``"faces"``, or the (absolute) path that was loaded.
    train, test : torch.Tensor
        uint8 (N_train, C, H, W) and (N_test, C, H, W), values in ``[0, levels - 1]``.
    levels : int
        Number of intensity levels (17 for digits, 256 for 8-bit images).
    train_labels, test_labels : torch.Tensor or None
        int64 (N_train,) and (N_test,), both or neither.
    class_names : tuple of str or None
        Names of the classes 0..K-1 where the source has them (image subfolders, CIFAR-10).

    Construction validates all of this and raises :class:`DataError` otherwise.
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    levels: int
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self):
        self._check_levels()
        for split, x in (("train", self.train), ("test", self.test)):
            if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
                what = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
                raise DataError(
                    f"{self.name}: {split} images must be a uint8 (N, C, H, W) tensor, got {what}"
                )
            if x.shape[0] == 0 or x.numel() == 0:
                raise DataError(f"{self.name}: the {split} set is empty (shape {tuple(x.shape)})")
            top = int(x.max())
            if top >= self.levels:
                raise DataError(f"{self.name}: {split} images have a value {top} >= levels ({self.levels})")
        if self.train.shape[1:] != self.test.shape[1:]:
            raise DataError(
                f"{self.name}: train images are {tuple(self.train.shape[1:])} (C, H, W) but test "
                f"images are {tuple(self.test.shape[1:])}"
            )
        self._check_labels()

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.train.shape[1:])

    @property
    def dims(self) -> int:
        """``C * H * W``, the D of bits per dimension."""
        c, h, w = self.shape
        return c * h * w

    def __repr__(self) -> str:
        def dims(x):
            return "x".join(str(s) for s in x.shape)

        classes = f", classes={self.num_classes}" if self.train_labels is not None else ""
        return (
            f"ImageData(name={self.name!r}, train={dims(self.train)}, test={dims(self.test)}, "
            f"levels={self.levels}{classes})"
        )


def _tensor(arr: np.ndarray | None) -> torch.Tensor | None:
    if arr is None:
        return None
    # Readers may hand back read-only views (np.frombuffer); torch wants writable memory.
    return torch.from_numpy(np.require(arr, requirements=["C", "W"]))


def _read(spec: str) -> Loaded:
    if spec in embedded.LOADERS:
        return embedded.LOADERS[spec]()
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(
            f"no such file or folder: {path} (embedded datasets: {', '.join(embedded.DATASETS)}; "
            "nothing is downloaded)"
        )
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".npy":
            return numpy_files.load_npy(path)
        if suffix == ".npz":
            return numpy_files.load_npz(path)
        raise DataError(
            f"{path}: unsupported file type {path.suffix!r}; give a .npy or .npz file, or a folder "
            "(images, MNIST idx files, CIFAR-10 python batches)"
        )
    mnist = idx.find_mnist_folder(path)
    if mnist is not None:
        return idx.load_mnist(mnist)
    cifar10 = cifar.find_cifar_folder(path)
    if cifar10 is not None:
        return cifar.load_cifar10(cifar10)
    return folder.load_folder(path)


def load_images(spec: str | os.PathLike, *, test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """Load an embedded dataset or the images at a path (never downloads anything).

    Parameters
    ----------
    spec : str or os.PathLike
        ``"digits"`` (sklearn 8x8 digits: 1x8x8, 17 levels, labels 0..9; 1,438 train / 359 test
        with the defaults), ``"faces"`` (the 100 LFW faces of scikit-image: 1x25x25, 256 levels,
        no labels; 80 / 20 with the defaults), or a path: a ``.npy``/``.npz`` file, a folder of
        MNIST idx files, a CIFAR-10 python folder, or a folder of images (see the module table).
    test_fraction : float
        Share of the examples held out for testing, in (0, 1), when the source has no split of
        its own. The test set has ``round(N * test_fraction)`` examples, stratified by label.
    seed : int
        Seed of the split. The split depends on nothing else.

    Returns
    -------
    ImageData

    Raises
    ------
    DataError
        Missing path, unreadable or corrupt file, unsupported dtype/shape/range, inconsistent
        image sizes, a missing optional package (with the ``pip install`` line), bad arguments.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise DataError(f"spec must be a dataset name or a path, got {type(spec).__name__}")
    test_fraction = check_test_fraction(test_fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    spec = os.fspath(spec)
    loaded = _read(spec)
    if loaded.test_images is not None:
        train, y_train, test, y_test = loaded.images, loaded.labels, loaded.test_images, loaded.test_labels
    else:
        train_idx, test_idx = split_indices(len(loaded.images), loaded.labels, test_fraction, int(seed))
        train, test = loaded.images[train_idx], loaded.images[test_idx]
        y_train = y_test = None
        if loaded.labels is not None:
            y_train, y_test = loaded.labels[train_idx], loaded.labels[test_idx]
    return ImageData(
        # A path is kept absolute: checkpoints record it, and `fastgen evaluate` may run elsewhere.
        name=spec if spec in embedded.LOADERS else str(Path(spec).expanduser().resolve()),
        train=_tensor(train),
        test=_tensor(test),
        levels=loaded.levels,
        train_labels=_tensor(y_train),
        test_labels=_tensor(y_test),
        class_names=loaded.class_names,
    )
