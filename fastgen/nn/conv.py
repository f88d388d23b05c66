"""Drop-in causal convolution layers: ``CausalConv1d`` (WaveNet) and ``MaskedConv2d`` (PixelCNN).

Both subclass the ``torch.nn`` convolution they replace and keep its parameters (``weight``,
``bias``) with the same names and shapes, so a state dict saved from an ``nn.Conv1d`` /
``nn.Conv2d`` model loads into them unchanged (and the other way round). The forward pass runs
:func:`fastgen.ops.causal_conv1d` / :func:`fastgen.ops.masked_conv2d`, which never build the
padded input nor the masked weight.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

from fastgen import ops, reference

__all__ = ["CausalConv1d", "MaskedConv2d"]

_IntOrTuple = Union[int, tuple[int, ...]]


def _int_tuple(value: object, n: int, name: str) -> tuple[int, ...]:
    """``value`` as an n-tuple of ints (an int is repeated), or a TypeError naming ``name``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * n
    if (isinstance(value, (tuple, list)) and len(value) == n
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return tuple(value)
    what = f"an int or a tuple of {n} int" + ("s" if n > 1 else "")
    raise TypeError(f"{name} must be {what}, got {value!r}")


def _positive(value: object, n: int, name: str) -> tuple[int, ...]:
    values = _int_tuple(value, n, name)
    if any(v < 1 for v in values):
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return values


def _check_stride_and_padding_mode(layer: str, stride: object, padding_mode: object, n: int) -> None:
    if _int_tuple(stride, n, "stride") != (1,) * n:
        raise ValueError(f"stride must be 1 ({layer} supports stride 1 only), got {stride!r}")
    if padding_mode != "zeros":
        raise ValueError(f'padding_mode must be "zeros" ({layer} pads with zeros only), got {padding_mode!r}')


def _copy_parameters(layer: nn.Module, conv: nn.Module) -> nn.Module:
    """``layer`` with ``conv``'s weight, bias, their ``requires_grad`` (a frozen layer stays
    frozen) and training mode (for ``from_conv``)."""
    with torch.no_grad():
        for name in ("weight", "bias"):
            theirs = getattr(conv, name)
            if theirs is not None:
                getattr(layer, name).copy_(theirs).requires_grad_(theirs.requires_grad)
    return layer.train(conv.training)


def _check_unbatched(x: object, rank: int, layout: str, layer: str, channels: int) -> bool:
    """Whether ``x`` is an unbatched input (rank - 1 dims); raise unless it has rank or rank - 1
    dims and ``channels`` channels (the layer's input width; the error names the input, as
    ``nn.Conv2d``'s does, rather than the weight the functional op would blame)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{layer} input must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (rank - 1, rank):
        raise ValueError(
            f"{layer} input must have shape (N, {layout}) or unbatched ({layout}), got shape {tuple(x.shape)}"
        )
    unbatched = x.dim() == rank - 1
    if x.shape[0 if unbatched else 1] != channels:
        dim = "dim 0 of an unbatched input" if unbatched else "dim 1"
        raise ValueError(f"{layer} input must have {layout.split(',')[0]} = {channels} channels ({dim}), "
                         f"got shape {tuple(x.shape)}")
    return unbatched


class CausalConv1d(nn.Conv1d):
    """Dilated causal 1-D convolution (WaveNet), a drop-in for ``nn.Conv1d``.

    The output at time ``t`` sees the inputs up to ``t`` only: the layer computes
    ``F.conv1d(F.pad(x, ((kernel_size - 1) * dilation, 0)), weight, bias, dilation=dilation)``
    with :func:`fastgen.ops.causal_conv1d`, without building the padded copy of ``x``. The output
    has the input's length.

    The constructor takes the arguments of ``nn.Conv1d``; the causal left padding is implied,
    so only the settings it is compatible with are accepted (anything else raises a
    ``ValueError`` naming the argument).

    Parameters
    ----------
    in_channels : int
        Input channels C_in.
    out_channels : int
        Output channels C_out.
    kernel_size : int or tuple of 1 int
        Taps K >= 1; ``weight[:, :, K - 1]`` multiplies the current time step.
    stride : int or tuple of 1 int
        Must be 1.
    padding : int, tuple of 1 int or "valid"
        Must be 0 (or "valid"): the ``(K - 1) * dilation`` steps of causal left padding are added
        by the layer.
    dilation : int or tuple of 1 int
        Spacing of the taps, >= 1. The receptive field is ``(K - 1) * dilation + 1`` steps.
    groups : int
        Must be 1.
    bias : bool
        Whether the layer has a learnable ``bias`` of shape (C_out,).
    padding_mode : str
        Must be ``"zeros"``.
    device, dtype
        Where and in which dtype the parameters are created, as in ``nn.Conv1d``.

    Attributes
    ----------
    weight : nn.Parameter
        Shape (C_out, C_in, K), initialised as in ``nn.Conv1d``.
    bias : nn.Parameter or None
        Shape (C_out,).

    Shapes
    ------
    x: (N, C_in, T) or unbatched (C_in, T); output: (N, C_out, T) or (C_out, T).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _IntOrTuple,
        stride: _IntOrTuple = 1,
        padding: _IntOrTuple = 0,
        dilation: _IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        _positive(kernel_size, 1, "kernel_size")
        _check_stride_and_padding_mode("CausalConv1d", stride, padding_mode, 1)
        if padding == "valid":  # nn.Conv1d's name for 0
            padding = 0
        if isinstance(padding, str) or _int_tuple(padding, 1, "padding") != (0,):
            raise ValueError(
                'padding must be 0 or "valid" (CausalConv1d pads (kernel_size - 1) * dilation steps on the left '
                f"itself), got {padding!r}"
            )
        _positive(dilation, 1, "dilation")
        if groups != 1:
            raise ValueError(f"groups must be 1 (CausalConv1d has no grouped convolution), got {groups!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)

    @classmethod
    def from_conv(cls, conv: nn.Conv1d) -> CausalConv1d:
        """A ``CausalConv1d`` with a copy of the weights and dilation of ``conv``.

        ``conv`` is taken to have been used causally, i.e. as
        ``conv(F.pad(x, ((K - 1) * dilation, 0)))`` or ``F.conv1d`` on such a left-padded input:
        its ``padding`` and ``padding_mode`` are ignored (the causal padding replaces them).

        Parameters
        ----------
        conv : nn.Conv1d
            Weight (C_out, C_in, K) and optional bias (C_out,); ``stride`` and ``groups`` must be 1.

        Returns
        -------
        CausalConv1d
            With parameters on ``conv``'s device and dtype, and ``conv``'s training mode.
        """
        if not isinstance(conv, nn.Conv1d):
            raise TypeError(f"conv must be an nn.Conv1d, got {type(conv).__name__}")
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                    dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                    device=conv.weight.device, dtype=conv.weight.dtype)
        return _copy_parameters(layer, conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Causal convolution of ``x`` (N, C_in, T) or (C_in, T); same length out."""
        unbatched = _check_unbatched(x, 3, "C_in, T", "CausalConv1d", self.in_channels)
        if unbatched:
            x = x.unsqueeze(0)
        y = self._conv_forward(x, self.weight, self.bias)
        return y.squeeze(0) if unbatched else y

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The causal convolution with the given ``weight`` and ``bias``: ``nn.Conv1d``'s hook,
        which code built on ``nn.Conv1d`` calls with a weight of its own (batched input only)."""
        return ops.causal_conv1d(input, weight, bias, dilation=self.dilation[0])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, causal=True"


class MaskedConv2d(nn.Conv2d):
    """PixelCNN masked 2-D convolution with "same" output size, a drop-in for ``nn.Conv2d``.

    Equals ``nn.Conv2d(..., padding=(KH // 2 * dilation, KW // 2 * dilation))`` run with the
    weight multiplied by the PixelCNN mask (:attr:`mask`, from
    ``fastgen.reference.masked_conv2d_mask``): taps before the centre in raster order are kept;
    the centre tap is dropped by mask "A" and kept by mask "B", or with ``color_channels = 3``
    connects the R, G, B channel blocks causally. It runs :func:`fastgen.ops.masked_conv2d`,
    which reads only the kept taps: the masked entries of ``weight`` are ignored and get zero
    gradient, so ``weight`` itself never needs masking.

    The constructor takes the arguments of ``nn.Conv2d`` plus ``mask_type`` and
    ``color_channels``; the "same" padding is implied, so only compatible settings are accepted
    (anything else raises a ``ValueError`` naming the argument).

    Parameters
    ----------
    in_channels : int
        Input channels C_in.
    out_channels : int
        Output channels C_out.
    kernel_size : int or tuple of 2 ints
        Odd kernel sizes (KH, KW).
    stride : int or tuple of 2 ints
        Must be 1.
    padding : None, "same", int or tuple of 2 ints
        None (default) or ``"same"`` for ``(KH // 2 * dilation, KW // 2 * dilation)``; an
        explicit value must equal it.
    dilation : int or tuple of 2 ints
        Spacing of the taps, >= 1, the same along both axes.
    groups : int
        Grouped convolution as in ``nn.Conv2d``; must divide C_in and C_out.
    bias : bool
        Whether the layer has a learnable ``bias`` of shape (C_out,).
    padding_mode : str
        Must be ``"zeros"``.
    device, dtype
        Where and in which dtype the parameters are created, as in ``nn.Conv2d``.
    mask_type : {"A", "B"}
        "A" for the first layer (a pixel does not see itself), "B" for the layers after it.
    color_channels : int
        1 (default) or the number of colour channel blocks (3 for RGB); needs ``groups = 1``
        and C_in, C_out divisible by it.

    Attributes
    ----------
    weight : nn.Parameter
        Shape (C_out, C_in // groups, KH, KW), initialised as in ``nn.Conv2d``.
    bias : nn.Parameter or None
        Shape (C_out,).
    mask : torch.Tensor
        The 0/1 mask, shape and dtype of ``weight``; a non-persistent buffer (not in the state
        dict, which has exactly the keys of ``nn.Conv2d``). ``load_state_dict`` also takes the
        state dict of the usual recipe, an ``nn.Conv2d`` with a registered ``mask`` buffer: a
        saved ``mask`` is checked (the same taps kept, any broadcastable shape) and not loaded.

    Shapes
    ------
    x: (N, C_in, H, W) or unbatched (C_in, H, W); output: (N, C_out, H, W) or (C_out, H, W).
    """

    mask: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _IntOrTuple,
        stride: _IntOrTuple = 1,
        padding: _IntOrTuple | str | None = None,
        dilation: _IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        mask_type: str = "A",
        color_channels: int = 1,
    ) -> None:
        kh, kw = _positive(kernel_size, 2, "kernel_size")
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"kernel_size must be odd along both axes (a centre tap), got {kernel_size!r}")
        _check_stride_and_padding_mode("MaskedConv2d", stride, padding_mode, 2)
        dh, dw = _positive(dilation, 2, "dilation")
        if dh != dw:
            raise ValueError(f"dilation must be the same along both axes, got {dilation!r}")
        same = (kh // 2 * dh, kw // 2 * dw)
        if padding is None or padding == "same":
            given = same
        elif padding == "valid":
            given = (0, 0)
        elif isinstance(padding, str):
            raise ValueError(f'padding must be None, "same" or {same}, got {padding!r}')
        else:
            given = _int_tuple(padding, 2, "padding")
        if given != same:
            raise ValueError(
                f"padding must be None, \"same\" or (KH // 2 * dilation, KW // 2 * dilation) = {same} "
                f"(MaskedConv2d keeps the input size), got {padding!r}"
            )
        if not (isinstance(mask_type, str) and mask_type in reference.MASK_TYPES):
            raise ValueError(f'mask_type must be "A" or "B", got {mask_type!r}')
        if isinstance(color_channels, bool) or not isinstance(color_channels, int):
            raise TypeError(f"color_channels must be an int, got {type(color_channels).__name__}")
        if color_channels < 1:
            raise ValueError(f"color_channels must be >= 1, got {color_channels}")
        if color_channels > 1:
            if groups != 1:
                raise ValueError(
                    f"color_channels = {color_channels} needs groups = 1, got groups = {groups!r}"
                )
            if in_channels % color_channels or out_channels % color_channels:
                raise ValueError(
                    f"color_channels = {color_channels} must divide in_channels = {in_channels} "
                    f"and out_channels = {out_channels}"
                )
        super().__init__(in_channels, out_channels, (kh, kw), stride=stride, padding=same,
                         dilation=(dh, dw), groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self.mask_type = mask_type
        self.color_channels = color_channels
        self._build_mask()

    def _build_mask(self) -> None:
        """(Re)build :attr:`mask` on the weight's device and dtype: it is a function of the
        configuration, so it is rebuilt wherever memory may not hold it (after ``to_empty``, or a
        ``load_state_dict(assign=True)`` into a layer made on the meta device)."""
        self.register_buffer("mask", self._mask_on_cpu().to(device=self.weight.device, dtype=self.weight.dtype),
                             persistent=False)

    def _mask_on_cpu(self) -> torch.Tensor:
        """The 0/1 mask of this configuration, float32 on the CPU (also for a layer on meta)."""
        return reference.masked_conv2d_mask(self.weight.shape, self.mask_type, self.color_channels, self.groups)

    def reset_parameters(self) -> None:
        """Re-initialise ``weight`` and ``bias`` as ``nn.Conv2d`` does, and rebuild :attr:`mask`
        (the meta-device recipe ``to_empty`` + ``reset_parameters`` leaves it uninitialised)."""
        super().reset_parameters()
        if hasattr(self, "mask_type"):  # not during nn.Conv2d.__init__
            self._build_mask()

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, mask_type: str, *, color_channels: int = 1) -> MaskedConv2d:
        """A ``MaskedConv2d`` with a copy of the weights and settings of ``conv``.

        ``conv`` is the plain convolution of the usual recipe (run with ``weight * mask``), so
        it must satisfy the constructor's restrictions: odd kernel, stride 1, "same" padding,
        equal dilations, zero padding mode.

        Parameters
        ----------
        conv : nn.Conv2d
            Weight (C_out, C_in // groups, KH, KW) and optional bias (C_out,). The weight is
            copied as is; its masked entries are ignored by the layer.
        mask_type : {"A", "B"}
            The mask of the new layer.
        color_channels : int
            As in the constructor.

        Returns
        -------
        MaskedConv2d
            With parameters on ``conv``'s device and dtype, and ``conv``'s training mode.
        """
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode,
                    device=conv.weight.device, dtype=conv.weight.dtype,
                    mask_type=mask_type, color_channels=color_channels)
        return _copy_parameters(layer, conv)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # The usual recipe (an nn.Conv2d subclass with a registered "mask" buffer) saves its mask:
        # accept it when it keeps the same taps as this layer's, and say so when it does not.
        theirs = state_dict.pop(prefix + "mask", None)
        if theirs is not None:
            problem = self._mask_mismatch(theirs)
            if problem:
                error_msgs.append(f'{prefix}mask in the state dict {problem}; this layer is mask_type='
                                  f'"{self.mask_type}", color_channels={self.color_channels}, groups={self.groups}')
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        self._build_mask()  # assign=True may have moved the weight to another device or dtype

    def _mask_mismatch(self, theirs: object) -> str | None:
        """Why a saved mask does not keep the taps of :attr:`mask`, or None if it does."""
        if not isinstance(theirs, torch.Tensor):
            return f"is a {type(theirs).__name__}, not a tensor"
        # Compared on the CPU: this layer may live on the meta device (no values to compare).
        ours = self._mask_on_cpu() != 0
        try:
            kept = torch.broadcast_to(theirs.detach().cpu() != 0, ours.shape)
        except RuntimeError:
            return f"has shape {tuple(theirs.shape)}, which does not broadcast to the weight's {tuple(ours.shape)}"
        differ = kept != ours
        if differ.any():
            return f"keeps different taps ({int(differ.sum())} of {differ.numel()} entries differ)"
        return None

    def masked_weight(self) -> torch.Tensor:
        """``weight * mask``, shape (C_out, C_in // groups, KH, KW): the weight the layer uses."""
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Masked convolution of ``x`` (N, C_in, H, W) or (C_in, H, W); same size out."""
        unbatched = _check_unbatched(x, 4, "C_in, H, W", "MaskedConv2d", self.in_channels)
        if unbatched:
            x = x.unsqueeze(0)
        y = self._conv_forward(x, self.weight, self.bias)
        return y.squeeze(0) if unbatched else y

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The masked convolution with the given ``weight`` and ``bias``: ``nn.Conv2d``'s hook,
        which code built on ``nn.Conv2d`` calls with a weight of its own; the mask applies to it
        too (batched input only)."""
        return ops.masked_conv2d(input, weight, bias, mask_type=self.mask_type, dilation=self.dilation[0],
                                 groups=self.groups, color_channels=self.color_channels)

    def extra_repr(self) -> str:
        s = f"{super().extra_repr()}, mask_type={self.mask_type!r}"
        if self.color_channels != 1:
            s += f", color_channels={self.color_channels}"
        return s
