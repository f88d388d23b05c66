"""Fake kernels, autograd and the Triton GPU fallback of the flow ops.

Each op returns ``(output, logdet)`` (additive_coupling only ``output``); the backward ops take
the inputs (recomputing the cheap elementwise terms is faster than saving them) and return the
gradient of each differentiable input.
"""

from __future__ import annotations

import torch

from fastgen import _ext
from fastgen.ops import _dispatch

TRITON_MODULE = "fastgen.triton_kernels.flows"
FLOW_OPS = ["affine_coupling", "affine_coupling_backward", "additive_coupling", "actnorm", "actnorm_backward",
            "invertible_conv1x1", "invertible_conv1x1_backward"]
# invertible_conv1x1 is a GEMM: its compiled kernel calls ATen (cuBLAS on a GPU), so no Triton.
TRITON_OPS = [name for name in FLOW_OPS if not name.startswith("invertible_conv1x1")]


def _logdet_like(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty((x.shape[0],), dtype=_dispatch.accumulation_dtype(x.dtype))


def _like(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t, memory_format=torch.contiguous_format)


def _register_fakes() -> None:
    lib = torch.library

    @lib.register_fake("fastgen::affine_coupling")
    def _(x, shift, log_scale, reverse, scale, clamp):
        return _like(x), _logdet_like(x)

    @lib.register_fake("fastgen::affine_coupling_backward")
    def _(grad_y, grad_logdet, x, shift, log_scale, reverse, scale, clamp):
        return _like(x), _like(shift), _like(log_scale)

    @lib.register_fake("fastgen::additive_coupling")
    def _(x, shift, reverse):
        return _like(x)

    @lib.register_fake("fastgen::actnorm")
    def _(x, bias, log_scale, reverse):
        return _like(x), _logdet_like(x)

    @lib.register_fake("fastgen::actnorm_backward")
    def _(grad_y, grad_logdet, x, bias, log_scale, reverse):
        return _like(x), _like(bias), _like(log_scale)

    @lib.register_fake("fastgen::invertible_conv1x1")
    def _(x, matrix, logabsdet, reverse):
        return _like(x), _logdet_like(x)

    @lib.register_fake("fastgen::invertible_conv1x1_backward")
    def _(grad_y, grad_logdet, x, matrix, reverse, output_mask):
        def empty():  # a fresh tensor each: outputs must not alias
            return x.new_empty((0,))

        return (_like(x) if output_mask[0] else empty(), _like(matrix) if output_mask[1] else empty(),
                matrix.new_empty(()) if output_mask[2] else empty())


# ---------------------------------------------------------------- autograd
def _save_inputs(ctx, inputs, output) -> None:
    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    ctx.save_for_backward(*tensors)
    ctx.options = [t for t in inputs if not isinstance(t, torch.Tensor)]


def _affine_backward(ctx, grad_y, grad_logdet):
    x, shift, log_scale = ctx.saved_tensors
    grads = torch.ops.fastgen.affine_coupling_backward(grad_y, grad_logdet, x, shift, log_scale, *ctx.options)
    return (*grads, None, None, None)


def _additive_backward(ctx, grad_y):
    (reverse,) = ctx.options
    return grad_y, (-grad_y if reverse else grad_y), None


def _actnorm_backward(ctx, grad_y, grad_logdet):
    x, bias, log_scale = ctx.saved_tensors
    grads = torch.ops.fastgen.actnorm_backward(grad_y, grad_logdet, x, bias, log_scale, *ctx.options)
    return (*grads, None)


def _conv1x1_backward(ctx, grad_y, grad_logdet):
    x, matrix, _logabsdet = ctx.saved_tensors
    need = list(ctx.needs_input_grad[:3])
    if not any(need):
        return None, None, None, None
    grads = torch.ops.fastgen.invertible_conv1x1_backward(grad_y, grad_logdet, x, matrix, *ctx.options, need)
    return (*(g if n else None for g, n in zip(grads, need)), None)


def _register_autograd() -> None:
    def save_additive(ctx, inputs, output):
        ctx.options = [inputs[2]]

    register = torch.library.register_autograd
    register("fastgen::affine_coupling", _affine_backward, setup_context=_save_inputs)
    register("fastgen::additive_coupling", _additive_backward, setup_context=save_additive)
    register("fastgen::actnorm", _actnorm_backward, setup_context=_save_inputs)
    register("fastgen::invertible_conv1x1", _conv1x1_backward, setup_context=_save_inputs)


def register() -> None:
    if _ext.check_ops(FLOW_OPS):
        _register_fakes()
        _register_autograd()
        _dispatch.register_triton_for_cuda({name: TRITON_MODULE for name in TRITON_OPS})
    _dispatch.record_kernels(FLOW_OPS)
