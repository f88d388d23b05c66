"""Triton kernels of the fused Gated PixelCNN layer against the plain-PyTorch reference.

Without a GPU the kernels run on CPU tensors in Triton's interpreter (set up by ``triton_helpers``,
imported before the kernels); with one they run compiled on CUDA tensors. The outputs, the
saved pre-activations and all 13 gradients of the backward are compared with the float64
reference (gradients by autograd through it).
"""

import functools

import pytest
import torch
import torch.nn.functional as F
import conv_cases
from triton_helpers import DTYPES, INTERPRET, device, use_large_blocks  # noqa: F401 (device: a fixture)

from fastgen.reference import conv as ref
from fastgen.triton_kernels import gated_pixelcnn as tk

# (rtol, atol relative to the largest expected magnitude) vs the float64 reference. Loose for
# float16/bfloat16: on a GPU, v_pre, the gate, dV and dH are rounded to the input dtype for the
# tensor cores.
TOL = {
    torch.float32: (1e-4, 1e-5),
    torch.float64: (1e-10, 1e-12),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 5e-2),
}
close = functools.partial(conv_cases.close, tol=TOL)
ACC = {torch.float32: torch.float32, torch.float64: torch.float64, torch.float16: torch.float32,
       torch.bfloat16: torch.float32}
GRAD_NAMES = ["v", "h", "w_v", "b_v", "w_h", "b_h", "w_v2h", "b_v2h", "w_res", "b_res", "cond", "w_cond_v",
              "w_cond_h"]
# (N, C_in, C, H, W, n, mask_type, D or None (no cond), biases)
CASES = [
    (2, 3, 3, 5, 6, 3, "B", 4, True),
    (1, 1, 2, 4, 3, 1, "A", None, False),  # 1x1 mask "A": no horizontal tap at all
    (2, 3, 5, 6, 5, 5, "A", 3, True),  # receptive field wider than the image
    (3, 2, 2, 1, 7, 3, "B", None, True),  # H = 1: the link sees only the zero row
    (1, 4, 4, 6, 1, 5, "B", 2, False),  # W = 1
    (2, 3, 3, 3, 4, 1, "B", 5, True),
    (1, 1, 3, 4, 5, 3, "A", None, True),
]


@pytest.fixture(autouse=True)
def _large_blocks(monkeypatch):
    use_large_blocks(monkeypatch, tk, BLOCK_G=16, BLOCK_C=16, BLOCK_O=16, BLOCK_P=64, WEIGHT_SPLIT=2)


def _inputs(case, dtype, device, seed=0):
    N, c_in, c, height, width, n, mask, d, _ = case
    g = torch.Generator().manual_seed(seed)
    k = n // 2

    def rnd(*shape, fan_in=1):
        return (torch.randn(*shape, generator=g) / fan_in ** 0.5).to(dtype=dtype, device=device)

    t = {
        "v": rnd(N, c_in, height, width), "h": rnd(N, c_in, height, width),
        "w_v": rnd(2 * c, c_in, k + 1, n, fan_in=c_in * (k + 1) * n), "b_v": rnd(2 * c),
        "w_h": rnd(2 * c, c_in, 1, k + 1, fan_in=c_in * (k + 1)), "b_h": rnd(2 * c),
        "w_v2h": rnd(2 * c, 2 * c, fan_in=2 * c), "b_v2h": rnd(2 * c),
        "w_res": rnd(c, c, fan_in=c), "b_res": rnd(c),
        "cond": rnd(N, d) if d else None,
        "w_cond_v": rnd(2 * c, d, fan_in=d) if d else None,
        "w_cond_h": rnd(2 * c, d, fan_in=d) if d else None,
        "g_v": rnd(N, c, height, width), "g_h": rnd(N, c, height, width),
    }
    return t


