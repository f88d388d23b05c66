"""Causal (masked) convolutions: the building blocks of WaveNet and PixelCNN.

``causal_conv1d`` is the dilated causal 1-D convolution of WaveNet. The kernels never build
the left-padded copy of the input that the usual ``F.pad`` + ``F.conv1d`` recipe allocates:
each tap reads the input shifted in place.
"""

from __future__ import annotations

import torch

from fastgen import reference
from fastgen.ops._autocast import autocast_inputs
from fastgen.ops._checks import check_bias, check_dilation, check_rank, check_same
from fastgen.ops._dispatch import use_kernel


def _check_causal_conv1d(x: object, weight: object, bias: object, dilation: object) -> None:
    x = check_rank(x, "x", 3, "(N, C_in, T)")
    weight = check_rank(weight, "weight", 3, "(C_out, C_in, K)")
    check_same(weight, "weight", x)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight must have C_in = x.shape[1] = {x.shape[1]} input channels (dim 1), "
            f"got shape {tuple(weight.shape)}"
        )
    if weight.shape[2] < 1:
        raise ValueError(f"weight must have a kernel size K >= 1 (dim 2), got shape {tuple(weight.shape)}")
    check_bias(bias, weight.shape[0], x)
    check_dilation(dilation, weight.shape[2] - 1, "(K - 1)")


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
    x, weight, bias = autocast_inputs("causal_conv1d", x, weight, bias)
    _check_causal_conv1d(x, weight, bias, dilation)
    if use_kernel("causal_conv1d", x):
        return torch.ops.fastgen.causal_conv1d(x, weight, bias, dilation)
    return reference.causal_conv1d(x, weight, bias, dilation)
