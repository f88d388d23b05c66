"""Fake kernels, autograd and the Triton GPU fallback for the convolution op family.

``causal_conv1d_backward`` returns ``(grad_x, grad_weight, grad_bias)``; an output whose
``output_mask`` entry is false comes back as an empty ``(0,)`` tensor (never computed), so the
autograd formula only asks for the gradients that are needed.
"""

from __future__ import annotations

import importlib
import logging

import torch

from fastgen import _ext
from fastgen.ops import _dispatch

_log = logging.getLogger(__name__)

CONV_OPS = [
    "causal_conv1d",
    "causal_conv1d_backward",
]


def _register_fakes() -> None:
    lib = torch.library

    @lib.register_fake("fastgen::causal_conv1d")
    def _(x, weight, bias, dilation):
        return x.new_empty((x.shape[0], weight.shape[0], x.shape[2]))

    @lib.register_fake("fastgen::causal_conv1d_backward")
    def _(grad_y, x, weight, dilation, output_mask):
        def maybe(flag, like):
            return torch.empty_like(like, memory_format=torch.contiguous_format) if flag else x.new_empty((0,))

        return (maybe(output_mask[0], x), maybe(output_mask[1], weight),
                x.new_empty((weight.shape[0],)) if output_mask[2] else x.new_empty((0,)))


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, dilation = inputs
    ctx.save_for_backward(x, weight)
    ctx.dilation = dilation
    ctx.has_bias = bias is not None


def _backward(ctx, grad_y):
    x, weight = ctx.saved_tensors
    need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    need_b = ctx.has_bias and ctx.needs_input_grad[2]
    if not (need_x or need_w or need_b):
        return None, None, None, None
    grad_x, grad_w, grad_b = torch.ops.fastgen.causal_conv1d_backward(
        grad_y, x, weight, ctx.dilation, [need_x, need_w, need_b])
    return (grad_x if need_x else None, grad_w if need_w else None, grad_b if need_b else None, None)


def _register_autograd() -> None:
    torch.library.register_autograd("fastgen::causal_conv1d", _backward, setup_context=_setup_context)


def _register_triton_for_cuda() -> None:
    """Use the Triton kernels as the CUDA implementation of every op without a compiled one.

    There is no CUDA kernel of this family in kernels/ yet, so even an extension built with
    CUDA gets Triton here (checked per op, so a later CUDA kernel takes over by itself).
    """
    if not torch.cuda.is_available():
        return
    missing = [name for name in CONV_OPS
               if not torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgen::{name}", "CUDA")]
    if not missing:
        return
    try:
        triton_conv = importlib.import_module("fastgen.triton_kernels.conv")
    except ImportError as error:
        _log.info("Triton unavailable (%s): CUDA tensors use the reference implementation", error)
        return
    for name in missing:
        torch.library.register_kernel(f"fastgen::{name}", "cuda", getattr(triton_conv, name))


def register() -> None:
    if _ext.available():
        _register_fakes()
        _register_autograd()
        _register_triton_for_cuda()
    _dispatch.record_kernels(CONV_OPS)
