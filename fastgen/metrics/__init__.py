"""Evaluation metrics: likelihood units, the histogram baseline and digit sample quality.

Depends on torch and numpy only; the digits themselves (for the FD floor and tests) need
scikit-learn.
"""

from fastgen.metrics.classifier import DigitClassifier, digits_train_test_split, load_digits_classifier
from fastgen.metrics.likelihood import histogram_baseline, nats_to_bits_per_dim
from fastgen.metrics.sample_quality import (
    class_coverage,
    digit_sample_quality,
    frechet_distance,
    frechet_floor_train_vs_test,
)

bits_per_dim = nats_to_bits_per_dim  # the name the docs and fastgen.data use for the same conversion

__all__ = [
    "DigitClassifier",
    "bits_per_dim",
    "class_coverage",
    "digit_sample_quality",
    "digits_train_test_split",
    "frechet_distance",
    "frechet_floor_train_vs_test",
    "histogram_baseline",
    "load_digits_classifier",
    "nats_to_bits_per_dim",
]
