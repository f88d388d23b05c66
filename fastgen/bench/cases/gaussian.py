"""Benchmark cases of the Gaussian family: reparameterize, gaussian_kl, their fusion, log N(z).

``eager`` is what users write today, noise included::

    eps = torch.randn_like(mu)
    z = mu + torch.exp(0.5 * logvar) * eps
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)

i.e. ``fastgen.reference`` with ``eps = torch.randn_like(mu)``; ``fastgen`` draws the noise
inside the kernel. Both are checked on the same explicit ``eps`` before timing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from fastgen import ops, reference
from fastgen.bench.registry import triton_kernels
from fastgen.bench.harness import (
    EAGER,
    FASTGEN,
    FASTGEN_TRITON,
    FORWARD,
    FORWARD_BACKWARD,
    BenchCase,
    CaseSpec,
    register_cases,
)

HEADLINE = (4096, 512)
GPU_SHAPES = ((4096, 512), (65536, 1024))

# ---------------------------------------------------------------------------------------------
# Implementations. Module-level functions (not lambdas) so torch.compile of a reference is
# compiled once and reused by every case (forward and forward+backward) that times it.


def eager_reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return reference.reparameterize(mu, logvar, torch.randn_like(mu))


def eager_reparameterize_with_kl(mu: torch.Tensor, logvar: torch.Tensor
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    return reference.reparameterize_with_kl(mu, logvar, torch.randn_like(mu))


def fastgen_reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return ops.reparameterize(mu, logvar)


def fastgen_reparameterize_with_kl(mu: torch.Tensor, logvar: torch.Tensor
                                   ) -> tuple[torch.Tensor, torch.Tensor]:
    return ops.reparameterize_with_kl(mu, logvar)


def _triton_module() -> Any | None:
    return triton_kernels("gaussian")


class _TritonReparameterizeWithKL(torch.autograd.Function):
    """Autograd around the raw Triton kernels, so fastgen-triton runs forward+backward too."""

    @staticmethod
    def forward(ctx: Any, mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None,
                seed: torch.Tensor, write_z: bool, write_kl: bool) -> Any:
        kernels = _triton_module()
        ctx.save_for_backward(mu, logvar, eps, seed)
        ctx.write_z, ctx.write_kl = write_z, write_kl
        if write_z and write_kl:
            return kernels.reparameterize_with_kl(mu, logvar, eps, seed)
        if write_z:
            return kernels.reparameterize(mu, logvar, eps, seed)
        return kernels.gaussian_kl(mu, logvar)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> Any:
        mu, logvar, eps, seed = ctx.saved_tensors
        if ctx.write_z and ctx.write_kl:
            grad_z, grad_kl = grads
        elif ctx.write_z:
            grad_z, grad_kl = grads[0], None
        else:
            grad_z, grad_kl = None, grads[0]
        grad_mu, grad_logvar = _triton_module().reparameterize_backward(
            grad_z, grad_kl, mu, logvar, eps, seed)
        return grad_mu, grad_logvar, None, None, None, None


class _TritonLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z)
        return _triton_module().standard_normal_log_prob(z)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (z,) = ctx.saved_tensors
        return _triton_module().standard_normal_log_prob_backward(grad, z)


_SEEDS: dict[torch.device, torch.Tensor] = {}


def _seed_on(device: torch.device) -> torch.Tensor:
    # A fixed seed tensor made once: fastgen's op draws a fresh one per call, which is the
    # cost users pay and is timed there; here the kernel alone is timed.
    if device not in _SEEDS:
        _SEEDS[device] = torch.tensor(12345, dtype=torch.int64, device=device)
    return _SEEDS[device]


def triton_reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None
                          ) -> torch.Tensor:
    return _TritonReparameterizeWithKL.apply(mu, logvar, eps, _seed_on(mu.device), True, False)


def triton_reparameterize_with_kl(mu: torch.Tensor, logvar: torch.Tensor,
                                  eps: torch.Tensor | None = None) -> Any:
    return _TritonReparameterizeWithKL.apply(mu, logvar, eps, _seed_on(mu.device), True, True)


def triton_gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return _TritonReparameterizeWithKL.apply(mu, logvar, None, _seed_on(mu.device), False, True)


def triton_log_prob(z: torch.Tensor) -> torch.Tensor:
    return _TritonLogProb.apply(z)


# ---------------------------------------------------------------------------------------------
# Cases


def _mu_logvar(n: int, d: int, dtype: torch.dtype) -> Callable[[torch.device], tuple]:
    def make(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        mu = torch.randn(n, d, device=device).to(dtype)
        # log-variances around 0 (sigma ~ 0.6..1.6): no overflow of exp() in fp16.
        logvar = (0.5 * torch.randn(n, d, device=device)).to(dtype)
        return mu, logvar

    return make


def _z(n: int, d: int, dtype: torch.dtype) -> Callable[[torch.device], tuple]:
    return lambda device: (torch.randn(n, d, device=device).to(dtype),)


def _eps_like_mu(inputs: tuple) -> tuple[torch.Tensor]:
    return (torch.randn_like(inputs[0]),)


def _bytes(n: int, d: int, dtype: torch.dtype, full: int, rows: int) -> int:
    """``full`` (N, D) tensors and ``rows`` (N,) vectors of ``dtype``."""
    return (full * n * d + rows * n) * torch.empty((), dtype=dtype).element_size()


def _family_cases(n: int, d: int, dtype: torch.dtype, mode: str, triton: bool) -> list[BenchCase]:
    shape = f"{n}x{d}"
    backward = mode == FORWARD_BACKWARD
    mu_logvar, z_input = _mu_logvar(n, d, dtype), _z(n, d, dtype)

    def impls(eager: Callable, fast: Callable, tri: Callable) -> dict[str, Callable]:
        chosen = {EAGER: eager, FASTGEN: fast}
        if triton:
            chosen[FASTGEN_TRITON] = tri
        return chosen

    # Minimum traffic in elements (noise is regenerated from the seed, never stored):
    #   reparameterize_with_kl  fwd: read mu, logvar; write z, kl            3ND + N
    #                           bwd: read g_z, mu, logvar, g_kl; write 2     5ND + N
    #   reparameterize          fwd 3ND; bwd: read g_z, logvar; write g_logvar (g_mu = g_z) 3ND
    #   gaussian_kl             fwd 2ND + N; bwd: read g, mu, logvar; write 2: 4ND + N
    #   standard_normal_log_prob fwd ND + N; bwd: read g, z; write g_z: 2ND + N
    traffic = {
        "reparameterize_with_kl": (8, 2) if backward else (3, 1),
        "reparameterize": (6, 0) if backward else (3, 0),
        "gaussian_kl": (6, 2) if backward else (2, 1),
        "standard_normal_log_prob": (3, 2) if backward else (1, 1),
    }
    cases = [
        BenchCase(
            op="reparameterize_with_kl", shape=shape, dtype=dtype, mode=mode,
            make_inputs=mu_logvar,
            implementations=impls(eager_reparameterize_with_kl, fastgen_reparameterize_with_kl,
                                  triton_reparameterize_with_kl),
            check_implementations=impls(reference.reparameterize_with_kl,
                                        ops.reparameterize_with_kl, triton_reparameterize_with_kl),
            check_extra=_eps_like_mu,
            bytes_moved=_bytes(n, d, dtype, *traffic["reparameterize_with_kl"]),
        ),
        BenchCase(
            op="reparameterize", shape=shape, dtype=dtype, mode=mode, make_inputs=mu_logvar,
            implementations=impls(eager_reparameterize, fastgen_reparameterize,
                                  triton_reparameterize),
            check_implementations=impls(reference.reparameterize, ops.reparameterize,
                                        triton_reparameterize),
            check_extra=_eps_like_mu,
            bytes_moved=_bytes(n, d, dtype, *traffic["reparameterize"]),
        ),
        BenchCase(
            op="gaussian_kl", shape=shape, dtype=dtype, mode=mode, make_inputs=mu_logvar,
            implementations=impls(reference.gaussian_kl, ops.gaussian_kl, triton_gaussian_kl),
            bytes_moved=_bytes(n, d, dtype, *traffic["gaussian_kl"]),
        ),
        BenchCase(
            op="standard_normal_log_prob", shape=shape, dtype=dtype, mode=mode,
            make_inputs=z_input,
            implementations=impls(reference.standard_normal_log_prob,
                                  ops.standard_normal_log_prob, triton_log_prob),
            bytes_moved=_bytes(n, d, dtype, *traffic["standard_normal_log_prob"]),
        ),
    ]
    return cases


@register_cases("gaussian")
def gaussian_cases(spec: CaseSpec) -> list[BenchCase]:
    """Headline (4096, 512) fp32 everywhere; on a GPU also (65536, 1024) and bf16/fp16.

    ``--quick`` (a smoke run that must finish in about a minute on a 2-core CPU, where each
    torch.compile graph costs seconds): one dtype (fp32 unless --dtypes), every op forward and
    the fused op also forward+backward; on the CPU only the headline shape.
    """
    on_gpu = spec.device.type == "cuda"
    triton = on_gpu and _triton_module() is not None
    if spec.dtypes is not None:
        dtypes = spec.dtypes
    elif on_gpu:
        dtypes = (torch.float32, torch.bfloat16, torch.float16)
    else:
        dtypes = (torch.float32,)
    if spec.quick and spec.dtypes is None:
        dtypes = dtypes[:1]
    shapes = GPU_SHAPES if on_gpu else (HEADLINE,)
    cases = []
    for n, d in shapes:
        for dtype in dtypes:
            for mode in (FORWARD, FORWARD_BACKWARD):
                cases.extend(_family_cases(n, d, dtype, mode, triton))
    if spec.quick:
        cases = [c for c in cases if c.op == "reparameterize_with_kl" or c.mode == FORWARD]
    return cases
