"""The Gated PixelCNN layer as a module: ``GatedPixelCNNLayer`` over :func:`fastgen.ops.gated_pixelcnn_layer`.

The layer keeps its parameters in standard submodules (``nn.Conv2d`` for the vertical and
horizontal stacks and the two 1x1 projections, ``nn.Linear`` for the conditioning), so its
state dict has the keys and shapes of a plain PyTorch Gated PixelCNN layer written with the
same layout and loads into one unchanged (and the other way round). The forward pass runs the
whole layer as one fused op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastgen import ops, reference
from fastgen.nn.conv import _check_unbatched
from fastgen.nn.wavenet import _positive_int

__all__ = ["GatedPixelCNNLayer"]


def _gate(pre: torch.Tensor) -> torch.Tensor:
    """tanh of the first half of the channels times sigmoid of the second half."""
    half = pre.shape[1] // 2
    return torch.tanh(pre[:, :half]) * torch.sigmoid(pre[:, half:])


class GatedPixelCNNLayer(nn.Module):
    """One Gated PixelCNN layer (van den Oord et al. 2016): vertical and horizontal stacks.

    With an n x n filter (``kernel_size = n`` odd, ``k = n // 2``) and C = ``channels``::

        v_pre = vertical(v over rows i-k..i, columns j-k..j+k) [+ cond_v(cond)]     (N, 2C, H, W)
        v_out = tanh(v_pre[:, :C]) * sigmoid(v_pre[:, C:])
        h_pre = horizontal(h over row i, columns j-k..j) + link(v_pre shifted down one row)
                [+ cond_h(cond)]
        h_out = out(tanh(h_pre[:, :C]) * sigmoid(h_pre[:, C:])) [+ h for mask "B"]

    The vertical stack sees the k rows above and the current row; the link feeds it to the
    horizontal stack one row late, so that ``h_out`` at pixel (i, j) depends on the pixels
    before (i, j) in raster order only (and on (i, j) itself for mask "B"), without the blind
    spot of a masked 3x3 convolution stack. Gate convention: the first C of the 2C channels go
    through tanh, the last C through sigmoid.

    Mask "A" (the first layer, which must not see the pixel it predicts) ignores the horizontal
    convolution's current-pixel tap ``horizontal.weight[..., -1]`` (it gets zero gradient) and
    has no residual; mask "B" (every later layer) keeps the tap and adds ``h`` to ``h_out``, so
    it needs ``in_channels == channels``.

    :meth:`forward` runs :func:`fastgen.ops.gated_pixelcnn_layer`, which computes the layer in
    one pass without materialising the padded inputs, the shifted link input nor the gates;
    :meth:`reference_forward` computes the same with plain PyTorch layers.

    Parameters
    ----------
    in_channels : int
        Channels C_in of ``v`` and ``h``, >= 1 (e.g. the image channels for the first layer).
    channels : int
        Channels C of ``v_out`` and ``h_out``, >= 1; the stacks have 2C (tanh half, sigmoid half).
    kernel_size : int
        Odd filter size n >= 1. Default 3.
    mask_type : {"A", "B"}
        "A" for the first layer, "B" (default, needs ``in_channels == channels``) after it.
    cond_features : int or None
        Features D of a global (per-image) conditioning vector, e.g. a one-hot class, projected
        by bias-free ``nn.Linear`` layers into both stacks before the gates. None (default): no
        conditioning, and ``forward`` takes no ``cond``.
    bias : bool
        Whether ``vertical``, ``horizontal``, ``link`` and ``out`` have biases. Default True.
    device, dtype
        Where and in which dtype the parameters are created, as in ``nn.Conv2d``.

    Attributes
    ----------
    vertical : nn.Conv2d
        Weight (2C, C_in, k + 1, n), bias (2C,). Built with ``padding=0``: the layer pads k rows
        on top and k columns on each side itself (``F.pad(v, (k, k, k, 0))``), so calling the
        submodule directly does *not* give the vertical stack.
    horizontal : nn.Conv2d
        Weight (2C, C_in, 1, k + 1), bias (2C,); ``padding=0`` too (the layer pads k columns on
        the left). ``weight[..., -1]`` is the current pixel's tap, unused by mask "A".
    link : nn.Conv2d
        1x1 vertical-to-horizontal link, weight (2C, 2C, 1, 1), bias (2C,).
    out : nn.Conv2d
        1x1 projection of the horizontal gate, weight (C, C, 1, 1), bias (C,).
    cond_v, cond_h : nn.Linear or None
        Conditioning projections, weight (2C, D) each, no bias; None without ``cond_features``.

    Shapes
    ------
    v, h: (N, C_in, H, W) or unbatched (C_in, H, W); cond: (N, D) or (D,), as ``v``;
    outputs: v_out and h_out (N, C, H, W), or unbatched like ``v``.

    Examples
    --------
    A stack on a one-channel image: the first layer (mask "A") gets the image twice, the
    horizontal output feeds the prediction::

        layers = nn.ModuleList([GatedPixelCNNLayer(1, 64, 7, mask_type="A")]
                               + [GatedPixelCNNLayer(64, 64, 3) for _ in range(6)])
        v, h = x, x
        for layer in layers:
            v, h = layer(v, h)
        logits = head(h)
    """

    cond_v: nn.Linear | None
    cond_h: nn.Linear | None

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int = 3,
        mask_type: str = "B",
        cond_features: int | None = None,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        _positive_int(in_channels, "in_channels")
        _positive_int(channels, "channels")
        _positive_int(kernel_size, "kernel_size")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centre column), got {kernel_size}")
        if not (isinstance(mask_type, str) and mask_type in reference.MASK_TYPES):
            raise ValueError(f'mask_type must be "A" or "B", got {mask_type!r}')
        if mask_type == "B" and in_channels != channels:
            raise ValueError(
                f'mask_type "B" adds the horizontal input to the output (residual), so in_channels must '
                f"equal channels, got in_channels={in_channels} and channels={channels} (use mask_type "
                f'"A" for a first layer that changes the channel count)'
            )
        if cond_features is not None:
            _positive_int(cond_features, "cond_features")
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {bias!r}")
        super().__init__()
        self.in_channels = in_channels
        self.channels = channels
        self.kernel_size = kernel_size
        self.mask_type = mask_type
        self.cond_features = cond_features
        factory = dict(device=device, dtype=dtype)
        k = kernel_size // 2
        two_c = 2 * channels
        self.vertical = nn.Conv2d(in_channels, two_c, (k + 1, kernel_size), padding=0, bias=bias, **factory)
        self.horizontal = nn.Conv2d(in_channels, two_c, (1, k + 1), padding=0, bias=bias, **factory)
        self.link = nn.Conv2d(two_c, two_c, 1, bias=bias, **factory)
        self.out = nn.Conv2d(channels, channels, 1, bias=bias, **factory)
        if cond_features is None:
            self.cond_v = self.cond_h = None
        else:
            self.cond_v = nn.Linear(cond_features, two_c, bias=False, **factory)
            self.cond_h = nn.Linear(cond_features, two_c, bias=False, **factory)

    def _inputs(self, v: torch.Tensor, h: torch.Tensor | None, cond: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
        """Check the inputs against the layer; return them batched (h defaulted) and whether v was not."""
        unbatched = _check_unbatched(v, 4, "C_in, H, W", "GatedPixelCNNLayer", self.in_channels)
        if h is None:
            h = v
        elif not isinstance(h, torch.Tensor):
            raise TypeError(f"h must be a torch.Tensor or None, got {type(h).__name__}")
        elif h.shape != v.shape:
            raise ValueError(f"h must have the shape of v {tuple(v.shape)}, got {tuple(h.shape)}")
        if self.cond_features is None and cond is not None:
            raise ValueError("cond must be None: this GatedPixelCNNLayer was built without cond_features "
                             "(pass cond_features=D to the constructor for conditioning)")
        if self.cond_features is not None and cond is None:
            raise ValueError(f"cond is required: this GatedPixelCNNLayer was built with cond_features="
                             f"{self.cond_features}, so forward needs cond of shape (N, {self.cond_features})")
        if unbatched:
            v, h = v.unsqueeze(0), h.unsqueeze(0)
            if isinstance(cond, torch.Tensor) and cond.dim() == 1:
                cond = cond.unsqueeze(0)
        # Blame cond, not the projection weights the op would name.
        if isinstance(cond, torch.Tensor) and cond.dim() == 2 and cond.shape[1] != self.cond_features:
            raise ValueError(f"cond must have D = {self.cond_features} features (dim 1 of (N, D)), "
                             f"got shape {tuple(cond.shape)}")
        return v, h, cond, unbatched

    def forward(self, v: torch.Tensor, h: torch.Tensor | None = None, cond: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer, fused: ``(v_out, h_out)`` for the stacks ``v``, ``h`` (N, C_in, H, W).

        Parameters
        ----------
        v : torch.Tensor
            Vertical stack input (N, C_in, H, W) or unbatched (C_in, H, W), dtype and device of
            the parameters.
        h : torch.Tensor or None
            Horizontal stack input, shape of ``v``; None (default): ``v`` itself (the first
            layer gets the image on both stacks).
        cond : torch.Tensor or None
            Global conditioning (N, D) (unbatched (D,) with an unbatched ``v``); required when
            the layer has ``cond_features``, refused otherwise.

        Returns
        -------
        tuple[torch.Tensor, torch.Tensor]
            ``v_out`` and ``h_out``, (N, C, H, W) each; without the N for an unbatched ``v``.
        """
        v, h, cond, unbatched = self._inputs(v, h, cond)
        v_out, h_out = ops.gated_pixelcnn_layer(
            v, h, self.vertical.weight, self.vertical.bias, self.horizontal.weight, self.horizontal.bias,
            self.link.weight, self.link.bias, self.out.weight, self.out.bias, mask_type=self.mask_type,
            cond=cond, w_cond_v=None if self.cond_v is None else self.cond_v.weight,
            w_cond_h=None if self.cond_h is None else self.cond_h.weight,
        )
        if unbatched:
            return v_out.squeeze(0), h_out.squeeze(0)
        return v_out, h_out

    def reference_forward(self, v: torch.Tensor, h: torch.Tensor | None = None, cond: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same as :meth:`forward`, computed step by step with plain PyTorch layers.

        ``F.pad`` + the ``vertical`` and ``horizontal`` ``nn.Conv2d`` modules (for mask "A" the
        horizontal weight times a mask that zeroes its last column), the one-row shift by
        ``F.pad`` and slicing, the ``link`` and ``out`` modules and the gates: what a plain
        PyTorch Gated PixelCNN layer with this layout computes. Slower and more memory-hungry
        than :meth:`forward`, and float16/bfloat16 are computed in that dtype (the fused op
        accumulates in float32); for checks and comparisons. Takes and returns what
        :meth:`forward` does.
        """
        v, h, cond, unbatched = self._inputs(v, h, cond)
        k = self.kernel_size // 2
        v_pre = self.vertical(F.pad(v, (k, k, k, 0)))  # rows i-k..i, columns j-k..j+k
        h_padded = F.pad(h, (k, 0))  # row i, columns j-k..j
        if self.mask_type == "A":  # drop the current pixel's tap
            mask = torch.ones_like(self.horizontal.weight)
            mask[..., -1] = 0
            h_pre = F.conv2d(h_padded, self.horizontal.weight * mask, self.horizontal.bias)
        else:
            h_pre = self.horizontal(h_padded)
        if self.cond_v is not None and self.cond_h is not None:
            v_pre = v_pre + self.cond_v(cond)[:, :, None, None]
            h_pre = h_pre + self.cond_h(cond)[:, :, None, None]
        shifted = F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1]  # row i gets the vertical stack of row i - 1
        h_pre = h_pre + self.link(shifted)
        v_out = _gate(v_pre)
        h_out = self.out(_gate(h_pre))
        if self.mask_type == "B":
            h_out = h_out + h
        if unbatched:
            return v_out.squeeze(0), h_out.squeeze(0)
        return v_out, h_out

    def extra_repr(self) -> str:
        s = (f"in_channels={self.in_channels}, channels={self.channels}, kernel_size={self.kernel_size}, "
             f"mask_type={self.mask_type!r}")
        if self.cond_features is not None:
            s += f", cond_features={self.cond_features}"
        if self.vertical.bias is None:
            s += ", bias=False"
        return s
