"""RealNVP (Dinh et al. 2017) for images (multi-scale, checkerboard and channel masks) and for
vectors (e.g. 2-D toy densities such as two moons)."""

from __future__ import annotations

import operator

from torch import nn

from fastgen import nn as fnn
from fastgen.models._conv import check_positive_int
from fastgen.models._flow import PREPROCESSING, FlowModel
from fastgen.models.glow import check_image_shape
from fastgen.reference.flows import SCALE_MAPS


class RealNVP(FlowModel):
    """RealNVP for images (``data_shape = (C, H, W)``) or vectors (``data_shape = (D,)``).

    Images: each scale but the last has 3 checkerboard couplings (alternating parity), a
    squeeze, 3 channel couplings (alternating), and a split that factors out half the
    channels; the last scale has 4 checkerboard couplings. Every coupling is followed by an
    ActNorm (the role batch normalisation plays in the paper, without batch statistics).
    Vectors: ``num_layers`` channel couplings with MLP conditioners, alternating which half is
    transformed, each followed by an ActNorm.

    Parameters
    ----------
    data_shape : tuple of ints or int
        (C, H, W) with H and W divisible by ``2 ** (num_scales - 1)``, or (D,) (or D) with D >= 2.
    levels : int or None
        Intensity levels of discrete images (for ``bits_per_dim``): 17 (default) for the embedded
        digits, the default ``data_shape``; 256 for 8-bit images. Ignored (None) for vectors.
    num_scales : int
        Scales of the image model.
    num_layers : int
        Couplings of the vector model.
    hidden_channels : int
        Conditioner width.
    scale, clamp :
        Log-scale map of the couplings (default the bounded "tanh_clamp").
    preprocessing : {"logit", "shift", "none"} or None
        Fixed first map; None picks "logit" for images and "none" for vectors.
    dropout : float
        Dropout inside the conditioners (regularises small datasets; off in eval mode).
    """

    def __init__(self, data_shape: tuple[int, ...] = (1, 8, 8), levels: int | None = 17, *, num_scales: int = 2,
                 num_layers: int = 8, hidden_channels: int = 64, scale: str = "tanh_clamp", clamp: float = 2.0,
                 preprocessing: str | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if isinstance(data_shape, int) and not isinstance(data_shape, bool):
            data_shape = (data_shape,)  # RealNVP(2): vectors of 2
        try:
            shape = tuple(operator.index(d) for d in data_shape)  # type: ignore[union-attr]
        except TypeError:
            raise ValueError(f"data_shape must be (C, H, W) or (D,), got {data_shape!r}") from None
        self.vector = len(shape) == 1
        self.num_scales = check_positive_int(num_scales, "num_scales")
        self.num_layers = check_positive_int(num_layers, "num_layers")
        self.hidden_channels = check_positive_int(hidden_channels, "hidden_channels")
        if self.vector:
            if shape[0] < 2:
                raise ValueError(f"data_shape: vectors need D >= 2 to couple, got {shape}")
            self.data_shape = shape
        else:
            self.data_shape = check_image_shape(shape, self.num_scales - 1)
        # Vectors are continuous data: no levels, whatever was passed (bits_per_dim is for images).
        self.levels = None if levels is None or self.vector else check_positive_int(levels, "levels", minimum=2)
        if scale not in SCALE_MAPS:
            raise ValueError(f"scale must be one of {SCALE_MAPS}, got {scale!r}")
        self.scale, self.clamp, self.dropout = scale, float(clamp), float(dropout)
        preprocessing = preprocessing or ("none" if self.vector else "logit")
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {preprocessing!r}")
        self.preprocessing = preprocessing
        self.layers = nn.ModuleList(self._vector_layers() if self.vector else self._image_layers())

    def _affine(self, c: int, mask: str, parity: int, vector: bool = False) -> list[nn.Module]:
        return [fnn.AffineCoupling(c, mask=mask, parity=parity, hidden_channels=self.hidden_channels,
                                   scale=self.scale, clamp=self.clamp, vector=vector, dropout=self.dropout),
                fnn.ActNorm(c)]

    def _vector_layers(self) -> list[nn.Module]:
        d = self.data_shape[0]
        return [m for i in range(self.num_layers) for m in self._affine(d, "channel", i % 2, vector=True)]

    def _image_layers(self) -> list[nn.Module]:
        layers: list[nn.Module] = []
        c = self.data_shape[0]
        for s in range(self.num_scales):
            if s == self.num_scales - 1:
                layers += [m for i in range(4) for m in self._affine(c, "checkerboard", i % 2)]
                break
            layers += [m for i in range(3) for m in self._affine(c, "checkerboard", i % 2)]
            layers.append(fnn.Squeeze())
            c *= 4
            layers += [m for i in range(3) for m in self._affine(c, "channel", i % 2)]
            layers.append(fnn.Split(c))
            c -= c // 2
        return layers

    def config(self) -> dict:
        """Constructor kwargs: ``RealNVP(**model.config())`` rebuilds the architecture."""
        return dict(data_shape=self.data_shape, levels=self.levels, num_scales=self.num_scales,
                    num_layers=self.num_layers, hidden_channels=self.hidden_channels, scale=self.scale,
                    clamp=self.clamp, preprocessing=self.preprocessing, dropout=self.dropout)
