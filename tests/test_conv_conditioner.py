"""conv_conditioner (Glow's coupling network as one op) and the ConvConditioner module: kernel vs
the float64 reference (forward and every gradient), gradcheck, opcheck, torch.compile, thread-count
independence, bad input; the module against the same layers run one by one."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import pytest
import torch
from conv_cases import DTYPES, close
from torch import nn
from torch.library import opcheck

from fastgen import _ext, ops, reference
from fastgen import nn as fnn
from fastgen.ops import _dispatch, conditioner

OPS = torch.ops.fastgen
NAMES = ("x", "w1", "b1", "w2", "b2", "w3", "b3")
needs_ext = pytest.mark.skipif(not (_ext.available() and _ext.has_op("conv_conditioner")),
                               reason="compiled extension (with conv_conditioner) not loaded")


class Case(NamedTuple):
    n: int
    c_in: int
    h: int
    w: int
    h1: int
    h2: int
    c_out: int
    k1: int = 3
    k3: int = 3

    def __str__(self) -> str:
        return (f"{self.n}x{self.c_in}x{self.h}x{self.w} hidden{self.h1}/{self.h2} out{self.c_out} "
                f"k{self.k1}/{self.k3}")


# Glow's two level sizes (8x8 digits), odd and one-channel sizes, 1x1 images (every tap but the
# centre outside), images narrower than the kernel, 1x1 and 5x5 kernels, batch 1, an odd batch
# (unequal sample blocks).
SHAPES = [
    Case(64, 2, 4, 4, 64, 64, 4),
    Case(64, 4, 2, 2, 64, 64, 8),
    Case(3, 1, 5, 7, 5, 3, 2),
    Case(1, 3, 1, 1, 4, 4, 1),
    Case(2, 2, 3, 2, 6, 5, 4, 5, 5),
    Case(5, 3, 4, 3, 7, 2, 6, 1, 3),
    Case(4, 2, 6, 5, 3, 8, 2, 3, 1),
]


@pytest.fixture(autouse=True)
def kernel_at_every_size(monkeypatch):
    """ops.conv_conditioner hands inputs wider than KERNEL_MAX_CHANNELS to the reference (faster
    there); these tests hold the kernel to every size."""
    monkeypatch.setattr(conditioner, "KERNEL_MAX_CHANNELS", 10 ** 9)


def _inputs(case: Case, dtype=torch.float32, device="cpu", seed=0, biases=(True, True, True)):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dtype=dtype, device=device)

    x = rand(case.n, case.c_in, case.h, case.w)
    w1 = rand(case.h1, case.c_in, case.k1, case.k1, scale=(case.c_in * case.k1 ** 2) ** -0.5)
    w2 = rand(case.h2, case.h1, 1, 1, scale=case.h1 ** -0.5)
    w3 = rand(case.c_out, case.h2, case.k3, case.k3, scale=(case.h2 * case.k3 ** 2) ** -0.5)
    b1, b2, b3 = (rand(c, scale=0.5) if has else None for c, has in zip((case.h1, case.h2, case.c_out), biases))
    return [x, w1, b1, w2, b2, w3, b3]


def _leaves(tensors, dtype=None):
    return [None if t is None else t.detach().clone().to(dtype or t.dtype).requires_grad_(True) for t in tensors]


def _check(tensors, dtype, seed=1):
    """Output and the gradient of every argument vs autograd through the float64 reference."""
    leaves = _leaves(tensors)
    ref = _leaves([None if t is None else t.cpu() for t in tensors], torch.float64)
    y, y_ref = ops.conv_conditioner(*leaves), reference.conv_conditioner(*ref)
    close(y, y_ref, dtype, "y")
    grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(dtype=dtype, device=y.device)
    y.backward(grad)
    y_ref.backward(grad.double().cpu())
    for name, actual, expected in zip(NAMES, leaves, ref):
        if actual is not None:
            assert actual.grad is not None, name
            close(actual.grad, expected.grad, dtype, f"grad of {name}")


@needs_ext
def test_kernels_and_compiled_autograd_registered():
    assert "cpu" in _dispatch.KERNEL_DEVICES["conv_conditioner"]
    assert "cpu" in _dispatch.KERNEL_DEVICES["conv_conditioner_backward"]
    for name in ("conv_conditioner", "actnorm", "affine_coupling", "additive_coupling", "invertible_conv1x1"):
        assert _ext.has_compiled_autograd(name), name


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", SHAPES, ids=str)
def test_forward_and_gradients_match_reference(case, dtype, device):
    _check(_inputs(case, dtype, device), dtype)


@pytest.mark.parametrize("biases", [(False, False, False), (True, False, True), (False, True, False)], ids=str)
def test_without_biases(biases, device):
    for dtype in (torch.float32, torch.float64):
        _check(_inputs(Case(3, 2, 4, 4, 6, 5, 4), dtype, device, biases=biases), dtype)


def _seed_and_masks(x, hidden, dropout, seed=7):
    """The seed ops.conv_conditioner draws from a generator seeded with ``seed``, and its masks."""
    drawn = ops.draw_seed(x.device, torch.Generator(x.device).manual_seed(seed))
    positions = x.shape[0] * x.shape[2] * x.shape[3]
    return drawn, reference.conditioner_dropout_masks(int(drawn), positions, hidden, dropout, x.dtype, x.device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", [Case(5, 2, 4, 3, 6, 5, 4), Case(3, 1, 2, 2, 7, 3, 2), SHAPES[0]], ids=str)
def test_dropout_matches_the_reference_with_the_same_masks(case, dtype, device):
    tensors = _inputs(case, dtype, device)
    leaves = _leaves(tensors)
    y = ops.conv_conditioner(*leaves, dropout=0.3, generator=torch.Generator(device).manual_seed(7))
    _, keep = _seed_and_masks(tensors[0], (case.h1, case.h2), 0.3)
    ref = _leaves([t.cpu() for t in tensors], torch.float64)
    y_ref = reference.conv_conditioner(*ref, *(k.double().cpu() for k in keep))
    close(y, y_ref, dtype, "y")
    grad = torch.randn(y.shape, dtype=dtype, device=device)
    y.backward(grad)
    y_ref.backward(grad.double().cpu())
    for name, actual, expected in zip(NAMES, leaves, ref):
        close(actual.grad, expected.grad, dtype, f"grad of {name}")


def test_dropout_masks_drop_the_asked_fraction():
    keep1, keep2 = reference.conditioner_dropout_masks(-12345, 1000, (64, 33), 0.3)
    for keep in (keep1, keep2):
        values = keep.unique().tolist()
        assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.7)
        assert (keep == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert not torch.equal(keep1[:, :33], keep2)  # one stream, not the same draws twice
    other = reference.conditioner_dropout_masks(-12344, 1000, (64, 33), 0.3)[0]
    assert (other != keep1).float().mean().item() > 0.3


def test_dropout_draws_a_new_seed_per_call():
    tensors = _inputs(Case(4, 2, 4, 4, 16, 16, 4))
    torch.manual_seed(0)
    first = ops.conv_conditioner(*tensors, dropout=0.5)
    assert not torch.equal(ops.conv_conditioner(*tensors, dropout=0.5), first)
    torch.manual_seed(0)
    assert torch.equal(ops.conv_conditioner(*tensors, dropout=0.5), first)  # torch.manual_seed reproduces


@needs_ext
def test_gradcheck_with_dropout():
    # The raw op has a CPU kernel only (CUDA runs the reference through ops.conv_conditioner).
    tensors = _leaves(_inputs(Case(2, 2, 3, 4, 4, 3, 2), torch.float64))
    seed = torch.tensor(99)
    assert torch.autograd.gradcheck(lambda *a: OPS.conv_conditioner(*a, 0.5, seed)[0], tensors)


def test_non_contiguous_inputs(device):
    """x as the channel half of a larger tensor (as a coupling passes it), and spatially transposed."""
    case = Case(3, 2, 5, 4, 6, 5, 4)
    _, *weights = _inputs(case, torch.float64, device)
    wide = torch.randn(3, 5, 5, 4, dtype=torch.float64, device=device)
    half = wide[:, 1:3]
    assert not half.is_contiguous()
    _check([half, *weights], torch.float64)
    transposed = torch.randn(3, 2, 4, 5, dtype=torch.float64, device=device).transpose(2, 3)
    _check([transposed, *weights], torch.float64)


@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_inference_mode(dropout, device):
    """Under torch.inference_mode the kernel's outputs are inference tensors (its worker threads
    must not send them through autograd's kernels)."""
    tensors = _inputs(Case(6, 2, 4, 4, 16, 8, 4), torch.float32, device)
    expected = ops.conv_conditioner(*tensors, dropout=dropout, generator=torch.Generator(device).manual_seed(3))
    with torch.inference_mode():
        actual = ops.conv_conditioner(*tensors, dropout=dropout, generator=torch.Generator(device).manual_seed(3))
    torch.testing.assert_close(actual, expected)


