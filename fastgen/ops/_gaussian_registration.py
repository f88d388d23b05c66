"""Fake kernels, autograd and the Triton GPU fallback for the Gaussian op family.

Why fake kernels: torch.compile traces ops with FakeTensors that have shapes but no data; the
fake kernel tells it the output shapes so the compiled graph keeps the op without a break.
Why autograd here: the C++ ops are plain functions; register_autograd attaches the one fused
backward op (``reparameterize_backward``) to all three forward ops.
"""

from __future__ import annotations

import torch

from fastgen import _ext
from fastgen.ops import _dispatch

GAUSSIAN_OPS = [
    "reparameterize",
    "gaussian_kl",
    "reparameterize_with_kl",
    "reparameterize_backward",
    "standard_normal_log_prob",
    "standard_normal_log_prob_backward",
]


def _per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.new_empty((t.shape[0],))


def _like(t: torch.Tensor) -> torch.Tensor:
    """An output shaped like ``t``: the kernels read their inputs contiguous and so write contiguous outputs."""
    return torch.empty_like(t, memory_format=torch.contiguous_format)


def _register_fakes() -> None:
    lib = torch.library

    @lib.register_fake("fastgen::reparameterize")
    def _(mu, logvar, eps, seed):
        return _like(mu)

    @lib.register_fake("fastgen::gaussian_kl")
    def _(mu, logvar):
        return _per_sample(mu)

    @lib.register_fake("fastgen::reparameterize_with_kl")
    def _(mu, logvar, eps, seed):
        return _like(mu), _per_sample(mu)

    @lib.register_fake("fastgen::reparameterize_backward")
    def _(grad_z, grad_kl, mu, logvar, eps, seed):
        return _like(mu), _like(mu)

    @lib.register_fake("fastgen::standard_normal_log_prob")
    def _(z):
        return _per_sample(z)

    @lib.register_fake("fastgen::standard_normal_log_prob_backward")
    def _(grad, z):
        return _like(z)


def _save_inputs(ctx, inputs, output) -> None:
    mu, logvar = inputs[0], inputs[1]
    eps = inputs[2] if len(inputs) > 2 else None
    seed = inputs[3] if len(inputs) > 3 else None
    ctx.save_for_backward(mu, logvar, eps, seed)


def _gaussian_grads(ctx, grad_z, grad_kl):
    mu, logvar, eps, seed = ctx.saved_tensors
    if grad_z is None and grad_kl is None:
        return None, None, None, None
    grad_mu, grad_logvar = torch.ops.fastgen.reparameterize_backward(grad_z, grad_kl, mu, logvar, eps, seed)
    grad_eps = None
    if eps is not None and grad_z is not None and ctx.needs_input_grad[2]:
        grad_eps = grad_z * torch.exp(0.5 * logvar)  # rare: only when the caller's noise needs grad
    return grad_mu, grad_logvar, grad_eps, None


def _register_autograd() -> None:
    def reparameterize_backward(ctx, grad_z):
        return _gaussian_grads(ctx, grad_z, None)

    def reparameterize_with_kl_backward(ctx, grad_z, grad_kl):
        return _gaussian_grads(ctx, grad_z, grad_kl)

    def gaussian_kl_backward(ctx, grad_kl):
        return _gaussian_grads(ctx, None, grad_kl)[:2]

    def log_prob_setup(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    def log_prob_backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return torch.ops.fastgen.standard_normal_log_prob_backward(grad, z)

    def register(name, backward, setup_context):
        backward = _dispatch.once_differentiable(name)(backward)
        torch.library.register_autograd(f"fastgen::{name}", backward, setup_context=setup_context)

    register("reparameterize", reparameterize_backward, _save_inputs)
    register("reparameterize_with_kl", reparameterize_with_kl_backward, _save_inputs)
    register("gaussian_kl", gaussian_kl_backward, _save_inputs)
    register("standard_normal_log_prob", log_prob_backward, log_prob_setup)


def register() -> None:
    if _ext.check_ops(GAUSSIAN_OPS):
        _register_fakes()
        _register_autograd()
        _dispatch.register_triton_for_cuda({name: "fastgen.triton_kernels.gaussian" for name in GAUSSIAN_OPS})
    _dispatch.record_kernels(GAUSSIAN_OPS)
