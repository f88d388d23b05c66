"""fastgen.nn.GaussianReparameterization as a drop-in for the usual reparameterization code."""

from __future__ import annotations

import copy

import torch
from gaussian_cases import gaussian_inputs

from fastgen import nn as fnn
from fastgen import ops


def test_returns_z_and_keeps_the_kl(device):
    layer = fnn.GaussianReparameterization()
    mu, logvar = gaussian_inputs((5, 8), torch.float32, device)
    generator = torch.Generator(device=device).manual_seed(3)
    z = layer(mu, logvar, generator=generator)
    generator.manual_seed(3)
    z_ops, kl_ops = ops.reparameterize_with_kl(mu, logvar, generator=generator)
    assert torch.equal(z, z_ops)
    torch.testing.assert_close(layer.kl, kl_ops)
    z2, kl2 = layer(mu, logvar, return_kl=True)
    assert z2.shape == mu.shape and kl2.shape == (5,)


def test_trains_like_the_usual_code(device):
    # Gradients reach an encoder through the layer exactly as through mu + std * eps.
    torch.manual_seed(0)
    encoder = torch.nn.Linear(4, 6).to(device)
    x = torch.randn(3, 4, device=device)
    eps = torch.randn(3, 3, device=device)
    mu, logvar = encoder(x).chunk(2, dim=1)
    z, kl = fnn.GaussianReparameterization()(mu, logvar, return_kl=True)
    assert torch.isfinite(z).all()
    z_eps, kl_eps = ops.reparameterize_with_kl(mu, logvar, eps)
    (z_eps.sum() + kl_eps.sum()).backward()
    fused_grad = encoder.weight.grad.clone()
    encoder.zero_grad()
    mu, logvar = encoder(x).chunk(2, dim=1)
    usual = mu + torch.exp(0.5 * logvar) * eps
    usual_kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
    (usual.sum() + usual_kl.sum()).backward()
    torch.testing.assert_close(fused_grad, encoder.weight.grad)


def test_eval_mode_can_return_the_mean(device):
    mu, logvar = gaussian_inputs((2, 3), torch.float32, device)
    layer = fnn.GaussianReparameterization(sample_in_eval=False).eval()
    assert torch.equal(layer(mu, logvar), mu)
    torch.testing.assert_close(layer.kl, ops.gaussian_kl(mu, logvar))
    sampling = fnn.GaussianReparameterization().eval()
    assert not torch.equal(sampling(mu, logvar), mu)


def test_copies_of_a_trained_module_leave_the_last_kl_out():
    """The kept KL is part of the last forward's graph: deepcopy (EMA/SWA model copies) refused it."""
    from torch.optim.swa_utils import AveragedModel

    from fastgen.models import VAE

    model = VAE((1, 8, 8), latent_dim=4, hidden=8)
    model(torch.rand(2, 1, 8, 8))["loss"].backward()
    assert model.reparameterize.kl is not None
    copied = copy.deepcopy(model)
    assert copied.reparameterize.kl is None and model.reparameterize.kl is not None
    AveragedModel(model)
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(copied(x, generator=torch.Generator().manual_seed(0))["loss"],
                               model(x, generator=torch.Generator().manual_seed(0))["loss"])
