"""Convolutional building blocks shared by the image models (VAE, DCGAN).

Every layer size is derived from the data shape, so one model class serves 8x8 digits,
25x25 faces, 28x28 MNIST and 32x32 CIFAR. Downsampling uses 3x3 convolutions with stride 2
and padding 1 (``h -> ceil(h / 2)``); upsampling uses the matching transposed convolutions
with an ``output_padding`` of 0 or 1 chosen per step, so odd sizes come back exactly (no crop
or interpolation needed).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence

import torch
from torch import nn

MIN_SIZE = 8  # smallest image side the models accept
_MAX_WIDTH_MULT = 4  # channel widths grow x2 per downsampling, capped at hidden * 4


def check_data_shape(data_shape: object) -> tuple[int, int, int]:
    """Validate ``data_shape = (C, H, W)`` and return it as a tuple of ints.

    Raises
    ------
    ValueError
        Naming ``data_shape`` when it is not 3 positive ints or when H or W < 8.
    """
    try:
        dims = tuple(operator.index(d) for d in data_shape)  # type: ignore[union-attr]
    except TypeError:
        raise ValueError(f"data_shape must be 3 ints (C, H, W); got {data_shape!r}") from None
    if len(dims) != 3 or any(isinstance(d, bool) for d in data_shape):  # type: ignore[union-attr]
        raise ValueError(f"data_shape must be 3 ints (C, H, W); got {data_shape!r}")
    c, h, w = dims
    if c < 1:
        raise ValueError(f"data_shape: channels C must be >= 1; got {dims}")
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(f"data_shape: H and W must be >= {MIN_SIZE}; got {dims}")
    return dims


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise ValueError naming ``name`` if it is not one >= minimum."""
    if isinstance(value, bool):  # ValueError throughout: the models' contract for bad arguments
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")  # noqa: TRY004
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}") from None
    if v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {v}")
    return v


def check_latents(z: object, latent_dim: int, name: str = "z") -> None:
    """Raise unless ``z`` is a floating tensor shaped (N, latent_dim)."""
    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (N, {latent_dim}), got "
                        f"{z.dtype if isinstance(z, torch.Tensor) else type(z).__name__}")
    if z.dim() != 2 or z.shape[1] != latent_dim:
        raise ValueError(f"{name}: expected shape (N, {latent_dim}), got {tuple(z.shape)}")


def check_images(x: torch.Tensor, data_shape: tuple[int, int, int], name: str = "x") -> None:
    """Raise ValueError unless ``x`` is a floating tensor shaped (N, *data_shape)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor; got {type(x).__name__}")  # noqa: TRY004
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(data_shape):
        expected = "(N, " + ", ".join(str(d) for d in data_shape) + ")"
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be floating point in [0, 1] (levels / (levels - 1)); got dtype {x.dtype}"
        )


def feature_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """Spatial sizes of the feature maps, full resolution first.

    Halves (rounding up) until the smaller side is <= 4: 8 -> [8, 4]; 25 -> [25, 13, 7, 4];
    28 -> [28, 14, 7, 4]; 32 -> [32, 16, 8, 4].
    """
    sizes = [(h, w)]
    while min(sizes[-1]) > 4:
        hh, ww = sizes[-1]
        sizes.append(((hh + 1) // 2, (ww + 1) // 2))
    return sizes


def widths(hidden: int, steps: int) -> list[int]:
    """Channel width at each resolution: hidden, 2*hidden, ... capped at 4*hidden."""
    return [hidden * min(2**i, _MAX_WIDTH_MULT) for i in range(steps + 1)]


class ConvEncoder(nn.Sequential):
    """Images (N, C, H, W) -> features (N, out_features).

    A 3x3 convolution at full resolution, then one stride-2 3x3 convolution per halving (see
    :func:`feature_sizes`), each followed by ``norm`` (optional) and ``act``; then flatten and a
    linear layer. ``wrap`` (e.g. ``nn.utils.spectral_norm``) is applied to every conv/linear.
    """

    def __init__(
        self,
        data_shape: tuple[int, int, int],
        hidden: int,
        out_features: int,
        *,
        act: type[nn.Module] | None = None,
        norm: bool = False,
        wrap=None,
    ) -> None:
        c, h, w = data_shape
        sizes = feature_sizes(h, w)
        chans = widths(hidden, len(sizes) - 1)
        wrap = wrap or (lambda m: m)
        act = act or nn.SiLU
        layers: list[nn.Module] = [wrap(nn.Conv2d(c, chans[0], 3, padding=1)), act()]
        for cin, cout in itertools.pairwise(chans):
            layers.append(wrap(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=not norm)))
            if norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(act())
        hl, wl = sizes[-1]
        layers += [nn.Flatten(), wrap(nn.Linear(chans[-1] * hl * wl, out_features))]
        super().__init__(*layers)


class ConvDecoder(nn.Sequential):
    """Latents (N, latent_dim) -> maps (N, out_channels, H, W), the mirror of :class:`ConvEncoder`.

    A linear layer to the coarsest feature map, then one 3x3 stride-2 transposed convolution per
    doubling (``output_padding`` 0 or 1 so the size matches :func:`feature_sizes` exactly), each
    followed by BatchNorm (``norm=True``) and ``act``, then a 3x3 convolution to ``out_channels``.
    The output is raw (no final activation).
    """

    def __init__(
        self,
        data_shape: tuple[int, int, int],
        hidden: int,
        latent_dim: int,
        out_channels: int,
        *,
        act: type[nn.Module] | None = None,
        norm: bool = False,
    ) -> None:
        _, h, w = data_shape
        sizes = feature_sizes(h, w)
        chans = widths(hidden, len(sizes) - 1)
        act = act or nn.SiLU
        hl, wl = sizes[-1]
        layers: list[nn.Module] = [nn.Linear(latent_dim, chans[-1] * hl * wl, bias=not norm)]
        layers += [nn.BatchNorm1d(chans[-1] * hl * wl)] if norm else []
        layers += [act(), nn.Unflatten(1, (chans[-1], hl, wl))]
        for i in range(len(sizes) - 1, 0, -1):
            (hs, ws), (ht, wt) = sizes[i], sizes[i - 1]
            pad = (ht - (2 * hs - 1), wt - (2 * ws - 1))  # 0 or 1 each
            layers.append(
                nn.ConvTranspose2d(
                    chans[i], chans[i - 1], 3, stride=2, padding=1, output_padding=pad, bias=not norm
                )
            )
            if norm:
                layers.append(nn.BatchNorm2d(chans[i - 1]))
            layers.append(act())
        layers.append(nn.Conv2d(chans[0], out_channels, 3, padding=1))
        super().__init__(*layers)


def quantize(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Clamp to [0, 1] and round to the nearest of the ``levels`` values k / (levels - 1)."""
    return torch.round(x.clamp(0.0, 1.0) * (levels - 1)) / (levels - 1)


def normal_like(shape: Sequence[int], ref: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``ref``'s device and dtype, drawn from ``generator``."""
    return _draw(torch.randn, shape, ref, generator)


def uniform_like(shape: Sequence[int], ref: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U[0, 1) noise of ``shape`` on ``ref``'s device and dtype, drawn from ``generator``."""
    return _draw(torch.rand, shape, ref, generator)


def _draw(fn, shape, ref: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    # A CPU generator with CUDA parameters: draw on the generator's device, then move.
    dev = ref.device if generator is None else generator.device
    return fn(tuple(shape), generator=generator, device=dev, dtype=ref.dtype).to(ref.device)
