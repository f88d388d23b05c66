"""The WaveNet residual layer as one fused op.

Eager PyTorch runs a WaveNet layer as a padded copy of the input, a dilated convolution, a
split, tanh, sigmoid, a product, two 1x1 convolutions and an add: each a pass over a long
sequence. ``wavenet_layer`` does the whole layer per time tile, so the gate activations never
make a round trip through memory in the forward pass; only the gate pre-activation is kept
(when a gradient is needed) for the backward pass.
"""

from __future__ import annotations

import torch

from fastgen import reference
from fastgen.ops._autocast import autocast_inputs
from fastgen.ops._checks import check_bias, check_dilation, check_rank, check_same
from fastgen.ops._dispatch import needs_grad, use_kernel


def _pointwise_weight(value: object, name: str, c_out_name: str, c_in: int, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution weight: (C_out, C_in) or the nn.Conv1d layout (C_out, C_in, 1) -> 2-D."""
    if isinstance(value, torch.Tensor) and value.dim() == 3:
        if value.shape[2] != 1:
            raise ValueError(f"{name} must be a 1x1 convolution weight ({c_out_name}, {c_in}[, 1]), "
                             f"got shape {tuple(value.shape)}")
        value = value[:, :, 0]
    weight = check_rank(value, name, 2, f"({c_out_name}, C_in) or ({c_out_name}, C_in, 1)")
    check_same(weight, name, x)
    if weight.shape[1] != c_in:
        raise ValueError(f"{name} must have {c_in} input channels (dim 1), got shape {tuple(weight.shape)}")
    return weight


def check_layer_weights(x: torch.Tensor, w_dilated: object, b_dilated: object, w_res: object, b_res: object,
                        w_skip: object, b_skip: object, dilation: object
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check a WaveNet layer's weights against its input ``x`` (channels in dim 1) and the dilation;
    return w_dilated, and w_res and w_skip as 2-D weights. Shared by wavenet_layer and its step."""
    w_dilated = check_rank(w_dilated, "w_dilated", 3, "(C_gate, C_res, K)")
    check_same(w_dilated, "w_dilated", x)
    c_res, c_gate = x.shape[1], w_dilated.shape[0]
    if w_dilated.shape[1] != c_res:
        raise ValueError(f"w_dilated must have C_res = x.shape[1] = {c_res} input channels (dim 1), "
                         f"got shape {tuple(w_dilated.shape)}")
    if c_gate % 2 or c_gate == 0:
        raise ValueError(f"w_dilated must have an even, nonzero C_gate (dim 0: tanh half, sigmoid half), "
                         f"got shape {tuple(w_dilated.shape)}")
    if w_dilated.shape[2] < 1:
        raise ValueError(f"w_dilated must have a kernel size K >= 1 (dim 2), got shape {tuple(w_dilated.shape)}")
    check_bias(b_dilated, c_gate, x, "b_dilated")
    w_res = _pointwise_weight(w_res, "w_res", "C_res", c_gate // 2, x)
    if w_res.shape[0] != c_res:
        raise ValueError(f"w_res must have C_res = {c_res} output channels (dim 0), got shape {tuple(w_res.shape)}")
    check_bias(b_res, c_res, x, "b_res")
    w_skip = _pointwise_weight(w_skip, "w_skip", "C_skip", c_gate // 2, x)
    check_bias(b_skip, w_skip.shape[0], x, "b_skip")
    check_dilation(dilation, w_dilated.shape[2] - 1, "(K - 1)")
    return w_dilated, w_res, w_skip


def check_cond_weight(cond: torch.Tensor, w_cond: object, c_gate: int, x: torch.Tensor) -> torch.Tensor:
    """The local conditioning's projection (C_gate, C_cond[, 1]) for ``cond`` (channels in dim 1), as 2-D."""
    w_cond = _pointwise_weight(w_cond, "w_cond", "C_gate", cond.shape[1], x)
    if w_cond.shape[0] != c_gate:
        raise ValueError(f"w_cond must have C_gate = {c_gate} output channels (dim 0), "
                         f"got shape {tuple(w_cond.shape)}")
    return w_cond


def check_wavenet_layer(x: object, w_dilated: object, b_dilated: object, w_res: object, b_res: object,
                        w_skip: object, b_skip: object, dilation: object, cond: object, w_cond: object
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Check the arguments of ``wavenet_layer``; return w_res, w_skip and w_cond as 2-D weights."""
    x = check_rank(x, "x", 3, "(N, C_res, T)")
    w_dilated, w_res, w_skip = check_layer_weights(x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation)
    if (cond is None) != (w_cond is None):
        raise ValueError("cond and w_cond must be given together (local conditioning) or both be None")
    if cond is not None:
        cond = check_rank(cond, "cond", 3, "(N, C_cond, T)")
        check_same(cond, "cond", x)
        if cond.shape[0] != x.shape[0] or cond.shape[2] != x.shape[2]:
            raise ValueError(f"cond must have the batch and length of x, (N, C_cond, T) = "
                             f"({x.shape[0]}, C_cond, {x.shape[2]}), got shape {tuple(cond.shape)}")
        w_cond = check_cond_weight(cond, w_cond, w_dilated.shape[0], x)
    return w_res, w_skip, w_cond


def wavenet_layer(
    x: torch.Tensor,
    w_dilated: torch.Tensor,
    b_dilated: torch.Tensor | None,
    w_res: torch.Tensor,
    b_res: torch.Tensor | None,
    w_skip: torch.Tensor,
    b_skip: torch.Tensor | None,
    *,
    dilation: int,
    cond: torch.Tensor | None = None,
    w_cond: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One WaveNet residual layer (dilated causal conv -> tanh * sigmoid gate -> 1x1 residual and skip).

    ::

        h = causal_conv1d(x, w_dilated, b_dilated, dilation=dilation) + w_cond @ cond
        z = tanh(h[:, :C_gate // 2]) * sigmoid(h[:, C_gate // 2:])
        residual_out = x + w_res @ z + b_res
        skip = w_skip @ z + b_skip

    Parameters
    ----------
    x : torch.Tensor
        Input, shape (N, C_res, T); float32, float16, bfloat16 (accumulated in float32) or float64.
    w_dilated, b_dilated : torch.Tensor, torch.Tensor or None
        Dilated causal convolution, shapes (C_gate, C_res, K) and (C_gate,); C_gate is even: the
        first half of its outputs goes through tanh, the second through sigmoid.
    w_res, b_res : torch.Tensor, torch.Tensor or None
        1x1 residual projection, shapes (C_res, C_gate // 2) (or (C_res, C_gate // 2, 1), the
        ``nn.Conv1d`` layout) and (C_res,).
    w_skip, b_skip : torch.Tensor, torch.Tensor or None
        1x1 skip projection, shapes (C_skip, C_gate // 2) (or with a trailing 1) and (C_skip,).
    dilation : int
        Spacing of the dilated convolution's taps, >= 1.
    cond, w_cond : torch.Tensor or None
        Local conditioning (N, C_cond, T) and its 1x1 projection (C_gate, C_cond) (or with a
        trailing 1), added before the gate; both or neither.

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        ``residual_out`` (N, C_res, T) and ``skip`` (N, C_skip, T), dtype of ``x``; differentiable
        in every tensor argument.
    """
    x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, cond, w_cond = autocast_inputs(
        "wavenet_layer", x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, cond, w_cond)
    w_res2, w_skip2, w_cond2 = check_wavenet_layer(x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip,
                                                   dilation, cond, w_cond)
    if not use_kernel("wavenet_layer", x):
        return reference.wavenet_layer(x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation, cond, w_cond)
    save = needs_grad(x, w_dilated, b_dilated, w_res2, b_res, w_skip2, b_skip, cond, w_cond2)
    residual, skip, _ = torch.ops.fastgen.wavenet_layer(x, w_dilated, b_dilated, w_res2, b_res, w_skip2, b_skip,
                                                        dilation, cond, w_cond2, save)
    return residual, skip
