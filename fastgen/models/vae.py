"""Convolutional variational autoencoder with discretized pixel likelihoods.

The latent sample and its KL term come from the fused op
:func:`fastgen.ops.reparameterize_with_kl` (through :class:`fastgen.nn.GaussianReparameterization`);
the importance-weighted bound uses :func:`fastgen.ops.reparameterize` with explicit noise and
:func:`fastgen.ops.standard_normal_log_prob` for the prior and posterior densities.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from fastgen import nn as fnn
from fastgen import ops
from fastgen.models._conv import (
    ConvDecoder,
    ConvEncoder,
    check_data_shape,
    check_images,
    check_latents,
    check_positive_int,
    normal_like,
    quantize,
    uniform_like,
)
from fastgen.models._likelihood import (
    discretized_gaussian_log_prob,
    discretized_logistic_log_prob,
    sample_discretized,
)

LIKELIHOODS = ("bernoulli", "logistic", "gaussian")


class VAE(nn.Module):
    """Convolutional VAE on images in [0, 1], sized from the data shape.

    Parameters
    ----------
    data_shape : tuple of 3 ints
        (C, H, W) of one image; H and W >= 8 (any size: odd sizes are handled exactly).
    levels : int
        Number of intensity levels of the discrete data (17 for sklearn digits, 256 for 8-bit
        images); inputs are ``level / (levels - 1)``. >= 2.
    latent_dim : int
        Size of the latent vector z.
    hidden : int
        Channel width at full resolution (x2 per halving, capped at x4).
    likelihood : str
        ``"logistic"`` (discretized logistic over ``levels`` bins, default), ``"gaussian"``
        (discretized Gaussian) or ``"bernoulli"`` (BCE with logits on the [0, 1] values; not
        a distribution over the levels, so its bits/dim is not comparable with discrete models).

    Shapes
    ------
    x: (N, C, H, W) floats in [0, 1]; z: (N, latent_dim); per-sample terms: (N,) in nats.
    """

    def __init__(
        self,
        data_shape: tuple[int, int, int],
        levels: int = 256,
        latent_dim: int = 16,
        hidden: int = 64,
        likelihood: str = "logistic",
    ) -> None:
        super().__init__()
        self.data_shape = check_data_shape(data_shape)
        self.levels = check_positive_int(levels, "levels", minimum=2)
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.hidden = check_positive_int(hidden, "hidden")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}")
        self.likelihood = likelihood
        c = self.data_shape[0]
        out_channels = c if likelihood == "bernoulli" else 2 * c  # logits, or (mean, log-scale)
        self.encoder = ConvEncoder(self.data_shape, self.hidden, 2 * self.latent_dim)
        self.decoder = ConvDecoder(self.data_shape, self.hidden, self.latent_dim, out_channels)
        self.reparameterize = fnn.GaussianReparameterization()

    @property
    def dims(self) -> int:
        """C * H * W, the number of dimensions of one image."""
        c, h, w = self.data_shape
        return c * h * w

    def config(self) -> dict:
        """Constructor kwargs: ``VAE(**model.config())`` rebuilds the architecture."""
        return {
            "data_shape": tuple(self.data_shape),
            "levels": self.levels,
            "latent_dim": self.latent_dim,
            "hidden": self.hidden,
            "likelihood": self.likelihood,
        }

    # ----------------------------------------------------------------------------- pieces
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) images -> posterior (mu, logvar), each (N, latent_dim)."""
        check_images(x, self.data_shape)
        x = x.to(next(self.parameters()).dtype)  # float64 or half images into a float32 model
        mu, logvar = self.encoder(x * 2.0 - 1.0).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, latent_dim) -> raw decoder output (N, C or 2C, H, W): logits or (mean, log-scale)."""
        check_latents(z, self.latent_dim)
        return self.decoder(z.to(next(self.parameters()).dtype))

    def _split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The mean is parameterised around 0.5 so a zero-initialised output sits mid-range.
        mean, log_scale = out.chunk(2, dim=1)
        return mean + 0.5, log_scale

    def log_prob_x_given_z(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """log p(x | z) per sample, (N,) nats, from the decoder output ``out = decode(z)``.

        Computed in float32 (float64 stays float64), also under autocast: the bin masses of
        256-level data are far below bfloat16/float16 resolution.
        """
        check_images(x, self.data_shape)
        channels = self.data_shape[0] * (1 if self.likelihood == "bernoulli" else 2)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (x.shape[0], channels, *self.data_shape[1:]):
            raise ValueError(f"out must be decode(z) for the {x.shape[0]} images of x, shape "
                             f"{(x.shape[0], channels, *self.data_shape[1:])}, got "
                             f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
        dtype = torch.promote_types(out.dtype, torch.float32)
        x, out = x.to(dtype), out.to(dtype)
        if self.likelihood == "bernoulli":
            lp = -F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            mean, log_scale = self._split(out)
            fn = (
                discretized_logistic_log_prob
                if self.likelihood == "logistic"
                else discretized_gaussian_log_prob
            )
            lp = fn(x, mean, log_scale, self.levels)
        return lp.flatten(1).sum(1)

    def _mean(self, out: torch.Tensor) -> torch.Tensor:
        if self.likelihood == "bernoulli":
            return torch.sigmoid(out)
        return quantize(self._split(out)[0], self.levels)

    # ----------------------------------------------------------------------------- API
    def forward(
        self,
        x: torch.Tensor,
        *,
        eps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Negative ELBO of a batch, with one latent sample per image.

        Parameters
        ----------
        x : torch.Tensor
            (N, C, H, W) floats in [0, 1].
        eps : torch.Tensor, optional
            (N, latent_dim) standard normal noise for ``z = mu + exp(logvar / 2) * eps``. By
            default the noise is drawn inside the fused kernel.
        generator : torch.Generator, optional
            Source of the in-kernel noise when ``eps`` is None (default: torch's default generator).

        Returns
        -------
        dict
            ``loss``: scalar mean negative ELBO (what to backprop); ``recon``: (N,) -log p(x|z);
            ``kl``: (N,) KL(q(z|x) || p(z)); ``nelbo``: (N,) recon + kl. All in nats.
        """
        mu, logvar = self.encode(x)
        if eps is None:
            z, kl = self.reparameterize(mu, logvar, return_kl=True, generator=generator)
        else:
            if tuple(eps.shape) != tuple(mu.shape):
                raise ValueError(f"eps: expected shape {tuple(mu.shape)}, got {tuple(eps.shape)}")
            z, kl = ops.reparameterize_with_kl(mu, logvar, eps.to(mu.dtype))
        kl = kl.to(torch.promote_types(kl.dtype, torch.float32))
        recon = -self.log_prob_x_given_z(x, self.decode(z))
        nelbo = recon + kl
        return {"loss": nelbo.mean(), "recon": recon, "kl": kl, "nelbo": nelbo}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder mean at the posterior mean: (N, C, H, W) in [0, 1], on the level grid for
        the discretized likelihoods (probabilities for Bernoulli)."""
        mu, _ = self.encode(x)
        return self._mean(self.decode(mu))

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, mean: bool = False) -> torch.Tensor:
        """Draw ``n`` images (n, C, H, W) in [0, 1]: z ~ N(0, I), then x ~ p(x | z) quantized to
        the levels (``mean=True``: the decoder mean instead of a draw)."""
        n = check_positive_int(n, "n", minimum=0)
        ref = next(self.parameters())
        out = self.decode(normal_like((n, self.latent_dim), ref, generator))
        if mean:
            return self._mean(out)
        if self.likelihood == "bernoulli":
            return (uniform_like(out.shape, out, generator) < torch.sigmoid(out)).to(out.dtype)
        return sample_discretized(self.likelihood, *self._split(out), self.levels, generator)

    @torch.no_grad()
    def log_likelihood(
        self,
        x: torch.Tensor,
        k: int = 100,
        *,
        batch_size: int = 4096,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Importance-weighted (IWAE) estimate of log p(x), (N,) nats.

        ``log (1/k) sum_i p(x, z_i) / q(z_i | x)`` with ``z_i ~ q(z | x)``: a lower bound on
        log p(x) that tightens as ``k`` grows (``k=1`` is a single-sample ELBO estimate).

        Parameters
        ----------
        x : torch.Tensor
            (N, C, H, W) floats in [0, 1].
        k : int
            Number of importance samples per image, >= 1.
        batch_size : int
            At most this many (image, sample) pairs go through the decoder at once.
        generator : torch.Generator, optional
            Source of the latent noise.
        """
        k = check_positive_int(k, "k")
        batch_size = check_positive_int(batch_size, "batch_size")
        check_images(x, self.data_shape)
        # Evaluation only, so one host read is fine: images scaled to 0..levels-1 or 0..255
        # would otherwise be clamped into the bins and give a plausible, wrong figure.
        if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
            raise ValueError(f"x must hold images in [0, 1] (level k as k / (levels - 1)), got values in "
                             f"[{x.min().item():g}, {x.max().item():g}]")
        if self.likelihood == "bernoulli" and self.levels > 2:
            warnings.warn(f"the Bernoulli likelihood is a distribution over 2 levels: with levels={self.levels} "
                          "its log-likelihood is not that of a distribution over the levels, and not comparable "
                          "with discrete models' (binarize the data with levels=2, or use 'logistic')",
                          stacklevel=2)
        if x.shape[0] == 0:
            return x.new_zeros(0, dtype=torch.promote_types(x.dtype, torch.float32))
        per_x = max(1, batch_size // k)
        results = []
        for xb in x.split(per_x):
            mu, logvar = (t.to(torch.promote_types(t.dtype, torch.float32)) for t in self.encode(xb))
            # log q(z|x) = log N(eps; 0, I) - sum(logvar) / 2 for z = mu + exp(logvar / 2) * eps.
            half_logdet = 0.5 * logvar.sum(1)
            k_chunk = max(1, min(k, batch_size // xb.shape[0]))
            log_w = []
            for start in range(0, k, k_chunk):
                kc = min(k_chunk, k - start)
                mu_k, lv_k = (
                    t.unsqueeze(1).expand(-1, kc, -1).reshape(-1, self.latent_dim) for t in (mu, logvar)
                )
                eps = normal_like(mu_k.shape, mu_k, generator)
                z = ops.reparameterize(mu_k, lv_k, eps)
                x_k = xb.unsqueeze(1).expand(-1, kc, *self.data_shape).reshape(-1, *self.data_shape)
                log_px = self.log_prob_x_given_z(x_k, self.decode(z))
                log_pz = ops.standard_normal_log_prob(z)
                log_qz = ops.standard_normal_log_prob(eps)
                log_w.append((log_px + log_pz - log_qz).view(-1, kc) + half_logdet.unsqueeze(1))
            results.append(torch.logsumexp(torch.cat(log_w, dim=1), dim=1) - math.log(k))
        return torch.cat(results) if results else x.new_zeros(0)

    def bits_per_dim(self, x: torch.Tensor, k: int = 100, **kwargs) -> torch.Tensor:
        """``-log_likelihood(x, k) / (dims * ln 2)``, (N,) bits per dimension of the discrete data."""
        return -self.log_likelihood(x, k, **kwargs) / (self.dims * math.log(2.0))
