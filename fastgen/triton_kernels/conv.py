"""Triton kernels of the convolution family: causal_conv1d and its backward.

Dilated causal 1-D convolution, x (N, C_in, T), weight (C_out, C_in, K) -> y (N, C_out, T):
tap k reads the input shifted by s = (K-1-k) * dilation, masked to times >= 0, so no padded
copy of x is built.

* forward: one program per (n, C_out block, time block); for every tap and C_in block it adds
  ``w[o_blk, c_blk, k] @ x[n, c_blk, t_blk - s]`` to a float32 (float64) accumulator.
* grad_x: one program per (n, C_in block, time block): ``w[:, c_blk, k]^T @ grad_y[n, :, t_blk + s]``
  (the anti-causal correlation with the same taps).
* grad_weight: one program per (split, tap, C_out block, C_in block) sums
  ``grad_y[n, o_blk, t] x[n, c_blk, t - s]^T`` over its share of the (n, time block) slabs into
  a partial; the partials are summed by torch in a fixed order (deterministic, no atomics).
* grad_bias: ``grad_y.sum((0, 2))`` in float32 (float64), by torch.

The two backward kernels also serve the fused WaveNet layer (``wavenet.py``), whose operands may
be in the accumulation dtype: they round tiles to the input dtype LOW for ``tl.dot`` (a no-op here).
Precision as in ``_common.py``: float16/bfloat16 tiles go to ``tl.dot`` (float32 accumulate),
float32 TF32 or IEEE as ``torch.backends.cudnn.allow_tf32`` says, float64 a broadcast
multiply-sum; the interpreter upcasts every tile first.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import (
    LOW, accumulation_dtype, guard, mma, mma_low, mma_meta, program_blocks, store_rows, tile_warps, wrap)

# Tile sizes (tl.dot needs >= 16 on every side) and warps per program. Tests raise them under
# the interpreter, whose cost is per program.
BLOCK_O = 64
BLOCK_C = 32
BLOCK_T = 64
NUM_WARPS = 4  # for 16-bit tiles; twice as many for float32/float64 ones (tile_warps)
# Programs along the (n, time block) slabs for grad_weight (each writes one partial).
WEIGHT_SPLIT = 32


@triton.jit
def _forward_kernel(x_ptr, w_ptr, b_ptr, y_ptr, C_in, C_out, T, K, dilation, n_o_blocks, n_t_blocks,
                    HAS_BIAS: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr,
                    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)  # int64 offsets from here on
    t_block = pid % n_t_blocks
    rest = pid // n_t_blocks
    o_block = rest % n_o_blocks
    n = rest // n_o_blocks
    offs_o = o_block * BLOCK_O + tl.arange(0, BLOCK_O)
    offs_t = t_block * BLOCK_T + tl.arange(0, BLOCK_T)
    o_ok = offs_o < C_out
    acc = tl.zeros((BLOCK_O, BLOCK_T), ACC)
    x_base = x_ptr + n * C_in * T
    for k in range(K):
        t_in = offs_t - (K - 1 - k) * dilation
        t_ok = (t_in >= 0) & (offs_t < T)
        for c0 in range(0, C_in, BLOCK_C):
            offs_c = (c0 + tl.arange(0, BLOCK_C)).to(tl.int64)
            c_ok = offs_c < C_in
            w = tl.load(w_ptr + offs_o[:, None] * C_in * K + offs_c[None, :] * K + k,
                        mask=o_ok[:, None] & c_ok[None, :], other=0.0)
            x = tl.load(x_base + offs_c[:, None] * T + t_in[None, :],
                        mask=c_ok[:, None] & t_ok[None, :], other=0.0)
            acc = mma(acc, w, x, MODE, ACC)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_o, mask=o_ok, other=0.0).to(ACC)[:, None]
    tl.store(y_ptr + n * C_out * T + offs_o[:, None] * T + offs_t[None, :],
             acc.to(y_ptr.dtype.element_ty), mask=o_ok[:, None] & (offs_t < T)[None, :])


@triton.jit
def grad_input_kernel(gy_ptr, w_ptr, add_ptr, gx_ptr, C_in, C_out, T, K, dilation, n_c_blocks, n_t_blocks,
                      HAS_ADD: tl.constexpr, LOW: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr,
                      BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """gx[n, c_blk, t_blk] = sum_k w[:, c_blk, k]^T @ gy[n, :, t_blk + (K-1-k) dilation] (+ add)."""
    n, offs_c, offs_t = program_blocks(n_c_blocks, n_t_blocks, BLOCK_C, BLOCK_T)
    c_ok = offs_c < C_in
    acc = tl.zeros((BLOCK_C, BLOCK_T), ACC)
    gy_base = gy_ptr + n * C_out * T
    for k in range(K):
        t_out = offs_t + (K - 1 - k) * dilation
        t_ok = t_out < T
        for o0 in range(0, C_out, BLOCK_O):
            offs_o = (o0 + tl.arange(0, BLOCK_O)).to(tl.int64)
            o_ok = offs_o < C_out
            wt = tl.load(w_ptr + offs_o[None, :] * C_in * K + offs_c[:, None] * K + k,
                         mask=c_ok[:, None] & o_ok[None, :], other=0.0)
            gy = tl.load(gy_base + offs_o[:, None] * T + t_out[None, :], mask=o_ok[:, None] & t_ok[None, :],
                         other=0.0)
            acc = mma_low(acc, wt, gy, LOW, MODE, ACC)
    store_rows(acc, gx_ptr, add_ptr, gx_ptr, n, offs_c, offs_t, C_in, T, HAS_ADD, False, ACC)


@triton.jit
def grad_weight_kernel(gy_ptr, u_ptr, partial_ptr, C_in, C_out, T, K, dilation, n_o_blocks, n_c_blocks,
                       n_t_blocks, n_slabs, n_split, LOW: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr,
                       BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """partial[split, o_blk, c_blk, k] = sum over the split's slabs of gy[n, o_blk, t] u[n, c_blk, t-s]^T."""
    pid = tl.program_id(0).to(tl.int64)
    c_block = pid % n_c_blocks
    rest = pid // n_c_blocks
    o_block = rest % n_o_blocks
    rest = rest // n_o_blocks
    k = rest % K
    split = rest // K
    offs_o = o_block * BLOCK_O + tl.arange(0, BLOCK_O)
    offs_c = c_block * BLOCK_C + tl.arange(0, BLOCK_C)
    o_ok = offs_o < C_out
    c_ok = offs_c < C_in
    s = (K - 1 - k) * dilation
    acc = tl.zeros((BLOCK_O, BLOCK_C), ACC)
    first = split * n_slabs // n_split
    last = (split + 1) * n_slabs // n_split
    for slab in range(first, last):
        n = slab // n_t_blocks
        offs_t = (slab % n_t_blocks) * BLOCK_T + tl.arange(0, BLOCK_T)
        t_ok = (offs_t >= s) & (offs_t < T)
        gy = tl.load(gy_ptr + n * C_out * T + offs_o[:, None] * T + offs_t[None, :],
                     mask=o_ok[:, None] & t_ok[None, :], other=0.0)
        ut = tl.load(u_ptr + n * C_in * T + offs_c[None, :] * T + (offs_t - s)[:, None],
                     mask=t_ok[:, None] & c_ok[None, :], other=0.0)
        acc = mma_low(acc, gy, ut, LOW, MODE, ACC)
    # partial layout (split, C_out, C_in, K): the sum over split is the weight layout.
    tl.store(partial_ptr + split * C_out * C_in * K + offs_o[:, None] * C_in * K + offs_c[None, :] * K + k,
             acc, mask=o_ok[:, None] & c_ok[None, :])


