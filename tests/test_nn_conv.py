"""fastgen.nn.CausalConv1d and fastgen.nn.MaskedConv2d as drop-ins for nn.Conv1d / nn.Conv2d + mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from nn_cases import DTYPES, TOL, assert_compiled_layers_match_eager
from torch import nn

from fastgen import nn as fnn
from fastgen import reference


def _causal_reference(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """The usual recipe: left-pad by (K - 1) * dilation, then the plain nn.Conv1d."""
    pad = (conv.kernel_size[0] - 1) * conv.dilation[0]
    return conv(F.pad(x, (pad, 0)))


def _masked_reference(conv: nn.Conv2d, x: torch.Tensor, mask_type: str,
                      color_channels: int = 1) -> torch.Tensor:
    """The usual recipe: nn.Conv2d with "same" padding, run with weight * mask."""
    mask = reference.masked_conv2d_mask(conv.weight.shape, mask_type, color_channels, conv.groups)
    mask = mask.to(conv.weight.device, conv.weight.dtype)
    return F.conv2d(x, conv.weight * mask, conv.bias, padding=conv.padding, dilation=conv.dilation,
                    groups=conv.groups)


def _plain_conv2d(c_in, c_out, k, d, groups=1, bias=True, dtype=torch.float32, device="cpu") -> nn.Conv2d:
    kh, kw = (k, k) if isinstance(k, int) else k
    return nn.Conv2d(c_in, c_out, (kh, kw), padding=(kh // 2 * d, kw // 2 * d), dilation=d, groups=groups,
                     bias=bias, dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------------
# CausalConv1d


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, d, bias", [(1, 1, True), (2, 1, True), (3, 2, False), (5, 3, True)])
def test_causal_conv1d_equals_padded_conv1d(device, dtype, k, d, bias):
    torch.manual_seed(0)
    plain = nn.Conv1d(3, 5, k, dilation=d, bias=bias, dtype=dtype, device=device)
    layer = fnn.CausalConv1d(3, 5, k, dilation=d, bias=bias, dtype=dtype, device=device)
    layer.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(2, 3, 17, dtype=dtype, device=device)
    y = layer(x)
    assert y.shape == (2, 5, 17) and y.dtype == dtype
    torch.testing.assert_close(y, _causal_reference(plain, x), **TOL[dtype])


def test_causal_conv1d_state_dict_both_ways(device):
    torch.manual_seed(1)
    plain = nn.Conv1d(4, 6, 3, dilation=2, device=device)
    layer = fnn.CausalConv1d(4, 6, 3, dilation=2, device=device)
    assert list(layer.state_dict()) == list(plain.state_dict()) == ["weight", "bias"]
    assert layer.weight.shape == plain.weight.shape and layer.bias.shape == plain.bias.shape
    layer.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(3, 4, 11, device=device)
    torch.testing.assert_close(layer(x), _causal_reference(plain, x))
    back = nn.Conv1d(4, 6, 3, dilation=2, device=device)
    back.load_state_dict(layer.state_dict(), strict=True)
    torch.testing.assert_close(_causal_reference(back, x), layer(x))


def test_causal_conv1d_from_conv(device):
    torch.manual_seed(2)
    # Any padding of the plain conv is ignored: the causal padding replaces it.
    plain = nn.Conv1d(3, 4, 4, dilation=3, padding=9, dtype=torch.float64, device=device).eval()
    layer = fnn.CausalConv1d.from_conv(plain)
    assert isinstance(layer, fnn.CausalConv1d) and not layer.training
    assert layer.dilation == (3,) and layer.padding == (0,)
    assert layer.weight.dtype == torch.float64 and layer.weight.device == plain.weight.device
    assert layer.weight is not plain.weight and torch.equal(layer.weight, plain.weight)
    assert torch.equal(layer.bias, plain.bias)
    x = torch.randn(2, 3, 10, dtype=torch.float64, device=device)
    plain.padding = (0,)
    torch.testing.assert_close(layer(x), _causal_reference(plain, x), **TOL[torch.float64])
    # Round trip: the copied parameters load back into a plain conv.
    back = nn.Conv1d(3, 4, 4, dilation=3, dtype=torch.float64, device=device)
    back.load_state_dict(layer.state_dict(), strict=True)
    assert torch.equal(back.weight, plain.weight)
    no_bias = fnn.CausalConv1d.from_conv(nn.Conv1d(3, 4, 2, bias=False, device=device))
    assert no_bias.bias is None
    # A frozen conv gives a frozen layer; "valid" is nn.Conv1d's spelling of padding 0.
    frozen = nn.Conv1d(3, 4, 2, padding="valid", device=device).requires_grad_(False)
    frozen.bias.requires_grad_(True)
    copied = fnn.CausalConv1d.from_conv(frozen)
    assert not copied.weight.requires_grad and copied.bias.requires_grad
    assert fnn.CausalConv1d(3, 4, 2, padding="valid").padding == (0,)


def test_causal_conv1d_gradients_and_receptive_field(device):
    torch.manual_seed(3)
    layer = fnn.CausalConv1d(2, 3, 3, dilation=2, device=device)
    x = torch.randn(1, 2, 16, device=device, requires_grad=True)
    t = 9
    y = layer(x)
    y[0, :, t].sum().backward()
    g = x.grad[0].abs().sum(0)
    assert torch.all(g[t + 1:] == 0)
    assert g[t] != 0 and g[t - 2] != 0 and g[t - 4] != 0
    assert g[t - 1] == 0 and g[:t - 4].sum() == 0  # dilation 2: only t, t-2, t-4
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    torch.testing.assert_close(layer.bias.grad, torch.ones(3, device=device))


def test_causal_conv1d_gradients_match_plain(device):
    torch.manual_seed(4)
    plain = nn.Conv1d(3, 2, 3, dilation=2, dtype=torch.float64, device=device)
    layer = fnn.CausalConv1d.from_conv(plain)
    x = torch.randn(2, 3, 12, dtype=torch.float64, device=device)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (layer(x1) ** 2).sum().backward()
    (_causal_reference(plain, x2) ** 2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(layer.weight.grad, plain.weight.grad)
    torch.testing.assert_close(layer.bias.grad, plain.bias.grad)


def test_causal_conv1d_unbatched(device):
    torch.manual_seed(5)
    layer = fnn.CausalConv1d(3, 4, 2, device=device)
    x = torch.randn(3, 9, device=device)
    y = layer(x)
    assert y.shape == (4, 9)
    torch.testing.assert_close(y, layer(x[None])[0])
    with pytest.raises(ValueError, match=r"\(N, C_in, T\) or unbatched \(C_in, T\)"):
        layer(torch.randn(9, device=device))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(stride=2), ValueError, "stride must be 1"),
        (dict(stride=(1, 1)), TypeError, r"stride must be an int or a tuple of 1 int, got \(1, 1\)"),
        (dict(padding=1), ValueError, "padding must be 0"),
        (dict(padding="same"), ValueError, "padding must be 0"),
        (dict(groups=3), ValueError, "groups must be 1"),
        (dict(padding_mode="reflect"), ValueError, 'padding_mode must be "zeros"'),
        (dict(dilation=0), ValueError, "dilation must be >= 1"),
        (dict(dilation=1.5), TypeError, "dilation must be an int"),
        (dict(kernel_size=0), ValueError, "kernel_size must be >= 1"),
    ],
)
def test_causal_conv1d_bad_arguments(kwargs, error, match):
    args = dict(in_channels=3, out_channels=3, kernel_size=2) | kwargs
    with pytest.raises(error, match=match):
        fnn.CausalConv1d(**args)


def test_causal_conv1d_from_conv_refuses_strided_or_grouped():
    with pytest.raises(ValueError, match="stride must be 1"):
        fnn.CausalConv1d.from_conv(nn.Conv1d(2, 2, 3, stride=2))
    with pytest.raises(ValueError, match="groups must be 1"):
        fnn.CausalConv1d.from_conv(nn.Conv1d(2, 2, 3, groups=2))
    with pytest.raises(TypeError, match="conv must be an nn.Conv1d"):
        fnn.CausalConv1d.from_conv(nn.Conv2d(2, 2, 3))


# ---------------------------------------------------------------------------------------------
# MaskedConv2d


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "c_in, c_out, k, d, groups, mask_type, colors",
    [
        (3, 4, 3, 1, 1, "A", 1),
        (3, 4, 3, 1, 1, "B", 1),
        (4, 6, 5, 2, 1, "A", 1),
        (4, 4, (3, 5), 1, 2, "B", 1),
        (3, 6, 1, 1, 1, "B", 1),
        (3, 6, 3, 1, 1, "A", 3),
        (6, 9, 5, 2, 1, "B", 3),
    ],
)
def test_masked_conv2d_equals_conv2d_with_masked_weight(device, dtype, c_in, c_out, k, d, groups, mask_type,
                                                        colors):
    torch.manual_seed(0)
    plain = _plain_conv2d(c_in, c_out, k, d, groups, dtype=dtype, device=device)
    layer = fnn.MaskedConv2d(c_in, c_out, k, dilation=d, groups=groups, mask_type=mask_type,
                             color_channels=colors, dtype=dtype, device=device)
    layer.load_state_dict(plain.state_dict(), strict=True)
    assert layer.padding == plain.padding
    mask = reference.masked_conv2d_mask(plain.weight.shape, mask_type, colors, groups).to(device, dtype)
    assert torch.equal(layer.mask, mask)
    torch.testing.assert_close(layer.masked_weight(), plain.weight * mask)
    x = torch.randn(2, c_in, 7, 6, dtype=dtype, device=device)
    y = layer(x)
    assert y.shape == (2, c_out, 7, 6) and y.dtype == dtype
    torch.testing.assert_close(y, _masked_reference(plain, x, mask_type, colors), **TOL[dtype])


def test_masked_conv2d_state_dict_has_conv2d_keys(device):
    torch.manual_seed(1)
    layer = fnn.MaskedConv2d(3, 6, 3, mask_type="B", color_channels=3, device=device)
    plain = _plain_conv2d(3, 6, 3, 1, device=device)
    assert list(layer.state_dict()) == list(plain.state_dict()) == ["weight", "bias"]
    assert layer.weight.shape == plain.weight.shape and layer.bias.shape == plain.bias.shape
    assert "mask" in dict(layer.named_buffers())
    # Both ways, strict.
    layer.load_state_dict(plain.state_dict(), strict=True)
    back = _plain_conv2d(3, 6, 3, 1, device=device)
    back.load_state_dict(layer.state_dict(), strict=True)
    x = torch.randn(1, 3, 5, 5, device=device)
    torch.testing.assert_close(layer(x), _masked_reference(back, x, "B", 3))
    # Inside a model built with nn.Conv2d layers.
    plain_model = nn.Sequential(_plain_conv2d(3, 6, 3, 1), nn.ReLU(), _plain_conv2d(6, 6, 3, 1)).to(device)
    model = nn.Sequential(fnn.MaskedConv2d(3, 6, 3, mask_type="A"), nn.ReLU(),
                          fnn.MaskedConv2d(6, 6, 3, mask_type="B")).to(device)
    model.load_state_dict(plain_model.state_dict(), strict=True)
    expected = _masked_reference(plain_model[2], torch.relu(_masked_reference(plain_model[0], x, "A")), "B")
    torch.testing.assert_close(model(x), expected)


class _RecipeMaskedConv2d(nn.Conv2d):
    """The usual PixelCNN layer: an nn.Conv2d with a registered (saved) mask buffer."""

    def __init__(self, c_in, c_out, k, mask_type, mask_shape=None):
        super().__init__(c_in, c_out, k, padding=k // 2)
        mask = torch.ones(c_out, c_in, k, k)
        mask[:, :, k // 2, k // 2 + (mask_type == "B"):] = 0
        mask[:, :, k // 2 + 1:] = 0
        self.register_buffer("mask", mask if mask_shape is None else mask[:1, :1].reshape(mask_shape))

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


@pytest.mark.parametrize("mask_shape", [None, (1, 1, 5, 5), (5, 5)])
def test_masked_conv2d_loads_the_recipe_with_a_mask_buffer(mask_shape):
    torch.manual_seed(3)
    recipe = nn.Sequential(_RecipeMaskedConv2d(2, 4, 5, "A", mask_shape), nn.ReLU(),
                           _RecipeMaskedConv2d(4, 4, 5, "B", mask_shape))
    model = nn.Sequential(fnn.MaskedConv2d(2, 4, 5, mask_type="A"), nn.ReLU(),
                          fnn.MaskedConv2d(4, 4, 5, mask_type="B"))
    assert "0.mask" in recipe.state_dict()
    model.load_state_dict(recipe.state_dict(), strict=True)
    x = torch.randn(2, 2, 6, 7)
    torch.testing.assert_close(model(x), recipe(x))
    # A mask that keeps other taps (here "B" where the layer is "A") is refused, by name.
    wrong = fnn.MaskedConv2d(2, 4, 5, mask_type="B")
    with pytest.raises(RuntimeError, match=r'mask in the state dict keeps different taps.*mask_type="B"'):
        wrong.load_state_dict(recipe[0].state_dict())
    with pytest.raises(RuntimeError, match="does not broadcast"):
        wrong.load_state_dict({**recipe[0].state_dict(), "mask": torch.ones(3, 3)})


def test_conv_forward_hook_applies_the_mask_and_the_causal_padding():
    """nn.Conv2d / nn.Conv1d code calls _conv_forward(x, weight, bias) with weights of its own."""
    torch.manual_seed(5)
    masked = fnn.MaskedConv2d(3, 4, 3, mask_type="A")
    x, w, b = torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3), torch.randn(4)
    mask = reference.masked_conv2d_mask(w.shape, "A")
    torch.testing.assert_close(masked._conv_forward(x, w, b), F.conv2d(x, w * mask, b, padding=1))
    causal = fnn.CausalConv1d(3, 4, 2, dilation=3)
    x1, w1 = torch.randn(2, 3, 9), torch.randn(4, 3, 2)
    torch.testing.assert_close(causal._conv_forward(x1, w1, None), F.conv1d(F.pad(x1, (3, 0)), w1, dilation=3))


def test_masked_conv2d_built_on_the_meta_device():
    """The deferred-initialisation recipes of nn.Module leave the mask right (it is rebuilt, not copied)."""
    torch.manual_seed(4)
    expected = reference.masked_conv2d_mask((6, 4, 3, 3), "B")
    x = torch.randn(1, 4, 5, 5)
    # to_empty + reset_parameters.
    layer = fnn.MaskedConv2d(4, 6, 3, mask_type="B", device="meta").to_empty(device="cpu")
    layer.reset_parameters()
    assert torch.equal(layer.mask, expected)
    # load_state_dict(assign=True) from a plain conv, then a move.
    plain = _plain_conv2d(4, 6, 3, 1)
    layer = fnn.MaskedConv2d(4, 6, 3, mask_type="B", device="meta")
    layer.load_state_dict(plain.state_dict(), assign=True)
    assert layer.mask.device.type == "cpu" and torch.equal(layer.mask, expected)
    torch.testing.assert_close(layer.to(torch.float64)(x.double()), _masked_reference(plain.double(), x.double(), "B"))
    # The recipe's saved mask is checked even while the layer has no values yet.
    recipe = _RecipeMaskedConv2d(4, 6, 3, "B")
    for target in (fnn.MaskedConv2d(4, 6, 3, mask_type="B", device="meta"),
                   fnn.MaskedConv2d(4, 6, 3, mask_type="B", device="meta").to_empty(device="cpu")):
        target.load_state_dict(recipe.state_dict(), assign=target.weight.is_meta)
        torch.testing.assert_close(target(x), recipe(x))
    with pytest.raises(RuntimeError, match="keeps different taps"):
        fnn.MaskedConv2d(4, 6, 3, mask_type="A", device="meta").load_state_dict(recipe.state_dict(), assign=True)


def test_masked_conv2d_from_conv(device):
    torch.manual_seed(2)
    plain = _plain_conv2d(3, 6, 5, 2, dtype=torch.float64, device=device).eval()
    layer = fnn.MaskedConv2d.from_conv(plain, mask_type="A", color_channels=3)
    assert isinstance(layer, fnn.MaskedConv2d) and not layer.training
    assert layer.mask_type == "A" and layer.color_channels == 3 and layer.dilation == (2, 2)
    assert layer.weight.dtype == layer.mask.dtype == torch.float64
    assert layer.weight is not plain.weight and torch.equal(layer.weight, plain.weight)
    assert torch.equal(layer.bias, plain.bias)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, device=device)
    torch.testing.assert_close(layer(x), _masked_reference(plain, x, "A", 3), **TOL[torch.float64])
    back = _plain_conv2d(3, 6, 5, 2, dtype=torch.float64, device=device)
    back.load_state_dict(layer.state_dict(), strict=True)
    assert torch.equal(back.weight, plain.weight)
    # padding="same" on the plain conv is accepted as well.
    same = nn.Conv2d(2, 2, 3, padding="same", bias=False, device=device)
    assert fnn.MaskedConv2d.from_conv(same, mask_type="B").bias is None
    assert fnn.MaskedConv2d.from_conv(same, "B").mask_type == "B"  # positional, like the constructor's
    with pytest.raises(ValueError, match="padding must be"):
        fnn.MaskedConv2d.from_conv(nn.Conv2d(2, 2, 3), mask_type="A")
    with pytest.raises(ValueError, match="stride must be 1"):
        fnn.MaskedConv2d.from_conv(nn.Conv2d(2, 2, 3, padding=1, stride=2), mask_type="A")
    with pytest.raises(ValueError, match="mask_type"):
        fnn.MaskedConv2d.from_conv(nn.Conv2d(2, 2, 3, padding=1), mask_type="C")
    with pytest.raises(TypeError, match="conv must be an nn.Conv2d"):
        fnn.MaskedConv2d.from_conv(nn.Conv1d(2, 2, 3), mask_type="A")


@pytest.mark.parametrize("mask_type, colors", [("A", 1), ("B", 1), ("A", 3), ("B", 3)])
def test_masked_conv2d_gradients(device, mask_type, colors):
    torch.manual_seed(3)
    plain = _plain_conv2d(3, 6, 3, 1, dtype=torch.float64, device=device)
    layer = fnn.MaskedConv2d.from_conv(plain, mask_type=mask_type, color_channels=colors)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, device=device)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (layer(x1) ** 2).sum().backward()
    (_masked_reference(plain, x2, mask_type, colors) ** 2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(layer.weight.grad, plain.weight.grad)  # plain grad is zero under the mask too
    torch.testing.assert_close(layer.bias.grad, plain.bias.grad)
    assert torch.all(layer.weight.grad[layer.mask == 0] == 0)
    assert torch.all(layer.weight.grad[layer.mask == 1] != 0)


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("d", [1, 2])
def test_masked_conv2d_receptive_field_is_causal(device, mask_type, d):
    torch.manual_seed(4)
    layer = fnn.MaskedConv2d(2, 3, 3, dilation=d, mask_type=mask_type, device=device)
    h, w, i, j = 8, 8, 4, 4
    x = torch.randn(1, 2, h, w, device=device, requires_grad=True)
    layer(x)[0, :, i, j].sum().backward()
    g = x.grad[0].abs().sum(0).flatten()  # raster order
    pos = i * w + j
    assert torch.all(g[pos + 1:] == 0)
    assert (g[pos] != 0) == (mask_type == "B")
    assert g[:pos].sum() > 0
    assert g[(i - d) * w + j] != 0 and g[i * w + j - d] != 0


def test_masked_conv2d_receptive_field_colour_blocks(device):
    # color_channels = 3, mask "A": output block g at (i, j) sees input blocks < g at (i, j).
    torch.manual_seed(5)
    layer = fnn.MaskedConv2d(3, 3, 3, mask_type="A", color_channels=3, device=device)
    x = torch.randn(1, 3, 5, 5, device=device, requires_grad=True)
    for g in range(3):
        x.grad = None
        layer(x)[0, g, 2, 2].backward()
        centre = x.grad[0, :, 2, 2]
        assert torch.all(centre[g:] == 0) and torch.all(centre[:g] != 0)
        assert torch.all(x.grad[0, :, 2, 3:] == 0) and torch.all(x.grad[0, :, 3:] == 0)
        assert x.grad[0, :, :2].abs().sum() > 0


def test_masked_conv2d_unbatched(device):
    torch.manual_seed(6)
    layer = fnn.MaskedConv2d(3, 4, 3, mask_type="B", device=device)
    x = torch.randn(3, 5, 4, device=device)
    y = layer(x)
    assert y.shape == (4, 5, 4)
    torch.testing.assert_close(y, layer(x[None])[0])
    with pytest.raises(ValueError, match=r"\(N, C_in, H, W\) or unbatched \(C_in, H, W\)"):
        layer(torch.randn(5, 4, device=device))


def test_masked_conv2d_follows_module_to():
    layer = fnn.MaskedConv2d(3, 3, 3).to(torch.float64)
    assert layer.mask.dtype == torch.float64
    y = layer(torch.randn(1, 3, 4, 4, dtype=torch.float64))
    assert y.dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(kernel_size=2), ValueError, "kernel_size must be odd"),
        (dict(kernel_size=(3, 4)), ValueError, "kernel_size must be odd"),
        (dict(kernel_size=0), ValueError, "kernel_size must be >= 1"),
        (dict(kernel_size=(3, 3, 3)), TypeError, "kernel_size must be an int or a tuple of 2 ints"),
        (dict(stride=2), ValueError, "stride must be 1"),
        (dict(stride=(1, 2)), ValueError, "stride must be 1"),
        (dict(padding=0), ValueError, r"padding must be None, \"same\" or .*\(1, 1\)"),
        (dict(padding=(1, 2)), ValueError, "padding must be"),
        (dict(padding="valid"), ValueError, "padding must be"),
        (dict(padding="full"), ValueError, "padding must be"),
        (dict(dilation=(1, 2)), ValueError, "dilation must be the same along both axes"),
        (dict(dilation=0), ValueError, "dilation must be >= 1"),
        (dict(padding_mode="circular"), ValueError, 'padding_mode must be "zeros"'),
        (dict(mask_type="C"), ValueError, 'mask_type must be "A" or "B"'),
        (dict(mask_type="a"), ValueError, 'mask_type must be "A" or "B"'),
        (dict(color_channels=0), ValueError, "color_channels must be >= 1"),
        (dict(color_channels=2.0), TypeError, "color_channels must be an int"),
        (dict(color_channels=4), ValueError, "color_channels = 4 must divide in_channels = 6"),
        (dict(color_channels=3, groups=3), ValueError, "color_channels = 3 needs groups = 1"),
        (dict(groups=4), ValueError, "groups"),
    ],
)
def test_masked_conv2d_bad_arguments(kwargs, error, match):
    args = dict(in_channels=6, out_channels=6, kernel_size=3) | kwargs
    with pytest.raises(error, match=match):
        fnn.MaskedConv2d(**args)


def test_masked_conv2d_accepts_same_padding_spellings():
    for padding in (None, "same", 2, (2, 2)):
        assert fnn.MaskedConv2d(2, 2, 3, dilation=2, padding=padding).padding == (2, 2)
    assert fnn.MaskedConv2d(2, 2, (1, 5), padding=(0, 2)).padding == (0, 2)


def test_reprs():
    assert "causal=True" in repr(fnn.CausalConv1d(2, 3, 2, dilation=4))
    r = repr(fnn.MaskedConv2d(3, 3, 3, mask_type="B", color_channels=3))
    assert "mask_type='B'" in r and "color_channels=3" in r


# ---------------------------------------------------------------------------------------------
# In models and under torch.compile


def test_sequential_of_both(device):
    torch.manual_seed(7)
    model = nn.Sequential(fnn.CausalConv1d(2, 4, 2), nn.Tanh(),
                          fnn.CausalConv1d(4, 2, 2, dilation=2)).to(device)
    x = torch.randn(2, 2, 12, device=device, requires_grad=True)
    model(x)[..., 5].sum().backward()
    assert torch.all(x.grad[..., 6:] == 0) and x.grad[..., :6].abs().sum() > 0
    pixel = nn.Sequential(fnn.MaskedConv2d(3, 6, 5, mask_type="A", color_channels=3), nn.ReLU(),
                          fnn.MaskedConv2d(6, 6, 3, mask_type="B", color_channels=3)).to(device)
    assert pixel(torch.randn(2, 3, 6, 6, device=device)).shape == (2, 6, 6, 6)


def test_torch_compile_fullgraph(device):
    torch.manual_seed(8)
    torch._dynamo.reset()
    causal = fnn.CausalConv1d(2, 3, 3, dilation=2, device=device)
    masked = fnn.MaskedConv2d(3, 3, 3, mask_type="B", color_channels=3, device=device)

    def f(x1, x2):
        return torch.tanh(causal(x1)).sum() + torch.tanh(masked(x2)).sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x1, x2 = torch.randn(2, 2, 9, device=device), torch.randn(2, 3, 5, 5, device=device)
    params = list(causal.parameters()) + list(masked.parameters())
    assert_compiled_layers_match_eager(compiled, f, (x1, x2), params)


@pytest.mark.parametrize("make,shape,match", [
    (lambda: fnn.CausalConv1d(2, 3, 2), (1, 3, 5), r"CausalConv1d input must have C_in = 2 channels \(dim 1\)"),
    (lambda: fnn.MaskedConv2d(2, 4, 3, mask_type="B"), (3, 5, 5),
     r"MaskedConv2d input must have C_in = 2 channels \(dim 0 of an unbatched input\)"),
    (lambda: fnn.MaskedConv2d(4, 4, 3, groups=2), (1, 2, 5, 5), r"MaskedConv2d input must have C_in = 4 channels"),
    (lambda: fnn.WaveNetLayer(2, 4, 2), (1, 3, 5), r"WaveNetLayer input must have C_res = 2 channels"),
    (lambda: fnn.GatedPixelCNNLayer(2, 2, 3), (1, 3, 4, 4), r"GatedPixelCNNLayer input must have C_in = 2 channels"),
])
def test_layers_blame_the_input_for_a_wrong_channel_count(make, shape, match):
    """As nn.Conv2d does: the input has the wrong width, not the layer's weight."""
    with pytest.raises(ValueError, match=match):
        make()(torch.randn(shape))
