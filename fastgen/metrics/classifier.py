"""A small CNN for the 8x8 sklearn digits, trained once, whose weights ship in the package.

Its penultimate activations are the feature space for the Fréchet distance of digit samples
and its predictions give the class shares (see :mod:`fastgen.metrics.sample_quality`).

Shipped weights (``digits_classifier.pt``, a float32 ``state_dict``, about 215 KB) were trained by
``scripts/train_digits_classifier.py``: seed 0, the stratified split of
:func:`digits_train_test_split` (1438 train / 359 test images), ±1 pixel shifts and random level
noise as augmentation, on one CPU thread in about 10 s (bit-for-bit reproducible).
Test accuracy: 97.77 % (351 / 359), 98.33 % on augmented test images; ``digits_classifier.json``
records it with the split, seed, date and torch version.
scikit-learn is needed only for the digits themselves, not to load the classifier.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "DIGITS_LEVELS",
    "INFO_PATH",
    "WEIGHTS_PATH",
    "DigitClassifier",
    "digits_train_test_split",
    "load_digits_classifier",
]

WEIGHTS_PATH = Path(__file__).with_name("digits_classifier.pt")
INFO_PATH = Path(__file__).with_name("digits_classifier.json")
DIGITS_LEVELS = 17  # sklearn digits hold integer levels 0..16


class DigitClassifier(nn.Module):
    """CNN for (N, 1, 8, 8) float images in [0, 1]: two conv blocks, a 128-d feature layer, 10 logits.

    Shapes: 1x8x8 -> conv3x3(32) -> pool -> 32x4x4 -> conv3x3(64) -> pool -> 64x2x2 -> 256
    -> linear(128) + ReLU (``features``) -> linear(10) (``forward``). Pooling twice keeps the
    parameter count (53k) and the shipped file small.
    """

    feature_dim = 128
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Dropout(0.3), nn.Linear(256, self.feature_dim), nn.ReLU())
        self.head = nn.Linear(self.feature_dim, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations, shape (N, 128), for x of shape (N, 1, 8, 8) in [0, 1]."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"expected images of shape (N, 1, 8, 8), got {tuple(x.shape)}")
        return self.fc(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape (N, 10), for x of shape (N, 1, 8, 8) in [0, 1]."""
        return self.head(self.features(x))


@functools.cache
def _load(device: str) -> DigitClassifier:
    if not WEIGHTS_PATH.exists():
        raise FileNotFoundError(
            f"shipped classifier weights are missing: {WEIGHTS_PATH} (package data not installed? "
            "regenerate with scripts/train_digits_classifier.py)"
        )
    # The random initialisation is overwritten at once; forked so that loading the classifier
    # (lazily, at a training run's first evaluation) leaves the global RNG where it was: a run
    # resumed after that point draws what an uninterrupted one draws.
    with torch.random.fork_rng(devices=[]):
        model = DigitClassifier()
    # weights_only=True: the file is a plain state_dict, so no pickled code is ever executed.
    model.load_state_dict(torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True))
    model.requires_grad_(False)
    return model.to(device).eval()


def load_digits_classifier(device: str | torch.device = "cpu") -> DigitClassifier:
    """The shipped classifier in eval mode with frozen parameters.

    Cached per device: every call returns the same instance, so do not train or modify it.

    Parameters
    ----------
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    DigitClassifier
    """
    return _load(str(torch.device(device)))


def digits_train_test_split():
    """The embedded digits split the classifier was trained and evaluated on.

    The same split every model trains on: ``fastgen.data.load_images("digits")`` (seeded,
    stratified by label), so the classifier never saw a test image the models are scored on.

    Returns
    -------
    tuple of Tensor
        ``(x_train, y_train, x_test, y_test)``: images uint8 (N, 1, 8, 8) with levels 0..16,
        labels int64 (N,); 1438 train and 359 test images.
    """
    from fastgen.data import load_images

    digits = load_images("digits")
    return digits.train, digits.train_labels, digits.test, digits.test_labels
