"""Coupling layers: half of the input conditions an elementwise transform of the other half.

``forward(x) -> (y, logdet)`` runs the density direction x -> z; ``inverse(y) -> (x, logdet)``
its exact inverse (logdet of that direction, i.e. the negative). The transform and its
log-determinant are one fused op (:func:`fastgen.ops.affine_coupling`,
:func:`fastgen.ops.additive_coupling`); the conditioner is any ``nn.Module`` you pass.

Masks
-----
``"channel"``: the channels are split into a conditioning part and a transformed part
(``parity`` says which half is transformed). Works for images (N, C, H, W) and vectors (N, D).
``"checkerboard"`` (images): the pixels with ``(h + w) % 2 == parity`` condition the others;
the conditioner sees the masked input and its outputs on conditioning pixels are ignored.
"""

from __future__ import annotations

import torch
from torch import nn

from fastgen import ops
from fastgen.nn._dtypes import in_layer_dtype
from fastgen.ops._dispatch import accumulation_dtype
from fastgen.ops.conditioner import kernel_runs
from fastgen.ops.flows import check_clamp
from fastgen.reference.flows import SCALE_MAPS

MASKS = ("channel", "checkerboard")


def _zero_last(module: nn.Module) -> nn.Module:
    """Zero the weights and bias of the last conv/linear layer: the coupling starts as the identity."""
    last = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
    nn.init.zeros_(last.weight)
    if last.bias is not None:
        nn.init.zeros_(last.bias)
    return module


def _dropout(p: float) -> list[nn.Module]:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    return [nn.Dropout(p)] if p > 0 else []


# The layer sequences ConvConditioner builds (without and with dropout), which the op computes.
_FUSABLE_LAYOUTS = ([nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.Conv2d],
                    [nn.Conv2d, nn.ReLU, nn.Dropout, nn.Conv2d, nn.ReLU, nn.Dropout, nn.Conv2d])