def _args(t, mask, biases):
    """Positional arguments of the op (without save_pre_activation)."""
    def b(name):
        return t[name] if biases else None
    return (t["v"], t["h"], t["w_v"], b("b_v"), t["w_h"], b("b_h"), t["w_v2h"], b("b_v2h"), t["w_res"],
            b("b_res"), mask, t["cond"], t["w_cond_v"], t["w_cond_h"])


def _pre_activations(v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, mask, cond, w_cond_v, w_cond_h):
    """The float64 gate pre-activations, spelled out like the reference."""
    k = w_v.shape[3] // 2
    v_pre = F.conv2d(F.pad(v, (k, k, k, 0)), w_v, b_v)
    if cond is not None:  # before the shift: the link sees the conditioned v_pre
        v_pre = v_pre + (cond @ w_cond_v.t())[:, :, None, None]
    width = k + 1 if mask == "B" else k
    h_pre = F.conv2d(F.pad(h, (k, 0)), w_h[..., :width])[..., :h.shape[3]] if width else 0
    h_pre = h_pre + torch.einsum("oc,nchw->nohw", w_v2h, F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1])
    h_pre = h_pre + (b_h + b_v2h)[:, None, None]
    if cond is not None:
        h_pre = h_pre + (cond @ w_cond_h.t())[:, :, None, None]
    return v_pre, h_pre


def _check_case(case, dtype, device):
    N, c_in, c, height, width, n, mask, d, biases = case
    t = _inputs(case, dtype, device)
    names = GRAD_NAMES if d else GRAD_NAMES[:10]
    # Reference leaves: float64 copies (zero biases stand in for missing ones: same outputs, and
    # their gradients are what the kernel returns for the biases anyway).
    leaves = {}
    for name in names:
        x = t[name].detach().double().cpu()
        if name.startswith("b_") and not biases:
            x = torch.zeros_like(x)
        leaves[name] = x.requires_grad_(True)
    full = {**{name: None for name in GRAD_NAMES}, **leaves}
    ref_args = [full[name] for name in GRAD_NAMES[:10]] + [mask] + [full[name] for name in GRAD_NAMES[10:]]
    exp_v, exp_h = ref.gated_pixelcnn_layer(*ref_args)
    grad_outputs = (t["g_v"].double().cpu(), t["g_h"].double().cpu())
    expected_grads = torch.autograd.grad((exp_v, exp_h), list(leaves.values()), grad_outputs,
                                         allow_unused=True)
    # h is unused by a 1x1 mask "A" layer (no horizontal tap, no residual): its gradient is 0
    expected_grads = [torch.zeros_like(leaf) if grad is None else grad
                      for grad, leaf in zip(expected_grads, leaves.values())]
    args = _args(t, mask, biases)
    v_out, h_out, v_pre, h_pre = tk.gated_pixelcnn_layer(*args, True)
    close(v_out, exp_v.detach(), dtype, "v_out")
    close(h_out, exp_h.detach(), dtype, "h_out")
    with torch.no_grad():
        exp_vpre, exp_hpre = _pre_activations(*[full[nm] for nm in GRAD_NAMES[:8]], mask,
                                              *[full[nm] for nm in GRAD_NAMES[10:]])
    assert v_pre.dtype == h_pre.dtype == ACC[dtype]
    close(v_pre.to(dtype), exp_vpre, dtype, "v_pre")
    close(h_pre.to(dtype), exp_hpre, dtype, "h_pre")
    # Without saving: the same outputs, empty pre-activations.
    v_out2, h_out2, v_pre2, h_pre2 = tk.gated_pixelcnn_layer(*args, False)
    assert v_pre2.shape == h_pre2.shape == (0,) and v_pre2.dtype == h_pre2.dtype == ACC[dtype]
    torch.testing.assert_close(v_out2, v_out, rtol=0, atol=0)
    torch.testing.assert_close(h_out2, h_out, rtol=0, atol=0)

    grads = tk.gated_pixelcnn_layer_backward(t["g_v"], t["g_h"], t["v"], t["h"], v_pre, h_pre, t["w_v"],
                                             t["w_h"], t["w_v2h"], t["w_res"], mask, t["cond"], t["w_cond_v"],
                                             t["w_cond_h"])
    assert len(grads) == 13
    for name, actual, expected in zip(names, grads, expected_grads):
        close(actual, expected, dtype, "grad_" + name)
    if not d:
        for actual in grads[10:]:
            assert actual.shape == (0,) and actual.dtype == dtype
    if mask == "A":
        assert (grads[4][..., -1] == 0).all()  # the ignored current-pixel tap
    nonempty = [g for g in grads if g.numel()]
    assert len({g.data_ptr() for g in nonempty}) == len(nonempty)  # no aliasing
    assert len({id(g) for g in grads}) == 13


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_and_backward_match_reference(case, dtype, device):
    _check_case(case, dtype, device)


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_several_blocks(fused, device, monkeypatch):
    # More than one channel block (C, C_in, D = 17 > 16), pixel block, output block of the fused
    # projection and weight split; the unfused horizontal forward (gate scratch + projection kernel)
    # and the fused one.
    if INTERPRET:
        monkeypatch.setattr(tk, "BLOCK_P", 16)
    monkeypatch.setattr(tk, "BLOCK_G", 16)
    monkeypatch.setattr(tk, "BLOCK_C", 16)
    monkeypatch.setattr(tk, "BLOCK_O", 16)
    monkeypatch.setattr(tk, "WEIGHT_SPLIT", 2)
    monkeypatch.setattr(tk, "FUSED_MAX_GATE", 32 if fused else 0)
    assert bool(tk.fused_gate_block(17, torch.float32)) == fused
    _check_case((1, 17, 17, 5, 7, 3, "B", 17, True), torch.float32, device)


