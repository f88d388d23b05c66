"""Triton kernels of the PixelCNN masked 2-D convolution: masked_conv2d and its backward.

x (N, C_in, H, W), weight (C_out, C_in // groups, KH, KW) with odd KH, KW -> y (N, C_out, H, W),
"same" size. With the centre (CY, CX) = (KH // 2, KW // 2) the kept taps are the ones before
the centre in raster order, i.e. the raster indices ``0 .. CY * KW + CX - 1``, plus the centre
tap (index ``CY * KW + CX``) when mask "B" or RGB masking keeps it. The kept taps are a
compile-time prefix of the raster order (KH, KW, CENTRE are constexpr), so the kernels loop over
them only: masked taps are neither loaded nor multiplied. Tap ``t = (ky, kx)`` reads the input at
the pixel offset ``(dy, dx) = ((ky - CY) * dilation, (kx - CX) * dilation)``, masked to the image
(no padded copy of x is built). CENTRE: 0 no centre tap (mask "A"), 1 full centre tap (mask "B"),
2 RGB-masked centre tap (``color_channels > 1``, groups = 1): output channel o sees input channel
i when ``i // (C_in / c) < o // (C_out / c)`` ("A") or ``<=`` ("B"); that centre weight tile is
loaded with the extra channel-block mask (zeros elsewhere), so every tap stays a ``tl.dot``.

The kept taps of the weight are first gathered tap-major, (n_taps, C_out, C_in // groups), by
torch (a small copy) so the weight tiles load coalesced.

* forward: one program per (n, group, C_out block, pixel block over H * W); one flat loop over
  (tap before the centre, C_in block) adds ``w[o_blk, c_blk, t] @ x[n, c_blk, p_blk + (dy, dx)]``,
  then the centre tap (if kept) does the same.
* grad_x: one program per (n, group, C_in block, pixel block):
  ``w[o_blk, c_blk, t]^T @ grad_y[n, o_blk, p_blk - (dy, dx)]`` (the mirrored correlation).
* grad_weight: one program per (split, kept tap, group, C_out block, C_in block) sums
  ``grad_y[n, o_blk, p] x[n, c_blk, p + (dy, dx)]^T`` over its share of the (n, pixel block)
  slabs into a partial (zero-filled buffer: masked taps are never written and stay exactly 0, nor
  are the centre's RGB-unconnected entries); torch sums the partials in a fixed order (no atomics).
* grad_bias: ``grad_y.sum((0, 2, 3))`` in float32 (float64), by torch.

Precision as in ``_common.py``: float16/bfloat16 tiles go to ``tl.dot`` (float32 accumulate),
float32 TF32 or IEEE as ``torch.backends.cudnn.allow_tf32`` says, float64 a broadcast
multiply-sum; the interpreter upcasts every tile first.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgen._layout import layout_of
from fastgen.triton_kernels._common import (
    LOW, accumulation_dtype, guard, mma, mma_meta, shifted_pixel_products, tile_warps, wrap)

# Tile sizes (tl.dot needs >= 16 on every side) and warps per program. Tests raise them under
# the interpreter, whose cost is per program.
BLOCK_O = 64
BLOCK_C = 32
BLOCK_P = 64
NUM_WARPS = 4  # for 16-bit tiles; twice as many for float32/float64 ones (tile_warps)
# Programs along the (n, pixel block) slabs for grad_weight (each writes one partial).
WEIGHT_SPLIT = 32

@triton.jit
def _colour_ok(offs_o, offs_c, colour_out, colour_in, centre_le):
    """(len(o), len(c)) mask of the RGB centre tap: in_block(c) < out_block(o) (+1 for "B")."""
    return (offs_c // colour_in)[None, :] < (offs_o // colour_out)[:, None] + centre_le


@triton.jit
def _forward_step(acc, x_base, w_tap, offs_o, o_ok, offs_p, h, w, p_ok, H, W, cpg_in, c0, dy, dx,
                  colour_out, colour_in, centre_le,
                  COLOUR: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr):
    """acc + w[o_blk, c0 : c0 + BLOCK_C, tap] @ x[n, c0 : c0 + BLOCK_C, p_blk + (dy, dx)]."""
    hi = h + dy
    wi = w + dx
    ok = p_ok & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
    offs_c = (c0 + tl.arange(0, BLOCK_C)).to(tl.int64)
    c_ok = offs_c < cpg_in
    w_ok = o_ok[:, None] & c_ok[None, :]
    if COLOUR:
        w_ok = w_ok & _colour_ok(offs_o, offs_c, colour_out, colour_in, centre_le)
    wt = tl.load(w_tap + offs_o[:, None] * cpg_in + offs_c[None, :], mask=w_ok, other=0.0)
    xt = tl.load(x_base + offs_c[:, None] * (H * W) + (offs_p + dy * W + dx)[None, :],
                 mask=c_ok[:, None] & ok[None, :], other=0.0)
    return mma(acc, wt, xt, MODE, ACC)


@triton.jit
def _forward_kernel(x_ptr, w_ptr, b_ptr, y_ptr, C_in, C_out, H, W, dilation, groups, cpg_in, cpg_out,
                    colour_out, colour_in, centre_le, n_o_blocks, n_p_blocks,
                    KH: tl.constexpr, KW: tl.constexpr, CENTRE: tl.constexpr, HAS_BIAS: tl.constexpr,
                    MODE: tl.constexpr, ACC: tl.constexpr,
                    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    # w_ptr: the kept taps, (n_taps, C_out, C_in // groups), the centre tap last.
    pid = tl.program_id(0).to(tl.int64)  # int64 offsets from here on
    p_block = pid % n_p_blocks
    rest = pid // n_p_blocks
    o_block = rest % n_o_blocks
    rest = rest // n_o_blocks
    g = rest % groups
    n = rest // groups
    HW = H * W
    offs_o = o_block * BLOCK_O + tl.arange(0, BLOCK_O)  # within the group
    offs_p = p_block * BLOCK_P + tl.arange(0, BLOCK_P)
    o_ok = offs_o < cpg_out
    p_ok = offs_p < HW
    h = offs_p // W
    w = offs_p % W
    x_base = x_ptr + (n * C_in + g * cpg_in) * HW
    w_base = w_ptr + g * cpg_out * cpg_in
    acc = tl.zeros((BLOCK_O, BLOCK_P), ACC)
    # One flat loop over (tap before the centre, C_in block), so that it software-pipelines.
    n_c_blocks = tl.cdiv(cpg_in, BLOCK_C)
    for it in range(((KH // 2) * KW + KW // 2) * n_c_blocks):
        t = it // n_c_blocks
        acc = _forward_step(acc, x_base, w_base + t * C_out * cpg_in, offs_o, o_ok, offs_p, h, w, p_ok, H, W,
                            cpg_in, (it - t * n_c_blocks) * BLOCK_C,
                            (t // KW - KH // 2) * dilation, (t % KW - KW // 2) * dilation,
                            colour_out, colour_in, centre_le, False, MODE, ACC, BLOCK_C)
    if CENTRE != 0:
        w_tap = w_base + ((KH // 2) * KW + KW // 2) * C_out * cpg_in
        for c0 in range(0, cpg_in, BLOCK_C):
            acc = _forward_step(acc, x_base, w_tap, offs_o, o_ok, offs_p, h, w, p_ok, H, W, cpg_in, c0, 0, 0,
                                colour_out, colour_in, centre_le, CENTRE == 2, MODE, ACC, BLOCK_C)
    if HAS_BIAS:
        acc += tl.load(b_ptr + g * cpg_out + offs_o, mask=o_ok, other=0.0).to(ACC)[:, None]
    tl.store(y_ptr + (n * C_out + g * cpg_out) * HW + offs_o[:, None] * HW + offs_p[None, :],
             acc.to(y_ptr.dtype.element_ty), mask=o_ok[:, None] & p_ok[None, :])


@triton.jit
def _grad_x_step(acc, gy_base, w_tap, offs_c, c_ok, offs_p, h, w, p_ok, H, W, cpg_in, cpg_out, o0, dy, dx,
                 colour_out, colour_in, centre_le,
                 COLOUR: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr, BLOCK_O: tl.constexpr):
    """acc + w[o0 : o0 + BLOCK_O, c_blk, tap]^T @ grad_y[n, o0 : o0 + BLOCK_O, p_blk - (dy, dx)]."""
    ho = h - dy
    wo = w - dx
    ok = p_ok & (ho >= 0) & (ho < H) & (wo >= 0) & (wo < W)
    offs_o = (o0 + tl.arange(0, BLOCK_O)).to(tl.int64)
    o_ok = offs_o < cpg_out
    w_ok = c_ok[:, None] & o_ok[None, :]
    if COLOUR:
        w_ok = w_ok & ((offs_c // colour_in)[:, None] < (offs_o // colour_out)[None, :] + centre_le)
    wt = tl.load(w_tap + offs_o[None, :] * cpg_in + offs_c[:, None], mask=w_ok, other=0.0)
    gy = tl.load(gy_base + offs_o[:, None] * (H * W) + (offs_p - dy * W - dx)[None, :],
                 mask=o_ok[:, None] & ok[None, :], other=0.0)
    return mma(acc, wt, gy, MODE, ACC)


@triton.jit
def _grad_x_kernel(gy_ptr, w_ptr, gx_ptr, C_in, C_out, H, W, dilation, groups, cpg_in, cpg_out,
                   colour_out, colour_in, centre_le, n_c_blocks, n_p_blocks,
                   KH: tl.constexpr, KW: tl.constexpr, CENTRE: tl.constexpr,
                   MODE: tl.constexpr, ACC: tl.constexpr,
                   BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    p_block = pid % n_p_blocks
    rest = pid // n_p_blocks
    c_block = rest % n_c_blocks
    rest = rest // n_c_blocks
    g = rest % groups
    n = rest // groups
    HW = H * W
    offs_c = c_block * BLOCK_C + tl.arange(0, BLOCK_C)  # within the group
    offs_p = p_block * BLOCK_P + tl.arange(0, BLOCK_P)
    c_ok = offs_c < cpg_in
    p_ok = offs_p < HW
    h = offs_p // W
    w = offs_p % W
    gy_base = gy_ptr + (n * C_out + g * cpg_out) * HW
    w_base = w_ptr + g * cpg_out * cpg_in
    acc = tl.zeros((BLOCK_C, BLOCK_P), ACC)
    n_o_blocks = tl.cdiv(cpg_out, BLOCK_O)
    for it in range(((KH // 2) * KW + KW // 2) * n_o_blocks):
        t = it // n_o_blocks
        acc = _grad_x_step(acc, gy_base, w_base + t * C_out * cpg_in, offs_c, c_ok, offs_p, h, w, p_ok, H, W,
                           cpg_in, cpg_out, (it - t * n_o_blocks) * BLOCK_O,
                           (t // KW - KH // 2) * dilation, (t % KW - KW // 2) * dilation,
                           colour_out, colour_in, centre_le, False, MODE, ACC, BLOCK_O)
    if CENTRE != 0:
        w_tap = w_base + ((KH // 2) * KW + KW // 2) * C_out * cpg_in
        for o0 in range(0, cpg_out, BLOCK_O):
            acc = _grad_x_step(acc, gy_base, w_tap, offs_c, c_ok, offs_p, h, w, p_ok, H, W, cpg_in, cpg_out,
                               o0, 0, 0, colour_out, colour_in, centre_le, CENTRE == 2, MODE, ACC, BLOCK_O)
    tl.store(gx_ptr + (n * C_in + g * cpg_in) * HW + offs_c[:, None] * HW + offs_p[None, :],
             acc.to(gx_ptr.dtype.element_ty), mask=c_ok[:, None] & p_ok[None, :])


@triton.jit
def _grad_w_kernel(gy_ptr, x_ptr, partial_ptr, C_in, C_out, H, W, dilation, groups, cpg_in, cpg_out,
                   colour_out, colour_in, centre_le, n_taps, n_o_blocks, n_c_blocks, n_p_blocks,
                   n_slabs, n_split,
                   KH: tl.constexpr, KW: tl.constexpr, CENTRE: tl.constexpr,
                   LOW: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr,
                   BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    c_block = pid % n_c_blocks
    rest = pid // n_c_blocks
    o_block = rest % n_o_blocks
    rest = rest // n_o_blocks
    g = rest % groups
    rest = rest // groups
    tap = rest % n_taps  # a kept tap: the kept taps are the raster indices 0 .. n_taps - 1
    split = rest // n_taps
    HW = H * W
    dy = (tap // KW - KH // 2) * dilation
    dx = (tap % KW - KW // 2) * dilation
    offs_o = o_block * BLOCK_O + tl.arange(0, BLOCK_O)  # within the group
    offs_c = c_block * BLOCK_C + tl.arange(0, BLOCK_C)
    o_ok = offs_o < cpg_out
    c_ok = offs_c < cpg_in
    # from the group's first channel: g * cpg_out of grad_y, g * cpg_in of x
    acc = shifted_pixel_products(tl.zeros((BLOCK_O, BLOCK_C), ACC), gy_ptr + g * cpg_out * HW,
                                 x_ptr + g * cpg_in * HW, C_out, C_in, offs_o, o_ok, offs_c, c_ok, H, W, dy,
                                 dx, split, n_split, n_slabs, n_p_blocks, LOW, MODE, ACC, BLOCK_P)
    store_ok = o_ok[:, None] & c_ok[None, :]
    if CENTRE == 2:
        # The centre's unconnected entries are not stored: they keep the buffer's exact zeros. (A
        # tl.where on the accumulator here was miscompiled by Triton 3.6 on an H200 for fp16.)
        centre_tap = (KH // 2) * KW + KW // 2
        connected = _colour_ok(offs_o, offs_c, colour_out, colour_in, centre_le)
        store_ok = store_ok & ((tap != centre_tap) | connected)
    # partial layout (split, C_out, C_in // groups, KH * KW): the sum over split is the weight layout.
    KHW = KH * KW
    tl.store(partial_ptr + split * C_out * cpg_in * KHW + (g * cpg_out + offs_o[:, None]) * cpg_in * KHW
             + offs_c[None, :] * KHW + tap, acc, mask=store_ok)


def _meta(dtype: torch.dtype) -> dict:
    return {**mma_meta(dtype), "BLOCK_O": BLOCK_O, "BLOCK_C": BLOCK_C, "BLOCK_P": BLOCK_P,
            "num_warps": tile_warps(dtype, NUM_WARPS)}


def _check(x: torch.Tensor, weight: torch.Tensor, mask_type: str, dilation: int, groups: int,
           color_channels: int) -> None:
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"x must be (N, C_in, H, W) and weight (C_out, C_in // groups, KH, KW), got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}")
    if weight.dtype != x.dtype:
        raise TypeError(f"weight must have the dtype of x ({x.dtype}), got {weight.dtype}")
    if mask_type not in ("A", "B"):
        raise ValueError(f'mask_type must be "A" or "B", got {mask_type!r}')
    if dilation < 1 or groups < 1 or color_channels < 1:
        raise ValueError(f"dilation, groups and color_channels must be >= 1, got {dilation}, {groups}, "
                         f"{color_channels}")
    c_in, c_out, kh, kw = x.shape[1], weight.shape[0], weight.shape[2], weight.shape[3]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"weight must have odd kernel sizes KH and KW, got shape {tuple(weight.shape)}")
    if c_in % groups or c_out % groups or weight.shape[1] * groups != c_in:
        raise ValueError(f"weight {tuple(weight.shape)} does not fit x {tuple(x.shape)} "
                         f"with groups = {groups}")
    if color_channels > 1 and (groups != 1 or c_in % color_channels or c_out % color_channels):
        raise ValueError(f"color_channels = {color_channels} needs groups = 1 and to divide C_in = {c_in} "
                         f"and C_out = {c_out}")


def _mask_args(weight: torch.Tensor, mask_type: str, color_channels: int) -> tuple[int, int, int, int, int]:
    """(CENTRE, n_taps, colour_out, colour_in, centre_le) of the kept taps."""
    C_out, cpg_in, KH, KW = weight.shape
    if color_channels > 1:
        centre = 2
    else:
        centre = 1 if mask_type == "B" else 0
    n_taps = (KH // 2) * KW + KW // 2 + (centre != 0)
    colour_out = max(1, C_out // color_channels)
    colour_in = max(1, cpg_in // color_channels)  # groups == 1 with colour channels
    return centre, n_taps, colour_out, colour_in, int(mask_type == "B")


def _kept_taps(weight: torch.Tensor, n_taps: int) -> torch.Tensor:
    """The kept taps of weight, tap-major (n_taps, C_out, C_in // groups): coalesced tile loads."""
    if n_taps == 0:  # a 1x1 mask "A": nothing is read, any non-empty placeholder will do
        return weight.contiguous()
    return weight.flatten(2)[:, :, :n_taps].permute(2, 0, 1).contiguous()


def masked_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, mask_type: str,
                  dilation: int, groups: int, color_channels: int) -> torch.Tensor:
    """y (N, C_out, H, W) of the PixelCNN masked convolution ("same" size); dtype of x.

    Computed in NCHW; y is channels-last when x is (the layout the fake kernel promises).
    """
    _check(x, weight, mask_type, dilation, groups, color_channels)
    layout = layout_of(x)
    x = x.contiguous()
    N, C_in, H, W = x.shape
    C_out, cpg_in, KH, KW = weight.shape
    cpg_out = C_out // groups
    y = torch.empty((N, C_out, H, W), dtype=x.dtype, device=x.device)
    if y.numel() == 0:
        return y
    centre, n_taps, colour_out, colour_in, centre_le = _mask_args(weight, mask_type, color_channels)
    weight = _kept_taps(weight, n_taps)
    has_bias = bias is not None
    b = bias.contiguous() if has_bias else y
    n_o, n_p = triton.cdiv(cpg_out, BLOCK_O), triton.cdiv(H * W, BLOCK_P)
    with guard(x.device):
        wrap(_forward_kernel)[(N * groups * n_o * n_p,)](
            x, weight, b, y, C_in, C_out, H, W, dilation, groups, cpg_in, cpg_out,
            colour_out, colour_in, centre_le, n_o, n_p,
            KH=KH, KW=KW, CENTRE=centre, HAS_BIAS=has_bias, **_meta(x.dtype))
    return y.contiguous(memory_format=layout)


