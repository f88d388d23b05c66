"""gated_pixelcnn_layer (one fused Gated PixelCNN layer): kernels vs the reference, every gradient,
the receptive field of a stack (no blind spot, no leak), gradcheck, opcheck, torch.compile and
bad input."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import pytest
import torch
from torch.library import opcheck

from fastgen import _ext, ops, reference
from fastgen.ops import _dispatch

OPS = torch.ops.fastgen
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
# (rtol, atol relative to the largest expected magnitude) vs the float64 reference on the same
# (rounded) inputs: the kernels accumulate in float32 (float64) and round each output once.
TOL = {
    torch.float32: (1e-4, 1e-5),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (3e-2, 3e-2),
    torch.float64: (1e-10, 1e-12),
}
NAMES = ("v", "h", "w_v", "b_v", "w_h", "b_h", "w_v2h", "b_v2h", "w_res", "b_res")
BIASES = ("b_v", "b_h", "b_v2h", "b_res")
COND_NAMES = ("cond", "w_cond_v", "w_cond_h")


class Case(NamedTuple):
    n: int
    c_in: int
    c: int  # gate channels: the pre-activations have 2C
    h: int
    w: int
    k: int  # the filter size n (odd)
    mask_type: str = "B"
    cond: int = 0  # D, the conditioning size; 0: no conditioning

    def __str__(self) -> str:
        return (f"{self.n}x{self.c_in}x{self.h}x{self.w}->{self.c} n{self.k} {self.mask_type}"
                + (f" cond{self.cond}" if self.cond else ""))


# n in {1, 3, 5}; mask A on 1- and 3-channel images (C_in != C) and with C_in = C; odd channel
# counts; H = 1, W = 1, one pixel; batch 1; conditioning. The CPU kernels cut images into tiles
# of rows (where the link crosses tile edges): the small shapes are one tile; the last three
# have several row tiles in grad_v (one tile per image in the fused passes: grad_v from the
# cached dV), and in every pass (the row recomputed above a tile, dV through pass 2).
SHAPES = [
    Case(2, 1, 4, 5, 6, 3, "A"),
    Case(2, 3, 5, 6, 5, 5, "A", cond=3),
    Case(1, 3, 3, 4, 4, 1, "A"),  # n = 1, mask A: no horizontal tap at all
    Case(2, 4, 4, 5, 6, 3, "A", cond=2),
    Case(2, 4, 4, 5, 6, 3, "B", cond=2),
    Case(1, 5, 5, 7, 6, 5, "B"),
    Case(3, 3, 3, 1, 8, 3, "B", cond=4),  # H = 1
    Case(2, 2, 2, 9, 1, 3, "B"),  # W = 1
    Case(2, 3, 3, 6, 5, 1, "B", cond=2),  # n = 1, mask B
    Case(1, 1, 2, 1, 1, 3, "A"),  # one pixel
    Case(2, 5, 2, 4, 5, 3, "A", cond=1),  # C_in > 2C: grad_v by the mirrored gather, not the scatter
    Case(2, 32, 32, 28, 28, 5, "B", cond=3),  # 4 grad_v tiles per image
    Case(1, 64, 64, 36, 20, 5, "B", cond=2),  # 2 tiles in the fused passes, 6 in pass 2
    Case(1, 3, 128, 48, 48, 3, "A"),  # 2 tiles in the fused passes, 16 in pass 2: a 3-channel image
]


def _tensors(case: Case, dtype, device="cpu", seed=0, biases=BIASES, pointwise_4d=False) -> dict:
    """The op's tensor arguments by name (weights scaled like a trained layer's)."""
    g = torch.Generator().manual_seed(seed)
    kh, two_c = case.k // 2 + 1, 2 * case.c

    def rand(*shape, fan_in=1):
        return (torch.randn(*shape, generator=g) / max(1, fan_in) ** 0.5).to(dtype=dtype, device=device)

    t = dict(
        v=rand(case.n, case.c_in, case.h, case.w),
        h=rand(case.n, case.c_in, case.h, case.w),
        w_v=rand(two_c, case.c_in, kh, case.k, fan_in=case.c_in * kh * case.k),
        b_v=rand(two_c),
        w_h=rand(two_c, case.c_in, 1, kh, fan_in=case.c_in * kh),
        b_h=rand(two_c),
        w_v2h=rand(two_c, two_c, fan_in=two_c),
        b_v2h=rand(two_c),
        w_res=rand(case.c, case.c, fan_in=case.c),
        b_res=rand(case.c),
    )
    for name in BIASES:
        if name not in biases:
            t[name] = None
    if pointwise_4d:
        t["w_v2h"], t["w_res"] = t["w_v2h"][:, :, None, None], t["w_res"][:, :, None, None]
    if case.cond:
        t.update(cond=rand(case.n, case.cond), w_cond_v=rand(two_c, case.cond, fan_in=case.cond),
                 w_cond_h=rand(two_c, case.cond, fan_in=case.cond))
    return t


def _call(fn, t: dict, mask_type: str):
    cond = {name: t[name] for name in COND_NAMES if name in t}
    return fn(*(t[name] for name in NAMES), mask_type=mask_type, **cond)


def _reference(t: dict, mask_type: str):
    return reference.gated_pixelcnn_layer(*(t[name] for name in NAMES), mask_type,
                                          *(t.get(name) for name in COND_NAMES))


def _double(t):
    return None if t is None else t.detach().double().cpu()


def close(actual, expected, dtype):
    assert actual.dtype == dtype
    assert actual.shape == expected.shape
    rtol, atol = TOL[dtype]
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual.double().cpu(), expected, rtol=rtol, atol=atol * scale)


def _has_kernel(device) -> bool:
    if not _ext.available():
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}[torch.device(device).type]
    return all(torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgen::{name}", key)
               for name in ("gated_pixelcnn_layer", "gated_pixelcnn_layer_backward"))


def _needs_kernel(device):
    if not _has_kernel(device):
        pytest.skip(f"no compiled gated_pixelcnn_layer kernel for {torch.device(device).type} "
                    f"(extension loaded: {_ext.available()})")


@pytest.mark.skipif(not _ext.available(), reason="compiled extension not loaded")
def test_kernels_registered():
    assert "cpu" in _dispatch.KERNEL_DEVICES["gated_pixelcnn_layer"]
    assert "cpu" in _dispatch.KERNEL_DEVICES["gated_pixelcnn_layer_backward"]


# --- equality with the reference: outputs and every gradient ------------------------------------


def _check(case: Case, dtype, device, t: dict | None = None, **options):
    """Forward and the gradient of every tensor argument vs the float64 reference."""
    if t is None:
        t = _tensors(case, dtype, device, **options)
    # Keep the caller's layouts (non-contiguous, channels-last) for the op's inputs.
    leaves = {name: None if x is None else x.detach().requires_grad_(True) for name, x in t.items()}
    v_out, h_out = _call(ops.gated_pixelcnn_layer, leaves, case.mask_type)
    ref_leaves = {name: None if x is None else _double(x).requires_grad_(True) for name, x in t.items()}
    v_ref, h_ref = _reference(ref_leaves, case.mask_type)
    close(v_out, v_ref.detach(), dtype)
    close(h_out, h_ref.detach(), dtype)

    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(v_out.shape, generator=g).to(dtype) for _ in range(2)]
    torch.autograd.backward([v_out, h_out], [x.to(device) for x in grads])
    torch.autograd.backward([v_ref, h_ref], [x.double() for x in grads])
    for name, leaf in leaves.items():
        if leaf is None:
            continue
        assert leaf.grad is not None, name
        assert leaf.grad.shape == leaf.shape, name
        expected = ref_leaves[name].grad
        if expected is None:  # the reference never reads it (h for mask A with n = 1)
            expected = torch.zeros(leaf.shape, dtype=torch.float64)
        try:
            close(leaf.grad, expected, dtype)
        except AssertionError as error:
            raise AssertionError(f"gradient of {name}: {error}") from None


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", SHAPES, ids=str)
def test_matches_reference(case, dtype, device):
    _check(case, dtype, device)


@pytest.mark.parametrize("missing", [(name,) for name in BIASES] + [BIASES], ids="-".join)
@pytest.mark.parametrize("case", [Case(2, 3, 3, 5, 6, 3, "B", cond=2), Case(2, 1, 3, 4, 5, 5, "A")], ids=str)
def test_without_biases(case, missing, device):
    _check(case, torch.float32, device, biases=[b for b in BIASES if b not in missing])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", [Case(2, 3, 3, 5, 6, 3, "B", cond=2), Case(1, 3, 4, 4, 5, 3, "A")], ids=str)
def test_pointwise_weights_in_conv_layout(case, dtype, device):
    """w_v2h and w_res as (C_out, C_in, 1, 1): same results, gradients in that shape."""
    t = _tensors(case, dtype, device, pointwise_4d=True)
    assert t["w_v2h"].dim() == 4 and t["w_res"].dim() == 4
    _check(case, dtype, device, t=t)
    flat = dict(t, w_v2h=t["w_v2h"][:, :, 0, 0], w_res=t["w_res"][:, :, 0, 0])
    for a, b in zip(_call(ops.gated_pixelcnn_layer, t, case.mask_type),
                    _call(ops.gated_pixelcnn_layer, flat, case.mask_type)):
        assert torch.equal(a, b)


def _layout(t, kind):
    """The same values as ``t`` in another memory layout (a non-contiguous view or channels-last)."""
    if kind == "channels_last" and t.dim() == 4:
        out = t.contiguous(memory_format=torch.channels_last)
    elif kind == "sliced" or t.dim() == 1:  # every other element of a twice-as-wide tensor
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
        wide[..., ::2] = t
        out = wide[..., ::2]
    else:  # all dimensions reversed in memory: nothing innermost
        dims = list(reversed(range(t.dim())))
        out = t.permute(*dims).contiguous().permute(*dims)
    assert torch.equal(out, t)
    return out


@pytest.mark.parametrize("kind", ["transposed", "sliced", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("case", [Case(2, 3, 3, 6, 7, 3, "B", cond=2), Case(2, 3, 4, 5, 6, 5, "A", cond=3)],
                         ids=str)
def test_non_contiguous_and_channels_last(case, kind, dtype, device):
    t = {name: _layout(x, kind) for name, x in _tensors(case, dtype, device).items()}
    if kind != "channels_last":
        assert not any(x.is_contiguous() for x in t.values())
    _check(case, dtype, device, t=t)


def test_results_are_deterministic(device):
    case = Case(3, 8, 8, 20, 12, 3, "B", cond=2)
    t = _tensors(case, torch.float32, device)
    runs = []
    for _ in range(2):
        leaves = {name: x.detach().clone().requires_grad_(True) for name, x in t.items()}
        outs = _call(ops.gated_pixelcnn_layer, leaves, case.mask_type)
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
        runs.append([*outs, *(x.grad for x in leaves.values())])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", [Case(0, 3, 3, 4, 5, 3, "B", cond=2), Case(2, 3, 3, 0, 5, 3, "B"),
                                  Case(2, 3, 3, 4, 0, 3, "A", cond=2)], ids=str)
def test_empty_shapes(case, device):
    """No images or no pixels: empty outputs, and every gradient zero (an empty sum)."""
    _needs_kernel(device)  # the reference's F.conv2d rejects an image smaller than the kernel
    t = {name: x.requires_grad_(True) for name, x in _tensors(case, torch.float32, device).items()}
    outs = _call(ops.gated_pixelcnn_layer, t, case.mask_type)
    assert all(o.shape == (case.n, case.c, case.h, case.w) for o in outs)
    torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
    for name, x in t.items():
        assert x.grad.shape == x.shape and torch.all(x.grad == 0), name


def test_no_input_channels_is_a_zero_image(device):
    """A mask-A layer with C_in = 0 reads nothing: the same as one channel of zeros."""
    _needs_kernel(device)  # the reference's F.conv2d rejects zero input channels
    case = Case(2, 1, 3, 4, 5, 3, "A", cond=2)
    t = _tensors(case, torch.float64, device)
    t.update(v=torch.zeros_like(t["v"]), h=torch.zeros_like(t["h"]))
    empty = dict(t, v=t["v"][:, :0], h=t["h"][:, :0], w_v=t["w_v"][:, :0], w_h=t["w_h"][:, :0])
    leaves = {name: x.detach().requires_grad_(True) for name, x in empty.items()}
    outs = _call(ops.gated_pixelcnn_layer, leaves, "A")
    ref_leaves = {name: x.detach().requires_grad_(True) for name, x in t.items()}
    expected = _reference(ref_leaves, "A")
    grads = [torch.randn_like(o) for o in outs]
    torch.autograd.backward(outs, grads)
    torch.autograd.backward(expected, grads)
    for a, e in zip(outs, expected):
        close(a, e.detach(), torch.float64)
    for name in ("b_v", "b_h", "w_v2h", "b_v2h", "w_res", "b_res", "cond", "w_cond_v", "w_cond_h"):
        close(leaves[name].grad, ref_leaves[name].grad, torch.float64)
    assert leaves["w_v"].grad.shape == (6, 0, 2, 3) and leaves["v"].grad.shape == (2, 0, 4, 5)


# --- mask A ignores the current pixel of the horizontal stack ----------------------------------


@pytest.mark.parametrize("case", [Case(2, 3, 4, 5, 6, 3, "A", cond=2), Case(1, 1, 3, 4, 4, 5, "A")], ids=str)
def test_mask_a_ignores_the_last_horizontal_tap(case, device):
    t = _tensors(case, torch.float32, device)
    noisy = dict(t, w_h=t["w_h"].clone())
    noisy["w_h"][..., -1] += 1e3 * torch.randn_like(noisy["w_h"][..., -1])
    for a, b in zip(_call(ops.gated_pixelcnn_layer, t, "A"), _call(ops.gated_pixelcnn_layer, noisy, "A")):
        assert torch.equal(a, b)
    w_h = t["w_h"].detach().requires_grad_(True)
    outs = _call(ops.gated_pixelcnn_layer, dict(t, w_h=w_h), "A")
    torch.autograd.backward(outs, [torch.randn_like(o) for o in outs])
    assert torch.all(w_h.grad[..., -1] == 0)  # exactly zero, not merely small
    assert torch.all(w_h.grad[..., :-1] != 0)


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("n", [3, 5])
def test_full_n_by_n_kernels_are_cut_to_their_causal_taps(n, mask_type, device):
    """The paper's n x n vertical and 1 x n horizontal kernels work as given: the taps below the
    centre row (vertical) and after the centre (horizontal) are masked, never read, zero gradient."""
    k = n // 2
    t = _tensors(Case(2, 4, 4, 5, 6, n, mask_type), torch.float64, device)
    w_v = torch.randn(8, 4, n, n, dtype=torch.float64, device=device)
    w_v[:, :, : k + 1] = t["w_v"]
    w_h = torch.randn(8, 4, 1, n, dtype=torch.float64, device=device)
    w_h[..., : k + 1] = t["w_h"]
    full = dict(t, w_v=w_v.requires_grad_(True), w_h=w_h.requires_grad_(True))
    for a, b in zip(_call(ops.gated_pixelcnn_layer, full, mask_type), _reference(t, mask_type)):
        close(a, b, torch.float64)
    outs = _call(ops.gated_pixelcnn_layer, full, mask_type)
    torch.autograd.backward(outs, [torch.randn_like(o) for o in outs])
    assert torch.all(w_v.grad[:, :, k + 1:] == 0) and torch.all(w_v.grad[:, :, : k + 1] != 0)
    assert torch.all(w_h.grad[..., k + 1:] == 0) and torch.all(w_h.grad[..., :k] != 0)


# --- the receptive field of a stack: no blind spot, nothing from the future ---------------------


def _stack(image, layers):
    v = h = image
    for mask_type, t in layers:
        v, h = _call(ops.gated_pixelcnn_layer, dict(t, v=v, h=h), mask_type)
    return h


@pytest.mark.parametrize("k, depth", [(3, 4), (5, 2), (1, 3)])
def test_stack_has_no_blind_spot_and_no_leak(k, depth, device):
    """A mask-A layer on the image, then mask-B layers: d h_out[:, :, i, j] / d image is zero at
    (i, j) and after it in raster order, and nonzero at every earlier pixel the stack reaches:
    with r = (n // 2) * depth, rows i - r - 1 .. i - 1 in columns j - r .. j + r (the whole
    rectangle above: no blind spot) and row i in columns j - r .. j - 1."""
    height, width, channels = 9, 10, 3
    image = torch.randn(1, 1, height, width, dtype=torch.float64, device=device)
    first = Case(1, 1, channels, height, width, k, "A", cond=2)
    later = Case(1, channels, channels, height, width, k, "B")
    layers = [("A", _tensors(first, torch.float64, device, seed=1))]
    layers += [("B", _tensors(later, torch.float64, device, seed=2 + i)) for i in range(depth - 1)]
    for _, t in layers:
        t.pop("v"), t.pop("h")
        t["w_v"], t["w_h"] = t["w_v"] + 0.1 * t["w_v"].sign(), t["w_h"] + 0.1 * t["w_h"].sign()
    image.requires_grad_(True)
    out = _stack(image, layers)
    r = (k // 2) * depth
    projection = torch.randn(channels, dtype=torch.float64, device=device)
    for i, j in itertools.product(range(height), range(width)):
        (grad,) = torch.autograd.grad(out[0, :, i, j] @ projection, image, retain_graph=True)
        reads = grad[0, 0].cpu() != 0
        expected = torch.zeros(height, width, dtype=torch.bool)
        expected[max(0, i - r - 1):i, max(0, j - r):j + r + 1] = True
        expected[i, max(0, j - r):j] = True
        assert not reads.flatten()[i * width + j:].any(), f"h_out at {(i, j)} reads its own or a later pixel"
        assert torch.equal(reads, expected), (
            f"receptive field of {(i, j)}:\n{reads.int()}\nexpected\n{expected.int()}")
        # Spelled out: the pixel above, and for n > 1 the one to the left and the up-right one,
        # the classic blind spot of a stack of masked convolutions.
        for di, dj in [(-1, 0)] + ([(0, -1), (-1, 1)] if r > 0 else []):
            if 0 <= i + di and 0 <= j + dj < width:
                assert reads[i + di, j + dj], (i, j, di, dj)


# --- gradcheck -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case, biases", [
    (Case(2, 2, 2, 4, 5, 3, "A", cond=2), BIASES),
    (Case(1, 2, 2, 4, 3, 5, "B"), ()),
    (Case(2, 3, 3, 3, 4, 3, "B", cond=1), ("b_v", "b_res")),
    (Case(1, 1, 1, 1, 1, 1, "A"), BIASES),
], ids=str)
def test_gradcheck_float64(case, biases, device):
    t = _tensors(case, torch.float64, device, biases=biases)
    names = [name for name, x in t.items() if x is not None]

    def f(*args):
        return _call(ops.gated_pixelcnn_layer, dict(t, **dict(zip(names, args))), case.mask_type)

    assert torch.autograd.gradcheck(f, tuple(t[name].detach().clone().requires_grad_(True) for name in names))
    # Double backward is not supported by the compiled op (its backward has no autograd formula).


# --- the raw ops: opcheck, saved pre-activations ------------------------------------------------


def _raw_args(t: dict, mask_type: str, save: bool) -> tuple:
    return (*(t[name] for name in NAMES), mask_type, *(t.get(name) for name in COND_NAMES), save)


def test_opcheck(device):
    _needs_kernel(device)
    case, first = Case(2, 3, 3, 5, 6, 3, "B", cond=2), Case(2, 1, 4, 4, 5, 5, "A")
    t, t_first = _tensors(case, torch.float32, device), _tensors(first, torch.float32, device)
    t_half = _tensors(case, torch.bfloat16, device, biases=("b_v",))

    def grads(tt):
        return {name: None if x is None else x.detach().clone().requires_grad_(True)
                for name, x in tt.items()}

    channels_last = dict(t, v=t["v"].contiguous(memory_format=torch.channels_last))
    samples = [
        (OPS.gated_pixelcnn_layer.default, _raw_args(grads(t), "B", True)),
        (OPS.gated_pixelcnn_layer.default, _raw_args(grads(t_first), "A", True)),
        (OPS.gated_pixelcnn_layer.default, _raw_args(t, "B", False)),
        (OPS.gated_pixelcnn_layer.default, _raw_args(channels_last, "B", False)),
        (OPS.gated_pixelcnn_layer.default, _raw_args(t_half, "B", True)),
    ]
    for tt, c in [(t, case), (t_first, first), (t_half, case)]:
        _, _, v_pre, h_pre = OPS.gated_pixelcnn_layer(*_raw_args(tt, c.mask_type, True))
        g_out = torch.randn(c.n, c.c, c.h, c.w, device=device).to(tt["v"].dtype)
        samples.append((OPS.gated_pixelcnn_layer_backward.default,
                        (g_out, g_out.flip(0), tt["v"], tt["h"], v_pre, h_pre, tt["w_v"], tt["w_h"],
                         tt["w_v2h"], tt["w_res"], c.mask_type, *(tt.get(name) for name in COND_NAMES))))
    for op, args in samples:
        opcheck(op, args)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_raw_op_pre_activations(dtype, device):
    """v_pre and h_pre in the accumulation dtype when saved, empty otherwise; same outputs."""
    _needs_kernel(device)
    case = Case(2, 3, 3, 5, 4, 3, "B", cond=2)
    t = _tensors(case, dtype, device)
    saved = OPS.gated_pixelcnn_layer(*_raw_args(t, "B", True))
    unsaved = OPS.gated_pixelcnn_layer(*_raw_args(t, "B", False))
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    for pre in saved[2:]:
        assert pre.shape == (2, 6, 5, 4) and pre.dtype == acc
    assert unsaved[2].shape == (0,) and unsaved[3].shape == (0,)
    assert torch.equal(saved[0], unsaved[0]) and torch.equal(saved[1], unsaved[1])
    # v_pre is the vertical stack's pre-activation: its gate is v_out.
    v_pre = saved[2].double()
    close(saved[0], torch.tanh(v_pre[:, :3]) * torch.sigmoid(v_pre[:, 3:]), dtype)


def test_raw_op_without_saved_pre_activation_cannot_backward(device):
    _needs_kernel(device)
    case = Case(1, 2, 2, 3, 4, 3, "B")
    t = {name: x.detach().requires_grad_(True) for name, x in _tensors(case, torch.float32, device).items()}
    v_out, h_out, v_pre, _ = OPS.gated_pixelcnn_layer(*_raw_args(t, "B", False))
    with pytest.raises(RuntimeError, match="save_pre_activation"):
        (v_out.sum() + h_out.sum()).backward()
    g = torch.zeros_like(v_out)
    with pytest.raises(RuntimeError, match="v_pre"):
        OPS.gated_pixelcnn_layer_backward(g, g, t["v"], t["h"], v_pre, v_pre, t["w_v"], t["w_h"], t["w_v2h"],
                                          t["w_res"], "B", None, None, None)


# --- torch.compile ------------------------------------------------------------------------------


def test_torch_compile_fullgraph(device):
    case = Case(2, 3, 3, 6, 5, 3, "B", cond=2)
    t = _tensors(case, torch.float32, device)

    def f(*args):
        v_out, h_out = _call(ops.gated_pixelcnn_layer, dict(zip(t, args)), case.mask_type)
        return torch.tanh(v_out) * 2.0 + h_out

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    leaves_c = [x.detach().clone().requires_grad_(True) for x in t.values()]
    leaves_e = [x.detach().clone().requires_grad_(True) for x in t.values()]
    y_c, y_e = compiled(*leaves_c), f(*leaves_e)
    torch.testing.assert_close(y_c, y_e)
    y_c.sum().backward()
    y_e.sum().backward()
    for a, e in zip(leaves_c, leaves_e):
        torch.testing.assert_close(a.grad, e.grad)


# --- bad input ----------------------------------------------------------------------------------

N_, C_, HH, WW = 2, 3, 5, 6
V = torch.zeros(N_, C_, HH, WW)
GOOD = dict(v=V, h=V, w_v=torch.zeros(6, 3, 2, 3), b_v=torch.zeros(6), w_h=torch.zeros(6, 3, 1, 2),
            b_h=torch.zeros(6), w_v2h=torch.zeros(6, 6), b_v2h=torch.zeros(6), w_res=torch.zeros(3, 3),
            b_res=torch.zeros(3))
COND = dict(cond=torch.zeros(2, 4), w_cond_v=torch.zeros(6, 4), w_cond_h=torch.zeros(6, 4))


def _wrapper(mask_type="B", **changes):
    kwargs = dict(GOOD, **changes)
    cond = {name: kwargs.pop(name) for name in COND_NAMES if name in kwargs}
    return lambda: ops.gated_pixelcnn_layer(*(kwargs[name] for name in NAMES), mask_type=mask_type, **cond)


def _conditioned(**changes):
    return _wrapper(**dict(COND, **changes))


META = torch.zeros(6, device="meta")
W_V_SHAPE = r"w_v must have shape \(2C, C_in, n // 2 \+ 1, n\)"
W_H_SHAPE = r"w_h must have shape \(2C, C_in, 1, n // 2 \+ 1\)"


@pytest.mark.parametrize(
    "call, error, match",
    [
        # v and h
        (_wrapper(v=[0.0]), TypeError, "v must be a torch.Tensor"),
        (_wrapper(v=V.long()), TypeError, "v must have a floating dtype"),
        (_wrapper(v=V[0]), ValueError, "v must have 4 dimensions"),
        (_wrapper(h=None), TypeError, "h must be a torch.Tensor"),
        (_wrapper(h=V[None]), ValueError, "h must have 4 dimensions"),
        (_wrapper(h=V.double()), TypeError, r"h must have the dtype of v \(torch.float32\)"),
        (_wrapper(h=V.to("meta")), ValueError, "h must be on the device of v"),
        (_wrapper(h=V[:, :, :4]), ValueError, "h must have the shape of v"),
        # mask_type
        (_wrapper(mask_type="C"), ValueError, 'mask_type must be "A" or "B"'),
        (_wrapper(mask_type="b"), ValueError, 'mask_type must be "A" or "B"'),
        (_wrapper(mask_type=None), ValueError, 'mask_type must be "A" or "B"'),
        # w_v
        (_wrapper(w_v=None), TypeError, "w_v must be a torch.Tensor"),
        (_wrapper(w_v=torch.zeros(6, 3, 3)), ValueError, "w_v must have 4 dimensions"),
        (_wrapper(w_v=torch.zeros(6, 3, 2, 3).int()), TypeError, "w_v must have a floating dtype"),
        (_wrapper(w_v=torch.zeros(6, 3, 2, 3).double()), TypeError, "w_v must have the dtype"),
        (_wrapper(w_v=torch.zeros(6, 3, 2, 3, device="meta")), ValueError, "w_v must be on the device"),
        (_wrapper(w_v=torch.zeros(5, 3, 2, 3)), ValueError, "w_v must have an even, nonzero 2C"),
        (_wrapper(w_v=torch.zeros(0, 3, 2, 3)), ValueError, "w_v must have an even, nonzero 2C"),
        (_wrapper(w_v=torch.zeros(6, 3, 2, 4)), ValueError, W_V_SHAPE),
        (_wrapper(w_v=torch.zeros(6, 3, 4, 3)), ValueError, W_V_SHAPE),
        (_wrapper(w_v=torch.zeros(6, 2, 2, 3)), ValueError, r"w_v must have shape \(2C, C_in"),
        # w_h
        (_wrapper(w_h=[0.0]), TypeError, "w_h must be a torch.Tensor"),
        (_wrapper(w_h=torch.zeros(6, 3, 2)), ValueError, "w_h must have 4 dimensions"),
        (_wrapper(w_h=torch.zeros(6, 3, 1, 2).half()), TypeError, "w_h must have the dtype"),
        (_wrapper(w_h=torch.zeros(6, 3, 1, 4)), ValueError, W_H_SHAPE),
        (_wrapper(w_h=torch.zeros(6, 3, 2, 2)), ValueError, W_H_SHAPE),
        (_wrapper(w_h=torch.zeros(4, 3, 1, 2)), ValueError, W_H_SHAPE),
        # w_v2h and w_res, 2-D or (C_out, C_in, 1, 1)
        (_wrapper(w_v2h=None), TypeError, "w_v2h must be a torch.Tensor"),
        (_wrapper(w_v2h=torch.zeros(6, 6, 3, 3)), ValueError, "w_v2h must have 2 dimensions"),
        (_wrapper(w_v2h=torch.zeros(6)), ValueError, "w_v2h must have 2 dimensions"),
        (_wrapper(w_v2h=torch.zeros(6, 5)), ValueError, r"w_v2h must have shape \(6, 6\)"),
        (_wrapper(w_v2h=torch.zeros(6, 5, 1, 1)), ValueError, r"w_v2h must have shape \(6, 6\)"),
        (_wrapper(w_v2h=torch.zeros(6, 6).double()), TypeError, "w_v2h must have the dtype"),
        (_wrapper(w_res=torch.zeros(3, 3).long()), TypeError, "w_res must have a floating dtype"),
        (_wrapper(w_res=torch.zeros(6, 6)), ValueError, r"w_res must have shape \(3, 3\)"),
        (_wrapper(w_res=torch.zeros(3, 3, 1)), ValueError, "w_res must have 2 dimensions"),
        (_wrapper(w_res=torch.zeros(3, 3, device="meta")), ValueError, "w_res must be on the device of v"),
        # biases
        (_wrapper(b_v=torch.zeros(3)), ValueError, r"b_v must have shape \(C_out,\) = \(6,\)"),
        (_wrapper(b_v=[0.0] * 6), TypeError, "b_v must be a torch.Tensor"),
        (_wrapper(b_h=torch.zeros(6, 1)), ValueError, r"b_h must have shape \(C_out,\) = \(6,\)"),
        (_wrapper(b_h=torch.zeros(6).half()), TypeError, "b_h must have the dtype"),
        (_wrapper(b_v2h=torch.zeros(7)), ValueError, r"b_v2h must have shape \(C_out,\) = \(6,\)"),
        (_wrapper(b_v2h=META), ValueError, "b_v2h must be on the device"),
        (_wrapper(b_res=torch.zeros(6)), ValueError, r"b_res must have shape \(C_out,\) = \(3,\)"),
        (_wrapper(b_res=torch.zeros(3).long()), TypeError, "b_res must have a floating dtype"),
        # mask B needs C_in = C
        (_wrapper(v=torch.zeros(2, 1, 5, 6), h=torch.zeros(2, 1, 5, 6), w_v=torch.zeros(6, 1, 2, 3),
                  w_h=torch.zeros(6, 1, 1, 2)), ValueError, 'mask_type "B" adds the horizontal residual'),
        # conditioning
        (_wrapper(cond=COND["cond"]), ValueError, "cond, w_cond_v and w_cond_h must be given together"),
        (_wrapper(cond=COND["cond"], w_cond_v=COND["w_cond_v"]), ValueError, "must be given together"),
        (_wrapper(w_cond_h=COND["w_cond_h"]), ValueError, "must be given together"),
        (_conditioned(cond=torch.zeros(2, 4, 1)), ValueError, "cond must have 2 dimensions"),
        (_conditioned(cond=torch.zeros(3, 4)), ValueError, "cond must have the batch size of v"),
        (_conditioned(cond=torch.zeros(2, 4).double()), TypeError, "cond must have the dtype"),
        (_conditioned(cond=[[0.0]]), TypeError, "cond must be a torch.Tensor"),
        (_conditioned(w_cond_v=torch.zeros(6, 3)), ValueError, r"w_cond_v must have shape \(2C, D\)"),
        (_conditioned(w_cond_v=torch.zeros(6, 4, 1)), ValueError, "w_cond_v must have 2 dimensions"),
        (_conditioned(w_cond_h=torch.zeros(3, 4)), ValueError, r"w_cond_h must have shape \(2C, D\)"),
        (_conditioned(w_cond_h=torch.zeros(6, 4).half()), TypeError, "w_cond_h must have the dtype"),
    ],
)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _raw(mask_type="B", save=True, **changes):
    t = dict(GOOD, **changes)
    return lambda: OPS.gated_pixelcnn_layer(*_raw_args(t, mask_type, save))


def _raw_backward(mask_type="B", **changes):
    pre = torch.zeros(N_, 6, HH, WW)
    t = dict(GOOD, grad_v_out=V, grad_h_out=V, v_pre=pre, h_pre=pre)
    t.update(changes)
    names = ("grad_v_out", "grad_h_out", "v", "h", "v_pre", "h_pre", "w_v", "w_h", "w_v2h", "w_res")
    return lambda: OPS.gated_pixelcnn_layer_backward(*(t[name] for name in names), mask_type,
                                                     *(t.get(name) for name in COND_NAMES))


@pytest.mark.parametrize(
    "call, match",
    [
        (_raw(v=V[0]), r"\bv\b"),
        (_raw(v=V.long(), h=V.long()), r"\bv\b"),
        (_raw(h=V[:, :2]), r"\bh\b"),
        (_raw(h=V.double()), r"\bh\b"),
        (_raw(mask_type="C"), "mask_type"),
        (_raw(mask_type=""), "mask_type"),
        (_raw(w_v=torch.zeros(5, 3, 2, 3)), "w_v"),
        (_raw(w_v=torch.zeros(6, 3, 2, 4)), "w_v"),
        (_raw(w_v=torch.zeros(6, 3, 3, 3)), "w_v"),
        (_raw(w_v=torch.zeros(6, 2, 2, 3)), "w_v"),
        (_raw(w_v=torch.zeros(6, 3, 6)), "w_v"),
        (_raw(w_v=torch.zeros(6, 3, 2, 3).double()), "w_v"),
        (_raw(w_h=torch.zeros(6, 3, 1, 3)), "w_h"),
        (_raw(w_h=torch.zeros(6, 3, 2)), "w_h"),
        (_raw(w_v2h=torch.zeros(6, 6, 1, 1)), "w_v2h"),
        (_raw(w_v2h=torch.zeros(6, 5)), "w_v2h"),
        (_raw(w_res=torch.zeros(6, 6)), "w_res"),
        (_raw(w_res=torch.zeros(3, 3).half()), "w_res"),
        (_raw(b_v=torch.zeros(5)), "b_v"),
        (_raw(b_h=torch.zeros(6).double()), "b_h"),
        (_raw(b_v2h=torch.zeros(6, 1)), "b_v2h"),
        (_raw(b_res=torch.zeros(6)), "b_res"),
        (_raw(v=torch.zeros(2, 1, 5, 6), h=torch.zeros(2, 1, 5, 6), w_v=torch.zeros(6, 1, 2, 3),
              w_h=torch.zeros(6, 1, 1, 2)), "mask_type"),
        (_raw(cond=COND["cond"]), "cond"),
        (_raw(**dict(COND, cond=torch.zeros(3, 4))), "cond"),
        (_raw(**dict(COND, cond=torch.zeros(2, 4, 1))), "cond"),
        (_raw(**dict(COND, w_cond_v=torch.zeros(6, 5))), "w_cond_v"),
        (_raw(**dict(COND, w_cond_h=torch.zeros(6, 4).double())), "w_cond_h"),
        (_raw_backward(grad_v_out=V[:, :, :4]), "grad_v_out"),
        (_raw_backward(grad_h_out=V.long()), "grad_h_out"),
        (_raw_backward(v_pre=torch.zeros(0)), "v_pre is empty"),
        (_raw_backward(h_pre=torch.zeros(N_, 3, HH, WW)), "h_pre"),
        (_raw_backward(h_pre=torch.zeros(N_, 6, HH, WW).double()), "h_pre"),
        (_raw_backward(mask_type="A", w_h=torch.zeros(6, 3, 1, 1)), "w_h"),
        (_raw_backward(cond=COND["cond"], w_cond_v=COND["w_cond_v"]), "cond"),
    ],
)
def test_direct_op_calls_are_checked_too(call, match):
    _needs_kernel("cpu")
    with pytest.raises(RuntimeError, match=match):
        call()


@pytest.mark.parametrize("used", [0, 1])
def test_gradients_when_only_one_output_is_used(used, device):
    """Autograd gives no gradient for an unused output (v_out or h_out; the layer makes no zero
    tensors up front): the backward supplies the zeros and matches the reference."""
    _needs_kernel(device)
    case = Case(2, 4, 4, 5, 6, 3, "B", cond=2)
    grads = []
    for run in (lambda t: _call(ops.gated_pixelcnn_layer, t, "B"), lambda t: _reference(t, "B")):
        t = {name: value.detach().clone().requires_grad_(True) if value is not None else None
             for name, value in _tensors(case, torch.float64, device).items()}
        out = run(t)[used]
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out)).sum().backward()
        # the reference leaves the unused output's own weights (w_res, b_res) without a gradient: zero
        grads.append({name: torch.zeros_like(v) if v.grad is None else v.grad for name, v in t.items()
                      if v is not None})
    for name, got in grads[0].items():
        torch.testing.assert_close(got, grads[1][name], msg=name)