def test_empty_batch(device):
    _check(_inputs(Case(0, 2, 4, 4, 6, 5, 4), torch.float32, device), torch.float32)


def test_deterministic_across_thread_counts():
    """The samples are cut into fixed blocks and their weight gradients summed in order."""
    tensors = _inputs(Case(7, 2, 4, 4, 16, 12, 4))
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            leaves = _leaves(tensors)
            y = ops.conv_conditioner(*leaves)
            (y * y).sum().backward()
            results.append([y] + [leaf.grad for leaf in leaves])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for name, a, b in zip(("y",) + NAMES, results[0], other):
            assert torch.equal(a, b), name


@pytest.mark.parametrize("biases", [(True, True, True), (False, True, False)], ids=str)
def test_gradcheck_float64(biases, device):
    tensors = _leaves(_inputs(Case(2, 2, 3, 4, 4, 3, 2), torch.float64, device, biases=biases))
    assert torch.autograd.gradcheck(ops.conv_conditioner, tensors)


def test_gradcheck_five_by_five_kernels(device):
    tensors = _leaves(_inputs(Case(2, 1, 3, 2, 3, 2, 3, 5, 5), torch.float64, device))
    assert torch.autograd.gradcheck(ops.conv_conditioner, tensors)


@needs_ext
@pytest.mark.parametrize("biases", [(True, True, True), (False, False, False)], ids=str)
def test_opcheck(biases):
    # CPU only: the raw op has no CUDA kernel (ops.conv_conditioner runs the reference there).
    tensors = _leaves(_inputs(Case(3, 2, 4, 3, 5, 4, 2), torch.float32, biases=biases))
    for dropout, seed in ((0.0, None), (0.2, torch.tensor(5))):
        opcheck(OPS.conv_conditioner.default, (*tensors, dropout, seed))
        y, h1, h2 = OPS.conv_conditioner(*tensors, dropout, seed)
        x, w1, _, w2, _, w3, _ = (None if t is None else t.detach() for t in tensors)
        opcheck(OPS.conv_conditioner_backward.default,
                (torch.randn_like(y), x, h1.detach(), h2.detach(), w1, w2, w3, dropout, seed))


