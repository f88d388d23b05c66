"""Triton kernels of the fused WaveNet residual layer: wavenet_layer and its backward.

x (N, C_res, T), w_dilated (C_gate, C_res, K), w_res (C_res, G), w_skip (C_skip, G) with
G = C_gate / 2, optional cond (N, C_cond, T) with w_cond (C_gate, C_cond)::

    h = causal_conv1d(x, w_dilated, b_dilated, dilation) + w_cond @ cond   (tap k reads t - (K-1-k) d)
    a, s = tanh(h[:, :G]), sigmoid(h[:, G:]);   z = a * s
    residual_out = x + w_res @ z + b_res;   skip = w_skip @ z + b_skip

* forward, fused (G fits one gate tile, ``next_pow2(G) <= FUSED_MAX_GATE``, not float64): one
  program per (n, time block) computes the tanh-half and sigmoid-half pre-activation tiles of all
  G gate channels (``tl.dot`` over taps and C_res blocks, then C_cond blocks), writes h when it is
  saved, gates in registers, and loops over the C_res and C_skip output blocks adding
  ``w_res[o_blk] @ z`` (+ x + b_res) and ``w_skip[o_blk] @ z`` (+ b_skip): z never goes to memory.
* forward, unfused (wider gates, or float64 whose multiply-sum "dot" makes a whole-gate tile too
  big): one program per (n, gate block, time block) writes h (if saved) and z to a scratch tensor
  in the accumulation dtype, then one program per (n, output block, time block) of residual and of
  skip computes ``w @ z`` over gate blocks (+ x + bias).
* backward, dh: one program per (n, gate block, time block): ``gz = w_res^T g_res + w_skip^T g_skip``,
  a, s recomputed from h, ``dh_a = gz s (1 - a^2)``, ``dh_s = gz a s (1 - s)``; writes dh
  (N, C_gate, T) and z (N, G, T) in the accumulation dtype.
* backward, inputs: grad_x = g_res + the anti-causal correlation of dh with w_dilated (``conv.py``'s
  kernel: one program per (n, C_res block, time block), ``w[:, c_blk, k]^T @ dh[n, :, t_blk + s]``);
  grad_cond is the same kernel with K = 1, w_cond and no residual term.
* backward, weights: ``conv.py``'s kernel: one program per (split, tap, out block, in block)
  sums ``gy[n, o_blk, t] u[n, c_blk, t - s]^T`` over its share of the (n, time block) slabs into a
  partial, summed by torch in a fixed order (deterministic, no atomics): (dh, x) -> grad_w_dilated,
  (g_res, z) -> grad_w_res, (g_skip, z) -> grad_w_skip, (dh, cond) -> grad_w_cond. The bias
  gradients are torch sums over (N, T) of dh, g_res, g_skip in the accumulation dtype.

Precision as in ``_common.py``: float16/bfloat16 tiles go to ``tl.dot`` (float32 accumulate; a
float32 operand such as z or dh is rounded to the input dtype first), float32 TF32 or IEEE as
``torch.backends.cudnn.allow_tf32`` says, float64 a broadcast multiply-sum; the interpreter
upcasts every tile.
tanh and sigmoid are built from ``exp(-|v|)`` (no overflow, no libdevice).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import (
    LOW, accumulation_dtype, fused_gate_rows, guard, mma_low, mma_meta, program_blocks, project, project_tile,
    tanh_sigmoid, tile_warps, wrap)
from fastgen.triton_kernels.conv import grad_input_kernel, grad_weight_kernel

# Tile sizes (tl.dot needs >= 16 on every side) and warps per program. Tests raise them under
# the interpreter, whose cost is per program.
BLOCK_O = 64  # output channels of a 1x1 projection / rows of a weight-gradient tile
BLOCK_C = 32  # reduction chunk over input channels (C_res, C_cond, C_skip)
BLOCK_G = 32  # gate channels (of each half) per program / reduction chunk over gates
BLOCK_T = 64
NUM_WARPS = 4  # for 16-bit tiles; twice as many for float32/float64 ones (tile_warps)
# The fused forward keeps all G gate channels in one tile of next_pow2(G) rows, up to this many.
FUSED_MAX_GATE = 128
FUSED_NUM_WARPS = 8
# Programs along the (n, time block) slabs for the weight gradients (each writes one partial).
WEIGHT_SPLIT = 32


@triton.jit
def _activations(a, s):
    """(tanh(a), sigmoid(s), tanh'(a), sigmoid'(s)); the derivatives keep their relative precision
    where the gates saturate (1 - tanh^2 = 4 e / (1 + e)^2 with e = exp(-2|a|), sigmoid' = e / (1 + e)^2
    with e = exp(-|s|))."""
    th, sg, ea, es = tanh_sigmoid(a, s)
    return th, sg, 4.0 * ea / ((1.0 + ea) * (1.0 + ea)), es / ((1.0 + es) * (1.0 + es))


@triton.jit
def _gate_taps(acc_a, acc_s, u_base, w_ptr, offs_g, g_ok, offs_t, C_in, G, T, K, dilation, LOW: tl.constexpr,
               MODE: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr):
    """acc_a/s + the causal convolution of u (C_in, T) with the tanh rows offs_g and the sigmoid rows
    G + offs_g of w (2G, C_in, K): tap k reads t - (K-1-k) dilation."""
    for k in range(K):
        t_in = offs_t - (K - 1 - k) * dilation
        t_ok = (t_in >= 0) & (offs_t < T)
        for c0 in range(0, C_in, BLOCK_C):
            offs_c = (c0 + tl.arange(0, BLOCK_C)).to(tl.int64)
            c_ok = offs_c < C_in
            ut = tl.load(u_base + offs_c[:, None] * T + t_in[None, :], mask=c_ok[:, None] & t_ok[None, :],
                         other=0.0)
            w_off = offs_g[:, None] * C_in * K + offs_c[None, :] * K + k
            w_ok = g_ok[:, None] & c_ok[None, :]
            wa = tl.load(w_ptr + w_off, mask=w_ok, other=0.0)
            ws = tl.load(w_ptr + G * C_in * K + w_off, mask=w_ok, other=0.0)
            acc_a = mma_low(acc_a, wa, ut, LOW, MODE, ACC)
            acc_s = mma_low(acc_s, ws, ut, LOW, MODE, ACC)
    return acc_a, acc_s


@triton.jit
def _pre_activation(x_ptr, wd_ptr, bd_ptr, cond_ptr, wc_ptr, n, offs_g, offs_t, C_res, G, C_cond, T, K,
                    dilation, HAS_BIAS: tl.constexpr, HAS_COND: tl.constexpr, LOW: tl.constexpr,
                    MODE: tl.constexpr, ACC: tl.constexpr, BLOCK_GT: tl.constexpr, BLOCK_C: tl.constexpr,
                    BLOCK_T: tl.constexpr):
    """(h[n, offs_g, offs_t], h[n, G + offs_g, offs_t]): the tanh and sigmoid halves, 0 off range."""
    g_ok = offs_g < G
    acc_a = tl.zeros((BLOCK_GT, BLOCK_T), ACC)
    acc_s = tl.zeros((BLOCK_GT, BLOCK_T), ACC)
    acc_a, acc_s = _gate_taps(acc_a, acc_s, x_ptr + n * C_res * T, wd_ptr, offs_g, g_ok, offs_t, C_res, G, T,
                              K, dilation, LOW, MODE, ACC, BLOCK_C)
    if HAS_COND:  # w_cond @ cond: one tap
        acc_a, acc_s = _gate_taps(acc_a, acc_s, cond_ptr + n * C_cond * T, wc_ptr, offs_g, g_ok, offs_t,
                                  C_cond, G, T, 1, 1, LOW, MODE, ACC, BLOCK_C)
    if HAS_BIAS:
        acc_a += tl.load(bd_ptr + offs_g, mask=g_ok, other=0.0).to(ACC)[:, None]
        acc_s += tl.load(bd_ptr + G + offs_g, mask=g_ok, other=0.0).to(ACC)[:, None]
    return acc_a, acc_s


@triton.jit
def _store_gate(h_ptr, z_ptr, acc_a, acc_s, n, offs_g, offs_t, G, T, SAVE_H: tl.constexpr,
                STORE_Z: tl.constexpr):
    """Write h (both halves) when saved and z = tanh(a) sigmoid(s) when asked; return z."""
    ok = (offs_g < G)[:, None] & (offs_t < T)[None, :]
    if SAVE_H:
        h_off = h_ptr + n * 2 * G * T + offs_g[:, None] * T + offs_t[None, :]
        tl.store(h_off, acc_a, mask=ok)
        tl.store(h_off + G * T, acc_s, mask=ok)
    th, sg, _, _ = tanh_sigmoid(acc_a, acc_s)
    z = th * sg
    if STORE_Z:
        tl.store(z_ptr + n * G * T + offs_g[:, None] * T + offs_t[None, :], z, mask=ok)
    return z


@triton.jit
def _fused_forward_kernel(x_ptr, wd_ptr, bd_ptr, cond_ptr, wc_ptr, wr_ptr, br_ptr, ws_ptr, bs_ptr,
                          res_ptr, skip_ptr, h_ptr, C_res, G, C_skip, C_cond, T, K, dilation, n_t_blocks,
                          HAS_BD: tl.constexpr, HAS_BR: tl.constexpr, HAS_BS: tl.constexpr,
                          HAS_COND: tl.constexpr, SAVE_H: tl.constexpr, LOW: tl.constexpr,
                          MODE: tl.constexpr, ACC: tl.constexpr, BLOCK_GT: tl.constexpr,
                          BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)  # int64 offsets from here on
    t_block = pid % n_t_blocks
    n = pid // n_t_blocks
    offs_g = tl.arange(0, BLOCK_GT).to(tl.int64)
    offs_t = t_block * BLOCK_T + tl.arange(0, BLOCK_T)
    g_ok = offs_g < G
    acc_a, acc_s = _pre_activation(x_ptr, wd_ptr, bd_ptr, cond_ptr, wc_ptr, n, offs_g, offs_t, C_res, G,
                                   C_cond, T, K, dilation, HAS_BD, HAS_COND, LOW, MODE, ACC, BLOCK_GT,
                                   BLOCK_C, BLOCK_T)
    z = _store_gate(h_ptr, h_ptr, acc_a, acc_s, n, offs_g, offs_t, G, T, SAVE_H, False)
    project_tile(z, offs_g, g_ok, wr_ptr, res_ptr, x_ptr, br_ptr, n, offs_t, G, C_res, T, True, HAS_BR, LOW,
                 MODE, ACC, BLOCK_O, BLOCK_T)
    project_tile(z, offs_g, g_ok, ws_ptr, skip_ptr, x_ptr, bs_ptr, n, offs_t, G, C_skip, T, False, HAS_BS,
                 LOW, MODE, ACC, BLOCK_O, BLOCK_T)


@triton.jit
def _gate_kernel(x_ptr, wd_ptr, bd_ptr, cond_ptr, wc_ptr, h_ptr, z_ptr, C_res, G, C_cond, T, K, dilation,
                 n_g_blocks, n_t_blocks, HAS_BD: tl.constexpr, HAS_COND: tl.constexpr, SAVE_H: tl.constexpr,
                 LOW: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr, BLOCK_G: tl.constexpr,
                 BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    n, offs_g, offs_t = program_blocks(n_g_blocks, n_t_blocks, BLOCK_G, BLOCK_T)
    acc_a, acc_s = _pre_activation(x_ptr, wd_ptr, bd_ptr, cond_ptr, wc_ptr, n, offs_g, offs_t, C_res, G,
                                   C_cond, T, K, dilation, HAS_BD, HAS_COND, LOW, MODE, ACC, BLOCK_G, BLOCK_C,
                                   BLOCK_T)
    _store_gate(h_ptr, z_ptr, acc_a, acc_s, n, offs_g, offs_t, G, T, SAVE_H, True)


@triton.jit
def _project_kernel(z_ptr, w_ptr, b_ptr, add_ptr, out_ptr, G, C_out, T, n_o_blocks, n_t_blocks,
                    HAS_ADD: tl.constexpr, HAS_BIAS: tl.constexpr, LOW: tl.constexpr, MODE: tl.constexpr,
                    ACC: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_T: tl.constexpr):
    """out[n] = w @ z[n] (+ add[n]) (+ b): a 1x1 convolution of the scratch z."""
    project(z_ptr, w_ptr, b_ptr, add_ptr, out_ptr, G, C_out, T, n_o_blocks, n_t_blocks, HAS_ADD, HAS_BIAS,
            LOW, MODE, ACC, BLOCK_O, BLOCK_G, BLOCK_T)


@triton.jit
def _add_transposed(gz, w_ptr, gy_ptr, n, offs_g, g_ok, offs_t, t_ok, C_out, G, T, LOW: tl.constexpr,
                    MODE: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr):
    """gz + w[:, offs_g]^T @ gy[n, :, offs_t] for a 1x1 projection w (C_out, G) and its output gradient gy."""
    for c0 in range(0, C_out, BLOCK_C):
        offs_c = (c0 + tl.arange(0, BLOCK_C)).to(tl.int64)
        c_ok = offs_c < C_out
        wt = tl.load(w_ptr + offs_c[None, :] * G + offs_g[:, None], mask=g_ok[:, None] & c_ok[None, :],
                     other=0.0)
        gy = tl.load(gy_ptr + n * C_out * T + offs_c[:, None] * T + offs_t[None, :],
                     mask=c_ok[:, None] & t_ok[None, :], other=0.0)
        gz = mma_low(gz, wt, gy, LOW, MODE, ACC)
    return gz


@triton.jit
def _grad_gate_kernel(gr_ptr, gs_ptr, h_ptr, wr_ptr, ws_ptr, dh_ptr, z_ptr, C_res, G, C_skip, T, n_g_blocks,
                      n_t_blocks, LOW: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr,
                      BLOCK_G: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    n, offs_g, offs_t = program_blocks(n_g_blocks, n_t_blocks, BLOCK_G, BLOCK_T)
    g_ok = offs_g < G
    t_ok = offs_t < T
    # gz = w_res[:, g]^T @ g_res[n] + w_skip[:, g]^T @ g_skip[n]
    gz = tl.zeros((BLOCK_G, BLOCK_T), ACC)
    gz = _add_transposed(gz, wr_ptr, gr_ptr, n, offs_g, g_ok, offs_t, t_ok, C_res, G, T, LOW, MODE, ACC,
                         BLOCK_C)
    gz = _add_transposed(gz, ws_ptr, gs_ptr, n, offs_g, g_ok, offs_t, t_ok, C_skip, G, T, LOW, MODE, ACC,
                         BLOCK_C)
    ok = g_ok[:, None] & t_ok[None, :]
    h_off = n * 2 * G * T + offs_g[:, None] * T + offs_t[None, :]
    a = tl.load(h_ptr + h_off, mask=ok, other=0.0)
    s = tl.load(h_ptr + G * T + h_off, mask=ok, other=0.0)
    th, sg, dth, dsg = _activations(a, s)
    tl.store(dh_ptr + h_off, gz * sg * dth, mask=ok)
    tl.store(dh_ptr + G * T + h_off, gz * th * dsg, mask=ok)
    tl.store(z_ptr + n * G * T + offs_g[:, None] * T + offs_t[None, :], th * sg, mask=ok)


def _meta(dtype: torch.dtype) -> dict:
    return {"LOW": LOW[dtype], **mma_meta(dtype), "BLOCK_T": BLOCK_T,
            "num_warps": tile_warps(dtype, NUM_WARPS)}


def fused_gate_block(G: int, dtype: torch.dtype) -> int:
    """Rows of the fused forward's gate tile, or 0 when the unfused forward is used."""
    return fused_gate_rows(G, dtype, FUSED_MAX_GATE)


