"""Triton kernels of the fused WaveNet layer against the plain-PyTorch reference.

Without a GPU the kernels run on CPU tensors in Triton's interpreter (set up by ``triton_helpers``,
imported before the kernels); with one they run compiled on CUDA tensors.
"""

import pytest
import torch
from conv_cases import close
from triton_helpers import DTYPES, device, use_large_blocks  # noqa: F401 (device: a fixture)

from fastgen.reference import conv as ref
from fastgen.triton_kernels import wavenet as tk

# (N, C_res, C_gate, C_skip, C_cond (0: no cond), T, K, dilation)
SHAPES = [
    (2, 3, 6, 5, 2, 37, 3, 2),  # odd channel counts, conditioning
    (1, 1, 2, 1, 0, 1, 1, 1),  # one of everything, T = 1
    (3, 4, 10, 3, 1, 5, 3, 5),  # receptive field 11 > T
    (1, 5, 8, 7, 0, 150, 2, 5),  # two time blocks
    (1, 2, 4, 33, 3, 130, 1, 2),  # K = 1, two skip blocks, two time blocks
    # G = 40 > FUSED_MAX_GATE under the interpreter: the unfused forward, two gate and out blocks
    (2, 6, 80, 40, 3, 20, 2, 1),
]


@pytest.fixture(autouse=True)
def _large_blocks(monkeypatch):
    use_large_blocks(monkeypatch, tk, BLOCK_O=32, BLOCK_C=32, BLOCK_G=32, BLOCK_T=128, FUSED_MAX_GATE=32,
                     WEIGHT_SPLIT=2)


