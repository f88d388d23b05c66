"""Building blocks shared by the Triton kernel modules: launch plumbing and the dot precision (host
side); tile products, gates, program indexing, output stores, 1x1 projections and the 2-D
weight-gradient partial (``@triton.jit`` helpers, inlined into the kernels that call them).

Precision of a tile product (``mma_meta`` picks MODE and the accumulation dtype ACC):
float16/bfloat16 tiles go to ``tl.dot`` as they are (tensor cores, float32 accumulate); float32
follows ``torch.backends.cudnn.allow_tf32``, the switch PyTorch's own float32 convolutions obey:
TF32 tensor cores when it is on (PyTorch's default: the precision ``nn.Conv2d`` gives on the same
GPU), ``input_precision="ieee"`` when it is off (results match the reference to ~1e-5); float64
uses a broadcast multiply-sum. Under ``TRITON_INTERPRET=1`` every tile is upcast first (the
interpreter's numpy has no bfloat16 arithmetic) and float32 is always IEEE.
"""

from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl
from triton.runtime.autotuner import Autotuner
from triton.runtime.jit import JITFunction

_wrap_triton = getattr(torch.library, "wrap_triton", None)


def wrap(kernel):
    """``kernel`` launched through ``torch.library.wrap_triton``, which lets a Triton launch back a
    ``torch.library.triton_op`` that torch.compile traces into (outside tracing: a plain launch).
    The kernel itself where torch has no wrap_triton, or for the interpreter's kernels, which
    torch < 2.13 refuses to wrap (they run on CPU tensors, where no triton_op dispatches)."""
    if _wrap_triton is None or not isinstance(kernel, (JITFunction, Autotuner)):
        return kernel
    return _wrap_triton(kernel)


# The Triton dtype of each input dtype: what ``mma_low`` rounds accumulation-dtype tiles to.
LOW = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32,
       torch.float64: tl.float64}


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def mma_meta(dtype: torch.dtype) -> dict:
    """{"MODE", "ACC"} of ``mma`` for tiles of ``dtype`` (read at each launch: the TF32 switch may change)."""
    if dtype == torch.float64:
        mode = 2
    elif interpreting():
        mode = 1
    elif dtype == torch.float32:
        mode = 3 if torch.backends.cudnn.allow_tf32 else 1
    else:
        mode = 0
    return {"MODE": mode, "ACC": tl.float64 if dtype == torch.float64 else tl.float32}


def tile_warps(dtype: torch.dtype, warps: int) -> int:
    """The warps of a kernel whose tiles are sized for 16-bit operands at ``warps``: twice as many
    for float32/float64 tiles, which spill registers at ``warps`` (scripts/triton_compile_check.py,
    sm_90: up to 536 B of stack a thread for the float32 convolutions at 4 warps, 48 B at 8)."""
    return 2 * warps if dtype in (torch.float32, torch.float64) else warps


def guard(device: torch.device):
    # Triton launches on the current device's current stream: make that the tensor's device.
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def fused_gate_rows(G: int, dtype: torch.dtype, max_gate: int) -> int:
    """Rows of a fused forward's tile of all G gate channels (next_pow2(G), at least 16), or 0 when
    that is over ``max_gate`` or the dtype is float64 (its multiply-sum "dot" makes such a tile too big)."""
    block = max(16, triton.next_power_of_2(max(G, 1)))
    return block if dtype != torch.float64 and block <= max_gate else 0


