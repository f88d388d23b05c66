"""Inputs shared by the Gaussian op tests."""

from __future__ import annotations

import torch

from fastgen import reference

# Odd sizes, a single element, rows longer than a CPU tile (4096) and an empty batch.
SHAPES = [(3, 37), (1,), (7,), (5, 2, 3), (1, 5000), (2, 9000), (64, 1), (0, 3), (4, 0)]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def gaussian_inputs(shape, dtype, device, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """mu in N(0, 1) and logvar in [-3, 3], both in ``dtype`` on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=generator, dtype=torch.float64)
    logvar = torch.rand(shape, generator=generator, dtype=torch.float64) * 6 - 3
    return mu.to(device=device, dtype=dtype), logvar.to(device=device, dtype=dtype)


def reference_noise(shape, seed: torch.Tensor) -> torch.Tensor:
    """fastgen's noise for ``seed`` in float64 (the kernels draw it in their compute dtype)."""
    return reference.standard_normal(shape, int(seed), dtype=torch.float64)


def as_float64(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().to("cpu", torch.float64) for t in tensors]
