"""Plain-PyTorch flow ops: the oracle of the flow kernels (``fastgen.ops.flows``).

Direction: ``reverse=False`` is the density direction x -> z that ``log_prob`` runs; the
log-determinant returned is log|det dy/dx| per sample. float16/bfloat16 are computed in float32
(output rounded once, log-determinant kept in float32), like the kernels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fastgen.reference.gaussian import philox4x32_10

# How the raw conditioner output r becomes the log-scale s of y = x * exp(s) + t:
#   "tanh_clamp": s = clamp * tanh(r / clamp)  (soft clamp, |s| < clamp; FrEIA/zuko style)
#   "sigmoid":    s = log(sigmoid(r + 2))       (Glow: scale in (0, 1), 0.88 at r = 0)
#   "exp":        s = r                         (RealNVP, unbounded)
SCALE_MAPS = ("tanh_clamp", "sigmoid", "exp")


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def coupling_log_scale(raw: torch.Tensor, scale: str = "tanh_clamp", clamp: float = 2.0) -> torch.Tensor:
    """The log-scale s of an affine coupling from the raw conditioner output (see SCALE_MAPS)."""
    if scale == "tanh_clamp":
        return clamp * torch.tanh(raw / clamp)
    if scale == "sigmoid":
        return F.logsigmoid(raw + 2.0)
    return raw


def _per_sample_sum(t: torch.Tensor) -> torch.Tensor:
    # An explicit row length, not -1: reshape(0, -1) of an empty batch is ambiguous and raises.
    return t.reshape(t.shape[0], math.prod(t.shape[1:])).sum(1)


def affine_coupling(x: torch.Tensor, shift: torch.Tensor, log_scale: torch.Tensor, reverse: bool = False,
                    scale: str = "tanh_clamp", clamp: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """y = x * exp(s) + shift (reverse: x = (y - shift) * exp(-s)), s = coupling_log_scale(log_scale).

    Returns ``(y, logdet)`` with logdet (N,) = sum of s per sample (negated for reverse).
    """
    acc = _acc(x.dtype)
    s = coupling_log_scale(log_scale.to(acc), scale, clamp)
    if reverse:
        y = (x.to(acc) - shift.to(acc)) * torch.exp(-s)
        logdet = -_per_sample_sum(s)
    else:
        y = x.to(acc) * torch.exp(s) + shift.to(acc)
        logdet = _per_sample_sum(s)
    return y.to(x.dtype), logdet


def additive_coupling(x: torch.Tensor, shift: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """y = x + shift (reverse: x = y - shift); the log-determinant is zero."""
    return x - shift if reverse else x + shift


def _channel_view(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return p.reshape((1, -1) + (1,) * (x.dim() - 2))


def actnorm(x: torch.Tensor, bias: torch.Tensor, log_scale: torch.Tensor,
            reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Glow's ActNorm on (N, C, *spatial): y = (x + bias) * exp(log_scale) per channel
    (reverse: x = y * exp(-log_scale) - bias); logdet (N,) = spatial size * sum(log_scale)."""
    acc = _acc(x.dtype)
    b, ls = _channel_view(bias.to(acc), x), _channel_view(log_scale.to(acc), x)
    y = x.to(acc) * torch.exp(-ls) - b if reverse else (x.to(acc) + b) * torch.exp(ls)
    spatial = math.prod(x.shape[2:])
    logdet = (log_scale.to(acc).sum() * (-spatial if reverse else spatial)).expand(x.shape[0])
    return y.to(x.dtype), logdet.clone()


def invertible_conv1x1(x: torch.Tensor, weight: torch.Tensor, reverse: bool = False,
                       logabsdet: torch.Tensor | None = None,
                       weight_inverse: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Glow's invertible 1x1 convolution on (N, C, *spatial) with a (C, C) weight:
    y[:, i] = sum_j W[i, j] x[:, j] (reverse: W^-1 instead); logdet (N,) = +-spatial * log|det W|."""
    acc = _acc(x.dtype)
    w = weight.to(acc)
    if logabsdet is None:
        logabsdet = torch.linalg.slogdet(w).logabsdet
    matrix = (weight_inverse.to(acc) if weight_inverse is not None else torch.linalg.inv(w)) if reverse else w
    spatial = math.prod(x.shape[2:])
    flat = x.to(acc).reshape(x.shape[0], x.shape[1], spatial)  # not -1: ambiguous for an empty x
    y = torch.matmul(matrix, flat).reshape(x.shape)
    logdet = (logabsdet.to(acc) * (-spatial if reverse else spatial)).expand(x.shape[0])
    return y.to(x.dtype), logdet.clone()


def squeeze2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Space-to-depth: (N, C, H, W) -> (N, C * f * f, H / f, W / f); output channel
    c * f * f + i * f + j holds input pixel (f * h + i, f * w + j) of channel c (Glow's order)."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // factor, factor, w // factor, factor)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(n, c * factor * factor, h // factor, w // factor)


def unsqueeze2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Depth-to-space, the inverse of :func:`squeeze2d`."""
    n, c, h, w = x.shape
    x = x.reshape(n, c // (factor * factor), factor, factor, h, w)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(n, c // (factor * factor), h * factor, w * factor)


def conv_conditioner(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor | None, w2: torch.Tensor,
                     b2: torch.Tensor | None, w3: torch.Tensor, b3: torch.Tensor | None,
                     keep1: torch.Tensor | None = None, keep2: torch.Tensor | None = None) -> torch.Tensor:
    """Glow's coupling network: conv k1 x k1 -> ReLU -> conv 1x1 -> ReLU -> conv k3 x k3, each with
    "same" padding (odd kernels). ``keep1``/``keep2``: dropout masks multiplying the ReLUs' outputs,
    (N*H*W, hidden) with rows in (n, h, w) order (the op's layout), or None."""

    def masked(h: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        if keep is None:
            return h
        n, c, height, width = h.shape
        return h * keep.reshape(n, height, width, c).permute(0, 3, 1, 2)

    h = masked(F.relu(F.conv2d(x, w1, b1, padding=w1.shape[-1] // 2)), keep1)
    h = masked(F.relu(F.conv2d(h, w2, b2)), keep2)
    return F.conv2d(h, w3, b3, padding=w3.shape[-1] // 2)


def conditioner_dropout_masks(seed: int, positions: int, hidden: tuple[int, int], dropout: float,
                              dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The dropout masks conv_conditioner draws from ``seed``: (keep1 (positions, H1), keep2
    (positions, H2)), rows in (n, h, w) order, 0 or 1 / (1 - dropout).

    Both masks are one stream, keep1 then keep2, flattened row-major: element e takes output
    e % 4 of Philox4x32-10 at counter e // 4 (key ``seed``, fastgen's noise generator) and is
    kept when those 32 bits are >= floor(dropout * 2^32).
    """
    h1, h2 = hidden
    total = positions * (h1 + h2)
    bits = torch.stack(philox4x32_10(torch.arange((total + 3) // 4, dtype=torch.int64), seed), dim=1)
    kept = (bits.reshape(-1)[:total] >= math.floor(dropout * 2.0 ** 32)).to(dtype)
    kept = (kept * torch.tensor(1.0 / (1.0 - dropout), dtype=dtype)).to(device)
    return kept[:positions * h1].view(positions, h1), kept[positions * h1:].view(positions, h2)
