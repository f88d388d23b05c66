"""What RealNVP and Glow share: a stack of flow layers with multi-scale splits, the base
density, pixel preprocessing, ``log_prob``, ``bits_per_dim``, ``sample`` and the round trip.

Direction and spaces. ``forward(x)`` maps data x to latents (a list: one tensor per split plus
the last), ``inverse(latents)`` maps back; both return the log-determinant of their direction.
Images are modelled as a density on dequantized values in [0, 1]^D (see
:mod:`fastgen.data.transforms`); a fixed preprocessing (``"logit"``, RealNVP's
``logit(alpha + (1 - 2 alpha) x)``, or ``"shift"``, Glow's ``x - 1/2``) comes first and its
log-determinant is counted, so ``log_prob`` is the density of x itself.
"""

from __future__ import annotations

import logging
import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.data import bits_per_dim as _bits_per_dim
from fastgen.data import dequantize, discrete_nll_from_density
from fastgen.models._conv import check_positive_int
from fastgen.models._discrete import image_levels
from fastgen.models._modes import evaluating
from fastgen.ops._dispatch import accumulation_dtype

_log = logging.getLogger(__name__)

PREPROCESSING = ("logit", "shift", "none")
LOGIT_ALPHA = 0.05
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    """Per-sample sum of log N(z; 0, 1), (N,) in float32 or float64."""
    z = z.to(accumulation_dtype(z.dtype))
    return -(0.5 * z * z + _HALF_LOG_2PI).flatten(1).sum(1)


def _per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(1)


