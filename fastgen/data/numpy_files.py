"""``.npy`` and ``.npz`` files of images.

- ``.npy``: one image array, (N, H, W), (N, H, W, C) or (N, C, H, W); uint8 (or another integer
  dtype with values in 0..255) or float in [0, 1] (quantized to 256 levels). No labels.
- ``.npz``: either ``x_train`` and ``x_test`` (+ optional ``y_train`` and ``y_test``), a split
  that is used as given; or one array under ``x``, ``images`` or ``arr_0`` (+ optional labels
  under ``y``, ``labels``, or ``arr_1`` next to ``arr_0``), split later. An optional ``levels``
  (an integer 2..256) declares fewer intensity levels than 256 (e.g. 17 for the 8x8 digits): the
  images must then be integers in 0..levels-1, and the likelihood models use that many classes.

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


def _levels(archive, path: Path) -> int:
    """The archive's ``levels``: one integer in 2..256."""
    value = _read(archive, "levels", path)
    if value.size != 1 or value.dtype == np.bool_ or not np.issubdtype(value.dtype, np.integer) \
            or not 2 <= int(value.reshape(-1)[0]) <= 256:
        raise DataError(f"{path}['levels']: expected one integer in 2..256 (the number of intensity levels), "
                        f"got {value.reshape(-1)[:4].tolist()} of dtype {value.dtype}")
    return int(value.reshape(-1)[0])


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

        levels = _levels(archive, path) if "levels" in keys else 256

        def images(key):
            raw = _read(archive, key, path)
            if levels < 256 and not np.issubdtype(raw.dtype, np.integer):
                raise DataError(f"{path}[{key!r}]: images have dtype {raw.dtype}; with levels = {levels} they must "
                                f"be integers in 0..{levels - 1}")
            x = images_from_array(raw, f"{path}[{key!r}]")
            if x.size and x.max() >= levels:
                raise DataError(f"{path}[{key!r}]: image values reach {x.max()}, but levels = {levels} allows "
                                f"0..{levels - 1}")
            return x

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
            return Loaded(train, y_train, levels, test, y_test)

        key = next((k for k in IMAGE_KEYS if k in keys), None)
        if key is None:
            raise DataError(
                f"{path}: no image array; expected key 'x', 'images' or 'arr_0', or 'x_train' and "
                f"'x_test' (found keys {sorted(keys)})"
            )
        x = images(key)
        label_key = next((k for k in LABEL_KEYS[key] if k in keys), None)
        y = labels(label_key, len(x)) if label_key else None
        return Loaded(x, y, levels=levels)
