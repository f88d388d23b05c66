"""The WaveNet residual layer as a module: ``WaveNetLayer`` over :func:`fastgen.ops.wavenet_layer`.

The layer keeps its parameters in standard submodules (a dilated ``CausalConv1d``, which is an
``nn.Conv1d``, and ``nn.Conv1d`` 1x1 projections), so its state dict has the keys and shapes of
a plain PyTorch WaveNet layer written with the same layout and loads into one unchanged (and
the other way round). The forward pass runs the whole layer as one fused op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastgen import ops
from fastgen.nn.conv import CausalConv1d, _check_unbatched

__all__ = ["WaveNetLayer"]


def _positive_int(value: object, name: str) -> int:
    """``value`` must be a Python int >= 1 (bools are refused); a TypeError / ValueError names ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


class WaveNetLayer(nn.Module):
    """One WaveNet residual layer (gated dilated causal convolution, residual and skip outputs).

    ::

        h = dilated(x) [+ cond_proj(cond)]                              (N, gate_channels, T)
        z = tanh(h[:, :gate_channels // 2]) * sigmoid(h[:, gate_channels // 2:])
        residual_out = x + res(z)                                       (N, residual_channels, T)
        skip = skip(z)                                                  (N, skip_channels, T)

    ``dilated`` is a causal convolution (the output at time ``t`` sees ``x`` up to ``t`` only)
    with ``gate_channels`` outputs. Gate convention (that of r9y9/wavenet_vocoder):
    ``gate_channels`` must be even; the first half of the dilated convolution's output channels
    goes through tanh, the second half through sigmoid, and the two 1x1 projections ``res`` and
    ``skip`` take the ``gate_channels // 2`` gated channels as input.

    :meth:`forward` runs :func:`fastgen.ops.wavenet_layer`, which computes the layer in one
    pass without materialising the padded input nor the gate activations;
    :meth:`reference_forward` computes the same with plain PyTorch layers.

    Parameters
    ----------
    residual_channels : int
        Channels C_res of the input and of the residual output, >= 1.
    gate_channels : int
        Output channels C_gate of the dilated convolution, even and >= 2 (tanh half, sigmoid half).
    skip_channels : int
        Channels C_skip of the skip output, >= 1.
    kernel_size : int
        Taps K >= 1 of the dilated convolution. Default 2 (the WaveNet paper's).
    dilation : int
        Spacing of the taps, >= 1. The receptive field of the layer is ``(K - 1) * dilation + 1``
        steps.
    cond_channels : int or None
        Channels C_cond of the local conditioning (e.g. upsampled mel features), projected by a
        bias-free 1x1 convolution and added to ``h`` before the gate. None (default): no
        conditioning, and ``forward`` takes no ``cond``.
    bias : bool
        Whether ``dilated``, ``res`` and ``skip`` have biases. Default True.
    device, dtype
        Where and in which dtype the parameters are created, as in ``nn.Conv1d``.

    Attributes
    ----------
    dilated : CausalConv1d
        Weight (C_gate, C_res, K) and bias (C_gate,), initialised as in ``nn.Conv1d``.
    res : nn.Conv1d
        1x1 residual projection, weight (C_res, C_gate // 2, 1) and bias (C_res,).
    skip : nn.Conv1d
        1x1 skip projection, weight (C_skip, C_gate // 2, 1) and bias (C_skip,).
    cond : nn.Conv1d or None
        1x1 conditioning projection, weight (C_gate, C_cond, 1), no bias; None without
        ``cond_channels``.

    Shapes
    ------
    x: (N, C_res, T) or unbatched (C_res, T); cond: (N, C_cond, T) or (C_cond, T), as ``x``;
    outputs: residual_out (N, C_res, T) and skip (N, C_skip, T), or unbatched like ``x``.

    Examples
    --------
    A stack: the residual outputs chain, the skips are summed::

        layers = nn.ModuleList(WaveNetLayer(64, 128, 64, dilation=2 ** i) for i in range(10))
        skips = 0
        for layer in layers:
            x, s = layer(x)
            skips = skips + s
    """

    cond: nn.Conv1d | None

    def __init__(
        self,
        residual_channels: int,
        gate_channels: int,
        skip_channels: int,
        kernel_size: int = 2,
        dilation: int = 1,
        cond_channels: int | None = None,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        _positive_int(residual_channels, "residual_channels")
        _positive_int(gate_channels, "gate_channels")
        if gate_channels % 2:
            raise ValueError(
                "gate_channels must be even (the first half of the dilated convolution's outputs goes "
                f"through tanh, the second through sigmoid), got {gate_channels}"
            )
        _positive_int(skip_channels, "skip_channels")
        _positive_int(kernel_size, "kernel_size")
        _positive_int(dilation, "dilation")
        if cond_channels is not None:
            _positive_int(cond_channels, "cond_channels")
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {bias!r}")
        super().__init__()
        self.residual_channels = residual_channels
        self.gate_channels = gate_channels
        self.skip_channels = skip_channels
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.cond_channels = cond_channels
        factory = dict(device=device, dtype=dtype)
        half = gate_channels // 2
        self.dilated = CausalConv1d(residual_channels, gate_channels, kernel_size, dilation=dilation,
                                    bias=bias, **factory)
        self.res = nn.Conv1d(half, residual_channels, 1, bias=bias, **factory)
        self.skip = nn.Conv1d(half, skip_channels, 1, bias=bias, **factory)
        self.cond = None if cond_channels is None else nn.Conv1d(cond_channels, gate_channels, 1, bias=False,
                                                                 **factory)

    def _inputs(self, x: torch.Tensor, cond: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """Check ``x`` and ``cond`` against the layer; return them batched and whether ``x`` was not."""
        unbatched = _check_unbatched(x, 3, "C_res, T", "WaveNetLayer", self.residual_channels)
        if self.cond is None and cond is not None:
            raise ValueError("cond must be None: this WaveNetLayer was built without cond_channels "
                             "(pass cond_channels=C_cond to the constructor for local conditioning)")
        if self.cond is not None and cond is None:
            raise ValueError(f"cond is required: this WaveNetLayer was built with cond_channels="
                             f"{self.cond_channels}, so forward needs cond of shape "
                             f"(N, {self.cond_channels}, T)")
        if unbatched:
            x = x.unsqueeze(0)
            if isinstance(cond, torch.Tensor) and cond.dim() == 2:
                cond = cond.unsqueeze(0)
        # Blame cond, not the projection weight the op would name.
        if isinstance(cond, torch.Tensor) and cond.dim() == 3 and cond.shape[1] != self.cond_channels:
            raise ValueError(f"cond must have C_cond = {self.cond_channels} channels (dim 1 of (N, C_cond, T)), "
                             f"got shape {tuple(cond.shape)}")
        return x, cond, unbatched

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer, fused: ``(residual_out, skip)`` for ``x`` (N, C_res, T) and ``cond`` (N, C_cond, T).

        Parameters
        ----------
        x : torch.Tensor
            Input (N, C_res, T) or unbatched (C_res, T), dtype and device of the parameters.
        cond : torch.Tensor or None
            Local conditioning (N, C_cond, T) (unbatched (C_cond, T) with an unbatched ``x``);
            required when the layer has ``cond_channels``, refused otherwise.

        Returns
        -------
        tuple[torch.Tensor, torch.Tensor]
            ``residual_out`` (N, C_res, T) and ``skip`` (N, C_skip, T); without the N for an
            unbatched ``x``.
        """
        x, cond, unbatched = self._inputs(x, cond)
        residual, skip = ops.wavenet_layer(
            x, self.dilated.weight, self.dilated.bias, self.res.weight, self.res.bias, self.skip.weight,
            self.skip.bias, dilation=self.dilation, cond=cond,
            w_cond=None if self.cond is None else self.cond.weight,
        )
        if unbatched:
            return residual.squeeze(0), skip.squeeze(0)
        return residual, skip

    def reference_forward(self, x: torch.Tensor, cond: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same as :meth:`forward`, computed step by step with plain PyTorch layers.

        ``F.pad`` + ``F.conv1d`` with ``dilated``'s parameters, ``tanh`` / ``sigmoid`` of the
        two halves, then the ``res`` and ``skip`` ``nn.Conv1d`` modules: what a plain PyTorch
        WaveNet layer with this layout computes. Slower and more memory-hungry than
        :meth:`forward`; for checks and comparisons. Takes and returns what :meth:`forward` does.
        """
        x, cond, unbatched = self._inputs(x, cond)
        pad = (self.kernel_size - 1) * self.dilation
        h = F.conv1d(F.pad(x, (pad, 0)), self.dilated.weight, self.dilated.bias, dilation=self.dilation)
        if self.cond is not None:
            h = h + self.cond(cond)
        half = self.gate_channels // 2
        z = torch.tanh(h[:, :half]) * torch.sigmoid(h[:, half:])
        residual = x + self.res(z)
        skip = self.skip(z)
        if unbatched:
            return residual.squeeze(0), skip.squeeze(0)
        return residual, skip

    @property
    def receptive_field(self) -> int:
        """Time steps of ``x`` that one output step sees: ``(kernel_size - 1) * dilation + 1``."""
        return (self.kernel_size - 1) * self.dilation + 1

    def extra_repr(self) -> str:
        s = (f"residual_channels={self.residual_channels}, gate_channels={self.gate_channels}, "
             f"skip_channels={self.skip_channels}, kernel_size={self.kernel_size}, dilation={self.dilation}")
        if self.cond_channels is not None:
            s += f", cond_channels={self.cond_channels}"
        if self.dilated.bias is None:
            s += ", bias=False"
        return s
