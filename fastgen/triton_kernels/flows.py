"""Triton kernels of the normalizing-flow ops: affine and additive coupling, ActNorm (forward and
backward). Semantics: the schemas at the end of ``csrc/ops.cpp`` and ``fastgen.reference.flows``.

Every kernel is one pass over memory, math in float32 (float64 for float64 inputs), each output
rounded once to the input dtype; log-determinants stay in the accumulation dtype.

* Couplings: x, shift, log_scale (N, ...) are N rows of D = numel / N columns. A program owns a
  BLOCK_R x BLOCK_C tile (as in ``gaussian.py``), so both few long rows and many short ones fill
  the grid. The per-sample logdet is written as one partial per (row, column block) and summed by
  torch (``partials.sum(1)``; a plain view when a row is one block): deterministic, no atomics.
  The backward needs no reduction (grad_logdet[n] is broadcast along its row) and recomputes
  s = map(log_scale) and, for reverse, y instead of saving them: reading three tensors is cheaper
  than writing and reading two more.
* additive_coupling: flat 1-D blocks over the contiguous tensor (fully vectorised).
* ActNorm: x is viewed as (N, C, S), S = prod(spatial) (1 for (N, C) inputs). A program owns a
  BLOCK_N x BLOCK_C x BLOCK_S tile: no per-element division to find the channel, and the tile is
  contiguous along S. The backward's per-channel sums of grad_bias and grad_log_scale are
  two-stage: each program walks its share of the sample blocks for one (C block, S block),
  accumulating in registers, and writes one partial per channel; torch sums the partials in a
  fixed order (deterministic; the buffer holds about TARGET_PROGRAMS x BLOCK_C values per
  output, small next to x). The logdet +-S * sum(log_scale) and the S * sum_n grad_logdet term of grad_log_scale
  touch only C or N values and are done by torch.

``clamp`` reaches the kernels as two float32 words, hi + lo: a Python float argument is float32 in
Triton (and the interpreter ignores a float64 annotation), and their sum in float64 carries clamp to
~1e-14 relative for float64 inputs (no device tensor, so no host-to-device copy).
"""

from __future__ import annotations

import math
import struct

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import accumulation_dtype, guard, row_tile, wrap

# Elements per program and warps per program: 2048 elements at 8 warps is 8 per thread, i.e.
# 16-byte vector loads for float16 and two for float32, with enough loads in flight per SM to
# stream memory. Tests raise the blocks under the interpreter, whose cost is per program.
BLOCK = 2048
ADDITIVE_BLOCK = 4096
NUM_WARPS = 8
# Programs the ActNorm backward aims for (a few waves on a 132-SM H100): the sample blocks are
# split among programs until the grid has about this many, each writing one partial per channel.
TARGET_PROGRAMS = 1024

# The scale maps of the reference (fastgen.reference.flows.SCALE_MAPS) as a kernel constant.
_SCALES = {"tanh_clamp": 0, "sigmoid": 1, "exp": 2}
_FLOAT32_MAX = 3.4028234663852886e38


# ----------------------------------------------------------------------------- device helpers


