"""The Gated PixelCNN layer (van den Oord et al. 2016) as one fused op.

A layer is a vertical stack (an n x n convolution causal in rows), a horizontal stack (1 x n,
causal in the row), the link from the vertical stack, shifted down one row, into the
horizontal one, tanh * sigmoid gates on both, optional conditioning and the horizontal
residual: about a dozen passes over the feature maps in eager PyTorch. The fused op computes
a tile of rows at a time and keeps only the two gate pre-activations for the backward pass.
Together the stacks have no blind spot.
"""

from __future__ import annotations

import torch

from fastgen import reference
from fastgen.ops._autocast import autocast_inputs
from fastgen.ops._checks import check_bias, check_rank, check_same
from fastgen.ops._dispatch import needs_grad, use_kernel


def _pointwise_weight(value: object, name: str, shape: tuple[int, int], x: torch.Tensor, x_name: str
                      ) -> torch.Tensor:
    """A 1x1 convolution weight of ``shape`` = (C_out, C_in), also in the nn.Conv2d layout (C_out, C_in, 1, 1)."""
    if isinstance(value, torch.Tensor) and value.dim() == 4 and tuple(value.shape[2:]) == (1, 1):
        value = value[:, :, 0, 0]
    weight = check_rank(value, name, 2, f"{shape} or {shape + (1, 1)}")
    check_same(weight, name, x, x_name)
    if tuple(weight.shape) != shape:
        raise ValueError(f"{name} must have shape {shape} (or {shape + (1, 1)}), got {tuple(weight.shape)}")
    return weight


