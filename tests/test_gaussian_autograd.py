"""Gradients, torch.library.opcheck and torch.compile for the Gaussian ops."""

from __future__ import annotations

import pytest
import torch
from conftest import TOLERANCES
from gaussian_cases import DTYPES, as_float64, gaussian_inputs, reference_noise
from torch.library import opcheck

from fastgen import ops, reference

OPS = torch.ops.fastgen


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


@pytest.mark.parametrize("shape", [(3, 5), (1,), (2, 3, 2), (1, 4500)])
def test_gradcheck_float64(shape, device):
    mu, logvar = gaussian_inputs(shape, torch.float64, device)
    mu, logvar = _leaf(mu), _leaf(0.3 * logvar)
    eps = torch.randn(shape, dtype=torch.float64, device=device)
    seed = torch.tensor(99, device=device)
    checks = {
        "reparameterize(eps)": lambda m, v: OPS.reparameterize(m, v, eps, None),
        "reparameterize(seed)": lambda m, v: OPS.reparameterize(m, v, None, seed),
        "gaussian_kl": lambda m, v: OPS.gaussian_kl(m, v),
        "with_kl(eps)": lambda m, v: OPS.reparameterize_with_kl(m, v, eps, None),
        "with_kl(seed)": lambda m, v: OPS.reparameterize_with_kl(m, v, None, seed),
    }
    # Rows longer than a CPU tile use the chunked row sums; check them with gradcheck's fast mode
    # (random projections), since the full numerical Jacobian of 9,000 inputs takes minutes.
    fast = mu.numel() > 1000
    for name, fn in checks.items():
        assert torch.autograd.gradcheck(fn, (mu, logvar), fast_mode=fast), name
    assert torch.autograd.gradcheck(OPS.standard_normal_log_prob, (mu,), fast_mode=fast)


def test_gradient_flows_into_given_noise(device):
    mu, logvar = gaussian_inputs((4, 3), torch.float64, device)
    eps = _leaf(torch.randn(4, 3, dtype=torch.float64, device=device))
    assert torch.autograd.gradcheck(lambda e: OPS.reparameterize_with_kl(mu, logvar, e, None), (eps,))


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_matches_reference_autograd(dtype, device):
    shape = (6, 129)
    mu, logvar = gaussian_inputs(shape, dtype, device)
    seed = torch.tensor(7, device=device)
    grad_z = torch.randn(shape, device=device).to(dtype)
    grad_kl = torch.randn(shape[0], device=device).to(dtype)

    mu_k, logvar_k = _leaf(mu), _leaf(logvar)
    z, kl = OPS.reparameterize_with_kl(mu_k, logvar_k, None, seed)
    torch.autograd.backward([z, kl], [grad_z, grad_kl])

    mu_r, logvar_r = _leaf(mu.double().cpu()), _leaf(logvar.double().cpu())
    z_r, kl_r = reference.reparameterize_with_kl(mu_r, logvar_r, reference_noise(shape, seed))
    torch.autograd.backward([z_r, kl_r], as_float64(grad_z, grad_kl))
    for actual, expected in [(mu_k.grad, mu_r.grad), (logvar_k.grad, logvar_r.grad)]:
        assert actual.dtype == dtype
        torch.testing.assert_close(actual.double().cpu(), expected, **TOLERANCES[dtype])


def _opcheck_samples(device):
    mu, logvar = gaussian_inputs((3, 7), torch.float32, device)
    eps = torch.randn(3, 7, device=device)
    seed = torch.tensor(5, device=device)
    grad_z, grad_kl = torch.randn(3, 7, device=device), torch.randn(3, device=device)
    m, v = _leaf(mu), _leaf(logvar)
    return [
        (OPS.reparameterize.default, (m, v, eps, None)),
        (OPS.reparameterize.default, (m, v, None, seed)),
        (OPS.gaussian_kl.default, (m, v)),
        (OPS.reparameterize_with_kl.default, (m, v, None, seed)),
        (OPS.reparameterize_with_kl.default, (m, v, eps, None)),
        (OPS.reparameterize_backward.default, (grad_z, grad_kl, mu, logvar, None, seed)),
        (OPS.reparameterize_backward.default, (None, grad_kl, mu, logvar, None, None)),
        (OPS.reparameterize_backward.default, (grad_z, None, mu, logvar, eps, None)),
        (OPS.standard_normal_log_prob.default, (m,)),
        (OPS.standard_normal_log_prob_backward.default, (grad_kl, mu)),
    ]


