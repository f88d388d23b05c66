"""Glow (Kingma & Dhariwal 2018): L levels of K steps ActNorm -> InvConv1x1 -> coupling."""

from __future__ import annotations

import operator

from torch import nn

from fastgen import nn as fnn
from fastgen.models._conv import check_positive_int
from fastgen.models._flow import PREPROCESSING, FlowModel
from fastgen.ops._checks import check_flag
from fastgen.reference.flows import SCALE_MAPS

COUPLINGS = ("affine", "additive")


def check_image_shape(data_shape: object, squeezes: int) -> tuple[int, int, int]:
    """(C, H, W) of positive ints with H and W divisible by 2**squeezes (each squeeze halves them)."""
    try:
        if any(isinstance(d, bool) for d in data_shape):  # type: ignore[union-attr]
            raise TypeError
        dims = tuple(operator.index(d) for d in data_shape)  # type: ignore[union-attr]
    except TypeError:
        raise ValueError(f"data_shape must be 3 ints (C, H, W), got {data_shape!r}") from None
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"data_shape must be 3 positive ints (C, H, W), got {data_shape!r}")
    # compare bit lengths first: 2**squeezes is never built for an absurd count
    if squeezes >= max(dims[1:]).bit_length() or dims[1] % (1 << squeezes) or dims[2] % (1 << squeezes):
        raise ValueError(f"data_shape: H and W must be divisible by 2**{squeezes} (one squeeze by 2 per level), "
                         f"got {dims}")
    return dims


class Glow(FlowModel):
    """Multi-scale Glow for images in [0, 1].

    Each level: squeeze (space-to-depth by 2), then ``steps_per_level`` steps of ActNorm ->
    invertible 1x1 convolution -> coupling (channel mask, conditioner conv3x3 -> conv1x1 ->
    conv3x3 zero-initialised), then (except after the last level) a split that factors out
    half the channels under a learned conditional Gaussian prior.

    Parameters
    ----------
    data_shape : tuple of 3 ints
        (C, H, W); H and W divisible by ``2 ** num_levels``.
    levels : int
        Intensity levels of the discrete data: 17 (default) for the embedded digits, the default
        ``data_shape``; 256 for 8-bit images.
    num_levels, steps_per_level, hidden_channels : int
        L, K and the conditioner width.
    coupling : {"affine", "additive"}
    scale, clamp :
        Log-scale map of the affine coupling. Default the bounded "tanh_clamp": Glow's
        "sigmoid" bounds the forward scale only, and sampling through its inverse (a division
        by sigmoid) overflowed to inf within 9 epochs on the digits; "tanh_clamp" bounds both
        directions by exp(clamp) per coupling.
    lu : bool
        LU-parameterised 1x1 convolutions.
    learned_prior : bool
        Learned conditional prior of the factored-out halves.
    preprocessing : {"shift", "logit", "none"}
        Fixed map applied first (Glow: x - 1/2).
    dropout : float
        Dropout inside the conditioners (regularises small datasets; off in eval mode).

    Shapes
    ------
    x: (N, C, H, W); ``log_prob`` and ``bits_per_dim``: (N,).
    """

    def __init__(self, data_shape: tuple[int, int, int] = (1, 8, 8), levels: int = 17, *, num_levels: int = 2,
                 steps_per_level: int = 8, hidden_channels: int = 64, coupling: str = "affine",
                 scale: str = "tanh_clamp", clamp: float = 2.0, lu: bool = True, learned_prior: bool = True,
                 preprocessing: str = "shift", dropout: float = 0.0) -> None:
        super().__init__()
        self.num_levels = check_positive_int(num_levels, "num_levels")
        self.steps_per_level = check_positive_int(steps_per_level, "steps_per_level")
        self.hidden_channels = check_positive_int(hidden_channels, "hidden_channels")
        self.data_shape = check_image_shape(data_shape, self.num_levels)
        self.levels = check_positive_int(levels, "levels", minimum=2)
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
        if scale not in SCALE_MAPS:
            raise ValueError(f"scale must be one of {SCALE_MAPS}, got {scale!r}")
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {preprocessing!r}")
        self.coupling, self.scale, self.clamp = coupling, scale, float(clamp)
        self.lu, self.learned_prior = check_flag(lu, "lu"), check_flag(learned_prior, "learned_prior")
        self.preprocessing = preprocessing
        self.dropout = float(dropout)
        layers: list[nn.Module] = []
        c = self.data_shape[0]
        for level in range(self.num_levels):
            layers.append(fnn.Squeeze())
            c *= 4
            for _ in range(self.steps_per_level):
                layers += [fnn.ActNorm(c), fnn.InvConv1x1(c, lu=self.lu), self._coupling(c)]
            if level < self.num_levels - 1:
                layers.append(fnn.Split(c, learned_prior=self.learned_prior))
                c -= c // 2
        self.layers = nn.ModuleList(layers)

    def _coupling(self, c: int) -> nn.Module:
        if self.coupling == "additive":
            return fnn.AdditiveCoupling(c, hidden_channels=self.hidden_channels, dropout=self.dropout)
        return fnn.AffineCoupling(c, hidden_channels=self.hidden_channels, scale=self.scale, clamp=self.clamp,
                                  dropout=self.dropout)

    def config(self) -> dict:
        """Constructor kwargs: ``Glow(**model.config())`` rebuilds the architecture."""
        return dict(data_shape=self.data_shape, levels=self.levels, num_levels=self.num_levels,
                    steps_per_level=self.steps_per_level, hidden_channels=self.hidden_channels,
                    coupling=self.coupling, scale=self.scale, clamp=self.clamp, lu=self.lu,
                    learned_prior=self.learned_prior, preprocessing=self.preprocessing, dropout=self.dropout)
