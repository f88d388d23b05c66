"""fastgen's ops, layers and models inside ``torch.autocast``: PyTorch's casting rules for the ops
they replace (fastgen/ops/_autocast.py), and a backward run inside the autocast region."""

import pytest
import torch
import torch.nn.functional as F
from functional_calls import functional_calls

import fastgen.nn as fnn
from fastgen import _ext, ops
from fastgen.models import Glow, RealNVP
from fastgen.ops import _autocast

pytestmark = pytest.mark.skipif(not _ext.has_op("masked_conv2d"), reason="needs the compiled extension")

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def test_every_op_has_an_autocast_kernel():
    names = [n for n in torch._C._dispatch_get_all_op_names() if n.startswith("fastgen::")]
    assert len(names) > 20
    for name in names:
        for key in ("AutocastCPU", "AutocastCUDA"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(name, key), (name, key)
    assert _autocast.policy("masked_conv2d") == _autocast.LOWER
    assert _autocast.policy("invertible_conv1x1") == _autocast.FLOAT32
    assert _autocast.policy("masked_conv2d_backward") == _autocast.AS_GIVEN


def test_masked_conv_runs_like_the_conv2d_it_replaces():
    torch.manual_seed(0)
    layer = fnn.MaskedConv2d(8, 6, 3, mask_type="B", padding=1)
    plain = torch.nn.Conv2d(8, 6, 3, padding=1)
    plain.weight.data = layer.weight.data * layer.mask
    plain.bias.data = layer.bias.data.clone()
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    with torch.autocast(**BF16):
        y, want = layer(x), plain(x)
        y.float().square().sum().backward()  # backward inside the region
    assert y.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(y, want, rtol=2e-2, atol=2e-2)
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()


def test_causal_conv_and_wavenet_layer_run_in_the_autocast_dtype():
    torch.manual_seed(0)
    conv = fnn.CausalConv1d(4, 6, 3, dilation=2)
    x = torch.randn(2, 4, 12, requires_grad=True)
    with torch.autocast(**BF16):
        y = conv(x)
        y.float().sum().backward()
    assert y.dtype == torch.bfloat16
    want = F.conv1d(F.pad(x.detach(), (4, 0)), conv.weight.detach(), conv.bias.detach(), dilation=2)
    torch.testing.assert_close(y.float(), want, rtol=3e-2, atol=3e-2)
    w = [torch.randn(8, 4, 2), None, torch.randn(4, 4), None, torch.randn(5, 4), None]
    with torch.autocast(**BF16):
        residual, skip = ops.wavenet_layer(x, *w, dilation=2)
    assert residual.dtype == skip.dtype == torch.bfloat16


@pytest.mark.parametrize("make", [lambda: fnn.InvConv1x1(6), lambda: fnn.InvConv1x1(6, lu=False),
                                  lambda: fnn.ActNorm(6), lambda: fnn.AdditiveCoupling(6, hidden_channels=8)],
                         ids=["invconv-lu", "invconv-plain", "actnorm", "additive"])
def test_flow_layers_stay_in_float32_and_invert(make):
    torch.manual_seed(0)
    layer = make()
    x = torch.randn(3, 6, 4, 4)
    layer(x)  # ActNorm's data-dependent initialisation, outside autocast
    for p in layer.parameters():
        p.data += 0.1 * torch.randn_like(p)
    with torch.autocast(**BF16):
        y, logdet = layer(x)
        back, logdet_back = layer.inverse(y)
        (y.square().sum() + logdet.sum()).backward()  # backward inside the region
    assert y.dtype == logdet.dtype == torch.float32
    torch.testing.assert_close(back, x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logdet_back, -logdet, rtol=1e-5, atol=1e-5)
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", list(functional_calls()))
def test_every_functional_op_runs_under_autocast(name):
    """Each op called directly inside autocast gives the dtype of its rule (the convolutions
    bfloat16, the flow and Gaussian ops float32) and the numbers of that dtype's call."""
    call, _ = functional_calls()[name]
    with torch.autocast(**BF16):
        got = call()
    plain = call()
    got, plain = (got, plain) if isinstance(got, tuple) else ((got,), (plain,))
    want = torch.bfloat16 if _autocast.policy(name) == _autocast.LOWER else torch.float32
    assert got[0].dtype == want
    for a, b in zip(got, plain):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.float(), b.float(), rtol=5e-2, atol=5e-2 * max(1.0, b.abs().max().item()))


