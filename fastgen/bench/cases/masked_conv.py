"""Benchmark cases of the PixelCNN masked convolution: masked_conv2d.

``eager`` is what users write today, ``F.conv2d(x, w * mask, b, padding=(KH // 2 * dilation,
KW // 2 * dilation), dilation=dilation, groups=groups)`` with the mask a precomputed buffer
(``fastgen.reference.masked_conv2d_mask``), in the input's dtype: the full convolution (cuDNN on
a GPU), masked taps included; ``compiled`` is torch.compile of it; ``fastgen`` computes the kept
taps only. Besides GB/s the table shows achieved TFLOP/s over the *useful* FLOPs, the
multiply-adds of the kept (unmasked) weight entries only, the same count for every implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from fastgen import ops, reference
from fastgen.bench.cases._common import asked_grads, family_cases, layer_case
from fastgen.bench.harness import FORWARD_BACKWARD, BenchCase, CaseSpec, register_cases
from fastgen.bench.registry import triton_kernels


class Shape(NamedTuple):
    n: int
    c_in: int
    c_out: int
    h: int
    w: int
    kh: int
    kw: int
    mask_type: str
    dilation: int = 1
    groups: int = 1
    color_channels: int = 1
    channels_last: bool = False  # x (and so y, grad_x) channels-last

    @property
    def label(self) -> str:
        extra = "".join([f" d{self.dilation}" if self.dilation > 1 else "",
                         f" g{self.groups}" if self.groups > 1 else "",
                         f" rgb{self.color_channels}" if self.color_channels > 1 else "",
                         " channels-last" if self.channels_last else ""])
        return (f"{self.n}x{self.c_in}x{self.h}x{self.w}->{self.c_out} {self.kh}x{self.kw} "
                f"mask-{self.mask_type}{extra}")

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.c_out, self.c_in // self.groups, self.kh, self.kw)


# PixelCNN on MNIST-sized images: a mask-B 3x3 residual layer (64 -> 64 channels) and the
# mask-A 7x7 first layer (1 -> 64), then the residual layer on a channels-last input (where the
# reference convolution runs oneDNN's NHWC kernels). The first is the --quick case.
SHAPES = (
    Shape(32, 64, 64, 28, 28, 3, 3, "B"),
    Shape(32, 1, 64, 28, 28, 7, 7, "A"),
    Shape(32, 64, 64, 28, 28, 3, 3, "B", channels_last=True),
)


def eager_masked_conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, mask_type: str,
                        dilation: int, groups: int, color_channels: int) -> torch.Tensor:
    padding = (w.shape[2] // 2 * dilation, w.shape[3] // 2 * dilation)
    return F.conv2d(x, w * mask, b, padding=padding, dilation=dilation, groups=groups)


def fastgen_masked_conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, mask: torch.Tensor,
                          mask_type: str, dilation: int, groups: int, color_channels: int) -> torch.Tensor:
    return ops.masked_conv2d(x, w, b, mask_type=mask_type, dilation=dilation, groups=groups,
                             color_channels=color_channels)


def _triton_module() -> Any | None:
    return triton_kernels("masked_conv")


class _TritonMaskedConv2d(torch.autograd.Function):
    """Autograd around the raw Triton kernels, so fastgen-triton runs forward+backward too."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, mask_type: str, dilation: int,
                groups: int, color_channels: int) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.options = (mask_type, dilation, groups, color_channels)
        return _triton_module().masked_conv2d(x, w, b, mask_type, dilation, groups, color_channels)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> Any:
        x, w = ctx.saved_tensors
        needs = list(ctx.needs_input_grad[:3])
        grads = _triton_module().masked_conv2d_backward(grad_y, x, w, *ctx.options, needs)
        return asked_grads(grads, needs, 4)


def triton_masked_conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, mask: torch.Tensor,
                         mask_type: str, dilation: int, groups: int, color_channels: int) -> torch.Tensor:
    return _TritonMaskedConv2d.apply(x, w, b, mask_type, dilation, groups, color_channels)


def _mask(shape: Shape) -> torch.Tensor:
    return reference.masked_conv2d_mask(shape.weight_shape, shape.mask_type, shape.color_channels,
                                        shape.groups)


def _inputs(shape: Shape, dtype: torch.dtype) -> Callable[[torch.device], tuple]:
    def make(device: torch.device) -> tuple:
        fan_in = shape.c_in // shape.groups * shape.kh * shape.kw
        x = torch.randn(shape.n, shape.c_in, shape.h, shape.w, device=device).to(dtype)
        if shape.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        w = (torch.randn(shape.weight_shape, device=device) / fan_in ** 0.5).to(dtype)
        b = (0.1 * torch.randn(shape.c_out, device=device)).to(dtype)
        mask = _mask(shape).to(device=device, dtype=dtype)  # a buffer, built once
        return x, w, b, mask, shape.mask_type, shape.dilation, shape.groups, shape.color_channels

    return make


def useful_flops(shape: Shape, mode: str) -> int:
    """2 * N * H * W * (kept weight entries): one multiply-add per kept tap, channel pair and
    output pixel (forward); the backward's grad_x and grad_weight cost as much each (x3)."""
    forward = 2 * shape.n * shape.h * shape.w * int(_mask(shape).sum().item())
    return 3 * forward if mode == FORWARD_BACKWARD else forward


def _cases(shape: Shape, dtype: torch.dtype, mode: str, triton: bool) -> list[BenchCase]:
    # Minimum traffic: forward reads x, w, b and writes y; the backward also reads grad_y and x
    # and writes grad_x, plus the weight-sized gradients.
    x_size = shape.n * shape.c_in * shape.h * shape.w
    y_size = shape.n * shape.c_out * shape.h * shape.w
    activations = (3 * x_size + 2 * y_size) if mode == FORWARD_BACKWARD else (x_size + y_size)
    weight_size = shape.c_out * shape.c_in // shape.groups * shape.kh * shape.kw
    params = (3 if mode == FORWARD_BACKWARD else 1) * (weight_size + shape.c_out)
    # grad_weight and grad_bias sum N*H*W = 25088 products: a different but equally exact
    # summation order differs by ~1e-4 absolute in float32.
    return [
        layer_case("masked_conv2d", shape.label, dtype, mode, make_inputs=_inputs(shape, dtype),
                   eager=eager_masked_conv2d, fastgen=fastgen_masked_conv2d,
                   triton=triton_masked_conv2d if triton else None, elements_moved=activations + params,
                   grad_args=(0, 1, 2), gradient_atol=2e-3, flops=useful_flops(shape, mode))
    ]


@register_cases("masked_conv")
def masked_conv_cases(spec: CaseSpec) -> list[BenchCase]:
    """Mask-B 3x3 64->64 (NCHW and channels-last) and mask-A 7x7 1->64 on (32, C, 28, 28), forward
    and forward+backward;
    fp32 on CPU, fp32/bf16/fp16 on a GPU (plus fastgen-triton there). ``--quick``: the mask-B
    shape only, one dtype."""
    return family_cases(spec, "masked_conv", SHAPES[:1] if spec.quick else SHAPES, _cases)