def test_torch_compile_fullgraph(device):
    tensors = _inputs(Case(4, 2, 4, 4, 8, 8, 4), torch.float32, device)

    def f(*args):
        return torch.tanh(ops.conv_conditioner(*args)) * 2.0

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    leaves_c, leaves_e = _leaves(tensors), _leaves(tensors)
    out_c, out_e = compiled(*leaves_c), f(*leaves_e)
    torch.testing.assert_close(out_c, out_e)
    out_c.sum().backward()
    out_e.sum().backward()
    for name, a, e in zip(NAMES, leaves_c, leaves_e):
        torch.testing.assert_close(a.grad, e.grad, msg=lambda m: f"grad of {name}: {m}")


# ---------------------------------------------------------------- the module
def _plain_copy(fused: nn.Sequential) -> nn.Sequential:
    """The same layers as a plain nn.Sequential (runs them one by one)."""
    plain = nn.Sequential(*[type(m)(m.p) if isinstance(m, nn.Dropout) else m for m in fused])
    return plain


def _perturbed(module: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module


def test_module_equals_the_same_layers_run_one_by_one():
    fused = _perturbed(fnn.conv_conditioner(3, 4, hidden_channels=16))
    assert isinstance(fused, fnn.ConvConditioner)
    plain = _plain_copy(fused)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    fused.double()
    y_fused, y_plain = fused(x), plain(x)
    torch.testing.assert_close(y_fused, y_plain, rtol=1e-12, atol=1e-12)
    grads_fused = torch.autograd.grad(y_fused.square().sum(), [x, *fused.parameters()])
    grads_plain = torch.autograd.grad(y_plain.square().sum(), [x, *plain.parameters()])
    for a, b in zip(grads_fused, grads_plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_module_starts_as_zero_and_keeps_the_sequential_state_dict():
    fused = fnn.conv_conditioner(2, 4, hidden_channels=8)
    assert torch.count_nonzero(fused(torch.randn(3, 2, 4, 4))) == 0  # last conv zero-initialised
    plain = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.ReLU(),
                          nn.Conv2d(8, 4, 3, padding=1))
    _perturbed(plain, seed=3)
    assert list(fused.state_dict()) == list(plain.state_dict())
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(3, 2, 4, 4)
    torch.testing.assert_close(fused(x), plain(x), rtol=1e-5, atol=1e-5)


def test_module_with_dropout_draws_the_masks_while_training():
    fused = _perturbed(fnn.conv_conditioner(2, 4, hidden_channels=32, dropout=0.5))
    x = torch.randn(4, 2, 4, 4)
    torch.manual_seed(0)
    first = fused(x)
    torch.manual_seed(0)
    seed = ops.draw_seed(x.device)
    keep = reference.conditioner_dropout_masks(int(seed), 4 * 16, (32, 32), 0.5)
    c1, c2, c3 = fused[0], fused[3], fused[6]
    expected = reference.conv_conditioner(x, c1.weight, c1.bias, c2.weight, c2.bias, c3.weight, c3.bias, *keep)
    torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-5)
    assert not torch.equal(fused(x), first)  # fresh masks each call
    fused.eval()
    torch.testing.assert_close(fused(x), _plain_copy(fused).eval()(x), rtol=1e-5, atol=1e-5)