@triton.jit
def _log_scale(raw, clamp_hi, clamp_lo, SCALE: tl.constexpr, ACC: tl.constexpr):
    """(s, ds/draw) of the scale map SCALE (0 tanh_clamp, 1 sigmoid, 2 exp), finite for any finite
    raw, without libdevice (tanh and log1p written with exp and log)."""
    if SCALE == 0:
        # s = c tanh(u), u = raw / c; tanh(|u|) = (1 - e) / (1 + e) with e = exp(-2|u|) in (0, 1],
        # and its Taylor polynomial where 1 - e would cancel (|u| < 1/16: error < 1e-14 relative);
        # ds = 1 - tanh(u)^2 = 4e / (1 + e)^2, which keeps its relative accuracy for large |u|.
        # Adding the words to an ACC tensor makes the sum float64 for float64 (a scalar argument
        # is a float32 value when compiled, a Python float under the interpreter: both exact).
        c = (tl.zeros(raw.shape, ACC) + clamp_hi) + clamp_lo
        u = raw / c
        au = tl.abs(u)
        e = tl.exp(-2.0 * au)
        u2 = au * au
        poly = au * (1.0 + u2 * (-0.3333333333333333 + u2 * (0.13333333333333333 + u2 * (
            -0.05396825396825397 + u2 * 0.021869488536155203))))
        w = 1.0 + e
        th = tl.where(au < 0.0625, poly, (1.0 - e) / w)
        th = tl.where(u < 0, -th, th)
        s = c * th
        ds = 4.0 * e / (w * w)
    elif SCALE == 1:
        # s = log sigmoid(v), v = raw + 2: min(v, 0) - log1p(exp(-|v|)); log1p(e) = log(w) e / (w - 1)
        # with w = 1 + e keeps its relative accuracy for small e. ds = sigmoid(-v) = 1 - sigmoid(v).
        v = raw + 2.0
        e = tl.exp(-tl.abs(v))
        w = 1.0 + e
        d = w - 1.0
        log1p_e = tl.where(d == 0.0, e, tl.log(w) * (e / tl.where(d == 0.0, 1.0, d)))
        s = tl.minimum(v, 0.0) - log1p_e
        ds = tl.where(v >= 0, e / w, 1.0 / w)
    else:
        s = raw
        ds = tl.full(raw.shape, 1.0, ACC)
    return s, ds


