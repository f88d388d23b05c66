"""VAE and DCGAN: shapes, likelihood normalisation, IWAE bound, losses, a training smoke test, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from fastgen.models import DCGAN, VAE
from fastgen.models._likelihood import (
    discretized_gaussian_log_prob,
    discretized_logistic_log_prob,
)

SHAPES = [(1, 8, 8), (1, 25, 25), (1, 28, 28), (3, 32, 32), (2, 9, 13)]
LIKELIHOODS = ["bernoulli", "logistic", "gaussian"]
LOG_PROBS = {"logistic": discretized_logistic_log_prob, "gaussian": discretized_gaussian_log_prob}


def _images(shape, n=4, levels=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (n, *shape), generator=g).float() / (levels - 1)


def _on_grid(x, levels):
    k = x * (levels - 1)
    return torch.allclose(k, k.round(), atol=1e-4) and x.min() >= 0 and x.max() <= 1


# ----------------------------------------------------------------------------- VAE shapes
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_vae_forward_backward(shape, likelihood):
    torch.manual_seed(0)
    model = VAE(shape, levels=17, latent_dim=4, hidden=8, likelihood=likelihood)
    x = _images(shape)
    out = model(x)
    assert set(out) == {"loss", "recon", "kl", "nelbo"}
    assert out["loss"].shape == ()
    for key in ("recon", "kl", "nelbo"):
        assert out[key].shape == (4,) and torch.isfinite(out[key]).all()
    torch.testing.assert_close(out["nelbo"], out["recon"] + out["kl"])
    torch.testing.assert_close(out["loss"], out["nelbo"].mean())
    assert (out["kl"] >= 0).all()
    if likelihood != "bernoulli":
        assert (out["recon"] >= 0).all()  # -log of a probability mass
    out["loss"].backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)

    samples = model.sample(3, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (3, *shape)
    assert model.reconstruct(x).shape == x.shape
    assert model.log_likelihood(x, k=3).shape == (4,)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_vae_sample_and_reconstruct_range(likelihood):
    levels = 5
    model = VAE((1, 8, 8), levels=levels, latent_dim=3, hidden=8, likelihood=likelihood)
    s1 = model.sample(16, generator=torch.Generator().manual_seed(3))
    s2 = model.sample(16, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(s1, s2)
    assert s1.shape == (16, 1, 8, 8) and s1.min() >= 0 and s1.max() <= 1
    mean = model.sample(4, mean=True)
    assert mean.shape == (4, 1, 8, 8) and mean.min() >= 0 and mean.max() <= 1
    if likelihood == "bernoulli":
        assert set(s1.unique().tolist()) <= {0.0, 1.0}
    else:
        assert _on_grid(s1, levels) and _on_grid(mean, levels)
        assert _on_grid(model.reconstruct(_images((1, 8, 8), levels=levels)), levels)
    assert model.sample(0).shape == (0, 1, 8, 8)


def test_vae_config_rebuilds():
    model = VAE([1, 25, 25], levels=256, latent_dim=5, hidden=8, likelihood="gaussian")
    config = model.config()
    assert config == {
        "data_shape": (1, 25, 25),
        "levels": 256,
        "latent_dim": 5,
        "hidden": 8,
        "likelihood": "gaussian",
    }
    clone = VAE(**config)
    clone.load_state_dict(model.state_dict())
    x = _images((1, 25, 25), levels=256)
    torch.testing.assert_close(clone.reconstruct(x), model.reconstruct(x))


# ----------------------------------------------------------------------------- likelihoods
def _extreme_params(dtype):
    """Means inside/outside [0, 1] crossed with log-scales from the clamp floor to very broad."""
    means = torch.tensor([-3.0, -0.2, 0.0, 0.03, 0.37, 0.5, 0.999, 1.0, 1.4, 5.0], dtype=dtype)
    log_scales = torch.tensor([-20.0, -7.0, -5.0, -3.0, -1.0, 0.0, 2.0, 7.0, 12.0], dtype=dtype)
    return torch.cartesian_prod(means, log_scales).unbind(1)


@pytest.mark.parametrize("kind", ["logistic", "gaussian"])
@pytest.mark.parametrize("levels", [2, 17, 256])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_discretized_likelihood_normalises(kind, levels, dtype):
    mean, log_scale = _extreme_params(dtype)
    mean = mean.requires_grad_()
    x = (torch.arange(levels, dtype=dtype) / (levels - 1)).unsqueeze(1)  # every level, (L, 1)
    logp = LOG_PROBS[kind](x, mean.unsqueeze(0), log_scale.unsqueeze(0), levels)  # (L, P)
    assert torch.isfinite(logp).all() and (logp <= 1e-6).all()
    total = torch.logsumexp(logp.double(), dim=0)
    tol = 1e-9 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(total, torch.zeros_like(total), atol=tol, rtol=0)
    logp.sum().backward()
    assert torch.isfinite(mean.grad).all()


@pytest.mark.parametrize("kind", ["logistic", "gaussian"])
@pytest.mark.parametrize("levels", [17, 256])
def test_discretized_likelihood_matches_direct_cdf(kind, levels):
    """Against the textbook CDF difference, in float64 where it is accurate (256 levels with
    broad scales reach the Gaussian's narrow-bin midpoint branch)."""
    g = torch.Generator().manual_seed(0)
    mean = torch.rand(200, generator=g, dtype=torch.float64) * 1.4 - 0.2
    log_scale = torch.rand(200, generator=g, dtype=torch.float64) * 6 - 3
    k = torch.randint(0, levels, (200,), generator=g).double()
    x = k / (levels - 1)
    scale, half = log_scale.exp(), 0.5 / (levels - 1)
    # erfc form: torch.special.ndtr loses the tail below about -8 even in float64.
    cdf = torch.sigmoid if kind == "logistic" else (lambda t: 0.5 * torch.special.erfc(-t / math.sqrt(2.0)))
    hi, lo = (x + half - mean) / scale, (x - half - mean) / scale
    # P(lo < X <= hi) as a difference of CDFs, or of survival functions above the mean (no cancellation).
    upper = torch.where(k == levels - 1, torch.ones_like(x), cdf(hi))
    lower = torch.where(k == 0, torch.zeros_like(x), cdf(lo))
    sf_lower = torch.where(k == 0, torch.ones_like(x), cdf(-lo))
    sf_upper = torch.where(k == levels - 1, torch.zeros_like(x), cdf(-hi))
    expected = torch.log(torch.where(x > mean, sf_lower - sf_upper, upper - lower))
    assert torch.isfinite(expected).all()
    torch.testing.assert_close(LOG_PROBS[kind](x, mean, log_scale, levels), expected, rtol=1e-7, atol=1e-9)


# ----------------------------------------------------------------------------- IWAE
def test_iwae_k1_is_the_hand_computed_importance_weight():
    torch.manual_seed(0)
    model = VAE((1, 8, 8), levels=17, latent_dim=4, hidden=8)
    x = _images((1, 8, 8), n=5)
    got = model.log_likelihood(x, k=1, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        mu, logvar = model.encode(x)
        eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(7))
        std = torch.exp(0.5 * logvar)
        z = mu + std * eps
        log_px = model.log_prob_x_given_z(x, model.decode(z))
        log_pz = Normal(0.0, 1.0).log_prob(z).sum(1)
        log_qz = Normal(mu, std).log_prob(z).sum(1)
    torch.testing.assert_close(got, log_px + log_pz - log_qz, rtol=1e-5, atol=1e-4)
    # The ELBO sample with the same noise shares log p(x|z); only the KL is analytic there.
    out = model(x, eps=eps)
    torch.testing.assert_close(out["recon"], -log_px, rtol=1e-5, atol=1e-4)
    kl = torch.distributions.kl_divergence(Normal(mu, std), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(out["kl"], kl, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, -out["nelbo"] + out["kl"] + log_pz - log_qz, rtol=1e-5, atol=1e-4)
    bpd = model.bits_per_dim(x, k=1, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(bpd, -got / (64 * math.log(2)))


def test_iwae_chunking_does_not_change_the_estimate(monkeypatch):
    """Noise is consumed image-major in every chunking: feed it from a fixed table and compare."""
    import fastgen.models.vae as vae_module

    model = VAE((1, 8, 8), levels=17, latent_dim=4, hidden=8)
    x = _images((1, 8, 8), n=6)
    table = torch.randn(6 * 9, 4, generator=torch.Generator().manual_seed(2))

    def run(batch_size):
        pos = [0]

        def fixed_noise(shape, ref, generator):
            rows = shape[0]
            pos[0] += rows
            return table[pos[0] - rows : pos[0]].to(ref)

        monkeypatch.setattr(vae_module, "normal_like", fixed_noise)
        out = model.log_likelihood(x, k=9, batch_size=batch_size)
        assert pos[0] == table.shape[0]
        return out

    reference = run(10_000)  # everything in one decoder pass
    for batch_size in (1, 4, 9, 20, 37):
        torch.testing.assert_close(run(batch_size), reference, rtol=1e-5, atol=1e-4)
    monkeypatch.undo()
    same = [
        model.log_likelihood(x, k=9, batch_size=4, generator=torch.Generator().manual_seed(5))
        for _ in range(2)
    ]
    torch.testing.assert_close(same[0], same[1])


def test_iwae_bounds_the_elbo():
    """E[IWAE_1] = ELBO, and IWAE_50 >= ELBO (by Jensen), up to Monte-Carlo noise."""
    torch.manual_seed(0)
    model = VAE((1, 8, 8), levels=17, latent_dim=4, hidden=8)
    x = _images((1, 8, 8), n=8)
    with torch.no_grad():
        elbo = -torch.stack([model(x)["nelbo"] for _ in range(200)]).mean(0)
    iwae1 = torch.stack([model.log_likelihood(x, k=1) for _ in range(200)])
    stderr = iwae1.std(0) / math.sqrt(200)
    assert ((iwae1.mean(0) - elbo).abs() < 5 * stderr + 1e-3).all()
    iwae50 = model.log_likelihood(x, k=50)
    assert (iwae50 >= elbo - 5 * stderr).all()
    assert iwae50.mean() > elbo.mean()


def test_vae_under_bfloat16_autocast():
    torch.manual_seed(0)
    model = VAE((1, 8, 8), levels=256, latent_dim=4, hidden=8, likelihood="gaussian")
    x = _images((1, 8, 8), levels=256)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, eps=torch.randn(4, 4))
        ll = model.log_likelihood(x, k=4)
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["nelbo"]).all()
    assert ll.dtype == torch.float32 and torch.isfinite(ll).all()
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# ----------------------------------------------------------------------------- training
def test_vae_training_smoke_on_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    images = torch.tensor(datasets.load_digits().images[:64], dtype=torch.float32).unsqueeze(1) / 16
    torch.manual_seed(0)
    model = VAE((1, 8, 8), levels=17)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss():
        with torch.no_grad():
            return model(images, generator=torch.Generator().manual_seed(0))["loss"].item()

    before = loss()
    for _ in range(60):
        opt.zero_grad()
        model(images)["loss"].backward()
        opt.step()
    after = loss()
    assert after < 0.8 * before, (before, after)


# ----------------------------------------------------------------------------- DCGAN
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("spectral_norm", [False, True])
def test_dcgan_shapes(shape, spectral_norm):
    torch.manual_seed(0)
    gan = DCGAN(shape, latent_dim=6, hidden=8, spectral_norm=spectral_norm)
    z = gan.latent(4)
    assert z.shape == (4, 6)
    fake = gan.generate(z)
    assert fake.shape == (4, *shape) and fake.min() >= 0 and fake.max() <= 1
    logits = gan(fake)
    assert logits.shape == (4,)
    gan.generator_loss(logits).backward(retain_graph=True)
    gan.discriminator_loss(gan(_images(shape)), logits).backward()
    assert all(torch.isfinite(p.grad).all() for p in gan.parameters() if p.grad is not None)

    gan.train()
    s1 = gan.sample(5, generator=torch.Generator().manual_seed(1))
    s2 = gan.sample(5, generator=torch.Generator().manual_seed(1))
    assert gan.generator.training  # sample() restores the mode
    torch.testing.assert_close(s1, s2)
    assert s1.shape == (5, *shape) and s1.min() >= 0 and s1.max() <= 1
    assert DCGAN(**gan.config()).config() == gan.config()


def _softplus(v):
    return math.log1p(math.exp(-abs(v))) + max(v, 0.0)


def test_dcgan_losses_on_known_logits():
    real, fake = [2.0, -1.0, 0.5], [-3.0, 0.0, 4.0]
    rt, ft = torch.tensor(real), torch.tensor(fake)
    ns = DCGAN((1, 8, 8), hidden=4, loss="non_saturating")
    expect_d = sum(_softplus(-r) for r in real) / 3 + sum(_softplus(f) for f in fake) / 3
    expect_g = sum(_softplus(-f) for f in fake) / 3
    assert ns.discriminator_loss(rt, ft).item() == pytest.approx(expect_d, rel=1e-6)
    assert ns.generator_loss(ft).item() == pytest.approx(expect_g, rel=1e-6)
    hinge = DCGAN((1, 8, 8), hidden=4, loss="hinge")
    expect_d = sum(max(0.0, 1 - r) for r in real) / 3 + sum(max(0.0, 1 + f) for f in fake) / 3
    assert hinge.discriminator_loss(rt, ft).item() == pytest.approx(expect_d, rel=1e-6)
    assert hinge.generator_loss(ft).item() == pytest.approx(-sum(fake) / 3, rel=1e-6)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"likelihood": "poisson"}, "likelihood"),
        ({"data_shape": (8, 8)}, "data_shape"),
        ({"data_shape": (1, 8, 8, 1)}, "data_shape"),
        ({"data_shape": ("1", 8, 8)}, "data_shape"),
        ({"data_shape": (1, 7, 8)}, "data_shape"),
        ({"data_shape": (1, 8, 4)}, "data_shape"),
        ({"levels": 1}, "levels"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"hidden": -1}, "hidden"),
    ],
)
def test_vae_bad_arguments(kwargs, name):
    kwargs = {"data_shape": (1, 8, 8), **kwargs}
    with pytest.raises(ValueError, match=name):
        VAE(**kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"loss": "wasserstein"}, "loss"),
        ({"data_shape": (1, 8)}, "data_shape"),
        ({"latent_dim": 0}, "latent_dim"),
    ],
)
def test_dcgan_bad_arguments(kwargs, name):
    kwargs = {"data_shape": (1, 8, 8), **kwargs}
    with pytest.raises(ValueError, match=name):
        DCGAN(**kwargs)


