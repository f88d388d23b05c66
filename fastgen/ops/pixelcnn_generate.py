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
from fastgen.ops.wavenet_step import check_no_grad
from fastgen.reference import MASK_TYPES
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
    layers = len(w_h)
    w_cond_h = [None] * layers if w_cond_h is None else list(w_cond_h)
    lists = dict(links=links, b_h=b_h, w_res=w_res, b_res=b_res, mask_types=mask_types, w_cond_h=w_cond_h)
    if layers == 0:
        raise ValueError("w_h must have one entry per layer (at least one)")
    for name, values in lists.items():
        if len(values) != layers:
            raise ValueError(f"{name} must have one entry per layer ({layers}), got {len(values)}")
    if not isinstance(uniforms, torch.Tensor) or not uniforms.is_floating_point() or uniforms.dim() != 3:
        raise ValueError("uniforms must be a floating-point (N, C_img, W) tensor")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an int >= 2, got {levels!r}")
    bad_masks = [m for m in mask_types if m not in MASK_TYPES]
    if bad_masks:
        raise ValueError(f"mask_types must each be one of {MASK_TYPES}, got {bad_masks[0]!r}")
    if (cond is None) != all(w is None for w in w_cond_h):
        raise ValueError("cond and w_cond_h must be given together (a projection per layer) or both be None")
    w_res = [w.reshape(w.shape[0], -1) for w in w_res]
    w_hidden, w_out = w_hidden.reshape(w_hidden.shape[0], -1), w_out.reshape(w_out.shape[0], -1)
    tensors = [uniforms, w_hidden, b_hidden, w_out, b_out, cond, *links, *w_h, *b_h, *w_res, *b_res, *w_cond_h]
    check_no_grad("pixelcnn_generate_row", *tensors)
    for t in tensors:
        if t is not None and (t.dtype != uniforms.dtype or t.device != uniforms.device):
            raise ValueError(f"every tensor must have the dtype and device of uniforms ({uniforms.dtype}, "
                             f"{uniforms.device}), got {t.dtype} on {t.device}")
    if w_out.shape[0] != uniforms.shape[1] * levels:
        raise ValueError(f"w_out must have C_img * levels = {uniforms.shape[1] * levels} rows, got {w_out.shape[0]}")
    args = (links, uniforms, w_h, b_h, w_res, b_res, list(mask_types), cond, w_cond_h, w_hidden, b_hidden, w_out,
            b_out, levels)
    if (uniforms.dtype in KERNEL_DTYPES and use_kernel("pixelcnn_generate_row", uniforms)
            and row_sampler_limits(uniforms.device, w_h, list(mask_types), w_hidden.shape[0], levels) is None):
        return torch.ops.fastgen.pixelcnn_generate_row(*args)
    return reference_steps.pixelcnn_generate_row(*args)
