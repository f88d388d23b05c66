"""Benchmark cases of the WaveNet family: wavenet_layer (one whole residual layer).

``eager`` is what users write today, ``fastgen.reference.wavenet_layer``: a padded copy of x,
the dilated convolution, a split, tanh, sigmoid, their product, two 1x1 convolutions and the
bias and residual additions, each a pass over a long sequence; ``compiled`` is torch.compile of
it; ``fastgen`` (:func:`fastgen.ops.wavenet_layer`) runs the layer per time tile, keeping only
the gate pre-activation for the backward pass. Besides GB/s the table shows achieved TFLOP/s
over the useful FLOPs (the multiply-adds of the three convolutions), the same count for every
implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from fastgen import ops, reference
from fastgen.bench.cases._common import asked_grads, family_cases, layer_case
from fastgen.bench.harness import FORWARD_BACKWARD, BenchCase, CaseSpec, register_cases
from fastgen.bench.registry import triton_kernels

# Inputs: x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip (all differentiated), dilation.
GRAD_ARGS = tuple(range(7))


class Shape(NamedTuple):
    n: int
    c_res: int
    t: int
    c_gate: int
    c_skip: int
    k: int
    dilation: int

    @property
    def label(self) -> str:
        return (f"{self.n}x{self.c_res}x{self.t} gate{self.c_gate} skip{self.c_skip} "
                f"k{self.k} d{self.dilation}")

    @property
    def macs_per_step(self) -> int:
        """Multiply-adds per time step and batch element: dilated conv, residual and skip 1x1s."""
        half = self.c_gate // 2
        return self.c_gate * self.c_res * self.k + self.c_res * half + self.c_skip * half

    @property
    def parameters(self) -> int:
        half = self.c_gate // 2
        return (self.c_gate * self.c_res * self.k + self.c_gate + self.c_res * half + self.c_res
                + self.c_skip * half + self.c_skip)


# A residual layer deep in a WaveNet stack: 64 residual channels, 128 gate channels (64 after
# the gate), 256 skip channels, kernel 2 at dilation 8, one second of 16 kHz audio, batch 16.
HEADLINE = Shape(16, 64, 16000, 128, 256, 2, 8)
QUICK = HEADLINE._replace(t=4000)


def eager_wavenet_layer(x: torch.Tensor, w_dilated: torch.Tensor, b_dilated: torch.Tensor, w_res: torch.Tensor,
                        b_res: torch.Tensor, w_skip: torch.Tensor, b_skip: torch.Tensor, dilation: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    return reference.wavenet_layer(x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation)


def fastgen_wavenet_layer(x: torch.Tensor, w_dilated: torch.Tensor, b_dilated: torch.Tensor, w_res: torch.Tensor,
                          b_res: torch.Tensor, w_skip: torch.Tensor, b_skip: torch.Tensor, dilation: int
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    return ops.wavenet_layer(x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation=dilation)


def _triton_module() -> Any | None:
    return triton_kernels("wavenet")


class _TritonWavenetLayer(torch.autograd.Function):
    """Autograd around the raw Triton kernels, so fastgen-triton runs forward+backward too."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_dilated: torch.Tensor, b_dilated: torch.Tensor, w_res: torch.Tensor,
                b_res: torch.Tensor, w_skip: torch.Tensor, b_skip: torch.Tensor, dilation: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        save = any(ctx.needs_input_grad[:7])
        residual, skip, h = _triton_module().wavenet_layer(x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip,
                                                           dilation, None, None, save)
        ctx.save_for_backward(x, h, w_dilated, w_res, w_skip)
        ctx.dilation = dilation
        return residual, skip

    @staticmethod
    def backward(ctx: Any, grad_residual: torch.Tensor, grad_skip: torch.Tensor) -> Any:
        x, h, w_dilated, w_res, w_skip = ctx.saved_tensors
        grads = _triton_module().wavenet_layer_backward(grad_residual.contiguous(), grad_skip.contiguous(), x, h,
                                                        w_dilated, w_res, w_skip, ctx.dilation, None, None)
        return asked_grads(grads[:7], ctx.needs_input_grad[:7], 1)


def triton_wavenet_layer(x: torch.Tensor, w_dilated: torch.Tensor, b_dilated: torch.Tensor, w_res: torch.Tensor,
                         b_res: torch.Tensor, w_skip: torch.Tensor, b_skip: torch.Tensor, dilation: int
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    return _TritonWavenetLayer.apply(x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation)


def _inputs(shape: Shape, dtype: torch.dtype) -> Callable[[torch.device], tuple]:
    def make(device: torch.device) -> tuple:
        half = shape.c_gate // 2

        def weight(*size: int) -> torch.Tensor:
            fan_in = 1
            for d in size[1:]:
                fan_in *= d
            return (torch.randn(size, device=device) / fan_in ** 0.5).to(dtype)

        def bias(size: int) -> torch.Tensor:
            return (0.1 * torch.randn(size, device=device)).to(dtype)

        x = torch.randn(shape.n, shape.c_res, shape.t, device=device).to(dtype)
        return (x, weight(shape.c_gate, shape.c_res, shape.k), bias(shape.c_gate), weight(shape.c_res, half),
                bias(shape.c_res), weight(shape.c_skip, half), bias(shape.c_skip), shape.dilation)

    return make


def useful_flops(shape: Shape, mode: str) -> int:
    """2 * N * T * (multiply-adds per step of the dilated, residual and skip convolutions); the
    gate and additions are not counted. The backward's input and weight gradients cost as much
    each (x3)."""
    forward = 2 * shape.n * shape.t * shape.macs_per_step
    return 3 * forward if mode == FORWARD_BACKWARD else forward


def _cases(shape: Shape, dtype: torch.dtype, mode: str, triton: bool) -> list[BenchCase]:
    # Minimum traffic: forward reads x and the parameters and writes residual and skip; the
    # backward also reads grad_residual, grad_skip and x and writes grad_x, plus the
    # parameter-sized gradients. (The fused op's saved pre-activation is not counted.)
    steps = shape.n * shape.t
    activations = steps * (2 * shape.c_res + shape.c_skip)
    if mode == FORWARD_BACKWARD:
        activations += steps * (3 * shape.c_res + shape.c_skip)
    params = (3 if mode == FORWARD_BACKWARD else 1) * shape.parameters
    # The weight and bias gradients sum N*T = 256000 products (values up to ~2000): in float32
    # the reference's own error is up to ~2e-2 absolute (grad_w_dilated, against float64;
    # fastgen's is ~1e-3), so the check needs the 3e-2.
    return [
        layer_case("wavenet_layer", shape.label, dtype, mode, make_inputs=_inputs(shape, dtype),
                   eager=eager_wavenet_layer, fastgen=fastgen_wavenet_layer,
                   triton=triton_wavenet_layer if triton else None, elements_moved=activations + params,
                   grad_args=GRAD_ARGS, gradient_atol=3e-2, flops=useful_flops(shape, mode))
    ]


@register_cases("wavenet")
def wavenet_cases(spec: CaseSpec) -> list[BenchCase]:
    """A WaveNet residual layer, x (16, 64, 16000), 128 gate and 256 skip channels, kernel 2 at
    dilation 8, no conditioning, forward and forward+backward; fp32 on CPU, fp32/bf16/fp16 on a
    GPU (plus fastgen-triton there). ``--quick``: T = 4000, one dtype."""
    return family_cases(spec, "wavenet", (QUICK if spec.quick else HEADLINE,), _cases)
