"""Triton kernels of the Gaussian op family: reparameterize (+ KL), KL, standard-normal log-density.

Every input is viewed as N rows (the first dim) of D = numel / N columns. Each program owns a
BLOCK_R x BLOCK_C tile, so both few long rows (N=1, D=10^6) and many short rows (D=1) fill the
grid. Per-row sums are written as one partial per (row, column block) and reduced by
``partials.sum(1)`` in torch: deterministic, unlike atomics.

The noise follows fastgen's stream (``kernels/include/fastgen/gaussian_math.h``): element
i = row * D + col takes output i % 4 of Philox4x32-10 at counter i // 4 with the 64-bit seed as
key, then Box-Muller. The seed is read on the device (``tl.load``), never with ``.item()``, so
no host sync happens and the ops can be captured in CUDA graphs.

Math runs in float32 (float64 for float64 inputs); results take the dtype of ``mu`` / ``z``.
"""

from __future__ import annotations

import contextlib
import math

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import row_tile, wrap

# Elements per program and warps per program. 2048 elements at 8 warps is 8 elements per
# thread: enough in flight to stream memory, and few enough registers for the 4-word Philox
# state per element. Tests raise BLOCK because the interpreter's cost is per program.
BLOCK = 2048
NUM_WARPS = 8

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@triton.jit
def _philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten Philox rounds on uint32 counters (c0..c3) with uint32 key (k0, k1)."""
    for _ in tl.static_range(10):
        # umulhi gives the high half of the 64-bit product, a uint32 multiply the low half.
        hi0 = tl.umulhi(c0, 0xD2511F53)
        lo0 = c0 * 0xD2511F53
        hi1 = tl.umulhi(c2, 0xCD9E8D57)
        lo1 = c2 * 0xCD9E8D57
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = k0 + 0x9E3779B9
        k1 = k1 + 0xBB67AE85
    return c0, c1, c2, c3


@triton.jit
def _standard_normal(offs, seed_ptr, ACC: tl.constexpr):
    """Standard normal noise of flat elements ``offs`` (int64) from the seed at ``seed_ptr``."""
    seed = tl.load(seed_ptr)
    k0 = seed.to(tl.uint32)  # truncation keeps the low 32 bits
    k1 = (seed >> 32).to(tl.uint32)
    block = offs >> 2
    zero = tl.zeros(offs.shape, tl.uint32)
    x0, x1, x2, x3 = _philox4x32_10(block.to(tl.uint32), (block >> 32).to(tl.uint32), zero, zero, k0, k1)
    # One normal per element: pick the Box-Muller pair of this lane, then cos for even lanes,
    # sin for odd ones as cos(2 pi (v - 1/4)). The shifts of v are exact (multiples of 2^-24)
    # and keep the angle in [-pi, pi), where the GPU's fast cos is accurate.
    lane = offs & 3
    first_pair = lane < 2
    x_even = tl.where(first_pair, x0, x2)
    x_odd = tl.where(first_pair, x1, x3)
    u = ((x_even >> 8) + 1).to(ACC) * 5.9604644775390625e-08  # (0, 1]: log(u) is finite
    v = (x_odd >> 8).to(ACC) * 5.9604644775390625e-08  # [0, 1)
    v = v - tl.where((lane & 1) == 1, 0.25, 0.0)
    v = tl.where(v >= 0.5, v - 1.0, v)
    return tl.sqrt(-2.0 * tl.log(u)) * tl.cos(6.283185307179586 * v)


@triton.jit
def _forward_kernel(mu_ptr, logvar_ptr, eps_ptr, seed_ptr, z_ptr, partial_ptr, N, D, n_col_blocks,
                    WRITE_Z: tl.constexpr, HAS_EPS: tl.constexpr, WRITE_KL: tl.constexpr,
                    ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows, col_block, offs, mask = row_tile(N, D, n_col_blocks, BLOCK_R, BLOCK_C)
    # Upcast right after the load (also works around the interpreter's bf16 arithmetic).
    mu = tl.load(mu_ptr + offs, mask=mask, other=0.0).to(ACC)
    logvar = tl.load(logvar_ptr + offs, mask=mask, other=0.0).to(ACC)
    std = tl.exp(0.5 * logvar)
    if WRITE_Z:
        if HAS_EPS:
            eps = tl.load(eps_ptr + offs, mask=mask, other=0.0).to(ACC)
        else:
            eps = _standard_normal(offs, seed_ptr, ACC)
        tl.store(z_ptr + offs, (mu + std * eps).to(z_ptr.dtype.element_ty), mask=mask)
    if WRITE_KL:
        term = tl.where(mask, 0.5 * (mu * mu + std * std - 1.0 - logvar), 0.0)
        tl.store(partial_ptr + rows * n_col_blocks + col_block, tl.sum(term, axis=1), mask=rows < N)


@triton.jit
def _backward_kernel(gz_ptr, gkl_ptr, mu_ptr, logvar_ptr, eps_ptr, seed_ptr, gmu_ptr, glogvar_ptr,
                     N, D, n_col_blocks, HAS_GZ: tl.constexpr, HAS_GKL: tl.constexpr,
                     HAS_EPS: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr,
                     BLOCK_C: tl.constexpr):
    rows, col_block, offs, mask = row_tile(N, D, n_col_blocks, BLOCK_R, BLOCK_C)
    mu = tl.load(mu_ptr + offs, mask=mask, other=0.0).to(ACC)
    logvar = tl.load(logvar_ptr + offs, mask=mask, other=0.0).to(ACC)
    std = tl.exp(0.5 * logvar)
    grad_mu = tl.zeros(offs.shape, ACC)
    grad_logvar = tl.zeros(offs.shape, ACC)
    if HAS_GZ:
        gz = tl.load(gz_ptr + offs, mask=mask, other=0.0).to(ACC)
        if HAS_EPS:
            eps = tl.load(eps_ptr + offs, mask=mask, other=0.0).to(ACC)
        else:  # regenerated, never stored: same counters as the forward pass
            eps = _standard_normal(offs, seed_ptr, ACC)
        grad_mu += gz
        grad_logvar += 0.5 * gz * std * eps
    if HAS_GKL:
        gkl = tl.load(gkl_ptr + rows, mask=rows < N, other=0.0).to(ACC)[:, None]
        grad_mu += gkl * mu
        grad_logvar += 0.5 * gkl * (std * std - 1.0)
    tl.store(gmu_ptr + offs, grad_mu.to(gmu_ptr.dtype.element_ty), mask=mask)
    tl.store(glogvar_ptr + offs, grad_logvar.to(glogvar_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _sum_squares_kernel(z_ptr, partial_ptr, N, D, n_col_blocks, ACC: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows, col_block, offs, mask = row_tile(N, D, n_col_blocks, BLOCK_R, BLOCK_C)
    z = tl.load(z_ptr + offs, mask=mask, other=0.0).to(ACC)
    tl.store(partial_ptr + rows * n_col_blocks + col_block, tl.sum(z * z, axis=1), mask=rows < N)


@triton.jit
def _log_prob_backward_kernel(grad_ptr, z_ptr, out_ptr, N, D, n_col_blocks, ACC: tl.constexpr,
                              BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows, col_block, offs, mask = row_tile(N, D, n_col_blocks, BLOCK_R, BLOCK_C)
    grad = tl.load(grad_ptr + rows, mask=rows < N, other=0.0).to(ACC)[:, None]
    z = tl.load(z_ptr + offs, mask=mask, other=0.0).to(ACC)
    tl.store(out_ptr + offs, (-grad * z).to(out_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------- host side


class _Tiling:
    """Rows N, columns D, tile shape and grid for a tensor whose first dim is the batch."""

    def __init__(self, x: torch.Tensor):
        if x.dim() < 1:
            raise ValueError(f"expected at least 1 dim (batch first), got shape {tuple(x.shape)}")
        self.n = x.shape[0]
        self.d = math.prod(x.shape[1:])
        self.block_c = min(triton.next_power_of_2(max(self.d, 1)), BLOCK)
        self.block_r = max(BLOCK // self.block_c, 1)
        self.n_col_blocks = triton.cdiv(self.d, self.block_c)
        # Flattened 1-D grid: axis 0 allows 2^31 - 1 programs, axes 1 and 2 only 65535.
        self.grid = (triton.cdiv(self.n, self.block_r) * self.n_col_blocks,)
        self.empty = self.n == 0 or self.d == 0
        self.acc = tl.float64 if x.dtype == torch.float64 else tl.float32
        self.acc_torch = torch.float64 if x.dtype == torch.float64 else torch.float32
        self.device = x.device

    def args(self):
        return (self.n, self.d, self.n_col_blocks)

    def meta(self):
        return dict(ACC=self.acc, BLOCK_R=self.block_r, BLOCK_C=self.block_c, num_warps=NUM_WARPS)

    def partials(self) -> torch.Tensor:
        return torch.empty((self.n, self.n_col_blocks), dtype=self.acc_torch, device=self.device)

    def guard(self):
        # Triton launches on the current device's current stream: make that the tensor's device.
        return torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext()


def _check_like(name: str, t: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    if t.shape != mu.shape:
        raise ValueError(f"{name} must have the shape of mu {tuple(mu.shape)}, got {tuple(t.shape)}")
    return t.contiguous()


def _seed(seed: torch.Tensor | None, mu: torch.Tensor) -> torch.Tensor:
    if seed is None:
        raise ValueError("seed is required when eps is None")
    if seed.numel() != 1:
        raise ValueError(f"seed must be a 0-dim int64 tensor, got shape {tuple(seed.shape)}")
    # No-op for a 0-dim int64 seed on mu's device; never .item(): that would sync the host.
    return seed.to(device=mu.device, dtype=torch.int64).reshape(())


def _forward(mu, logvar, eps, seed, write_z: bool, write_kl: bool):
    mu = mu.contiguous()
    logvar = _check_like("logvar", logvar, mu)
    has_eps = eps is not None
    if write_z:
        eps = _check_like("eps", eps, mu) if has_eps else None
        seed = mu if has_eps else _seed(seed, mu)  # an unused pointer argument gets mu
    tiles = _Tiling(mu)
    z = torch.empty_like(mu) if write_z else mu
    if tiles.empty:
        kl = torch.zeros(tiles.n, dtype=mu.dtype, device=mu.device)
        return z, kl
    partials = tiles.partials() if write_kl else mu
    with tiles.guard():
        wrap(_forward_kernel)[tiles.grid](
            mu, logvar, eps if has_eps else mu, seed if write_z else mu, z, partials, *tiles.args(),
            WRITE_Z=write_z, HAS_EPS=has_eps, WRITE_KL=write_kl, **tiles.meta())
    kl = partials.sum(1).to(mu.dtype) if write_kl else None
    return z, kl


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None,
                   seed: torch.Tensor | None) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps, with eps drawn from ``seed`` when it is None."""
    return _forward(mu, logvar, eps, seed, write_z=True, write_kl=False)[0]


