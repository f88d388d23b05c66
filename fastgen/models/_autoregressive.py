"""What PixelCNN and WaveNet share: the discrete output distribution and sampling from uniforms.

Every dimension (a sub-pixel, an audio sample) takes one of ``levels`` values. The network
outputs, per dimension, either ``levels`` logits ("categorical") or the ``3 * mixtures``
parameters of a discretized logistic mixture over the same grid (PixelCNN++'s "logistic_mixture":
mixture logits, means and log-scales in units of the [0, 1] grid). Both give a log-mass for
every level, so one rule draws from both: the inverse CDF of that pmf at one uniform per draw.
Given the same uniforms, two samplers whose logits agree to rounding draw the same values.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from fastgen.models._likelihood import discretized_logistic_log_prob
from fastgen.ops._checks import check_flag, check_generator
from fastgen.reference.steps import categorical_draw

OUTPUTS = ("categorical", "logistic_mixture")
SAMPLING_METHODS = ("cached", "naive")


def check_output(output: object, mixtures: object) -> None:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if isinstance(mixtures, bool) or not isinstance(mixtures, int) or mixtures < 1:
        raise ValueError(f"mixtures must be an int >= 1, got {mixtures!r}")


def params_per_dim(output: str, levels: int, mixtures: int) -> int:
    """Network outputs per dimension: ``levels`` logits or ``3 * mixtures`` mixture parameters."""
    return levels if output == "categorical" else 3 * mixtures


def _mixture_parts(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(..., 3M) -> log mixture weights, means (around the grid's centre 0.5) and log-scales."""
    logits, means, log_scales = params.chunk(3, dim=-1)
    return F.log_softmax(logits, dim=-1), means + 0.5, log_scales


def log_pmf(params: torch.Tensor, output: str, levels: int) -> torch.Tensor:
    """Log-mass of every level: params (..., P) -> (..., levels), normalised over the last dim."""
    if output == "categorical":
        return F.log_softmax(params, dim=-1)
    log_w, means, log_scales = _mixture_parts(params)
    grid = torch.arange(levels, device=params.device, dtype=params.dtype) / (levels - 1)
    per_component = discretized_logistic_log_prob(grid[:, None], means[..., None, :], log_scales[..., None, :],
                                                  levels)  # (..., levels, M)
    return torch.logsumexp(per_component + log_w[..., None, :], dim=-1)


def log_prob_of(params: torch.Tensor, target: torch.Tensor, output: str, levels: int) -> torch.Tensor:
    """Log-mass of integer ``target`` levels (...,) under ``params`` (..., P): shape (...,)."""
    if output == "categorical":
        return F.log_softmax(params, dim=-1).gather(-1, target[..., None]).squeeze(-1)
    log_w, means, log_scales = _mixture_parts(params)
    x = (target.to(params.dtype) / (levels - 1))[..., None]
    return torch.logsumexp(log_w + discretized_logistic_log_prob(x, means, log_scales, levels), dim=-1)


def draw(params: torch.Tensor, u: torch.Tensor, output: str, levels: int) -> torch.Tensor:
    """The level (int64 (...)) drawn with uniforms ``u`` (...) from output parameters (..., P).

    The rule is :func:`fastgen.reference.steps.categorical_draw` (the fused samplers' kernels
    draw with it too). A categorical output draws from its logits as they are (the draw
    normalises them; a log-softmax first would round them differently from the fused samplers,
    which skip it)."""
    return categorical_draw(params if output == "categorical" else log_pmf(params, output, levels), u)


def use_fused(fused: bool | None, why_not: str | None, sampler: str, caller: str, log: logging.Logger) -> bool:
    """Whether cached sampling runs the fused ``sampler``: ``fused`` None takes it where it can run
    (``why_not`` is None) and logs why not otherwise, True insists (raises if it cannot run),
    False declines (the per-layer step ops)."""
    if fused is not None:
        check_flag(fused, "fused")
    if fused and why_not:
        raise ValueError(f"fused=True, but the {sampler} cannot run here: {why_not}")
    if fused is None and why_not:
        log.info("%s: %s; sampling with the per-layer step ops", caller, why_not)
    return why_not is None and fused is not False