class FlowModel(nn.Module):
    """Base class: subclasses fill ``self.layers`` (an ``nn.ModuleList`` of flow layers; a layer
    whose forward returns a pair ``(kept, z)``, e.g. :class:`fastgen.nn.Split`, factors ``z``
    out) and set ``data_shape``, ``levels``, ``preprocessing``."""

    data_shape: tuple[int, ...]
    levels: int | None
    preprocessing: str
    layers: nn.ModuleList

    # ----------------------------------------------------------- preprocessing
    def _check_x(self, x: object, name: str = "x") -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.dtype.is_floating_point:
            raise TypeError(f"{name} must be a floating tensor (values in [0, 1] for images), got {x.dtype}")
        if tuple(x.shape[1:]) != tuple(self.data_shape) or x.dim() != len(self.data_shape) + 1:
            raise ValueError(f"{name} must have shape (N, {', '.join(map(str, self.data_shape))}), "
                             f"got {tuple(x.shape)}")
        return x

    def _preprocess(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zero = x.new_zeros(x.shape[0], dtype=accumulation_dtype(x.dtype))
        if self.preprocessing == "shift":
            return x - 0.5, zero
        if self.preprocessing == "none":
            return x, zero
        p = LOGIT_ALPHA + (1 - 2 * LOGIT_ALPHA) * x
        # The logit is defined for p in (0, 1): x outside about [-0.055, 1.055] has density zero.
        # Such a sample gets logdet -inf (so log_prob -inf, and no gradient), not NaN; its
        # out-of-support values are replaced so the rest of the flow stays finite.
        outside = (p <= 0) | (p >= 1)
        p = torch.where(outside, 0.5, p)
        log_p, log_q = torch.log(p), torch.log1p(-p)
        logdet = _per_sample(math.log(1 - 2 * LOGIT_ALPHA) - log_p - log_q).to(zero.dtype)
        return log_p - log_q, torch.where(outside.flatten(1).any(1), -math.inf, logdet)

    def _postprocess(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.preprocessing == "shift":
            return y + 0.5, y.new_zeros(y.shape[0], dtype=accumulation_dtype(y.dtype))
        if self.preprocessing == "none":
            return y, y.new_zeros(y.shape[0], dtype=accumulation_dtype(y.dtype))
        p = torch.sigmoid(y)
        x = (p - LOGIT_ALPHA) / (1 - 2 * LOGIT_ALPHA)
        logdet = _per_sample(F.logsigmoid(y) + F.logsigmoid(-y) - math.log(1 - 2 * LOGIT_ALPHA))
        return x, logdet

    # ----------------------------------------------------------- the bijection
    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """x (N, *data_shape) -> (latents, logdet (N,)): latents[i] for each split, the last
        for what remains at the end; logdet includes the preprocessing."""
        self._check_x(x)
        # Computed in the parameters' dtype (a bfloat16 batch through a float32 model runs in
        # float32), as the flow ops compute half-precision inputs in float32.
        h, logdet = self._preprocess(x.to(self._param_dtype()))
        latents = []
        for layer in self.layers:
            h, ld = layer(h)
            if isinstance(h, tuple):
                h, z = h
                latents.append(z)
            logdet = logdet + ld
        latents.append(h)
        return latents, logdet

    def inverse(self, latents: list[torch.Tensor] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latents (as returned by :meth:`forward`) -> (x, logdet (N,)) of the inverse map.
        A model with one latent (no factored-out levels, as the vector RealNVP) also takes it as
        a plain tensor."""
        if isinstance(latents, torch.Tensor):
            if self.num_latents != 1:
                raise TypeError(f"latents must be the list of {self.num_latents} tensors forward returns (one per "
                                f"level this multi-scale model factors out), got one tensor {tuple(latents.shape)}")
            latents = [latents]
        latents = list(latents)
        if len(latents) != self.num_latents:
            raise ValueError(f"latents must be a list of {self.num_latents} tensors, got {len(latents)}")
        for i, (z, shape) in enumerate(zip(latents, self.latent_shapes())):
            if not isinstance(z, torch.Tensor) or not z.is_floating_point():
                raise TypeError(f"latents[{i}] must be a floating-point tensor, got "
                                f"{z.dtype if isinstance(z, torch.Tensor) else type(z).__name__}")
            if tuple(z.shape[1:]) != shape or z.dim() != len(shape) + 1 or z.shape[0] != latents[0].shape[0]:
                raise ValueError(f"latents[{i}] must have shape (N, {', '.join(map(str, shape))}) with the batch "
                                 f"size of latents[0] ({latents[0].shape[0]}), got {tuple(z.shape)}")
        h = latents.pop().to(self._param_dtype())
        logdet = h.new_zeros(h.shape[0], dtype=accumulation_dtype(h.dtype))
        for layer in reversed(self.layers):
            if getattr(layer, "factors_out", False):
                h = (h, latents.pop().to(h.dtype))
            h, ld = layer.inverse(h)
            logdet = logdet + ld
        x, ld = self._postprocess(h)
        return x, logdet + ld

    @property
    def num_latents(self) -> int:
        return 1 + sum(1 for layer in self.layers if getattr(layer, "factors_out", False))

    def latent_shapes(self) -> list[tuple[int, ...]]:
        """Shape (without the batch) of each latent of :meth:`forward`."""
        if getattr(self, "_latent_shapes", None) is None:
            self._latent_shapes = self._probe_latent_shapes()
        return list(self._latent_shapes)

    def _probe_latent_shapes(self) -> list[tuple[int, ...]]:
        with torch.no_grad():
            probe = torch.full((1, *self.data_shape), 0.5, device=self._device(), dtype=self._param_dtype())
            with evaluating(self):
                return [tuple(z.shape[1:]) for z in self.forward(probe)[0]]

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    # ----------------------------------------------------------- densities
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density of x (N, *data_shape) in nats, (N,); for images x is in [0, 1]
        (dequantized data; see :meth:`bits_per_dim` for discrete images). With the logit
        preprocessing the density is zero outside about [-0.055, 1.055]: such a sample gets -inf."""
        latents, logdet = self.forward(x)
        return sum(standard_normal_log_density(z) for z in latents) + logdet

    def bits_per_dim(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative log-likelihood of discrete images in bits per dimension, (N,).

        ``x`` holds images on the level grid: integer levels (uint8) or floats
        ``k / (levels - 1)`` in [0, 1]. They are dequantized with uniform noise,
        ``(k + u) / levels``, and the density converted to an upper bound on the discrete NLL
        (``-log p + D log(levels)``), so the figure is comparable with any discrete model.
        """
        if self.levels is None:
            raise ValueError("bits_per_dim needs discrete data: this model was built without levels")
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != len(self.data_shape) + 1 or tuple(x.shape[1:]) != tuple(self.data_shape):
            raise ValueError(f"x must have shape (N, {', '.join(map(str, self.data_shape))}), got {tuple(x.shape)}")
        k = image_levels(x, self.levels)
        y = dequantize(k, self.levels, generator=generator).to(self._param_dtype())
        dims = math.prod(self.data_shape)
        return _bits_per_dim(discrete_nll_from_density(self.log_prob(y), dims, self.levels), dims)

    def _param_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    # ----------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, *, generator: torch.Generator | None = None,
               quantize: bool = True) -> torch.Tensor:
        """``n`` samples (n, *data_shape): latents drawn from N(0, temperature^2) and inverted.

        The flow runs in eval mode (no dropout in the couplings, so the same generator gives the
        same samples and they are the inverse of :meth:`forward` in eval mode); every module's
        mode is restored afterwards. For images the result is clamped to [0, 1] and
        (``quantize=True``) rounded to the level grid ``k / (levels - 1)``, the form fastgen's
        image models return.
        """
        n = check_positive_int(n, "n")
        if (isinstance(temperature, bool) or not isinstance(temperature, numbers.Real)
                or not math.isfinite(temperature) or temperature < 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        device, dtype = self._device(), self._param_dtype()
        latents = [torch.randn((n, *shape), generator=generator, device=device, dtype=dtype) * float(temperature)
                   for shape in self.latent_shapes()]
        with evaluating(self):
            x, _ = self.inverse(latents)
        bad = ~torch.isfinite(x).reshape(n, -1).all(1)
        if bool(bad.any()):
            # An inverse can overflow for latents far in the tails (unbounded scale maps, high
            # temperature): say so, and keep the batch usable.
            _log.warning("%d of %d samples overflowed in the inverse flow (non-finite values set to 0); "
                         "use a bounded scale map or a lower temperature", int(bad.sum()), n)
            x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        if self.levels is None:
            return x
        x = x.clamp(0.0, 1.0 - 1e-6)
        if quantize:
            x = torch.floor(x * self.levels) / (self.levels - 1)
        return x