def _as_2d(weight: torch.Tensor) -> torch.Tensor:
    # The op takes 2-D 1x1 weights; accept the nn.Conv1d layout (C_out, C_in, 1) too.
    if weight.dim() == 3 and weight.shape[2] == 1:
        weight = weight[:, :, 0]
    return weight.contiguous()


def _check(x, w_dilated, w_res, w_skip, dilation, cond, w_cond) -> None:
    if x.dim() != 3 or w_dilated.dim() != 3 or w_dilated.shape[1] != x.shape[1] or w_dilated.shape[2] < 1:
        raise ValueError(f"x must be (N, C_res, T) and w_dilated (C_gate, C_res, K >= 1), got "
                         f"{tuple(x.shape)} and {tuple(w_dilated.shape)}")
    c_gate = w_dilated.shape[0]
    if c_gate % 2:
        raise ValueError(f"w_dilated must have an even C_gate (dim 0), got shape {tuple(w_dilated.shape)}")
    G = c_gate // 2
    if w_res.dim() != 2 or tuple(w_res.shape) != (x.shape[1], G):
        raise ValueError(f"w_res must be (C_res, C_gate / 2) = {(x.shape[1], G)}, got {tuple(w_res.shape)}")
    if w_skip.dim() != 2 or w_skip.shape[1] != G:
        raise ValueError(f"w_skip must be (C_skip, C_gate / 2 = {G}), got {tuple(w_skip.shape)}")
    if (cond is None) != (w_cond is None):
        raise ValueError("cond and w_cond must be given together or both be None")
    if cond is not None and (cond.dim() != 3 or cond.shape[0] != x.shape[0] or cond.shape[2] != x.shape[2]
                             or w_cond.dim() != 2 or tuple(w_cond.shape) != (c_gate, cond.shape[1])):
        raise ValueError(f"cond must be (N, C_cond, T) and w_cond (C_gate, C_cond), got {tuple(cond.shape)} "
                         f"and {tuple(w_cond.shape)}")
    for name, t in (("w_dilated", w_dilated), ("w_res", w_res), ("w_skip", w_skip), ("cond", cond),
                    ("w_cond", w_cond)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"{name} must have the dtype of x ({x.dtype}), got {t.dtype}")
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")


