"""Normalizing-flow ops: each flow step's elementwise work and its log-determinant in one kernel.

An eager affine coupling is a chain of small ops (clamp, exp, multiply, add, a per-sample sum of
the log-scale) with a tensor written between each; here the transform and the log-determinant
are one pass forward and one pass backward, and the same holds for ActNorm and the invertible
1x1 convolution. ``reverse=False`` is the density direction x -> z (what ``log_prob`` runs);
every op returns the per-sample log|det J| (N,) of the direction it ran. float16/bfloat16 inputs
are computed in float32 inside, the log-determinant stays float32.

Squeeze, unsqueeze and the channel split/merge move no arithmetic: they are views plus (for
squeeze) one copy, and run as plain PyTorch.
"""

from __future__ import annotations

import math

import torch

from fastgen import reference
from fastgen.ops._autocast import autocast_inputs
from fastgen.ops._checks import check_device, check_float_tensor, check_like, check_same
from fastgen.ops._dispatch import accumulation_dtype, use_kernel
from fastgen.reference.flows import SCALE_MAPS

# Above this the float32 soft clamp clamp * tanh(r / clamp) overflows (inf * 0 = NaN); a scale
# of exp(1e4) is far past any useful one anyway.
MAX_CLAMP = 1e4


def _check_input(x: object, name: str = "x", min_dim: int = 2) -> torch.Tensor:
    x = check_float_tensor(x, name, min_dim=min_dim)
    return x


def _check_scale(scale: object, clamp: object) -> float:
    if scale not in SCALE_MAPS:
        raise ValueError(f"scale must be one of {', '.join(repr(s) for s in SCALE_MAPS)}, got {scale!r}")
    return check_clamp(clamp)


def check_clamp(clamp: object) -> float:
    """The soft clamp of ``affine_coupling``: a finite number in (0, MAX_CLAMP]."""
    if isinstance(clamp, bool) or not isinstance(clamp, (int, float)):
        raise TypeError(f"clamp must be a float, got {type(clamp).__name__}")
    if not (math.isfinite(clamp) and 0 < clamp <= MAX_CLAMP):
        raise ValueError(f"clamp must be a finite number > 0 and <= {MAX_CLAMP:.0e}, got {clamp}")
    return float(clamp)


def _check_reverse(reverse: object) -> bool:
    if not isinstance(reverse, bool):
        raise TypeError(f"reverse must be a bool, got {type(reverse).__name__}")
    return reverse