def test_fused_gate_block():
    assert tk.fused_gate_block(3, torch.float32) == 16
    assert tk.fused_gate_block(100, torch.bfloat16) == 128
    assert tk.fused_gate_block(3, torch.float64) == 0
    assert tk.fused_gate_block(200, torch.float16) == 0


def test_4d_pointwise_weights_and_bad_input(device):
    case = (1, 2, 2, 3, 4, 3, "B", None, True)
    t = _inputs(case, torch.float32, device)
    args = list(_args(t, "B", True))
    out = tk.gated_pixelcnn_layer(*args, True)
    args4 = list(args)
    args4[6], args4[8] = t["w_v2h"][:, :, None, None], t["w_res"][:, :, None, None]
    out4 = tk.gated_pixelcnn_layer(*args4, True)
    for a, b in zip(out, out4):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    grads = tk.gated_pixelcnn_layer_backward(t["g_v"], t["g_h"], t["v"], t["h"], out[2], out[3], t["w_v"],
                                             t["w_h"], args4[6], args4[8], "B", None, None, None)
    assert grads[6].shape == (4, 4, 1, 1) and grads[8].shape == (2, 2, 1, 1)
    with pytest.raises(ValueError, match="mask_type"):
        tk.gated_pixelcnn_layer(*args[:10], "C", None, None, None, False)
    with pytest.raises(ValueError, match="save_pre_activation"):
        tk.gated_pixelcnn_layer_backward(t["g_v"], t["g_h"], t["v"], t["h"], out[2][:0], out[3], t["w_v"],
                                         t["w_h"], args[6], args[8], "B", None, None, None)
    h3 = torch.zeros(1, 3, 3, 4, device=device)
    with pytest.raises(ValueError, match='mask_type "B"'):
        tk.gated_pixelcnn_layer(h3, h3, torch.zeros(4, 3, 2, 3, device=device), None,
                                torch.zeros(4, 3, 1, 2, device=device), None, t["w_v2h"], None, t["w_res"],
                                None, "B", None, None, None, False)