def causal_taps(w_v: object, w_h: object) -> tuple[object, object]:
    """Full n x n and 1 x n kernels cut to the taps the stacks read: the vertical kernel's rows up
    to the centre, the horizontal kernel's columns up to the centre. The taps cut off are the
    masked ones (never read; their gradient is zero). Kernels given cut already pass as they are."""
    if not isinstance(w_v, torch.Tensor) or w_v.dim() != 4:
        return w_v, w_h  # the checks name the problem
    n = w_v.shape[3]
    if n > 1 and w_v.shape[2] == n:
        w_v = w_v[:, :, : n // 2 + 1]
    if n > 1 and isinstance(w_h, torch.Tensor) and w_h.dim() == 4 and tuple(w_h.shape[2:]) == (1, n):
        w_h = w_h[..., : n // 2 + 1]
    return w_v, w_h


def check_gated_pixelcnn_layer(v: object, h: object, w_v: object, b_v: object, w_h: object, b_h: object,
                               w_v2h: object, b_v2h: object, w_res: object, b_res: object, mask_type: object,
                               cond: object, w_cond_v: object, w_cond_h: object
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the arguments of ``gated_pixelcnn_layer``; return w_v2h and w_res as 2-D weights."""
    v = check_rank(v, "v", 4, "(N, C_in, H, W)")
    h = check_rank(h, "h", 4, "(N, C_in, H, W)")
    check_same(h, "h", v, "v")
    if h.shape != v.shape:
        raise ValueError(f"h must have the shape of v {tuple(v.shape)}, got {tuple(h.shape)}")
    if mask_type not in reference.MASK_TYPES:
        raise ValueError(f'mask_type must be "A" or "B", got {mask_type!r}')
    c_in = v.shape[1]
    w_v = check_rank(w_v, "w_v", 4, "(2C, C_in, n // 2 + 1, n)")
    check_same(w_v, "w_v", v, "v")
    two_c, n = w_v.shape[0], w_v.shape[3]
    if two_c == 0 or two_c % 2:
        raise ValueError(f"w_v must have an even, nonzero 2C output channels (dim 0: tanh half, sigmoid half), "
                         f"got shape {tuple(w_v.shape)}")
    if n % 2 == 0 or w_v.shape[2] != n // 2 + 1 or w_v.shape[1] != c_in:
        raise ValueError(f"w_v must have shape (2C, C_in, n // 2 + 1, n) (or the full (2C, C_in, n, n)) with odd n "
                         f"and C_in = {c_in}, got {tuple(w_v.shape)}")
    w_h = check_rank(w_h, "w_h", 4, "(2C, C_in, 1, n // 2 + 1)")
    check_same(w_h, "w_h", v, "v")
    if tuple(w_h.shape) != (two_c, c_in, 1, n // 2 + 1):
        raise ValueError(f"w_h must have shape (2C, C_in, 1, n // 2 + 1) = {(two_c, c_in, 1, n // 2 + 1)} (or the "
                         f"full {(two_c, c_in, 1, n)}), got {tuple(w_h.shape)}")
    c = two_c // 2
    w_v2h = _pointwise_weight(w_v2h, "w_v2h", (two_c, two_c), v, "v")
    w_res = _pointwise_weight(w_res, "w_res", (c, c), v, "v")
    for bias, name, size in ((b_v, "b_v", two_c), (b_h, "b_h", two_c), (b_v2h, "b_v2h", two_c), (b_res, "b_res", c)):
        check_bias(bias, size, v, name, "v")
    if mask_type == "B" and c_in != c:
        raise ValueError(f'mask_type "B" adds the horizontal residual, so v and h need C_in = C = {c} '
                         f"channels, got {c_in}")
    given = [t is not None for t in (cond, w_cond_v, w_cond_h)]
    if any(given) and not all(given):
        raise ValueError("cond, w_cond_v and w_cond_h must be given together (conditioning) or all be None")
    if cond is not None:
        cond = check_rank(cond, "cond", 2, "(N, D)")
        check_same(cond, "cond", v, "v")
        if cond.shape[0] != v.shape[0]:
            raise ValueError(f"cond must have the batch size of v, N = {v.shape[0]}, got shape {tuple(cond.shape)}")
        for weight, name in ((w_cond_v, "w_cond_v"), (w_cond_h, "w_cond_h")):
            weight = check_rank(weight, name, 2, "(2C, D)")
            check_same(weight, name, v, "v")
            if tuple(weight.shape) != (two_c, cond.shape[1]):
                raise ValueError(f"{name} must have shape (2C, D) = {(two_c, cond.shape[1])}, "
                                 f"got {tuple(weight.shape)}")
    return w_v2h, w_res


def gated_pixelcnn_layer(
    v: torch.Tensor,
    h: torch.Tensor,
    w_v: torch.Tensor,
    b_v: torch.Tensor | None,
    w_h: torch.Tensor,
    b_h: torch.Tensor | None,
    w_v2h: torch.Tensor,
    b_v2h: torch.Tensor | None,
    w_res: torch.Tensor,
    b_res: torch.Tensor | None,
    *,
    mask_type: str = "B",
    cond: torch.Tensor | None = None,
    w_cond_v: torch.Tensor | None = None,
    w_cond_h: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Gated PixelCNN layer: vertical and horizontal stacks, gates, link, conditioning, residual.

    With an n x n filter (n odd, k = n // 2)::

        v_pre = conv(v, w_v over rows i-k..i, columns j-k..j+k) + b_v [+ w_cond_v @ cond]
        v_out = tanh(v_pre[:, :C]) * sigmoid(v_pre[:, C:])
        h_pre = conv(h, w_h over row i, columns j-k..j) + b_h
                + w_v2h @ v_pre shifted down one row + b_v2h [+ w_cond_h @ cond]
        h_out = w_res @ (tanh(h_pre[:, :C]) * sigmoid(h_pre[:, C:])) + b_res [+ h for mask "B"]

    Mask "A" (the first layer) drops the horizontal stack's current-pixel tap (``w_h[..., -1]`` is
    ignored) and has no residual; mask "B" keeps it and adds ``h``. ``h_out`` at pixel (i, j)
    depends on input pixels before (i, j) in raster order only (and on (i, j) itself for "B").
    ``v_out`` at row i is causal in rows: it sees rows i-k..i of ``v`` (row i included, all its
    columns within reach), and reaches the horizontal stack only shifted down one row, so in a
    stack of layers no ``h_out`` sees a pixel at or after its own (no blind spot either).

    Parameters
    ----------
    v, h : torch.Tensor
        Vertical and horizontal stack inputs, shape (N, C_in, H, W) each (the image twice for the
        first layer); float32, float16, bfloat16 (accumulated in float32) or float64.
    w_v, b_v : torch.Tensor, torch.Tensor or None
        Vertical convolution, (2C, C_in, k + 1, n) and (2C,). The full n x n kernel
        (2C, C_in, n, n) is accepted too: its rows below the centre are masked (not read, zero
        gradient).
    w_h, b_h : torch.Tensor, torch.Tensor or None
        Horizontal convolution, (2C, C_in, 1, k + 1) and (2C,), or the full 1 x n kernel
        (2C, C_in, 1, n), whose columns after the centre are masked.
    w_v2h, b_v2h : torch.Tensor, torch.Tensor or None
        Vertical-to-horizontal link, (2C, 2C) (or (2C, 2C, 1, 1)) and (2C,).
    w_res, b_res : torch.Tensor, torch.Tensor or None
        Horizontal output projection, (C, C) (or (C, C, 1, 1)) and (C,).
    mask_type : {"A", "B"}
        "A" for the first layer, "B" (needs C_in = C) for the layers after it.
    cond, w_cond_v, w_cond_h : torch.Tensor or None
        Class/global conditioning (N, D) and its projections (2C, D) into each stack; all or none.

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        ``v_out`` and ``h_out``, shape (N, C, H, W) each, dtype of ``v``; differentiable in every
        tensor argument.
    """
    v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res, cond, w_cond_v, w_cond_h = autocast_inputs(
        "gated_pixelcnn_layer", v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res, cond, w_cond_v, w_cond_h)
    w_v, w_h = causal_taps(w_v, w_h)
    w_v2h2, w_res2 = check_gated_pixelcnn_layer(v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res, mask_type,
                                                cond, w_cond_v, w_cond_h)
    if not use_kernel("gated_pixelcnn_layer", v):
        return reference.gated_pixelcnn_layer(v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res, mask_type,
                                              cond, w_cond_v, w_cond_h)
    save = needs_grad(v, h, w_v, b_v, w_h, b_h, w_v2h2, b_v2h, w_res2, b_res, cond, w_cond_v, w_cond_h)
    v_out, h_out, _, _ = torch.ops.fastgen.gated_pixelcnn_layer(v, h, w_v, b_v, w_h, b_h, w_v2h2, b_v2h, w_res2,
                                                                b_res, mask_type, cond, w_cond_v, w_cond_h, save)
    return v_out, h_out
