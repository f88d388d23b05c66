"""The noise drawn inside the kernels: its statistics and its reproducibility."""

from __future__ import annotations

import math

import torch

from fastgen import ops, reference


def _drawn_noise(shape, device, generator=None) -> torch.Tensor:
    mu = torch.zeros(shape, device=device)
    logvar = torch.zeros(shape, device=device)
    return ops.reparameterize(mu, logvar, generator=generator)  # z = eps when mu=0, std=1


def test_moments_of_in_kernel_noise(device):
    eps = _drawn_noise((256, 4096), device).double().flatten()
    n = eps.numel()
    # Standard errors of the moments of N(0, 1): mean 1/sqrt(n), variance sqrt(2/n); allow 6 sigma.
    assert abs(eps.mean().item()) < 6 / math.sqrt(n)
    assert abs(eps.var().item() - 1.0) < 6 * math.sqrt(2 / n)
    assert abs((eps**3).mean().item()) < 6 * math.sqrt(15 / n)  # skewness 0
    assert abs((eps**4).mean().item() - 3.0) < 6 * math.sqrt(96 / n)  # kurtosis 3


def test_tail_probabilities_match_the_normal_cdf(device):
    eps = _drawn_noise((64, 16384), device).double().flatten().cpu()
    n = eps.numel()
    for threshold in (1.0, 2.0, 3.0):
        expected = math.erfc(threshold / math.sqrt(2))  # P(|X| > t)
        observed = (eps.abs() > threshold).double().mean().item()
        assert abs(observed - expected) < 6 * math.sqrt(expected * (1 - expected) / n)


def test_neighbouring_elements_are_uncorrelated(device):
    eps = _drawn_noise((1, 1 << 21), device).double().flatten()
    n = eps.numel()
    # Lags 1..4 cover both the pairs sharing a Box-Muller radius and the Philox block boundary.
    for lag in (1, 2, 3, 4, 5, 4096):
        correlation = (eps[:-lag] * eps[lag:]).mean().item()
        assert abs(correlation) < 6 / math.sqrt(n - lag), lag
    # Also across rows: the same column of consecutive rows.
    rows = _drawn_noise((2048, 512), device).double()
    assert abs((rows[:-1] * rows[1:]).mean().item()) < 6 / math.sqrt(rows[1:].numel())


def test_reproducible_under_manual_seed(device):
    torch.manual_seed(1234)
    if device.type == "cuda":
        torch.cuda.manual_seed(1234)
    first = _drawn_noise((16, 100), device)
    second_draw = _drawn_noise((16, 100), device)
    torch.manual_seed(1234)
    if device.type == "cuda":
        torch.cuda.manual_seed(1234)
    again = _drawn_noise((16, 100), device)
    assert torch.equal(first, again)
    assert not torch.equal(first, second_draw)  # successive calls draw fresh noise


def test_reproducible_with_an_explicit_generator(device):
    generator = torch.Generator(device=device).manual_seed(77)
    first = _drawn_noise((8, 33), device, generator)
    generator.manual_seed(77)
    assert torch.equal(_drawn_noise((8, 33), device, generator), first)
    # A CPU generator may drive noise on any device.
    cpu_generator = torch.Generator().manual_seed(5)
    a = _drawn_noise((4, 4), device, cpu_generator)
    cpu_generator.manual_seed(5)
    assert torch.equal(_drawn_noise((4, 4), device, cpu_generator), a)


def test_noise_does_not_depend_on_thread_count():
    previous = torch.get_num_threads()
    seed = torch.tensor(3)
    mu = torch.zeros(300, 1000)
    try:
        torch.set_num_threads(1)
        one = torch.ops.fastgen.reparameterize(mu, mu, None, seed)
        torch.set_num_threads(max(2, previous))
        many = torch.ops.fastgen.reparameterize(mu, mu, None, seed)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one, many)


def test_noise_is_a_function_of_flat_position():
    # The stream is defined on the flattened tensor: reshaping the input does not change the draw.
    seed = torch.tensor(11)
    flat = torch.ops.fastgen.reparameterize(torch.zeros(1, 600), torch.zeros(1, 600), None, seed)
    shaped = torch.ops.fastgen.reparameterize(torch.zeros(5, 4, 30), torch.zeros(5, 4, 30), None, seed)
    assert torch.equal(flat.reshape(-1), shaped.reshape(-1))
    torch.testing.assert_close(flat, reference.standard_normal((1, 600), 11), rtol=1e-5, atol=1e-5)
