"""``.npy`` and ``.npz`` files of images.

- ``.npy``: one image array, (N, H, W), (N, H, W, C) or (N, C, H, W); uint8 (or another integer
  dtype with values in 0..255) or float in [0, 1] (quantized to 256 levels). No labels.
- ``.npz``: either ``x_train`` and ``x_test`` (+ optional ``y_train`` and ``y_test``), a split
  that is used as given; or one array under ``x``, ``images`` or ``arr_0`` (+ optional labels
  under ``y``, ``labels``, or ``arr_1`` next to ``arr_0``), split later.

Files are read with ``allow_pickle=False``: object arrays are refused, nothing is unpickled.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fastgen.data.arrays import Loaded, images_from_array, labels_from_array
from fastgen.data.errors import DataError

IMAGE_KEYS = ("x", "images", "arr_0")
LABEL_KEYS = {"x": ("y", "labels"), "images": ("y", "labels"), "arr_0": ("y", "labels", "arr_1")}


def _read(archive, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key] if archive is not None else np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        where = f"{path}[{key!r}]" if archive is not None else str(path)
        raise DataError(f"{where}: cannot read this numpy array ({exc})") from exc


def load_npy(path: Path) -> Loaded:
    """Read an ``.npy`` image array (no labels)."""
    return Loaded(images_from_array(_read(None, "", path), str(path)), None, levels=256)


def load_npz(path: Path) -> Loaded:
    """Read an ``.npz`` archive (see the module docstring for the keys)."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read this .npz file ({exc})") from exc
    with archive:
        keys = set(archive.files)

        def images(key):
            return images_from_array(_read(archive, key, path), f"{path}[{key!r}]")

        def labels(key, n):
            return labels_from_array(_read(archive, key, path), n, f"{path}[{key!r}]")

        if "x_train" in keys or "x_test" in keys:
            missing = [k for k in ("x_train", "x_test") if k not in keys]
            if missing:
                raise DataError(f"{path}: has {sorted(keys & {'x_train', 'x_test'})} but not {missing}")
            train, test = images("x_train"), images("x_test")
            if train.shape[1:] != test.shape[1:]:
                raise DataError(
                    f"{path}: x_train images are {train.shape[1:]} (C, H, W) but x_test images "
                    f"are {test.shape[1:]}"
                )
            has_y = [k for k in ("y_train", "y_test") if k in keys]
            if len(has_y) == 1:
                raise DataError(f"{path}: has {has_y[0]} but not the other of y_train/y_test")
            y_train = labels("y_train", len(train)) if has_y else None
            y_test = labels("y_test", len(test)) if has_y else None
            return Loaded(train, y_train, 256, test, y_test)

        key = next((k for k in IMAGE_KEYS if k in keys), None)
        if key is None:
            raise DataError(
                f"{path}: no image array; expected key 'x', 'images' or 'arr_0', or 'x_train' and "
                f"'x_test' (found keys {sorted(keys)})"
            )
        x = images(key)
        label_key = next((k for k in LABEL_KEYS[key] if k in keys), None)
        y = labels(label_key, len(x)) if label_key else None
        return Loaded(x, y, levels=256)
