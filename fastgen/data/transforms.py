"""From integer levels to what models see, and the likelihood accounting back to discrete data.

Data are integer levels ``x`` in ``[0, levels - 1]`` (uint8 tensors). Models that output pixels
see ``to_unit(x) = x / (levels - 1)`` in [0, 1]; likelihood models (flows) see dequantized values
``y = (x + u) / levels`` with ``u ~ U[0, 1)^D``, in [0, 1)^D. Bits per dimension always refer to
the *discrete* data, so a density on ``y`` is converted with :func:`discrete_nll_from_density`
before :func:`bits_per_dim`. Nothing here is image-specific (audio with 256 mu-law levels works
the same way).
"""

from __future__ import annotations

import math

import torch

from fastgen.data.errors import DataError

LN2 = math.log(2.0)


def _check_levels(levels) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise DataError(f"levels must be an integer >= 2, got {levels!r}")
    return levels


def _check_dims(dims) -> int:
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise DataError(f"dims must be a positive integer (dimensions per example), got {dims!r}")
    return dims


def _check_integer_tensor(x, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} must be a torch.Tensor of integer levels, got {type(x).__name__}")
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise DataError(f"{name} must hold integer levels (uint8 or another integer dtype), got {x.dtype}")


def to_unit(x: torch.Tensor, levels: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer levels to floats in [0, 1]: ``x / (levels - 1)``.

    Parameters
    ----------
    x : torch.Tensor
        Integer dtype (usually uint8), any shape, values in ``[0, levels - 1]`` (not checked, so
        that no host sync happens inside a training step).
    levels : int
        Number of levels (17 for digits, 256 for 8-bit images).
    dtype : torch.dtype
        Floating dtype of the result.

    Returns
    -------
    torch.Tensor
        Same shape and device as ``x``; 0 maps to 0.0 and ``levels - 1`` to 1.0.
    """
    _check_integer_tensor(x, "x")
    levels = _check_levels(levels)
    return x.to(dtype) / (levels - 1)


def dequantize(
    x: torch.Tensor,
    levels: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Uniform dequantization: ``y = (x + u) / levels`` with ``u ~ U[0, 1)``, elementwise.

    Each level ``k`` becomes the interval ``[k / levels, (k + 1) / levels)``, so a density
    model of ``y`` on [0, 1)^D gives a bound on the discrete likelihood of ``x`` (see
    :func:`discrete_nll_from_density`).

    Parameters
    ----------
    x : torch.Tensor
        Integer dtype, any shape, values in ``[0, levels - 1]`` (not checked: no host sync).
    levels : int
        Number of levels.
    generator : torch.Generator, optional
        Source of the noise (on ``x.device``); default: the global generator.
    dtype : torch.dtype
        Floating dtype of the result.
    noise : torch.Tensor, optional
        The uniforms ``u`` in [0, 1), shape of ``x``, when the caller draws them (e.g. from a
        per-step generator); ``generator`` is then unused.

    Returns
    -------
    torch.Tensor
        Same shape and device as ``x``, values in [0, 1). Values that rounding in ``dtype``
        would push to exactly 1.0 are clamped to the largest number below 1.
    """
    _check_integer_tensor(x, "x")
    levels = _check_levels(levels)
    if not dtype.is_floating_point:
        raise DataError(f"dtype must be a floating dtype, got {dtype}")
    if noise is None:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=dtype)
    elif noise.shape != x.shape:
        raise DataError(f"noise must have the shape of x {tuple(x.shape)}, got {tuple(noise.shape)}")
    else:
        u = noise.to(device=x.device, dtype=dtype)
    y = (x.to(dtype) + u) / levels
    # In float32, 255 + u rounds up to 256 when u > 1 - 2**-17: keep the interval half-open.
    return y.clamp_(max=1.0 - torch.finfo(dtype).eps / 2)  # the largest number below 1


def bits_per_dim(nll_nats, dims: int):
    """Negative log-likelihood in nats (per example) to bits per dimension.

    Parameters
    ----------
    nll_nats : torch.Tensor or float
        NLL of the *discrete* data, in nats, per example (any shape, e.g. (N,)) or a mean.
    dims : int
        Dimensions per example, ``C * H * W`` (``ImageData.dims``).

    Returns
    -------
    torch.Tensor or float
        ``nll_nats / (dims * ln 2)``, same type and shape as ``nll_nats``.
        E.g. a uniform model of 8-bit data has ``nll = D * ln 256``, i.e. exactly 8 bits/dim.
    """
    dims = _check_dims(dims)
    return nll_nats / (dims * LN2)


def discrete_nll_from_density(log_density_nats, dims: int, levels: int):
    """Upper bound on the discrete NLL (nats) from a density on dequantized data.

    Accounting. A likelihood model gives ``log p(y)``, a density on ``y = (x + u) / levels`` in
    [0, 1)^D (the output of :func:`dequantize`). On the scale of ``x + u`` (bins of width 1) the
    density is ``p(y) * levels**-D``, and the probability of the discrete ``x`` is the integral of
    that density over its unit bin, so by Jensen's inequality

        ``log P(x) = log E_u[p(y) levels**-D] >= E_u[log p(y)] - D * log(levels)``,

    i.e. ``NLL_discrete(x) <= -log p(y) + D * log(levels)`` in expectation over ``u``
    (the variational dequantization bound with uniform noise). So the number this returns,
    averaged over examples, is an upper bound on the discrete NLL; pass it to
    :func:`bits_per_dim`. A model that is uniform on [0, 1)^D (``log p = 0``) gives
    ``D * log(levels)``, i.e. ``log2(levels)`` bits/dim.

    ``log_density_nats`` must be the density of ``y`` itself: if the model works on a transformed
    variable (e.g. ``logit(alpha + (1 - 2 alpha) y)`` or ``y - 0.5``), add the log-determinant of
    that preprocessing to its log-density first.

    Parameters
    ----------
    log_density_nats : torch.Tensor or float
        ``log p(y)`` per example, in nats, shape (N,) (or a scalar mean).
    dims : int
        Dimensions per example, ``D = C * H * W``.
    levels : int
        Number of levels the data were dequantized with.

    Returns
    -------
    torch.Tensor or float
        ``-log_density_nats + dims * log(levels)``, same type and shape.
    """
    dims = _check_dims(dims)
    levels = _check_levels(levels)
    return -log_density_nats + dims * math.log(levels)
