"""The audio section of ``fastgen compare``: WaveNet on the embedded notes (or given audio).

Trained (or loaded) like the image models, then: test NLL in bits per audio sample (exact) with
the unigram baseline, and sampling speed at batch 1: cached (``WaveNet.sample``'s default: the
fused decoder where one runs, C++ on the CPU, CUDA or Triton on a GPU) and naive (the network
rerun over its receptive field for every sample), with the real-time factor (generation time /
audio duration).
"""

from __future__ import annotations

from typing import Any

import torch

from fastgen.compare.measure import timed
from fastgen.train.recipes import Recipe


def measure_wavenet(recipe: Recipe, model: torch.nn.Module, data: Any, device: torch.device, *, quick: bool,
                    seed: int = 0) -> dict[str, Any]:
    model.eval()
    with torch.no_grad():
        metrics = recipe.evaluate(model, data, device, quick=quick, seed=seed)
        cached_len = 2000 if quick else 16000
        naive_len = 20 if quick else 100
        model.sample(1, 16)  # warm-up
        cached = timed(lambda: model.sample(1, cached_len), device) / cached_len
        # Naive at steady state: one pass over a full receptive field per generated sample.
        context = torch.randint(0, model.levels, (1, model.receptive_field), device=device)
        naive = timed(lambda: [model.next_params(context) for _ in range(naive_len)], device) / naive_len
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "receptive_field": model.receptive_field,
        "bits_per_sample": metrics["bits_per_dim"],
        "unigram_baseline_bits_per_sample": metrics["unigram_baseline_bits_per_dim"],
        "test_clips": metrics["clips"],
        "cached_samples_per_s": 1 / cached,
        "naive_samples_per_s": 1 / naive,
        "cached_over_naive": naive / cached,
        "real_time_factor": cached * model.sample_rate,
        "sample_rate": model.sample_rate,
        "cached_samples_timed": cached_len,
        "naive_samples_timed": naive_len,
    }
