"""Gated PixelCNN (van den Oord et al. 2016) with cached (Fast PixelCNN++) sampling."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.models import _autoregressive as ar
from fastgen.models._discrete import image_levels
from fastgen.models._modes import evaluating
from fastgen.nn import GatedPixelCNNLayer
from fastgen.ops import _dispatch
from fastgen.ops.pixelcnn_generate import KERNEL_DTYPES as PIXELCNN_ROW_DTYPES
from fastgen.ops.pixelcnn_generate import pixelcnn_generate_row, row_sampler_limits
from fastgen.ops.pixelcnn_step import gated_pixelcnn_horizontal_step, gated_pixelcnn_vertical_step
from fastgen.reference import steps as reference_steps

__all__ = ["PixelCNN"]

_log = logging.getLogger(__name__)


def _check_shape(data_shape: object) -> tuple[int, int, int]:
    if (not isinstance(data_shape, (tuple, list)) or len(data_shape) != 3
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in data_shape)):
        raise ValueError(f"data_shape must be (C, H, W) of positive ints, got {data_shape!r}")
    return tuple(data_shape)  # type: ignore[return-value]


class PixelCNN(nn.Module):
    """Gated PixelCNN on images with ``levels`` intensity levels, exact likelihood, fast sampling.

    A first Gated PixelCNN layer with mask "A" (``first_kernel_size``) takes the image on both
    stacks; ``num_layers - 1`` layers with mask "B" (``kernel_size``) follow; the horizontal
    stack's output goes through ReLU - 1x1 conv - ReLU - 1x1 conv to the output distribution
    of every sub-pixel: ``levels`` logits ("categorical") or a discretized logistic mixture
    ("logistic_mixture", PixelCNN++). The channels of one pixel are conditionally independent
    given the pixels before it (each sub-pixel sees the previous pixels, not the other channels
    of its own pixel), so the model is exactly normalised for any number of channels.

    Parameters
    ----------
    data_shape : tuple of int
        (C, H, W) of the images. Default (1, 8, 8), the embedded digits.
    levels : int
        Intensity levels (17 for the digits, 256 for 8-bit images). Default 17.
    channels : int
        Channels of both stacks. Default 64.
    num_layers : int
        Gated layers, >= 1 (the first has mask "A"). Default 8.
    kernel_size, first_kernel_size : int
        Odd filter sizes of the mask-"B" layers and of the first layer. Defaults 3 and 7.
    output : {"categorical", "logistic_mixture"}
        The per-sub-pixel distribution. Default "categorical".
    mixtures : int
        Components of the logistic mixture. Default 5.
    num_classes : int or None
        When given, the model is class-conditional: a one-hot label conditions every layer,
        and ``log_prob``, ``sample`` take ``y``.
    head_channels : int or None
        Width of the output head's hidden 1x1 convolution; default ``2 * channels``.

    Shapes
    ------
    x: (N, C, H, W) floats in [0, 1] on the grid k / (levels - 1); y: (N,) int64 labels.
    """

    def __init__(
        self,
        data_shape: tuple[int, int, int] = (1, 8, 8),
        levels: int = 17,
        *,
        channels: int = 64,
        num_layers: int = 8,
        kernel_size: int = 3,
        first_kernel_size: int = 7,
        output: str = "categorical",
        mixtures: int = 5,
        num_classes: int | None = None,
        head_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.data_shape = _check_shape(data_shape)
        ar.check_levels(levels)
        ar.check_count(channels, "channels")
        ar.check_count(num_layers, "num_layers")
        for value, name in ((kernel_size, "kernel_size"), (first_kernel_size, "first_kernel_size")):
            if ar.check_count(value, name) % 2 == 0:
                raise ValueError(f"{name} must be odd, got {value}")
        ar.check_output(output, mixtures)
        if num_classes is not None:
            ar.check_count(num_classes, "num_classes")
        head_channels = 2 * channels if head_channels is None else ar.check_count(head_channels, "head_channels")
        self.levels, self.output, self.mixtures, self.num_classes = levels, output, mixtures, num_classes
        self._config = dict(data_shape=tuple(data_shape), levels=levels, channels=channels, num_layers=num_layers,
                            kernel_size=kernel_size, first_kernel_size=first_kernel_size, output=output,
                            mixtures=mixtures, num_classes=num_classes, head_channels=head_channels)
        c_img = self.data_shape[0]
        self.layers = nn.ModuleList(
            [GatedPixelCNNLayer(c_img, channels, first_kernel_size, mask_type="A", cond_features=num_classes)]
            + [GatedPixelCNNLayer(channels, channels, kernel_size, cond_features=num_classes)
               for _ in range(num_layers - 1)])
        self.params_per_dim = ar.params_per_dim(output, levels, mixtures)
        self.head_hidden = nn.Conv2d(channels, head_channels, 1)
        self.head_out = nn.Conv2d(head_channels, c_img * self.params_per_dim, 1)

    def config(self) -> dict[str, Any]:
        """Constructor kwargs, to rebuild the model from a checkpoint."""
        return dict(self._config)

    @property
    def dims(self) -> int:
        return math.prod(self.data_shape)

    # ------------------------------------------------------------------ density
    def _check_x(self, x: object) -> torch.Tensor:
        """Images as floats k / (levels - 1) in [0, 1], or as integer levels k (uint8 data, say);
        both come back as floats in the dtype of the model's parameters."""
        if not isinstance(x, torch.Tensor) or x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"x must be a tensor of images (floats in [0, 1] or integer levels), got "
                            f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.dim() != 4 or tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"x must have shape (N, {', '.join(map(str, self.data_shape))}), got {tuple(x.shape)}")
        dtype = next(self.parameters()).dtype
        if not x.is_floating_point():
            return image_levels(x, self.levels).to(dtype) / (self.levels - 1)
        return x.to(dtype)  # float64 images through a float32 model, as the flows take them

    @staticmethod
    def _network_input(x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> [-1, 1]: centred inputs (zero is also the padding outside the image)."""
        return 2.0 * x - 1.0

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        return self.head_out(F.relu(self.head_hidden(F.relu(h))))

    def _params(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Output parameters (N, C, H, W, P) for images x in [0, 1]."""
        v = h = self._network_input(x)
        for layer in self.layers:
            v, h = layer(v, h, cond)
        n, c, height, width = x.shape
        return self._head(h).view(n, c, self.params_per_dim, height, width).permute(0, 1, 3, 4, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Output parameters (N, C, H, W, P): P = levels logits, or 3 * mixtures mixture parameters."""
        x = self._check_x(x)
        return self._params(x, ar.class_one_hot(y, x.shape[0], self.num_classes, x.device, x.dtype))

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log-likelihood (nats) of the discrete images ``x`` (N, C, H, W): shape (N,).
        ``x`` holds floats k / (levels - 1) in [0, 1] or the integer levels k themselves."""
        x = self._check_x(x)
        params = self.forward(x, y)
        target = image_levels(x, self.levels)
        return ar.log_prob_of(params, target, self.output, self.levels).flatten(1).sum(1)

    def bits_per_dim(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """-log2 p(x) / (C H W) per image, (N,): the discrete likelihood, no dequantization term."""
        return -self.log_prob(x, y) / (self.dims * math.log(2.0))

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, *, y: torch.Tensor | int | None = None, method: str = "cached",
               uniforms: torch.Tensor | None = None, generator: torch.Generator | None = None,
               fused: bool | None = None) -> torch.Tensor:
        """Draw ``n`` images in raster order, (n, C, H, W) in [0, 1] on the level grid.

        Parameters
        ----------
        n : int
            Number of images.
        y : torch.Tensor or int or None
            Labels (n,) (or one int for all) of a class-conditional model; None otherwise.
        method : {"cached", "naive"}
            "cached" (default): each layer keeps row caches, so a pixel costs one position per
            layer (and each completed row one row of vertical-stack work). "naive": the whole
            network runs again for every pixel; the reference.
        uniforms : torch.Tensor or None
            The randomness, one uniform per draw, shape (n, C, H, W): sub-pixel (c, i, j) takes
            the first level whose cumulative probability exceeds ``uniforms[:, c, i, j]``. With
            the same uniforms both methods return the same images. Default: drawn from
            ``generator``.
        generator : torch.Generator or None
            Source of the uniforms when they are not given (unused when they are).
        fused : bool or None
            For "cached": draw each image row in one call (:func:`fastgen.ops.pixelcnn_generate_row`:
            every layer's pixel step, the head and the draw, pixel by pixel) instead of one
            step-op call per layer and pixel. None (default): fused where it is available
            (categorical output, float32/float64; the C++ kernel on the CPU, a Triton kernel on
            CUDA for standard stacks), else the step ops, with a log line saying why.
            True where it is not available raises.
        """
        ar.check_count(n)
        ar.check_method(method, fused=fused)
        param = self.head_out.weight
        c, height, width = self.data_shape
        u = ar.uniforms_for(uniforms, (n, c, height, width), param.device, param.dtype, generator)
        cond = ar.class_one_hot(y, n, self.num_classes, param.device, param.dtype)
        with evaluating(self):
            if method == "naive":
                return self._sample_naive(u, cond)
            fused_rows = ar.use_fused(fused, self._why_not_fused(u), "fused row sampler", "PixelCNN.sample", _log)
            return self._sample_cached(u, cond, fused_rows)

    def _draw(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Values in [0, 1] for params (N, C, P) and uniforms (N, C)."""
        index = ar.draw(params, u, self.output, self.levels)
        return index.to(params.dtype) / (self.levels - 1)

    def _sample_naive(self, u: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        x = torch.zeros_like(u)
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                params = self._params(x, cond)[:, :, i, j]
                x[:, :, i, j] = self._draw(params, u[:, :, i, j])
        return x

    def _sample_cached(self, u: torch.Tensor, cond: torch.Tensor | None, fused_rows: bool) -> torch.Tensor:
        n, c_img, height, width = u.shape
        kernels = _dispatch.use_kernel("gated_pixelcnn_horizontal_step", u)
        horizontal = gated_pixelcnn_horizontal_step if kernels else _reference_horizontal
        vertical = gated_pixelcnn_vertical_step if kernels else _reference_vertical
        weights = [_layer_weights(layer) for layer in self.layers]
        v_states = [u.new_zeros(n, w["w_v"].shape[1], w["w_v"].shape[2], width) for w in weights]
        h_states = [u.new_zeros(n, w["w_h"].shape[1], w["w_h"].shape[3]) for w in weights]
        # Above row 0 the vertical stack is zero, so the link is its bias.
        links = [_initial_link(w, n, width, u) for w in weights]
        x = torch.zeros_like(u)
        image = self._network_input(x)
        # What every fused row call takes besides the row's links and uniforms (built once).
        row_weights = ([w["w_h"] for w in weights], [w["b_h"] for w in weights], [w["w_res"] for w in weights],
                       [w["b_res"] for w in weights], [layer.mask_type for layer in self.layers],
                       self.head_hidden.weight, self.head_hidden.bias, self.head_out.weight, self.head_out.bias)
        row_options = dict(levels=self.levels, cond=cond,
                           w_cond_h=[w["w_cond_h"] for w in weights] if cond is not None else None)
        for i in range(height):
            if fused_rows:  # the whole row in one call (the same draws as the loop below)
                levels = pixelcnn_generate_row(links, u[:, :, i], *row_weights, **row_options)
                x[:, :, i] = levels.to(x.dtype) / (self.levels - 1)
                image[:, :, i] = self._network_input(x[:, :, i])
            else:  # every layer stepped per pixel
                for state in h_states:
                    state.zero_()
                for j in range(width):
                    # Layer 0 (mask "A") sees the row up to the pixel before j; zeros at column 0.
                    h = image[:, :, i, j - 1] if j > 0 else image.new_zeros(n, c_img)
                    for layer, w, state, link in zip(self.layers, weights, h_states, links):
                        if kernels and i + j > 0:  # checked at the first pixel; the kernel still checks shapes
                            h = torch.ops.fastgen.gated_pixelcnn_horizontal_step(
                                state, h, link[:, :, j], w["w_h"], w["b_h"], w["w_res"], w["b_res"], layer.mask_type,
                                cond, w["w_cond_h"])
                        else:
                            h = horizontal(state, h, link[:, :, j], w["w_h"], w["b_h"], w["w_res"], w["b_res"],
                                           mask_type=layer.mask_type, cond=cond, w_cond_h=w["w_cond_h"])
                    hidden = ar.head_on_vectors(self.head_hidden, self.head_out, h)
                    x[:, :, i, j] = self._draw(hidden.view(n, c_img, self.params_per_dim), u[:, :, i, j])
                    image[:, :, i, j] = self._network_input(x[:, :, i, j])
            row = image[:, :, i]
            for index, (w, state) in enumerate(zip(weights, v_states)):
                row, links[index] = vertical(state, row, w["w_v"], w["b_v"], w["w_v2h"], w["b_v2h"], cond=cond,
                                             w_cond_v=w["w_cond_v"])
        return x

    def _why_not_fused(self, u: torch.Tensor) -> str | None:
        """Why the fused row sampler (pixelcnn_generate_row) cannot sample this model here, or None."""
        if self.output != "categorical":
            return f"the fused row sampler draws from a categorical output, not {self.output!r}"
        if u.dtype not in PIXELCNN_ROW_DTYPES:
            return f"the fused row sampler runs float32 and float64 models, not {u.dtype}"
        if not _dispatch.use_kernel("pixelcnn_generate_row", u):
            return f"no fused row sampler kernel for {u.device.type}"
        return row_sampler_limits(u.device, [layer.horizontal.weight for layer in self.layers],
                                  [layer.mask_type for layer in self.layers], self.head_hidden.weight.shape[0],
                                  self.levels)

    def extra_repr(self) -> str:
        cfg = self._config
        return (f"data_shape={cfg['data_shape']}, levels={self.levels}, channels={cfg['channels']}, "
                f"num_layers={cfg['num_layers']}, output={self.output!r}")


def _layer_weights(layer: GatedPixelCNNLayer) -> dict[str, torch.Tensor | None]:
    """The tensors of one layer in the step ops' layout (1x1 weights as matrices)."""
    return dict(w_v=layer.vertical.weight, b_v=layer.vertical.bias, w_h=layer.horizontal.weight,
                b_h=layer.horizontal.bias, w_v2h=layer.link.weight.flatten(1), b_v2h=layer.link.bias,
                w_res=layer.out.weight.flatten(1), b_res=layer.out.bias,
                w_cond_v=None if layer.cond_v is None else layer.cond_v.weight,
                w_cond_h=None if layer.cond_h is None else layer.cond_h.weight)


def _initial_link(w: dict[str, torch.Tensor | None], n: int, width: int, like: torch.Tensor) -> torch.Tensor:
    link = like.new_zeros(n, w["w_v2h"].shape[0], width)
    if w["b_v2h"] is not None:
        link += w["b_v2h"][:, None]
    return link


def _reference_vertical(state, row, w_v, b_v, w_v2h, b_v2h, *, cond, w_cond_v):
    return reference_steps.gated_pixelcnn_vertical_step(state, row, w_v, b_v, w_v2h, b_v2h, cond, w_cond_v)


def _reference_horizontal(state, x, link, w_h, b_h, w_res, b_res, *, mask_type, cond, w_cond_h):
    return reference_steps.gated_pixelcnn_horizontal_step(state, x, link, w_h, b_h, w_res, b_res, mask_type, cond,
                                                          w_cond_h)
