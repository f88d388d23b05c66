"""Mu-law companding: audio in [-1, 1] <-> integer codes in ``[0, levels - 1]`` (mu = levels - 1).

WaveNet predicts a categorical distribution over these codes. The companding spends more codes
on quiet samples (where the ear is most sensitive) than a linear quantiser would::

    y = sign(x) * log1p(mu * |x|) / log1p(mu)      in [-1, 1]
    code = round((y + 1) / 2 * mu)                  in [0, mu]

``mu_law_decode`` maps each code to the centre of its bin, so ``encode(decode(c)) == c`` for
every code and ``decode(encode(x))`` is ``x`` up to half a bin.
"""

from __future__ import annotations

import math

import torch

from fastgen.data.errors import DataError

#: Largest number of levels (16-bit codes).
MAX_LEVELS = 65536


def _check_levels(levels: int) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or not 2 <= levels <= MAX_LEVELS:
        raise DataError(f"levels must be an integer in [2, {MAX_LEVELS}], got {levels!r}")
    return levels


def mu_law_encode(x: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """Mu-law codes of float samples.

    Parameters
    ----------
    x : torch.Tensor
        Float samples of any shape, nominally in [-1, 1]; values outside (and +-inf) are clipped.
        A numpy array is accepted too.
    levels : int
        Number of codes, in [2, 65536]; mu = levels - 1.

    Returns
    -------
    torch.Tensor
        int64, the shape and device of ``x``, values in ``[0, levels - 1]``.

    Raises
    ------
    DataError
        ``x`` not floating point or containing NaN; bad ``levels``.
    """
    mu = _check_levels(levels) - 1
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"x must be a float tensor, got {type(x).__name__} ({exc})") from None
    if not x.is_floating_point():
        raise DataError(f"x must be a floating point tensor of samples in [-1, 1], got {x.dtype}")
    if torch.isnan(x).any():
        raise DataError("x contains NaN; mu-law encoding needs samples in [-1, 1]")
    # float32 at least: half precision cannot resolve the bins near 0 for large mu.
    x = x.to(torch.promote_types(x.dtype, torch.float32)).clamp(-1.0, 1.0)
    y = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return torch.round((y + 1.0) * (mu / 2.0)).clamp(0, mu).to(torch.int64)


def mu_law_decode(codes: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """Float samples at the centres of the mu-law bins: the inverse of :func:`mu_law_encode`.

    Parameters
    ----------
    codes : torch.Tensor
        Integer codes of any shape and integer dtype (uint8, int64, ...), in ``[0, levels - 1]``.
        A numpy array is accepted too.
    levels : int
        Number of codes, in [2, 65536]; mu = levels - 1.

    Returns
    -------
    torch.Tensor
        float32, the shape and device of ``codes``, values in [-1, 1] (code 0 -> -1,
        code ``levels - 1`` -> 1).

    Raises
    ------
    DataError
        (a ``ValueError``) ``codes`` not an integer tensor or out of range; bad ``levels``.
    """
    mu = _check_levels(levels) - 1
    if not isinstance(codes, torch.Tensor):
        try:
            codes = torch.as_tensor(codes)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"codes must be an integer tensor, got {type(codes).__name__} ({exc})") from None
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise DataError(f"codes must be an integer tensor, got {codes.dtype}")
    if codes.numel() > 0:
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi > mu:
            raise DataError(f"codes must be in [0, {mu}] for levels={levels}, got values in [{lo}, {hi}]")
    # float32 is enough: its error is far below half a bin even for 65536 levels (tested).
    y = codes.to(torch.float32) * (2.0 / mu) - 1.0
    x = torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu
    return x.clamp(-1.0, 1.0)