def test_mixed_dtypes_are_cast_as_pytorch_casts_them():
    """Under autocast a bfloat16 activation meets float32 weights (an nn.Conv2d before a
    MaskedConv2d, a bfloat16 conditioner output beside a float32 x): the wrappers cast first, as
    F.conv2d and torch.exp would, instead of failing their "dtype of x" check."""
    torch.manual_seed(0)
    first, masked = torch.nn.Conv2d(1, 8, 3, padding=1), fnn.MaskedConv2d(8, 6, 3, mask_type="B")
    plain = torch.nn.Conv2d(8, 6, 3, padding=1)
    plain.weight.data, plain.bias.data = masked.weight.data * masked.mask, masked.bias.data.clone()
    x = torch.randn(2, 1, 6, 6)
    with torch.autocast(**BF16):
        hidden = first(x)
        assert hidden.dtype == torch.bfloat16
        y, want = masked(hidden), plain(hidden)
        y.float().sum().backward()
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, want, rtol=2e-2, atol=2e-2)
    assert masked.weight.grad.dtype == torch.float32
    sequence = torch.randn(2, 4, 12, dtype=torch.bfloat16)
    with torch.autocast(**BF16):
        assert fnn.CausalConv1d(4, 6, 3)(sequence).dtype == torch.bfloat16
        residual, skip = ops.wavenet_layer(sequence, torch.randn(8, 4, 2), None, torch.randn(4, 4), None,
                                           torch.randn(5, 4), None, dilation=2)
        assert residual.dtype == skip.dtype == torch.bfloat16
        x32, s16 = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3, dtype=torch.bfloat16)
        y, logdet = ops.affine_coupling(x32, s16, s16)
        assert y.dtype == logdet.dtype == torch.float32
        torch.testing.assert_close(y, ops.affine_coupling(x32, s16.float(), s16.float())[0])
        assert ops.additive_coupling(x32, s16).dtype == torch.float32
        assert ops.reparameterize(x32.flatten(1), s16.flatten(1)).dtype == torch.float32
    with pytest.raises(TypeError, match="shift must have the dtype of x"):  # outside autocast: still refused
        ops.additive_coupling(x32, s16)


def test_flow_ops_take_bfloat16_inputs_to_float32():
    x = torch.randn(2, 4, 3, 3, dtype=torch.bfloat16)
    with torch.autocast(**BF16):
        y, logdet = ops.affine_coupling(x, x, x)
        z = ops.reparameterize(x.flatten(1), x.flatten(1))
    assert y.dtype == logdet.dtype == z.dtype == torch.float32


@pytest.mark.parametrize("model", [lambda: Glow((1, 8, 8), 17, steps_per_level=2, hidden_channels=16),
                                   lambda: RealNVP((1, 8, 8), 17)], ids=["glow", "realnvp"])
def test_models_train_with_backward_inside_autocast(model):
    torch.manual_seed(0)
    flow = model()
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    data = (torch.randint(0, 17, (32, 1, 8, 8)).float() + torch.rand(32, 1, 8, 8)) / 17
    for _ in range(3):
        with torch.autocast(**BF16):
            loss = -flow.log_prob(data).mean()
            opt.zero_grad()
            loss.backward()
        assert torch.isfinite(loss)
        opt.step()
    flow.eval()
    with torch.no_grad(), torch.autocast(**BF16):
        z, _ = flow.forward(data)
        back = flow.inverse(z)
    back = back[0] if isinstance(back, tuple) else back
    assert torch.isfinite(back).all()
