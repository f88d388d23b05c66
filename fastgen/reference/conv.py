"""Plain-PyTorch convolution ops: the oracle of the causal convolution kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  dilation: int = 1) -> torch.Tensor:
    """Dilated causal 1-D convolution: left-pad by ``(K - 1) * dilation``, then ``F.conv1d``.

    x (N, C_in, T), weight (C_out, C_in, K), bias (C_out,) or None -> (N, C_out, T), where
    ``y[..., t]`` depends on ``x[..., t - (K-1-k) * dilation]`` only. float16/bfloat16 are
    computed in float32 and rounded once, like the kernels.
    """
    dtype = x.dtype
    if dtype in (torch.float16, torch.bfloat16):
        x, weight = x.float(), weight.float()
        bias = None if bias is None else bias.float()
    pad = (weight.shape[-1] - 1) * dilation
    if x.shape[1] == 0 or weight.shape[0] == 0:
        # No input or output channels, which F.conv1d mishandles or rejects: an empty sum.
        y = x.new_zeros((x.shape[0], weight.shape[0], x.shape[2])) + (x.sum() + weight.sum()) * 0
        return (y if bias is None else y + bias[:, None]).to(dtype)
    if x.shape[-1] == 0:
        # F.conv1d rejects an input shorter than the receptive field: pad one step more and
        # drop the extra output (keeps the result differentiable).
        return F.conv1d(F.pad(x, (pad + 1, 0)), weight, bias, dilation=dilation)[..., 1:].to(dtype)
    return F.conv1d(F.pad(x, (pad, 0)), weight, bias, dilation=dilation).to(dtype)
