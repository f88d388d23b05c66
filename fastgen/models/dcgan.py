"""DCGAN: a convolutional GAN sized from the data shape.

The generator maps z ~ N(0, I) through a linear layer and stride-2 transposed convolutions
(BatchNorm + ReLU) to a sigmoid output in [0, 1]; the discriminator mirrors it with stride-2
convolutions and LeakyReLU(0.2) (BatchNorm on the inner layers, or spectral norm on every
layer instead with ``spectral_norm=True``) and returns one logit per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.models._conv import (
    ConvDecoder,
    ConvEncoder,
    check_data_shape,
    check_images,
    check_latents,
    check_positive_int,
    normal_like,
)
from fastgen.models._modes import evaluating

LOSSES = ("non_saturating", "hinge")


class _LeakyReLU(nn.LeakyReLU):
    def __init__(self) -> None:
        super().__init__(0.2)


class Generator(nn.Module):
    """z (N, latent_dim) -> images (N, C, H, W) in [0, 1]."""

    def __init__(self, data_shape: tuple[int, int, int], latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = ConvDecoder(data_shape, hidden, latent_dim, data_shape[0], act=nn.ReLU, norm=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(z))


class Discriminator(nn.Module):
    """Images (N, C, H, W) in [0, 1] -> logits (N,)."""

    def __init__(self, data_shape: tuple[int, int, int], hidden: int, spectral_norm: bool) -> None:
        super().__init__()
        # The parametrization, not the legacy nn.utils.spectral_norm: that one leaves a non-leaf
        # `weight` attribute after a forward, which deepcopy (EMA / SWA copies) refuses.
        wrap = nn.utils.parametrizations.spectral_norm if spectral_norm else None
        self.net = ConvEncoder(data_shape, hidden, 1, act=_LeakyReLU, norm=not spectral_norm, wrap=wrap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0).squeeze(1)


class DCGAN(nn.Module):
    """Deep convolutional GAN on images in [0, 1].

    Parameters
    ----------
    data_shape : tuple of 3 ints
        (C, H, W) of one image; H and W >= 8.
    latent_dim : int
        Size of the noise vector z.
    hidden : int
        Channel width at full resolution (x2 per halving, capped at x4), in G and D.
    loss : str
        ``"non_saturating"`` (the standard GAN loss with the -log D(G(z)) generator objective)
        or ``"hinge"``.
    spectral_norm : bool
        Spectral normalisation on every discriminator layer (then no BatchNorm in D).

    Attributes
    ----------
    generator : nn.Module
        (N, latent_dim) -> (N, C, H, W) in [0, 1].
    discriminator : nn.Module
        (N, C, H, W) -> (N,) logits.
    """

    def __init__(
        self,
        data_shape: tuple[int, int, int],
        latent_dim: int = 32,
        hidden: int = 64,
        loss: str = "non_saturating",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.data_shape = check_data_shape(data_shape)
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.hidden = check_positive_int(hidden, "hidden")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
        self.loss = loss
        self.spectral_norm = bool(spectral_norm)
        self.generator = Generator(self.data_shape, self.latent_dim, self.hidden)
        self.discriminator = Discriminator(self.data_shape, self.hidden, self.spectral_norm)

    def config(self) -> dict:
        """Constructor kwargs: ``DCGAN(**model.config())`` rebuilds the architecture."""
        return {
            "data_shape": tuple(self.data_shape),
            "latent_dim": self.latent_dim,
            "hidden": self.hidden,
            "loss": self.loss,
            "spectral_norm": self.spectral_norm,
        }

    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise z ~ N(0, I), (n, latent_dim), on the model's device and dtype."""
        n = check_positive_int(n, "n", minimum=0)
        return normal_like((n, self.latent_dim), next(self.parameters()), generator)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """(N, latent_dim) noise -> (N, C, H, W) images in [0, 1] (in the current train/eval mode)."""
        check_latents(z, self.latent_dim)
        return self.generator(z.to(next(self.parameters()).dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Discriminator logits (N,) for images ``x`` (N, C, H, W) in [0, 1]."""
        check_images(x, self.data_shape)
        return self.discriminator(x.to(next(self.parameters()).dtype))

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [0, 1] from the generator in eval mode (BatchNorm running
        statistics); the generator's train/eval mode is restored afterwards."""
        z = self.latent(n, generator)
        with evaluating(self.generator):
            return self.generator(z)

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """Scalar generator loss from D's logits on generated images, (N,).

        non_saturating: ``mean(softplus(-fake))`` = -log sigmoid(fake); hinge: ``-mean(fake)``.
        """
        if self.loss == "hinge":
            return -fake_logits.mean()
        return F.softplus(-fake_logits).mean()

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Scalar discriminator loss from its logits on real and generated images, (N,) each.

        non_saturating: ``mean(softplus(-real)) + mean(softplus(fake))`` (binary cross-entropy);
        hinge: ``mean(relu(1 - real)) + mean(relu(1 + fake))``.
        """
        if self.loss == "hinge":
            return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
