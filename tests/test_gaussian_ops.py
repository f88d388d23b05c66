"""The Gaussian ops agree with the plain-PyTorch reference on every shape, dtype and layout."""

from __future__ import annotations

import pytest
import torch
from conftest import TOLERANCES
from gaussian_cases import DTYPES, SHAPES, as_float64, gaussian_inputs, reference_noise

from fastgen import ops, reference
from fastgen.ops._dispatch import use_kernel


def _close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    torch.testing.assert_close(actual.detach().cpu().double(), expected.cpu().double(), **TOLERANCES[dtype])


def test_kernels_are_used_on_cpu():
    # The whole point: with the extension built, the CPU path must run the compiled kernels.
    assert use_kernel("reparameterize_with_kl", torch.empty(1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference_with_given_noise(shape, dtype, device):
    mu, logvar = gaussian_inputs(shape, dtype, device)
    eps = torch.randn(shape, dtype=torch.float64).to(device=device, dtype=dtype)
    z, kl = ops.reparameterize_with_kl(mu, logvar, eps)
    mu64, logvar64, eps64 = as_float64(mu, logvar, eps)
    z_ref, kl_ref = reference.reparameterize_with_kl(mu64, logvar64, eps64)
    assert z.dtype == dtype and kl.dtype == dtype
    assert z.shape == mu.shape and kl.shape == (shape[0],)
    _close(z, z_ref, dtype)
    _close(kl, kl_ref, dtype)
    _close(ops.reparameterize(mu, logvar, eps), z_ref, dtype)
    _close(ops.gaussian_kl(mu, logvar), kl_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_in_kernel_noise_follows_the_reference_stream(shape, dtype, device):
    mu, logvar = gaussian_inputs(shape, dtype, device, seed=1)
    seed = torch.tensor(-8_123_456_789_123, dtype=torch.int64, device=device)
    z, kl = torch.ops.fastgen.reparameterize_with_kl(mu, logvar, None, seed)
    mu64, logvar64 = as_float64(mu, logvar)
    z_ref, kl_ref = reference.reparameterize_with_kl(mu64, logvar64, reference_noise(shape, seed))
    _close(z, z_ref, dtype)
    _close(kl, kl_ref, dtype)
    # reparameterize alone draws exactly the same noise as the fused op.
    assert torch.equal(torch.ops.fastgen.reparameterize(mu, logvar, None, seed), z)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_log_prob_matches_reference(shape, dtype, device):
    z, _ = gaussian_inputs(shape, dtype, device, seed=2)
    log_prob = ops.standard_normal_log_prob(z)
    assert log_prob.shape == (shape[0],) and log_prob.dtype == dtype
    _close(log_prob, reference.standard_normal_log_prob(*as_float64(z)), dtype)


def test_log_prob_equals_torch_distributions(device):
    z = torch.randn(6, 3, 4, dtype=torch.float64, device=device)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(dim=(1, 2))
    torch.testing.assert_close(ops.standard_normal_log_prob(z), expected)


def test_kl_equals_torch_distributions(device):
    mu, logvar = gaussian_inputs((5, 11), torch.float64, device)
    posterior = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(posterior, prior).sum(dim=1)
    torch.testing.assert_close(ops.gaussian_kl(mu, logvar), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_contiguous_inputs(dtype, device):
    mu_t, logvar_t = gaussian_inputs((37, 6), dtype, device)
    mu, logvar = mu_t.t(), logvar_t.t()  # (6, 37) views, not contiguous
    eps = torch.randn(37, 6, dtype=dtype, device=device).t()
    assert not mu.is_contiguous()
    z, kl = ops.reparameterize_with_kl(mu, logvar, eps)
    z_ref, kl_ref = reference.reparameterize_with_kl(*as_float64(mu, logvar, eps))
    _close(z, z_ref, dtype)
    _close(kl, kl_ref, dtype)
    strided = gaussian_inputs((4, 10), dtype, device)[0][:, ::3]
    _close(ops.standard_normal_log_prob(strided), reference.standard_normal_log_prob(*as_float64(strided)), dtype)


def test_extreme_log_variances_follow_torch_exp(device):
    # The CPU kernels use their own exp; it must agree with torch.exp over the whole float range,
    # including overflow to inf, underflow to 0 and NaN propagation.
    logvar = torch.tensor(
        [[-250.0, -207.0, -180.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 170.0, 177.4, 177.5, 250.0, float("nan")]],
        device=device,
    )
    mu = torch.zeros_like(logvar)
    eps = torch.ones_like(logvar)
    z = ops.reparameterize(mu, logvar, eps)
    expected = torch.exp(0.5 * logvar)
    torch.testing.assert_close(z, expected, rtol=1e-6, atol=1e-44, equal_nan=True)
    kl = ops.gaussian_kl(mu[:, :-1], logvar[:, :-1])
    assert torch.isinf(kl).all()  # exp(250) overflows: the KL is +inf, not NaN
    assert torch.isnan(ops.gaussian_kl(mu, logvar)).all()


def test_row_sums_are_deterministic(device):
    mu, logvar = gaussian_inputs((3, 50_000), torch.float32, device)
    first = ops.gaussian_kl(mu, logvar)
    for _ in range(3):
        assert torch.equal(ops.gaussian_kl(mu, logvar), first)


def test_meta_tensors_propagate_shapes_with_drawn_noise():
    mu = torch.randn(4, 5, device="meta")
    z = ops.reparameterize(mu, mu)
    z2, kl = ops.reparameterize_with_kl(mu, mu)
    assert z.is_meta and z.shape == z2.shape == (4, 5) and kl.shape == (4,)


def test_the_reference_with_given_noise_compiles_with_fullgraph(monkeypatch):
    """Without the kernels (extension missing, FASTGEN_FORCE_REFERENCE=1) and eps given there is
    no noise to draw, so nothing is kept out of the graph."""
    import fastgen.ops.gaussian as gaussian

    monkeypatch.setattr(gaussian, "use_kernel", lambda name, tensor: False)
    mu, logvar, eps = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6)
    torch._dynamo.reset()
    compiled = torch.compile(lambda m, v, e: ops.reparameterize_with_kl(m, v, e), fullgraph=True, backend="eager")
    expected = reference.reparameterize_with_kl(mu, logvar, eps)
    for got, want in zip(compiled(mu, logvar, eps), expected):
        torch.testing.assert_close(got, want)
