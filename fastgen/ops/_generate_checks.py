"""Argument checks of the whole-model sampling ops, ``wavenet_generate`` and ``pixelcnn_generate_row``.

They take a model as lists of per-layer tensors; every one is checked here, with its list name
and index in the message (``b_res[3]``), so no kernel (CPU, CUDA or Triton) reads past a
mis-shaped weight. The per-layer checks are the step ops' own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from fastgen.ops._checks import MAX_REACH, check_bias, check_rank
from fastgen.ops.gated_pixelcnn import _pointwise_weight
from fastgen.ops.wavenet_step import check_wavenet_layer_step
from fastgen.reference import MASK_TYPES


def _check_lists(layers: int, lists: dict[str, Sequence]) -> None:
    for name, values in lists.items():
        if not isinstance(values, (list, tuple)):
            raise TypeError(f"{name} must be a list with one entry per layer, got {type(values).__name__}")
        if len(values) != layers:
            raise ValueError(f"{name} must have one entry per layer ({layers}), got {len(values)}")


def _check_all_like(like: torch.Tensor, like_name: str, tensors: dict[str, object]) -> None:
    """Every tensor (None skipped) must have ``like``'s dtype and device; the error names it."""
    for name, value in tensors.items():
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or None, got {type(value).__name__}")
        if value.dtype != like.dtype:
            raise TypeError(f"{name} must have the dtype of {like_name} ({like.dtype}), got {value.dtype}")
        if value.device != like.device:
            raise ValueError(f"{name} must be on the device of {like_name} ({like.device}), got {value.device}")


def _named(prefix: str, values: Sequence) -> dict[str, object]:
    return {f"{prefix}[{i}]": value for i, value in enumerate(values)}


def _in_layer(layer: int, check: Callable[[], object]) -> object:
    """Run a step op's check for one layer; its error says which layer."""
    try:
        return check()
    except (TypeError, ValueError) as error:
        raise type(error)(f"layer {layer}: {error}") from None


