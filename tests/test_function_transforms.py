"""The fused ops under forward-mode AD and the torch.func transforms (jvp, jacfwd, grad, vmap).

The kernels have no forward derivative and no functorch rules, and PyTorch gives a custom op's
output no tangent instead of raising, so without care ``torch.func.jvp`` returns zeros. Under a
transform the ops run their reference; these tests check the answers, not which code ran.
"""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from functional_calls import functional_calls

from fastgen import nn as fnn
from fastgen import ops

OPS = list(functional_calls())


def _flat(out) -> torch.Tensor:
    """An op's output(s) as one flat tensor."""
    outs = out if isinstance(out, tuple) else (out,)
    return torch.cat([o.reshape(-1) for o in outs])


def _central_difference(fn, x: torch.Tensor, direction: torch.Tensor, step: float = 1e-6) -> torch.Tensor:
    with torch.no_grad():
        return (_flat(fn(x + step * direction)) - _flat(fn(x - step * direction))) / (2 * step)


@pytest.mark.parametrize("name", OPS)
def test_jvp_matches_finite_differences(name):
    torch.manual_seed(0)
    fn, x = functional_calls(torch.float64)[name]
    direction = torch.randn_like(x)
    expected = _central_difference(fn, x, direction)
    assert expected.abs().max() > 1e-3  # the directional derivative is not trivially zero

    _, tangent = torch.func.jvp(lambda a: _flat(fn(a)), (x,), (direction,))
    torch.testing.assert_close(tangent, expected, rtol=1e-6, atol=1e-6)

    with fwAD.dual_level():
        dual_out = fn(fwAD.make_dual(x, direction))
        outs = dual_out if isinstance(dual_out, tuple) else (dual_out,)
        # No tangent means zero: an output that does not depend on x (affine_coupling's logdet).
        tangents = [fwAD.unpack_dual(o).tangent for o in outs]
        tangents = [torch.zeros_like(o) if t is None else t for o, t in zip(outs, tangents)]
    torch.testing.assert_close(torch.cat([t.reshape(-1) for t in tangents]), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", OPS)
def test_func_grad_matches_autograd(name):
    fn, x = functional_calls(torch.float64)[name]

    def loss(a):
        return _flat(fn(a)).square().sum()

    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(loss(leaf), leaf)  # the fused backward kernels
    torch.testing.assert_close(torch.func.grad(loss)(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", OPS)
def test_vmap_over_a_stack_of_inputs(name):
    fn, x = functional_calls(torch.float64)[name]
    stack = torch.stack([x, 0.5 * x + 0.25])
    batched = torch.vmap(lambda a: _flat(fn(a)))(stack)
    torch.testing.assert_close(batched, torch.stack([_flat(fn(a)) for a in stack]), rtol=1e-10, atol=1e-10)


def test_jacfwd_of_a_causal_layer_is_causal():
    torch.manual_seed(0)
    layer = fnn.CausalConv1d(2, 3, 3, dilation=2).double()
    x = torch.randn(2, 10, dtype=torch.float64)
    jac = torch.func.jacfwd(layer)(x)  # (3, 10, 2, 10): d out[:, i] / d x[:, j]
    per_time = jac.abs().sum(dim=(0, 2))
    future = torch.triu(torch.ones(10, 10, dtype=torch.bool), diagonal=1)
    assert per_time[future].max() == 0
    assert (per_time.diagonal() > 0).all()
    torch.testing.assert_close(jac, torch.func.jacrev(layer)(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["reparameterize", "reparameterize_with_kl"])
def test_vmap_randomness_modes_of_the_drawn_noise(name):
    """eps=None under vmap: torch's randomness modes hold, as for randn_like."""
    op = getattr(ops, name)

    def z_of(mu, logvar):
        out = op(mu, logvar)
        return out[0] if isinstance(out, tuple) else out

    zeros = torch.zeros(4, 3, 5)
    different = torch.vmap(z_of, randomness="different")(zeros, zeros)
    same = torch.vmap(z_of, randomness="same")(zeros, zeros)
    assert not torch.equal(different[0], different[1])
    assert torch.equal(same[0], same[1]) and same.std() > 0.5
    with pytest.raises(RuntimeError, match="randomness"):
        torch.vmap(z_of)(zeros, zeros)  # the default, "error"
