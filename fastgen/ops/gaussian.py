"""Reparameterized Gaussian sampling, its KL term and the standard normal log-density.

These are the first fused ops: each is one pass over memory in the compiled kernels, with
the noise drawn inside the kernel from a counter-based generator (so no noise tensor is
written and read back) and regenerated in the backward instead of stored.
"""

from __future__ import annotations

import torch

from fastgen import reference
from fastgen.ops._autocast import autocast_inputs
from fastgen.ops._checks import check_float_tensor, check_generator, check_like
from fastgen.ops._dispatch import under_function_transform, use_kernel

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def draw_seed(device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """A 0-dim int64 seed for fastgen's noise stream, drawn from ``generator``.

    The seed stays on ``device`` (no host synchronisation, CUDA-graph safe); with
    ``generator=None`` it comes from torch's default generator of that device, so
    ``torch.manual_seed`` makes the noise reproducible.
    """
    if generator is None or generator.device.type == torch.device(device).type:
        return torch.randint(_INT64_MIN, _INT64_MAX, (), dtype=torch.int64, device=device, generator=generator)
    seed = torch.randint(_INT64_MIN, _INT64_MAX, (), dtype=torch.int64, device=generator.device, generator=generator)
    return seed.to(device)


def _check_gaussian(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None) -> None:
    check_float_tensor(mu, "mu")
    check_like(logvar, "logvar", mu, "mu")
    if eps is not None:
        check_like(eps, "eps", mu, "mu")


def _noise_inputs(
    mu: torch.Tensor, eps: torch.Tensor | None, generator: torch.Generator | None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    check_generator(generator)
    if eps is not None:
        return eps, None
    if mu.is_meta or under_function_transform():
        # Meta tensors (shape propagation) and torch.func transforms (vmap's randomness modes)
        # get torch's own noise, as randn_like would draw it, not fastgen's stream: a seed
        # drawn under vmap(randomness="different") is batched, and meta has no values.
        if generator is None or mu.is_meta:
            return torch.randn_like(mu, memory_format=torch.contiguous_format), None
        return torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device), None
    return None, draw_seed(mu.device, generator)


# Kept out of torch.compile graphs: the plain-PyTorch Philox is ten rounds of 64-bit integer
# arithmetic that Inductor expands into one expression it never finishes compiling, and the seed
# is a fresh number per call. Eager here, the rest of the caller's graph compiles around it.
# torch._disable_dynamo is torch.compiler.disable with torch._dynamo imported at the first call,
# not at import: the decorator alone made `import fastgen.ops` take ~1.4 s longer.
@torch._disable_dynamo
def _stream_noise(mu: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """The kernels' noise for ``seed``, in plain PyTorch (the reference's eps=None)."""
    noise_dtype = torch.float64 if mu.dtype == torch.float64 else torch.float32
    return reference.standard_normal(mu.shape, int(seed), dtype=noise_dtype, device=mu.device)


def reparameterize(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    eps: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample ``z = mu + exp(logvar / 2) * eps`` from N(mu, exp(logvar)), differentiably.

    Parameters
    ----------
    mu, logvar : torch.Tensor
        Mean and log-variance, shape (N, ...), same shape, dtype and device. float32,
        float16, bfloat16 (computed in float32) or float64. Non-contiguous inputs are fine.
    eps : torch.Tensor, optional
        Standard normal noise shaped like ``mu``. When None (the default) the noise is drawn
        inside the kernel from fastgen's counter-based stream, seeded from ``generator``
        (or torch's default generator), so ``torch.manual_seed`` reproduces it.
    generator : torch.Generator, optional
        Source of the seed when ``eps`` is None. Inside ``torch.compile(fullgraph=True)`` leave it
        None and seed with ``torch.manual_seed``: Dynamo cannot trace a ``torch.Generator``
        object (a graph break, an error with fullgraph).

    Returns
    -------
    torch.Tensor
        ``z``, shape and dtype of ``mu``.
    """
    mu, logvar, eps = autocast_inputs("reparameterize", mu, logvar, eps)
    _check_gaussian(mu, logvar, eps)
    eps, seed = _noise_inputs(mu, eps, generator)
    if use_kernel("reparameterize", mu):
        return torch.ops.fastgen.reparameterize(mu, logvar, eps, seed)
    # eps given: nothing to draw, and nothing kept out of a torch.compile graph
    return reference.reparameterize(mu, logvar, eps if eps is not None else _stream_noise(mu, seed))


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample.

    Parameters
    ----------
    mu, logvar : torch.Tensor
        Shape (N, ...), same shape, dtype and device.

    Returns
    -------
    torch.Tensor
        Shape (N,): ``0.5 * sum(mu**2 + exp(logvar) - 1 - logvar)`` over all dims but the
        first, accumulated in float32 (float64 for float64 input), in the dtype of ``mu``.
    """
    mu, logvar = autocast_inputs("gaussian_kl", mu, logvar)
    _check_gaussian(mu, logvar, None)
    if use_kernel("gaussian_kl", mu):
        return torch.ops.fastgen.gaussian_kl(mu, logvar)
    return reference.gaussian_kl(mu, logvar)


def reparameterize_with_kl(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    eps: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`reparameterize` and :func:`gaussian_kl` in one pass over memory.

    The backward is fused too: one kernel produces the gradients of both outputs.

    Returns
    -------
    tuple of torch.Tensor
        ``z`` shaped like ``mu`` and ``kl`` of shape (N,).
    """
    mu, logvar, eps = autocast_inputs("reparameterize_with_kl", mu, logvar, eps)
    _check_gaussian(mu, logvar, eps)
    eps, seed = _noise_inputs(mu, eps, generator)
    if use_kernel("reparameterize_with_kl", mu):
        z, kl = torch.ops.fastgen.reparameterize_with_kl(mu, logvar, eps, seed)
        return z, kl
    return reference.reparameterize_with_kl(mu, logvar, eps if eps is not None else _stream_noise(mu, seed))


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """Per-sample log-density of N(0, I), the base density of every flow.

    Parameters
    ----------
    z : torch.Tensor
        Shape (N, ...), floating dtype.

    Returns
    -------
    torch.Tensor
        Shape (N,): ``-0.5 * sum(z**2) - D/2 * log(2 pi)`` with D the size of one sample,
        accumulated in float32 (float64 for float64 input), in the dtype of ``z``.
    """
    check_float_tensor(z, "z")
    if use_kernel("standard_normal_log_prob", z):
        return torch.ops.fastgen.standard_normal_log_prob(z)
    return reference.standard_normal_log_prob(z)