def _inputs(shape, dtype, device, scale=1.0):
    """(x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, cond, w_cond), (g_res, g_skip)."""
    n, c_res, c_gate, c_skip, c_cond, t, k, _ = shape
    g = torch.Generator().manual_seed(0)

    def rnd(*size, fan_in=1):
        return (torch.randn(*size, generator=g) * scale / fan_in ** 0.5).to(dtype=dtype, device=device)

    args = [rnd(n, c_res, t), rnd(c_gate, c_res, k, fan_in=c_res * k), rnd(c_gate),
            rnd(c_res, c_gate // 2, fan_in=c_gate // 2), rnd(c_res),
            rnd(c_skip, c_gate // 2, fan_in=c_gate // 2), rnd(c_skip)]
    args += [rnd(n, c_cond, t), rnd(c_gate, c_cond, fan_in=c_cond)] if c_cond else [None, None]
    return args, (rnd(n, c_res, t), rnd(n, c_skip, t))


def _reference_h(args, dilation):
    x, wd, bd, *_, cond, wc = args
    h = ref.causal_conv1d(x, wd, bd, dilation)
    return h if cond is None else h + torch.einsum("oc,nct->not", wc, cond)


def _double(args):
    return [None if a is None else a.detach().double().cpu().requires_grad_(True) for a in args]


def _without_biases(args):
    return [None if i in (2, 4, 6) else a for i, a in enumerate(args)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_and_backward_match_reference(shape, dtype, device):
    args, (g_res, g_skip) = _inputs(shape, dtype, device)
    dilation = shape[-1]
    leaves = _double(args)
    res_ref, skip_ref = ref.wavenet_layer(*leaves[:7], dilation, *leaves[7:])
    torch.autograd.backward((res_ref, skip_ref), (g_res.double().cpu(), g_skip.double().cpu()))

    residual, skip, h = tk.wavenet_layer(*args[:7], dilation, *args[7:], True)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    close(residual, res_ref.detach(), dtype)
    close(skip, skip_ref.detach(), dtype)
    close(h, _reference_h(leaves, dilation).detach(), acc)

    plain = _without_biases(args)
    residual, skip, h0 = tk.wavenet_layer(*plain[:7], dilation, *plain[7:], False)
    assert h0.shape == (0,) and h0.dtype == acc
    expected = ref.wavenet_layer(*_without_biases(_double(args))[:7], dilation, *leaves[7:])
    close(residual, expected[0].detach(), dtype)
    close(skip, expected[1].detach(), dtype)

    x, wd, _, wr, _, ws, _, cond, wc = args
    grads = tk.wavenet_layer_backward(g_res, g_skip, x, h, wd, wr, ws, dilation, cond, wc)
    assert len(grads) == 9
    for actual, leaf in zip(grads, leaves):
        if leaf is None:  # no conditioning
            assert actual.shape == (0,) and actual.dtype == dtype
        else:
            close(actual, leaf.grad, dtype)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_saturated_gates_and_both_forwards(fused, device, monkeypatch):
    # Pre-activations in the hundreds (h up to ~300): tanh/sigmoid saturate without overflow or NaN.
    shape = (2, 3, 12, 4, 2, 30, 2, 3)
    if not fused:
        monkeypatch.setattr(tk, "FUSED_MAX_GATE", 0)
    assert bool(tk.fused_gate_block(6, torch.float32)) == fused
    args, (g_res, g_skip) = _inputs(shape, torch.float32, device, scale=8.0)
    leaves = _double(args)
    res_ref, skip_ref = ref.wavenet_layer(*leaves[:7], 3, *leaves[7:])
    torch.autograd.backward((res_ref, skip_ref), (g_res.double().cpu(), g_skip.double().cpu()))
    residual, skip, h = tk.wavenet_layer(*args[:7], 3, *args[7:], True)
    assert h.abs().max() > 100
    close(residual, res_ref.detach(), torch.float32)
    close(skip, skip_ref.detach(), torch.float32)
    x, wd, _, wr, _, ws, _, cond, wc = args
    grads = tk.wavenet_layer_backward(g_res, g_skip, x, h, wd, wr, ws, 3, cond, wc)
    for actual, leaf in zip(grads, leaves):
        assert torch.isfinite(actual).all()
        close(actual, leaf.grad, torch.float32)


def test_non_contiguous_and_conv1d_weights(device):
    args, (g_res, g_skip) = _inputs((2, 3, 6, 4, 2, 20, 3, 2), torch.float32, device)
    x, wd, bd, wr, br, ws, bs, cond, wc = args
    xt = x.transpose(1, 2).contiguous().transpose(1, 2)
    wdt = wd.permute(2, 0, 1).contiguous().permute(1, 2, 0)
    assert not xt.is_contiguous() and not wdt.is_contiguous()
    expected = tk.wavenet_layer(x, wd, bd, wr, br, ws, bs, 2, cond, wc, True)
    wr3, ws3, wc3 = wr[:, :, None], ws[:, :, None], wc[:, :, None]  # the nn.Conv1d layout
    actual = tk.wavenet_layer(xt, wdt, bd, wr3, br, ws3, bs, 2, cond, wc3, True)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)
    grads = tk.wavenet_layer_backward(g_res, g_skip, xt, actual[2], wdt, wr3, ws3, 2, cond, wc3)
    assert grads[3].shape == (3, 3, 1) and grads[5].shape == (4, 3, 1) and grads[8].shape == (6, 2, 1)


def test_bad_input():
    x = torch.zeros(2, 3, 8)
    wd, wr, ws = torch.zeros(6, 3, 2), torch.zeros(3, 3), torch.zeros(4, 3)
    with pytest.raises(ValueError, match="dilation must be >= 1"):
        tk.wavenet_layer(x, wd, None, wr, None, ws, None, 0, None, None, False)
    with pytest.raises(ValueError, match="even C_gate"):
        tk.wavenet_layer(x, torch.zeros(5, 3, 2), None, wr, None, ws, None, 1, None, None, False)
    with pytest.raises(ValueError, match="w_res"):
        tk.wavenet_layer(x, wd, None, torch.zeros(3, 2), None, ws, None, 1, None, None, False)
    with pytest.raises(ValueError, match="cond"):
        tk.wavenet_layer(x, wd, None, wr, None, ws, None, 1, torch.zeros(2, 1, 8), None, False)
    with pytest.raises(ValueError, match="save_pre_activation"):
        tk.wavenet_layer_backward(x, torch.zeros(2, 4, 8), x, torch.empty(0), wd, wr, ws, 1, None, None)