def test_module_with_dropout_where_the_kernel_does_not_run_uses_nn_dropout(monkeypatch):
    fused = _perturbed(fnn.conv_conditioner(3, 4, hidden_channels=16, dropout=0.5))
    monkeypatch.setattr(conditioner, "KERNEL_MAX_CHANNELS", 2)  # 3 input channels: the reference
    x = torch.randn(4, 3, 4, 4)
    torch.manual_seed(5)
    actual = fused(x)
    torch.manual_seed(5)
    torch.testing.assert_close(actual, _plain_copy(fused)(x))  # nn.Dropout's draws


def test_module_with_edited_layers_runs_them_one_by_one():
    fused = _perturbed(fnn.conv_conditioner(2, 4, hidden_channels=8))
    fused[1] = nn.Tanh()
    x = torch.randn(3, 2, 4, 4)
    torch.testing.assert_close(fused(x), _plain_copy(fused)(x))
    fused = _perturbed(fnn.conv_conditioner(2, 4, hidden_channels=8))
    fused[2].padding = (1, 1)  # the 1x1 convolution now pads: a (6, 6) output
    assert fused(x).shape == _plain_copy(fused)(x).shape == (3, 4, 6, 6)


def test_module_under_autocast_runs_layer_by_layer():
    fused = _perturbed(fnn.conv_conditioner(2, 4, hidden_channels=8))
    plain = _plain_copy(fused)
    x = torch.randn(3, 2, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_fused, y_plain = fused(x), plain(x)
    assert y_fused.dtype == y_plain.dtype == torch.bfloat16
    torch.testing.assert_close(y_fused, y_plain)


def test_glow_with_fused_conditioners_compiles_fullgraph():
    """A whole Glow, dropout live in train mode: no graph break, and the eval output unchanged."""
    from fastgen.models import Glow

    torch.manual_seed(0)
    model = Glow((1, 8, 8), levels=17, num_levels=2, steps_per_level=1, hidden_channels=8, dropout=0.2)
    x = torch.rand(4, 1, 8, 8)
    model.log_prob(x)  # ActNorm's data-dependent initialisation
    model.eval()
    compiled = torch.compile(model.log_prob, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), model.log_prob(x), rtol=1e-4, atol=1e-3)
    model.train()
    loss = torch.compile(lambda v: model.log_prob(v).mean(), fullgraph=True, backend="aot_eager")(x)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