def _meta(dtype: torch.dtype) -> dict:
    return {**mma_meta(dtype), "BLOCK_O": BLOCK_O, "BLOCK_C": BLOCK_C, "BLOCK_T": BLOCK_T,
            "num_warps": tile_warps(dtype, NUM_WARPS)}


def _check(x: torch.Tensor, weight: torch.Tensor, dilation: int) -> None:
    if x.dim() != 3 or weight.dim() != 3 or weight.shape[1] != x.shape[1] or weight.shape[2] < 1:
        raise ValueError(f"x must be (N, C_in, T) and weight (C_out, C_in, K >= 1), got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}")
    if weight.dtype != x.dtype:
        raise TypeError(f"weight must have the dtype of x ({x.dtype}), got {weight.dtype}")
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  dilation: int) -> torch.Tensor:
    """y (N, C_out, T) of the dilated causal convolution; dtype of x."""
    _check(x, weight, dilation)
    x, weight = x.contiguous(), weight.contiguous()
    N, C_in, T = x.shape
    C_out, _, K = weight.shape
    y = torch.empty((N, C_out, T), dtype=x.dtype, device=x.device)
    if y.numel() == 0:
        return y
    has_bias = bias is not None
    b = bias.contiguous() if has_bias else y
    n_o, n_t = triton.cdiv(C_out, BLOCK_O), triton.cdiv(T, BLOCK_T)
    with guard(x.device):
        wrap(_forward_kernel)[(N * n_o * n_t,)](
            x, weight, b, y, C_in, C_out, T, K, dilation, n_o, n_t, HAS_BIAS=has_bias, **_meta(x.dtype))
    return y