def _operands(x, w_dilated, w_res, w_skip, dilation, cond, w_cond):
    """(x, w_dilated, w_res, w_skip, w_cond) checked, with 2-D 1x1 weights and x, w_dilated contiguous."""
    w_res, w_skip = _as_2d(w_res), _as_2d(w_skip)
    w_cond = None if w_cond is None else _as_2d(w_cond)
    _check(x, w_dilated, w_res, w_skip, dilation, cond, w_cond)
    return x.contiguous(), w_dilated.contiguous(), w_res, w_skip, w_cond


def wavenet_layer(x: torch.Tensor, w_dilated: torch.Tensor, b_dilated: torch.Tensor | None,
                  w_res: torch.Tensor, b_res: torch.Tensor | None, w_skip: torch.Tensor,
                  b_skip: torch.Tensor | None, dilation: int, cond: torch.Tensor | None,
                  w_cond: torch.Tensor | None, save_pre_activation: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(residual_out, skip, h): h (N, C_gate, T) in the accumulation dtype, or empty (0,) when not saved."""
    x, w_dilated, w_res, w_skip, w_cond = _operands(x, w_dilated, w_res, w_skip, dilation, cond, w_cond)
    N, C_res, T = x.shape
    C_gate, _, K = w_dilated.shape
    G, C_skip = C_gate // 2, w_skip.shape[0]
    acc_dtype = accumulation_dtype(x.dtype)
    residual = torch.empty((N, C_res, T), dtype=x.dtype, device=x.device)
    skip = torch.empty((N, C_skip, T), dtype=x.dtype, device=x.device)
    h_shape = (N, C_gate, T) if save_pre_activation else (0,)
    h = torch.empty(h_shape, dtype=acc_dtype, device=x.device)
    if N * T == 0 or C_gate == 0:
        if C_gate == 0:  # no gates: z is empty, the projections are their biases
            residual.copy_(x if b_res is None else x + b_res[:, None])
            skip.copy_(torch.zeros_like(skip) if b_skip is None else b_skip[:, None].expand_as(skip))
        return residual, skip, h
    h_arg = h if save_pre_activation else x  # never written when not saved
    has_cond = cond is not None
    cond = cond.contiguous() if has_cond else x
    w_cond = w_cond if has_cond else x
    C_cond = cond.shape[1] if has_cond else 0
    bd = b_dilated.contiguous() if b_dilated is not None else x
    br = b_res.contiguous() if b_res is not None else x
    bs = b_skip.contiguous() if b_skip is not None else x
    meta = _meta(x.dtype)
    n_t = triton.cdiv(T, BLOCK_T)
    gate_rows = fused_gate_block(G, x.dtype)
    with guard(x.device):
        if gate_rows:
            meta["num_warps"] = FUSED_NUM_WARPS
            wrap(_fused_forward_kernel)[(N * n_t,)](
                x, w_dilated, bd, cond, w_cond, w_res, br, w_skip, bs, residual, skip, h_arg, C_res, G,
                C_skip, C_cond, T, K, dilation, n_t, HAS_BD=b_dilated is not None, HAS_BR=b_res is not None,
                HAS_BS=b_skip is not None, HAS_COND=has_cond, SAVE_H=save_pre_activation, BLOCK_GT=gate_rows,
                BLOCK_O=BLOCK_O, BLOCK_C=BLOCK_C, **meta)
            return residual, skip, h
        z = torch.empty((N, G, T), dtype=acc_dtype, device=x.device)
        n_g = triton.cdiv(G, BLOCK_G)
        wrap(_gate_kernel)[(N * n_g * n_t,)](
            x, w_dilated, bd, cond, w_cond, h_arg, z, C_res, G, C_cond, T, K, dilation, n_g, n_t,
            HAS_BD=b_dilated is not None, HAS_COND=has_cond, SAVE_H=save_pre_activation, BLOCK_G=BLOCK_G,
            BLOCK_C=BLOCK_C, **meta)
        for w, b, out, has_add in ((w_res, b_res, residual, True), (w_skip, b_skip, skip, False)):
            C_out = w.shape[0]
            if C_out == 0:
                continue
            n_o = triton.cdiv(C_out, BLOCK_O)
            wrap(_project_kernel)[(N * n_o * n_t,)](
                z, w, b.contiguous() if b is not None else x, x, out, G, C_out, T, n_o, n_t, HAS_ADD=has_add,
                HAS_BIAS=b is not None, BLOCK_O=BLOCK_O, BLOCK_G=BLOCK_G, **meta)
    return residual, skip, h


def _grad_weight(gy: torch.Tensor, u: torch.Tensor, K: int, dilation: int, weight: torch.Tensor,
                 meta: dict) -> torch.Tensor:
    """sum_{n, t} gy[n, o, t] u[n, c, t - (K-1-k) dilation] as (C_out, C_in, K), reshaped like weight."""
    N, C_out, T = gy.shape
    C_in = u.shape[1]
    n_t = triton.cdiv(T, BLOCK_T)
    n_slabs = N * n_t
    if weight.numel() == 0 or n_slabs == 0:
        return torch.zeros_like(weight, memory_format=torch.contiguous_format)
    n_split = min(n_slabs, WEIGHT_SPLIT)
    n_o, n_c = triton.cdiv(C_out, BLOCK_O), triton.cdiv(C_in, BLOCK_C)
    partials = torch.empty((n_split, C_out, C_in, K), dtype=accumulation_dtype(weight.dtype),
                           device=gy.device)
    wrap(grad_weight_kernel)[(n_split * K * n_o * n_c,)](
        gy, u, partials, C_in, C_out, T, K, dilation, n_o, n_c, n_t, n_slabs, n_split, BLOCK_O=BLOCK_O,
        BLOCK_C=BLOCK_C, **meta)
    return partials.sum(0).to(weight.dtype).reshape(weight.shape)


def _grad_input(gy: torch.Tensor, weight: torch.Tensor, add: torch.Tensor | None, out: torch.Tensor, K: int,
                dilation: int, meta: dict) -> torch.Tensor:
    """out[n] = the anti-causal correlation of gy[n] with weight (C_out, C_in, K) (+ add[n])."""
    N, C_in, T = out.shape
    C_out = gy.shape[1]
    if out.numel() == 0:
        return out
    n_c, n_t = triton.cdiv(C_in, BLOCK_C), triton.cdiv(T, BLOCK_T)
    wrap(grad_input_kernel)[(N * n_c * n_t,)](
        gy, weight, add if add is not None else out, out, C_in, C_out, T, K, dilation, n_c, n_t,
        HAS_ADD=add is not None, BLOCK_O=BLOCK_O, BLOCK_C=BLOCK_C, **meta)
    return out


def wavenet_layer_backward(grad_residual: torch.Tensor, grad_skip: torch.Tensor, x: torch.Tensor,
                           h: torch.Tensor, w_dilated: torch.Tensor, w_res: torch.Tensor,
                           w_skip: torch.Tensor, dilation: int, cond: torch.Tensor | None,
                           w_cond: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """(grad_x, grad_w_dilated, grad_b_dilated, grad_w_res, grad_b_res, grad_w_skip, grad_b_skip, grad_cond,
    grad_w_cond); the last two are empty (0,) tensors when cond is None."""
    w_res_shape, w_skip_shape = w_res.shape, w_skip.shape
    w_cond_shape = None if w_cond is None else w_cond.shape
    x, w_dilated, w_res, w_skip, w_cond = _operands(x, w_dilated, w_res, w_skip, dilation, cond, w_cond)
    N, C_res, T = x.shape
    C_gate, _, K = w_dilated.shape
    G, C_skip = C_gate // 2, w_skip.shape[0]
    if tuple(h.shape) != (N, C_gate, T):
        raise ValueError(f"h must be the saved pre-activation {(N, C_gate, T)} (save_pre_activation=True), "
                         f"got shape {tuple(h.shape)}")
    if tuple(grad_residual.shape) != (N, C_res, T) or tuple(grad_skip.shape) != (N, C_skip, T):
        raise ValueError(f"grad_residual and grad_skip must have shapes {(N, C_res, T)} and "
                         f"{(N, C_skip, T)}, got {tuple(grad_residual.shape)} and {tuple(grad_skip.shape)}")
    acc_dtype = accumulation_dtype(x.dtype)
    g_res = grad_residual.to(x.dtype).contiguous()
    g_skip = grad_skip.to(x.dtype).contiguous()
    h = h.to(acc_dtype).contiguous()
    meta = _meta(x.dtype)
    launch = N * T * G > 0  # the dh kernel writes every element of dh and z
    alloc = torch.empty if launch else torch.zeros
    dh = alloc((N, C_gate, T), dtype=acc_dtype, device=x.device)
    z = alloc((N, G, T), dtype=acc_dtype, device=x.device)
    with guard(x.device):
        if launch:
            n_g, n_t = triton.cdiv(G, BLOCK_G), triton.cdiv(T, BLOCK_T)
            wrap(_grad_gate_kernel)[(N * n_g * n_t,)](
                g_res, g_skip, h, w_res, w_skip, dh, z, C_res, G, C_skip, T, n_g, n_t, BLOCK_G=BLOCK_G,
                BLOCK_C=BLOCK_C, **meta)
        grad_x = _grad_input(dh, w_dilated, g_res, torch.empty_like(x), K, dilation, meta)
        grad_wd = _grad_weight(dh, x, K, dilation, w_dilated, meta)
        grad_wr = _grad_weight(g_res, z, 1, 1, w_res, meta).reshape(w_res_shape)
        grad_ws = _grad_weight(g_skip, z, 1, 1, w_skip, meta).reshape(w_skip_shape)
        if cond is not None:
            cond = cond.contiguous()
            grad_cond = _grad_input(dh, w_cond, None, torch.empty_like(cond), 1, 1, meta)
            grad_wc = _grad_weight(dh, cond, 1, 1, w_cond, meta).reshape(w_cond_shape)
        else:
            grad_cond = grad_wc = x.new_empty((0,))
    grad_bd = dh.sum((0, 2)).to(x.dtype)
    grad_br = g_res.sum((0, 2), dtype=acc_dtype).to(x.dtype)
    grad_bs = g_skip.sum((0, 2), dtype=acc_dtype).to(x.dtype)
    return grad_x, grad_wd, grad_bd, grad_wr, grad_br, grad_ws, grad_bs, grad_cond, grad_wc