def _same_padded(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` is a plain square odd-kernel convolution with "same" zero padding."""
    k = conv.kernel_size
    return (k[0] == k[1] and k[0] % 2 == 1 and conv.padding == (k[0] // 2, k[0] // 2) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


class ConvConditioner(nn.Sequential):
    """Glow's conditioner network, conv 3x3 -> ReLU -> conv 1x1 -> ReLU -> conv 3x3 (with
    optional dropout after each ReLU), run as one fused op.

    An ``nn.Sequential`` of those layers (same parameter names as the plain Sequential, so state
    dicts carry over), whose forward calls :func:`fastgen.ops.conv_conditioner` with the three
    convolutions' parameters (and, while training, the dropout probability): on the CPU one
    kernel forward and one backward instead of six library convolutions. It runs layer by layer
    instead under autocast (whose per-layer dtype choices the op does not make), when its layers
    were edited into something else, and with live dropout where the op's kernel does not run
    (CUDA, wide inputs), so that nn.Dropout draws the masks on the device.

    Shapes
    ------
    x: (N, in_channels, H, W) -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 64,
                 dropout: float = 0.0) -> None:
        super().__init__(
            nn.Conv2d(in_channels, hidden_channels, 3, padding=1), nn.ReLU(), *_dropout(dropout),
            nn.Conv2d(hidden_channels, hidden_channels, 1), nn.ReLU(), *_dropout(dropout),
            nn.Conv2d(hidden_channels, out_channels, 3, padding=1))

    def _fused_dropout(self) -> float | None:
        """The dropout probability to hand the op (0 in eval mode), or None if the layers are no
        longer the ones this class builds (then they run one by one)."""
        if [type(m) for m in self] not in _FUSABLE_LAYOUTS:
            return None
        convs = [m for m in self if isinstance(m, nn.Conv2d)]
        if not all(_same_padded(c) for c in convs) or convs[1].kernel_size != (1, 1):
            return None
        drops = {m.p for m in self if isinstance(m, nn.Dropout)}
        if len(drops) > 1:
            return None
        return drops.pop() if drops and self.training else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dropout = self._fused_dropout()
        # Under autocast, and with dropout where the kernel does not run (the op's reference would
        # draw its masks on the host), the layers run one by one.
        if dropout is None or torch.is_autocast_enabled(x.device.type) or (dropout > 0 and not kernel_runs(x)):
            return super().forward(x)
        c1, c2, c3 = (m for m in self if isinstance(m, nn.Conv2d))
        return ops.conv_conditioner(x, c1.weight, c1.bias, c2.weight, c2.bias, c3.weight, c3.bias, dropout=dropout)


def conv_conditioner(in_channels: int, out_channels: int, hidden_channels: int = 64,
                     dropout: float = 0.0) -> ConvConditioner:
    """Glow's conditioner (:class:`ConvConditioner`) with its last convolution zero-initialised,
    so the coupling starts as the identity."""
    return _zero_last(ConvConditioner(in_channels, out_channels, hidden_channels, dropout))


def mlp_conditioner(in_features: int, out_features: int, hidden_features: int = 64,
                    dropout: float = 0.0) -> nn.Sequential:
    """Conditioner for vectors: Linear -> ReLU -> Linear -> ReLU -> Linear (zero-initialised)."""
    return _zero_last(nn.Sequential(
        nn.Linear(in_features, hidden_features), nn.ReLU(), *_dropout(dropout),
        nn.Linear(hidden_features, hidden_features), nn.ReLU(), *_dropout(dropout),
        nn.Linear(hidden_features, out_features)))


def _check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value  # type: ignore[return-value]


class _Coupling(nn.Module):
    """Mask bookkeeping shared by the affine and additive couplings."""

    def __init__(self, num_channels: int, mask: str, parity: int, conditioner: nn.Module | None,
                 hidden_channels: int, params_per_channel: int, vector: bool, dropout: float) -> None:
        super().__init__()
        if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 1:
            raise ValueError(f"num_channels must be an int >= 1, got {num_channels!r}")
        self.num_channels = num_channels
        self.mask = _check_choice(mask, "mask", MASKS)
        if isinstance(parity, bool) or not isinstance(parity, int) or parity not in (0, 1):
            raise ValueError(f"parity must be 0 or 1, got {parity!r}")
        self.parity = parity
        self.vector = bool(vector)
        if self.vector and mask == "checkerboard":
            raise ValueError('mask="checkerboard" needs images (N, C, H, W): use mask="channel" for vectors')
        if mask == "channel":
            if num_channels < 2:
                raise ValueError(f'mask="channel" needs num_channels >= 2, got {num_channels}')
            first = num_channels // 2
            # parity 0: the first half conditions the second; parity 1: the other way round.
            self.cond_channels = first if parity == 0 else num_channels - first
        else:
            self.cond_channels = num_channels
        self.out_channels = num_channels - self.cond_channels if mask == "channel" else num_channels
        if conditioner is None:
            make = mlp_conditioner if self.vector else conv_conditioner
            conditioner = make(self.cond_channels, params_per_channel * self.out_channels, hidden_channels, dropout)
        elif not isinstance(conditioner, nn.Module):
            raise TypeError(f"conditioner must be an nn.Module (or None for the default), "
                            f"got {type(conditioner).__name__}")
        self.conditioner = conditioner

    def _check(self, x: torch.Tensor, name: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        rank = 2 if self.vector else 4
        layout = "(N, D)" if self.vector else "(N, C, H, W)"
        if x.dim() != rank or x.shape[1] != self.num_channels:
            raise ValueError(f"{name} must have shape {layout} with {self.num_channels} channels, "
                             f"got {tuple(x.shape)}")

    def _halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditioning part, transformed part) for the channel mask."""
        first = self.num_channels // 2
        a, b = x[:, :first], x[:, first:]
        return (a, b) if self.parity == 0 else (b, a)

    def _join(self, cond: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
        return torch.cat((cond, moved) if self.parity == 0 else (moved, cond), dim=1)

    def _board(self, x: torch.Tensor) -> torch.Tensor:
        """1 on the conditioning pixels ((h + w) % 2 == parity), shape (1, 1, H, W), dtype of x."""
        h, w = x.shape[2], x.shape[3]
        ij = torch.arange(h, device=x.device)[:, None] + torch.arange(w, device=x.device)[None, :]
        return ((ij % 2) == self.parity).to(x.dtype)[None, None]

    def _params(self, cond_input: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        out = self.conditioner(cond_input)
        # Under autocast the conditioner may run in bfloat16/float16: the flow path stays in x's dtype.
        return out.to(like.dtype)

    def _run(self, x: torch.Tensor, reverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Checks x, then the subclass's ``_transform(x, reverse) -> (y, logdet)``."""
        self._check(x, "y" if reverse else "x")
        return in_layer_dtype(lambda h: self._transform(h, reverse), x, self.conditioner)

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}, mask={self.mask!r}, parity={self.parity}"


class AffineCoupling(_Coupling):
    """Affine coupling (RealNVP, Glow): ``y_b = x_b * exp(s) + t`` with (t, s) = conditioner(x_a).

    Parameters
    ----------
    num_channels : int
        C of (N, C, H, W) images, or D of (N, D) vectors (with ``vector=True``).
    mask : {"channel", "checkerboard"}
        Which elements condition the others (see the module docstring).
    parity : {0, 1}
        Which half is transformed; alternate it between consecutive couplings.
    conditioner : nn.Module, optional
        Maps the conditioning input to 2 * C_out channels: the first C_out are the shift t,
        the last C_out the raw log-scale (the nflows order). For the channel mask, C_in is the
        conditioning half's size and C_out the transformed half's; for the checkerboard mask
        both are C. Default: :func:`conv_conditioner` (images) or :func:`mlp_conditioner`
        (vectors) with ``hidden_channels``, zero-initialised so the layer starts as the identity.
    hidden_channels : int
        Width of the default conditioner.
    dropout : float
        Dropout after each hidden ReLU of the default conditioner (0 = none).
    scale, clamp :
        The log-scale map of :func:`fastgen.ops.affine_coupling` ("tanh_clamp", "sigmoid" or "exp").
    vector : bool
        Inputs are (N, D) vectors instead of images.
    """

    def __init__(self, num_channels: int, mask: str = "channel", *, parity: int = 0,
                 conditioner: nn.Module | None = None, hidden_channels: int = 64, scale: str = "tanh_clamp",
                 clamp: float = 2.0, vector: bool = False, dropout: float = 0.0) -> None:
        super().__init__(num_channels, mask, parity, conditioner, hidden_channels, 2, vector, dropout)
        self.scale = _check_choice(scale, "scale", SCALE_MAPS)
        self.clamp = check_clamp(clamp)

    def _transform(self, x: torch.Tensor, reverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mask == "channel":
            cond, moved = self._halves(x)
            shift, raw = self._params(cond, x).chunk(2, dim=1)
            moved, logdet = ops.affine_coupling(moved, shift.contiguous(), raw.contiguous(), reverse=reverse,
                                                scale=self.scale, clamp=self.clamp)
            return self._join(cond, moved), logdet
        board = self._board(x)
        shift, raw = self._params(x * board, x).chunk(2, dim=1)
        free = 1.0 - board
        # On conditioning pixels: t = 0 and a raw value whose log-scale is exactly 0, so the
        # fused op leaves them unchanged and they add nothing to the log-determinant.
        raw_fixed = 1e4 if self.scale == "sigmoid" else 0.0
        raw = torch.where(board.bool(), torch.full_like(raw, raw_fixed), raw)
        return ops.affine_coupling(x, shift * free, raw, reverse=reverse, scale=self.scale, clamp=self.clamp)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (y, logdet (N,))."""
        return self._run(x, reverse=False)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y -> (x, logdet (N,)) of the inverse map."""
        return self._run(y, reverse=True)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", scale={self.scale!r}" + (
            f", clamp={self.clamp}" if self.scale == "tanh_clamp" else "")


class AdditiveCoupling(_Coupling):
    """Additive (NICE) coupling: ``y_b = x_b + t`` with t = conditioner(x_a); log-determinant 0.

    Same arguments as :class:`AffineCoupling` except ``scale``/``clamp``; the conditioner maps
    to C_out channels (the shift).
    """

    def __init__(self, num_channels: int, mask: str = "channel", *, parity: int = 0,
                 conditioner: nn.Module | None = None, hidden_channels: int = 64, vector: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__(num_channels, mask, parity, conditioner, hidden_channels, 1, vector, dropout)

    def _transform(self, x: torch.Tensor, reverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(x.shape[0], dtype=accumulation_dtype(x.dtype))
        if self.mask == "channel":
            cond, moved = self._halves(x)
            shift = self._params(cond, x)
            return self._join(cond, ops.additive_coupling(moved, shift, reverse=reverse)), logdet
        board = self._board(x)
        shift = self._params(x * board, x) * (1.0 - board)
        return ops.additive_coupling(x, shift, reverse=reverse), logdet

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (y, zeros (N,))."""
        return self._run(x, reverse=False)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y -> (x, zeros (N,))."""
        return self._run(y, reverse=True)
