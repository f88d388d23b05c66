"""Triton kernels of the per-position sampling steps: wavenet_layer_step and
gated_pixelcnn_horizontal_step (the GPU implementation registered for CUDA).

One program per sample. A sample's work is a few matrix-vector products: the program holds the
input vector (the gathered taps / the row window) and the gate pre-activation of every gate
channel in registers (next_pow2(C_gate / 2) rows per half), then walks the output channels of
each 1x1 projection in blocks. Accumulation in float32 (float64 for float64); tanh and sigmoid
from ``exp(-|v|)`` (no libdevice). The state is updated in place by the same program after it
has read what it needs, so samples never touch each other's state.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import (accumulation_dtype, guard, matvec_chunk, project_vector, tanh_sigmoid,
                                             vector_block, wrap)

BLOCK_C = 32  # input-channel chunk of a matrix-vector product
BLOCK_O = 32  # output channels per chunk of a projection
NUM_WARPS = 4


@triton.jit
def _add_cond(acc_a, acc_s, cond_ptr, wc_ptr, offs_g, g_ok, G, D, ACC: tl.constexpr, BLOCK_C: tl.constexpr):
    """acc_a/acc_s + the two halves of w_cond (2G, D) @ cond (D,)."""
    for d0 in range(0, D, BLOCK_C):
        offs_d = (d0 + tl.arange(0, BLOCK_C)).to(tl.int64)
        d_ok = offs_d < D
        c = tl.load(cond_ptr + offs_d, mask=d_ok, other=0.0).to(ACC)
        acc_a += matvec_chunk(wc_ptr, D, offs_g, g_ok, c, offs_d, d_ok)
        acc_s += matvec_chunk(wc_ptr + G * D, D, offs_g, g_ok, c, offs_d, d_ok)
    return acc_a, acc_s


@triton.jit
def _gate(acc_a, acc_s, b_ptr, cond_ptr, wc_ptr, offs_g, g_ok, G, D, HAS_BIAS: tl.constexpr, HAS_COND: tl.constexpr,
          ACC: tl.constexpr, BLOCK_C: tl.constexpr):
    """tanh * sigmoid of the two halves of a pre-activation, after adding the bias (2G,) and the
    conditioning w_cond (2G, D) @ cond (D,); zero on the padding rows."""
    if HAS_BIAS:
        acc_a += tl.load(b_ptr + offs_g, mask=g_ok, other=0.0).to(ACC)
        acc_s += tl.load(b_ptr + G + offs_g, mask=g_ok, other=0.0).to(ACC)
    if HAS_COND:
        acc_a, acc_s = _add_cond(acc_a, acc_s, cond_ptr, wc_ptr, offs_g, g_ok, G, D, ACC, BLOCK_C)
    th, sg, _, _ = tanh_sigmoid(acc_a, acc_s)
    return tl.where(g_ok, th * sg, 0.0)


@triton.jit
def _wavenet_step_kernel(x_ptr, state_ptr, pos_ptr, wd_ptr, bd_ptr, wr_ptr, br_ptr, ws_ptr, bs_ptr, cond_ptr,
                         wc_ptr, res_ptr, skip_ptr, C_res, G, C_skip, C_cond, L, dilation, K: tl.constexpr,
                         HAS_BD: tl.constexpr, HAS_BR: tl.constexpr, HAS_BS: tl.constexpr,
                         HAS_COND: tl.constexpr, ACC: tl.constexpr, BLOCK_G: tl.constexpr,
                         BLOCK_C: tl.constexpr, BLOCK_O: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    t = tl.load(pos_ptr).to(tl.int64)
    offs_g = tl.arange(0, BLOCK_G).to(tl.int64)
    g_ok = offs_g < G
    acc_a = tl.zeros((BLOCK_G,), ACC)
    acc_s = tl.zeros((BLOCK_G,), ACC)
    x_n = x_ptr + n * C_res
    state_n = state_ptr + n * L * C_res
    for k in tl.static_range(K):
        # Tap k reads time t - (K-1-k) * dilation: x itself for the last tap, else its ring slot.
        if k == K - 1:
            src = x_n
        else:
            slot = ((t - (K - 1 - k) * dilation) % L + L) % L
            src = state_n + slot * C_res
        for c0 in range(0, C_res, BLOCK_C):
            offs_c = (c0 + tl.arange(0, BLOCK_C)).to(tl.int64)
            c_ok = offs_c < C_res
            tap = tl.load(src + offs_c, mask=c_ok, other=0.0).to(ACC)
            # w_dilated (2G, C_res, K): row j, column c of tap k at j * C_res * K + c * K + k.
            w_a = tl.load(wd_ptr + offs_g[:, None] * (C_res * K) + offs_c[None, :] * K + k,
                          mask=g_ok[:, None] & c_ok[None, :], other=0.0).to(ACC)
            w_s = tl.load(wd_ptr + (G + offs_g[:, None]) * (C_res * K) + offs_c[None, :] * K + k,
                          mask=g_ok[:, None] & c_ok[None, :], other=0.0).to(ACC)
            acc_a += tl.sum(w_a * tap[None, :], axis=1)
            acc_s += tl.sum(w_s * tap[None, :], axis=1)
    z = _gate(acc_a, acc_s, bd_ptr, cond_ptr + n * C_cond, wc_ptr, offs_g, g_ok, G, C_cond, HAS_BD, HAS_COND, ACC,
              BLOCK_C)
    project_vector(z, offs_g, g_ok, wr_ptr, br_ptr, x_n, res_ptr + n * C_res, C_res, G, HAS_BR, True, BLOCK_O)
    project_vector(z, offs_g, g_ok, ws_ptr, bs_ptr, x_n, skip_ptr + n * C_skip, C_skip, G, HAS_BS, False, BLOCK_O)
    if K > 1:  # x goes to slot t mod L, after every read of the state
        for c0 in range(0, C_res, BLOCK_C):
            offs_c = (c0 + tl.arange(0, BLOCK_C)).to(tl.int64)
            c_ok = offs_c < C_res
            tl.store(state_n + (t % L) * C_res + offs_c, tl.load(x_n + offs_c, mask=c_ok), mask=c_ok)


def _acc(dtype: torch.dtype):
    return tl.float64 if accumulation_dtype(dtype) == torch.float64 else tl.float32


def wavenet_layer_step(x, state, position, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation, cond,
                       w_cond):
    """(residual_out (N, C_res), skip (N, C_skip)); ``state`` updated in place."""
    N, C_res = x.shape
    C_gate, _, K = w_dilated.shape
    G, C_skip = C_gate // 2, w_skip.shape[0]
    x = x.contiguous()
    residual = torch.empty_like(x)
    skip = torch.empty((N, C_skip), dtype=x.dtype, device=x.device)
    if N == 0:
        return residual, skip
    has_cond = cond is not None
    weights = [t.contiguous() if t is not None else x for t in (w_dilated, b_dilated, w_res, b_res, w_skip, b_skip)]
    cond_args = (cond.contiguous(), w_cond.contiguous()) if has_cond else (x, x)
    with guard(x.device):
        wrap(_wavenet_step_kernel)[(N,)](
            x, state, position, *weights, *cond_args, residual, skip, C_res, G, C_skip,
            cond.shape[1] if has_cond else 0, state.shape[1], dilation, K=K, HAS_BD=b_dilated is not None,
            HAS_BR=b_res is not None, HAS_BS=b_skip is not None, HAS_COND=has_cond, ACC=_acc(x.dtype),
            BLOCK_G=vector_block(G), BLOCK_C=BLOCK_C, BLOCK_O=BLOCK_O, num_warps=NUM_WARPS)
    return residual, skip


@triton.jit
def _horizontal_step_kernel(state_ptr, in_ptr, link_ptr, wh_ptr, bh_ptr, wr_ptr, br_ptr, cond_ptr, wc_ptr,
                            out_ptr, C_in, G, D, T: tl.constexpr, MASK_B: tl.constexpr, HAS_BH: tl.constexpr,
                            HAS_BR: tl.constexpr, HAS_COND: tl.constexpr, ACC: tl.constexpr,
                            BLOCK_G: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
                            BLOCK_O: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    offs_g = tl.arange(0, BLOCK_G).to(tl.int64)
    g_ok = offs_g < G
    offs_t = tl.arange(0, BLOCK_T).to(tl.int64)
    t_ok = offs_t < T
    acc_a = tl.load(link_ptr + n * 2 * G + offs_g, mask=g_ok, other=0.0).to(ACC)
    acc_s = tl.load(link_ptr + n * 2 * G + G + offs_g, mask=g_ok, other=0.0).to(ACC)
    in_n = in_ptr + n * C_in
    for c0 in range(0, C_in, BLOCK_C):
        offs_c = (c0 + tl.arange(0, BLOCK_C)).to(tl.int64)
        c_ok = offs_c < C_in
        base = state_ptr + n * C_in * T + offs_c[:, None] * T
        # The new state: the old one moved left by one, new_input last.
        moved = tl.load(base + offs_t[None, :] + 1, mask=c_ok[:, None] & (offs_t < T - 1)[None, :], other=0.0)
        newest = tl.load(in_n + offs_c, mask=c_ok, other=0.0)
        window = tl.where((offs_t == T - 1)[None, :], newest[:, None], moved)
        tl.store(base + offs_t[None, :], window, mask=c_ok[:, None] & t_ok[None, :])
        # Mask "B" weighs window position t with tap t; mask "A" weighs position t with tap t - 1
        # (its current-pixel tap T - 1 is never loaded).
        if MASK_B:
            tap = offs_t
            tap_ok = t_ok
        else:
            tap = offs_t - 1
            tap_ok = t_ok & (offs_t >= 1)
        win = window.to(ACC)
        w_off = offs_c[None, :, None] * T + tap[None, None, :]
        w_mask = g_ok[:, None, None] & c_ok[None, :, None] & tap_ok[None, None, :]
        w_a = tl.load(wh_ptr + offs_g[:, None, None] * (C_in * T) + w_off, mask=w_mask, other=0.0).to(ACC)
        w_s = tl.load(wh_ptr + (G + offs_g[:, None, None]) * (C_in * T) + w_off, mask=w_mask, other=0.0).to(ACC)
        acc_a += tl.sum(tl.sum(w_a * win[None, :, :], axis=2), axis=1)
        acc_s += tl.sum(tl.sum(w_s * win[None, :, :], axis=2), axis=1)
    z = _gate(acc_a, acc_s, bh_ptr, cond_ptr + n * D, wc_ptr, offs_g, g_ok, G, D, HAS_BH, HAS_COND, ACC, BLOCK_C)
    project_vector(z, offs_g, g_ok, wr_ptr, br_ptr, in_n, out_ptr + n * G, G, G, HAS_BR, MASK_B, BLOCK_O)


def gated_pixelcnn_horizontal_step(state, new_input, link, w_h, b_h, w_res, b_res, mask_type, cond, w_cond_h):
    """h_out (N, C); ``state`` updated in place."""
    N, C_in = new_input.shape
    two_c, _, _, T = w_h.shape
    G = two_c // 2
    out = torch.empty((N, G), dtype=new_input.dtype, device=new_input.device)
    if N == 0:
        return out
    new_input = new_input.contiguous()
    has_cond = cond is not None
    tensors = [t.contiguous() if t is not None else new_input for t in (link, w_h, b_h, w_res, b_res)]
    cond_args = (cond.contiguous(), w_cond_h.contiguous()) if has_cond else (new_input, new_input)
    with guard(new_input.device):
        wrap(_horizontal_step_kernel)[(N,)](
            state, new_input, *tensors, *cond_args, out, C_in, G, cond.shape[1] if has_cond else 0, T=T,
            MASK_B=mask_type == "B", HAS_BH=b_h is not None, HAS_BR=b_res is not None, HAS_COND=has_cond,
            ACC=_acc(new_input.dtype), BLOCK_G=vector_block(G), BLOCK_C=min(BLOCK_C, triton.next_power_of_2(C_in)),
            BLOCK_T=triton.next_power_of_2(T), BLOCK_O=BLOCK_O, num_warps=NUM_WARPS)
    return out
