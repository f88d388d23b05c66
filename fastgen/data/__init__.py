"""Datasets for training and evaluating generative models (see docs/TRAINING.md, "Data").

Images are integer levels: uint8 tensors (N, C, H, W) with values in ``[0, levels - 1]``.
Models see ``to_unit(x, levels)`` in [0, 1]; likelihood models see ``dequantize(x, levels)`` in
[0, 1) and report ``bits_per_dim(discrete_nll_from_density(log_p, dims, levels), dims)``.

Files, one job each:
    images.py       ImageData, load_images (picks the reader, splits)
    embedded.py     "digits" (scikit-learn), "faces" (scikit-image)
    folder.py       a folder of png/jpg/bmp/gif files (pillow)
    numpy_files.py  .npy / .npz
    idx.py          MNIST idx files
    cifar.py        CIFAR-10 python batches
    arrays.py       array layout / dtype checks shared by the readers
    split.py        the deterministic (stratified) train/test split
    transforms.py   to_unit, dequantize, bits_per_dim, discrete_nll_from_density
    errors.py       DataError

Nothing is downloaded. scikit-learn, scikit-image and pillow are imported only by the loaders
that need them; a missing one is a DataError that names the package to install.
"""

from fastgen.data.embedded import DATASETS
from fastgen.data.errors import DataError
from fastgen.data.images import ImageData, load_images
from fastgen.data.transforms import bits_per_dim, dequantize, discrete_nll_from_density, to_unit

__all__ = [
    "DATASETS",
    "DataError",
    "ImageData",
    "bits_per_dim",
    "dequantize",
    "discrete_nll_from_density",
    "load_images",
    "to_unit",
]
