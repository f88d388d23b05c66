"""Datasets for training and evaluating generative models (see docs/TRAINING.md, "Data").

Images are integer levels: uint8 tensors (N, C, H, W) with values in ``[0, levels - 1]``.
Models see ``to_unit(x, levels)`` in [0, 1]; likelihood models see ``dequantize(x, levels)`` in
[0, 1) and report ``bits_per_dim(discrete_nll_from_density(log_p, dims, levels), dims)``.

Files, one job each:
    images.py       ImageData, load_images (picks the reader, splits)
    audio.py        AudioData, load_audio (uint8 mu-law clips (N, 1, T) for WaveNet)
    synth_audio.py  "notes": synthesized organ / pluck / bowed / bell notes (numpy only)
    wav.py          read_wav, write_wav (RIFF parsed here), resample (scipy)
    mu_law.py       mu_law_encode, mu_law_decode
    embedded.py     "digits" (scikit-learn), "faces" (scikit-image)
    folder.py       a folder of png/jpg/bmp/gif files (pillow)
    numpy_files.py  .npy / .npz
    idx.py          MNIST idx files
    cifar.py        CIFAR-10 python batches
    arrays.py       array layout / dtype checks shared by the readers
    split.py        the deterministic (stratified) train/test split
    transforms.py   to_unit, dequantize, bits_per_dim, discrete_nll_from_density
    errors.py       DataError

Audio is 8-bit mu-law codes: uint8 tensors (N, 1, T), 256 levels; ``mu_law_decode`` gives the
waveform in [-1, 1].

Nothing is downloaded. scikit-learn, scikit-image, pillow and scipy are imported only by the
loaders that need them; a missing one is a DataError that names the package to install.
"""

from fastgen.data.audio import AUDIO_DATASETS, AudioData, load_audio
from fastgen.data.embedded import DATASETS
from fastgen.data.errors import DataError
from fastgen.data.images import ImageData, load_images
from fastgen.data.mu_law import mu_law_decode, mu_law_encode
from fastgen.data.transforms import bits_per_dim, dequantize, discrete_nll_from_density, to_unit
from fastgen.data.wav import read_wav, write_wav

__all__ = [
    "AUDIO_DATASETS",
    "AudioData",
    "DATASETS",
    "DataError",
    "ImageData",
    "bits_per_dim",
    "dequantize",
    "discrete_nll_from_density",
    "load_audio",
    "load_images",
    "mu_law_decode",
    "mu_law_encode",
    "read_wav",
    "to_unit",
    "write_wav",
]