# ---------------------------------------------------------------- bad input
X = torch.zeros(2, 3, 4, 4)
W1 = torch.zeros(5, 3, 3, 3)
W2 = torch.zeros(6, 5, 1, 1)
W3 = torch.zeros(4, 6, 3, 3)


def _call(x=X, w1=W1, b1=None, w2=W2, b2=None, w3=W3, b3=None, dropout=0.0):
    return ops.conv_conditioner(x, w1, b1, w2, b2, w3, b3, dropout=dropout)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(x=[1.0]), TypeError, "x must be a torch.Tensor"),
        (dict(x=X.long()), TypeError, "x must have a floating dtype"),
        (dict(x=X[0]), ValueError, "x must have 4 dimensions"),
        (dict(w1=W1[0]), ValueError, "w1 must have 4 dimensions"),
        (dict(w1=W1.double()), TypeError, "w1 must have the dtype of x"),
        (dict(w1=torch.zeros(5, 2, 3, 3)), ValueError, "w1 must have shape .* with 3 input channels"),
        (dict(w1=torch.zeros(5, 3, 2, 2)), ValueError, "w1 must have a square, odd kernel"),
        (dict(w1=torch.zeros(5, 3, 3, 1)), ValueError, "w1 must have a square, odd kernel"),
        (dict(w1=torch.zeros(0, 3, 3, 3), w2=torch.zeros(6, 0, 1, 1)), ValueError, "w1 must have shape"),
        (dict(w2=torch.zeros(6, 4, 1, 1)), ValueError, "w2 must have shape .* with 5 input channels"),
        (dict(w2=torch.zeros(6, 5, 3, 3)), ValueError, "w2 must be a 1x1 kernel"),
        (dict(w2=W2.half()), TypeError, "w2 must have the dtype of x"),
        (dict(w3=torch.zeros(4, 5, 3, 3)), ValueError, "w3 must have shape .* with 6 input channels"),
        (dict(w3=torch.zeros(4, 6, 4, 4)), ValueError, "w3 must have a square, odd kernel"),
        (dict(b1=torch.zeros(4)), ValueError, r"b1 must have shape \(C_out,\) = \(5,\)"),
        (dict(b2=torch.zeros(6).double()), TypeError, "b2 must have the dtype of x"),
        (dict(b3=torch.zeros(4, 1)), ValueError, r"b3 must have shape \(C_out,\) = \(4,\)"),
        (dict(b3=torch.zeros(4).long()), TypeError, "b3 must have a floating dtype"),
        (dict(dropout=1.0), ValueError, r"dropout must be a float in \[0, 1\)"),
        (dict(dropout=-0.1), ValueError, r"dropout must be a float in \[0, 1\)"),
        (dict(dropout="0.5"), ValueError, r"dropout must be a float in \[0, 1\)"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_names_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        _call(**kwargs)


def _raw(x=X, w1=W1, b1=None, w2=W2, b2=None, w3=W3, b3=None, dropout=0.0, seed=None):
    return OPS.conv_conditioner(x, w1, b1, w2, b2, w3, b3, dropout, seed)


def _raw_backward(g=None, x=X, h1=None, h2=None, w1=W1, w2=W2, w3=W3, dropout=0.0, seed=None):
    g = torch.zeros(2, 4, 4, 4) if g is None else g
    h1 = torch.zeros(32, 5) if h1 is None else h1
    h2 = torch.zeros(32, 6) if h2 is None else h2
    return OPS.conv_conditioner_backward(g, x, h1, h2, w1, w2, w3, dropout, seed)


@needs_ext
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: _raw(x=X[0]), "x must be 4-D"),
        (lambda: _raw(x=X.half(), w1=W1.half(), w2=W2.half(), w3=W3.half()), "float32 or float64 x"),
        (lambda: _raw(w1=W1.double()), "w1 must have the dtype of x"),
        (lambda: _raw(w1=torch.zeros(5, 2, 3, 3)), "w1 must have shape"),
        (lambda: _raw(w1=torch.zeros(5, 3, 2, 2)), "w1 must have a square, odd kernel"),
        (lambda: _raw(w2=torch.zeros(6, 5, 3, 3)), "w2 must be a 1x1 kernel"),
        (lambda: _raw(w3=torch.zeros(4, 5, 3, 3)), "w3 must have shape"),
        (lambda: _raw(b1=torch.zeros(4)), r"b1 must have shape \(5,\)"),
        (lambda: _raw(b3=torch.zeros(4).double()), "b3 must have the dtype of x"),
        (lambda: _raw_backward(g=torch.zeros(2, 4, 4, 3)), "grad_y must be"),
        (lambda: _raw_backward(h1=torch.zeros(32, 4)), "h1 and h2 must be"),
        (lambda: _raw_backward(h2=torch.zeros(32, 6).double()), "h1 and h2 must be"),
        (lambda: _raw(dropout=1.0, seed=torch.tensor(1)), r"dropout must be in \[0, 1\)"),
        (lambda: _raw(dropout=-0.5), r"dropout must be in \[0, 1\)"),
        (lambda: _raw(dropout=0.5), "seed must be a 0-dim int64 tensor"),
        (lambda: _raw(dropout=0.5, seed=torch.tensor([1])), "seed must be a 0-dim int64 tensor"),
        (lambda: _raw(dropout=0.5, seed=torch.tensor(1.0)), "seed must be a 0-dim int64 tensor"),
        (lambda: _raw_backward(dropout=0.5), "seed must be a 0-dim int64 tensor"),
    ],
)
def test_direct_op_calls_are_checked_too(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()


def test_wide_inputs_run_the_reference(monkeypatch):
    monkeypatch.setattr(conditioner, "KERNEL_MAX_CHANNELS", 2)
    calls, original = [], reference.conv_conditioner
    monkeypatch.setattr(conditioner.reference, "conv_conditioner",
                        lambda *args: calls.append(args[0].shape) or original(*args))
    for c_in in (2, 3):
        tensors = _inputs(Case(2, c_in, 4, 4, 4, 4, 2))
        torch.testing.assert_close(ops.conv_conditioner(*tensors), original(*tensors), rtol=1e-5, atol=1e-5)
    assert calls == [torch.Size([2, 3, 4, 4])]


@needs_ext
def test_an_op_without_compiled_autograd_counts_as_a_stale_build(monkeypatch):
    # wavenet_layer_step has no autograd at all, so the check reports it as missing.
    monkeypatch.delenv("FASTGEN_REQUIRE_EXT", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not _ext.check_ops(["wavenet_layer_step"], ("wavenet_layer_step",))
    assert any("wavenet_layer_step (its C++ autograd)" in str(w.message) for w in caught)
    monkeypatch.setenv("FASTGEN_REQUIRE_EXT", "1")
    with pytest.raises(ImportError, match="wavenet_layer_step \\(its C\\+\\+ autograd\\)"):
        _ext.check_ops(["wavenet_layer_step"], ("wavenet_layer_step",))
