"""fastgen.models.RealNVP and Glow: exact round trips and log-determinants of the whole model,
log_prob / bits_per_dim / sample, configs, training stability under bf16 autocast, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from flow_helpers import assert_round_trip, jacobian_logabsdet

from fastgen.models import Glow, RealNVP
from fastgen.models._flow import standard_normal_log_density

TINY = {
    "glow": lambda: Glow((1, 4, 4), 17, num_levels=2, steps_per_level=2, hidden_channels=8),
    "glow_additive_plain": lambda: Glow((2, 4, 4), 17, num_levels=1, steps_per_level=2, hidden_channels=8,
                                        coupling="additive", lu=False, learned_prior=False),
    "glow_sigmoid_logit": lambda: Glow((1, 4, 4), 17, num_levels=2, steps_per_level=1, hidden_channels=8,
                                       scale="sigmoid", preprocessing="logit"),
    "realnvp": lambda: RealNVP((1, 4, 4), 17, num_scales=2, hidden_channels=8),
    "realnvp_vector": lambda: RealNVP((2,), None, num_layers=4, hidden_channels=8),
}


def _trained_a_little(name: str, dtype=torch.float64, steps: int = 3) -> torch.nn.Module:
    """A tiny model after a few optimizer steps (ActNorm initialised, couplings off the identity)."""
    torch.manual_seed(0)
    model = TINY[name]().to(dtype)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(steps):
        loss = -model.log_prob(_data(model, 16, dtype)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _data(model, n, dtype=torch.float64):
    if model.levels is None:
        return torch.randn(n, *model.data_shape, dtype=dtype)
    return torch.rand(n, *model.data_shape, dtype=dtype) * 0.9 + 0.05


@pytest.mark.parametrize("name", sorted(TINY))
def test_model_logdet_equals_the_dense_jacobian(name):
    model = _trained_a_little(name)
    x = _data(model, 2)
    _, logdet = model(x)
    torch.testing.assert_close(logdet, jacobian_logabsdet(model, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_round_trip(name, dtype):
    model = _trained_a_little(name, dtype)
    assert_round_trip(model, model.inverse, _data(model, 8, dtype), rtol=1e-5 if dtype == torch.float32 else 1e-10)


@pytest.mark.parametrize("name", sorted(TINY))
def test_log_prob_is_the_latent_density_plus_logdet_and_sampling_works(name):
    model = _trained_a_little(name, torch.float32)
    x = _data(model, 5, torch.float32)
    latents, logdet = model(x)
    expected = sum(standard_normal_log_density(z) for z in latents) + logdet
    torch.testing.assert_close(model.log_prob(x), expected)
    assert model.log_prob(x).shape == (5,)
    samples = model.sample(7, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (7, *model.data_shape) and torch.isfinite(samples).all()
    if model.levels is not None:
        grid = samples * (model.levels - 1)
        assert samples.min() >= 0 and samples.max() <= 1
        torch.testing.assert_close(grid, grid.round())  # on the level grid
    cold = model.sample(3, temperature=0.0)
    assert torch.equal(cold[0], cold[1])  # temperature 0: every latent is 0


def test_bits_per_dim_accounts_for_the_dequantization():
    model = _trained_a_little("glow", torch.float32)
    levels = torch.randint(0, 17, (6, 1, 4, 4), dtype=torch.uint8)
    g = torch.Generator().manual_seed(3)
    bpd = model.bits_per_dim(levels, generator=g)
    u = torch.rand(levels.shape, generator=torch.Generator().manual_seed(3))
    y = (levels.float() + u) / 17
    expected = (-model.log_prob(y) + 16 * math.log(17)) / (16 * math.log(2))
    torch.testing.assert_close(bpd, expected)
    # floats on the grid k / (levels - 1) give the same figure
    torch.testing.assert_close(model.bits_per_dim(levels.float() / 16, generator=torch.Generator().manual_seed(3)),
                               bpd)
    with pytest.raises(ValueError, match="levels"):
        _trained_a_little("realnvp_vector").bits_per_dim(torch.randn(2, 2))


def test_a_uniform_density_gives_log2_levels_bits():
    """Sanity of the accounting: log p = 0 on [0, 1)^D is exactly log2(levels) bits/dim."""
    model = Glow((1, 4, 4), 17, num_levels=1, steps_per_level=1, hidden_channels=4)
    model.log_prob = lambda y: torch.zeros(y.shape[0])  # type: ignore[method-assign]
    bpd = model.bits_per_dim(torch.zeros(3, 1, 4, 4, dtype=torch.uint8))
    torch.testing.assert_close(bpd, torch.full((3,), math.log2(17)))


@pytest.mark.parametrize("name", ["glow", "realnvp", "realnvp_vector"])
def test_config_rebuilds_the_architecture(name):
    model = _trained_a_little(name, torch.float32)
    clone = type(model)(**model.config())
    clone.load_state_dict(model.state_dict())
    clone.eval()
    x = _data(model, 3, torch.float32)
    torch.testing.assert_close(clone.log_prob(x), model.log_prob(x))


def test_vector_realnvp_takes_an_int_size_and_ignores_levels():
    model = RealNVP(2, 256)
    assert model.data_shape == (2,) and model.levels is None
    assert model.log_prob(torch.randn(3, 2)).shape == (3,)


def test_a_single_latent_inverts_as_a_plain_tensor():
    model = RealNVP(2).eval()
    x = torch.randn(5, 2)
    (z,), logdet = model(x)
    back, logdet_back = model.inverse(z)  # one latent: no list needed
    torch.testing.assert_close(back, x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logdet_back, -logdet, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="latents must be the list of 2 tensors forward returns"):
        Glow().inverse(torch.randn(2, 1, 8, 8))  # was read as a list of 2 batch rows


def test_default_flows_are_sized_for_the_embedded_digits():
    glow, realnvp = Glow(), RealNVP()
    assert glow.data_shape == realnvp.data_shape == (1, 8, 8)
    assert glow.levels == realnvp.levels == 17  # the digits' levels: bits_per_dim counts 17 bins
    x = torch.randint(0, 17, (2, 1, 8, 8)).float() / 16
    assert torch.isfinite(glow.bits_per_dim(x)).all() and torch.isfinite(realnvp.bits_per_dim(x)).all()


def test_glow_digits_shape_latents():
    model = Glow((1, 8, 8), 17)
    assert model.latent_shapes() == [(2, 4, 4), (8, 2, 2)]
    assert model.num_latents == 2
    assert RealNVP((1, 8, 8), 17).latent_shapes() == [(2, 4, 4), (2, 4, 4)]


def test_glow_trains_under_bf16_autocast_without_non_finite_values():
    torch.manual_seed(0)
    model = Glow((1, 8, 8), 17, steps_per_level=4, hidden_channels=32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = (torch.randint(0, 17, (256, 1, 8, 8)).float() + torch.rand(256, 1, 8, 8)) / 17
    for step in range(60):
        x = data[(step * 32) % 256:][:32]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = -model.log_prob(x).mean()
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()


@pytest.mark.parametrize("make, message", [
    (lambda: Glow((1, 6, 6), 17, num_levels=2), r"divisible by 2\*\*2"),
    (lambda: Glow((1, 8, 8), 17, num_levels=2**40), r"divisible by 2\*\*1099511627776"),  # refused at once
    (lambda: RealNVP((1, 8, 8), 17, num_scales=2**40), "divisible by"),
    (lambda: Glow((1, 8.7, 8), 17), "3 ints"),  # not truncated to 8
    (lambda: Glow((True, 8, 8), 17), "3 ints"),
    (lambda: Glow((1, 8, 8), 17, coupling="spline"), "coupling"),
    (lambda: Glow((1, 8, 8), 17, scale="softplus"), "scale"),
    (lambda: Glow((1, 8), 17), "3 positive ints"),
    (lambda: Glow((1, 8, 8), 1), "levels"),
    (lambda: RealNVP((1,), None), "D >= 2"),
    (lambda: RealNVP((1, 8, 8), 17, preprocessing="tanh"), "preprocessing"),
    (lambda: RealNVP((1, 8, 8), 17, num_scales=0), "num_scales"),
])
def test_bad_model_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_and_inputs(name, dtype):
    # A model converted to bfloat16/float16 runs (the LU algebra and slogdet of InvConv1x1 in
    # float32 inside), and a half-precision batch through a float32 model is computed in float32.
    model = _trained_a_little(name, torch.float32)
    x = _data(model, 4, torch.float32)
    full = model.log_prob(x)
    half_input = model.log_prob(x.to(dtype))
    assert half_input.dtype == torch.float32
    torch.testing.assert_close(half_input, model.log_prob(x.to(dtype).float()))
    half_model = _trained_a_little(name, torch.float32).to(dtype)
    for mode in (half_model.train, half_model.eval):
        mode()
        log_prob = half_model.log_prob(x.to(dtype))
        assert log_prob.dtype == torch.float32 and torch.isfinite(log_prob).all()
        assert (log_prob - full).abs().max() <= 0.1 * full.abs().max() + 1.0
        latents, _ = half_model(x.to(dtype))
        back, _ = half_model.inverse(latents)
        assert back.dtype == dtype
        torch.testing.assert_close(back.float(), x, atol=0.1, rtol=0.1)
        assert torch.isfinite(half_model.sample(3).float()).all()


def test_bad_model_inputs():
    model = Glow((1, 4, 4), 17, num_levels=1, steps_per_level=1, hidden_channels=4)
    with pytest.raises(ValueError, match=r"\(N, 1, 4, 4\)"):
        model.log_prob(torch.rand(2, 1, 8, 8))
    with pytest.raises(TypeError, match="floating"):
        model.log_prob(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="latents"):
        model.inverse([torch.zeros(1, 4, 2, 2)] * 3)
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, temperature=-1.0)
    with pytest.raises(ValueError, match="temperature must be a finite number"):
        model.sample(2, temperature=float("nan"))
    with pytest.raises(ValueError, match="n must"):
        model.sample(0)


@pytest.mark.parametrize("name", ["glow", "realnvp"])
def test_bits_per_dim_refuses_images_off_the_level_grid(name):
    """A discrete likelihood is defined on the level grid only: values outside it (8-bit values,
    negative levels, dequantized floats, NaN) used to be clamped and rounded into a level."""
    model = TINY[name]().eval()
    for bad in (torch.full((2, 1, 4, 4), 200, dtype=torch.uint8), torch.full((2, 1, 4, 4), -3),
                torch.full((2, 1, 4, 4), 0.03), torch.full((2, 1, 4, 4), float("nan")), torch.full((2, 1, 4, 4), 2.0)):
        with pytest.raises(ValueError, match="x must hold"):
            model.bits_per_dim(bad)
    levels = torch.randint(0, 17, (3, 1, 4, 4))
    generator = torch.Generator().manual_seed(0)
    from_ints = model.bits_per_dim(levels, generator=generator)
    from_floats = model.bits_per_dim(levels / 16.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(from_ints, from_floats)
    assert model.bits_per_dim(levels[:0]).shape == (0,) and model.log_prob(torch.rand(0, 1, 4, 4)).shape == (0,)


def test_logit_preprocessing_gives_minus_inf_outside_its_support_not_nan():
    model = TINY["realnvp"]().eval()
    x = torch.rand(4, 1, 4, 4).requires_grad_(True)
    inside = model.log_prob(x.detach())
    bad = x.detach().clone()
    bad[1, 0, 0, 0], bad[2, 0, 3, 3] = 1.5, -0.2
    bad.requires_grad_(True)
    log_p = model.log_prob(bad)
    assert log_p[1] == -math.inf and log_p[2] == -math.inf
    torch.testing.assert_close(log_p[[0, 3]], inside[[0, 3]])
    log_p[[0, 3]].sum().backward()
    assert torch.isfinite(bad.grad).all() and bad.grad[[1, 2]].abs().sum() == 0


@pytest.mark.parametrize("assign", [False, True])
def test_a_glow_built_on_the_meta_device_loads_whole(assign):
    """Deferred initialisation: build on meta, then materialise and load (or load with assign=True)."""
    trained = _trained_a_little("glow", torch.float32)
    x = _data(trained, 4, torch.float32)
    with torch.device("meta"):
        model = TINY["glow"]()
    if not assign:
        model.to_empty(device="cpu")
    model.load_state_dict(trained.state_dict(), assign=assign)
    model.eval()
    torch.testing.assert_close(model.log_prob(x), trained.log_prob(x))
    torch.testing.assert_close(model.inverse(model(x)[0])[0], x, atol=1e-5, rtol=1e-5)


def test_an_eval_glow_compiles_with_fullgraph():
    model = _trained_a_little("glow", torch.float32)
    x = _data(model, 4, torch.float32)
    expected = model.log_prob(x)  # fills InvConv1x1's eval cache, which compiled code must not consult
    torch._dynamo.reset()
    compiled = torch.compile(model.log_prob, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), expected)


def test_sample_runs_in_eval_mode_and_restores_every_module_mode():
    torch.manual_seed(0)
    model = Glow((1, 4, 4), 17, num_levels=2, steps_per_level=2, hidden_channels=8, dropout=0.5)
    model.log_prob(_data(model, 8, torch.float32))  # training mode: ActNorm initialised
    frozen = model.layers[1].eval()  # a submodule the user keeps in eval
    draws = [model.sample(3, 0.7, generator=torch.Generator().manual_seed(1), quantize=False) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])  # no dropout while sampling
    assert model.training and not frozen.training
    model.eval()
    torch.testing.assert_close(model.sample(3, 0.7, generator=torch.Generator().manual_seed(1), quantize=False),
                               draws[0])
    assert model.sample(2, temperature=np.float32(0.5)).shape == (2, 1, 4, 4)


def test_inverse_checks_the_latents_shapes():
    model = Glow((1, 8, 8), 17, num_levels=2, steps_per_level=1, hidden_channels=4).eval()
    latents, _ = model(torch.rand(2, 1, 8, 8))
    for i, bad in ((0, latents[0][:, :1]), (1, latents[1][:1]), (1, latents[1].long())):
        wrong = list(latents)
        wrong[i] = bad
        with pytest.raises((ValueError, TypeError), match=rf"latents\[{i}\]"):
            model.inverse(wrong)