@triton.jit
def row_tile(N, D, n_col_blocks, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """Rows, column block, int64 flat offsets and mask of this program's BLOCK_R x BLOCK_C tile of
    a contiguous (N, D) view (programs numbered row block-major)."""
    pid = tl.program_id(0).to(tl.int64)  # int64 from here on: N * D may exceed 2^31
    row_block = pid // n_col_blocks
    col_block = pid % n_col_blocks
    rows = row_block * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = col_block * BLOCK_C + tl.arange(0, BLOCK_C)
    offs = rows[:, None] * D + cols[None, :]
    mask = (rows[:, None] < N) & (cols[None, :] < D)
    return rows, col_block, offs, mask


@triton.jit
def mma(acc, a, b, MODE: tl.constexpr, ACC: tl.constexpr):
    """acc + a @ b. MODE 0: tl.dot on the tiles as loaded; 1: upcast, IEEE fp32 dot; 2: multiply-sum;
    3: upcast, TF32 dot."""
    if MODE == 0:
        acc += tl.dot(a, b)
    elif MODE == 1:
        acc += tl.dot(a.to(ACC), b.to(ACC), input_precision="ieee")
    elif MODE == 3:
        acc += tl.dot(a.to(ACC), b.to(ACC), input_precision="tf32")
    else:
        acc += tl.sum(a.to(ACC)[:, :, None] * b.to(ACC)[None, :, :], axis=1)
    return acc


@triton.jit
def mma_low(acc, a, b, LOW: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr):
    """acc + a @ b, where an operand may be in the accumulation dtype (a scratch gate, a gradient):
    MODE 0 rounds both tiles to the input dtype LOW for the tensor cores; the other modes upcast anyway."""
    if MODE == 0:
        acc += tl.dot(a.to(LOW), b.to(LOW))
    else:
        acc = mma(acc, a, b, MODE, ACC)
    return acc


@triton.jit
def tanh_sigmoid(a, s):
    """(tanh(a), sigmoid(s), ea, es) with ea = exp(-2|a|) and es = exp(-|s|) in (0, 1]: no overflow
    for any finite input, no libdevice (tanh(a) = (1 - ea) / (1 + ea) with the sign restored)."""
    ea = tl.exp(-2.0 * tl.abs(a))
    th = (1.0 - ea) / (1.0 + ea)
    th = tl.where(a < 0, -th, th)
    es = tl.exp(-tl.abs(s))
    sg = tl.where(s >= 0, 1.0 / (1.0 + es), es / (1.0 + es))
    return th, sg, ea, es


@triton.jit
def program_blocks(n_a_blocks, n_l_blocks, BLOCK_A: tl.constexpr, BLOCK_L: tl.constexpr):
    """(n, offs_a, offs_l) of a program over (n, channel block, length block); int64 from here on."""
    pid = tl.program_id(0).to(tl.int64)
    l_block = pid % n_l_blocks
    rest = pid // n_l_blocks
    a_block = rest % n_a_blocks
    n = rest // n_a_blocks
    return n, a_block * BLOCK_A + tl.arange(0, BLOCK_A), l_block * BLOCK_L + tl.arange(0, BLOCK_L)


@triton.jit
def store_rows(acc, out_ptr, add_ptr, b_ptr, n, offs_o, offs_l, C_out, L, HAS_ADD: tl.constexpr,
               HAS_BIAS: tl.constexpr, ACC: tl.constexpr):
    """out[n, offs_o, offs_l] = acc (+ add[n, offs_o, offs_l]) (+ b[offs_o]) in out's dtype, for
    (N, C_out, L) tensors (L: time, or the flattened pixels)."""
    o_ok = offs_o < C_out
    ok = o_ok[:, None] & (offs_l < L)[None, :]
    off = n * C_out * L + offs_o[:, None] * L + offs_l[None, :]
    if HAS_ADD:
        acc += tl.load(add_ptr + off, mask=ok, other=0.0).to(ACC)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_o, mask=o_ok, other=0.0).to(ACC)[:, None]
    tl.store(out_ptr + off, acc.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def project(z_ptr, w_ptr, b_ptr, add_ptr, out_ptr, G, C_out, L, n_o_blocks, n_l_blocks, HAS_ADD: tl.constexpr,
            HAS_BIAS: tl.constexpr, LOW: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr,
            BLOCK_O: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_L: tl.constexpr):
    """The body of a program over (n, output block, length block) of out[n] = w @ z[n] (+ add[n]) (+ b):
    the 1x1 projection of a scratch gate z (N, G, L) by w (C_out, G)."""
    n, offs_o, offs_l = program_blocks(n_o_blocks, n_l_blocks, BLOCK_O, BLOCK_L)
    o_ok = offs_o < C_out
    l_ok = offs_l < L
    acc = tl.zeros((BLOCK_O, BLOCK_L), ACC)
    for g0 in range(0, G, BLOCK_G):
        offs_g = (g0 + tl.arange(0, BLOCK_G)).to(tl.int64)
        g_ok = offs_g < G
        w = tl.load(w_ptr + offs_o[:, None] * G + offs_g[None, :], mask=o_ok[:, None] & g_ok[None, :],
                    other=0.0)
        z = tl.load(z_ptr + n * G * L + offs_g[:, None] * L + offs_l[None, :],
                    mask=g_ok[:, None] & l_ok[None, :], other=0.0)
        acc = mma_low(acc, w, z, LOW, MODE, ACC)
    store_rows(acc, out_ptr, add_ptr, b_ptr, n, offs_o, offs_l, C_out, L, HAS_ADD, HAS_BIAS, ACC)


@triton.jit
def project_tile(z, offs_g, g_ok, w_ptr, out_ptr, add_ptr, b_ptr, n, offs_l, G, C_out, L,
                 HAS_ADD: tl.constexpr, HAS_BIAS: tl.constexpr, LOW: tl.constexpr, MODE: tl.constexpr,
                 ACC: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_L: tl.constexpr):
    """out[n, :, offs_l] = w @ z (+ add) (+ b), one output block at a time, for a gate tile z of all
    G gate channels (rows offs_g) held in registers: the fused forwards' projection, z never stored."""
    for o0 in range(0, C_out, BLOCK_O):
        offs_o = (o0 + tl.arange(0, BLOCK_O)).to(tl.int64)
        w = tl.load(w_ptr + offs_o[:, None] * G + offs_g[None, :],
                    mask=(offs_o < C_out)[:, None] & g_ok[None, :], other=0.0)
        acc = mma_low(tl.zeros((BLOCK_O, BLOCK_L), ACC), w, z, LOW, MODE, ACC)
        store_rows(acc, out_ptr, add_ptr, b_ptr, n, offs_o, offs_l, C_out, L, HAS_ADD, HAS_BIAS, ACC)


@triton.jit
def shifted_pixel_products(acc, gy_ptr, u_ptr, C_gy, C_u, offs_o, o_ok, offs_c, c_ok, H, W, dy, dx, split,
                           n_split, n_slabs, n_p_blocks, LOW: tl.constexpr, MODE: tl.constexpr,
                           ACC: tl.constexpr, BLOCK_P: tl.constexpr):
    """acc + sum over the split's share of the (n, pixel block) slabs of gy[n, offs_o, p] u[n, offs_c,
    p + (dy, dx)]^T (0 where p + (dy, dx) leaves the image): a 2-D weight gradient's partial for one
    tap, deterministic (no atomics). gy (N, C_gy, H, W) and u (N, C_u, H, W); gy_ptr and u_ptr point at
    the channel offs_o and offs_c count from."""
    HW = H * W
    first = split * n_slabs // n_split
    last = (split + 1) * n_slabs // n_split
    for slab in range(first, last):
        n = slab // n_p_blocks
        offs_p = (slab % n_p_blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
        ii = offs_p // W + dy
        jj = offs_p % W + dx
        ok = (offs_p < HW) & (ii >= 0) & (ii < H) & (jj >= 0) & (jj < W)
        gy = tl.load(gy_ptr + n * C_gy * HW + offs_o[:, None] * HW + offs_p[None, :],
                     mask=o_ok[:, None] & ok[None, :], other=0.0)
        ut = tl.load(u_ptr + n * C_u * HW + offs_c[None, :] * HW + (offs_p + dy * W + dx)[:, None],
                     mask=ok[:, None] & c_ok[None, :], other=0.0)
        acc = mma_low(acc, gy, ut, LOW, MODE, ACC)
    return acc


def vector_block(size: int) -> int:
    """The register block of a vector of ``size`` entries: the next power of two, at least 16."""
    return max(16, triton.next_power_of_2(max(size, 1)))


@triton.jit
def lanes(size, BLOCK: tl.constexpr):
    """The indices 0..BLOCK-1 of a vector of ``size`` entries and which of them exist."""
    offs = tl.arange(0, BLOCK).to(tl.int64)
    return offs, offs < size


@triton.jit
def matvec_chunk(w_ptr, ld, offs_o, o_ok, vec, offs_k, k_ok):
    """sum_k w[o, k] vec[k] for the rows offs_o and the column chunk offs_k of a row-major matrix."""
    w = tl.load(w_ptr + offs_o[:, None] * ld + offs_k[None, :], mask=o_ok[:, None] & k_ok[None, :], other=0.0)
    return tl.sum(w.to(vec.dtype) * vec[None, :], axis=1)


@triton.jit
def project_vector(z, offs_g, g_ok, w_ptr, b_ptr, add_ptr, out_ptr, C_out, G, HAS_BIAS: tl.constexpr,
                   HAS_ADD: tl.constexpr, BLOCK_O: tl.constexpr):
    """out[o] = w[o, :] @ z (+ b[o]) (+ add[o]) for every o < C_out, BLOCK_O rows at a time (w row-major
    (C_out, G), z held in registers). add_ptr may be out_ptr: the same thread reads and writes each out[o]."""
    for o0 in range(0, C_out, BLOCK_O):
        offs_o = (o0 + tl.arange(0, BLOCK_O)).to(tl.int64)
        o_ok = offs_o < C_out
        acc = matvec_chunk(w_ptr, G, offs_o, o_ok, z, offs_g, g_ok)
        if HAS_BIAS:
            acc += tl.load(b_ptr + offs_o, mask=o_ok, other=0.0).to(z.dtype)
        if HAS_ADD:
            acc += tl.load(add_ptr + offs_o, mask=o_ok, other=0.0).to(z.dtype)
        tl.store(out_ptr + offs_o, acc.to(out_ptr.dtype.element_ty), mask=o_ok)


@triton.jit
def draw(logits, ok, u, LEVELS: tl.constexpr):
    """The categorical draw of the fused samplers: the first level whose cumulative mass exceeds u
    times the total (at most LEVELS - 1), from a register vector of logits (``ok``: which exist).
    In float64 as the reference (fastgen.reference.steps.categorical_draw) computes it:
    float32 cumulative sums drew another level about once in 40,000 draws."""
    shifted = logits.to(tl.float64) - tl.max(tl.where(ok, logits, float("-inf")), axis=0).to(tl.float64)
    cdf = tl.cumsum(tl.where(ok, tl.exp(shifted), 0.0), axis=0)
    threshold = u.to(tl.float64) * tl.max(cdf, axis=0)  # the last cumulative sum (the sums never decrease)
    below = tl.sum(((cdf < threshold) & ok).to(tl.int64), axis=0)
    return tl.minimum(below, LEVELS - 1)
