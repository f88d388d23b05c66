"""Shared checks of the flow layer and model tests: the round trip and the dense-Jacobian logdet."""

from __future__ import annotations

import torch


def flat(out) -> torch.Tensor:
    """A layer's or model's output (a tensor, a pair, or a list of latents) as (N, D)."""
    if isinstance(out, torch.Tensor):
        return out.reshape(out.shape[0], -1)
    return torch.cat([flat(o) for o in out], dim=1)


def _unflat(v: torch.Tensor, like):
    """The inverse of ``flat`` for one sample: v (D,) -> tensors shaped like ``like[n:n+1]``."""
    if isinstance(like, torch.Tensor):
        return v.reshape((1, *like.shape[1:]))
    parts, start = [], 0
    for item in like:
        size = flat(item[:1]).shape[1]
        parts.append(_unflat(v[start:start + size], item))
        start += size
    return type(like)(parts)


def jacobian_logabsdet(fn, x) -> torch.Tensor:
    """log|det d fn(x_n) / d x_n| per sample, from a dense float64 Jacobian; fn returns (y, logdet)
    and x is a tensor or a tuple/list of tensors (a split layer's output)."""
    batch = flat(x)
    results = []
    for n in range(batch.shape[0]):
        def single(v):
            return flat(fn(_unflat(v, x))[0])[0]

        jac = torch.autograd.functional.jacobian(single, batch[n])
        results.append(torch.linalg.slogdet(jac).logabsdet)
    return torch.stack(results)


def assert_round_trip(forward, inverse, x: torch.Tensor, rtol: float = 1e-5) -> None:
    """inverse(forward(x)) == x within rtol (relative to max |x|), and the two logdets cancel."""
    y, logdet = forward(x)
    back, logdet_inverse = inverse(y)
    scale = x.abs().max().clamp_min(1.0)
    assert (back - x).abs().max() <= rtol * scale
    torch.testing.assert_close(logdet + logdet_inverse, torch.zeros_like(logdet), atol=1e-4, rtol=0)


def float64_reference_grads(fn, inputs, grad_y, grad_logdet):
    """Gradients of sum(y * grad_y) + sum(logdet * grad_logdet) of ``fn`` (returning (y, logdet))
    with respect to ``inputs``, computed in float64 (an input that is not used gets zeros)."""
    leaves = [t.detach().double().requires_grad_() for t in inputs]
    y, logdet = fn(*leaves)
    loss = (y * grad_y.double()).sum()
    if grad_logdet is not None:
        loss = loss + (logdet * grad_logdet.double()).sum()
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(grads, leaves)]
