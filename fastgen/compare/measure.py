"""The measurements of one image model in ``fastgen compare``, the same for every model.

* likelihood and sample quality: the recipe's own test evaluation (what ``fastgen evaluate``
  prints): bits/dim (exact for the flows and PixelCNN, an importance-weighted bound for the
  VAE, none for the GAN), Fréchet distance and class coverage with the embedded classifier;
* sampling throughput at batch 1 and 64 (PixelCNN: its cached and naive samplers);
* x -> z: run the model's inference map where it has one and map back; the reconstruction
  error decides "exact" (flows: inverse of the forward pass) or "approximate" (VAE: decoder
  mean at the encoder mean); "unavailable" where the model has no inference map;
* sampling: "parallel" (one network pass per batch) or "sequential" (one step per dimension),
  measured as the network evaluations one sample costs (PixelCNN: H x W pixel steps).
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any

import torch
from torch import nn

from fastgen.data import dequantize, to_unit
from fastgen.train.evaluation import histogram_baseline_bpd
from fastgen.train.recipes import Recipe

THROUGHPUT_BATCHES = (1, 64)


def timed(fn, device: torch.device) -> float:
    """Seconds one call of ``fn`` takes (the device synchronised before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _seconds(fn, device: torch.device, repeats: int, warmups: int = 1) -> float:
    """Best of ``repeats`` timed calls (after ``warmups`` untimed ones)."""
    for _ in range(warmups):
        fn()
    return min(timed(fn, device) for _ in range(repeats))


def sampling_throughput(recipe: Recipe, model: nn.Module, device: torch.device) -> dict[str, float]:
    """Images per second at each batch size; for PixelCNN also with its naive sampler."""
    generator = torch.Generator(device=device).manual_seed(0)
    result = {}
    for n in THROUGHPUT_BATCHES:
        with torch.no_grad():
            # Three warm-ups and best of three even with --quick (a call takes milliseconds): after
            # the evaluation's large batches, oneDNN's first batch-1 convolutions of a trained VAE
            # were measured at ~32 ms for up to three calls, then 0.3 ms (100x off with one warm-up).
            seconds = _seconds(lambda: recipe.sample(model, n, generator), device, 3, warmups=3)
        result[f"sample_images_per_s_batch{n}"] = n / seconds
        if _is_autoregressive(model):
            with torch.no_grad():
                naive = _seconds(lambda: model.sample(n, method="naive", generator=generator), device, 1)
            result[f"naive_sample_images_per_s_batch{n}"] = n / naive
    return result


def _is_autoregressive(model: nn.Module) -> bool:
    """Whether the model samples one step at a time (its ``sample`` offers the naive method)."""
    return "method" in inspect.signature(model.sample).parameters


def inference_map(model: nn.Module, data: Any, device: torch.device) -> dict[str, Any]:
    """x -> z -> x on 64 test images: "exact" / "approximate" / "unavailable" and the error."""
    x_levels = data.test[:64]
    with torch.no_grad():
        if hasattr(model, "inverse") and hasattr(model, "latent_shapes"):  # a flow
            x = dequantize(x_levels, data.levels, noise=torch.full(x_levels.shape, 0.5)).to(device)
            latents, _ = model(x)
            back, _ = model.inverse(latents)
            error = float((back - x).abs().max())
            return {"x_to_z": "exact" if error < 1e-3 else "approximate", "reconstruction_max_abs_error": error}
        if hasattr(model, "encode") and hasattr(model, "reconstruct"):  # a VAE
            x = to_unit(x_levels, data.levels).to(device)
            error = float((model.reconstruct(x) - x).abs().mean())
            return {"x_to_z": "approximate", "reconstruction_mean_abs_error": error}
    return {"x_to_z": "unavailable"}


def sampling_kind(model: nn.Module, data: Any) -> dict[str, Any]:
    """Network evaluations per sample: 1 for a parallel sampler, one per pixel for PixelCNN."""
    if _is_autoregressive(model):
        steps = math.prod(data.shape[1:])
        return {"sampling": "sequential", "network_steps_per_sample": steps}
    return {"sampling": "parallel", "network_steps_per_sample": 1}


def measure_image_model(recipe: Recipe, model: nn.Module, data: Any, device: torch.device, *, quick: bool,
                        seed: int = 0) -> dict[str, Any]:
    """Every figure of one row of the table (see the module docstring)."""
    model.eval()
    with torch.no_grad():
        metrics = recipe.evaluate(model, data, device, quick=quick, seed=seed)
    row: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}
    row["bits_per_dim"] = metrics.get("bits_per_dim") if recipe.test_metric == "bits_per_dim" else None
    for key in ("frechet_distance", "classes_covered", "max_share", "histogram_baseline_bits_per_dim",
                "frechet_floor", "iw_samples", "dequantization_draws"):
        if key in metrics:
            row[key] = metrics[key]
    # Every row carries the baseline (a GAN's evaluation has no likelihood to set it), so a table
    # of sample-only models still shows it.
    row.setdefault("histogram_baseline_bits_per_dim", histogram_baseline_bpd(data))
    row.update(sampling_throughput(recipe, model, device))
    row.update(inference_map(model, data, device))
    row.update(sampling_kind(model, data))
    return row
