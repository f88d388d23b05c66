"""fastgen.nn flow layers: round trips, exact log-determinants, ActNorm initialisation, the LU
parameterisation and its cached inverse, masks, errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from flow_helpers import assert_round_trip, jacobian_logabsdet
from torch import nn

from fastgen import nn as fnn


def _randomise(layer: nn.Module, std: float = 0.3) -> nn.Module:
    """Move every parameter off its (identity) initialisation, so the checks are not trivial."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.add_(torch.randn_like(p) * std)
    return layer


IMAGE_LAYERS = {
    "actnorm": lambda c: fnn.ActNorm(c),
    "invconv_lu": lambda c: fnn.InvConv1x1(c),
    "invconv_plain": lambda c: fnn.InvConv1x1(c, lu=False),
    "affine_channel_tanh": lambda c: fnn.AffineCoupling(c, hidden_channels=8),
    "affine_channel_sigmoid_parity1": lambda c: fnn.AffineCoupling(c, parity=1, hidden_channels=8, scale="sigmoid"),
    "affine_checkerboard_exp": lambda c: fnn.AffineCoupling(c, mask="checkerboard", hidden_channels=8, scale="exp"),
    "affine_checkerboard_sigmoid": lambda c: fnn.AffineCoupling(c, mask="checkerboard", parity=1, hidden_channels=8,
                                                                scale="sigmoid"),
    "additive_channel": lambda c: fnn.AdditiveCoupling(c, hidden_channels=8),
    "additive_checkerboard": lambda c: fnn.AdditiveCoupling(c, mask="checkerboard", hidden_channels=8),
    "squeeze": lambda c: fnn.Squeeze(),
    "split": lambda c: fnn.Split(c),
    "split_standard": lambda c: fnn.Split(c, learned_prior=False),
}