@triton.jit
def _channel_tile(n_block, c_block, s_block, N, C, S, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                  BLOCK_S: tl.constexpr):
    """Channels (BLOCK_C,), int64 flat offsets and mask of an (N, C, S) tile (blocks are int64)."""
    offs_n = n_block * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_c = c_block * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_s = s_block * BLOCK_S + tl.arange(0, BLOCK_S)
    offs = offs_n[:, None, None] * (C * S) + offs_c[None, :, None] * S + offs_s[None, None, :]
    mask = (offs_n < N)[:, None, None] & (offs_c < C)[None, :, None] & (offs_s < S)[None, None, :]
    return offs_c, offs, mask


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _affine_forward_kernel(x_ptr, t_ptr, r_ptr, y_ptr, partial_ptr, N, D, n_col_blocks, clamp_hi, clamp_lo,
                           REVERSE: tl.constexpr, SCALE: tl.constexpr, ACC: tl.constexpr,
                           BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows, col_block, offs, mask = row_tile(N, D, n_col_blocks, BLOCK_R, BLOCK_C)
    # Upcast right after the load (also works around the interpreter's bf16 arithmetic).
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
    t = tl.load(t_ptr + offs, mask=mask, other=0.0).to(ACC)
    raw = tl.load(r_ptr + offs, mask=mask, other=0.0).to(ACC)
    s, _ = _log_scale(raw, clamp_hi, clamp_lo, SCALE, ACC)
    if REVERSE:
        y = (x - t) * tl.exp(-s)
        s = -s
    else:
        y = x * tl.exp(s) + t
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(partial_ptr + rows * n_col_blocks + col_block, tl.sum(tl.where(mask, s, 0.0), axis=1),
             mask=rows < N)


@triton.jit
def _affine_backward_kernel(gy_ptr, gl_ptr, x_ptr, t_ptr, r_ptr, gx_ptr, gt_ptr, gr_ptr, N, D, n_col_blocks,
                            clamp_hi, clamp_lo, HAS_GL: tl.constexpr, REVERSE: tl.constexpr,
                            SCALE: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr,
                            BLOCK_C: tl.constexpr):
    rows, col_block, offs, mask = row_tile(N, D, n_col_blocks, BLOCK_R, BLOCK_C)
    gy = tl.load(gy_ptr + offs, mask=mask, other=0.0).to(ACC)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
    t = tl.load(t_ptr + offs, mask=mask, other=0.0).to(ACC)
    raw = tl.load(r_ptr + offs, mask=mask, other=0.0).to(ACC)
    s, ds = _log_scale(raw, clamp_hi, clamp_lo, SCALE, ACC)
    if HAS_GL:
        gl = tl.load(gl_ptr + rows, mask=rows < N, other=0.0).to(ACC)[:, None]
    else:
        gl = tl.zeros((BLOCK_R, 1), ACC)
    if REVERSE:
        # y = (x - t) e^-s: dy/dx = e^-s, dy/dt = -e^-s, dy/ds = -y; logdet = -sum s.
        inv = tl.exp(-s)
        y = (x - t) * inv
        gx = gy * inv
        gt = -gx
        gs = -(gy * y) - gl
    else:
        # y = x e^s + t: dy/dx = e^s, dy/dt = 1, dy/ds = x e^s; logdet = sum s.
        gx = gy * tl.exp(s)
        gt = gy
        gs = gx * x + gl
    tl.store(gx_ptr + offs, gx.to(gx_ptr.dtype.element_ty), mask=mask)
    tl.store(gt_ptr + offs, gt.to(gt_ptr.dtype.element_ty), mask=mask)
    tl.store(gr_ptr + offs, (gs * ds).to(gr_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _additive_kernel(x_ptr, t_ptr, y_ptr, numel, REVERSE: tl.constexpr, ACC: tl.constexpr,
                     BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
    t = tl.load(t_ptr + offs, mask=mask, other=0.0).to(ACC)
    y = x - t if REVERSE else x + t
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _actnorm_forward_kernel(x_ptr, b_ptr, ls_ptr, y_ptr, N, C, S, n_c_blocks, n_s_blocks,
                            REVERSE: tl.constexpr, ACC: tl.constexpr, BLOCK_N: tl.constexpr,
                            BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    s_block = pid % n_s_blocks
    rest = pid // n_s_blocks
    offs_c, offs, mask = _channel_tile(rest // n_c_blocks, rest % n_c_blocks, s_block, N, C, S,
                                       BLOCK_N, BLOCK_C, BLOCK_S)
    c_ok = offs_c < C
    b = tl.load(b_ptr + offs_c, mask=c_ok, other=0.0).to(ACC)[None, :, None]
    ls = tl.load(ls_ptr + offs_c, mask=c_ok, other=0.0).to(ACC)[None, :, None]
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
    if REVERSE:
        y = x * tl.exp(-ls) - b
    else:
        y = (x + b) * tl.exp(ls)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _actnorm_backward_kernel(gy_ptr, x_ptr, b_ptr, ls_ptr, gx_ptr, partial_ptr, N, C, S, n_n_blocks,
                             n_c_blocks, n_s_blocks, n_split, REVERSE: tl.constexpr, ACC: tl.constexpr,
                             BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """grad_x, and partial[0 / 1, split * n_s_blocks + s_block, c] of grad_bias / grad_log_scale
    (without the grad_logdet term) over this program's share of the sample blocks."""
    pid = tl.program_id(0).to(tl.int64)
    s_block = pid % n_s_blocks
    rest = pid // n_s_blocks
    c_block = rest % n_c_blocks
    split = rest // n_c_blocks
    offs_c = c_block * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = offs_c < C
    b = tl.load(b_ptr + offs_c, mask=c_ok, other=0.0).to(ACC)
    ls = tl.load(ls_ptr + offs_c, mask=c_ok, other=0.0).to(ACC)
    e = tl.exp(-ls) if REVERSE else tl.exp(ls)
    e3 = e[None, :, None]
    b3 = b[None, :, None]
    sum_gy = tl.zeros((BLOCK_N, BLOCK_C, BLOCK_S), ACC)
    sum_gyx = tl.zeros((BLOCK_N, BLOCK_C, BLOCK_S), ACC)
    first = split * n_n_blocks // n_split
    last = (split + 1) * n_n_blocks // n_split
    for n_block in range(first, last):
        _, offs, mask = _channel_tile(n_block, c_block, s_block, N, C, S, BLOCK_N, BLOCK_C, BLOCK_S)
        gy = tl.load(gy_ptr + offs, mask=mask, other=0.0).to(ACC)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
        tl.store(gx_ptr + offs, (gy * e3).to(gx_ptr.dtype.element_ty), mask=mask)
        sum_gy += gy
        if REVERSE:
            sum_gyx += gy * x
        else:
            sum_gyx += gy * (x + b3)
    # forward y = (x + b) e^ls: d/db = e^ls, d/dls = y; reverse y = x e^-ls - b: d/db = -1, d/dls = -x e^-ls.
    g_b = tl.sum(tl.sum(sum_gy, axis=2), axis=0)
    g_ls = tl.sum(tl.sum(sum_gyx, axis=2), axis=0) * e
    if REVERSE:
        g_b = -g_b
        g_ls = -g_ls
    else:
        g_b = g_b * e
    row = split * n_s_blocks + s_block
    n_rows = n_split * n_s_blocks
    tl.store(partial_ptr + row * C + offs_c, g_b, mask=c_ok)
    tl.store(partial_ptr + (n_rows + row) * C + offs_c, g_ls, mask=c_ok)


# ----------------------------------------------------------------------------- host side


def _scale_code(scale: str) -> int:
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {', '.join(map(repr, _SCALES))}, got {scale!r}")
    return _SCALES[scale]


def _clamp_words(scale: str, clamp: float) -> tuple[float, float]:
    """clamp as float32 hi + lo (see the module docstring); unused, so unchecked, by the other maps."""
    if scale != "tanh_clamp":
        return 1.0, 0.0
    clamp = float(clamp)
    if not (math.isfinite(clamp) and 0 < clamp <= _FLOAT32_MAX):
        raise ValueError(f"clamp must be a finite number in (0, {_FLOAT32_MAX:g}], got {clamp}")
    hi = struct.unpack("f", struct.pack("f", clamp))[0]
    lo = struct.unpack("f", struct.pack("f", clamp - hi))[0]
    return hi, lo


def _like(name: str, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if t.shape != x.shape:
        raise ValueError(f"{name} must have the shape of x {tuple(x.shape)}, got {tuple(t.shape)}")
    return t.to(x.dtype).contiguous()


def _channel_param(name: str, p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if tuple(p.shape) != (x.shape[1],):
        raise ValueError(f"{name} must have shape (C,) = ({x.shape[1]},), got {tuple(p.shape)}")
    return p.contiguous()


def _grad_logdet(grad_logdet: torch.Tensor | None, n: int) -> torch.Tensor | None:
    if grad_logdet is None:
        return None
    if grad_logdet.numel() != n:
        raise ValueError(f"grad_logdet must have shape ({n},), got {tuple(grad_logdet.shape)}")
    return grad_logdet.reshape(n).contiguous()


class _Rows:
    """Tiling of an (N, ...) tensor as N rows of D columns (the couplings)."""

    def __init__(self, x: torch.Tensor):
        if x.dim() < 1:
            raise ValueError(f"x must have at least 1 dim (batch first), got shape {tuple(x.shape)}")
        self.n = x.shape[0]
        self.d = math.prod(x.shape[1:])
        self.block_c = min(triton.next_power_of_2(max(self.d, 1)), BLOCK)
        self.block_r = max(min(BLOCK // self.block_c, triton.next_power_of_2(max(self.n, 1))), 1)
        self.n_col_blocks = triton.cdiv(self.d, self.block_c)
        # Flattened 1-D grid: axis 0 allows 2^31 - 1 programs, axes 1 and 2 only 65535.
        self.grid = (triton.cdiv(self.n, self.block_r) * self.n_col_blocks,)
        self.empty = self.n == 0 or self.d == 0

    def args(self):
        return (self.n, self.d, self.n_col_blocks)

    def meta(self, dtype: torch.dtype):
        return dict(ACC=tl.float64 if dtype == torch.float64 else tl.float32, BLOCK_R=self.block_r,
                    BLOCK_C=self.block_c, num_warps=NUM_WARPS)


class _Channels:
    """Tiling of an (N, C, *spatial) tensor as (N, C, S) tiles (ActNorm)."""

    def __init__(self, x: torch.Tensor):
        if x.dim() < 2:
            raise ValueError(f"x must be (N, C, *spatial), got shape {tuple(x.shape)}")
        self.n, self.c = x.shape[0], x.shape[1]
        self.s = math.prod(x.shape[2:])
        self.block_s = min(triton.next_power_of_2(max(self.s, 1)), BLOCK)
        self.block_c = min(triton.next_power_of_2(max(self.c, 1)), max(BLOCK // self.block_s, 1))
        self.block_n = max(min(BLOCK // (self.block_s * self.block_c),
                               triton.next_power_of_2(max(self.n, 1))), 1)
        self.n_n_blocks = triton.cdiv(self.n, self.block_n)
        self.n_c_blocks = triton.cdiv(self.c, self.block_c)
        self.n_s_blocks = triton.cdiv(self.s, self.block_s)
        self.empty = x.numel() == 0

    def meta(self, dtype: torch.dtype):
        return dict(ACC=tl.float64 if dtype == torch.float64 else tl.float32, BLOCK_N=self.block_n,
                    BLOCK_C=self.block_c, BLOCK_S=self.block_s, num_warps=NUM_WARPS)


def affine_coupling(x: torch.Tensor, shift: torch.Tensor, log_scale: torch.Tensor, reverse: bool, scale: str,
                    clamp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, logdet): y = x e^s + shift (reverse: (x - shift) e^-s), s = map(log_scale), logdet (N,) =
    +-sum s per sample, float32 for float16/bfloat16 inputs, else the dtype of x."""
    code, (clamp_hi, clamp_lo) = _scale_code(scale), _clamp_words(scale, clamp)
    x = x.contiguous()
    shift, log_scale = _like("shift", shift, x), _like("log_scale", log_scale, x)
    rows = _Rows(x)
    acc = accumulation_dtype(x.dtype)
    y = torch.empty_like(x)
    if rows.empty:
        return y, torch.zeros(rows.n, dtype=acc, device=x.device)
    partials = torch.empty((rows.n, rows.n_col_blocks), dtype=acc, device=x.device)
    with guard(x.device):
        wrap(_affine_forward_kernel)[rows.grid](
            x, shift, log_scale, y, partials, *rows.args(), clamp_hi, clamp_lo, REVERSE=bool(reverse),
            SCALE=code, **rows.meta(x.dtype))
    logdet = partials.view(rows.n) if rows.n_col_blocks == 1 else partials.sum(1)
    return y, logdet


def affine_coupling_backward(grad_y: torch.Tensor, grad_logdet: torch.Tensor | None, x: torch.Tensor,
                             shift: torch.Tensor, log_scale: torch.Tensor, reverse: bool, scale: str,
                             clamp: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad_x, grad_shift, grad_log_scale) of :func:`affine_coupling`; grad_logdet None is zero."""
    code, (clamp_hi, clamp_lo) = _scale_code(scale), _clamp_words(scale, clamp)
    x = x.contiguous()
    shift, log_scale = _like("shift", shift, x), _like("log_scale", log_scale, x)
    grad_y = _like("grad_y", grad_y, x)
    rows = _Rows(x)
    grad_x, grad_shift, grad_log_scale = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
    if rows.empty:
        return grad_x, grad_shift, grad_log_scale
    grad_logdet = _grad_logdet(grad_logdet, rows.n)
    has_gl = grad_logdet is not None
    with guard(x.device):
        wrap(_affine_backward_kernel)[rows.grid](
            grad_y, grad_logdet if has_gl else x, x, shift, log_scale, grad_x, grad_shift, grad_log_scale,
            *rows.args(), clamp_hi, clamp_lo, HAS_GL=has_gl, REVERSE=bool(reverse), SCALE=code,
            **rows.meta(x.dtype))
    return grad_x, grad_shift, grad_log_scale


def additive_coupling(x: torch.Tensor, shift: torch.Tensor, reverse: bool) -> torch.Tensor:
    """y = x + shift (reverse: x - shift)."""
    x = x.contiguous()
    shift = _like("shift", shift, x)
    y = torch.empty_like(x)
    numel = x.numel()
    if numel == 0:
        return y
    acc = tl.float64 if x.dtype == torch.float64 else tl.float32
    with guard(x.device):
        wrap(_additive_kernel)[(triton.cdiv(numel, ADDITIVE_BLOCK),)](
            x, shift, y, numel, REVERSE=bool(reverse), ACC=acc, BLOCK=ADDITIVE_BLOCK, num_warps=NUM_WARPS)
    return y


def _actnorm_logdet(log_scale: torch.Tensor, tiles: _Channels, acc: torch.dtype,
                    reverse: bool) -> torch.Tensor:
    # The reference's order: sum(log_scale) in the accumulation dtype, times +-S.
    total = log_scale.to(acc).sum() * (-tiles.s if reverse else tiles.s)
    return total.expand(tiles.n).clone()


def actnorm(x: torch.Tensor, bias: torch.Tensor, log_scale: torch.Tensor,
            reverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, logdet): y = (x + bias) e^log_scale per channel (reverse: x e^-log_scale - bias),
    logdet (N,) = +-prod(spatial) sum(log_scale)."""
    x = x.contiguous()
    tiles = _Channels(x)
    bias, log_scale = _channel_param("bias", bias, x), _channel_param("log_scale", log_scale, x)
    acc = accumulation_dtype(x.dtype)
    y = torch.empty_like(x)
    logdet = _actnorm_logdet(log_scale, tiles, acc, bool(reverse))
    if tiles.empty:
        return y, logdet
    grid = (tiles.n_n_blocks * tiles.n_c_blocks * tiles.n_s_blocks,)
    with guard(x.device):
        wrap(_actnorm_forward_kernel)[grid](
            x, bias, log_scale, y, tiles.n, tiles.c, tiles.s, tiles.n_c_blocks, tiles.n_s_blocks,
            REVERSE=bool(reverse), **tiles.meta(x.dtype))
    return y, logdet


def actnorm_backward(grad_y: torch.Tensor, grad_logdet: torch.Tensor | None, x: torch.Tensor,
                     bias: torch.Tensor, log_scale: torch.Tensor,
                     reverse: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad_x, grad_bias, grad_log_scale) of :func:`actnorm`; grad_logdet None is zero."""
    x = x.contiguous()
    tiles = _Channels(x)
    bias, log_scale = _channel_param("bias", bias, x), _channel_param("log_scale", log_scale, x)
    grad_y = _like("grad_y", grad_y, x)
    grad_logdet = _grad_logdet(grad_logdet, tiles.n)
    acc = accumulation_dtype(x.dtype)
    reverse = bool(reverse)
    grad_x = torch.empty_like(x)
    if tiles.empty:
        grad_bias = torch.zeros(tiles.c, dtype=acc, device=x.device)
        grad_log_scale = torch.zeros(tiles.c, dtype=acc, device=x.device)
    else:
        per_split = tiles.n_c_blocks * tiles.n_s_blocks
        n_split = min(tiles.n_n_blocks, max(1, TARGET_PROGRAMS // per_split))
        partials = torch.empty((2, n_split * tiles.n_s_blocks, tiles.c), dtype=acc, device=x.device)
        with guard(x.device):
            wrap(_actnorm_backward_kernel)[(n_split * per_split,)](
                grad_y, x, bias, log_scale, grad_x, partials, tiles.n, tiles.c, tiles.s, tiles.n_n_blocks,
                tiles.n_c_blocks, tiles.n_s_blocks, n_split, REVERSE=reverse, **tiles.meta(x.dtype))
        # Two separate sums: the outputs must not share storage.
        grad_bias = partials[0].sum(0)
        grad_log_scale = partials[1].sum(0)
    if grad_logdet is not None:
        # logdet = +-S sum(log_scale) per sample: d/dlog_scale[c] = +-S sum_n grad_logdet[n].
        grad_log_scale = grad_log_scale + grad_logdet.to(acc).sum() * (-tiles.s if reverse else tiles.s)
    return grad_x, grad_bias.to(bias.dtype), grad_log_scale.to(log_scale.dtype)
