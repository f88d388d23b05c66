"""Benchmark cases of the convolution family: causal_conv1d (WaveNet's dilated causal conv).

``eager`` is what users write today, ``F.conv1d(F.pad(x, ((K - 1) * dilation, 0)), w, b,
dilation=dilation)`` (``fastgen.reference.causal_conv1d``), which allocates and writes the
padded copy of x on every call; ``compiled`` is torch.compile of it; ``fastgen`` reads x in
place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from fastgen import ops, reference
from fastgen.bench.cases._common import asked_grads, family_cases, layer_case
from fastgen.bench.harness import FORWARD_BACKWARD, BenchCase, CaseSpec, register_cases
from fastgen.bench.registry import triton_kernels

# (N, C, T, K, dilation): a WaveNet residual layer (64 channels, kernel 2) deep in a stack.
HEADLINE = (8, 64, 4096, 2, 4)
GPU_SHAPES = (HEADLINE, (16, 128, 16384, 2, 64))


def eager_causal_conv1d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, dilation: int) -> torch.Tensor:
    return reference.causal_conv1d(x, w, b, dilation)


def fastgen_causal_conv1d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, dilation: int) -> torch.Tensor:
    return ops.causal_conv1d(x, w, b, dilation=dilation)


def _triton_module() -> Any | None:
    return triton_kernels("conv")


class _TritonCausalConv1d(torch.autograd.Function):
    """Autograd around the raw Triton kernels, so fastgen-triton runs forward+backward too."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, dilation: int) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.dilation = dilation
        return _triton_module().causal_conv1d(x, w, b, dilation)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> Any:
        x, w = ctx.saved_tensors
        needs = list(ctx.needs_input_grad[:3])
        grads = _triton_module().causal_conv1d_backward(grad_y, x, w, ctx.dilation, needs)
        return asked_grads(grads, needs, 1)


def triton_causal_conv1d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, dilation: int) -> torch.Tensor:
    return _TritonCausalConv1d.apply(x, w, b, dilation)


def _inputs(n: int, c: int, t: int, k: int, dilation: int, dtype: torch.dtype
            ) -> Callable[[torch.device], tuple]:
    def make(device: torch.device) -> tuple:
        x = torch.randn(n, c, t, device=device).to(dtype)
        w = (torch.randn(c, c, k, device=device) / (c * k) ** 0.5).to(dtype)
        b = (0.1 * torch.randn(c, device=device)).to(dtype)
        return x, w, b, dilation

    return make


def _cases(shape: tuple[int, int, int, int, int], dtype: torch.dtype, mode: str, triton: bool
           ) -> list[BenchCase]:
    n, c, t, k, dilation = shape
    # Minimum traffic: forward reads x, w, b and writes y (2 NCT); the backward also reads
    # grad_y and x and writes grad_x (3 NCT more) plus the weight-sized gradients.
    activations = (5 if mode == FORWARD_BACKWARD else 2) * n * c * t
    params = (3 if mode == FORWARD_BACKWARD else 1) * (c * c * k + c)
    # grad_weight and grad_bias sum N*T products (values in the hundreds): a different but
    # equally exact summation order differs by ~1e-4 absolute in float32.
    return [
        layer_case("causal_conv1d", f"{n}x{c}x{t} k{k} d{dilation}", dtype, mode,
                   make_inputs=_inputs(n, c, t, k, dilation, dtype), eager=eager_causal_conv1d,
                   fastgen=fastgen_causal_conv1d, triton=triton_causal_conv1d if triton else None,
                   elements_moved=activations + params, grad_args=(0, 1, 2), gradient_atol=2e-3)
    ]


@register_cases("conv")
def conv_cases(spec: CaseSpec) -> list[BenchCase]:
    """(8, 64, 4096) x (64, 64, 2), dilation 4, fp32 forward and forward+backward everywhere; on
    a GPU also a long (16, 128, 16384) sequence at dilation 64 and bf16/fp16. ``--quick``: the
    headline shape only, one dtype."""
    shapes = (HEADLINE,) if spec.quick or spec.device.type != "cuda" else GPU_SHAPES
    return family_cases(spec, "conv", shapes, _cases)