def masked_conv2d_backward(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mask_type: str,
                           dilation: int, groups: int, color_channels: int,
                           output_mask: list[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad_x, grad_weight, grad_bias); an entry masked off by output_mask is an empty (0,) tensor.

    grad_weight is exactly zero on the entries the mask drops (they are never computed).
    """
    _check(x, weight, mask_type, dilation, groups, color_channels)
    layout = layout_of(x)
    x = x.contiguous()
    N, C_in, H, W = x.shape
    C_out, cpg_in, KH, KW = weight.shape
    cpg_out = C_out // groups
    if tuple(grad_y.shape) != (N, C_out, H, W):
        raise ValueError(f"grad_y must have shape {(N, C_out, H, W)}, got {tuple(grad_y.shape)}")
    grad_y = grad_y.to(x.dtype).contiguous()
    centre, n_taps, colour_out, colour_in, centre_le = _mask_args(weight, mask_type, color_channels)
    mask_meta = {"KH": KH, "KW": KW, "CENTRE": centre, **_meta(x.dtype)}
    empty = x.new_empty((0,))
    n_p = triton.cdiv(H * W, BLOCK_P)
    grad_x = grad_w = grad_b = empty
    with guard(x.device):
        if output_mask[0]:
            grad_x = torch.empty_like(x)
            if grad_x.numel() > 0:
                if cpg_out == 0 or n_taps == 0:
                    grad_x.zero_()
                else:
                    n_c = triton.cdiv(cpg_in, BLOCK_C)
                    wrap(_grad_x_kernel)[(N * groups * n_c * n_p,)](
                        grad_y, _kept_taps(weight, n_taps), grad_x, C_in, C_out, H, W, dilation, groups,
                        cpg_in, cpg_out,
                        colour_out, colour_in, centre_le, n_c, n_p, **mask_meta)
        if output_mask[1]:
            n_slabs = N * n_p
            if weight.numel() == 0 or n_slabs == 0 or n_taps == 0:
                grad_w = torch.zeros(weight.shape, dtype=x.dtype, device=x.device)
            else:
                n_split = min(n_slabs, WEIGHT_SPLIT)
                n_o, n_c = triton.cdiv(cpg_out, BLOCK_O), triton.cdiv(cpg_in, BLOCK_C)
                # zero-filled: the masked taps are never written and stay exactly 0
                partials = torch.zeros((n_split, C_out, cpg_in, KH, KW), dtype=accumulation_dtype(x.dtype),
                                       device=x.device)
                wrap(_grad_w_kernel)[(n_split * n_taps * groups * n_o * n_c,)](
                    grad_y, x, partials, C_in, C_out, H, W, dilation, groups, cpg_in, cpg_out,
                    colour_out, colour_in, centre_le, n_taps, n_o, n_c, n_p, n_slabs, n_split,
                    LOW=LOW[x.dtype], **mask_meta)
                grad_w = partials.sum(0).to(x.dtype)
        if output_mask[2]:
            grad_b = grad_y.sum((0, 2, 3), dtype=accumulation_dtype(x.dtype)).to(x.dtype)
    return grad_x.contiguous(memory_format=layout) if output_mask[0] else grad_x, grad_w, grad_b
