"""Which dtype a flow layer computes in."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fastgen.ops._dispatch import accumulation_dtype


def parameter_dtype(module: nn.Module, default: torch.dtype) -> torch.dtype:
    """The dtype of ``module``'s first floating-point parameter (``default`` if it has none)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), default)


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 when it is float16/bfloat16 (slogdet and triangular solves need it)."""
    return t.to(accumulation_dtype(t.dtype))


def _cast(t: torch.Tensor | tuple, dtype: torch.dtype) -> torch.Tensor | tuple:
    return tuple(part.to(dtype) for part in t) if isinstance(t, tuple) else t.to(dtype)


def in_layer_dtype(transform: Callable, x: torch.Tensor | tuple, network: nn.Module) -> tuple:
    """``transform(x) -> (y, logdet)`` for a layer whose sub-network (conditioner, prior) is
    ``network``. A float16/bfloat16 ``x`` into a wider layer is transformed in the layer's dtype
    and y returned in x's: the flow ops compute half-precision inputs in float32, and rounding
    the shift and log-scale to x's dtype first would cost the inverse its accuracy. x and y may
    be tuples (Split's (kept, z)); logdet stays in the layer's dtype.
    """
    x_dtype = (x[0] if isinstance(x, tuple) else x).dtype
    dtype = parameter_dtype(network, x_dtype)
    if accumulation_dtype(x_dtype) == x_dtype or dtype.itemsize <= x_dtype.itemsize:  # not half, or no wider
        return transform(x)
    y, logdet = transform(_cast(x, dtype))
    return _cast(y, x_dtype), logdet