def affine_coupling(
    x: torch.Tensor,
    shift: torch.Tensor,
    log_scale: torch.Tensor,
    *,
    reverse: bool = False,
    scale: str = "tanh_clamp",
    clamp: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine coupling transform and its log-determinant, fused.

    ::

        s = clamp * tanh(log_scale / clamp)     scale="tanh_clamp" (|s| < clamp)
            log(sigmoid(log_scale + 2))         scale="sigmoid" (Glow)
            log_scale                           scale="exp" (unbounded, RealNVP)
        y = x * exp(s) + shift                  reverse=False
        y = (x - shift) * exp(-s)               reverse=True (the exact inverse)
        logdet = +-sum(s) over all but the batch dimension

    Parameters
    ----------
    x : torch.Tensor
        The transformed half, shape (N, ...) (any rank >= 1 after the batch dimension);
        float32, float64, float16 or bfloat16 (computed in float32).
    shift, log_scale : torch.Tensor
        Conditioner outputs, same shape, dtype and device as ``x``; ``log_scale`` is the raw
        output that the ``scale`` map turns into the log-scale ``s``.
    reverse : bool
        Run the inverse (z -> x) instead.
    scale : {"tanh_clamp", "sigmoid", "exp"}
        How ``log_scale`` becomes ``s``; bounded forms keep exp(s) finite, which is what keeps
        coupling flows free of NaN.
    clamp : float
        Bound of ``s`` for ``scale="tanh_clamp"`` (> 0; ignored by the other maps).

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        ``y`` (shape and dtype of ``x``) and ``logdet`` (N,), float32 for float16/bfloat16
        inputs, else the dtype of ``x``. Differentiable in ``x``, ``shift`` and ``log_scale``.
    """
    x, shift, log_scale = autocast_inputs("affine_coupling", x, shift, log_scale)
    x = _check_input(x)
    check_like(shift, "shift", x, "x")
    check_like(log_scale, "log_scale", x, "x")
    reverse = _check_reverse(reverse)
    clamp = _check_scale(scale, clamp)
    if not use_kernel("affine_coupling", x):
        return reference.affine_coupling(x, shift, log_scale, reverse, scale, clamp)
    return torch.ops.fastgen.affine_coupling(x, shift, log_scale, reverse, scale, clamp)


def additive_coupling(x: torch.Tensor, shift: torch.Tensor, *, reverse: bool = False) -> torch.Tensor:
    """The additive (NICE) coupling: ``y = x + shift`` (reverse: ``x - shift``); log-determinant 0.

    Parameters
    ----------
    x, shift : torch.Tensor
        Same shape (N, ...), dtype and device.
    reverse : bool
        Subtract instead (the inverse).

    Returns
    -------
    torch.Tensor
        ``y``, shape and dtype of ``x``.
    """
    x, shift = autocast_inputs("additive_coupling", x, shift)
    x = _check_input(x)
    check_like(shift, "shift", x, "x")
    reverse = _check_reverse(reverse)
    if not use_kernel("additive_coupling", x):
        return reference.additive_coupling(x, shift, reverse)
    return torch.ops.fastgen.additive_coupling(x, shift, reverse)


def _check_channel_param(value: object, name: str, x: torch.Tensor) -> torch.Tensor:
    """A per-channel parameter: (C,), or the broadcastable (1, C, 1, ...) layout some flow
    libraries keep it in (returned as a (C,) view)."""
    value = check_float_tensor(value, name, min_dim=0)
    check_same(value, name, x)
    c = x.shape[1]
    if value.dim() == x.dim() and value.shape[1] == c and value.numel() == c:
        value = value.reshape(c)
    if tuple(value.shape) != (c,):
        raise ValueError(f"{name} must have shape (C,) = ({c},) or (1, {c}, 1, ...), got {tuple(value.shape)}")
    return value


def actnorm(x: torch.Tensor, bias: torch.Tensor, log_scale: torch.Tensor, *,
            reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Glow's activation normalisation, a per-channel affine map, and its log-determinant.

    ::

        y = (x + bias) * exp(log_scale)         reverse=False
        y = x * exp(-log_scale) - bias          reverse=True
        logdet = +-prod(spatial) * sum(log_scale)

    Parameters
    ----------
    x : torch.Tensor
        (N, C, *spatial): (N, C) vectors, (N, C, T) sequences, (N, C, H, W) images.
    bias, log_scale : torch.Tensor
        (C,) (or (1, C, 1, ...)), dtype and device of ``x``.
    reverse : bool
        Run the inverse.

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        ``y`` like ``x`` and ``logdet`` (N,) (float32 for float16/bfloat16 inputs).
    """
    x, bias, log_scale = autocast_inputs("actnorm", x, bias, log_scale)
    x = _check_input(x, min_dim=2)
    bias = _check_channel_param(bias, "bias", x)
    log_scale = _check_channel_param(log_scale, "log_scale", x)
    reverse = _check_reverse(reverse)
    if not use_kernel("actnorm", x):
        return reference.actnorm(x, bias, log_scale, reverse)
    return torch.ops.fastgen.actnorm(x, bias, log_scale, reverse)


def _square(value: object, name: str, x: torch.Tensor) -> torch.Tensor:
    """A (C, C) matrix on x's device, in x's dtype or, for a float16/bfloat16 x, float32 (the
    kernels compute those in float32, so a float32 matrix is used unrounded)."""
    value = check_float_tensor(value, name, min_dim=0)
    wide = accumulation_dtype(x.dtype)
    if value.dtype not in (x.dtype, wide):
        also = f" or {wide}" if wide != x.dtype else ""
        raise TypeError(f"{name} must have the dtype of x ({x.dtype}){also}, got {value.dtype}")
    check_device(value, name, x)
    c = x.shape[1]
    if value.dim() == 4 and tuple(value.shape[2:]) == (1, 1):
        value = value[:, :, 0, 0]  # the nn.Conv2d layout (C, C, 1, 1)
    if tuple(value.shape) != (c, c):
        raise ValueError(f"{name} must have shape (C, C) = ({c}, {c}) (or ({c}, {c}, 1, 1)), got {tuple(value.shape)}")
    return value


def invertible_conv1x1(
    x: torch.Tensor,
    weight: torch.Tensor,
    *,
    reverse: bool = False,
    logabsdet: torch.Tensor | None = None,
    weight_inverse: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Glow's invertible 1x1 convolution (a channel mixing per position) and its log-determinant.

    ::

        y[:, i] = sum_j W[i, j] x[:, j]         reverse=False (W^-1 for reverse=True)
        logdet = +-prod(spatial) * log|det W|

    Parameters
    ----------
    x : torch.Tensor
        (N, C, *spatial).
    weight : torch.Tensor
        (C, C) or the ``nn.Conv2d`` layout (C, C, 1, 1); device and dtype of ``x`` (or float32
        for a float16/bfloat16 ``x``: float32 parameters are then used unrounded).
    reverse : bool
        Apply the inverse.
    logabsdet : torch.Tensor or None
        log|det W| as a 0-dim floating-point tensor on x's device when the caller knows it (an
        LU parameterisation has it as sum(log|s|)); None computes it with
        ``torch.linalg.slogdet`` (in float32 for float16/bfloat16).
    weight_inverse : torch.Tensor or None
        W^-1 for ``reverse=True`` when the caller has it cached (dtypes as ``weight``); None
        solves for it (in float32 for float16/bfloat16, and keeps it in float32).

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        ``y`` like ``x`` and ``logdet`` (N,). Differentiable in ``x``, ``weight`` and
        ``logabsdet``.
    """
    x, weight, logabsdet, weight_inverse = autocast_inputs("invertible_conv1x1", x, weight, logabsdet, weight_inverse)
    x = _check_input(x, min_dim=2)
    weight = _square(weight, "weight", x)
    reverse = _check_reverse(reverse)
    if weight_inverse is not None:
        weight_inverse = _square(weight_inverse, "weight_inverse", x)
    # float16/bfloat16 x: log|det W| and W^-1 are computed and kept in float32 (the logdet is
    # float32; rounding them to x's dtype cost ~0.2% of the logdet and an ulp of the inverse).
    wide = accumulation_dtype(x.dtype)
    if logabsdet is not None:
        logabsdet = check_float_tensor(logabsdet, "logabsdet", min_dim=0)
        if logabsdet.dim() != 0:
            raise ValueError(f"logabsdet must be a 0-dim tensor, got shape {tuple(logabsdet.shape)}")
        check_device(logabsdet, "logabsdet", x)
        logabsdet = logabsdet.to(wide)
    if reverse and weight_inverse is None:
        try:
            weight_inverse = torch.linalg.inv(weight.to(wide))
        except torch.linalg.LinAlgError as error:
            raise ValueError(f"weight must be invertible for reverse=True ({error})") from error
    if not use_kernel("invertible_conv1x1", x):
        return reference.invertible_conv1x1(x, weight, reverse, logabsdet, weight_inverse)
    if logabsdet is None:
        logabsdet = torch.linalg.slogdet(weight.to(wide)).logabsdet
    return torch.ops.fastgen.invertible_conv1x1(x, weight_inverse if reverse else weight, logabsdet, reverse)


def check_factor(factor: object) -> int:
    """The space-to-depth factor of ``squeeze2d``/``unsqueeze2d``: an int >= 1."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an int >= 1, got {factor!r}")
    return factor