def check_method(method: object, **cached_only: object) -> str:
    """``method`` must be a sampling method; options of cached sampling (``cached_only``, e.g.
    fused=True) set with method="naive" are a contradiction, not something to ignore."""
    if method not in SAMPLING_METHODS:
        raise ValueError(f"method must be one of {SAMPLING_METHODS}, got {method!r}")
    for name, value in cached_only.items():
        if method == "naive" and value:
            raise ValueError(f"{name}={value!r} applies to method=\"cached\" (the naive sampler has no {name} form)")
    return method  # type: ignore[return-value]


def uniforms_for(uniforms: torch.Tensor | None, shape: tuple[int, ...], device: torch.device,
                 dtype: torch.dtype, generator: torch.Generator | None) -> torch.Tensor:
    """The uniforms of a sampling run: the given ones (checked) or fresh draws from ``generator``."""
    if uniforms is None:
        return torch.rand(shape, generator=check_generator(generator), device=device, dtype=dtype)
    if not isinstance(uniforms, torch.Tensor) or not uniforms.is_floating_point():
        raise TypeError(f"uniforms must be a floating-point tensor of shape {shape}, got "
                        f"{type(uniforms).__name__ if not isinstance(uniforms, torch.Tensor) else uniforms.dtype}")
    if tuple(uniforms.shape) != tuple(shape):
        raise ValueError(f"uniforms must have shape {tuple(shape)} (one per categorical draw), "
                         f"got {tuple(uniforms.shape)}")
    if not bool(((uniforms >= 0) & (uniforms <= 1)).all()):  # written so that NaN fails too
        raise ValueError("uniforms must lie in [0, 1] (no NaN)")
    return uniforms.to(device=device, dtype=dtype)


def check_count(n: object, name: str = "n") -> int:
    """``n`` must be a Python int >= 1 (a ValueError names ``name``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be an int >= 1, got {n!r}")
    return n


def check_levels(levels: object) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or not 2 <= levels <= 65536:
        raise ValueError(f"levels must be an int in [2, 65536], got {levels!r}")
    return levels


def head_on_vectors(hidden: torch.nn.Module, out: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The output head (ReLU - 1x1 conv ``hidden`` - ReLU - 1x1 conv ``out``) on feature vectors
    h (N, C), as the samplers need it one position at a time: (N, C_out)."""
    hidden_h = F.linear(F.relu(h), hidden.weight.flatten(1), hidden.bias)
    return F.linear(F.relu(hidden_h), out.weight.flatten(1), out.bias)


def class_one_hot(y: object, n: int, num_classes: int | None, device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor | None:
    """The (n, num_classes) one-hot conditioning of labels ``y`` (checked), None for an unconditional model."""
    if num_classes is None:
        if y is not None:
            raise ValueError("y must be None: this model was built without num_classes")
        return None
    if y is None:
        raise ValueError(f"y is required: this model is class-conditional (num_classes={num_classes}); "
                         f"pass an int64 tensor of {n} labels")
    if isinstance(y, int) and not isinstance(y, bool):
        y = torch.full((n,), y, dtype=torch.int64)
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or tuple(y.shape) != (n,):
        raise ValueError(f"y must be an int or an int64 tensor of shape ({n},), got "
                         f"{y.dtype if isinstance(y, torch.Tensor) else type(y).__name__}"
                         f"{tuple(y.shape) if isinstance(y, torch.Tensor) else ''}")
    if bool(((y < 0) | (y >= num_classes)).any()):
        raise ValueError(f"y must hold labels in [0, {num_classes - 1}]")
    return F.one_hot(y.to(device), num_classes).to(dtype)
