"""Gated PixelCNN layer steps for fast (cached) sampling: one new row, one new pixel.

Naive PixelCNN sampling reruns the whole network for every pixel. In a Gated PixelCNN the
horizontal stack at pixel (i, j) depends on the row so far and, through the link, on the
vertical stack of row i - 1, which depends on complete rows only. So (the Fast PixelCNN++
scheme with row caches) each layer keeps:

* the last k + 1 rows of its vertical input: when a row is complete,
  :func:`gated_pixelcnn_vertical_step` computes that row's vertical output and its link for
  the next row (one row of work per layer per row);
* the last k + 1 horizontal inputs of the current row: :func:`gated_pixelcnn_horizontal_step`
  computes one pixel's horizontal output (one position of work per layer per pixel).

Both update their state in place. They are for sampling: no gradient (train with
:func:`gated_pixelcnn_layer`).
"""

from __future__ import annotations

import torch

from fastgen.ops._checks import check_apart, check_bias, check_rank, check_same
from fastgen.ops._dispatch import use_kernel
from fastgen.ops.gated_pixelcnn import _pointwise_weight
from fastgen.ops.wavenet_step import check_no_grad
from fastgen.reference import MASK_TYPES
from fastgen.reference import steps as reference_steps


def _check_cond(cond: object, weight: object, weight_name: str, n: int, two_c: int, x: torch.Tensor, x_name: str
                ) -> None:
    if (cond is None) != (weight is None):
        raise ValueError(f"cond and {weight_name} must be given together (conditioning) or both be None")
    if cond is None:
        return
    cond = check_rank(cond, "cond", 2, "(N, D)")
    check_same(cond, "cond", x, x_name)
    if cond.shape[0] != n:
        raise ValueError(f"cond must have the batch size N = {n}, got shape {tuple(cond.shape)}")
    weight = check_rank(weight, weight_name, 2, "(2C, D)")
    check_same(weight, weight_name, x, x_name)
    if tuple(weight.shape) != (two_c, cond.shape[1]):
        raise ValueError(f"{weight_name} must have shape (2C, D) = {(two_c, cond.shape[1])}, "
                         f"got {tuple(weight.shape)}")


def _check_state(state: object, shape: tuple[int, ...], layout: str, x: torch.Tensor, x_name: str) -> torch.Tensor:
    state = check_rank(state, "state", len(shape), layout)
    check_same(state, "state", x, x_name)
    if tuple(state.shape) != shape:
        raise ValueError(f"state must have shape {layout} = {shape}, got {tuple(state.shape)}")
    if not state.is_contiguous():
        raise ValueError("state must be contiguous: it is updated in place")
    return state