def test_wrong_inputs_raise():
    vae = VAE((1, 8, 8), levels=17, hidden=4)
    gan = DCGAN((1, 8, 8), hidden=4)
    for call in (vae, vae.log_likelihood, vae.reconstruct, gan):
        with pytest.raises(ValueError, match=r"expected shape \(N, 1, 8, 8\), got \(2, 1, 9, 8\)"):
            call(torch.zeros(2, 1, 9, 8))
        with pytest.raises(ValueError, match=r"got \(1, 8, 8\)"):
            call(torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="floating point"):
        vae(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"expected shape \(N, 32\)"):
        gan.generate(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"eps: expected shape \(2, 16\), got \(2, 3\)"):
        vae(torch.zeros(2, 1, 8, 8), eps=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="k must"):
        vae.log_likelihood(torch.zeros(2, 1, 8, 8), k=0)
    with pytest.raises(TypeError, match=r"z must be a floating-point tensor \(N, 32\), got list"):
        gan.generate([0.0] * 32)
    with pytest.raises(ValueError, match=r"z: expected shape \(N, 16\)"):
        vae.decode(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"out must be decode\(z\) for the 2 images of x"):
        vae.log_prob_x_given_z(torch.zeros(2, 1, 8, 8), torch.zeros(2, 5, 8, 8))