def _check_factor(x: torch.Tensor, factor: object, *, squeeze: bool) -> int:
    factor = check_factor(factor)
    if x.dim() != 4:
        raise ValueError(f"x must have 4 dimensions (N, C, H, W), got shape {tuple(x.shape)}")
    if squeeze and (x.shape[2] % factor or x.shape[3] % factor):
        raise ValueError(f"x must have H and W divisible by factor = {factor}, got shape {tuple(x.shape)}")
    if not squeeze and x.shape[1] % (factor * factor):
        raise ValueError(f"x must have C divisible by factor**2 = {factor * factor}, got shape {tuple(x.shape)}")
    return factor


def squeeze2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Space-to-depth (N, C, H, W) -> (N, C*f*f, H/f, W/f), Glow's channel order (an exact
    permutation: log-determinant 0). See :func:`fastgen.reference.flows.squeeze2d`."""
    x = check_float_tensor(x, "x", min_dim=0)
    return reference.squeeze2d(x, _check_factor(x, factor, squeeze=True))


def unsqueeze2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Depth-to-space (N, C, H, W) -> (N, C/(f*f), H*f, W*f), the inverse of :func:`squeeze2d`."""
    x = check_float_tensor(x, "x", min_dim=0)
    return reference.unsqueeze2d(x, _check_factor(x, factor, squeeze=False))


def split_channels(x: torch.Tensor, first: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Split (N, C, ...) into channels [:first] and [first:] (views; default first = C // 2)."""
    x = check_float_tensor(x, "x", min_dim=2)
    c = x.shape[1]
    first = c // 2 if first is None else first
    if isinstance(first, bool) or not isinstance(first, int) or not 0 < first < c:
        raise ValueError(f"first must be an int in [1, C - 1] = [1, {c - 1}], got {first!r}")
    return x[:, :first], x[:, first:]


def merge_channels(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Concatenate two halves along the channels, the inverse of :func:`split_channels`."""
    x1 = check_float_tensor(x1, "x1", min_dim=2)
    x2 = check_float_tensor(x2, "x2", min_dim=2)
    if x1.shape[0] != x2.shape[0] or x1.shape[2:] != x2.shape[2:]:
        raise ValueError(f"x1 and x2 must agree in every dimension but 1, got {tuple(x1.shape)} and {tuple(x2.shape)}")
    check_same(x2, "x2", x1, "x1")
    return torch.cat((x1, x2), dim=1)
