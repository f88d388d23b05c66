"""Triton kernels of the Gaussian family against the plain-PyTorch reference.

Without a GPU the kernels run on CPU tensors in Triton's interpreter (set up by ``triton_helpers``,
imported before the kernels); with one they run compiled on CUDA tensors.
"""

import math

import pytest
import torch
from triton_helpers import DTYPES, device, use_large_blocks  # noqa: F401 (device: a fixture)

import triton
import triton.language as tl

from fastgen.reference import gaussian as ref
from fastgen.triton_kernels import gaussian as tk

# (rtol, atol) per output dtype. float64 is tight enough to catch float32 math sneaking in.
TOL = {
    torch.float32: (2e-5, 2e-5),
    torch.float64: (1e-7, 1e-7),
    torch.float16: (3e-3, 3e-3),
    torch.bfloat16: (1e-2, 1e-2),
}
SHAPES = [(3, 37), (1,), (5, 2, 3), (1, 5000)]
SEED = -(2**40) - 12345  # negative and beyond 32 bits: both key words matter


@pytest.fixture(autouse=True)
def _large_blocks(monkeypatch):
    use_large_blocks(monkeypatch, tk, BLOCK=4096)


def close(actual, expected, dtype):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol)


def inputs(shape, dtype, device, gen_seed=0):
    g = torch.Generator().manual_seed(gen_seed)
    mu = torch.randn(shape, generator=g).to(dtype=dtype, device=device)
    logvar = torch.randn(shape, generator=g).to(dtype=dtype, device=device)
    eps = torch.randn(shape, generator=g).to(dtype=dtype, device=device)
    return mu, logvar, eps


def seed_tensor(device, value=SEED):
    return torch.tensor(value, dtype=torch.int64, device=device)


def ref_noise(shape, dtype, device, seed=SEED):
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    return ref.standard_normal(shape, seed, dtype=compute, device=device)


# ------------------------------------------------------------------------ noise stream


