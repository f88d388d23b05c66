"""Fake kernels, autograd and the Triton GPU fallback for the convolution op family.

Each ``*_backward`` op returns ``(grad_x, grad_weight, grad_bias)``; an output whose
``output_mask`` entry is false comes back as an empty ``(0,)`` tensor (never computed), so the
autograd formula only asks for the gradients that are needed.
"""

from __future__ import annotations

import torch

from fastgen import _ext
from fastgen._layout import layout_of
from fastgen.ops import _dispatch

# op name -> the Triton module that implements it for CUDA (when no compiled kernel does)
TRITON_MODULES = {
    "causal_conv1d": "fastgen.triton_kernels.conv",
    "causal_conv1d_backward": "fastgen.triton_kernels.conv",
    "masked_conv2d": "fastgen.triton_kernels.masked_conv",
    "masked_conv2d_backward": "fastgen.triton_kernels.masked_conv",
}
CONV_OPS = list(TRITON_MODULES)


def _register_fakes() -> None:
    lib = torch.library

    def maybe_like(flag, like, x, layout=torch.contiguous_format):
        return torch.empty_like(like, memory_format=layout) if flag else x.new_empty((0,))

    def gradients(output_mask, x, weight, x_layout=torch.contiguous_format):
        return (maybe_like(output_mask[0], x, x, x_layout), maybe_like(output_mask[1], weight, x),
                x.new_empty((weight.shape[0],)) if output_mask[2] else x.new_empty((0,)))

    @lib.register_fake("fastgen::causal_conv1d")
    def _(x, weight, bias, dilation):
        return x.new_empty((x.shape[0], weight.shape[0], x.shape[2]))

    @lib.register_fake("fastgen::causal_conv1d_backward")
    def _(grad_y, x, weight, dilation, output_mask):
        return gradients(output_mask, x, weight)

    @lib.register_fake("fastgen::masked_conv2d")
    def _(x, weight, bias, mask_type, dilation, groups, color_channels):
        y = x.new_empty((x.shape[0], weight.shape[0], x.shape[2], x.shape[3]))
        return y.contiguous(memory_format=layout_of(x))

    @lib.register_fake("fastgen::masked_conv2d_backward")
    def _(grad_y, x, weight, mask_type, dilation, groups, color_channels, output_mask):
        return gradients(output_mask, x, weight, layout_of(x))


def _setup_context(ctx, inputs, output) -> None:
    # Every op of the family is (x, weight, bias, *int/str options).
    x, weight, bias, *options = inputs
    ctx.save_for_backward(x, weight)
    ctx.options = options
    ctx.has_bias = bias is not None


def _backward_of(backward_op):
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = ctx.has_bias and ctx.needs_input_grad[2]
        no_grads = (None,) * (3 + len(ctx.options))
        if not (need_x or need_w or need_b):
            return no_grads
        grad_x, grad_w, grad_b = backward_op(grad_y, x, weight, *ctx.options, [need_x, need_w, need_b])
        return (grad_x if need_x else None, grad_w if need_w else None, grad_b if need_b else None,
                *no_grads[3:])

    return backward


def _register_autograd() -> None:
    for name in ("causal_conv1d", "masked_conv2d"):
        backward_op = getattr(torch.ops.fastgen, f"{name}_backward")
        backward = _dispatch.once_differentiable(name)(_backward_of(backward_op))
        torch.library.register_autograd(f"fastgen::{name}", backward, setup_context=_setup_context)


def register() -> None:
    if _ext.check_ops(CONV_OPS):
        _register_fakes()
        _register_autograd()
        _dispatch.register_triton_for_cuda(TRITON_MODULES)
    _dispatch.record_kernels(CONV_OPS)
