"""Triton kernel of pixelcnn_generate_row: one PixelCNN image row per launch on the GPU.

One program per image walks the row left to right: at each pixel every layer's horizontal stack
(row cache in a per-image scratch buffer, shifted left and appended in place), the output head
and the categorical draw of each channel, whose value is the next pixel's input. Running vectors
and caches live in global scratch (L1/L2-resident), with block barriers between each write and
the reads of other threads. Accumulation in float32 (float64 for float64).

Supported layouts (``why_not``): layer 0 reads the image with mask "A" or "B", every later layer
has mask "B" and the same kernel width (a standard Gated PixelCNN), and every channel count fits
one register block (MAX_BLOCK).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import accumulation_dtype, draw, guard, lanes, tanh_sigmoid, vector_block, wrap

MAX_BLOCK = 1024
NUM_WARPS = 4


@triton.jit
def _pixel_step(state, x_in, w_h, b_h, w_res, b_res, link, link_stride, cond, w_cond, h_out, C_IN, T, C, D,
                MASK_B: tl.constexpr, HAS_BH: tl.constexpr, HAS_BR: tl.constexpr, HAS_COND: tl.constexpr,
                ACC: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr):
    """One layer's horizontal stack at one pixel (see fastgen.reference.steps):
    state (C_IN, T) shifts left and takes x_in last; h_out (C) = w_res z + b_res (+ x_in for "B")."""
    first = 0 if MASK_B else 1
    used = T - first
    # Shift the cache: every thread reads the old values before any thread writes.
    offs_s = tl.arange(0, BLOCK_Q).to(tl.int64)
    s_ok = offs_s < C_IN * T
    s_c = offs_s // T
    s_t = offs_s % T
    newer = tl.load(state + offs_s + 1, mask=s_ok & (s_t < T - 1), other=0.0)
    fresh = tl.load(x_in + s_c, mask=s_ok & (s_t == T - 1), other=0.0).to(newer.dtype)
    tl.debug_barrier()
    tl.store(state + offs_s, tl.where(s_t == T - 1, fresh, newer), mask=s_ok)
    tl.debug_barrier()
    # The window: state[c, t + first] for t < used, against w_h[o, c, 0, t].
    offs_q = tl.arange(0, BLOCK_Q).to(tl.int64)
    q_ok = offs_q < C_IN * used
    q_c = offs_q // used
    q_t = offs_q % used
    window = tl.load(state + q_c * T + q_t + first, mask=q_ok, other=0.0).to(ACC)
    offs_o = tl.arange(0, BLOCK_C).to(tl.int64)
    o_ok = offs_o < C
    w_a = tl.load(w_h + offs_o[:, None] * (C_IN * T) + (q_c * T + q_t)[None, :], mask=o_ok[:, None] & q_ok[None, :],
                  other=0.0).to(ACC)
    w_s = tl.load(w_h + (C + offs_o[:, None]) * (C_IN * T) + (q_c * T + q_t)[None, :],
                  mask=o_ok[:, None] & q_ok[None, :], other=0.0).to(ACC)
    acc_a = tl.sum(w_a * window[None, :], axis=1) + tl.load(link + offs_o * link_stride, mask=o_ok, other=0.0).to(ACC)
    acc_s = tl.sum(w_s * window[None, :], axis=1) + tl.load(link + (C + offs_o) * link_stride, mask=o_ok,
                                                            other=0.0).to(ACC)
    if HAS_BH:
        acc_a += tl.load(b_h + offs_o, mask=o_ok, other=0.0).to(ACC)
        acc_s += tl.load(b_h + C + offs_o, mask=o_ok, other=0.0).to(ACC)
    if HAS_COND:
        offs_d = tl.arange(0, BLOCK_D).to(tl.int64)
        d_ok = offs_d < D
        cv = tl.load(cond + offs_d, mask=d_ok, other=0.0).to(ACC)
        wc_a = tl.load(w_cond + offs_o[:, None] * D + offs_d[None, :], mask=o_ok[:, None] & d_ok[None, :],
                       other=0.0).to(ACC)
        wc_s = tl.load(w_cond + (C + offs_o[:, None]) * D + offs_d[None, :], mask=o_ok[:, None] & d_ok[None, :],
                       other=0.0).to(ACC)
        acc_a += tl.sum(wc_a * cv[None, :], axis=1)
        acc_s += tl.sum(wc_s * cv[None, :], axis=1)
    th, sg, _, _ = tanh_sigmoid(acc_a, acc_s)
    z = tl.where(o_ok, th * sg, 0.0)
    # h_out = w_res @ z + b_res (+ x_in): w_res (C, C) as a (rows = outputs) tile, z along columns.
    offs_k = tl.arange(0, BLOCK_C).to(tl.int64)
    w_r = tl.load(w_res + offs_o[:, None] * C + offs_k[None, :], mask=o_ok[:, None] & (offs_k < C)[None, :],
                  other=0.0).to(ACC)
    out = tl.sum(w_r * z[None, :], axis=1)
    if HAS_BR:
        out += tl.load(b_res + offs_o, mask=o_ok, other=0.0).to(ACC)
    if MASK_B:
        out += tl.load(x_in + offs_o, mask=o_ok, other=0.0).to(ACC)
    tl.debug_barrier()  # every thread has read x_in (which may be h_out of the previous layer)
    tl.store(h_out + offs_o, out, mask=o_ok)
    tl.debug_barrier()


@triton.jit
def _row_kernel(links, link_n, link_l, link_o, link_j, u_ptr, w_h0, b_h0, w_h, b_h, w_res, b_res, cond_ptr, w_cond,
                w_hid, b_hid, w_out, b_out, scratch, codes, W, LAYERS, C_IMG, C, T0, T, D, HIDDEN, LEVELS, SCRATCH,
                MASK0_B: tl.constexpr, HAS_BH: tl.constexpr, HAS_BR: tl.constexpr, HAS_COND: tl.constexpr,
                HAS_BHID: tl.constexpr, HAS_BOUT: tl.constexpr, ACC: tl.constexpr, BLOCK_Q0: tl.constexpr,
                BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr,
                BLOCK_L: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    # This image's scratch: x (C_IMG, the next pixel's input), h (C), hidden (HIDDEN), the row
    # caches of layer 0 (C_IMG * T0) and of layers 1.. (C * T each); zeroed by the caller.
    x_buf = scratch + n * SCRATCH
    h_buf = x_buf + C_IMG
    hid_buf = h_buf + C
    state0 = hid_buf + HIDDEN
    states = state0 + C_IMG * T0
    cond_n = cond_ptr + n * D
    link_base = links + n * link_n
    offs_c, c_ok = lanes(C, BLOCK_C)
    offs_h, h_ok = lanes(HIDDEN, BLOCK_H)
    offs_l, l_ok = lanes(LEVELS, BLOCK_L)
    for j in range(W):
        _pixel_step(state0, x_buf, w_h0, b_h0, w_res, b_res, link_base + j * link_j, link_o, cond_n, w_cond, h_buf,
                    C_IMG, T0, C, D, MASK0_B, HAS_BH, HAS_BR, HAS_COND, ACC, BLOCK_Q0, BLOCK_C, BLOCK_D)
        for layer in range(1, LAYERS):
            _pixel_step(states + (layer - 1) * C * T, h_buf, w_h + (layer - 1) * 2 * C * C * T,
                        b_h + layer * 2 * C, w_res + layer * C * C, b_res + layer * C,
                        link_base + layer * link_l + j * link_j, link_o, cond_n, w_cond + layer * 2 * C * D, h_buf,
                        C, T, C, D, True, HAS_BH, HAS_BR, HAS_COND, ACC, BLOCK_Q, BLOCK_C, BLOCK_D)
        # The head: logits = w_out relu(w_hid relu(h) + b_hid) + b_out.
        h = tl.maximum(tl.load(h_buf + offs_c, mask=c_ok, other=0.0), 0.0)
        w1 = tl.load(w_hid + offs_h[:, None] * C + offs_c[None, :], mask=h_ok[:, None] & c_ok[None, :],
                     other=0.0).to(ACC)
        hidden = tl.sum(w1 * h[None, :], axis=1)
        if HAS_BHID:
            hidden += tl.load(b_hid + offs_h, mask=h_ok, other=0.0).to(ACC)
        tl.store(hid_buf + offs_h, tl.maximum(hidden, 0.0), mask=h_ok)
        tl.debug_barrier()
        hidden = tl.load(hid_buf + offs_h, mask=h_ok, other=0.0)
        for ch in range(C_IMG):
            rows = ch * LEVELS + offs_l
            w2 = tl.load(w_out + rows[:, None] * HIDDEN + offs_h[None, :], mask=l_ok[:, None] & h_ok[None, :],
                         other=0.0).to(ACC)
            logits = tl.sum(w2 * hidden[None, :], axis=1)
            if HAS_BOUT:
                logits += tl.load(b_out + rows, mask=l_ok, other=0.0).to(ACC)
            logits = tl.where(l_ok, logits, float("-inf"))
            level = draw(logits, l_ok, tl.load(u_ptr + (n * C_IMG + ch) * W + j), LEVELS)
            tl.store(codes + (n * C_IMG + ch) * W + j, level)
            # The next pixel's input: 2 v - 1 with v = level / (levels - 1), in the model's dtype.
            v = level.to(u_ptr.dtype.element_ty) / (LEVELS - 1)
            tl.store(x_buf + ch, (2.0 * v - 1.0).to(ACC))
        tl.debug_barrier()


def why_not(w_h: list[torch.Tensor], mask_types: list[str], hidden: int, levels: int) -> str | None:
    """Why this kernel cannot run a model of these layers (None when it can)."""
    if any(m != "B" for m in mask_types[1:]):
        return "layers after the first must all have mask 'B'"
    if len({tuple(w.shape) for w in w_h[1:]}) > 1:
        return "layers after the first must all have the same weight shape"
    c_in0, t0 = w_h[0].shape[1], w_h[0].shape[3]
    c, t = w_h[0].shape[0] // 2, (w_h[1].shape[3] if len(w_h) > 1 else 1)
    sizes = {"first window": c_in0 * t0, "window": c * t, "channels": c, "hidden": hidden, "levels": levels}
    too_wide = {name: size for name, size in sizes.items() if vector_block(size) > MAX_BLOCK}
    if too_wide:
        return f"sizes above {MAX_BLOCK} per register block: {too_wide}"
    return None


def pixelcnn_generate_row(links, uniforms, w_h, b_h, w_res, b_res, mask_types, cond, w_cond_h, w_hidden, b_hidden,
                          w_out, b_out, levels):
    """int64 levels (N, C_img, W) of one image row (see fastgen.ops.pixelcnn_generate_row)."""
    reason = why_not(w_h, mask_types, w_hidden.shape[0], levels)
    if reason:
        raise ValueError(f"pixelcnn_generate_row on the GPU: {reason}")
    N, C_img, W = uniforms.shape
    layers, C = len(w_h), w_h[0].shape[0] // 2
    T0, T = w_h[0].shape[3], (w_h[1].shape[3] if layers > 1 else 1)
    D = cond.shape[1] if cond is not None else 0
    hidden = w_hidden.shape[0]
    codes = torch.empty((N, C_img, W), dtype=torch.int64, device=uniforms.device)
    if N == 0 or W == 0:
        return codes
    acc = accumulation_dtype(uniforms.dtype)
    x = uniforms

    def stacked(ts, shape):
        return torch.stack([t.reshape(shape) if t is not None else x.new_zeros(shape) for t in ts]).contiguous()

    links_all = torch.stack(list(links), 1)  # (N, layers, 2C, W)
    b_h_all = stacked(b_h, (2 * C,))  # layer 0's biases first, so the kernel reads them at offset 0 too
    w_h_rest = stacked(w_h[1:], (2 * C, C, 1, T)) if layers > 1 else x
    scratch_width = C_img + C + hidden + C_img * T0 + (layers - 1) * C * T
    scratch = torch.zeros((N, scratch_width), dtype=acc, device=x.device)
    args = (links_all, links_all.stride(0), links_all.stride(1), links_all.stride(2), links_all.stride(3),
            uniforms.contiguous(), w_h[0].contiguous(), b_h_all, w_h_rest, b_h_all,
            stacked(w_res, (C, C)), stacked(b_res, (C,)), cond.contiguous() if cond is not None else x,
            stacked(w_cond_h, (2 * C, D)) if cond is not None else x, w_hidden.reshape(hidden, -1).contiguous(),
            b_hidden if b_hidden is not None else x, w_out.reshape(w_out.shape[0], -1).contiguous(),
            b_out if b_out is not None else x, scratch, codes)
    with guard(x.device):
        wrap(_row_kernel)[(N,)](
            *args, W, layers, C_img, C, T0, T, D, hidden, levels, scratch_width,
            MASK0_B=mask_types[0] == "B", HAS_BH=any(b is not None for b in b_h),
            HAS_BR=any(b is not None for b in b_res), HAS_COND=cond is not None, HAS_BHID=b_hidden is not None,
            HAS_BOUT=b_out is not None, ACC=tl.float64 if acc == torch.float64 else tl.float32,
            BLOCK_Q0=vector_block(C_img * T0), BLOCK_Q=vector_block(C * T), BLOCK_C=vector_block(C),
            BLOCK_D=vector_block(D), BLOCK_H=vector_block(hidden), BLOCK_L=vector_block(levels), num_warps=NUM_WARPS)
    return codes