def _layer(name: str, c: int, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    layer = _randomise(IMAGE_LAYERS[name](c)).to(dtype)
    return layer.eval()  # ActNorm: no data initialisation inside the checks


@pytest.mark.parametrize("name", sorted(IMAGE_LAYERS))
def test_logdet_equals_the_dense_jacobian(name):
    layer = _layer(name, 3 if "channel" not in name and "split" not in name else 4)
    c = layer.num_channels if hasattr(layer, "num_channels") else 3
    x = torch.randn(2, c, 4, 4, dtype=torch.float64)
    _, logdet = layer(x)
    torch.testing.assert_close(logdet, jacobian_logabsdet(layer, x), rtol=1e-7, atol=1e-7)
    y, _ = layer(x)
    _, logdet_inverse = layer.inverse(y)
    torch.testing.assert_close(logdet_inverse, jacobian_logabsdet(layer.inverse, y), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("name", sorted(IMAGE_LAYERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip(name, dtype):
    layer = _layer(name, 4, dtype)
    x = torch.randn(5, 4, 6, 6, dtype=dtype)
    assert_round_trip(layer, layer.inverse, x, rtol=1e-5 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("name", sorted(IMAGE_LAYERS))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_input_to_a_float32_layer(name, dtype):
    # Computed in float32 inside (the conditioner and prior in the layer's dtype): y in the
    # input's dtype, the log-determinant in float32, both near the float32 layer's results.
    layer = _layer(name, 4, torch.float32)
    x = torch.randn(3, 4, 4, 4)
    y32, logdet32 = layer(x.to(dtype).float())
    y, logdet = layer(x.to(dtype))
    parts = y if isinstance(y, tuple) else (y,)
    for part, part32 in zip(parts, y32 if isinstance(y32, tuple) else (y32,)):
        assert part.dtype == dtype
        torch.testing.assert_close(part.float(), part32, atol=3e-2, rtol=3e-2)
    assert logdet.dtype == torch.float32
    torch.testing.assert_close(logdet, logdet32, atol=5e-2, rtol=2e-2)
    def first(t):
        return t[0] if isinstance(t, tuple) else t

    back = layer.inverse(y)[0]
    back32 = layer.inverse(tuple(p.float() for p in parts) if len(parts) > 1 else y.float())[0]
    assert first(back).dtype == dtype
    torch.testing.assert_close(first(back).float(), first(back32), atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("name", ["actnorm", "invconv_lu", "invconv_plain"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_input_keeps_the_float32_parameters_unrounded(name, dtype):
    """The log-determinant depends on the parameters only: a half-precision input to a float32
    layer gets exactly the float32 layer's logdet (rounding log_scale or W to the input's dtype
    first cost ~1 nat at 16 channels of 8x8), and y stays within one rounding of it."""
    layer = _layer(name, 16, torch.float32)
    x = torch.randn(2, 16, 8, 8).to(dtype)
    y32, logdet32 = layer(x.float())
    y, logdet = layer(x)
    assert y.dtype == dtype and logdet.dtype == torch.float32
    torch.testing.assert_close(logdet, logdet32, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(y, y32.to(dtype), rtol=1e-2, atol=1e-2)
    back32, back_logdet32 = layer.inverse(y32)
    _, back_logdet = layer.inverse(y32.to(dtype))
    torch.testing.assert_close(back_logdet, back_logdet32, rtol=1e-6, atol=1e-4)


def test_vector_layers_round_trip_and_logdet():
    torch.manual_seed(1)
    for layer in [fnn.AffineCoupling(5, vector=True, hidden_channels=8), fnn.AffineCoupling(5, parity=1, vector=True),
                  fnn.AdditiveCoupling(2, vector=True), fnn.ActNorm(5), fnn.Split(5, vector=True)]:
        layer = _randomise(layer).double().eval()
        x = torch.randn(3, layer.num_channels, dtype=torch.float64)
        assert_round_trip(layer, layer.inverse, x, rtol=1e-12)
        torch.testing.assert_close(layer(x)[1], jacobian_logabsdet(layer, x), rtol=1e-7, atol=1e-7)


def test_actnorm_initialises_from_the_first_training_batch_only():
    layer = fnn.ActNorm(3)
    x = torch.randn(64, 3, 5, 5) * torch.tensor([2.0, 0.5, 3.0])[None, :, None, None] + 4.0
    y, logdet = layer(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(logdet, torch.full((64,), 25 * float(layer.log_scale.detach().sum())))
    assert bool(layer.initialized)
    before = layer.log_scale.detach().clone()
    layer(x * 10)  # a second batch does not re-initialise
    assert torch.equal(layer.log_scale.detach(), before)


def test_actnorm_state_dict_carries_the_initialisation():
    a = fnn.ActNorm(2)
    a(torch.randn(8, 2, 3, 3) * 5)
    b = fnn.ActNorm(2)
    b.load_state_dict(a.state_dict())
    params = b.log_scale.detach().clone()
    b(torch.randn(8, 2, 3, 3))  # must not initialise again
    assert torch.equal(b.log_scale.detach(), params)


def test_actnorm_buffer_set_behind_its_back_is_not_initialised_again():
    """DDP broadcasts rank 0's (loaded) buffers into the other ranks' modules by copy_, which
    load_state_dict never sees; a rank that initialised again would run a collective of its own."""
    torch.manual_seed(0)
    trained = fnn.ActNorm(3)
    trained(torch.randn(16, 3, 2, 2) * 2 + 1)
    fresh = fnn.ActNorm(3)
    with torch.no_grad():
        for mine, theirs in zip([*fresh.parameters(), *fresh.buffers()], [*trained.parameters(), *trained.buffers()]):
            mine.copy_(theirs)
    fresh(torch.randn(8, 3, 2, 2) * 5 - 3)
    assert torch.equal(fresh.bias, trained.bias) and torch.equal(fresh.log_scale, trained.log_scale)


def test_actnorm_does_not_initialise_in_eval_mode():
    layer = fnn.ActNorm(2).eval()
    x = torch.randn(4, 2, 3, 3)
    y, logdet = layer(x)
    assert torch.equal(y, x) and not layer._initialized
    assert torch.equal(logdet, torch.zeros(4))


def _actnorm_rank(rank, world, path, queue):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    torch.manual_seed(rank)
    layer = fnn.ActNorm(3)
    x = torch.randn(4 + 3 * rank, 3, 2, 2) * (rank + 1) + rank
    layer(x)
    # numpy arrays travel by value: a tensor would be shared through a file descriptor that the
    # parent can only fetch while this process is still alive (a race, seen once in CI).
    queue.put((rank, x.numpy(), layer.bias.detach().numpy(), layer.log_scale.detach().numpy()))
    dist.destroy_process_group()


def test_actnorm_initialisation_is_reduced_across_ranks(tmp_path):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_actnorm_rank, args=(r, 2, str(tmp_path / "rendezvous"), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted((queue.get(timeout=120) for _ in procs), key=lambda result: result[0])
    results = [(rank, *map(torch.from_numpy, arrays)) for rank, *arrays in results]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    (_, x0, b0, s0), (_, x1, b1, s1) = results
    torch.testing.assert_close(b0, b1)
    torch.testing.assert_close(s0, s1)
    both = torch.cat([x0, x1])  # the statistics of the union of both ranks' batches
    single = fnn.ActNorm(3)
    single(both)
    torch.testing.assert_close(b0, single.bias.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s0, single.log_scale.detach(), rtol=1e-5, atol=1e-5)


def test_lu_weight_logdet_matches_slogdet_and_starts_orthogonal():
    layer = fnn.InvConv1x1(6)
    w, logabsdet, _ = layer.weights()
    torch.testing.assert_close(w @ w.T, torch.eye(6), atol=1e-5, rtol=0)
    _randomise(layer)
    w, logabsdet, _ = layer.weights()
    torch.testing.assert_close(logabsdet, torch.linalg.slogdet(w).logabsdet, rtol=1e-5, atol=1e-5)
    # L unit-lower, U strictly upper: entries outside the triangles do not matter
    with torch.no_grad():
        layer.lower.add_(torch.triu(torch.ones(6, 6)) * 100)
    torch.testing.assert_close(layer.weights()[0], w)


def test_inverse_weight_is_cached_in_eval_and_invalidated_by_a_parameter_change():
    layer = _randomise(fnn.InvConv1x1(4)).eval()
    y = torch.randn(2, 4, 3, 3)
    with torch.no_grad():
        first = layer.weights(with_inverse=True)
        again = layer.weights(with_inverse=True)
        assert again[2] is first[2]  # cached
        torch.testing.assert_close(first[0] @ first[2], torch.eye(4), atol=1e-5, rtol=0)
        layer.log_s.add_(0.5)  # an in-place update (what an optimizer does)
        changed = layer.weights(with_inverse=True)
        assert changed[2] is not first[2]
        torch.testing.assert_close(changed[0] @ changed[2], torch.eye(4), atol=1e-5, rtol=0)
        x, _ = layer.inverse(y)
        torch.testing.assert_close(layer(x)[0], y, atol=1e-5, rtol=1e-5)
        layer.upper.data.add_(0.25)  # through .data: no version bump, still seen
        edited = layer.weights(with_inverse=True)
        torch.testing.assert_close(edited[0] @ edited[2], torch.eye(4), atol=1e-5, rtol=0)
        assert not torch.allclose(edited[0], changed[0])
        layer.permutation.copy_(layer.permutation[[1, 0, 3, 2]])  # a buffer (e.g. loaded) is seen too
        permuted = layer.weights(with_inverse=True)
        torch.testing.assert_close(permuted[0], layer._compute_weight())
        assert not torch.allclose(permuted[0], edited[0])
        torch.testing.assert_close(permuted[0] @ permuted[2], torch.eye(4), atol=1e-5, rtol=0)
    layer.train()
    assert layer.weights()[0].requires_grad  # training: recomputed with autograd


def test_the_gpu_cache_check_compares_like_torch_equal():
    """The comparison InvConv1x1's eval cache uses on a GPU (one wait), run here on CPU tensors."""
    from fastgen.nn.flow_layers import _all_equal_one_wait

    a, b = [torch.randn(3, 3), torch.randn(3)], [torch.randn(3, 3), torch.randn(3)]
    assert _all_equal_one_wait(a, [t.clone() for t in a])
    assert not _all_equal_one_wait(a, [a[0].clone(), b[1]])
    nan = torch.tensor([float("nan")])
    assert not _all_equal_one_wait([nan], [nan.clone()])  # as torch.equal: the cache is rebuilt


@pytest.mark.parametrize("lu", [True, False])
def test_cached_inverse_keeps_its_gradients_with_autograd_on(monkeypatch, lu):
    """In eval mode with autograd on: W^-1 (and the plain log|det W|) computed once, and the
    parameters' gradients equal training mode's, which recomputes everything."""
    layer = _randomise(fnn.InvConv1x1(4, lu=lu)).double()
    y = torch.randn(2, 4, 3, 3, dtype=torch.float64)

    def grads():
        layer.zero_grad()
        x, logdet = layer.inverse(y)
        (x.square().sum() + logdet.sum() + layer(y)[1].sum()).backward()
        return [p.grad.clone() for p in layer.parameters()]

    layer.train()
    expected = grads()
    layer.eval()
    counts = {"solve_triangular": 0, "inv": 0, "slogdet": 0}
    for name in counts:
        original = getattr(torch.linalg, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)
        monkeypatch.setattr(torch.linalg, name, counted)
    for _ in range(3):
        for got, want in zip(grads(), expected):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert counts == ({"solve_triangular": 2, "inv": 0, "slogdet": 0} if lu
                      else {"solve_triangular": 0, "inv": 1, "slogdet": 1})


@pytest.mark.parametrize("lu", [True, False])
def test_a_cache_built_under_inference_mode_serves_autograd_later(lu):
    """Sampling under torch.inference_mode fills the eval-mode cache; a training-style backward
    through the same eval-mode layer afterwards must not meet inference tensors in it."""
    layer = _randomise(fnn.InvConv1x1(4, lu=lu)).eval()
    y = torch.randn(2, 4, 3, 3)
    with torch.inference_mode():
        expected, _ = layer.inverse(y)
    x, logdet = layer.inverse(y)
    (x.square().sum() + logdet.sum() + layer(y)[1].sum()).backward()
    torch.testing.assert_close(x.detach(), expected)
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


def test_coupling_starts_as_the_identity_and_takes_a_custom_conditioner():
    x = torch.randn(3, 4, 4, 4)
    for layer in [fnn.AffineCoupling(4), fnn.AffineCoupling(4, mask="checkerboard", scale="sigmoid")]:
        y, logdet = layer(x)
        if layer.scale == "sigmoid":  # exp(s) = sigmoid(2) on the transformed pixels
            assert not torch.allclose(y, x)
        else:
            torch.testing.assert_close(y, x)
            torch.testing.assert_close(logdet, torch.zeros(3))
    conditioner = nn.Conv2d(2, 4, 1)
    layer = fnn.AffineCoupling(4, conditioner=conditioner)
    assert layer.conditioner is conditioner
    y, _ = layer(x)
    assert torch.equal(y[:, :2], x[:, :2]) and not torch.equal(y[:, 2:], x[:, 2:])


def test_checkerboard_keeps_the_conditioning_pixels():
    layer = _randomise(fnn.AffineCoupling(2, mask="checkerboard", parity=0, scale="sigmoid", hidden_channels=8))
    x = torch.randn(2, 2, 5, 5)
    y, _ = layer(x)
    ij = torch.arange(5)[:, None] + torch.arange(5)[None, :]
    keep = (ij % 2 == 0)
    assert torch.equal(y[..., keep], x[..., keep])
    assert not torch.allclose(y[..., ~keep], x[..., ~keep])


def test_coupling_under_bf16_autocast_keeps_the_flow_in_float32():
    layer = _randomise(fnn.AffineCoupling(4, hidden_channels=8))
    x = torch.randn(2, 4, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, logdet = layer(x)
    assert y.dtype == torch.float32 and logdet.dtype == torch.float32
    back, _ = layer.inverse(y)  # outside autocast: the conditioner differs, so only close
    torch.testing.assert_close(back, x, atol=0.1, rtol=0.1)


@pytest.mark.parametrize("make, x, message", [
    (lambda: fnn.AffineCoupling(4), torch.randn(2, 3, 4, 4), "4 channels"),
    (lambda: fnn.AffineCoupling(4), torch.randn(2, 4), r"\(N, C, H, W\)"),
    (lambda: fnn.ActNorm(3), torch.randn(2, 4, 2), r"\(N, 3, \.\.\.\)"),
    (lambda: fnn.InvConv1x1(3), torch.randn(2, 2, 2, 2), r"\(N, 3, \.\.\.\)"),
    (lambda: fnn.Squeeze(), torch.randn(2, 1, 3, 4), "divisible"),
    (lambda: fnn.Split(4), torch.randn(2, 4), r"x must have shape \(N, 4, H, W\), got \(2, 4\) \(for vectors"),
    (lambda: fnn.Split(4, vector=True), torch.randn(2, 4, 3, 3), r"x must have shape \(N, 4\), got"),
    # ActNorm initialises from its first training batch: an empty or NaN one would stay in it
    (lambda: fnn.ActNorm(3), torch.randn(0, 3, 2, 2), "non-empty and finite"),
    (lambda: fnn.ActNorm(3), torch.full((2, 3, 2, 2), float("nan")), "non-empty and finite"),
])
def test_bad_inputs_name_the_problem(make, x, message):
    with pytest.raises(ValueError, match=message):
        make()(x)


@pytest.mark.parametrize("make, message", [
    (lambda: fnn.AffineCoupling(4, mask="stripes"), "mask"),
    (lambda: fnn.AffineCoupling(4, scale="softplus"), "scale"),
    (lambda: fnn.AffineCoupling(4, clamp=0.0), "clamp"),
    (lambda: fnn.AffineCoupling(4, clamp=1e300), "clamp must be a finite number > 0 and <="),  # NaN in float32
    (lambda: fnn.AffineCoupling(1), "num_channels >= 2"),
    (lambda: fnn.AffineCoupling(4, parity=2), "parity"),
    (lambda: fnn.AffineCoupling(4, parity=True), "parity must be 0 or 1"),
    (lambda: fnn.AffineCoupling(4, mask="checkerboard", vector=True), "vectors"),
    (lambda: fnn.ActNorm(0), "num_channels"),
    (lambda: fnn.ActNorm(3, eps=-1.0), "eps must be a finite number > 0"),
    (lambda: fnn.Squeeze(0), "factor must be an int >= 1"),
    (lambda: fnn.Split(1), "num_channels"),
])
def test_bad_arguments_name_the_problem(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_mask_and_lu_switch_may_be_given_positionally():
    assert fnn.AffineCoupling(4, "checkerboard").mask == "checkerboard"
    assert fnn.AdditiveCoupling(4, "checkerboard").mask == "checkerboard"
    assert not fnn.InvConv1x1(4, False).lu


def test_inverse_of_actnorm_and_split_check_their_input():
    norm = fnn.ActNorm(3).eval()
    with pytest.raises(ValueError, match=r"y must have shape \(N, 3, \.\.\.\)"):
        norm.inverse(torch.randn(2, 5, 4, 4))
    for learned_prior in (False, True):
        split = fnn.Split(5, learned_prior=learned_prior)
        with pytest.raises(ValueError, match=r"x1 must have shape \(N, 3, \.\.\.\)"):
            split.inverse((torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)))
        with pytest.raises(TypeError, match=r"pair \(x1, z2\)"):
            split.inverse(torch.randn(3, 5, 4, 4))
        with pytest.raises(ValueError, match="must share the batch"):
            split.inverse((torch.randn(3, 3, 4, 4), torch.randn(2, 2, 4, 4)))


def test_a_conditioner_must_be_a_module():
    with pytest.raises(TypeError, match="conditioner must be an nn.Module"):
        fnn.AffineCoupling(4, conditioner=5)


@pytest.mark.parametrize("make, name", [
    (lambda: fnn.InvConv1x1(4, lu="no"), "lu"),
    (lambda: fnn.GaussianReparameterization(sample_in_eval="no"), "sample_in_eval"),
])
def test_flags_must_be_bools(make, name):
    """A string flag such as "no" would count as true."""
    with pytest.raises(TypeError, match=f"{name} must be True or False"):
        make()



def test_actnorm_warns_when_its_first_batch_has_a_constant_channel():
    """A batch of one vector (or a constant channel) has zero variance: the scale becomes 1/eps."""
    with pytest.warns(UserWarning, match=r"channel\(s\) \[1\] have zero variance"):
        fnn.ActNorm(3)(torch.stack([torch.tensor([0.0, 2.0, 1.0]), torch.tensor([1.0, 2.0, 0.0])]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fnn.ActNorm(3)(torch.randn(4, 3))
