"""Benchmark cases of the Gated PixelCNN layer: gated_pixelcnn_layer.

``eager`` is what users write today, ``fastgen.reference.gated_pixelcnn_layer``: ``F.pad`` +
``F.conv2d`` for the vertical and horizontal stacks, the one-row shift of the vertical
pre-activation, a 1x1 link, two tanh * sigmoid gates, the 1x1 output projection and the
residual, about a dozen passes over (N, 2C, H, W) maps; ``compiled`` is torch.compile of it;
``fastgen`` (:func:`fastgen.ops.gated_pixelcnn_layer`) computes the layer fused, keeping only
the two gate pre-activations for the backward pass. Besides GB/s the table shows achieved
TFLOP/s over the useful FLOPs, the multiply-adds of the four convolutions (the ignored
horizontal tap of mask "A" not counted), the same count for every implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from fastgen import ops, reference
from fastgen.bench.cases._common import asked_grads, family_cases, layer_case
from fastgen.bench.harness import FORWARD_BACKWARD, BenchCase, CaseSpec, register_cases
from fastgen.bench.registry import triton_kernels

# Inputs: v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res (all differentiated), mask_type.
GRAD_ARGS = tuple(range(10))


class Shape(NamedTuple):
    n: int
    c_in: int
    c: int
    h: int
    w: int
    kernel_size: int
    mask_type: str

    @property
    def label(self) -> str:
        return (f"{self.n}x{self.c_in}x{self.h}x{self.w}->{self.c} {self.kernel_size}x{self.kernel_size} "
                f"mask-{self.mask_type}")

    @property
    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        k, two_c = self.kernel_size // 2, 2 * self.c
        return {"w_v": (two_c, self.c_in, k + 1, self.kernel_size), "w_h": (two_c, self.c_in, 1, k + 1),
                "w_v2h": (two_c, two_c), "w_res": (self.c, self.c)}

    @property
    def horizontal_taps(self) -> int:
        """Taps of the horizontal stack in use: k + 1, or k for mask "A" (no current pixel)."""
        k = self.kernel_size // 2
        return k + 1 if self.mask_type == "B" else k


# A Gated PixelCNN layer with 64 channels on MNIST-sized images, 3x3, mask B (the issue's
# case; also the --quick one).
SHAPES = (Shape(32, 64, 64, 28, 28, 3, "B"),)


def eager_gated_pixelcnn_layer(v: torch.Tensor, h: torch.Tensor, w_v: torch.Tensor, b_v: torch.Tensor,
                               w_h: torch.Tensor, b_h: torch.Tensor, w_v2h: torch.Tensor, b_v2h: torch.Tensor,
                               w_res: torch.Tensor, b_res: torch.Tensor, mask_type: str
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    return reference.gated_pixelcnn_layer(v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res, mask_type)


def fastgen_gated_pixelcnn_layer(v: torch.Tensor, h: torch.Tensor, w_v: torch.Tensor, b_v: torch.Tensor,
                                 w_h: torch.Tensor, b_h: torch.Tensor, w_v2h: torch.Tensor, b_v2h: torch.Tensor,
                                 w_res: torch.Tensor, b_res: torch.Tensor, mask_type: str
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    return ops.gated_pixelcnn_layer(v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res, mask_type=mask_type)


def _triton_module() -> Any | None:
    return triton_kernels("gated_pixelcnn")


class _TritonGatedPixelCNNLayer(torch.autograd.Function):
    """Autograd around the raw Triton kernels, so fastgen-triton runs forward+backward too."""

    @staticmethod
    def forward(ctx: Any, v: torch.Tensor, h: torch.Tensor, w_v: torch.Tensor, b_v: torch.Tensor,
                w_h: torch.Tensor, b_h: torch.Tensor, w_v2h: torch.Tensor, b_v2h: torch.Tensor,
                w_res: torch.Tensor, b_res: torch.Tensor, mask_type: str) -> tuple[torch.Tensor, torch.Tensor]:
        save = any(ctx.needs_input_grad[:10])
        v_out, h_out, v_pre, h_pre = _triton_module().gated_pixelcnn_layer(
            v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res, mask_type, None, None, None, save)
        ctx.save_for_backward(v, h, v_pre, h_pre, w_v, w_h, w_v2h, w_res)
        ctx.mask_type = mask_type
        return v_out, h_out

    @staticmethod
    def backward(ctx: Any, grad_v_out: torch.Tensor, grad_h_out: torch.Tensor) -> Any:
        v, h, v_pre, h_pre, w_v, w_h, w_v2h, w_res = ctx.saved_tensors
        grads = _triton_module().gated_pixelcnn_layer_backward(
            grad_v_out.contiguous(), grad_h_out.contiguous(), v, h, v_pre, h_pre, w_v, w_h, w_v2h, w_res,
            ctx.mask_type, None, None, None)
        return asked_grads(grads[:10], ctx.needs_input_grad[:10], 1)


def triton_gated_pixelcnn_layer(v: torch.Tensor, h: torch.Tensor, w_v: torch.Tensor, b_v: torch.Tensor,
                                w_h: torch.Tensor, b_h: torch.Tensor, w_v2h: torch.Tensor, b_v2h: torch.Tensor,
                                w_res: torch.Tensor, b_res: torch.Tensor, mask_type: str
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    return _TritonGatedPixelCNNLayer.apply(v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res, mask_type)


def _inputs(shape: Shape, dtype: torch.dtype) -> Callable[[torch.device], tuple]:
    def make(device: torch.device) -> tuple:
        def activation() -> torch.Tensor:
            return torch.randn(shape.n, shape.c_in, shape.h, shape.w, device=device).to(dtype)

        def weight(name: str) -> torch.Tensor:
            size = shape.weight_shapes[name]
            fan_in = 1
            for d in size[1:]:
                fan_in *= d
            return (torch.randn(size, device=device) / fan_in ** 0.5).to(dtype)

        def bias(size: int) -> torch.Tensor:
            return (0.1 * torch.randn(size, device=device)).to(dtype)

        two_c = 2 * shape.c
        return (activation(), activation(), weight("w_v"), bias(two_c), weight("w_h"), bias(two_c),
                weight("w_v2h"), bias(two_c), weight("w_res"), bias(shape.c), shape.mask_type)

    return make


def useful_flops(shape: Shape, mode: str) -> int:
    """2 * N * H * W * (multiply-adds per pixel of the vertical (2C x C_in x (k+1) x n), horizontal
    (2C x C_in x used taps), link (2C x 2C) and output (C x C) convolutions); the gates and
    additions are not counted. The backward's input and weight gradients cost as much each (x3)."""
    k = shape.kernel_size // 2
    two_c = 2 * shape.c
    per_pixel = (two_c * shape.c_in * ((k + 1) * shape.kernel_size + shape.horizontal_taps)
                 + two_c * two_c + shape.c * shape.c)
    forward = 2 * shape.n * shape.h * shape.w * per_pixel
    return 3 * forward if mode == FORWARD_BACKWARD else forward


