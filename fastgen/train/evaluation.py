"""Test metrics shared by the recipes: likelihood baselines and sample quality."""

from __future__ import annotations

import functools

import torch
from torch import nn

from fastgen.data import ImageData, to_unit

DIGITS_SHAPE, DIGITS_LEVELS = (1, 8, 8), 17


def is_digits_like(data: ImageData) -> bool:
    """Whether the embedded digits classifier applies (8x8 greyscale, 17 levels)."""
    return tuple(data.shape) == DIGITS_SHAPE and data.levels == DIGITS_LEVELS


@functools.lru_cache(maxsize=8)
def _histogram_baseline_bpd(data: ImageData) -> float:
    from fastgen.metrics import histogram_baseline

    return float(histogram_baseline(data.train, data.test, data.levels)["bits_per_dim"])


def histogram_baseline_bpd(data: ImageData) -> float:
    """Bits/dim of the independent per-pixel histogram model (fit on train, scored on test)."""
    return _histogram_baseline_bpd(data)


@functools.lru_cache(maxsize=1)
def frechet_floor() -> float:
    from fastgen.metrics import frechet_floor_train_vs_test

    return float(frechet_floor_train_vs_test())


def sample_quality(model: nn.Module, sample_fn, data: ImageData, device: torch.device, *, n: int,
                   seed: int) -> dict[str, float]:
    """Fréchet distance and class coverage of ``n`` samples against the test split (digits only)."""
    if not is_digits_like(data):
        return {}
    from fastgen.metrics import digit_sample_quality

    generator = torch.Generator(device=device).manual_seed(seed + 1)
    samples = sample_fn(model, n, generator).float().cpu()
    quality = digit_sample_quality(samples, to_unit(data.test, data.levels).float())
    keep = ("frechet_distance", "max_share", "classes_covered", "entropy_bits")
    result = {k: float(quality[k]) for k in keep if k in quality}
    result["frechet_floor"] = frechet_floor()
    return result
