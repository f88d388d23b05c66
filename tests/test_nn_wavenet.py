"""fastgen.nn.WaveNetLayer: the fused op against plain PyTorch, state dicts, training, torch.compile."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from nn_cases import DTYPES, TOL, assert_compiled_layers_match_eager
from torch import nn

from fastgen import nn as fnn
from fastgen import reference


class PlainWaveNetLayer(nn.Module):
    """A WaveNet layer written with plain torch.nn layers and the same layout (r9y9/wavenet_vocoder)."""

    def __init__(self, c_res, c_gate, c_skip, k=2, d=1, c_cond=None, bias=True, dtype=None):
        super().__init__()
        self.pad = (k - 1) * d
        self.dilated = nn.Conv1d(c_res, c_gate, k, dilation=d, bias=bias, dtype=dtype)
        self.res = nn.Conv1d(c_gate // 2, c_res, 1, bias=bias, dtype=dtype)
        self.skip = nn.Conv1d(c_gate // 2, c_skip, 1, bias=bias, dtype=dtype)
        self.cond = None if c_cond is None else nn.Conv1d(c_cond, c_gate, 1, bias=False, dtype=dtype)

    def forward(self, x, cond=None):
        h = self.dilated(F.pad(x, (self.pad, 0)))
        if self.cond is not None:
            h = h + self.cond(cond)
        a, b = h.chunk(2, dim=1)
        z = torch.tanh(a) * torch.sigmoid(b)
        return x + self.res(z), self.skip(z)


def _layer_and_inputs(device, dtype, k, d, with_cond, bias, c_res=4, c_gate=6, c_skip=5, c_cond=3, n=2, t=19):
    layer = fnn.WaveNetLayer(c_res, c_gate, c_skip, kernel_size=k, dilation=d,
                             cond_channels=c_cond if with_cond else None, bias=bias, device=device,
                             dtype=dtype)
    x = torch.randn(n, c_res, t, dtype=dtype, device=device)
    cond = torch.randn(n, c_cond, t, dtype=dtype, device=device) if with_cond else None
    return layer, x, cond


def _functional_reference(layer: fnn.WaveNetLayer, x, cond):
    return reference.wavenet_layer(
        x, layer.dilated.weight, layer.dilated.bias, layer.res.weight, layer.res.bias, layer.skip.weight,
        layer.skip.bias, layer.dilation, cond, None if layer.cond is None else layer.cond.weight)


# ---------------------------------------------------------------------------------------------
# Values and gradients


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("d", [1, 4])
@pytest.mark.parametrize("with_cond", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_equals_references(device, dtype, k, d, with_cond, bias):
    torch.manual_seed(0)
    layer, x, cond = _layer_and_inputs(device, dtype, k, d, with_cond, bias)
    residual, skip = layer(x, cond)
    assert residual.shape == x.shape and skip.shape == (2, 5, 19)
    assert residual.dtype == skip.dtype == dtype and residual.device == x.device
    ref_residual, ref_skip = layer.reference_forward(x, cond)
    torch.testing.assert_close(residual, ref_residual, **TOL[dtype])
    torch.testing.assert_close(skip, ref_skip, **TOL[dtype])
    fn_residual, fn_skip = _functional_reference(layer, x, cond)
    torch.testing.assert_close(residual, fn_residual, **TOL[dtype])
    torch.testing.assert_close(skip, fn_skip, **TOL[dtype])
    with torch.no_grad():
        nograd_residual, nograd_skip = layer(x, cond)
    torch.testing.assert_close(nograd_residual, residual, rtol=0, atol=0)
    torch.testing.assert_close(nograd_skip, skip, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, d", [(1, 1), (2, 4), (3, 1), (3, 4)])
@pytest.mark.parametrize("with_cond, bias", [(False, True), (True, True), (True, False)])
def test_gradients_match_reference_forward(device, dtype, k, d, with_cond, bias):
    torch.manual_seed(1)
    layer, x, cond = _layer_and_inputs(device, dtype, k, d, with_cond, bias)
    x.requires_grad_(True)
    if cond is not None:
        cond.requires_grad_(True)
    inputs = [x] + ([cond] if cond is not None else [])
    params = list(layer.parameters())
    assert len(params) == 3 * (2 if bias else 1) + (1 if with_cond else 0)
    g_res = torch.randn(x.shape, dtype=dtype, device=device)
    g_skip = torch.randn(2, 5, 19, dtype=dtype, device=device)

    def grads(fn):
        residual, skip = fn(x, cond)
        loss = (residual * g_res).sum() + (skip * g_skip).sum()
        return torch.autograd.grad(loss, params + inputs)

    tol = TOL[dtype] if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for got, want in zip(grads(layer), grads(layer.reference_forward)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, **tol)


def test_gradcheck_float64(device):
    torch.manual_seed(2)
    layer, x, cond = _layer_and_inputs(device, torch.float64, 2, 3, True, True, c_res=2, c_gate=4, c_skip=2,
                                       c_cond=2, n=1, t=7)
    x.requires_grad_(True)
    cond.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x_, c_: layer(x_, c_), (x, cond))


def test_causal(device):
    torch.manual_seed(3)
    layer = fnn.WaveNetLayer(3, 4, 2, kernel_size=3, dilation=2, device=device)
    assert layer.receptive_field == 5
    x = torch.randn(1, 3, 16, device=device, requires_grad=True)
    residual, skip = layer(x)
    (residual[..., 9].sum() + skip[..., 9].sum()).backward()
    assert torch.all(x.grad[..., 10:] == 0)
    assert torch.all(x.grad[..., :5] == 0)  # outside the receptive field (taps 5, 7, 9)
    assert x.grad[..., 9].abs().sum() > 0 and x.grad[..., 5].abs().sum() > 0


def test_unbatched_input(device):
    torch.manual_seed(4)
    layer = fnn.WaveNetLayer(3, 4, 2, cond_channels=2, device=device)
    x, cond = torch.randn(3, 8, device=device), torch.randn(2, 8, device=device)
    residual, skip = layer(x, cond)
    assert residual.shape == (3, 8) and skip.shape == (2, 8)
    batched = layer(x[None], cond[None])
    torch.testing.assert_close(residual, batched[0][0])
    torch.testing.assert_close(skip, batched[1][0])
    ref = layer.reference_forward(x, cond)
    torch.testing.assert_close(residual, ref[0])
    torch.testing.assert_close(skip, ref[1])


# ---------------------------------------------------------------------------------------------
# In a model


def test_stack_trains(device):
    torch.manual_seed(5)
    c_res, c_skip, c_cond, t = 8, 8, 3, 64

    class TinyWaveNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = fnn.CausalConv1d(1, c_res, 2)
            self.layers = nn.ModuleList(
                fnn.WaveNetLayer(c_res, 16, c_skip, dilation=2 ** i, cond_channels=c_cond) for i in range(4))
            self.out = nn.Conv1d(c_skip, 1, 1)

        def forward(self, x, cond):
            h = self.inp(x)
            skips = 0
            for layer in self.layers:
                h, s = layer(h, cond)
                skips = skips + s
            return self.out(torch.relu(skips))

    model = TinyWaveNet().to(device)
    # Predict the next sample of a noisy sine from the past and a conditioning signal.
    time = torch.arange(t + 1, device=device, dtype=torch.float32)
    wave = torch.sin(time * 2 * math.pi / 16)[None, None].repeat(4, 1, 1) + 0.05 * torch.randn(4, 1, t + 1,
                                                                                                device=device)
    x, target = wave[..., :-1], wave[..., 1:]
    cond = torch.randn(4, c_cond, t, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x, cond), target)
        loss.backward()
        # The last layer's residual output is unused, so its `res` projection gets no gradient
        # (None from the reference; zeros from the fused kernel, which sees a zero output grad).
        unused = {id(p) for p in model.layers[-1].res.parameters()}
        for p in model.parameters():
            if id(p) in unused:
                assert p.grad is None or not p.grad.any()
            else:
                assert torch.isfinite(p.grad).all()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("with_cond, bias", [(False, True), (True, True), (True, False)])
def test_state_dict_round_trip_with_plain_pytorch(device, with_cond, bias):
    torch.manual_seed(6)
    kw = dict(dtype=torch.float64)
    layer = fnn.WaveNetLayer(4, 6, 5, kernel_size=3, dilation=2, cond_channels=3 if with_cond else None,
                             bias=bias, **kw).to(device)
    plain = PlainWaveNetLayer(4, 6, 5, 3, 2, 3 if with_cond else None, bias=bias, **kw).to(device)
    assert list(layer.state_dict()) == list(plain.state_dict())
    for key, value in plain.state_dict().items():
        assert layer.state_dict()[key].shape == value.shape
    x = torch.randn(2, 4, 13, device=device, **kw)
    cond = torch.randn(2, 3, 13, device=device, **kw) if with_cond else None

    layer.load_state_dict(plain.state_dict(), strict=True)
    for got, want in zip(layer(x, cond), plain(x, cond)):
        torch.testing.assert_close(got, want, **TOL[torch.float64])

    torch.manual_seed(7)
    layer2 = fnn.WaveNetLayer(4, 6, 5, kernel_size=3, dilation=2, cond_channels=3 if with_cond else None,
                              bias=bias, **kw).to(device)
    back = PlainWaveNetLayer(4, 6, 5, 3, 2, 3 if with_cond else None, bias=bias, **kw).to(device)
    back.load_state_dict(layer2.state_dict(), strict=True)
    for got, want in zip(layer2(x, cond), back(x, cond)):
        torch.testing.assert_close(got, want, **TOL[torch.float64])


def test_submodules_and_repr(device):
    layer = fnn.WaveNetLayer(4, 6, 5, kernel_size=3, dilation=2, cond_channels=3, device=device)
    assert isinstance(layer.dilated, fnn.CausalConv1d) and layer.dilated.weight.shape == (6, 4, 3)
    assert layer.dilated.dilation == (2,)
    assert type(layer.res) is nn.Conv1d and layer.res.weight.shape == (4, 3, 1)
    assert layer.res.bias.shape == (4,)
    assert type(layer.skip) is nn.Conv1d and layer.skip.weight.shape == (5, 3, 1)
    assert type(layer.cond) is nn.Conv1d and layer.cond.weight.shape == (6, 3, 1) and layer.cond.bias is None
    assert layer.dilated.weight.device.type == torch.device(device).type
    r = repr(layer)
    for part in ("residual_channels=4", "gate_channels=6", "skip_channels=5", "kernel_size=3", "dilation=2",
                 "cond_channels=3"):
        assert part in r
    plain = fnn.WaveNetLayer(2, 2, 2, bias=False, dtype=torch.float64)
    assert plain.cond is None and plain.res.bias is None and plain.dilated.weight.dtype == torch.float64
    assert "bias=False" in plain.extra_repr() and "cond_channels" not in plain.extra_repr()


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(residual_channels=0), ValueError, "residual_channels"),
    (dict(residual_channels=2.0), TypeError, "residual_channels"),
    (dict(gate_channels=5), ValueError, "gate_channels"),
    (dict(gate_channels=0), ValueError, "gate_channels"),
    (dict(gate_channels=True), TypeError, "gate_channels"),
    (dict(skip_channels=-1), ValueError, "skip_channels"),
    (dict(kernel_size=0), ValueError, "kernel_size"),
    (dict(kernel_size=(2,)), TypeError, "kernel_size"),
    (dict(dilation=0), ValueError, "dilation"),
    (dict(dilation=1.5), TypeError, "dilation"),
    (dict(cond_channels=0), ValueError, "cond_channels"),
    (dict(cond_channels="3"), TypeError, "cond_channels"),
    (dict(bias=1), TypeError, "bias"),
])
def test_constructor_errors(kwargs, exc, name):
    args = dict(residual_channels=4, gate_channels=6, skip_channels=5)
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        fnn.WaveNetLayer(**args)


def test_cond_missing_or_unexpected(device):
    x = torch.randn(2, 4, 9, device=device)
    with_cond = fnn.WaveNetLayer(4, 6, 5, cond_channels=3, device=device)
    without = fnn.WaveNetLayer(4, 6, 5, device=device)
    for fn in (with_cond, with_cond.reference_forward):
        with pytest.raises(ValueError, match=r"cond is required.*cond_channels=3"):
            fn(x)
    for fn in (without, without.reference_forward):
        with pytest.raises(ValueError, match=r"cond must be None.*cond_channels"):
            fn(x, torch.randn(2, 3, 9, device=device))
    with pytest.raises(ValueError, match="cond"):
        with_cond(x, torch.randn(2, 3, 8, device=device))  # wrong length
    for fn in (with_cond, with_cond.reference_forward):  # wrong channels: cond is named, not w_cond
        with pytest.raises(ValueError, match=r"cond must have C_cond = 3 channels.*got shape \(2, 2, 9\)"):
            fn(x, torch.randn(2, 2, 9, device=device))


def test_input_errors(device):
    layer = fnn.WaveNetLayer(4, 6, 5, device=device)
    with pytest.raises(TypeError, match="WaveNetLayer input must be a torch.Tensor"):
        layer([1.0, 2.0])
    with pytest.raises(ValueError, match=r"WaveNetLayer input must have shape \(N, C_res, T\)"):
        layer(torch.randn(1, 2, 4, 9, device=device))
    with pytest.raises(ValueError, match="C_res"):
        layer(torch.randn(2, 3, 9, device=device))
    with pytest.raises(TypeError, match="dtype"):
        layer(torch.randn(2, 4, 9, dtype=torch.float64, device=device))


# ---------------------------------------------------------------------------------------------
# torch.compile


def test_torch_compile_fullgraph(device):
    torch.manual_seed(8)
    torch._dynamo.reset()
    layer = fnn.WaveNetLayer(3, 4, 2, kernel_size=2, dilation=2, cond_channels=2, device=device)

    def f(x, cond):
        residual, skip = layer(x, cond)
        return torch.tanh(residual).sum() + skip.square().sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x, cond = torch.randn(2, 3, 11, device=device), torch.randn(2, 2, 11, device=device)
    assert_compiled_layers_match_eager(compiled, f, (x, cond), list(layer.parameters()))