def check_wavenet_generate(states: object, first_input: object, uniforms: object, embedding: object,
                           w_dilated: object, b_dilated: object, w_res: object, b_res: object, w_skip: object,
                           b_skip: object, dilations: object, w_hidden: object, b_hidden: object, w_out: object,
                           b_out: object, cond: object, w_cond: object, start: object
                           ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor | None]]:
    """Check the arguments of ``wavenet_generate``; return w_res, w_skip and w_cond as 2-D weights."""
    if not isinstance(states, (list, tuple)) or not states:
        raise ValueError("states must be a list with one ring buffer per layer (at least one)")
    layers = len(states)
    _check_lists(layers, dict(w_dilated=w_dilated, b_dilated=b_dilated, w_res=w_res, b_res=b_res, w_skip=w_skip,
                              b_skip=b_skip, dilations=dilations, w_cond=w_cond))
    first_input = check_rank(first_input, "first_input", 2, "(N, R)")
    _check_all_like(first_input, "first_input", {
        "uniforms": uniforms, "embedding": embedding, "w_hidden": w_hidden, "b_hidden": b_hidden, "w_out": w_out,
        "b_out": b_out, "cond": cond, **_named("states", states), **_named("w_dilated", w_dilated),
        **_named("b_dilated", b_dilated), **_named("w_res", w_res), **_named("b_res", b_res),
        **_named("w_skip", w_skip), **_named("b_skip", b_skip), **_named("w_cond", w_cond)})
    n, residual = first_input.shape
    uniforms = check_rank(uniforms, "uniforms", 2, "(N, T)")
    if uniforms.shape[0] != n:
        raise ValueError(f"uniforms must have the batch size of first_input, N = {n}, got {tuple(uniforms.shape)}")
    steps = uniforms.shape[1]
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be an int >= 0, got {start!r}")
    if start + steps >= MAX_REACH:
        raise ValueError(f"start + T must stay below 2**62 (positions are int64), got start {start} and T = {steps}")
    if (cond is None) != all(w is None for w in w_cond):
        raise ValueError("cond and w_cond must be given together (a projection per layer) or both be None")
    cond_column = None
    if cond is not None:
        cond = check_rank(cond, "cond", 3, "(N, C_cond, T)")
        if cond.shape[0] != n or cond.shape[2] != steps:
            raise ValueError(f"cond must have shape (N, C_cond, T) = ({n}, C_cond, {steps}), got {tuple(cond.shape)}")
        # the layer checks want one step's (N, C_cond) column
        cond_column = cond[:, :, 0] if steps else cond.new_zeros(n, cond.shape[1])
    first = check_rank(w_dilated[0], "w_dilated[0]", 3, "(C_gate, R, K)")
    for layer, weight in enumerate(w_dilated):  # one C_gate and K for all layers (before the states' shapes)
        weight = check_rank(weight, f"w_dilated[{layer}]", 3, "(C_gate, R, K)")
        if weight.shape[0] != first.shape[0] or weight.shape[2] != first.shape[2]:
            raise ValueError(f"every layer's w_dilated must have the C_gate and K of w_dilated[0] "
                             f"{tuple(first.shape)}, got {tuple(weight.shape)} at layer {layer}")
    res2d, skip2d, cond2d = [], [], []
    for layer in range(layers):
        w_r, w_s, w_c = _in_layer(layer, lambda: check_wavenet_layer_step(
            first_input, states[layer], w_dilated[layer], b_dilated[layer], w_res[layer], b_res[layer],
            w_skip[layer], b_skip[layer], dilations[layer], cond_column, w_cond[layer]))
        res2d.append(w_r), skip2d.append(w_s), cond2d.append(w_c)
        if w_s.shape[0] != skip2d[0].shape[0]:
            raise ValueError(f"every layer's w_skip must have the C_skip of w_skip[0] ({skip2d[0].shape[0]}), "
                             f"got {tuple(w_s.shape)} at layer {layer}")
    skip = skip2d[0].shape[0]
    w_hidden = check_rank(w_hidden, "w_hidden", 2, "(H, C_skip)")
    if w_hidden.shape[1] != skip:
        raise ValueError(f"w_hidden must have C_skip = {skip} columns, got shape {tuple(w_hidden.shape)}")
    check_bias(b_hidden, w_hidden.shape[0], first_input, "b_hidden", "first_input")
    w_out = check_rank(w_out, "w_out", 2, "(levels, H)")
    if w_out.shape[0] < 1 or w_out.shape[1] != w_hidden.shape[0]:
        raise ValueError(f"w_out must have shape (levels >= 1, H = {w_hidden.shape[0]}), got {tuple(w_out.shape)}")
    check_bias(b_out, w_out.shape[0], first_input, "b_out", "first_input")
    embedding = check_rank(embedding, "embedding", 2, "(levels, R)")
    if tuple(embedding.shape) != (w_out.shape[0], residual):
        raise ValueError(f"embedding must have shape (levels, R) = {(w_out.shape[0], residual)}, "
                         f"got {tuple(embedding.shape)}")
    return res2d, skip2d, cond2d


