"""``fastgen train vae``: the VAE trained by maximising the ELBO."""

from __future__ import annotations

import math

import torch
from torch import nn

from fastgen.data import ImageData, to_unit
from fastgen.models import VAE
from fastgen.train.evaluation import histogram_baseline_bpd, sample_quality
from fastgen.train.recipes import Amp, Recipe, register
from fastgen.train.step_context import StepContext


class VAERecipe(Recipe):
    name = "vae"
    model_class = VAE
    test_metric = "bits_per_dim"
    epochs = 60
    quick_epochs = 15
    batch_size = 64
    lr = 2e-3

    def build(self, data: ImageData) -> nn.Module:
        return VAE(tuple(data.shape), levels=data.levels)

    def train_step(self, model, parts, optimizers, batch, levels, ctx: StepContext, amp: Amp) -> dict[str, float]:
        x = to_unit(batch, levels)
        eps = ctx.randn(model.latent_dim)  # drawn for the global batch: equal across process counts
        with amp.autocast():
            out = parts["model"](x, eps=eps)
        amp.backward_and_step(out["loss"] * ctx.loss_scale, optimizers["model"])
        return {"loss": float(out["loss"].detach()), "recon": float(out["recon"].detach().mean()),
                "kl": float(out["kl"].detach().mean())}

    @torch.no_grad()
    def sample(self, model, n, generator):
        # Decoder means: per-pixel draws from the likelihood are salt-and-pepper noise on top of
        # the same digit, which hides what the model learned in grids and in the Fréchet distance.
        return model.sample(n, generator=generator, mean=True)

    def evaluate(self, model, data, device, *, quick=False, seed=0) -> dict[str, float]:
        x = to_unit(data.test, data.levels).to(device)
        dims = math.prod(data.shape)
        generator = torch.Generator(device=device).manual_seed(seed)
        k = 10 if quick else 100
        nll = -model.log_likelihood(x, k=k, generator=generator).double().mean().item()
        eps = torch.randn((x.shape[0], model.latent_dim), generator=generator, device=device)
        nelbo = model(x, eps=eps)["nelbo"].double().mean().item()
        metrics = {
            "bits_per_dim": nll / (dims * math.log(2)),
            "nll_nats": nll,
            "elbo_bits_per_dim": nelbo / (dims * math.log(2)),
            "iw_samples": float(k),
            "histogram_baseline_bits_per_dim": histogram_baseline_bpd(data),
        }
        metrics.update(sample_quality(model, self.sample, data, device, n=200 if quick else 1000, seed=seed))
        return metrics


register(VAERecipe())