def test_images_of_another_float_dtype_and_empty_batches():
    """float64 images go into a float32 model as its dtype (like the flows); an empty batch gives
    an empty result, not a division by zero."""
    torch.manual_seed(0)
    vae, gan = VAE((1, 8, 8), levels=17, hidden=4).eval(), DCGAN((1, 8, 8), hidden=4).eval()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(vae.encode(x), vae.encode(x.float()))
    torch.testing.assert_close(gan(x), gan(x.float()))
    assert vae.log_likelihood(x[:0], k=4).shape == (0,)
    assert gan.generate(torch.zeros(2, 32, dtype=torch.float64)).dtype == torch.float32


def test_vae_evaluation_refuses_images_outside_0_1_and_flags_a_many_level_bernoulli():
    model = VAE((1, 8, 8), levels=17, latent_dim=3, hidden=8)
    x = torch.randint(0, 17, (2, 1, 8, 8)).float() / 16
    assert model.bits_per_dim(x, 2).shape == (2,)
    for scaled in (x * 16, x - 0.5, torch.full_like(x, float("nan"))):  # levels, centred, NaN
        with pytest.raises(ValueError, match=r"x must hold images in \[0, 1\]"):
            model.bits_per_dim(scaled, 2)
    bernoulli = VAE((1, 8, 8), levels=17, latent_dim=3, hidden=8, likelihood="bernoulli")
    with pytest.warns(UserWarning, match="Bernoulli likelihood is a distribution over 2 levels"):
        bernoulli.log_likelihood(x, 2)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        model.sample(2, generator=0)


def test_models_copy_after_training_steps():
    """deepcopy (EMA / SWA copies) of models that ran a forward: the VAE's kept KL and the legacy
    spectral norm's computed weight were non-leaf tensors deepcopy refuses."""
    import copy

    from torch.optim.swa_utils import AveragedModel

    vae = VAE((1, 8, 8), levels=17, latent_dim=3, hidden=8)
    vae(torch.rand(2, 1, 8, 8))["loss"].backward()
    gan = DCGAN((1, 8, 8), hidden=8, spectral_norm=True)
    gan(torch.rand(4, 1, 8, 8)).sum().backward()
    for model in (vae, gan):
        copied = copy.deepcopy(model)
        AveragedModel(model)
        assert copied.state_dict().keys() == model.state_dict().keys()
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(copy.deepcopy(gan).eval()(x), gan.eval()(x))
