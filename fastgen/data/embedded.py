"""The datasets that ship inside installed packages: nothing is ever downloaded.

- ``"digits"``: ``sklearn.datasets.load_digits()``, 1,797 images of 1x8x8 with values 0..16
  (17 levels) and labels 0..9.
- ``"faces"``: the 100 face images of scikit-image's ``lfw_subset`` (1x25x25, quantized to 256
  levels, no labels). ``lfw_subset`` holds 200 images: the first 100 are faces, the other 100
  are background crops ("non-faces"), which are left out.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from fastgen.data.arrays import Loaded, images_from_array, labels_from_array
from fastgen.data.errors import DataError, require

#: Number of face images at the start of ``skimage.data.lfw_subset()``.
LFW_FACES = 100


def _digits_csv() -> Path | None:
    """scikit-learn's ``datasets/data/digits.csv.gz``, found without importing scikit-learn."""
    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def load_digits() -> Loaded:
    """sklearn's 8x8 digits: uint8 (1797, 1, 8, 8) in 0..16, 17 levels, labels 0..9.

    Reads the CSV that scikit-learn ships (rows of 64 pixels + the label), which is what
    ``sklearn.datasets.load_digits()`` does, without the ~3 s import of scikit-learn; falls back
    to ``load_digits()`` when the file is not where it is expected.
    """
    csv = _digits_csv()
    if csv is not None:
        try:
            table = np.loadtxt(csv, delimiter=",")
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"the 'digits' dataset: cannot read {csv}: {exc}") from exc
        if table.shape != (1797, 65):
            raise DataError(f"the 'digits' dataset: {csv} has shape {table.shape}, expected (1797, 65)")
        pixels, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    else:
        bunch = require("sklearn.datasets", "scikit-learn", "the 'digits' dataset").load_digits()
        pixels, target = bunch.images, bunch.target
    images = np.rint(pixels).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    return Loaded(images, labels_from_array(target, len(images), "digits"), levels=17)


def load_faces() -> Loaded:
    """scikit-image's LFW faces: uint8 (100, 1, 25, 25), 256 levels, no labels.

    The array is read from the file that scikit-image installs (``skimage/data/lfw_subset.npy``)
    rather than through ``skimage.data.lfw_subset()``, which may try to download a missing file.
    """
    skdata = require("skimage.data", "scikit-image", "the 'faces' dataset")
    path = Path(skdata.__file__).parent / "lfw_subset.npy"
    if not path.is_file():
        raise DataError(
            f"the 'faces' dataset: {path} is missing from this scikit-image install "
            "(reinstall it with: pip install --force-reinstall scikit-image)"
        )
    try:
        faces = np.load(path, allow_pickle=False)[:LFW_FACES]
    except (OSError, ValueError) as exc:
        raise DataError(f"the 'faces' dataset: cannot read {path}: {exc}") from exc
    return Loaded(images_from_array(faces, str(path)), None, levels=256)


#: Embedded dataset loaders by name.
LOADERS = {"digits": load_digits, "faces": load_faces}
DATASETS = tuple(LOADERS)
