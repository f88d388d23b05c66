"""Reference implementation of the Gaussian op family and of fastgen's noise stream.

The noise stream is the contract that the CPU, CUDA and Triton kernels follow (see
``kernels/include/fastgen/gaussian_math.h``): element ``i`` of a tensor drawn with a 64-bit
``seed`` comes from Philox4x32-10 at counter ``i // 4`` followed by Box-Muller. The kernels
compute the transcendental functions with their own approximations, so they agree with
this reference to float rounding, not bit for bit.
"""

from __future__ import annotations

import math

import torch

_MASK32 = 0xFFFFFFFF
_PHILOX_MUL = (0xD2511F53, 0xCD9E8D57)
_PHILOX_WEYL = (0x9E3779B9, 0xBB67AE85)


def _mulhilo32(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of ``a * b`` for a 32-bit constant ``a`` and uint32 values in int64.

    The 64-bit product would overflow int64, so ``b`` is split in 16-bit halves.
    """
    low_product = a * (b & 0xFFFF)  # < 2**48
    high_product = a * (b >> 16)  # < 2**48
    middle = high_product + (low_product >> 16)
    hi = middle >> 16
    lo = ((middle & 0xFFFF) << 16) | (low_product & 0xFFFF)
    return hi, lo


def philox4x32_10(block: torch.Tensor, seed: int) -> tuple[torch.Tensor, ...]:
    """Philox4x32-10 on counters ``(block lo32, block hi32, 0, 0)`` with key ``seed``.

    Parameters
    ----------
    block : torch.Tensor
        int64 counter values, any shape.
    seed : int
        64-bit key (negative values are taken as their two's-complement bits).

    Returns
    -------
    tuple of four torch.Tensor
        The four uint32 outputs, held in int64 tensors shaped like ``block``.
    """
    c0 = block & _MASK32
    c1 = (block >> 32) & _MASK32
    c2 = torch.zeros_like(block)
    c3 = torch.zeros_like(block)
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    for _ in range(10):
        hi0, lo0 = _mulhilo32(_PHILOX_MUL[0], c0)
        hi1, lo1 = _mulhilo32(_PHILOX_MUL[1], c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _PHILOX_WEYL[0]) & _MASK32
        k1 = (k1 + _PHILOX_WEYL[1]) & _MASK32
    return c0, c1, c2, c3


def standard_normal(
    shape: tuple[int, ...] | torch.Size,
    seed: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Standard normal noise from fastgen's counter-based stream.

    Parameters
    ----------
    shape : tuple of int
        Shape of the result; elements are numbered in row-major order.
    seed : int
        64-bit seed.
    dtype : torch.dtype
        Result dtype. The math runs in float64 for float64 and in float32 otherwise.

    Returns
    -------
    torch.Tensor
        Noise of the given shape and dtype.
    """
    numel = math.prod(shape)
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    blocks = torch.arange((numel + 3) // 4, dtype=torch.int64, device=device)
    x0, x1, x2, x3 = philox4x32_10(blocks, int(seed))
    scale = 2.0**-24

    def pair(x_even: torch.Tensor, x_odd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = ((x_even >> 8) + 1).to(compute) * scale
        v = (x_odd >> 8).to(compute) * scale
        radius = torch.sqrt(-2.0 * torch.log(u))
        theta = 2.0 * math.pi * v
        return radius * torch.cos(theta), radius * torch.sin(theta)

    n0, n1 = pair(x0, x1)
    n2, n3 = pair(x2, x3)
    noise = torch.stack((n0, n1, n2, n3), dim=1).reshape(-1)[:numel]
    return noise.reshape(shape).to(dtype)


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def _per_sample_sum(values: torch.Tensor) -> torch.Tensor:
    return values.reshape(values.shape[0], math.prod(values.shape[1:])).sum(dim=1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``mu + exp(logvar / 2) * eps``, computed in float32 (float64 for float64 input)."""
    compute = _compute_dtype(mu)
    z = mu.to(compute) + torch.exp(0.5 * logvar.to(compute)) * eps.to(compute)
    return z.to(mu.dtype)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over all dims but the first: shape (N,)."""
    compute = _compute_dtype(mu)
    mu_c, logvar_c = mu.to(compute), logvar.to(compute)
    terms = 0.5 * (mu_c * mu_c + torch.exp(logvar_c) - 1.0 - logvar_c)
    return _per_sample_sum(terms).to(mu.dtype)


def reparameterize_with_kl(
    mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both :func:`reparameterize` and :func:`gaussian_kl`."""
    return reparameterize(mu, logvar, eps), gaussian_kl(mu, logvar)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """Per-sample log N(z; 0, I) summed over all dims but the first: shape (N,)."""
    compute = _compute_dtype(z)
    z_c = z.to(compute)
    per_sample_dim = math.prod(z.shape[1:])
    log_prob = -0.5 * _per_sample_sum(z_c * z_c) - per_sample_dim * 0.5 * math.log(2 * math.pi)
    return log_prob.to(z.dtype)
