"""Plain-PyTorch convolution ops: the oracle of the causal convolution kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  dilation: int = 1) -> torch.Tensor:
    """Dilated causal 1-D convolution: left-pad by ``(K - 1) * dilation``, then ``F.conv1d``.

    x (N, C_in, T), weight (C_out, C_in, K), bias (C_out,) or None -> (N, C_out, T), where
    ``y[..., t]`` depends on ``x[..., t - (K-1-k) * dilation]`` only. float16/bfloat16 are
    computed in float32 and rounded once, like the kernels.
    """
    dtype = x.dtype
    if dtype in (torch.float16, torch.bfloat16):
        x, weight = x.float(), weight.float()
        bias = None if bias is None else bias.float()
    pad = (weight.shape[-1] - 1) * dilation
    if x.shape[1] == 0 or weight.shape[0] == 0:
        # No input or output channels, which F.conv1d mishandles or rejects: an empty sum.
        y = x.new_zeros((x.shape[0], weight.shape[0], x.shape[2])) + (x.sum() + weight.sum()) * 0
        return (y if bias is None else y + bias[:, None]).to(dtype)
    if x.shape[-1] == 0:
        # F.conv1d rejects an input shorter than the receptive field: pad one step more and
        # drop the extra output (keeps the result differentiable).
        return F.conv1d(F.pad(x, (pad + 1, 0)), weight, bias, dilation=dilation)[..., 1:].to(dtype)
    return F.conv1d(F.pad(x, (pad, 0)), weight, bias, dilation=dilation).to(dtype)


MASK_TYPES = ("A", "B")


def masked_conv2d_mask(weight_shape: tuple[int, ...] | torch.Size, mask_type: str, color_channels: int = 1,
                       groups: int = 1) -> torch.Tensor:
    """The PixelCNN mask of a ``(C_out, C_in // groups, KH, KW)`` weight, as a float32 0/1 tensor.

    With the centre ``(cy, cx) = (KH // 2, KW // 2)``, a tap ``(ky, kx)`` is kept when it comes
    before the centre in raster order (``ky < cy``, or ``ky == cy and kx < cx``). The centre tap:
    - ``color_channels == 1``: dropped by mask "A", kept by mask "B";
    - ``color_channels == c > 1`` (RGB masking of PixelCNN, ``groups == 1``): the channels are
      split into ``c`` contiguous blocks, input channel ``i`` in block ``i // (C_in / c)`` and
      output channel ``o`` in block ``o // (C_out / c)``; the centre connects ``o`` to ``i`` when
      the input block comes before the output block (mask "A") or is not after it (mask "B").
    """
    c_out, c_in_per_group, kh, kw = (int(s) for s in weight_shape)
    cy, cx = kh // 2, kw // 2
    mask = torch.zeros(c_out, c_in_per_group, kh, kw)
    mask[:, :, :cy, :] = 1
    mask[:, :, cy, :cx] = 1
    if color_channels == 1:
        mask[:, :, cy, cx] = 1.0 if mask_type == "B" else 0.0
    else:
        out_block = torch.arange(c_out) // (c_out // color_channels)
        in_block = torch.arange(c_in_per_group * groups) // (c_in_per_group * groups // color_channels)
        if mask_type == "A":
            centre = in_block[None, :] < out_block[:, None]
        else:
            centre = in_block[None, :] <= out_block[:, None]
        mask[:, :, cy, cx] = centre.float()
    return mask


def masked_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  mask_type: str = "A", dilation: int = 1, groups: int = 1,
                  color_channels: int = 1) -> torch.Tensor:
    """PixelCNN masked convolution: ``F.conv2d`` with the masked weight and "same" padding.

    x (N, C_in, H, W), weight (C_out, C_in // groups, KH, KW) with odd KH and KW, bias (C_out,)
    or None -> (N, C_out, H, W). The mask is ``masked_conv2d_mask``; the padding is
    ``(KH // 2 * dilation, KW // 2 * dilation)``. float16/bfloat16 are computed in float32 and
    rounded once, like the kernels.
    """
    dtype = x.dtype
    if dtype in (torch.float16, torch.bfloat16):
        x, weight = x.float(), weight.float()
        bias = None if bias is None else bias.float()
    mask = masked_conv2d_mask(weight.shape, mask_type, color_channels, groups).to(weight.device, weight.dtype)
    padding = (weight.shape[2] // 2 * dilation, weight.shape[3] // 2 * dilation)
    if x.numel() == 0 or weight.numel() == 0:
        # F.conv2d rejects some empty shapes: the result is an empty sum (bias only).
        y = x.new_zeros((x.shape[0], weight.shape[0], x.shape[2], x.shape[3])) + (x.sum() + weight.sum()) * 0
        return (y if bias is None else y + bias[:, None, None]).to(dtype)
    return F.conv2d(x, weight * mask, bias, padding=padding, dilation=dilation, groups=groups).to(dtype)


def _pointwise(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """1x1 convolution: weight (C_out, C_in) or (C_out, C_in, 1) applied to z (N, C_in, T)."""
    return torch.einsum("oc,nct->not", weight.reshape(weight.shape[0], -1), z)


def wavenet_layer(x: torch.Tensor, w_dilated: torch.Tensor, b_dilated: torch.Tensor | None,
                  w_res: torch.Tensor, b_res: torch.Tensor | None, w_skip: torch.Tensor,
                  b_skip: torch.Tensor | None, dilation: int = 1, cond: torch.Tensor | None = None,
                  w_cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One WaveNet residual layer, written out step by step.

    x (N, C_res, T); w_dilated (C_gate, C_res, K) with C_gate even; w_res (C_res, C_gate / 2[, 1]);
    w_skip (C_skip, C_gate / 2[, 1]); cond (N, C_cond, T) with w_cond (C_gate, C_cond[, 1]);
    biases (C_out,) or None.

        h = causal_conv1d(x, w_dilated, b_dilated, dilation) [+ w_cond @ cond]
        z = tanh(h[:, :C_gate/2]) * sigmoid(h[:, C_gate/2:])
        residual_out = x + w_res @ z + b_res        (N, C_res, T)
        skip = w_skip @ z + b_skip                  (N, C_skip, T)

    float16/bfloat16 are computed in float32 and rounded once, like the kernels.
    """
    dtype = x.dtype
    if dtype in (torch.float16, torch.bfloat16):
        up = [None if t is None else t.float() for t in (x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip,
                                                           cond, w_cond)]
        residual, skip = wavenet_layer(*up[:7], dilation, up[7], up[8])
        return residual.to(dtype), skip.to(dtype)
    h = causal_conv1d(x, w_dilated, b_dilated, dilation)
    if cond is not None:
        h = h + _pointwise(cond, w_cond)
    half = w_dilated.shape[0] // 2
    z = torch.tanh(h[:, :half]) * torch.sigmoid(h[:, half:])
    residual = x + _pointwise(z, w_res)
    skip = _pointwise(z, w_skip)
    if b_res is not None:
        residual = residual + b_res[:, None]
    if b_skip is not None:
        skip = skip + b_skip[:, None]
    return residual, skip


def _gate(pre: torch.Tensor) -> torch.Tensor:
    """tanh(first half of the channels) * sigmoid(second half)."""
    half = pre.shape[1] // 2
    return torch.tanh(pre[:, :half]) * torch.sigmoid(pre[:, half:])


def _pointwise2d(t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """1x1 convolution: weight (C_out, C_in) or (C_out, C_in, 1, 1) applied to t (N, C_in, H, W)."""
    return torch.einsum("oc,nchw->nohw", weight.reshape(weight.shape[0], -1), t)


def _add_bias(t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return t if bias is None else t + bias.reshape(1, -1, *([1] * (t.dim() - 2)))


def gated_pixelcnn_layer(v: torch.Tensor, h: torch.Tensor, w_v: torch.Tensor, b_v: torch.Tensor | None,
                         w_h: torch.Tensor, b_h: torch.Tensor | None, w_v2h: torch.Tensor,
                         b_v2h: torch.Tensor | None, w_res: torch.Tensor, b_res: torch.Tensor | None,
                         mask_type: str = "B", cond: torch.Tensor | None = None,
                         w_cond_v: torch.Tensor | None = None, w_cond_h: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """One Gated PixelCNN layer (van den Oord et al. 2016), written out step by step.

    v, h (N, C_in, H, W): the vertical and horizontal stacks. With n = KW odd and k = n // 2:
    w_v (2C, C_in, k + 1, n): the vertical convolution sees rows i - k .. i, columns j - k .. j + k;
    w_h (2C, C_in, 1, k + 1): the horizontal one sees row i, columns j - k .. j (mask "B") or
    j - k .. j - 1 (mask "A": its last column is ignored); w_v2h (2C, 2C[, 1, 1]) links the
    vertical pre-activation, shifted down one row, into the horizontal stack; w_res (C, C[, 1, 1])
    projects the horizontal gate. cond (N, D) with w_cond_v, w_cond_h (2C, D) adds a per-image
    bias before both gates. ::

        v_pre = conv(pad_top(v), w_v) + b_v [+ w_cond_v @ cond]    (2C channels)
        v_out = tanh(v_pre[:, :C]) * sigmoid(v_pre[:, C:])
        h_pre = conv(pad_left(h), w_h) + b_h + w_v2h @ shift_down(v_pre) + b_v2h [+ w_cond_h @ cond]
        h_out = w_res @ (tanh(h_pre[:, :C]) * sigmoid(h_pre[:, C:])) + b_res [+ h if mask "B"]

    Every output at pixel (i, j) then depends on input pixels before (i, j) in raster order
    (and, for mask "B", on (i, j) itself through the horizontal stack): no blind spot.
    float16/bfloat16 are computed in float32 and rounded once, like the kernels.
    """
    dtype = v.dtype
    if dtype in (torch.float16, torch.bfloat16):
        up = [None if t is None else t.float()
              for t in (v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res)]
        cond_up = [None if t is None else t.float() for t in (cond, w_cond_v, w_cond_h)]
        v_out, h_out = gated_pixelcnn_layer(*up, mask_type, *cond_up)
        return v_out.to(dtype), h_out.to(dtype)
    k = w_v.shape[3] // 2
    v_pre = _add_bias(F.conv2d(F.pad(v, (k, k, k, 0)), w_v), b_v)
    if cond is not None:
        v_pre = v_pre + (cond @ w_cond_v.t())[:, :, None, None]
    # Horizontal: columns j - k .. j (mask B), or j - k .. j - 1 (mask A: the last tap is dropped,
    # the output of the one extra column at the end is cut off).
    width = w_h.shape[3] if mask_type == "B" else w_h.shape[3] - 1
    if width > 0:
        h_pre = F.conv2d(F.pad(h, (k, 0)), w_h[..., :width])[..., : h.shape[3]]
    else:
        h_pre = h.new_zeros((h.shape[0], w_h.shape[0], h.shape[2], h.shape[3])) + w_h.sum() * 0
    shifted = F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1]  # row i sees the vertical stack of row i - 1
    h_pre = _add_bias(_add_bias(h_pre, b_h) + _pointwise2d(shifted, w_v2h), b_v2h)
    if cond is not None:
        h_pre = h_pre + (cond @ w_cond_h.t())[:, :, None, None]
    v_out = _gate(v_pre)
    h_out = _add_bias(_pointwise2d(_gate(h_pre), w_res), b_res)
    if mask_type == "B":
        h_out = h_out + h
    return v_out, h_out