def check_pixelcnn_generate_row(links: object, uniforms: object, w_h: object, b_h: object, w_res: object,
                                b_res: object, mask_types: object, w_hidden: object, b_hidden: object, w_out: object,
                                b_out: object, levels: object, cond: object, w_cond_h: object
                                ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Check the arguments of ``pixelcnn_generate_row``; return w_res, w_hidden and w_out as 2-D weights."""
    if not isinstance(w_h, (list, tuple)) or not w_h:
        raise ValueError("w_h must be a list with one entry per layer (at least one)")
    layers = len(w_h)
    _check_lists(layers, dict(links=links, b_h=b_h, w_res=w_res, b_res=b_res, mask_types=mask_types,
                              w_cond_h=w_cond_h))
    uniforms = check_rank(uniforms, "uniforms", 3, "(N, C_img, W)")
    _check_all_like(uniforms, "uniforms", {
        "w_hidden": w_hidden, "b_hidden": b_hidden, "w_out": w_out, "b_out": b_out, "cond": cond,
        **_named("links", links), **_named("w_h", w_h), **_named("b_h", b_h), **_named("w_res", w_res),
        **_named("b_res", b_res), **_named("w_cond_h", w_cond_h)})
    n, channels, width = uniforms.shape
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an int >= 2, got {levels!r}")
    bad_masks = [m for m in mask_types if m not in MASK_TYPES]
    if bad_masks:
        raise ValueError(f"mask_types must each be one of {MASK_TYPES}, got {bad_masks[0]!r}")
    if (cond is None) != all(w is None for w in w_cond_h):
        raise ValueError("cond and w_cond_h must be given together (a projection per layer) or both be None")
    if cond is not None:
        cond = check_rank(cond, "cond", 2, "(N, D)")
        if cond.shape[0] != n:
            raise ValueError(f"cond must have the batch size of uniforms, N = {n}, got shape {tuple(cond.shape)}")
    first = check_rank(w_h[0], "w_h[0]", 4, "(2C, C_img, 1, k + 1)")
    two_c = first.shape[0]
    if two_c == 0 or two_c % 2:
        raise ValueError(f"w_h[0] must have an even, nonzero 2C (dim 0), got shape {tuple(first.shape)}")
    c, c_in, res2d = two_c // 2, channels, []
    for layer in range(layers):
        name = f"w_h[{layer}]"
        weight = check_rank(w_h[layer], name, 4, "(2C, C_in, 1, k + 1)")
        if weight.shape[0] != two_c or weight.shape[1] != c_in or weight.shape[2] != 1 or weight.shape[3] < 1:
            raise ValueError(f"{name} must have shape (2C, C_in, 1, k + 1) = ({two_c}, {c_in}, 1, k + 1), "
                             f"got {tuple(weight.shape)}")
        if mask_types[layer] == "B" and c_in != c:
            raise ValueError(f'mask_types[{layer}] "B" adds the horizontal residual, so it needs C_in = C = {c}, '
                             f"got C_in = {c_in}")
        link = check_rank(links[layer], f"links[{layer}]", 3, "(N, 2C, W)")
        if tuple(link.shape) != (n, two_c, width):
            raise ValueError(f"links[{layer}] must have shape (N, 2C, W) = {(n, two_c, width)}, "
                             f"got {tuple(link.shape)}")
        check_bias(b_h[layer], two_c, uniforms, f"b_h[{layer}]", "uniforms")
        res2d.append(_pointwise_weight(w_res[layer], f"w_res[{layer}]", (c, c), uniforms, "uniforms"))
        check_bias(b_res[layer], c, uniforms, f"b_res[{layer}]", "uniforms")
        if cond is not None:
            projection = check_rank(w_cond_h[layer], f"w_cond_h[{layer}]", 2, "(2C, D)")
            if tuple(projection.shape) != (two_c, cond.shape[1]):
                raise ValueError(f"w_cond_h[{layer}] must have shape (2C, D) = {(two_c, cond.shape[1])}, "
                                 f"got {tuple(projection.shape)}")
        c_in = c
    hidden = w_hidden.shape[0] if isinstance(w_hidden, torch.Tensor) and w_hidden.dim() else 0
    w_hidden = _pointwise_weight(w_hidden, "w_hidden", (hidden, c), uniforms, "uniforms")
    check_bias(b_hidden, hidden, uniforms, "b_hidden", "uniforms")
    rows = channels * levels  # a distribution over the levels for each channel
    if isinstance(w_out, torch.Tensor) and w_out.dim() >= 1 and w_out.shape[0] != rows:
        raise ValueError(f"w_out must have C_img * levels = {rows} rows (dim 0), got shape {tuple(w_out.shape)}")
    w_out = _pointwise_weight(w_out, "w_out", (rows, hidden), uniforms, "uniforms")
    check_bias(b_out, rows, uniforms, "b_out", "uniforms")
    return res2d, w_hidden, w_out
