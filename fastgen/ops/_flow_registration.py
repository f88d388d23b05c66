"""Fake kernels, autograd and the Triton GPU fallback of the flow ops.

Each op returns ``(output, logdet)`` (additive_coupling only ``output``); the backward ops take
the inputs (recomputing the cheap elementwise terms is faster than saving them) and return the
gradient of each differentiable input. Their autograd is registered in C++ (see COMPILED_AUTOGRAD).
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
# Every flow op has its autograd in C++ (csrc/flow_autograd.cpp): on Glow-sized tensors the
# Python wrapper of torch.library.register_autograd cost more than these kernels.
COMPILED_AUTOGRAD = ("affine_coupling", "additive_coupling", "actnorm", "invertible_conv1x1")


def register() -> None:
    ready = _ext.check_ops(FLOW_OPS, COMPILED_AUTOGRAD)
    if ready:
        _register_fakes()
        _dispatch.register_triton_for_cuda({name: TRITON_MODULE for name in TRITON_OPS})
    # A stale extension (an op or its C++ autograd missing): the whole family runs the reference.
    _dispatch.record_kernels(FLOW_OPS if ready else [])
