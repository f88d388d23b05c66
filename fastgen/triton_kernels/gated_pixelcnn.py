"""Triton kernels of the fused Gated PixelCNN layer: gated_pixelcnn_layer and its backward.

v, h (N, C_in, H, W); with n odd and k = n // 2: w_v (2C, C_in, k + 1, n), w_h (2C, C_in, 1, k + 1),
w_v2h (2C, 2C), w_res (C, C), cond (N, D) with w_cond_v, w_cond_h (2C, D)::

    v_pre = conv(v, w_v: rows i-k..i, columns j-k..j+k) + b_v [+ w_cond_v @ cond]
    v_out = tanh(v_pre[:, :C]) * sigmoid(v_pre[:, C:])
    h_pre = conv(h, w_h: row i, columns j-k..j ("B") or j-k..j-1 ("A")) + b_h
            + w_v2h @ v_pre[row i - 1] (zero for row 0) + b_v2h [+ w_cond_h @ cond]
    h_out = w_res @ (tanh(h_pre[:, :C]) * sigmoid(h_pre[:, C:])) + b_res [+ h for "B"]

Every convolution is an implicit GEMM over "taps": tap t of a tap-major weight (n_taps, C_out, C_in)
reads the input at the pixel offset (dy, dx) = (t // KW - TOP, t % KW - LEFT), masked to the image
(no padded copy is built). Vertical: KW = n, TOP = LEFT = k, all (k + 1) n taps; horizontal: KW = k + 1,
TOP = 0, LEFT = k, the first k + 1 ("B") or k ("A": the current-pixel tap is never read) taps; the link
is one tap (dy, dx) = (-1, 0) with w_v2h as its weight, and a 1x1 projection one tap (0, 0).

* forward, vertical: one program per (n, C block, pixel block over H * W) computes the tanh-half and
  sigmoid-half rows of v_pre for its C block (``tl.dot`` per tap and C_in block) + b_v + the cond
  term (a GEMV over D), writes v_pre (always: the link needs it; in the accumulation dtype) and v_out.
* forward, horizontal: one program per (n, C block, pixel block): the horizontal taps, the link GEMM
  over the 2C channels of v_pre at row i - 1, b_h + b_v2h + the cond term; writes h_pre when saved;
  gates. Fused (C fits one tile, ``next_pow2(C) <= FUSED_MAX_GATE``, not float64): the C block is
  all of C and the same program adds ``w_res[o_blk] @ gate`` (+ b_res, + h for "B") per output block.
  Otherwise the gate goes to a scratch tensor and one program per (n, C block, pixel block) of
  ``_project_kernel`` computes h_out.
* backward, dH: one program per (n, C block, pixel block): ``dG = w_res^T g_h``, the gates recomputed
  from h_pre, ``dH_a = dG s (1 - a^2)``, ``dH_s = dG a s (1 - s)``; writes dH (N, 2C, H, W) and the
  gate (for grad_w_res), both in the accumulation dtype.
* backward, dV: one program per (n, C block, pixel block): ``dV = gate'(v_pre) g_v + w_v2h^T dH[row i + 1]``
  (zero for the last row) for both halves of its C block.
* backward, inputs: grad_v and grad_h by the mirrored taps, ``w[t, :, c_blk]^T @ dX[p - (dy, dx)]``
  (one program per (n, C_in block, pixel block)), + g_h for "B".
* backward, weights: one kernel, as in ``masked_conv.py``: one program per (split, tap, out block,
  in block) sums ``gy[n, o_blk, p] u[n, c_blk, p + (dy, dx)]^T`` over its share of the (n, pixel block)
  slabs into a partial, summed by torch in a fixed order (deterministic, no atomics):
  (dV, v) -> grad_w_v, (dH, h) -> grad_w_h (zero-filled: mask "A"'s ignored tap stays exactly 0),
  (dH, v_pre, tap (-1, 0)) -> grad_w_v2h, (g_h, gate) -> grad_w_res.
* the rest is small and done by torch in the accumulation dtype from the Triton-computed dV, dH:
  with sV, sH = dV, dH summed over the pixels (N, 2C): grad_b_v = sum_n sV, grad_b_h = grad_b_v2h =
  sum_n sH, grad_b_res = g_h summed, grad_cond = sV w_cond_v + sH w_cond_h, grad_w_cond_v = sV^T cond,
  grad_w_cond_h = sH^T cond (deterministic torch reductions and matmuls).

Precision as in ``_common.py``: float16/bfloat16 tiles go to ``tl.dot`` (float32 accumulate; an operand
in the accumulation dtype, v_pre, the gate, dV or dH, is rounded to the input dtype first), float32
TF32 or IEEE as ``torch.backends.cudnn.allow_tf32`` says, float64 a broadcast multiply-sum; the
interpreter upcasts every tile. Offsets into the activations are int64. tanh and sigmoid are built from ``exp(-|x|)``
(``tanh(x) = 2 sigmoid(2x) - 1``; no overflow, no libdevice).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import (
    LOW, accumulation_dtype, fused_gate_rows, guard, mma_low, mma_meta, program_blocks, project, project_tile,
    shifted_pixel_products, store_rows, tanh_sigmoid, tile_warps, wrap)

# Tile sizes (tl.dot needs >= 16 on every side) and warps per program. Tests raise them under
# the interpreter, whose cost is per program.
BLOCK_G = 32  # gate channels (of each half) per program
BLOCK_C = 32  # reduction chunk over input channels (C_in, 2C, D)
BLOCK_O = 64  # output channels of a projection / rows of a weight-gradient tile / reduction chunk
BLOCK_P = 64  # pixels (of the flattened H * W) per program
NUM_WARPS = 4  # for 16-bit tiles; twice as many for float32/float64 ones (tile_warps)
# The fused horizontal forward keeps all C gate channels in one tile of next_pow2(C) rows, up to this.
FUSED_MAX_GATE = 128
FUSED_NUM_WARPS = 8
# Programs along the (n, pixel block) slabs for the weight gradients (each writes one partial).
WEIGHT_SPLIT = 32


@triton.jit
def _gates(a, s):
    """(tanh(a), sigmoid(s)), overflow-free (``tanh_sigmoid``)."""
    th, sg, _, _ = tanh_sigmoid(a, s)
    return th, sg


@triton.jit
def _taps(acc_a, acc_s, x_base, w_ptr, offs_g, g_ok, C, C_in, offs_p, i, j, p_ok, H, W, n_taps,
          KW: tl.constexpr, TOP: tl.constexpr, LEFT: tl.constexpr, LOW: tl.constexpr, MODE: tl.constexpr,
          ACC: tl.constexpr, BLOCK_C: tl.constexpr):
    """Implicit GEMM of a convolution into 2C gate channels, for the rows offs_g (tanh half) and
    C + offs_g (sigmoid half): acc_a/s + sum over the taps t < n_taps and C_in blocks of
    ``w[t, rows, c_blk] @ x[c_blk, p + (dy, dx)]`` (0 outside the image). w: tap-major (n_taps, 2C, C_in)."""
    HW = H * W
    n_c_blocks = tl.cdiv(C_in, BLOCK_C)
    # One flat loop over (tap, C_in block), so that it software-pipelines.
    for it in range(n_taps * n_c_blocks):
        t = it // n_c_blocks
        dy = t // KW - TOP
        dx = t % KW - LEFT
        ii = i + dy
        jj = j + dx
        ok = p_ok & (ii >= 0) & (ii < H) & (jj >= 0) & (jj < W)
        offs_c = ((it - t * n_c_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
        c_ok = offs_c < C_in
        xt = tl.load(x_base + offs_c[:, None] * HW + (offs_p + dy * W + dx)[None, :],
                     mask=c_ok[:, None] & ok[None, :], other=0.0)
        w_off = w_ptr + t * 2 * C * C_in + offs_g[:, None] * C_in + offs_c[None, :]
        w_ok = g_ok[:, None] & c_ok[None, :]
        wa = tl.load(w_off, mask=w_ok, other=0.0)
        ws = tl.load(w_off + C * C_in, mask=w_ok, other=0.0)
        acc_a = mma_low(acc_a, wa, xt, LOW, MODE, ACC)
        acc_s = mma_low(acc_s, ws, xt, LOW, MODE, ACC)
    return acc_a, acc_s


@triton.jit
def _mirrored_taps(acc, gy_base, w_ptr, offs_c, c_ok, C_out, C_in, offs_p, i, j, p_ok, H, W, n_taps,
                   KW: tl.constexpr, TOP: tl.constexpr, LEFT: tl.constexpr, LOW: tl.constexpr,
                   MODE: tl.constexpr, ACC: tl.constexpr, BLOCK_O: tl.constexpr):
    """The gradient of ``_taps`` with respect to its input, for the input channels offs_c: acc + sum
    over the taps t < n_taps and C_out blocks of ``w[t, o_blk, offs_c]^T @ gy[o_blk, p - (dy, dx)]``
    (0 outside the image). w: tap-major (n_taps, C_out, C_in)."""
    HW = H * W
    n_o_blocks = tl.cdiv(C_out, BLOCK_O)
    for it in range(n_taps * n_o_blocks):
        t = it // n_o_blocks
        dy = t // KW - TOP
        dx = t % KW - LEFT
        io = i - dy
        jo = j - dx
        ok = p_ok & (io >= 0) & (io < H) & (jo >= 0) & (jo < W)
        offs_o = ((it - t * n_o_blocks) * BLOCK_O + tl.arange(0, BLOCK_O)).to(tl.int64)
        o_ok = offs_o < C_out
        wt = tl.load(w_ptr + t * C_out * C_in + offs_o[None, :] * C_in + offs_c[:, None],
                     mask=c_ok[:, None] & o_ok[None, :], other=0.0)
        gy = tl.load(gy_base + offs_o[:, None] * HW + (offs_p - dy * W - dx)[None, :],
                     mask=o_ok[:, None] & ok[None, :], other=0.0)
        acc = mma_low(acc, wt, gy, LOW, MODE, ACC)
    return acc


@triton.jit
def _add_bias(acc_a, acc_s, b_ptr, offs_g, g_ok, C, ACC: tl.constexpr):
    acc_a += tl.load(b_ptr + offs_g, mask=g_ok, other=0.0).to(ACC)[:, None]
    acc_s += tl.load(b_ptr + C + offs_g, mask=g_ok, other=0.0).to(ACC)[:, None]
    return acc_a, acc_s


@triton.jit
def _add_cond(acc_a, acc_s, cond_ptr, wc_ptr, n, offs_g, g_ok, C, D, ACC: tl.constexpr,
              BLOCK_C: tl.constexpr):
    """acc_a/s + (w_cond[rows] @ cond[n])[:, None]: a GEMV over D, per (n, gate channel)."""
    for d0 in range(0, D, BLOCK_C):
        offs_d = (d0 + tl.arange(0, BLOCK_C)).to(tl.int64)
        d_ok = offs_d < D
        c = tl.load(cond_ptr + n * D + offs_d, mask=d_ok, other=0.0).to(ACC)
        w_off = wc_ptr + offs_g[:, None] * D + offs_d[None, :]
        w_ok = g_ok[:, None] & d_ok[None, :]
        wa = tl.load(w_off, mask=w_ok, other=0.0).to(ACC)
        ws = tl.load(w_off + C * D, mask=w_ok, other=0.0).to(ACC)
        acc_a += tl.sum(wa * c[None, :], axis=1)[:, None]
        acc_s += tl.sum(ws * c[None, :], axis=1)[:, None]
    return acc_a, acc_s


@triton.jit
def _store_halves(ptr, a, s, n, offs_g, offs_p, C, HW, ok):
    """ptr[n, offs_g, p] = a and ptr[n, C + offs_g, p] = s of an (N, 2C, H * W) tensor."""
    off = ptr + n * 2 * C * HW + offs_g[:, None] * HW + offs_p[None, :]
    tl.store(off, a.to(ptr.dtype.element_ty), mask=ok)
    tl.store(off + C * HW, s.to(ptr.dtype.element_ty), mask=ok)


@triton.jit
def _load_halves(ptr, n, offs_g, offs_p, C, HW, ok):
    off = ptr + n * 2 * C * HW + offs_g[:, None] * HW + offs_p[None, :]
    return tl.load(off, mask=ok, other=0.0), tl.load(off + C * HW, mask=ok, other=0.0)


@triton.jit
def _gate_program(n_g_blocks, n_p_blocks, C, H, W, BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr):
    """(n, offs_g, g_ok, offs_p, p_ok, i, j) of a program over (n, gate block, pixel block), with (i, j)
    the pixels' row and column."""
    n, offs_g, offs_p = program_blocks(n_g_blocks, n_p_blocks, BLOCK_G, BLOCK_P)
    return n, offs_g, offs_g < C, offs_p, offs_p < H * W, offs_p // W, offs_p % W