def _cases(shape: Shape, dtype: torch.dtype, mode: str, triton: bool) -> list[BenchCase]:
    # Minimum traffic: forward reads v, h and the parameters and writes v_out, h_out; the
    # backward also reads grad_v_out, grad_h_out, v and h and writes grad_v, grad_h, plus the
    # parameter-sized gradients. (The fused op's saved pre-activations are not counted.)
    x_size = shape.n * shape.c_in * shape.h * shape.w
    y_size = shape.n * shape.c * shape.h * shape.w
    activations = (2 * x_size + 2 * y_size) + ((4 * x_size + 2 * y_size) if mode == FORWARD_BACKWARD else 0)
    weight_size = sum(torch.Size(s).numel() for s in shape.weight_shapes.values())
    params = (3 if mode == FORWARD_BACKWARD else 1) * (weight_size + 3 * 2 * shape.c + shape.c)
    # The weight and bias gradients sum N*H*W = 25088 products (values in the hundreds): in
    # float32 the reference's own error is up to ~9e-4 absolute (w_v, against float64), so a
    # different but equally exact summation order needs the 2e-3.
    return [
        layer_case("gated_pixelcnn_layer", shape.label, dtype, mode, make_inputs=_inputs(shape, dtype),
                   eager=eager_gated_pixelcnn_layer, fastgen=fastgen_gated_pixelcnn_layer,
                   triton=triton_gated_pixelcnn_layer if triton else None,
                   elements_moved=activations + params, grad_args=GRAD_ARGS, gradient_atol=2e-3,
                   flops=useful_flops(shape, mode))
    ]


@register_cases("pixelcnn")
def pixelcnn_cases(spec: CaseSpec) -> list[BenchCase]:
    """A 64-channel 3x3 mask-B Gated PixelCNN layer on (32, 64, 28, 28), no conditioning, forward
    and forward+backward; fp32 on CPU, fp32/bf16/fp16 on a GPU (plus fastgen-triton there).
    ``--quick``: the same shape, one dtype."""
    return family_cases(spec, "gated_pixelcnn", SHAPES, _cases)
