"""A folder of image files (png, jpg, bmp, gif), read with pillow.

Layouts:

- ``root/*.png``: unlabeled (any subfolders are ignored);
- ``root/<label>/*.png``: labeled; the sorted subfolder names are the classes 0..K-1
  (used only when ``root`` itself holds no images).

All images must have the same size. They are converted to one mode: grayscale (1 channel) if
every file is grayscale, else RGB (3 channels); alpha is dropped. Files are read in sorted order;
hidden files (``.name``) are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastgen.data.arrays import Loaded
from fastgen.data.errors import DataError, require

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_GRAY_MODES = {"1", "L", "LA", "La"}
_UNSUPPORTED_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _is_gray(img) -> bool:
    if img.mode in _GRAY_MODES:
        return True
    if img.mode == "P":  # palette (gif, some png): gray when every used colour has R == G == B
        rgb = np.asarray(img.convert("RGB"))
        return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    return False


def load_folder(root: Path) -> Loaded:
    """Read every image under ``root`` (see the module docstring for the layouts).

    Returns
    -------
    Loaded
        uint8 (N, C, H, W) with C = 1 or 3, 256 levels, labels (and class names) for the
        subfolder layout.
    """
    Image = require("PIL.Image", "pillow", f"reading the image folder {root}")
    files = _image_files(root)
    labels = class_names = None
    if not files:
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        per_class = [(d.name, _image_files(d)) for d in subdirs]
        per_class = [(name, fs) for name, fs in per_class if fs]
        if not per_class:
            raise DataError(
                f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder or its "
                "subfolders, and it is not an MNIST or CIFAR-10 folder"
            )
        class_names = tuple(name for name, _ in per_class)
        files = [f for _, fs in per_class for f in fs]
        labels = np.concatenate([np.full(len(fs), k, dtype=np.int64) for k, (_, fs) in enumerate(per_class)])

    images, gray, size = [], True, None
    for path in files:
        try:
            with Image.open(path) as img:
                img.load()
        except Exception as exc:  # pillow raises several types for unreadable files
            raise DataError(f"{path}: cannot read this image file ({exc})") from exc
        if img.mode in _UNSUPPORTED_MODES:
            raise DataError(
                f"{path}: image mode {img.mode!r} (16-bit or float) is not supported; use 8-bit images"
            )
        if size is None:
            size, first = img.size, path
        elif img.size != size:
            raise DataError(
                f"{path}: image size {img.size[0]}x{img.size[1]} (WxH) differs from "
                f"{size[0]}x{size[1]} of {first}; all images must have the same size"
            )
        gray = gray and _is_gray(img)
        images.append(img)

    mode = "L" if gray else "RGB"
    arrays = [np.asarray(img.convert(mode), dtype=np.uint8) for img in images]
    x = np.stack(arrays)  # (N, H, W) or (N, H, W, 3)
    x = x[:, None] if gray else x.transpose(0, 3, 1, 2)
    return Loaded(np.ascontiguousarray(x), labels, levels=256, class_names=class_names)