@triton.jit
def _vertical_kernel(v_ptr, wv_ptr, bv_ptr, cond_ptr, wc_ptr, vpre_ptr, vout_ptr, C_in, C, D, H, W, n_taps,
                     n_g_blocks, n_p_blocks, KW: tl.constexpr, TOP: tl.constexpr, LEFT: tl.constexpr,
                     HAS_BIAS: tl.constexpr, HAS_COND: tl.constexpr, LOW: tl.constexpr, MODE: tl.constexpr,
                     ACC: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    n, offs_g, g_ok, offs_p, p_ok, i, j = _gate_program(n_g_blocks, n_p_blocks, C, H, W, BLOCK_G, BLOCK_P)
    HW = H * W
    acc_a = tl.zeros((BLOCK_G, BLOCK_P), ACC)
    acc_s = tl.zeros((BLOCK_G, BLOCK_P), ACC)
    acc_a, acc_s = _taps(acc_a, acc_s, v_ptr + n * C_in * HW, wv_ptr, offs_g, g_ok, C, C_in, offs_p, i, j,
                         p_ok, H, W, n_taps, KW, TOP, LEFT, LOW, MODE, ACC, BLOCK_C)
    if HAS_BIAS:
        acc_a, acc_s = _add_bias(acc_a, acc_s, bv_ptr, offs_g, g_ok, C, ACC)
    if HAS_COND:
        acc_a, acc_s = _add_cond(acc_a, acc_s, cond_ptr, wc_ptr, n, offs_g, g_ok, C, D, ACC, BLOCK_C)
    ok = g_ok[:, None] & p_ok[None, :]
    _store_halves(vpre_ptr, acc_a, acc_s, n, offs_g, offs_p, C, HW, ok)
    th, sg = _gates(acc_a, acc_s)
    tl.store(vout_ptr + n * C * HW + offs_g[:, None] * HW + offs_p[None, :],
             (th * sg).to(vout_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _horizontal_kernel(h_ptr, wh_ptr, bh_ptr, vpre_ptr, wl_ptr, bl_ptr, cond_ptr, wc_ptr, wr_ptr, br_ptr,
                       hpre_ptr, z_ptr, hout_ptr, C_in, C, D, H, W, n_taps, n_g_blocks, n_p_blocks,
                       KW: tl.constexpr, LEFT: tl.constexpr, HAS_BH: tl.constexpr, HAS_BL: tl.constexpr,
                       HAS_BR: tl.constexpr, HAS_COND: tl.constexpr, RESIDUAL: tl.constexpr,
                       SAVE_PRE: tl.constexpr, FUSED: tl.constexpr, LOW: tl.constexpr, MODE: tl.constexpr,
                       ACC: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_O: tl.constexpr,
                       BLOCK_P: tl.constexpr):
    # FUSED: n_g_blocks == 1 and BLOCK_G >= C, the program holds every gate channel.
    n, offs_g, g_ok, offs_p, p_ok, i, j = _gate_program(n_g_blocks, n_p_blocks, C, H, W, BLOCK_G, BLOCK_P)
    HW = H * W
    acc_a = tl.zeros((BLOCK_G, BLOCK_P), ACC)
    acc_s = tl.zeros((BLOCK_G, BLOCK_P), ACC)
    # horizontal taps: row i, columns j - LEFT .. j - LEFT + n_taps - 1
    acc_a, acc_s = _taps(acc_a, acc_s, h_ptr + n * C_in * HW, wh_ptr, offs_g, g_ok, C, C_in, offs_p, i, j,
                         p_ok, H, W, n_taps, KW, 0, LEFT, LOW, MODE, ACC, BLOCK_C)
    # link: w_v2h[rows] @ v_pre[n, :, row i - 1] (zero for row 0), one tap (dy, dx) = (-1, 0)
    acc_a, acc_s = _taps(acc_a, acc_s, vpre_ptr + n * 2 * C * HW, wl_ptr, offs_g, g_ok, C, 2 * C, offs_p, i,
                         j, p_ok, H, W, 1, 1, 1, 0, LOW, MODE, ACC, BLOCK_C)
    if HAS_BH:
        acc_a, acc_s = _add_bias(acc_a, acc_s, bh_ptr, offs_g, g_ok, C, ACC)
    if HAS_BL:
        acc_a, acc_s = _add_bias(acc_a, acc_s, bl_ptr, offs_g, g_ok, C, ACC)
    if HAS_COND:
        acc_a, acc_s = _add_cond(acc_a, acc_s, cond_ptr, wc_ptr, n, offs_g, g_ok, C, D, ACC, BLOCK_C)
    ok = g_ok[:, None] & p_ok[None, :]
    if SAVE_PRE:
        _store_halves(hpre_ptr, acc_a, acc_s, n, offs_g, offs_p, C, HW, ok)
    th, sg = _gates(acc_a, acc_s)
    z = th * sg
    if FUSED:
        # h_out = w_res @ z (+ b_res) (+ h): z never goes to memory
        project_tile(z, offs_g, g_ok, wr_ptr, hout_ptr, h_ptr, br_ptr, n, offs_p, C, C, HW, RESIDUAL, HAS_BR,
                     LOW, MODE, ACC, BLOCK_O, BLOCK_P)
    else:
        tl.store(z_ptr + n * C * HW + offs_g[:, None] * HW + offs_p[None, :], z, mask=ok)


@triton.jit
def _project_kernel(z_ptr, w_ptr, b_ptr, add_ptr, out_ptr, C, HW, n_o_blocks, n_p_blocks,
                    HAS_ADD: tl.constexpr, HAS_BIAS: tl.constexpr, LOW: tl.constexpr, MODE: tl.constexpr,
                    ACC: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr):
    """out[n] = w_res @ z[n] (+ add[n]) (+ b): the 1x1 projection of the scratch gate (unfused path)."""
    project(z_ptr, w_ptr, b_ptr, add_ptr, out_ptr, C, C, HW, n_o_blocks, n_p_blocks, HAS_ADD, HAS_BIAS, LOW,
            MODE, ACC, BLOCK_O, BLOCK_G, BLOCK_P)


@triton.jit
def _grad_h_pre_kernel(gh_ptr, hpre_ptr, wr_ptr, dh_ptr, z_ptr, C, H, W, n_g_blocks, n_p_blocks,
                       LOW: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr, BLOCK_G: tl.constexpr,
                       BLOCK_O: tl.constexpr, BLOCK_P: tl.constexpr):
    n, offs_g, g_ok, offs_p, p_ok, i, j = _gate_program(n_g_blocks, n_p_blocks, C, H, W, BLOCK_G, BLOCK_P)
    HW = H * W
    # dG = w_res[:, offs_g]^T @ g_h[n]: the mirror of a 1x1 tap
    dg = _mirrored_taps(tl.zeros((BLOCK_G, BLOCK_P), ACC), gh_ptr + n * C * HW, wr_ptr, offs_g, g_ok, C, C,
                        offs_p, i, j, p_ok, H, W, 1, 1, 0, 0, LOW, MODE, ACC, BLOCK_O)
    ok = g_ok[:, None] & p_ok[None, :]
    a, s = _load_halves(hpre_ptr, n, offs_g, offs_p, C, HW, ok)
    th, sg = _gates(a, s)
    _store_halves(dh_ptr, dg * sg * (1.0 - th * th), dg * th * sg * (1.0 - sg), n, offs_g, offs_p, C, HW, ok)
    tl.store(z_ptr + n * C * HW + offs_g[:, None] * HW + offs_p[None, :], th * sg, mask=ok)


@triton.jit
def _grad_v_pre_kernel(gv_ptr, vpre_ptr, dh_ptr, wl_ptr, dv_ptr, C, H, W, n_g_blocks, n_p_blocks,
                       LOW: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr, BLOCK_G: tl.constexpr,
                       BLOCK_O: tl.constexpr, BLOCK_P: tl.constexpr):
    n, offs_g, g_ok, offs_p, p_ok, i, j = _gate_program(n_g_blocks, n_p_blocks, C, H, W, BLOCK_G, BLOCK_P)
    HW = H * W
    # the link's share: w_v2h[:, rows]^T @ dH[n, :, row i + 1] (zero for the last row), the mirror of
    # the tap (dy, dx) = (-1, 0), for the rows offs_g (tanh half) and C + offs_g (sigmoid half)
    dh_base = dh_ptr + n * 2 * C * HW
    link_a = _mirrored_taps(tl.zeros((BLOCK_G, BLOCK_P), ACC), dh_base, wl_ptr, offs_g, g_ok, 2 * C, 2 * C,
                            offs_p, i, j, p_ok, H, W, 1, 1, 1, 0, LOW, MODE, ACC, BLOCK_O)
    link_s = _mirrored_taps(tl.zeros((BLOCK_G, BLOCK_P), ACC), dh_base, wl_ptr, C + offs_g, g_ok, 2 * C,
                            2 * C, offs_p, i, j, p_ok, H, W, 1, 1, 1, 0, LOW, MODE, ACC, BLOCK_O)
    ok = g_ok[:, None] & p_ok[None, :]
    gv = tl.load(gv_ptr + n * C * HW + offs_g[:, None] * HW + offs_p[None, :], mask=ok, other=0.0).to(ACC)
    a, s = _load_halves(vpre_ptr, n, offs_g, offs_p, C, HW, ok)
    th, sg = _gates(a, s)
    _store_halves(dv_ptr, gv * sg * (1.0 - th * th) + link_a, gv * th * sg * (1.0 - sg) + link_s,
                  n, offs_g, offs_p, C, HW, ok)


@triton.jit
def _grad_input_kernel(gy_ptr, w_ptr, add_ptr, gx_ptr, C_out, C_in, H, W, n_taps, n_c_blocks, n_p_blocks,
                       KW: tl.constexpr, TOP: tl.constexpr, LEFT: tl.constexpr, HAS_ADD: tl.constexpr,
                       LOW: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr,
                       BLOCK_O: tl.constexpr, BLOCK_P: tl.constexpr):
    """gx[n, c_blk, p_blk] = the mirrored taps of gy[n] (N, C_out, H, W) (+ add[n])."""
    n, offs_c, offs_p = program_blocks(n_c_blocks, n_p_blocks, BLOCK_C, BLOCK_P)
    HW = H * W
    c_ok = offs_c < C_in
    p_ok = offs_p < HW
    acc = _mirrored_taps(tl.zeros((BLOCK_C, BLOCK_P), ACC), gy_ptr + n * C_out * HW, w_ptr, offs_c, c_ok,
                         C_out, C_in, offs_p, offs_p // W, offs_p % W, p_ok, H, W, n_taps, KW, TOP, LEFT, LOW,
                         MODE, ACC, BLOCK_O)
    store_rows(acc, gx_ptr, add_ptr, gx_ptr, n, offs_c, offs_p, C_in, HW, HAS_ADD, False, ACC)


@triton.jit
def _grad_w_kernel(gy_ptr, u_ptr, partial_ptr, C_out, C_in, H, W, n_taps, tap_stride, n_o_blocks, n_c_blocks,
                   n_p_blocks, n_slabs, n_split, KW: tl.constexpr, TOP: tl.constexpr, LEFT: tl.constexpr,
                   LOW: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr, BLOCK_O: tl.constexpr,
                   BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """partial[split, o_blk, c_blk, tap] = sum over the split's (n, pixel block) slabs of
    gy[n, o_blk, p] u[n, c_blk, p + (dy, dx)]^T."""
    pid = tl.program_id(0).to(tl.int64)
    c_block = pid % n_c_blocks
    rest = pid // n_c_blocks
    o_block = rest % n_o_blocks
    rest = rest // n_o_blocks
    tap = rest % n_taps
    split = rest // n_taps
    dy = tap // KW - TOP
    dx = tap % KW - LEFT
    offs_o = o_block * BLOCK_O + tl.arange(0, BLOCK_O)
    offs_c = c_block * BLOCK_C + tl.arange(0, BLOCK_C)
    o_ok = offs_o < C_out
    c_ok = offs_c < C_in
    acc = shifted_pixel_products(tl.zeros((BLOCK_O, BLOCK_C), ACC), gy_ptr, u_ptr, C_out, C_in, offs_o,
                                 o_ok, offs_c, c_ok, H, W, dy, dx, split, n_split, n_slabs, n_p_blocks, LOW,
                                 MODE, ACC, BLOCK_P)
    # partial layout (split, C_out, C_in, tap_stride): the sum over split is the weight layout.
    tl.store(partial_ptr + split * C_out * C_in * tap_stride + offs_o[:, None] * C_in * tap_stride
             + offs_c[None, :] * tap_stride + tap, acc, mask=o_ok[:, None] & c_ok[None, :])


def _meta(dtype: torch.dtype) -> dict:
    return {"LOW": LOW[dtype], **mma_meta(dtype), "BLOCK_P": BLOCK_P,
            "num_warps": tile_warps(dtype, NUM_WARPS)}


def fused_gate_block(C: int, dtype: torch.dtype) -> int:
    """Rows of the fused horizontal forward's gate tile, or 0 when the unfused forward is used."""
    return fused_gate_rows(C, dtype, FUSED_MAX_GATE)


def _as_2d(weight: torch.Tensor) -> torch.Tensor:
    # The op takes 2-D 1x1 weights; accept the nn.Conv2d layout (C_out, C_in, 1, 1) too.
    if weight.dim() == 4 and tuple(weight.shape[2:]) == (1, 1):
        weight = weight[:, :, 0, 0]
    return weight.contiguous()


def _check(v, h, w_v, w_h, w_v2h, w_res, mask_type, cond, w_cond_v, w_cond_h) -> None:
    if v.dim() != 4 or h.shape != v.shape:
        raise ValueError(f"v and h must be (N, C_in, H, W) of one shape, got {tuple(v.shape)} and "
                         f"{tuple(h.shape)}")
    if mask_type not in ("A", "B"):
        raise ValueError(f'mask_type must be "A" or "B", got {mask_type!r}')
    c_in = v.shape[1]
    if w_v.dim() != 4 or w_v.shape[0] == 0 or w_v.shape[0] % 2 or w_v.shape[3] % 2 == 0 \
            or tuple(w_v.shape[1:3]) != (c_in, w_v.shape[3] // 2 + 1):
        raise ValueError(f"w_v must be (2C, C_in, n // 2 + 1, n) with 2C even and nonzero, n odd and "
                         f"C_in = {c_in}, got {tuple(w_v.shape)}")
    two_c, n = w_v.shape[0], w_v.shape[3]
    c = two_c // 2
    if tuple(w_h.shape) != (two_c, c_in, 1, n // 2 + 1):
        raise ValueError(f"w_h must be {(two_c, c_in, 1, n // 2 + 1)}, got {tuple(w_h.shape)}")
    if tuple(w_v2h.shape) != (two_c, two_c) or tuple(w_res.shape) != (c, c):
        raise ValueError(f"w_v2h and w_res must be {(two_c, two_c)} and {(c, c)}, got {tuple(w_v2h.shape)} "
                         f"and {tuple(w_res.shape)}")
    if mask_type == "B" and c_in != c:
        raise ValueError(f'mask_type "B" adds the horizontal residual: C_in must be C = {c}, got {c_in}')
    if not (cond is None) == (w_cond_v is None) == (w_cond_h is None):
        raise ValueError("cond, w_cond_v and w_cond_h must be given together or all be None")
    if cond is not None and (cond.dim() != 2 or cond.shape[0] != v.shape[0]
                             or tuple(w_cond_v.shape) != (two_c, cond.shape[1])
                             or tuple(w_cond_h.shape) != (two_c, cond.shape[1])):
        raise ValueError(f"cond must be (N, D) and w_cond_v, w_cond_h (2C, D), got {tuple(cond.shape)}, "
                         f"{tuple(w_cond_v.shape)} and {tuple(w_cond_h.shape)}")
    for name, t in (("h", h), ("w_v", w_v), ("w_h", w_h), ("w_v2h", w_v2h), ("w_res", w_res), ("cond", cond),
                    ("w_cond_v", w_cond_v), ("w_cond_h", w_cond_h)):
        if t is not None and t.dtype != v.dtype:
            raise TypeError(f"{name} must have the dtype of v ({v.dtype}), got {t.dtype}")


def _operands(v, h, w_v, w_h, w_v2h, w_res, mask_type, cond, w_cond_v, w_cond_h):
    """(v, h, w_v, w_h, w_v2h, w_res) checked, with 2-D 1x1 weights and the rest contiguous."""
    w_v2h, w_res = _as_2d(w_v2h), _as_2d(w_res)
    _check(v, h, w_v, w_h, w_v2h, w_res, mask_type, cond, w_cond_v, w_cond_h)
    return v.contiguous(), h.contiguous(), w_v.contiguous(), w_h.contiguous(), w_v2h, w_res

def _geometry(w_v: torch.Tensor, w_h: torch.Tensor, mask_type: str):
    """Tap-major weights and tap geometry {n_taps, KW, TOP, LEFT} of the vertical and horizontal stacks."""
    n = w_v.shape[3]
    k = n // 2
    width = k + 1 if mask_type == "B" else k  # mask "A" never reads w_h's last (current-pixel) tap
    wv_taps = w_v.flatten(2).permute(2, 0, 1).contiguous()  # ((k + 1) n, 2C, C_in)
    # (width, 2C, C_in); a 1-wide mask "A" reads nothing: any non-empty placeholder will do
    wh_taps = w_h.flatten(2)[:, :, :width].permute(2, 0, 1).contiguous() if width else w_h.contiguous()
    vert = {"n_taps": (k + 1) * n, "KW": n, "TOP": k, "LEFT": k}
    horiz = {"n_taps": width, "KW": k + 1, "TOP": 0, "LEFT": k}
    return wv_taps, vert, wh_taps, horiz


def gated_pixelcnn_layer(v: torch.Tensor, h: torch.Tensor, w_v: torch.Tensor, b_v: torch.Tensor | None,
                         w_h: torch.Tensor, b_h: torch.Tensor | None, w_v2h: torch.Tensor,
                         b_v2h: torch.Tensor | None, w_res: torch.Tensor, b_res: torch.Tensor | None,
                         mask_type: str, cond: torch.Tensor | None, w_cond_v: torch.Tensor | None,
                         w_cond_h: torch.Tensor | None, save_pre_activation: bool
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(v_out, h_out, v_pre, h_pre): v_pre, h_pre (N, 2C, H, W) in the accumulation dtype, or empty
    (0,) tensors when not saved."""
    v, h, w_v, w_h, w_v2h, w_res = _operands(v, h, w_v, w_h, w_v2h, w_res, mask_type, cond, w_cond_v,
                                             w_cond_h)
    N, C_in, H, W = v.shape
    C2 = w_v.shape[0]
    C = C2 // 2
    HW = H * W
    acc_dtype = accumulation_dtype(v.dtype)
    v_out = torch.empty((N, C, H, W), dtype=v.dtype, device=v.device)
    h_out = torch.empty((N, C, H, W), dtype=v.dtype, device=v.device)
    # v_pre is always computed (the link reads it at row i - 1); returned only when saved
    v_pre = torch.empty((N, C2, H, W), dtype=acc_dtype, device=v.device)
    h_pre = torch.empty((N, C2, H, W) if save_pre_activation else (0,), dtype=acc_dtype, device=v.device)
    if N * HW > 0:
        wv_taps, vert, wh_taps, horiz = _geometry(w_v, w_h, mask_type)
        has_cond = cond is not None
        D = cond.shape[1] if has_cond else 0
        cond_arg = cond.contiguous() if has_cond else v
        wcv = w_cond_v.contiguous() if has_cond else v
        wch = w_cond_h.contiguous() if has_cond else v
        meta = _meta(v.dtype)
        n_p = triton.cdiv(HW, BLOCK_P)
        n_g = triton.cdiv(C, BLOCK_G)
        with guard(v.device):
            wrap(_vertical_kernel)[(N * n_g * n_p,)](
                v, wv_taps, b_v.contiguous() if b_v is not None else v, cond_arg, wcv, v_pre, v_out, C_in, C,
                D, H, W, vert["n_taps"], n_g, n_p, KW=vert["KW"], TOP=vert["TOP"], LEFT=vert["LEFT"],
                HAS_BIAS=b_v is not None, HAS_COND=has_cond, BLOCK_G=BLOCK_G, BLOCK_C=BLOCK_C, **meta)
            gate_rows = fused_gate_block(C, v.dtype)
            block_g, n_gh = (gate_rows, 1) if gate_rows else (BLOCK_G, n_g)
            z = v_pre if gate_rows else torch.empty((N, C, H, W), dtype=acc_dtype, device=v.device)
            bh, bl, br = (b.contiguous() if b is not None else v for b in (b_h, b_v2h, b_res))
            hpre_arg = h_pre if save_pre_activation else v_pre  # never written when not saved
            args = (h, wh_taps, bh, v_pre, w_v2h, bl, cond_arg, wch, w_res, br, hpre_arg, z, h_out, C_in, C,
                    D, H, W, horiz["n_taps"], n_gh, n_p)
            flags = {"KW": horiz["KW"], "LEFT": horiz["LEFT"], "HAS_BH": b_h is not None,
                     "HAS_BL": b_v2h is not None, "HAS_BR": b_res is not None, "HAS_COND": has_cond,
                     "RESIDUAL": mask_type == "B", "SAVE_PRE": save_pre_activation, "FUSED": bool(gate_rows),
                     "BLOCK_G": block_g, "BLOCK_C": BLOCK_C, "BLOCK_O": BLOCK_O}
            if gate_rows:
                fused_meta = {**meta, "num_warps": FUSED_NUM_WARPS}
                wrap(_horizontal_kernel)[(N * n_p,)](*args, **flags, **fused_meta)
            else:
                wrap(_horizontal_kernel)[(N * n_g * n_p,)](*args, **flags, **meta)
                n_o = triton.cdiv(C, BLOCK_O)
                wrap(_project_kernel)[(N * n_o * n_p,)](
                    z, w_res, br, h, h_out, C, HW, n_o, n_p,
                    HAS_ADD=mask_type == "B", HAS_BIAS=b_res is not None, BLOCK_O=BLOCK_O, BLOCK_G=BLOCK_G,
                    **meta)
    if not save_pre_activation:
        v_pre = torch.empty((0,), dtype=acc_dtype, device=v.device)
    return v_out, h_out, v_pre, h_pre


def _grad_input(gy: torch.Tensor, w_taps: torch.Tensor, geometry: dict, add: torch.Tensor | None,
                out: torch.Tensor, meta: dict) -> torch.Tensor:
    """out[n] = the mirrored taps of gy[n] with the tap-major w_taps (n_taps, C_out, C_in) (+ add[n])."""
    N, C_in, H, W = out.shape
    if out.numel() == 0:
        return out
    if geometry["n_taps"] == 0:
        return out.copy_(add) if add is not None else out.zero_()
    n_c, n_p = triton.cdiv(C_in, BLOCK_C), triton.cdiv(H * W, BLOCK_P)
    wrap(_grad_input_kernel)[(N * n_c * n_p,)](
        gy, w_taps, add if add is not None else out, out, gy.shape[1], C_in, H, W, geometry["n_taps"], n_c,
        n_p, KW=geometry["KW"], TOP=geometry["TOP"], LEFT=geometry["LEFT"], HAS_ADD=add is not None,
        BLOCK_C=BLOCK_C, BLOCK_O=BLOCK_O, **meta)
    return out


def _grad_weight(gy: torch.Tensor, u: torch.Tensor, geometry: dict, tap_stride: int, weight: torch.Tensor,
                 meta: dict) -> torch.Tensor:
    """sum over (n, p) of gy[n, o, p] u[n, c, p + (dy, dx)] per tap, as (C_out, C_in, tap_stride) reshaped
    like weight; the taps >= n_taps are exactly 0."""
    N, C_out, H, W = gy.shape
    C_in = u.shape[1]
    n_taps = geometry["n_taps"]
    n_p = triton.cdiv(H * W, BLOCK_P)
    n_slabs = N * n_p
    if weight.numel() == 0 or n_slabs == 0 or n_taps == 0:
        return torch.zeros(weight.shape, dtype=weight.dtype, device=weight.device)
    n_split = min(n_slabs, WEIGHT_SPLIT)
    n_o, n_c = triton.cdiv(C_out, BLOCK_O), triton.cdiv(C_in, BLOCK_C)
    alloc = torch.zeros if n_taps < tap_stride else torch.empty  # unread taps stay exactly 0
    partials = alloc((n_split, C_out, C_in, tap_stride), dtype=accumulation_dtype(weight.dtype),
                     device=gy.device)
    wrap(_grad_w_kernel)[(n_split * n_taps * n_o * n_c,)](
        gy, u, partials, C_out, C_in, H, W, n_taps, tap_stride, n_o, n_c, n_p, n_slabs, n_split,
        KW=geometry["KW"], TOP=geometry["TOP"], LEFT=geometry["LEFT"], BLOCK_O=BLOCK_O, BLOCK_C=BLOCK_C,
        **meta)
    return partials.sum(0).to(weight.dtype).reshape(weight.shape)


def gated_pixelcnn_layer_backward(grad_v_out: torch.Tensor, grad_h_out: torch.Tensor, v: torch.Tensor,
                                  h: torch.Tensor, v_pre: torch.Tensor, h_pre: torch.Tensor,
                                  w_v: torch.Tensor, w_h: torch.Tensor, w_v2h: torch.Tensor,
                                  w_res: torch.Tensor, mask_type: str, cond: torch.Tensor | None,
                                  w_cond_v: torch.Tensor | None, w_cond_h: torch.Tensor | None
                                  ) -> tuple[torch.Tensor, ...]:
    """(grad_v, grad_h, grad_w_v, grad_b_v, grad_w_h, grad_b_h, grad_w_v2h, grad_b_v2h, grad_w_res,
    grad_b_res, grad_cond, grad_w_cond_v, grad_w_cond_h), each in its input's dtype; the last three are
    empty (0,) tensors when cond is None; grad_w_h is exactly 0 on the ignored tap of mask "A"."""
    w_v2h_shape, w_res_shape = w_v2h.shape, w_res.shape
    v, h, w_v, w_h, w_v2h, w_res = _operands(v, h, w_v, w_h, w_v2h, w_res, mask_type, cond, w_cond_v,
                                             w_cond_h)
    N, C_in, H, W = v.shape
    C2 = w_v.shape[0]
    C = C2 // 2
    HW = H * W
    k = w_v.shape[3] // 2
    if tuple(v_pre.shape) != (N, C2, H, W) or tuple(h_pre.shape) != (N, C2, H, W):
        raise ValueError(f"v_pre and h_pre must be the saved pre-activations {(N, C2, H, W)} "
                         f"(save_pre_activation=True), got {tuple(v_pre.shape)} and {tuple(h_pre.shape)}")
    if tuple(grad_v_out.shape) != (N, C, H, W) or tuple(grad_h_out.shape) != (N, C, H, W):
        raise ValueError(f"grad_v_out and grad_h_out must have shape {(N, C, H, W)}, got "
                         f"{tuple(grad_v_out.shape)} and {tuple(grad_h_out.shape)}")
    acc_dtype = accumulation_dtype(v.dtype)
    g_v = grad_v_out.to(v.dtype).contiguous()
    g_h = grad_h_out.to(v.dtype).contiguous()
    v_pre = v_pre.to(acc_dtype).contiguous()
    h_pre = h_pre.to(acc_dtype).contiguous()
    wv_taps, vert, wh_taps, horiz = _geometry(w_v, w_h, mask_type)
    meta = _meta(v.dtype)
    dh = torch.zeros((N, C2, H, W), dtype=acc_dtype, device=v.device)
    dv = torch.zeros((N, C2, H, W), dtype=acc_dtype, device=v.device)
    z = torch.zeros((N, C, H, W), dtype=acc_dtype, device=v.device)  # the horizontal gate, for grad_w_res
    with guard(v.device):
        if N * HW > 0:
            n_g, n_p = triton.cdiv(C, BLOCK_G), triton.cdiv(HW, BLOCK_P)
            wrap(_grad_h_pre_kernel)[(N * n_g * n_p,)](
                g_h, h_pre, w_res, dh, z, C, H, W, n_g, n_p, BLOCK_G=BLOCK_G, BLOCK_O=BLOCK_O, **meta)
            wrap(_grad_v_pre_kernel)[(N * n_g * n_p,)](
                g_v, v_pre, dh, w_v2h, dv, C, H, W, n_g, n_p, BLOCK_G=BLOCK_G, BLOCK_O=BLOCK_O, **meta)
        grad_h = _grad_input(dh, wh_taps, horiz, g_h if mask_type == "B" else None, torch.empty_like(h), meta)
        grad_v = _grad_input(dv, wv_taps, vert, None, torch.empty_like(v), meta)
        grad_w_v = _grad_weight(dv, v, vert, vert["n_taps"], w_v, meta)
        grad_w_h = _grad_weight(dh, h, horiz, k + 1, w_h, meta)
        link = {"n_taps": 1, "KW": 1, "TOP": 1, "LEFT": 0}  # v_pre at row i - 1
        grad_w_v2h = _grad_weight(dh, v_pre, link, 1, w_v2h, meta).reshape(w_v2h_shape)
        pointwise = {"n_taps": 1, "KW": 1, "TOP": 0, "LEFT": 0}
        grad_w_res = _grad_weight(g_h, z, pointwise, 1, w_res, meta).reshape(w_res_shape)
    # The small rest, by torch in the accumulation dtype (deterministic reductions).
    s_v = dv.sum((2, 3))  # (N, 2C)
    s_h = dh.sum((2, 3))
    grad_b_v = s_v.sum(0).to(v.dtype)
    grad_b_h = s_h.sum(0).to(v.dtype)
    grad_b_v2h = grad_b_h.clone()  # outputs must not alias
    grad_b_res = g_h.sum((0, 2, 3), dtype=acc_dtype).to(v.dtype)
    if cond is not None:
        cond_acc = cond.to(acc_dtype)
        grad_cond = (s_v @ w_cond_v.to(acc_dtype) + s_h @ w_cond_h.to(acc_dtype)).to(cond.dtype)
        grad_w_cond_v = (s_v.t() @ cond_acc).to(w_cond_v.dtype)
        grad_w_cond_h = (s_h.t() @ cond_acc).to(w_cond_h.dtype)
    else:
        grad_cond, grad_w_cond_v, grad_w_cond_h = v.new_empty((0,)), v.new_empty((0,)), v.new_empty((0,))
    return (grad_v, grad_h, grad_w_v, grad_b_v, grad_w_h, grad_b_h, grad_w_v2h, grad_b_v2h, grad_w_res,
            grad_b_res, grad_cond, grad_w_cond_v, grad_w_cond_h)