def test_opcheck(device):
    for op, args in _opcheck_samples(device):
        opcheck(op, args)


def test_opcheck_and_compile_with_non_contiguous_inputs(device):
    """Transposed inputs: the fake kernels must promise the (contiguous) layout the kernels write,
    or torch.compile and opcheck's fake-tensor test fail on a stride mismatch."""
    mu, logvar, eps = (torch.randn(7, 5, device=device).t() for _ in range(3))
    seed = torch.tensor(3, device=device)
    grad_z, grad_kl = torch.randn(7, 5, device=device).t(), torch.randn(5, device=device)
    for op, args in [(OPS.reparameterize.default, (mu, logvar, eps, None)),
                     (OPS.reparameterize.default, (mu, logvar, None, seed)),
                     (OPS.reparameterize_with_kl.default, (_leaf(mu), _leaf(logvar), eps, None)),
                     (OPS.reparameterize_backward.default, (grad_z, grad_kl, mu, logvar, eps, None)),
                     (OPS.standard_normal_log_prob_backward.default, (grad_kl, mu))]:
        opcheck(op, args)
    torch._dynamo.reset()

    def step(m, v, e):
        z, kl = ops.reparameterize_with_kl(m, v, e)
        return (z * ops.reparameterize(m, v, e)).sum() + kl.sum() + ops.standard_normal_log_prob(z).sum()

    m_c, v_c, m_e, v_e = _leaf(mu), _leaf(logvar), _leaf(mu), _leaf(logvar)
    out_c, out_e = torch.compile(step, fullgraph=True)(m_c, v_c, eps), step(m_e, v_e, eps)
    torch.testing.assert_close(out_c, out_e)
    out_c.backward()
    out_e.backward()
    torch.testing.assert_close(m_c.grad, m_e.grad)
    torch.testing.assert_close(v_c.grad, v_e.grad)


def test_torch_compile_fullgraph_matches_eager(device):
    torch._dynamo.reset()
    mu, logvar = gaussian_inputs((8, 33), torch.float32, device)
    eps = torch.randn(8, 33, device=device)

    def step(m, v, e):
        z, kl = ops.reparameterize_with_kl(m, v, e)
        return z * 2, kl.mean() + ops.standard_normal_log_prob(z).mean()

    compiled = torch.compile(step, fullgraph=True)
    m_c, v_c = _leaf(mu), _leaf(logvar)
    m_e, v_e = _leaf(mu), _leaf(logvar)
    out_c, out_e = compiled(m_c, v_c, eps), step(m_e, v_e, eps)
    for a, b in zip(out_c, out_e):
        torch.testing.assert_close(a, b)
    sum(o.sum() for o in out_c).backward()
    sum(o.sum() for o in out_e).backward()
    torch.testing.assert_close(m_c.grad, m_e.grad)
    torch.testing.assert_close(v_c.grad, v_e.grad)


def test_torch_compile_draws_noise_inside_the_graph(device):
    torch._dynamo.reset()
    mu, logvar = gaussian_inputs((4, 9), torch.float32, device)
    compiled = torch.compile(lambda m, v: ops.reparameterize_with_kl(m, v), fullgraph=True)
    z, kl = compiled(mu, logvar)
    assert z.shape == mu.shape and torch.isfinite(z).all()
    torch.testing.assert_close(kl, ops.gaussian_kl(mu, logvar))