@triton.jit
def _philox_kernel(counter_ptr, key_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    counter = tl.load(counter_ptr + offs, mask=mask, other=0)
    key = tl.load(key_ptr)
    zero = tl.zeros([BLOCK], tl.uint32)
    x0, x1, x2, x3 = tk._philox4x32_10(counter.to(tl.uint32), (counter >> 32).to(tl.uint32), zero, zero,
                                       key.to(tl.uint32), (key >> 32).to(tl.uint32))
    tl.store(out_ptr + offs * 4 + 0, x0.to(tl.int64), mask=mask)
    tl.store(out_ptr + offs * 4 + 1, x1.to(tl.int64), mask=mask)
    tl.store(out_ptr + offs * 4 + 2, x2.to(tl.int64), mask=mask)
    tl.store(out_ptr + offs * 4 + 3, x3.to(tl.int64), mask=mask)


@triton.jit
def _noise_kernel(start, out_ptr, seed_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    noise = tk._standard_normal(start + offs.to(tl.int64), seed_ptr, tl.float32)
    tl.store(out_ptr + offs, noise, mask=offs < n)


def philox(counters, key, device):
    counters = torch.tensor(counters, dtype=torch.int64, device=device)
    out = torch.empty((counters.numel(), 4), dtype=torch.int64, device=device)
    _philox_kernel[(1,)](counters, seed_tensor(device, key), out, counters.numel(), BLOCK=64)
    return out.cpu()


def test_philox_known_answer(device):
    assert philox([0], 0, device)[0].tolist() == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


def test_philox_matches_reference(device):
    counters = [1, 2**32 - 1, 2**32, 2**40 + 7, 2**62 + 3]
    for key in (0, 12345, -1, 2**63 - 1):
        expected = torch.stack(ref.philox4x32_10(torch.tensor(counters), key), dim=1)
        assert torch.equal(philox(counters, key, device), expected)


def test_noise_at_large_offsets(device):
    # Element offsets past 2^32 use the high counter word: check them without a huge tensor.
    start, n = 2**36 + 3, 50
    out = torch.empty(n, device=device)
    _noise_kernel[(1,)](start, out, seed_tensor(device), n, BLOCK=64)
    offs = torch.arange(start, start + n)
    words = torch.stack(ref.philox4x32_10(offs // 4, SEED), dim=1)
    lane = offs % 4
    x_even = words.gather(1, (lane // 2 * 2)[:, None])[:, 0]
    x_odd = words.gather(1, (lane // 2 * 2 + 1)[:, None])[:, 0]
    u = ((x_even >> 8) + 1).double() * 2.0**-24
    theta = 2 * math.pi * (x_odd >> 8).double() * 2.0**-24
    radius = torch.sqrt(-2 * torch.log(u))
    expected = torch.where(lane % 2 == 0, radius * torch.cos(theta), radius * torch.sin(theta))
    torch.testing.assert_close(out.cpu().double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_noise_matches_reference_stream(shape, device):
    zeros = torch.zeros(shape, device=device)
    z = tk.reparameterize(zeros, zeros, None, seed_tensor(device))
    close(z, ref_noise(shape, torch.float32, device), torch.float32)
    other = tk.reparameterize(zeros, zeros, None, seed_tensor(device, SEED + 1))
    assert not torch.equal(z, other)


# ------------------------------------------------------------------------ forward


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("noise", ["eps", "seed"])
def test_forward(shape, dtype, noise, device):
    mu, logvar, eps = inputs(shape, dtype, device)
    if noise == "eps":
        args, ref_eps = (eps, None), eps
    else:
        args, ref_eps = (None, seed_tensor(device)), ref_noise(shape, dtype, device)
    expected_z = ref.reparameterize(mu, logvar, ref_eps)
    expected_kl = ref.gaussian_kl(mu, logvar)
    close(tk.reparameterize(mu, logvar, *args), expected_z, dtype)
    z, kl = tk.reparameterize_with_kl(mu, logvar, *args)
    close(z, expected_z, dtype)
    close(kl, expected_kl, dtype)
    close(tk.gaussian_kl(mu, logvar), expected_kl, dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_log_prob(shape, dtype, device):
    z = inputs(shape, dtype, device)[0]
    close(tk.standard_normal_log_prob(z), ref.standard_normal_log_prob(z), dtype)


@pytest.mark.parametrize("shape", [(9, 37), (5, 200), (70, 1)])
def test_many_programs(shape, device, monkeypatch):
    # Small tiles: several row blocks and several column blocks per row.
    monkeypatch.setattr(tk, "BLOCK", 64)
    mu, logvar, _ = inputs(shape, torch.float32, device)
    z, kl = tk.reparameterize_with_kl(mu, logvar, None, seed_tensor(device))
    close(z, ref.reparameterize(mu, logvar, ref_noise(shape, torch.float32, device)), torch.float32)
    close(kl, ref.gaussian_kl(mu, logvar), torch.float32)
    close(tk.standard_normal_log_prob(z), ref.standard_normal_log_prob(z), torch.float32)
    grad = torch.randn(shape[0], device=device)
    close(tk.standard_normal_log_prob_backward(grad, z), -grad.view(-1, 1) * z, torch.float32)


def test_non_contiguous(device):
    mu, logvar, eps = (t.transpose(0, 1) for t in inputs((37, 3), torch.float32, device))
    assert not mu.is_contiguous()
    z, kl = tk.reparameterize_with_kl(mu, logvar, eps, None)
    close(z, ref.reparameterize(mu, logvar, eps), torch.float32)
    close(kl, ref.gaussian_kl(mu, logvar), torch.float32)
    # Noise follows the logical (row-major) index, not the memory layout.
    z = tk.reparameterize(mu, logvar, None, seed_tensor(device))
    close(z, ref.reparameterize(mu, logvar, ref_noise(mu.shape, torch.float32, device)), torch.float32)
    z3 = inputs((3, 2, 5), torch.float32, device)[0].permute(2, 0, 1)
    close(tk.standard_normal_log_prob(z3), ref.standard_normal_log_prob(z3), torch.float32)
    grad_z = eps  # a transposed view too
    grad_kl = torch.randn(6, device=device)[::2]
    gmu, glogvar = tk.reparameterize_backward(grad_z, grad_kl, mu, logvar, eps, None)
    emu, elogvar = autograd_reference(grad_z, grad_kl, mu, logvar, eps)
    close(gmu, emu, torch.float32)
    close(glogvar, elogvar, torch.float32)


@pytest.mark.parametrize("shape", [(0, 5), (4, 0)])
def test_empty(shape, device):
    mu, logvar, eps = inputs(shape, torch.float32, device)
    n = shape[0]
    seed = seed_tensor(device)
    assert tk.reparameterize(mu, logvar, None, seed).shape == shape
    z, kl = tk.reparameterize_with_kl(mu, logvar, eps, None)
    assert z.shape == shape and torch.equal(kl, torch.zeros(n, device=device))
    assert torch.equal(tk.gaussian_kl(mu, logvar), torch.zeros(n, device=device))
    assert torch.equal(tk.standard_normal_log_prob(mu), torch.zeros(n, device=device))
    gmu, glogvar = tk.reparameterize_backward(eps, torch.ones(n, device=device), mu, logvar, None, seed)
    assert gmu.shape == shape and glogvar.shape == shape
    assert tk.standard_normal_log_prob_backward(torch.ones(n, device=device), mu).shape == shape


def test_missing_seed_is_an_error(device):
    mu = torch.zeros(2, 3, device=device)
    with pytest.raises(ValueError, match="seed"):
        tk.reparameterize(mu, mu, None, None)


# ------------------------------------------------------------------------ backward


def autograd_reference(grad_z, grad_kl, mu, logvar, eps):
    """Gradients of the reference formulas by torch.autograd in float64."""
    mu64 = mu.detach().double().requires_grad_()
    logvar64 = logvar.detach().double().requires_grad_()
    loss = torch.zeros((), dtype=torch.float64, device=mu.device)
    if grad_z is not None:
        loss = loss + (ref.reparameterize(mu64, logvar64, eps.double()) * grad_z.double()).sum()
    if grad_kl is not None:
        loss = loss + (ref.gaussian_kl(mu64, logvar64) * grad_kl.double()).sum()
    if grad_z is None and grad_kl is None:
        return torch.zeros_like(mu), torch.zeros_like(mu)
    grad_mu, grad_logvar = torch.autograd.grad(loss, (mu64, logvar64))
    return grad_mu.to(mu.dtype), grad_logvar.to(mu.dtype)


@pytest.mark.parametrize("shape", [(3, 37), (5, 2, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grads", ["z+kl", "z", "kl", "none"])
@pytest.mark.parametrize("noise", ["eps", "seed"])
def test_reparameterize_backward(shape, dtype, grads, noise, device):
    mu, logvar, eps = inputs(shape, dtype, device)
    g = torch.Generator().manual_seed(1)
    grad_z = torch.randn(shape, generator=g).to(dtype=dtype, device=device) if "z" in grads else None
    grad_kl = torch.randn(shape[0], generator=g).to(dtype=dtype, device=device) if "kl" in grads else None
    if noise == "eps":
        args, ref_eps = (eps, None), eps
    else:
        args, ref_eps = (None, seed_tensor(device)), ref_noise(shape, torch.float64, device)
    grad_mu, grad_logvar = tk.reparameterize_backward(grad_z, grad_kl, mu, logvar, *args)
    expected_mu, expected_logvar = autograd_reference(grad_z, grad_kl, mu, logvar, ref_eps)
    close(grad_mu, expected_mu, dtype)
    close(grad_logvar, expected_logvar, dtype)


@pytest.mark.parametrize("shape", [(3, 37), (1,), (5, 2, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_log_prob_backward(shape, dtype, device):
    z = inputs(shape, dtype, device)[0]
    grad = torch.randn(shape[0]).to(dtype=dtype, device=device)
    z64 = z.double().requires_grad_()
    (ref.standard_normal_log_prob(z64) * grad.double()).sum().backward()
    close(tk.standard_normal_log_prob_backward(grad, z), z64.grad.to(dtype), dtype)
