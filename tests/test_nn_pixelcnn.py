"""fastgen.nn.GatedPixelCNNLayer: the fused op against plain PyTorch, causality, state dicts, training,
torch.compile."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from nn_cases import DTYPES, TOL, assert_compiled_layers_match_eager
from torch import nn

from fastgen import nn as fnn
from fastgen import reference

GRAD_TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float64: dict(rtol=1e-10, atol=1e-10)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors here are tiny: one intra-op thread avoids oversubscription stalls on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class PlainGatedPixelCNNLayer(nn.Module):
    """A Gated PixelCNN layer written with plain torch.nn layers and the same layout."""

    def __init__(self, c_in, c, n=3, mask_type="B", d=None, bias=True, dtype=None):
        super().__init__()
        self.k, self.mask_type = n // 2, mask_type
        self.vertical = nn.Conv2d(c_in, 2 * c, (self.k + 1, n), bias=bias, dtype=dtype)
        self.horizontal = nn.Conv2d(c_in, 2 * c, (1, self.k + 1), bias=bias, dtype=dtype)
        self.link = nn.Conv2d(2 * c, 2 * c, 1, bias=bias, dtype=dtype)
        self.out = nn.Conv2d(c, c, 1, bias=bias, dtype=dtype)
        if d is not None:
            self.cond_v = nn.Linear(d, 2 * c, bias=False, dtype=dtype)
            self.cond_h = nn.Linear(d, 2 * c, bias=False, dtype=dtype)

    def forward(self, v, h, cond=None):
        k = self.k
        v_pre = self.vertical(F.pad(v, (k, k, k, 0)))
        w_h = self.horizontal.weight
        if self.mask_type == "A":
            w_h = torch.cat([w_h[..., :-1], torch.zeros_like(w_h[..., -1:])], dim=-1)
        h_pre = F.conv2d(F.pad(h, (k, 0)), w_h, self.horizontal.bias)
        if cond is not None:
            v_pre = v_pre + self.cond_v(cond)[..., None, None]
            h_pre = h_pre + self.cond_h(cond)[..., None, None]
        h_pre = h_pre + self.link(F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1])
        va, vb = v_pre.chunk(2, dim=1)
        ha, hb = h_pre.chunk(2, dim=1)
        h_out = self.out(torch.tanh(ha) * torch.sigmoid(hb))
        if self.mask_type == "B":
            h_out = h_out + h
        return torch.tanh(va) * torch.sigmoid(vb), h_out


def _layer_and_inputs(device, dtype, n, mask_type, with_cond, bias, c=4, d=3, batch=2, height=6, width=7):
    c_in = 3 if mask_type == "A" else c
    layer = fnn.GatedPixelCNNLayer(c_in, c, kernel_size=n, mask_type=mask_type,
                                   cond_features=d if with_cond else None, bias=bias, device=device, dtype=dtype)
    v = torch.randn(batch, c_in, height, width, dtype=dtype, device=device)
    h = torch.randn(batch, c_in, height, width, dtype=dtype, device=device)
    cond = torch.randn(batch, d, dtype=dtype, device=device) if with_cond else None
    return layer, v, h, cond


def _functional_reference(layer: fnn.GatedPixelCNNLayer, v, h, cond):
    return reference.gated_pixelcnn_layer(
        v, h, layer.vertical.weight, layer.vertical.bias, layer.horizontal.weight, layer.horizontal.bias,
        layer.link.weight, layer.link.bias, layer.out.weight, layer.out.bias, layer.mask_type, cond,
        None if layer.cond_v is None else layer.cond_v.weight, None if layer.cond_h is None else layer.cond_h.weight)


# ---------------------------------------------------------------------------------------------
# Values and gradients


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("with_cond", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_equals_references(device, dtype, n, mask_type, with_cond, bias):
    torch.manual_seed(0)
    layer, v, h, cond = _layer_and_inputs(device, dtype, n, mask_type, with_cond, bias)
    v_out, h_out = layer(v, h, cond)
    assert v_out.shape == h_out.shape == (2, 4, 6, 7)
    assert v_out.dtype == h_out.dtype == dtype and v_out.device == v.device
    for ref in (layer.reference_forward(v, h, cond), _functional_reference(layer, v, h, cond)):
        torch.testing.assert_close(v_out, ref[0], **TOL[dtype])
        torch.testing.assert_close(h_out, ref[1], **TOL[dtype])
    with torch.no_grad():
        nograd = layer(v, h, cond)
    torch.testing.assert_close(nograd[0], v_out, rtol=0, atol=0)
    torch.testing.assert_close(nograd[1], h_out, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("with_cond, bias", [(False, True), (True, True), (True, False)])
def test_gradients_match_reference_forward(device, dtype, n, mask_type, with_cond, bias):
    torch.manual_seed(1)
    layer, v, h, cond = _layer_and_inputs(device, dtype, n, mask_type, with_cond, bias)
    inputs = [v.requires_grad_(True), h.requires_grad_(True)] + ([cond.requires_grad_(True)] if with_cond else [])
    params = list(layer.parameters())
    assert len(params) == 4 * (2 if bias else 1) + (2 if with_cond else 0)
    g_v = torch.randn(2, 4, 6, 7, dtype=dtype, device=device)
    g_h = torch.randn(2, 4, 6, 7, dtype=dtype, device=device)

    def grads(fn):
        v_out, h_out = fn(v, h, cond)
        loss = (v_out * g_v).sum() + (h_out * g_h).sum()
        # materialize_grads: with n = 1 and mask "A", h is not used at all (zero gradient).
        return torch.autograd.grad(loss, params + inputs, materialize_grads=True)

    got_all, want_all = grads(layer), grads(layer.reference_forward)
    for got, want in zip(got_all, want_all):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, **GRAD_TOL[dtype])
    if mask_type == "A":  # the current pixel's horizontal tap is unused
        index = [id(p) for p in params].index(id(layer.horizontal.weight))
        assert torch.all(got_all[index][..., -1] == 0)


def test_gradcheck_float64(device):
    torch.manual_seed(2)
    layer, v, h, cond = _layer_and_inputs(device, torch.float64, 3, "B", True, True, c=2, d=2, batch=1,
                                          height=4, width=4)
    inputs = (v.requires_grad_(True), h.requires_grad_(True), cond.requires_grad_(True))
    assert torch.autograd.gradcheck(lambda *a: layer(*a), inputs)


def test_h_defaults_to_v_and_unbatched_input(device):
    torch.manual_seed(3)
    layer = fnn.GatedPixelCNNLayer(2, 3, 3, mask_type="A", cond_features=2, device=device)
    x, cond = torch.randn(2, 5, 6, device=device), torch.randn(2, device=device)
    v_out, h_out = layer(x, cond=cond)
    assert v_out.shape == h_out.shape == (3, 5, 6)
    batched = layer(x[None], x[None], cond[None])
    torch.testing.assert_close(v_out, batched[0][0])
    torch.testing.assert_close(h_out, batched[1][0])
    ref = layer.reference_forward(x, cond=cond)
    torch.testing.assert_close(v_out, ref[0])
    torch.testing.assert_close(h_out, ref[1])


# ---------------------------------------------------------------------------------------------
# Causality: no blind spot, no leak


def _stack(device, dtype=torch.float64, c=4, layers=3):
    torch.manual_seed(4)
    return nn.ModuleList([fnn.GatedPixelCNNLayer(1, c, 3, mask_type="A", device=device, dtype=dtype)]
                         + [fnn.GatedPixelCNNLayer(c, c, 3, device=device, dtype=dtype) for _ in range(layers)])


def _run_stack(stack, x):
    v, h = x, x
    for layer in stack:
        v, h = layer(v, h)
    return h


def test_stack_has_no_blind_spot_and_no_leak(device):
    stack = _stack(device)
    size = 7
    x = torch.randn(1, 1, size, size, device=device, dtype=torch.float64, requires_grad=True)
    h = _run_stack(stack, x)
    raster = torch.arange(size * size, device=device).view(size, size)
    for i in range(size):
        for j in range(size):
            (grad,) = torch.autograd.grad(h[0, :, i, j].sum(), x, retain_graph=True)
            grad = grad[0, 0]
            assert torch.all(grad[raster >= i * size + j] == 0), f"pixel ({i}, {j}) sees itself or the future"
            for di, dj in ((0, -1), (-1, 0), (-1, 1)):
                if 0 <= i + di < size and 0 <= j + dj < size:
                    assert grad[i + di, j + dj] != 0, f"pixel ({i}, {j}) does not see ({i + di}, {j + dj})"
            if i >= 2 and 2 <= j < size - 2:  # the whole 2-row band above, in the middle of the image
                assert torch.all(grad[i - 2:i, j - 2:j + 3] != 0), f"blind spot above ({i}, {j})"


# ---------------------------------------------------------------------------------------------
# In a model


def test_stack_trains(device):
    torch.manual_seed(5)
    c, size, batch = 8, 8, 8

    class TinyPixelCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([fnn.GatedPixelCNNLayer(1, c, 3, mask_type="A", cond_features=2)]
                                        + [fnn.GatedPixelCNNLayer(c, c, 3, cond_features=2) for _ in range(2)])
            self.head = nn.Conv2d(c, 1, 1)

        def forward(self, x, cond):
            v, h = x, x
            for layer in self.layers:
                v, h = layer(v, h, cond)
            return self.head(torch.relu(h))

    model = TinyPixelCNN().to(device)
    # Binary images with vertical or horizontal stripes (the class is the conditioning):
    # predictable from the pixels above or to the left.
    rows = torch.arange(size, device=device)
    vertical = (rows[None, :] % 2).expand(size, size).float()
    images = torch.stack([vertical if b % 2 else vertical.t() for b in range(batch)])[:, None]
    cond = F.one_hot(torch.arange(batch, device=device) % 2, 2).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(images, cond), images)
        loss.backward()
        # The last layer's vertical output is unused, but the vertical stack feeds h through the link.
        for p in model.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("mask_type, with_cond, bias", [("B", False, True), ("A", True, True), ("B", True, False)])
def test_state_dict_round_trip_with_plain_pytorch(device, mask_type, with_cond, bias):
    torch.manual_seed(6)
    kw = dict(dtype=torch.float64)
    c_in = 2 if mask_type == "A" else 4
    d = 3 if with_cond else None
    layer = fnn.GatedPixelCNNLayer(c_in, 4, 3, mask_type=mask_type, cond_features=d, bias=bias, **kw).to(device)
    plain = PlainGatedPixelCNNLayer(c_in, 4, 3, mask_type, d, bias=bias, **kw).to(device)
    assert list(layer.state_dict()) == list(plain.state_dict())
    for key, value in plain.state_dict().items():
        assert layer.state_dict()[key].shape == value.shape
    v = torch.randn(2, c_in, 5, 6, device=device, **kw)
    h = torch.randn(2, c_in, 5, 6, device=device, **kw)
    cond = torch.randn(2, 3, device=device, **kw) if with_cond else None

    layer.load_state_dict(plain.state_dict(), strict=True)
    for got, want in zip(layer(v, h, cond), plain(v, h, cond)):
        torch.testing.assert_close(got, want, **TOL[torch.float64])

    torch.manual_seed(7)
    layer2 = fnn.GatedPixelCNNLayer(c_in, 4, 3, mask_type=mask_type, cond_features=d, bias=bias, **kw).to(device)
    back = PlainGatedPixelCNNLayer(c_in, 4, 3, mask_type, d, bias=bias, **kw).to(device)
    back.load_state_dict(layer2.state_dict(), strict=True)
    for got, want in zip(layer2(v, h, cond), back(v, h, cond)):
        torch.testing.assert_close(got, want, **TOL[torch.float64])


def test_submodules_and_repr(device):
    layer = fnn.GatedPixelCNNLayer(1, 6, 5, mask_type="A", cond_features=3, device=device)
    assert type(layer.vertical) is nn.Conv2d and layer.vertical.weight.shape == (12, 1, 3, 5)
    assert layer.vertical.padding == (0, 0) and layer.horizontal.padding == (0, 0)
    assert type(layer.horizontal) is nn.Conv2d and layer.horizontal.weight.shape == (12, 1, 1, 3)
    assert type(layer.link) is nn.Conv2d and layer.link.weight.shape == (12, 12, 1, 1)
    assert type(layer.out) is nn.Conv2d and layer.out.weight.shape == (6, 6, 1, 1) and layer.out.bias.shape == (6,)
    for lin in (layer.cond_v, layer.cond_h):
        assert type(lin) is nn.Linear and lin.weight.shape == (12, 3) and lin.bias is None
    assert layer.vertical.weight.device.type == torch.device(device).type
    r = repr(layer)
    for part in ("in_channels=1", "channels=6", "kernel_size=5", "mask_type='A'", "cond_features=3"):
        assert part in r
    plain = fnn.GatedPixelCNNLayer(2, 2, bias=False, dtype=torch.float64)
    assert plain.cond_v is None and plain.cond_h is None and plain.link.bias is None
    assert plain.kernel_size == 3 and plain.mask_type == "B" and plain.vertical.weight.dtype == torch.float64
    assert "bias=False" in plain.extra_repr() and "cond_features" not in plain.extra_repr()


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(in_channels=0), ValueError, "in_channels"),
    (dict(in_channels=2.0), TypeError, "in_channels"),
    (dict(channels=0), ValueError, "channels"),
    (dict(channels=True), TypeError, "channels"),
    (dict(kernel_size=4), ValueError, "kernel_size"),
    (dict(kernel_size=0), ValueError, "kernel_size"),
    (dict(kernel_size=(3, 3)), TypeError, "kernel_size"),
    (dict(mask_type="C"), ValueError, "mask_type"),
    (dict(mask_type=None), ValueError, "mask_type"),
    (dict(in_channels=3), ValueError, "in_channels"),  # mask "B" needs in_channels == channels
    (dict(cond_features=0), ValueError, "cond_features"),
    (dict(cond_features="3"), TypeError, "cond_features"),
    (dict(bias=1), TypeError, "bias"),
])
def test_constructor_errors(kwargs, exc, name):
    args = dict(in_channels=4, channels=4)
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        fnn.GatedPixelCNNLayer(**args)


def test_mask_a_allows_other_in_channels():
    layer = fnn.GatedPixelCNNLayer(3, 4, mask_type="A")
    assert layer.vertical.in_channels == 3


def test_cond_missing_or_unexpected(device):
    v = torch.randn(2, 4, 5, 5, device=device)
    with_cond = fnn.GatedPixelCNNLayer(4, 4, cond_features=3, device=device)
    without = fnn.GatedPixelCNNLayer(4, 4, device=device)
    for fn in (with_cond, with_cond.reference_forward):
        with pytest.raises(ValueError, match=r"cond is required.*cond_features=3"):
            fn(v)
    for fn in (without, without.reference_forward):
        with pytest.raises(ValueError, match=r"cond must be None.*cond_features"):
            fn(v, cond=torch.randn(2, 3, device=device))
    with pytest.raises(ValueError, match="cond"):
        with_cond(v, cond=torch.randn(3, 3, device=device))  # wrong batch
    for fn in (with_cond, with_cond.reference_forward):  # wrong features: cond is named, not w_cond_v
        with pytest.raises(ValueError, match=r"cond must have D = 3 features.*got shape \(2, 2\)"):
            fn(v, cond=torch.randn(2, 2, device=device))


def test_input_errors(device):
    layer = fnn.GatedPixelCNNLayer(4, 4, device=device)
    with pytest.raises(TypeError, match="GatedPixelCNNLayer input must be a torch.Tensor"):
        layer([1.0, 2.0])
    with pytest.raises(ValueError, match=r"GatedPixelCNNLayer input must have shape \(N, C_in, H, W\)"):
        layer(torch.randn(5, 5, device=device))
    with pytest.raises(ValueError, match="h must have the shape of v"):
        layer(torch.randn(2, 4, 5, 5, device=device), torch.randn(2, 4, 5, 6, device=device))
    with pytest.raises(TypeError, match="h must be a torch.Tensor"):
        layer(torch.randn(2, 4, 5, 5, device=device), 1.0)
    with pytest.raises(ValueError, match="C_in"):
        layer(torch.randn(2, 3, 5, 5, device=device))
    with pytest.raises(TypeError, match="dtype"):
        layer(torch.randn(2, 4, 5, 5, dtype=torch.float64, device=device))


# ---------------------------------------------------------------------------------------------
# torch.compile


def test_torch_compile_fullgraph(device):
    torch.manual_seed(8)
    torch._dynamo.reset()
    first = fnn.GatedPixelCNNLayer(1, 4, 3, mask_type="A", cond_features=2, device=device)
    second = fnn.GatedPixelCNNLayer(4, 4, 3, cond_features=2, device=device)

    def f(x, cond):
        v, h = first(x, cond=cond)
        v, h = second(v, h, cond)
        return torch.tanh(v).sum() + h.square().sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x, cond = torch.randn(2, 1, 6, 7, device=device), torch.randn(2, 2, device=device)
    params = list(first.parameters()) + list(second.parameters())
    assert_compiled_layers_match_eager(compiled, f, (x, cond), params)
