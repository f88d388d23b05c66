"""Causal (masked) convolutions: the building blocks of WaveNet and PixelCNN.

``causal_conv1d`` is the dilated causal 1-D convolution of WaveNet. The kernels never build
the left-padded copy of the input that the usual ``F.pad`` + ``F.conv1d`` recipe allocates:
each tap reads the input shifted in place.
"""

from __future__ import annotations

import torch

from fastgen import reference
from fastgen.ops._checks import check_float_tensor
from fastgen.ops._dispatch import use_kernel


def _check_rank3(value: object, name: str, layout: str) -> torch.Tensor:
    check_float_tensor(value, name, min_dim=0)
    assert isinstance(value, torch.Tensor)
    if value.dim() != 3:
        raise ValueError(f"{name} must have 3 dimensions {layout}, got shape {tuple(value.shape)}")
    return value


def _check_same(value: torch.Tensor, name: str, x: torch.Tensor) -> None:
    if value.dtype != x.dtype:
        raise TypeError(f"{name} must have the dtype of x ({x.dtype}), got {value.dtype}")
    if value.device != x.device:
        raise ValueError(f"{name} must be on the device of x ({x.device}), got {value.device}")


def _check_causal_conv1d(x: object, weight: object, bias: object, dilation: object) -> None:
    _check_rank3(x, "x", "(N, C_in, T)")
    _check_rank3(weight, "weight", "(C_out, C_in, K)")
    assert isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor)
    _check_same(weight, "weight", x)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight must have C_in = x.shape[1] = {x.shape[1]} input channels (dim 1), "
            f"got shape {tuple(weight.shape)}"
        )
    if weight.shape[2] < 1:
        raise ValueError(f"weight must have a kernel size K >= 1 (dim 2), got shape {tuple(weight.shape)}")
    if bias is not None:
        check_float_tensor(bias, "bias", min_dim=0)
        assert isinstance(bias, torch.Tensor)
        _check_same(bias, "bias", x)
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"bias must have shape (C_out,) = ({weight.shape[0]},), got {tuple(bias.shape)}")
    if isinstance(dilation, bool) or not isinstance(dilation, int):
        raise TypeError(f"dilation must be an int, got {type(dilation).__name__}")
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    dilation: int = 1,
) -> torch.Tensor:
    """Dilated causal 1-D convolution (WaveNet): the output at time t sees inputs up to t only.

    ``y[n, o, t] = bias[o] + sum_{c, k} weight[o, c, k] * x[n, c, t - (K - 1 - k) * dilation]``,
    with the terms of negative time left out. This equals
    ``F.conv1d(F.pad(x, ((K - 1) * dilation, 0)), weight, bias, dilation=dilation)`` without
    building the padded copy of ``x``.

    Parameters
    ----------
    x : torch.Tensor
        Input, shape (N, C_in, T). float32, float16, bfloat16 (accumulated in float32) or
        float64. Non-contiguous inputs are fine.
    weight : torch.Tensor
        Filters in the ``nn.Conv1d`` layout, shape (C_out, C_in, K) with any K >= 1; dtype and
        device of ``x``. ``weight[:, :, K - 1]`` multiplies the current time step.
    bias : torch.Tensor, optional
        Shape (C_out,), dtype and device of ``x``.
    dilation : int
        Spacing of the taps, >= 1. The receptive field is ``(K - 1) * dilation + 1`` steps.

    Returns
    -------
    torch.Tensor
        ``y``, shape (N, C_out, T) (the input's length), dtype of ``x``. Differentiable in
        ``x``, ``weight`` and ``bias``.
    """
    _check_causal_conv1d(x, weight, bias, dilation)
    if use_kernel("causal_conv1d", x):
        return torch.ops.fastgen.causal_conv1d(x, weight, bias, dilation)
    return reference.causal_conv1d(x, weight, bias, dilation)
