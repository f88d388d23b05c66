"""Discrete images given to a likelihood (``log_prob`` of PixelCNN, ``bits_per_dim`` of the flows).

A discrete likelihood is defined for images on the grid of ``levels`` values only. Values off
it (an image scaled to [0, 255] instead of [0, 1], dequantized data, NaN) used to be clamped
and rounded into some level without a word, giving a finite but meaningless figure; here they
are an error naming the argument. The check costs one reduction and one host synchronisation
per call, so it sits in the evaluation methods, not in the training steps.
"""

from __future__ import annotations

import torch

# A float within this fraction of a level of the grid counts as on it (float16 and bfloat16
# images of 256 levels are not exactly on the grid).
GRID_TOLERANCE = 0.25


def image_levels(x: torch.Tensor, levels: int, name: str = "x") -> torch.Tensor:
    """The integer levels (int64, shape of ``x``) of images given as integers in [0, levels - 1]
    or as floats k / (levels - 1) in [0, 1]."""
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"{name} must hold images as integer levels or floats in [0, 1], got {x.dtype}")
    if not x.dtype.is_floating_point:
        if x.numel() and (bool(x.min() < 0) or bool(x.max() > levels - 1)):
            raise ValueError(f"{name} must hold integer levels in [0, {levels - 1}], got values in "
                             f"[{int(x.min())}, {int(x.max())}]")
        return x.long()
    scaled = x.float() * (levels - 1)
    k = torch.round(scaled)
    if x.numel():
        worst = torch.stack([(scaled - k).abs().max(), -x.min().float(), x.max().float() - 1]).nan_to_num(float("inf"))
        off_grid, below, above = worst.tolist()
        if below > 0 or above > 0 or off_grid > GRID_TOLERANCE:
            raise ValueError(f"{name} must hold images in [0, 1] on the grid of {levels} levels (k / {levels - 1}), "
                             f"got values in [{float(x.min()):.4g}, {float(x.max()):.4g}]"
                             + ("" if below > 0 or above > 0 else f", {off_grid:.2f} of a level off the grid"))
    return k.long()
