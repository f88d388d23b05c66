"""``fastgen train gan``: DCGAN, alternating discriminator and generator steps."""

from __future__ import annotations

import torch
from torch import nn

from fastgen.data import ImageData, to_unit
from fastgen.models import DCGAN
from fastgen.train.evaluation import sample_quality
from fastgen.train.recipes import Amp, Recipe, register
from fastgen.train.step_context import StepContext


class GANRecipe(Recipe):
    name = "gan"
    model_class = DCGAN
    test_metric = "frechet_distance"
    epochs = 100
    quick_epochs = 25
    batch_size = 64
    lr = 2e-4

    def build(self, data: ImageData) -> nn.Module:
        return DCGAN(tuple(data.shape))

    def trained_parts(self, model):
        return {"discriminator": model.discriminator, "generator": model.generator}

    def optimizers(self, parts, lr):
        # The usual DCGAN setting: Adam with beta1 = 0.5.
        return {name: torch.optim.Adam(part.parameters(), lr=lr, betas=(0.5, 0.999)) for name, part in parts.items()}

    def train_step(self, model, parts, optimizers, batch, levels, ctx: StepContext, amp: Amp) -> dict[str, float]:
        generator, discriminator = parts["generator"], parts["discriminator"]
        real = to_unit(batch, levels)
        with amp.autocast():
            fake = generator(ctx.randn(model.latent_dim)).detach()
            # Real and fake in separate forwards: the discriminator's BatchNorm must not see a
            # mixed batch, or it can tell them apart by batch statistics and the generator collapses.
            d_loss = model.discriminator_loss(discriminator(real), discriminator(fake))
        amp.backward_and_step(d_loss * ctx.loss_scale, optimizers["discriminator"])
        with amp.autocast():
            g_loss = model.generator_loss(discriminator(generator(ctx.randn(model.latent_dim))))
        amp.backward_and_step(g_loss * ctx.loss_scale, optimizers["generator"])
        return {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())}

    def evaluate(self, model, data, device, *, quick=False, seed=0) -> dict[str, float]:
        return sample_quality(model, self.sample, data, device, n=200 if quick else 1000, seed=seed)


register(GANRecipe())
