"""``fastgen train pixelcnn`` and ``fastgen train wavenet``: autoregressive models by maximum likelihood.

Both have exact discrete likelihoods, so the loss is the test metric itself (bits per
dimension: per sub-pixel for PixelCNN, per audio sample for WaveNet) and no dequantization is
involved. Sampling uses the cached samplers (row caches, ring buffers).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from fastgen.data import AudioData, ImageData, load_audio, mu_law_decode, to_unit, write_wav
from fastgen.models import PixelCNN, WaveNet
from fastgen.models._autoregressive import log_prob_of
from fastgen.train.evaluation import histogram_baseline_bpd, sample_quality
from fastgen.train.recipes import Amp, Recipe, register
from fastgen.train.step_context import StepContext


@torch.no_grad()
def mean_bits(model: nn.Module, inputs: torch.Tensor, device: torch.device, batch_size: int) -> float:
    """Mean of ``model.bits_per_dim`` over ``inputs`` (float images or integer codes), in float64."""
    total = 0.0
    for chunk in inputs.split(batch_size):
        total += float(model.bits_per_dim(chunk.to(device)).double().sum())
    return total / len(inputs)


class PixelCNNRecipe(Recipe):
    name = "pixelcnn"
    model_class = PixelCNN
    test_metric = "bits_per_dim"
    validation_fraction = 0.1
    epochs = 40
    quick_epochs = 6
    batch_size = 64
    lr = 1e-3

    def build(self, data: ImageData) -> nn.Module:
        return PixelCNN(tuple(data.shape), levels=data.levels)

    def train_step(self, model, parts, optimizers, batch, levels, ctx: StepContext, amp: Amp) -> dict[str, float]:
        x = to_unit(batch, levels)
        with amp.autocast():
            params = parts["model"](x)  # through the (possibly DDP-wrapped) forward
        target = batch.long()
        log_p = log_prob_of(params.float(), target, model.output, levels).flatten(1).sum(1)
        loss = (-log_p / (math.prod(batch.shape[1:]) * math.log(2.0))).mean()
        amp.backward_and_step(loss * ctx.loss_scale, optimizers["model"])
        return {"bits_per_dim": float(loss.detach())}

    def validation_score(self, model, validation: ImageData, device, seed: int) -> float:
        return mean_bits(model, to_unit(validation.test, validation.levels), device, 256)

    def evaluate(self, model, data, device, *, quick=False, seed=0) -> dict[str, float]:
        metrics = {
            "bits_per_dim": mean_bits(model, to_unit(data.test, data.levels), device, 256),
            "histogram_baseline_bits_per_dim": histogram_baseline_bpd(data),
        }
        metrics.update(sample_quality(model, self.sample, data, device, n=200 if quick else 1000, seed=seed))
        return metrics


class WaveNetRecipe(Recipe):
    """WaveNet on mu-law audio: random crops of the training clips, test NLL on whole clips."""

    name = "wavenet"
    model_class = WaveNet
    test_metric = "bits_per_dim"
    epochs = 30
    quick_epochs = 3
    batch_size = 8
    lr = 2e-3
    crop = 4000  # samples per training example (the default model sees 511 of them)
    sample_seconds = 0.5  # length of generated clips
    max_epoch_samples = 4  # clips generated after each epoch (sampling is sequential)
    sample_suffix = ".wav"
    default_data = "notes"

    def load_data(self, spec: str, sample_rate: int | None = None) -> AudioData:
        """The embedded notes or a folder of WAV files, at ``sample_rate`` (default 16 kHz)."""
        return load_audio(spec) if sample_rate is None else load_audio(spec, sample_rate=sample_rate)

    def build(self, data: AudioData) -> nn.Module:
        return WaveNet(levels=data.levels, sample_rate=data.sample_rate)

    def train_step(self, model, parts, optimizers, batch, levels, ctx: StepContext, amp: Amp) -> dict[str, float]:
        codes = batch[:, 0].long()
        length = codes.shape[1]
        if length > self.crop:  # one random crop per step (the same on every rank: the step's generator)
            start = int(torch.randint(0, length - self.crop + 1, (1,), generator=ctx.generator))
            codes = codes[:, start:start + self.crop]
        with amp.autocast():
            params = parts["model"](codes)
        log_p = log_prob_of(params.float(), codes.to(params.device), model.output, levels)
        loss = (-log_p.mean(1) / math.log(2.0)).mean()
        amp.backward_and_step(loss * ctx.loss_scale, optimizers["model"])
        return {"bits_per_dim": float(loss.detach())}

    def evaluate(self, model, data, device, *, quick=False, seed=0) -> dict[str, float]:
        test = data.test[:16] if quick else data.test
        codes = data.train[:, 0].long().flatten()
        # Baseline: every code drawn independently from the training split's code histogram.
        counts = torch.bincount(codes, minlength=data.levels).double() + 0.5
        log2_p = torch.log2(counts / counts.sum())
        unigram = float(-log2_p[test[:, 0].long().flatten()].mean())
        return {"bits_per_dim": mean_bits(model, test[:, 0].long(), device, 8),
                "unigram_baseline_bits_per_dim": unigram, "clips": float(len(test))}

    @torch.no_grad()
    def sample(self, model, n, generator, seconds: float | None = None):
        length = max(1, round((self.sample_seconds if seconds is None else seconds) * model.sample_rate))
        return model.sample(n, length, generator=generator)

    def save_samples(self, model, samples: torch.Tensor, path) -> None:
        """Codes (n, T) -> one WAV file: the clips one after another, 0.25 s of silence between.
        The file's folder is created if need be, as for the image recipes' PNG grids."""
        rate = model.sample_rate
        gap = torch.zeros(rate // 4)
        waves = []
        for codes in samples.cpu():
            waves += [mu_law_decode(codes, model.levels), gap]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, torch.cat(waves[:-1]).numpy(), rate)


register(PixelCNNRecipe())
register(WaveNetRecipe())