def reparameterize_with_kl(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None,
                           seed: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, kl) in one pass over mu and logvar; kl has shape (N,)."""
    return _forward(mu, logvar, eps, seed, write_z=True, write_kl=True)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed per sample: shape (N,), dtype of mu."""
    return _forward(mu, logvar, None, None, write_z=False, write_kl=True)[1]


def reparameterize_backward(grad_z: torch.Tensor | None, grad_kl: torch.Tensor | None,
                            mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None,
                            seed: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_mu, grad_logvar) of z (weighted by grad_z) and of kl (weighted by grad_kl, shape (N,))."""
    mu = mu.contiguous()
    logvar = _check_like("logvar", logvar, mu)
    tiles = _Tiling(mu)
    grad_mu, grad_logvar = torch.empty_like(mu), torch.empty_like(mu)
    if tiles.empty or (grad_z is None and grad_kl is None):
        return grad_mu.zero_(), grad_logvar.zero_()
    has_gz, has_gkl, has_eps = grad_z is not None, grad_kl is not None, eps is not None
    if has_gz:
        grad_z = _check_like("grad_z", grad_z, mu)
        eps = _check_like("eps", eps, mu) if has_eps else None
        seed = None if has_eps else _seed(seed, mu)
    if has_gkl:
        if grad_kl.numel() != tiles.n:
            raise ValueError(f"grad_kl must have shape ({tiles.n},), got {tuple(grad_kl.shape)}")
        grad_kl = grad_kl.reshape(tiles.n).contiguous()
    with tiles.guard():
        wrap(_backward_kernel)[tiles.grid](
            grad_z if has_gz else mu, grad_kl if has_gkl else mu, mu, logvar,
            eps if has_gz and has_eps else mu, seed if has_gz and not has_eps else mu,
            grad_mu, grad_logvar, *tiles.args(),
            HAS_GZ=has_gz, HAS_GKL=has_gkl, HAS_EPS=has_eps, **tiles.meta())
    return grad_mu, grad_logvar


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed per sample: shape (N,), dtype of z."""
    z = z.contiguous()
    tiles = _Tiling(z)
    if tiles.empty:
        # D = 0: an empty sum and no normalizer.
        return torch.zeros(tiles.n, dtype=z.dtype, device=z.device)
    partials = tiles.partials()
    with tiles.guard():
        wrap(_sum_squares_kernel)[tiles.grid](z, partials, *tiles.args(), **tiles.meta())
    return (-0.5 * partials.sum(1) - tiles.d * _HALF_LOG_2PI).to(z.dtype)


def standard_normal_log_prob_backward(grad: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`standard_normal_log_prob` w.r.t. z: -grad[row] * z."""
    z = z.contiguous()
    tiles = _Tiling(z)
    out = torch.empty_like(z)
    if tiles.empty:
        return out
    if grad.numel() != tiles.n:
        raise ValueError(f"grad must have shape ({tiles.n},), got {tuple(grad.shape)}")
    grad = grad.reshape(tiles.n).contiguous()
    with tiles.guard():
        wrap(_log_prob_backward_kernel)[tiles.grid](grad, z, out, *tiles.args(), **tiles.meta())
    return out
