"""One image row of a categorical Gated PixelCNN per call: ``pixelcnn_generate_row``.

Cached PixelCNN sampling steps every layer's horizontal stack at every pixel
(:func:`fastgen.ops.gated_pixelcnn_horizontal_step`); from Python that is one op dispatch per layer
and pixel, several times the arithmetic of a pixel at batch 1. ``pixelcnn_generate_row`` runs
a whole row inside one kernel call: at each pixel, left to right, every layer's horizontal step
(row caches from zeros), the output head and the categorical draw, whose value feeds the next
pixel. The vertical stacks of the row (its links) depend on the rows above only; the caller
computes them with :func:`fastgen.ops.gated_pixelcnn_vertical_step` before the row.

Sampling op: no gradient; categorical output; float32 and float64. A C++ kernel on the CPU; on
CUDA a Triton kernel (one program per image) for standard stacks (``row_sampler_limits``).
Other dtypes, devices and stacks run the plain-PyTorch reference, the same loop over the step ops.
"""

from __future__ import annotations

import torch

from fastgen.ops._dispatch import use_kernel
from fastgen.ops._generate_checks import check_pixelcnn_generate_row
from fastgen.ops.wavenet_step import check_no_grad
from fastgen.reference import steps as reference_steps

KERNEL_DTYPES = (torch.float32, torch.float64)


def row_sampler_limits(device: torch.device, w_h: list[torch.Tensor], mask_types: list[str], hidden: int,
                       levels: int) -> str | None:
    """Why the kernel of pixelcnn_generate_row on ``device`` cannot run these layers, or None when
    it can. The CPU kernel takes any stack; the Triton kernel on CUDA wants layers after the first
    of one shape with mask "B", and every size within its register blocks."""
    if device.type != "cuda":
        return None
    from fastgen.triton_kernels import pixelcnn_rows  # only where CUDA (and so Triton) is in use

    return pixelcnn_rows.why_not(w_h, mask_types, hidden, levels)


def pixelcnn_generate_row(
    links: list[torch.Tensor],
    uniforms: torch.Tensor,
    w_h: list[torch.Tensor],
    b_h: list[torch.Tensor | None],
    w_res: list[torch.Tensor],
    b_res: list[torch.Tensor | None],
    mask_types: list[str],
    w_hidden: torch.Tensor,
    b_hidden: torch.Tensor | None,
    w_out: torch.Tensor,
    b_out: torch.Tensor | None,
    *,
    levels: int,
    cond: torch.Tensor | None = None,
    w_cond_h: list[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Draw one image row, pixel by pixel: int64 levels (N, C_img, W).

    Parameters
    ----------
    links : list of torch.Tensor
        Layer l's link for this row, (N, 2C, W): the second output of
        :func:`gated_pixelcnn_vertical_step` for the row above (its bias alone for row 0).
    uniforms : torch.Tensor
        (N, C_img, W) in [0, 1]: one per draw; channel c of pixel j takes the first level whose
        cumulative softmax mass exceeds ``uniforms[:, c, j]``.
    w_h, b_h, w_res, b_res, mask_types : lists, one entry per layer
        As in :func:`gated_pixelcnn_horizontal_step` (``w_h`` (2C, C_in, 1, k + 1), ``w_res``
        (C, C) or (C, C, 1, 1)); the first layer reads the image (C_in = C_img), usually with
        mask "A".
    w_hidden, b_hidden, w_out, b_out : torch.Tensor
        The output head: (H, C), (H,), (C_img * levels, H), (C_img * levels,) (1x1 convolution
        weights are fine).
    levels : int
        Levels per channel (>= 2); the first layer's input at pixel j is 2 v - 1 with
        v = level / (levels - 1) drawn at pixel j - 1.
    cond, w_cond_h : torch.Tensor and list, optional
        Conditioning (N, D) and each layer's (2C, D) horizontal projection.

    Returns
    -------
    torch.Tensor
        int64 levels (N, C_img, W).
    """
    w_cond_h = [None] * len(w_h) if w_cond_h is None and isinstance(w_h, (list, tuple)) else w_cond_h
    w_res, w_hidden, w_out = check_pixelcnn_generate_row(links, uniforms, w_h, b_h, w_res, b_res, mask_types,
                                                         w_hidden, b_hidden, w_out, b_out, levels, cond, w_cond_h)
    check_no_grad("pixelcnn_generate_row", uniforms, w_hidden, b_hidden, w_out, b_out, cond, *links, *w_h, *b_h,
                  *w_res, *b_res, *w_cond_h)
    args = (links, uniforms, w_h, b_h, w_res, b_res, list(mask_types), cond, w_cond_h, w_hidden, b_hidden, w_out,
            b_out, levels)
    if (uniforms.dtype in KERNEL_DTYPES and use_kernel("pixelcnn_generate_row", uniforms)
            and row_sampler_limits(uniforms.device, w_h, list(mask_types), w_hidden.shape[0], levels) is None):
        return torch.ops.fastgen.pixelcnn_generate_row(*args)
    return reference_steps.pixelcnn_generate_row(*args)
