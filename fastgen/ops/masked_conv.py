"""PixelCNN masked 2-D convolution: only the taps the mask keeps are read and computed.

A 3x3 mask-"B" convolution uses 5 of its 9 taps and a 7x7 mask-"A" one 24 of 49; the usual
recipe (multiply the weight by the mask, run the full convolution) spends the work of all of
them. The kernels here gather the kept taps only; the mask is applied by construction, so the
gradient of a masked weight entry is exactly zero.
"""

from __future__ import annotations

import torch

from fastgen import reference
from fastgen.ops._autocast import autocast_inputs
from fastgen.ops._checks import check_bias, check_dilation, check_positive_int, check_rank, check_same
from fastgen.ops._dispatch import use_kernel


def check_masked_conv2d(x: object, weight: object, bias: object, mask_type: object, dilation: object,
                        groups: object, color_channels: object) -> None:
    """Raise a TypeError/ValueError naming the first bad argument of ``masked_conv2d``."""
    x = check_rank(x, "x", 4, "(N, C_in, H, W)")
    weight = check_rank(weight, "weight", 4, "(C_out, C_in // groups, KH, KW)")
    check_same(weight, "weight", x)
    if mask_type not in reference.MASK_TYPES:
        raise ValueError(f'mask_type must be "A" or "B", got {mask_type!r}')
    groups = check_positive_int(groups, "groups")
    color_channels = check_positive_int(color_channels, "color_channels")
    c_in, c_out, kh, kw = x.shape[1], weight.shape[0], weight.shape[2], weight.shape[3]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"weight must have odd kernel sizes KH and KW (a centre tap), got shape {tuple(weight.shape)}")
    check_dilation(dilation, max(kh, kw) // 2, "max(KH, KW) // 2")
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups = {groups} must divide C_in = {c_in} and C_out = {c_out}")
    if weight.shape[1] * groups != c_in:
        raise ValueError(
            f"weight must have C_in // groups = {c_in // groups} input channels (dim 1), got shape {tuple(weight.shape)}"
        )
    if color_channels > 1:
        if groups != 1:
            raise ValueError(f"color_channels = {color_channels} needs groups = 1, got groups = {groups}")
        if c_in % color_channels or c_out % color_channels:
            raise ValueError(
                f"color_channels = {color_channels} must divide C_in = {c_in} and C_out = {c_out}"
            )
    check_bias(bias, c_out, x)


def masked_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    mask_type: str = "A",
    dilation: int = 1,
    groups: int = 1,
    color_channels: int = 1,
) -> torch.Tensor:
    """PixelCNN masked convolution with "same" output size; masked taps are neither read nor computed.

    Equals ``F.conv2d(x, weight * mask, bias, padding=(KH // 2 * dilation, KW // 2 * dilation),
    dilation=dilation, groups=groups)`` with the mask of ``fastgen.reference.masked_conv2d_mask``:
    taps before the centre in raster order are kept; the centre tap is dropped by mask "A" and kept
    by mask "B", or with ``color_channels = 3`` connects the R, G, B channel blocks causally
    (output block g sees input blocks < g for "A", <= g for "B").

    Parameters
    ----------
    x : torch.Tensor
        Input, shape (N, C_in, H, W); float32, float16, bfloat16 (accumulated in float32) or
        float64. Non-contiguous inputs are fine. A channels-last input (that is not also
        contiguous) is computed channels-last on the CPU, and y (and the gradient of x) come
        back channels-last, as ``nn.Conv2d`` returns them.
    weight : torch.Tensor
        Filters in the ``nn.Conv2d`` layout, shape (C_out, C_in // groups, KH, KW) with odd KH
        and KW; dtype and device of ``x``. Entries under the mask are ignored (and get zero gradient).
    bias : torch.Tensor, optional
        Shape (C_out,), dtype and device of ``x``.
    mask_type : {"A", "B"}
        "A" for the first layer (a pixel does not see itself), "B" for the layers after it.
    dilation : int
        Spacing of the taps, >= 1.
    groups : int
        Grouped convolution as in ``nn.Conv2d``; must divide C_in and C_out.
    color_channels : int
        1 (default) or the number of colour channel blocks (3 for RGB); needs groups = 1 and
        C_in, C_out divisible by it.

    Returns
    -------
    torch.Tensor
        ``y``, shape (N, C_out, H, W), dtype of ``x``; differentiable in ``x``, ``weight`` and ``bias``.
    """
    x, weight, bias = autocast_inputs("masked_conv2d", x, weight, bias)
    check_masked_conv2d(x, weight, bias, mask_type, dilation, groups, color_channels)
    if use_kernel("masked_conv2d", x):
        return torch.ops.fastgen.masked_conv2d(x, weight, bias, mask_type, dilation, groups, color_channels)
    return reference.masked_conv2d(x, weight, bias, mask_type, dilation, groups, color_channels)
