"""Fake kernels of conv_conditioner (its autograd is registered in C++, csrc/flow_autograd.cpp).

The forward op returns ``(y, h1, h2)``: the hidden activations after their ReLUs, in (n, h, w)
row order, are what the backward takes (the ReLU masks come from them, and they are the inputs
of the second and third products), so nothing is recomputed but the small im2col of x.
"""

from __future__ import annotations

import torch

from fastgen import _ext
from fastgen.ops import _dispatch

CONDITIONER_OPS = ["conv_conditioner", "conv_conditioner_backward"]


def _register_fakes() -> None:
    @torch.library.register_fake("fastgen::conv_conditioner")
    def _(x, w1, b1, w2, b2, w3, b3, dropout, seed):
        n, _, h, w = x.shape
        positions = n * h * w
        return (x.new_empty((n, w3.shape[0], h, w)), x.new_empty((positions, w1.shape[0])),
                x.new_empty((positions, w2.shape[0])))

    @torch.library.register_fake("fastgen::conv_conditioner_backward")
    def _(grad_y, x, h1, h2, w1, w2, w3, dropout, seed):
        def like(t):
            return torch.empty_like(t, memory_format=torch.contiguous_format)

        return (like(x), like(w1), x.new_empty((w1.shape[0],)), like(w2), x.new_empty((w2.shape[0],)), like(w3),
                x.new_empty((w3.shape[0],)))


def register() -> None:
    # No GPU kernel is registered: on CUDA the reference's cuDNN convolutions run (ops/conditioner.py).
    ready = _ext.check_ops(CONDITIONER_OPS, ("conv_conditioner",))
    if ready:
        _register_fakes()
    _dispatch.record_kernels(CONDITIONER_OPS if ready else [])