def gated_pixelcnn_vertical_step(
    state: torch.Tensor,
    new_row: torch.Tensor,
    w_v: torch.Tensor,
    b_v: torch.Tensor | None,
    w_v2h: torch.Tensor,
    b_v2h: torch.Tensor | None,
    *,
    cond: torch.Tensor | None = None,
    w_cond_v: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The vertical stack of a Gated PixelCNN layer for one new row, with a cache of rows.

    ``state`` holds the last k + 1 rows of the layer's vertical input (zeros above the image);
    they move up one row and ``new_row`` becomes the last, in place. Then, for that row, with
    n = ``w_v.shape[3]`` and k = n // 2 ::

        v_pre = conv(state, w_v over columns j-k..j+k) + b_v [+ w_cond_v @ cond]   (N, 2C, W)
        v_out = tanh(v_pre[:, :C]) * sigmoid(v_pre[:, C:])                        (N, C, W)
        link  = w_v2h @ v_pre + b_v2h                                             (N, 2C, W)

    ``v_out`` is the row's vertical output (the next layer's new row); ``link`` is what the
    horizontal stack adds at each column of the *next* row (before row 0, ``link`` is
    ``b_v2h``: the vertical stack above the image is zero). Row by row this gives what
    :func:`gated_pixelcnn_layer` gives for ``v_out``.

    Parameters
    ----------
    state : torch.Tensor
        (N, C_in, k + 1, W), contiguous; float32, float16, bfloat16 (computed in float32) or
        float64. Updated in place.
    new_row : torch.Tensor
        (N, C_in, W): the new row of the vertical input, dtype and device of ``state``.
    w_v : torch.Tensor
        (2C, C_in, k + 1, n): the causal rows of the layer's kernel only (the full n x n kernel
        :func:`gated_pixelcnn_layer` also takes is refused here: cut it, ``w_v[:, :, : n // 2 + 1]``).
    b_v, w_v2h, b_v2h, cond, w_cond_v
        As in :func:`gated_pixelcnn_layer`.

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        ``v_out`` (N, C, W) and ``link`` (N, 2C, W), dtype of ``new_row``. No gradient.
    """
    new_row = check_rank(new_row, "new_row", 3, "(N, C_in, W)")
    n, c_in, width = new_row.shape
    w_v = check_rank(w_v, "w_v", 4, "(2C, C_in, n // 2 + 1, n)")
    check_same(w_v, "w_v", new_row, "new_row")
    two_c, taps = w_v.shape[0], w_v.shape[3]
    if two_c == 0 or two_c % 2 or taps % 2 == 0 or w_v.shape[2] != taps // 2 + 1 or w_v.shape[1] != c_in:
        raise ValueError(f"w_v must have shape (2C, C_in, n // 2 + 1, n) with even 2C, odd n and C_in = {c_in}, "
                         f"got {tuple(w_v.shape)}")
    state = _check_state(state, (n, c_in, taps // 2 + 1, width), "(N, C_in, k + 1, W)", new_row, "new_row")
    check_bias(b_v, two_c, new_row, "b_v", "new_row")
    w_v2h = _pointwise_weight(w_v2h, "w_v2h", (two_c, two_c), new_row, "new_row")
    check_bias(b_v2h, two_c, new_row, "b_v2h", "new_row")
    _check_cond(cond, w_cond_v, "w_cond_v", n, two_c, new_row, "new_row")
    check_apart(state, new_row=new_row, cond=cond)
    check_no_grad("gated_pixelcnn_vertical_step", state, new_row, w_v, b_v, w_v2h, b_v2h, cond, w_cond_v)
    if not use_kernel("gated_pixelcnn_vertical_step", new_row):
        return reference_steps.gated_pixelcnn_vertical_step(state, new_row, w_v, b_v, w_v2h, b_v2h, cond, w_cond_v)
    return torch.ops.fastgen.gated_pixelcnn_vertical_step(state, new_row, w_v, b_v, w_v2h, b_v2h, cond, w_cond_v)


def gated_pixelcnn_horizontal_step(
    state: torch.Tensor,
    new_input: torch.Tensor,
    link: torch.Tensor,
    w_h: torch.Tensor,
    b_h: torch.Tensor | None,
    w_res: torch.Tensor,
    b_res: torch.Tensor | None,
    *,
    mask_type: str = "B",
    cond: torch.Tensor | None = None,
    w_cond_h: torch.Tensor | None = None,
) -> torch.Tensor:
    """The horizontal stack of a Gated PixelCNN layer at one pixel, with a cache of the row.

    ``state`` holds the last k + 1 horizontal inputs of the current row (zero it at the start
    of each row); they move left and ``new_input`` becomes the last, in place. ``new_input`` is
    the newest input the output may see: the input at the output's column for mask "B", at
    the column before it for mask "A" (zeros at column 0). Then ::

        h_pre = sum_t w_h[..., t] @ window_t + b_h + link [+ w_cond_h @ cond]          (N, 2C)
        h_out = w_res @ (tanh(h_pre[:, :C]) * sigmoid(h_pre[:, C:])) + b_res [+ new_input, "B"]

    where the window is the k + 1 inputs of ``state`` (mask "B") or its last k (mask "A",
    whose current-pixel tap ``w_h[..., k]`` is not read). Column by column this gives what
    :func:`gated_pixelcnn_layer` gives for ``h_out``.

    Parameters
    ----------
    state : torch.Tensor
        (N, C_in, k + 1) with k + 1 = ``w_h.shape[3]``, contiguous; float32, float16, bfloat16
        (computed in float32) or float64. Updated in place.
    new_input : torch.Tensor
        (N, C_in), dtype and device of ``state``.
    link : torch.Tensor
        (N, 2C): the link of the row above at this column (:func:`gated_pixelcnn_vertical_step`).
    w_h : torch.Tensor
        (2C, C_in, 1, k + 1): the causal half of the layer's kernel only, its columns up to the
        centre. :func:`gated_pixelcnn_layer` also takes the full 1 x n kernel, but here the two
        cannot be told apart by shape: cut it first, ``w_h[..., : n // 2 + 1]``.
    b_h, w_res, b_res, mask_type, cond, w_cond_h
        As in :func:`gated_pixelcnn_layer`.

    Returns
    -------
    torch.Tensor
        ``h_out`` (N, C), dtype of ``new_input``. No gradient.
    """
    new_input = check_rank(new_input, "new_input", 2, "(N, C_in)")
    n, c_in = new_input.shape
    if mask_type not in MASK_TYPES:
        raise ValueError(f'mask_type must be "A" or "B", got {mask_type!r}')
    w_h = check_rank(w_h, "w_h", 4, "(2C, C_in, 1, k + 1)")
    check_same(w_h, "w_h", new_input, "new_input")
    two_c, taps = w_h.shape[0], w_h.shape[3]
    if two_c == 0 or two_c % 2 or w_h.shape[1] != c_in or w_h.shape[2] != 1 or taps < 1:
        raise ValueError(f"w_h must have shape (2C, C_in, 1, k + 1) with even 2C and C_in = {c_in}, "
                         f"got {tuple(w_h.shape)}")
    state = _check_state(state, (n, c_in, taps), "(N, C_in, k + 1)", new_input, "new_input")
    link = check_rank(link, "link", 2, "(N, 2C)")
    check_same(link, "link", new_input, "new_input")
    if tuple(link.shape) != (n, two_c):
        raise ValueError(f"link must have shape (N, 2C) = {(n, two_c)}, got {tuple(link.shape)}")
    check_bias(b_h, two_c, new_input, "b_h", "new_input")
    c = two_c // 2
    w_res = _pointwise_weight(w_res, "w_res", (c, c), new_input, "new_input")
    check_bias(b_res, c, new_input, "b_res", "new_input")
    if mask_type == "B" and c_in != c:
        raise ValueError(f'mask_type "B" adds the horizontal residual, so new_input needs C_in = C = {c} '
                         f"channels, got {c_in}")
    _check_cond(cond, w_cond_h, "w_cond_h", n, two_c, new_input, "new_input")
    check_apart(state, new_input=new_input, link=link, cond=cond)
    check_no_grad("gated_pixelcnn_horizontal_step", state, new_input, link, w_h, b_h, w_res, b_res, cond, w_cond_h)
    if not use_kernel("gated_pixelcnn_horizontal_step", new_input):
        return reference_steps.gated_pixelcnn_horizontal_step(state, new_input, link, w_h, b_h, w_res, b_res,
                                                              mask_type, cond, w_cond_h)
    return torch.ops.fastgen.gated_pixelcnn_horizontal_step(state, new_input, link, w_h, b_h, w_res, b_res,
                                                            mask_type, cond, w_cond_h)