def causal_conv1d_backward(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, dilation: int,
                           output_mask: list[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad_x, grad_weight, grad_bias); an entry masked off by output_mask is an empty (0,) tensor."""
    _check(x, weight, dilation)
    x, weight = x.contiguous(), weight.contiguous()
    N, C_in, T = x.shape
    C_out, _, K = weight.shape
    if tuple(grad_y.shape) != (N, C_out, T):
        raise ValueError(f"grad_y must have shape {(N, C_out, T)}, got {tuple(grad_y.shape)}")
    grad_y = grad_y.to(x.dtype).contiguous()
    empty = x.new_empty((0,))
    meta = {**_meta(x.dtype), "LOW": LOW[x.dtype]}
    n_t = triton.cdiv(T, BLOCK_T)
    grad_x = grad_w = grad_b = empty
    with guard(x.device):
        if output_mask[0]:
            grad_x = torch.empty_like(x)
            if grad_x.numel() > 0:
                if C_out == 0:
                    grad_x.zero_()
                else:
                    n_c = triton.cdiv(C_in, BLOCK_C)
                    wrap(grad_input_kernel)[(N * n_c * n_t,)](  # nothing to add: grad_x is a placeholder
                        grad_y, weight, grad_x, grad_x, C_in, C_out, T, K, dilation, n_c, n_t, HAS_ADD=False,
                        **meta)
        if output_mask[1]:
            n_slabs = N * n_t
            if weight.numel() == 0 or n_slabs == 0:
                grad_w = torch.zeros_like(weight)
            else:
                n_split = min(n_slabs, WEIGHT_SPLIT)
                n_o, n_c = triton.cdiv(C_out, BLOCK_O), triton.cdiv(C_in, BLOCK_C)
                partials = torch.empty((n_split, C_out, C_in, K), dtype=accumulation_dtype(x.dtype),
                                       device=x.device)
                wrap(grad_weight_kernel)[(n_split * K * n_o * n_c,)](
                    grad_y, x, partials, C_in, C_out, T, K, dilation, n_o, n_c, n_t, n_slabs, n_split,
                    **meta)
                grad_w = partials.sum(0).to(x.dtype)
        if output_mask[2]:
            grad_b = grad_y.sum((0, 2), dtype=accumulation_dtype(x.dtype)).to(x.dtype)
    return grad_x, grad_w, grad_b
