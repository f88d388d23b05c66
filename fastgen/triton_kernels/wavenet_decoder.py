"""Triton kernel of wavenet_generate: the persistent WaveNet decoder for the GPU.

One program per sample runs the whole generation: for every step, every layer (ring-buffer taps,
gate, residual, skip), the output head, the categorical draw and the next input, with no launch
between steps. The residual input, the running skip sum, the head's hidden layer and the logits
live in a small per-sample scratch buffer in global memory (L1/L2-resident on a GPU), in the
accumulation dtype; the weights are read from global memory at every step, where a GPU's L2
keeps them (a 2 x 15-layer, 64/128/256 model is 5 MB). A block barrier separates each write of a
scratch vector from its reads by the other threads of the program.

Limits (``why_not``): every channel count fits one register block (at most MAX_BLOCK); a model
beyond that is sampled with the step ops. float16/bfloat16 models keep weights and rings in
their dtype and carry the running vectors in float32 (the step ops round them at every layer, so
codes can part after a near-tie).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import (accumulation_dtype, draw, guard, lanes, project_vector, tanh_sigmoid,
                                             vector_block, wrap)

BLOCK_C = 32  # input channels per chunk of the dilated convolution
BLOCK_O = 32  # output rows per chunk of a projection
MAX_BLOCK = 1024  # the widest vector a program holds in registers
NUM_WARPS = 4


@triton.jit
def _decoder_kernel(ring_ptr, ring_off_ptr, dil_ptr, first_ptr, u_ptr, emb_ptr, wd_ptr, bd_ptr, wr_ptr, br_ptr,
                    ws_ptr, bs_ptr, wc_ptr, cond_ptr, wh_ptr, bh_ptr, wo_ptr, bo_ptr, scratch_ptr, codes_ptr,
                    T, start, LAYERS, R, G, S, H, LEVELS, C_COND, SCRATCH,
                    K: tl.constexpr, HAS_COND: tl.constexpr, HAS_BH: tl.constexpr, HAS_BO: tl.constexpr,
                    ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_S: tl.constexpr,
                    BLOCK_H: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_C: tl.constexpr,
                    BLOCK_O: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    # This sample's scratch: x (R), skips (S), hidden (H), logits (LEVELS), in the accumulation dtype.
    x_buf = scratch_ptr + n * SCRATCH
    skip_buf = x_buf + R
    hidden_buf = skip_buf + S
    logit_buf = hidden_buf + H
    offs_r, r_ok = lanes(R, BLOCK_R)
    offs_g, g_ok = lanes(G, BLOCK_G)
    offs_s, s_ok = lanes(S, BLOCK_S)
    offs_h, h_ok = lanes(H, BLOCK_H)
    offs_l, l_ok = lanes(LEVELS, BLOCK_L)
    offs_d, d_ok = lanes(C_COND, BLOCK_D)
    tl.store(x_buf + offs_r, tl.load(first_ptr + n * R + offs_r, mask=r_ok, other=0.0).to(ACC), mask=r_ok)
    tl.debug_barrier()
    for t in range(T):
        p = start + t
        tl.store(skip_buf + offs_s, tl.zeros((BLOCK_S,), ACC), mask=s_ok)
        if HAS_COND:
            cond = tl.load(cond_ptr + (n * T + t) * C_COND + offs_d, mask=d_ok, other=0.0).to(ACC)
        for layer in range(LAYERS):
            dilation = tl.load(dil_ptr + layer)
            L = dilation * (K - 1)
            ring = ring_ptr + tl.load(ring_off_ptr + layer) + n * L * R
            wd = wd_ptr + layer * (2 * G * R * K)
            acc_a = tl.load(bd_ptr + layer * 2 * G + offs_g, mask=g_ok, other=0.0).to(ACC)
            acc_s = tl.load(bd_ptr + layer * 2 * G + G + offs_g, mask=g_ok, other=0.0).to(ACC)
            for k in tl.static_range(K):
                # Tap k reads time p - (K-1-k) * dilation: the layer input itself for the last tap.
                for c0 in range(0, R, BLOCK_C):
                    offs_c = (c0 + tl.arange(0, BLOCK_C)).to(tl.int64)
                    c_ok = offs_c < R
                    if k == K - 1:
                        tap = tl.load(x_buf + offs_c, mask=c_ok, other=0.0)
                    else:
                        slot = ((p - (K - 1 - k) * dilation) % L + L) % L
                        tap = tl.load(ring + slot * R + offs_c, mask=c_ok, other=0.0).to(ACC)
                    # w_dilated (2G, R, K): row j, channel c, tap k at (j * R + c) * K + k.
                    w_a = tl.load(wd + (offs_g[:, None] * R + offs_c[None, :]) * K + k,
                                  mask=g_ok[:, None] & c_ok[None, :], other=0.0).to(ACC)
                    w_s = tl.load(wd + ((G + offs_g[:, None]) * R + offs_c[None, :]) * K + k,
                                  mask=g_ok[:, None] & c_ok[None, :], other=0.0).to(ACC)
                    acc_a += tl.sum(w_a * tap[None, :], axis=1)
                    acc_s += tl.sum(w_s * tap[None, :], axis=1)
            if HAS_COND:
                wc = wc_ptr + layer * (2 * G * C_COND)
                w_a = tl.load(wc + offs_g[:, None] * C_COND + offs_d[None, :], mask=g_ok[:, None] & d_ok[None, :],
                              other=0.0).to(ACC)
                w_s = tl.load(wc + (G + offs_g[:, None]) * C_COND + offs_d[None, :],
                              mask=g_ok[:, None] & d_ok[None, :], other=0.0).to(ACC)
                acc_a += tl.sum(w_a * cond[None, :], axis=1)
                acc_s += tl.sum(w_s * cond[None, :], axis=1)
            th, sg, _, _ = tanh_sigmoid(acc_a, acc_s)
            z = tl.where(g_ok, th * sg, 0.0)
            # Every thread has read x and the ring: x goes to slot p mod L, then x += W_r z + b_r.
            tl.debug_barrier()
            if K > 1:
                x_now = tl.load(x_buf + offs_r, mask=r_ok, other=0.0)
                tl.store(ring + (p % L) * R + offs_r, x_now.to(ring_ptr.dtype.element_ty), mask=r_ok)
                tl.debug_barrier()
            project_vector(z, offs_g, g_ok, wr_ptr + layer * R * G, br_ptr + layer * R, x_buf, x_buf, R, G, True, True,
                           BLOCK_O)
            project_vector(z, offs_g, g_ok, ws_ptr + layer * S * G, bs_ptr + layer * S, skip_buf, skip_buf, S, G, True,
                           True, BLOCK_O)
            tl.debug_barrier()
        # The head: logits = W_o relu(W_h relu(skips) + b_h) + b_o.
        skips = tl.maximum(tl.load(skip_buf + offs_s, mask=s_ok, other=0.0), 0.0)
        project_vector(skips, offs_s, s_ok, wh_ptr, bh_ptr, hidden_buf, hidden_buf, H, S, HAS_BH, False, BLOCK_O)
        tl.debug_barrier()
        hidden = tl.maximum(tl.load(hidden_buf + offs_h, mask=h_ok, other=0.0), 0.0)
        project_vector(hidden, offs_h, h_ok, wo_ptr, bo_ptr, logit_buf, logit_buf, LEVELS, H, HAS_BO, False, BLOCK_O)
        tl.debug_barrier()
        logits = tl.load(logit_buf + offs_l, mask=l_ok, other=float("-inf"))
        code = draw(logits, l_ok, tl.load(u_ptr + n * T + t), LEVELS)
        tl.store(codes_ptr + n * T + t, code)
        tl.store(x_buf + offs_r, tl.load(emb_ptr + code * R + offs_r, mask=r_ok, other=0.0).to(ACC), mask=r_ok)
        tl.debug_barrier()


def why_not(channels: dict[str, int]) -> str | None:
    """Why the decoder cannot run a model with these channel counts (None when it can)."""
    too_wide = {name: size for name, size in channels.items() if vector_block(size) > MAX_BLOCK}
    if too_wide:
        return f"channel counts above {MAX_BLOCK} per register block: {too_wide}"
    return None


def _stacked(tensors: list[torch.Tensor | None], shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """The per-layer tensors stacked (zeros for a missing bias), contiguous."""
    return torch.stack([t.reshape(shape) if t is not None else like.new_zeros(shape) for t in tensors]).contiguous()


def wavenet_generate(states, first_input, uniforms, embedding, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip,
                     w_cond, dilations, w_hidden, b_hidden, w_out, b_out, cond, start):
    """int64 codes (N, T); ``states`` updated in place (see fastgen.ops.wavenet_generate)."""
    N, R = first_input.shape
    T = uniforms.shape[1]
    C_gate, _, K = w_dilated[0].shape
    G, S, H, levels = C_gate // 2, w_skip[0].shape[0], w_hidden.shape[0], w_out.shape[0]
    C_cond = cond.shape[1] if cond is not None else 0
    reason = why_not({"residual": R, "gate": G, "skip": S, "hidden": H, "levels": levels, "cond": C_cond})
    if reason:
        raise ValueError(f"wavenet_generate on the GPU: {reason}; sample with the step ops")
    codes = torch.empty((N, T), dtype=torch.int64, device=first_input.device)
    if N == 0 or T == 0:
        return codes
    acc = accumulation_dtype(first_input.dtype)
    # The rings of every layer in one buffer (the kernel addresses layer l at ring_off[l]); copied
    # back into the caller's states afterwards.
    ring = torch.cat([s.reshape(-1) for s in states]) if K > 1 else first_input.new_zeros(1)
    sizes = [s.numel() for s in states]
    ring_off = torch.tensor([sum(sizes[:i]) for i in range(len(states))], dtype=torch.int64, device=ring.device)
    dil = torch.tensor(list(dilations), dtype=torch.int64, device=ring.device)
    layers = len(states)
    has_cond = cond is not None
    scratch_width = R + S + H + levels
    scratch = torch.empty((N, scratch_width), dtype=acc, device=first_input.device)
    tensors = (
        first_input.contiguous(), uniforms.contiguous(), embedding.contiguous(),
        _stacked(w_dilated, (C_gate, R, K), first_input), _stacked(b_dilated, (C_gate,), first_input),
        _stacked(w_res, (R, G), first_input), _stacked(b_res, (R,), first_input),
        _stacked(w_skip, (S, G), first_input), _stacked(b_skip, (S,), first_input),
        _stacked(w_cond, (C_gate, C_cond), first_input) if has_cond else first_input,
        cond.transpose(1, 2).contiguous() if has_cond else first_input,  # (N, T, C_cond): a step's vector is contiguous
        w_hidden.contiguous(), b_hidden.contiguous() if b_hidden is not None else first_input,
        w_out.contiguous(), b_out.contiguous() if b_out is not None else first_input)
    (first, u, emb, wd, bd, wr, br, ws, bs, wc, cond_t, wh, bh, wo, bo) = tensors
    with guard(first_input.device):
        wrap(_decoder_kernel)[(N,)](
            ring, ring_off, dil, first, u, emb, wd, bd, wr, br, ws, bs, wc, cond_t, wh, bh, wo, bo, scratch, codes,
            T, start, layers, R, G, S, H, levels, C_cond, scratch_width,
            K=K, HAS_COND=has_cond, HAS_BH=b_hidden is not None, HAS_BO=b_out is not None,
            ACC=tl.float64 if acc == torch.float64 else tl.float32, BLOCK_R=vector_block(R),
            BLOCK_G=vector_block(G), BLOCK_S=vector_block(S), BLOCK_H=vector_block(H), BLOCK_L=vector_block(levels),
            BLOCK_D=vector_block(C_cond), BLOCK_C=BLOCK_C,
            BLOCK_O=BLOCK_O, num_warps=NUM_WARPS)
    if K > 1:
        for state, part in zip(states, ring.split(sizes)):
            state.copy_(part.view_as(state))
    return codes
