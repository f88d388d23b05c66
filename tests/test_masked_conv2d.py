"""masked_conv2d (PixelCNN masked 2-D convolution): kernels vs the reference, gradients, the
causal receptive field, opcheck, torch.compile and bad input."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from conv_cases import DTYPES, assert_compiled_op_matches_eager, close
from torch.library import opcheck

from fastgen import _ext, ops, reference
from fastgen.ops import _dispatch

OPS = torch.ops.fastgen


class Case(NamedTuple):
    n: int
    c_in: int
    c_out: int
    h: int
    w: int
    kh: int
    kw: int
    dilation: int = 1
    groups: int = 1
    color_channels: int = 1
    mask_type: str = "A"

    def __str__(self) -> str:
        return (f"{self.n}x{self.c_in}x{self.h}x{self.w}->{self.c_out} k{self.kh}x{self.kw} d{self.dilation} "
                f"g{self.groups} c{self.color_channels} {self.mask_type}")

    @property
    def options(self) -> dict:
        return dict(mask_type=self.mask_type, dilation=self.dilation, groups=self.groups,
                    color_channels=self.color_channels)

    @property
    def args(self) -> tuple:
        """The trailing positional arguments of the raw ops and the reference."""
        return (self.mask_type, self.dilation, self.groups, self.color_channels)


# Kernels 1x1, 3x3, 5x5, 7x7, 3x5, 5x3; dilations 1, 2, 3 (up to past the image); groups 1 and
# 2; RGB channel blocks; channels 1 and odd; H = 1 and W = 1; batch 1; one 28x28 (MNIST) image.
SHAPES = [
    Case(2, 3, 5, 5, 6, 3, 3, mask_type="A"),
    Case(1, 1, 1, 1, 1, 1, 1, mask_type="B"),
    Case(1, 1, 3, 1, 1, 1, 1, mask_type="A"),  # 1x1 mask A: no tap at all, y = bias
    Case(2, 4, 6, 9, 7, 5, 5, dilation=2, groups=2, mask_type="B"),
    Case(1, 3, 6, 7, 9, 7, 7, color_channels=3, mask_type="A"),
    Case(2, 6, 3, 6, 5, 3, 5, dilation=3, color_channels=3, mask_type="B"),
    Case(3, 5, 7, 1, 8, 3, 3, mask_type="B"),  # H = 1
    Case(2, 2, 4, 7, 1, 5, 3, dilation=2, groups=2, mask_type="A"),  # W = 1
    Case(2, 1, 8, 28, 28, 7, 7, mask_type="A"),  # PixelCNN's first layer on MNIST
    Case(2, 8, 8, 5, 6, 1, 1, groups=2, mask_type="B"),
    Case(1, 3, 3, 6, 6, 3, 3, color_channels=3, mask_type="B"),
    Case(2, 4, 4, 5, 5, 5, 5, dilation=3, mask_type="B"),  # taps beyond the image
    Case(1, 7, 5, 9, 7, 3, 5, dilation=1, mask_type="A"),
    Case(1, 64, 6, 30, 64, 3, 3, mask_type="B"),  # the CPU kernels' tiles of rows: 3 per image
]


def _inputs(case: Case, dtype, device="cpu", seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    fan_in = max(1, case.c_in // case.groups * case.kh * case.kw)
    x = torch.randn(case.n, case.c_in, case.h, case.w, generator=g).to(dtype=dtype, device=device)
    w = (torch.randn(case.c_out, case.c_in // case.groups, case.kh, case.kw, generator=g) / fan_in ** 0.5
         ).to(dtype=dtype, device=device)
    b = torch.randn(case.c_out, generator=g).to(dtype=dtype, device=device) if bias else None
    return x, w, b


def _double(t):
    return None if t is None else t.detach().double().cpu()


def _expected(x, w, b, case: Case):
    return reference.masked_conv2d(_double(x), _double(w), _double(b), *case.args)


def _mask(case: Case):
    return reference.masked_conv2d_mask((case.c_out, case.c_in // case.groups, case.kh, case.kw),
                                        case.mask_type, case.color_channels, case.groups)


def _has_kernel(device) -> bool:
    """Whether torch.ops.fastgen.masked_conv2d(_backward) can run on ``device`` at all."""
    if not _ext.available():
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}[torch.device(device).type]
    return all(torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgen::{name}", key)
               for name in ("masked_conv2d", "masked_conv2d_backward"))


def _needs_kernel(device):
    if not _has_kernel(device):
        pytest.skip(f"no compiled masked_conv2d kernel for {torch.device(device).type} "
                    f"(extension loaded: {_ext.available()})")


@pytest.mark.skipif(not _ext.available(), reason="compiled extension not loaded")
def test_kernels_registered():
    assert "cpu" in _dispatch.KERNEL_DEVICES["masked_conv2d"]
    assert "cpu" in _dispatch.KERNEL_DEVICES["masked_conv2d_backward"]


# --- equality with the reference ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", SHAPES, ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_reference(case, dtype, bias, device):
    x, w, b = _inputs(case, dtype, device, bias=bias)
    y = ops.masked_conv2d(x, w, b, **case.options)
    close(y, _expected(x, w, b, case), dtype)


def _check_backward(case, dtype, device, bias=True, x=None, w=None, b=None):
    if x is None:
        x, w, b = _inputs(case, dtype, device, bias=bias)
    # Keep the caller's layout (non-contiguous, channels-last) for the op's inputs.
    args = [t if t is None else t.detach().requires_grad_(True) for t in (x, w, b)]
    y = ops.masked_conv2d(*args, **case.options)
    grad_y = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(dtype=dtype, device=device)
    y.backward(grad_y)
    ref_leaves = [None if t is None else _double(t).requires_grad_(True) for t in (x, w, b)]
    y_ref = reference.masked_conv2d(*ref_leaves, *case.args)
    close(y, y_ref.detach(), dtype)
    y_ref.backward(grad_y.double().cpu())
    for actual, expected in zip(args, ref_leaves):
        if actual is not None:
            assert actual.grad is not None
            close(actual.grad, expected.grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", SHAPES, ids=str)
def test_backward_matches_reference(case, dtype, device):
    _check_backward(case, dtype, device)


@pytest.mark.parametrize("case", [SHAPES[0], SHAPES[3], SHAPES[5]], ids=str)
def test_backward_without_bias(case, device):
    _check_backward(case, torch.float32, device, bias=False)


def _layout(t, kind):
    """The same values as ``t`` in another memory layout (a non-contiguous view or channels-last)."""
    if kind == "transposed":  # (N, C, H, W) as a permuted (N, W, H, C) tensor: nothing innermost
        out = t.permute(0, 3, 2, 1).contiguous().permute(0, 3, 2, 1)
    elif kind == "sliced":  # every other element of a twice-as-wide tensor
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
        wide[..., ::2] = t
        out = wide[..., ::2]
    else:
        out = t.contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, t)
    return out


@pytest.mark.parametrize("kind", ["transposed", "sliced", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", [Case(2, 3, 6, 7, 9, 3, 5, color_channels=3, mask_type="B"),
                                  Case(1, 4, 6, 6, 5, 5, 5, dilation=2, groups=2, mask_type="A")], ids=str)
def test_non_contiguous_and_channels_last(case, kind, dtype, device):
    x, w, b = _inputs(case, dtype, device)
    x, w = _layout(x, kind), _layout(w, kind)
    b = torch.stack([b, b], dim=1)[:, 0]  # strided bias
    if kind != "channels_last":
        assert not x.is_contiguous() and not w.is_contiguous()
    assert not b.is_contiguous()
    _check_backward(case, dtype, device, x=x, w=w, b=b)


@pytest.mark.parametrize("case", [Case(0, 3, 4, 5, 5, 3, 3), Case(2, 3, 4, 0, 5, 3, 3, mask_type="B"),
                                  Case(2, 0, 3, 4, 4, 3, 3), Case(2, 3, 0, 4, 4, 3, 3, mask_type="B")],
                         ids=str)
def test_empty_shapes(case, device):
    x, w, b = _inputs(case, torch.float32, device)
    xs, ws, bs = (v.detach().clone().requires_grad_(True) for v in (x, w, b))
    y = ops.masked_conv2d(xs, ws, bs, **case.options)
    close(y, _expected(x, w, b, case), torch.float32)
    y.sum().backward()
    assert xs.grad.shape == x.shape and ws.grad.shape == w.shape and bs.grad.shape == b.shape
    assert torch.all(xs.grad == 0) and torch.all(ws.grad == 0)


# --- the mask ----------------------------------------------------------------------------------

MASK_CASES = [
    Case(2, 3, 4, 5, 6, 3, 3, mask_type="A"),
    Case(2, 3, 4, 5, 6, 3, 3, mask_type="B"),
    Case(1, 3, 6, 6, 5, 7, 7, color_channels=3, mask_type="A"),
    Case(1, 6, 3, 6, 5, 3, 5, dilation=2, color_channels=3, mask_type="B"),
    Case(2, 4, 6, 5, 5, 5, 3, groups=2, mask_type="A"),
]


@pytest.mark.parametrize("case", MASK_CASES, ids=str)
def test_masked_weight_entries_get_zero_gradient(case, device):
    x, w, b = _inputs(case, torch.float32, device)
    w = w.requires_grad_(True)
    y = ops.masked_conv2d(x, w, b, **case.options)
    y.backward(torch.randn_like(y))
    mask = _mask(case).to(device)
    assert torch.all(w.grad[mask == 0] == 0)  # exactly zero, not merely small
    assert torch.all(w.grad[mask == 1] != 0)


@pytest.mark.parametrize("case", MASK_CASES, ids=str)
def test_masked_weight_entries_get_zero_gradient_raw_op(case, device):
    _needs_kernel(device)
    x, w, b = _inputs(case, torch.float32, device)
    mask = _mask(case).to(device)
    grad_y = torch.randn(case.n, case.c_out, case.h, case.w, device=device)
    _, grad_w, _ = OPS.masked_conv2d_backward(grad_y, x, w, *case.args, [False, True, False])
    assert grad_w.shape == w.shape
    assert torch.all(grad_w[mask == 0] == 0) and torch.all(grad_w[mask == 1] != 0)
    wg = w.detach().clone().requires_grad_(True)
    OPS.masked_conv2d(x, wg, b, *case.args).backward(grad_y)
    assert torch.all(wg.grad[mask == 0] == 0)
    torch.testing.assert_close(wg.grad, grad_w)


@pytest.mark.parametrize("case", MASK_CASES, ids=str)
def test_masked_weight_entries_are_ignored(case, device):
    x, w, b = _inputs(case, torch.float32, device)
    mask = _mask(case).to(device)
    w_noisy = w + 1e3 * (1 - mask) * torch.randn_like(w)
    assert torch.equal(ops.masked_conv2d(x, w, b, **case.options),
                       ops.masked_conv2d(x, w_noisy, b, **case.options))


# --- the receptive field is exactly causal -----------------------------------------------------


def _kept_offsets(case: Case) -> set[tuple[int, int]]:
    """(dy, dx) offsets of the input pixels read by the kept non-centre taps."""
    cy, cx = case.kh // 2, case.kw // 2
    return {((ky - cy) * case.dilation, (kx - cx) * case.dilation)
            for ky in range(case.kh) for kx in range(case.kw) if ky < cy or (ky == cy and kx < cx)}


def _dependence(case: Case, device):
    """|d y[0, o, p] / d x[0, i, q]| summed over the channels of each colour block:
    (blocks_out, H*W, blocks_in, H*W), pixels in raster order."""
    x, w, _ = _inputs(case, torch.float64, device)
    w = w + 0.1 * torch.sign(w)  # keep every weight well away from zero
    jac = torch.autograd.functional.jacobian(lambda v: ops.masked_conv2d(v, w, **case.options), x)
    c = case.color_channels
    hw = case.h * case.w
    jac = jac.abs().reshape(c, case.c_out // c, hw, c, case.c_in // c, hw)
    return jac.sum(dim=(1, 4)).cpu()


@pytest.mark.parametrize("case", [
    Case(1, 2, 3, 6, 7, 3, 3, mask_type="A"),
    Case(1, 2, 3, 6, 7, 3, 3, mask_type="B"),
    Case(1, 2, 3, 6, 7, 1, 1, mask_type="A"),
    Case(1, 2, 3, 6, 7, 1, 1, mask_type="B"),
    Case(1, 2, 3, 6, 7, 5, 5, dilation=2, mask_type="A"),
    Case(1, 2, 2, 6, 7, 3, 5, mask_type="B"),
    Case(1, 1, 2, 6, 7, 7, 7, mask_type="A"),
    Case(1, 2, 4, 6, 7, 5, 3, dilation=3, groups=2, mask_type="B"),
    Case(1, 3, 3, 5, 6, 3, 3, color_channels=3, mask_type="A"),
    Case(1, 3, 6, 5, 6, 3, 3, color_channels=3, mask_type="B"),
    Case(1, 6, 3, 6, 7, 5, 5, dilation=2, color_channels=3, mask_type="A"),
], ids=str)
def test_receptive_field_is_exactly_causal(case, device):
    dep = _dependence(case, device)
    offsets = _kept_offsets(case)
    blocks, hw = case.color_channels, case.h * case.w

    def centre_kept(g, k):  # does output block g see input block k at its own pixel?
        if blocks == 1:
            return case.mask_type == "B"
        return k < g if case.mask_type == "A" else k <= g

    allowed = torch.zeros(dep.shape, dtype=torch.bool)
    for p, q in itertools.product(range(hw), repeat=2):
        (py, px), (qy, qx) = divmod(p, case.w), divmod(q, case.w)
        for g, k in itertools.product(range(blocks), repeat=2):
            if p == q:
                allowed[g, p, k, q] = centre_kept(g, k)
            else:  # another pixel: read (by every block) when a kept tap lands on it
                allowed[g, p, k, q] = (qy - py, qx - px) in offsets
    bad = ((dep != 0) != allowed).nonzero().tolist()
    assert not bad, f"(out block, out pixel, in block, in pixel) with the wrong dependence: {bad[:5]}"
    for g, k in itertools.product(range(blocks), repeat=2):
        # Nothing from later pixels in raster order; with the centre dropped, not the pixel itself.
        assert torch.all(dep[g, :, k, :].triu(1 if centre_kept(g, k) else 0) == 0)
    # Every output pixel with an allowed input reads at least one of them.
    reads = allowed.flatten(2).any(dim=2)
    assert torch.all(dep.flatten(2).sum(dim=2)[reads] > 0)
    assert reads[:, 1:].any() or not offsets


# --- gradcheck ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [
    Case(2, 3, 3, 4, 5, 3, 3, mask_type="A"),
    Case(1, 3, 3, 4, 4, 3, 5, dilation=2, color_channels=3, mask_type="B"),
    Case(2, 4, 2, 5, 3, 3, 3, groups=2, mask_type="B"),
    Case(1, 1, 1, 1, 1, 1, 1, mask_type="B"),
], ids=str)
def test_gradcheck_float64(case, device):
    x, w, b = _inputs(case, torch.float64, device)
    leaves = tuple(t.detach().clone().requires_grad_(True) for t in (x, w, b))
    assert torch.autograd.gradcheck(lambda *a: ops.masked_conv2d(*a, **case.options), leaves)
    assert torch.autograd.gradcheck(lambda x_, w_: ops.masked_conv2d(x_, w_, None, **case.options),
                                    leaves[:2])
    # Double backward is not supported by the compiled op (masked_conv2d_backward has no
    # autograd formula), so gradgradcheck is not run.


# --- the channels-last path ---------------------------------------------------------------------

# Shapes where a channels-last input is not also contiguous (more than one channel, more than one
# pixel): the kernels run channels-last and return y and grad_x channels-last. C_in < C_out takes
# the scatter form of grad_x, C_in >= C_out the gather form.
CHANNELS_LAST_SHAPES = [case for case in SHAPES if case.c_in > 1 and case.h * case.w > 1] + [
    Case(2, 2, 16, 8, 8, 7, 7, mask_type="A"),  # scatter form, many taps
    Case(2, 12, 6, 6, 7, 3, 3, groups=3, mask_type="B"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CHANNELS_LAST_SHAPES, ids=str)
def test_channels_last_forward_and_backward(case, dtype, device):
    x, w, b = _inputs(case, dtype, device)
    x = x.contiguous(memory_format=torch.channels_last)
    assert not x.is_contiguous()
    _check_backward(case, dtype, device, x=x, w=w, b=b)
    xs = x.detach().requires_grad_(True)
    y = ops.masked_conv2d(xs, w, b, **case.options)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    y.backward(torch.randn_like(y))
    assert xs.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("case", [Case(1, 1, 4, 5, 5, 3, 3), Case(2, 3, 4, 1, 1, 3, 3, mask_type="B")], ids=str)
def test_ambiguous_layouts_stay_contiguous(case, device):
    """A channels-last tensor that is also contiguous (one channel or one pixel) gives a contiguous y."""
    x, w, b = _inputs(case, torch.float32, device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = ops.masked_conv2d(x, w, b, **case.options)
    assert y.is_contiguous()
    close(y, _expected(x, w, b, case), torch.float32)


@pytest.mark.parametrize("case", [Case(2, 3, 3, 4, 5, 3, 3, mask_type="A"),
                                  Case(1, 3, 6, 4, 4, 3, 5, dilation=2, color_channels=3, mask_type="B"),
                                  Case(2, 4, 2, 5, 3, 3, 3, groups=2, mask_type="B")], ids=str)
def test_channels_last_gradcheck_float64(case, device):
    x, w, b = _inputs(case, torch.float64, device)
    leaves = (x.contiguous(memory_format=torch.channels_last).detach().requires_grad_(True),
              w.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True))
    assert torch.autograd.gradcheck(lambda *a: ops.masked_conv2d(*a, **case.options), leaves)


@pytest.mark.parametrize("case", MASK_CASES, ids=str)
def test_channels_last_masked_weight_entries_get_zero_gradient(case, device):
    x, w, b = _inputs(case, torch.float32, device)
    ws = w.detach().requires_grad_(True)
    ops.masked_conv2d(x.contiguous(memory_format=torch.channels_last), ws, b, **case.options).square().sum().backward()
    mask = _mask(case).to(device)
    assert torch.all(ws.grad[mask == 0] == 0)  # exactly zero, not merely small
    assert torch.all(ws.grad[mask == 1] != 0)


def test_channels_last_opcheck_and_compile(device):
    _needs_kernel(device)
    case = Case(2, 6, 3, 5, 6, 3, 3, color_channels=3, mask_type="B")
    x, w, b = _inputs(case, torch.float32, device)
    x = x.contiguous(memory_format=torch.channels_last)
    grad_y = torch.randn(2, 3, 5, 6, device=device).contiguous(memory_format=torch.channels_last)
    opcheck(OPS.masked_conv2d.default, (x.detach().requires_grad_(True), w.requires_grad_(True), b, *case.args))
    opcheck(OPS.masked_conv2d_backward.default, (grad_y, x, w.detach(), *case.args, [True, True, False]))
    compiled = torch.compile(lambda *a: torch.relu(ops.masked_conv2d(*a, **case.options)), fullgraph=True)
    torch.testing.assert_close(compiled(x, w.detach(), b), torch.relu(ops.masked_conv2d(x, w.detach(), b, **case.options)))


# --- opcheck and torch.compile -----------------------------------------------------------------


def test_opcheck(device):
    _needs_kernel(device)
    case = Case(2, 3, 6, 5, 6, 3, 3, color_channels=3, mask_type="B")
    grouped = Case(2, 4, 6, 5, 6, 5, 3, dilation=2, groups=2, mask_type="A")
    x, w, b = _inputs(case, torch.float32, device)
    xg, wg, bg = (t.detach().clone().requires_grad_(True) for t in (x, w, b))
    x2, w2, b2 = _inputs(grouped, torch.float32, device)
    grad_y = torch.randn(2, 6, 5, 6, device=device)
    samples = [
        (OPS.masked_conv2d.default, (xg, wg, bg, *case.args)),
        (OPS.masked_conv2d.default, (xg, wg, None, "A", 1, 1, 1)),
        (OPS.masked_conv2d.default, (x.contiguous(memory_format=torch.channels_last), w, b, *case.args)),
        (OPS.masked_conv2d.default,
         (x2.detach().requires_grad_(True), w2.detach().requires_grad_(True), b2, *grouped.args)),
        (OPS.masked_conv2d_backward.default, (grad_y, x, w, *case.args, [True, True, True])),
        (OPS.masked_conv2d_backward.default, (grad_y, x, w, "A", 3, 1, 1, [True, False, False])),
        (OPS.masked_conv2d_backward.default, (grad_y, x2, w2, *grouped.args, [False, True, True])),
    ]
    for op, args in samples:
        opcheck(op, args)


def test_torch_compile_fullgraph(device):
    case = Case(2, 3, 6, 7, 8, 3, 3, color_channels=3, mask_type="B")
    x, w, b = _inputs(case, torch.float32, device)

    def f(x_, w_, b_):
        return torch.tanh(ops.masked_conv2d(x_, w_, b_, **case.options)) * 2.0

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert_compiled_op_matches_eager(compiled, f, (x, w, b))


def test_torch_compile_inductor(device):
    case = Case(2, 4, 4, 6, 5, 5, 5, dilation=2, groups=2, mask_type="A")
    x, w, b = _inputs(case, torch.float32, device)
    compiled = torch.compile(lambda *a: ops.masked_conv2d(*a, **case.options), fullgraph=True)
    torch.testing.assert_close(compiled(x, w, b), ops.masked_conv2d(x, w, b, **case.options))


# --- a property test over random small shapes and options --------------------------------------


@st.composite
def _cases(draw):
    color_channels = draw(st.sampled_from([1, 1, 3]))
    groups = 1 if color_channels > 1 else draw(st.sampled_from([1, 1, 2, 3]))
    unit = color_channels * groups
    return Case(
        n=draw(st.integers(1, 2)),
        c_in=unit * draw(st.integers(1, 3)),
        c_out=unit * draw(st.integers(1, 3)),
        h=draw(st.integers(1, 7)),
        w=draw(st.integers(1, 7)),
        kh=draw(st.sampled_from([1, 3, 5, 7])),
        kw=draw(st.sampled_from([1, 3, 5, 7])),
        dilation=draw(st.integers(1, 3)),
        groups=groups,
        color_channels=color_channels,
        mask_type=draw(st.sampled_from(["A", "B"])),
    )


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_cases(), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_property_matches_reference_float64(case, bias, seed, device):
    x, w, b = _inputs(case, torch.float64, device, seed=seed, bias=bias)
    leaves = [None if t is None else t.detach().clone().requires_grad_(True) for t in (x, w, b)]
    y = ops.masked_conv2d(*leaves, **case.options)
    ref_leaves = [None if t is None else _double(t).requires_grad_(True) for t in (x, w, b)]
    y_ref = reference.masked_conv2d(*ref_leaves, *case.args)
    close(y, y_ref.detach(), torch.float64)
    grad_y = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    y.backward(grad_y.to(device))
    y_ref.backward(grad_y)
    for actual, expected in zip(leaves, ref_leaves):
        if actual is not None:
            close(actual.grad, expected.grad, torch.float64)


# --- bad input ---------------------------------------------------------------------------------

X = torch.zeros(2, 3, 5, 6)
W = torch.zeros(6, 3, 3, 3)


@pytest.mark.parametrize(
    "call, error, match",
    [
        # x and weight: type, dtype, rank, device
        (lambda: ops.masked_conv2d([1.0], W), TypeError, "x must be a torch.Tensor"),
        (lambda: ops.masked_conv2d(X.long(), W.long()), TypeError, "x must have a floating dtype"),
        (lambda: ops.masked_conv2d(X[0], W), ValueError, "x must have 4 dimensions"),
        (lambda: ops.masked_conv2d(X[None], W), ValueError, "x must have 4 dimensions"),
        (lambda: ops.masked_conv2d(X, None), TypeError, "weight must be a torch.Tensor"),
        (lambda: ops.masked_conv2d(X, W.int()), TypeError, "weight must have a floating dtype"),
        (lambda: ops.masked_conv2d(X, W[0]), ValueError, "weight must have 4 dimensions"),
        (lambda: ops.masked_conv2d(X, W.double()), TypeError, "weight must have the dtype of x"),
        (lambda: ops.masked_conv2d(X, W.to("meta")), ValueError, "weight must be on the device of x"),
        # mask_type
        (lambda: ops.masked_conv2d(X, W, mask_type="C"), ValueError, 'mask_type must be "A" or "B"'),
        (lambda: ops.masked_conv2d(X, W, mask_type="a"), ValueError, 'mask_type must be "A" or "B"'),
        (lambda: ops.masked_conv2d(X, W, mask_type=None), ValueError, 'mask_type must be "A" or "B"'),
        # dilation, groups, color_channels
        (lambda: ops.masked_conv2d(X, W, dilation=0), ValueError, "dilation must be >= 1"),
        (lambda: ops.masked_conv2d(X, W, dilation=-1), ValueError, "dilation must be >= 1"),
        (lambda: ops.masked_conv2d(X, W, dilation=1.0), TypeError, "dilation must be an int"),
        (lambda: ops.masked_conv2d(X, W, dilation=True), TypeError, "dilation must be an int"),
        # a tap offset (KH // 2) * dilation past int64 would wrap and read the wrong taps
        (lambda: ops.masked_conv2d(X, W, dilation=2**62), ValueError, "dilation must keep"),
        (lambda: ops.masked_conv2d(X, W, groups=0), ValueError, "groups must be >= 1"),
        (lambda: ops.masked_conv2d(X, W, groups=2.0), TypeError, "groups must be an int"),
        (lambda: ops.masked_conv2d(X, W, color_channels=0), ValueError, "color_channels must be >= 1"),
        (lambda: ops.masked_conv2d(X, W, color_channels="3"), TypeError, "color_channels must be an int"),
        # kernel sizes and channel counts
        (lambda: ops.masked_conv2d(X, torch.zeros(6, 3, 2, 3)), ValueError, "weight must have odd kernel"),
        (lambda: ops.masked_conv2d(X, torch.zeros(6, 3, 3, 4)), ValueError, "weight must have odd kernel"),
        (lambda: ops.masked_conv2d(X, torch.zeros(6, 3, 0, 3)), ValueError, "weight must have odd kernel"),
        (lambda: ops.masked_conv2d(X, torch.zeros(6, 2, 3, 3)), ValueError,
         r"weight must have C_in // groups = 3 input channels"),
        (lambda: ops.masked_conv2d(X, torch.zeros(6, 1, 3, 3), groups=2), ValueError,
         "groups = 2 must divide C_in = 3"),
        (lambda: ops.masked_conv2d(torch.zeros(2, 4, 5, 6), torch.zeros(5, 2, 3, 3), groups=2), ValueError,
         "groups = 2 must divide C_in = 4 and C_out = 5"),
        (lambda: ops.masked_conv2d(torch.zeros(2, 6, 5, 6), torch.zeros(6, 3, 3, 3), groups=2,
                                   color_channels=3),
         ValueError, "color_channels = 3 needs groups = 1"),
        (lambda: ops.masked_conv2d(torch.zeros(2, 4, 5, 6), torch.zeros(6, 4, 3, 3), color_channels=3),
         ValueError, "color_channels = 3 must divide C_in = 4"),
        (lambda: ops.masked_conv2d(X, torch.zeros(4, 3, 3, 3), color_channels=3), ValueError,
         "color_channels = 3 must divide C_in = 3 and C_out = 4"),
        # bias
        (lambda: ops.masked_conv2d(X, W, torch.zeros(3)), ValueError, r"bias must have shape \(C_out,\)"),
        (lambda: ops.masked_conv2d(X, W, torch.zeros(6, 1)), ValueError, r"bias must have shape \(C_out,\)"),
        (lambda: ops.masked_conv2d(X, W, torch.zeros(6).half()), TypeError, "bias must have the dtype of x"),
        (lambda: ops.masked_conv2d(X, W, torch.zeros(6).long()), TypeError, "bias must have a floating"),
        (lambda: ops.masked_conv2d(X, W, [0.0] * 6), TypeError, "bias must be a torch.Tensor"),
        (lambda: ops.masked_conv2d(X, W, torch.zeros(6, device="meta")), ValueError,
         "bias must be on the device of x"),
    ],
)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


GRAD_Y = torch.zeros(2, 6, 5, 6)
ALL = [True, True, True]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: OPS.masked_conv2d(X, W, None, "C", 1, 1, 1), "mask_type"),
        (lambda: OPS.masked_conv2d(X, W, None, "", 1, 1, 1), "mask_type"),
        (lambda: OPS.masked_conv2d(X, W, None, "A", 0, 1, 1), "dilation"),
        (lambda: OPS.masked_conv2d(X, W, None, "A", 2**62, 1, 1), "dilation must keep"),
        (lambda: OPS.masked_conv2d(X, W, None, "A", 1, 0, 1), "groups"),
        (lambda: OPS.masked_conv2d(X, W, None, "A", 1, 2, 1), "groups"),
        (lambda: OPS.masked_conv2d(X, W, None, "A", 1, 1, 0), "color_channels"),
        (lambda: OPS.masked_conv2d(X, torch.zeros(6, 3, 2, 2), None, "A", 1, 1, 1), "weight|kernel"),
        (lambda: OPS.masked_conv2d(X, torch.zeros(6, 3, 3, 4), None, "B", 1, 1, 1), "weight|kernel"),
        (lambda: OPS.masked_conv2d(X[0], W, None, "A", 1, 1, 1), r"\bx\b"),
        (lambda: OPS.masked_conv2d(X, W[0], None, "A", 1, 1, 1), "weight"),
        (lambda: OPS.masked_conv2d(X, torch.zeros(6, 2, 3, 3), None, "A", 1, 1, 1), "weight"),
        (lambda: OPS.masked_conv2d(X.long(), W.long(), None, "A", 1, 1, 1), r"\bx\b"),
        (lambda: OPS.masked_conv2d(X, W.double(), None, "A", 1, 1, 1), "weight"),
        (lambda: OPS.masked_conv2d(X, W, torch.zeros(2), "A", 1, 1, 1), "bias"),
        (lambda: OPS.masked_conv2d(X, W, torch.zeros(6).double(), "A", 1, 1, 1), "bias"),
        (lambda: OPS.masked_conv2d(X, torch.zeros(4, 3, 3, 3), None, "A", 1, 1, 3), "color_channels"),
        (lambda: OPS.masked_conv2d(torch.zeros(2, 6, 5, 6), W, None, "A", 1, 2, 3), "color_channels|groups"),
        (lambda: OPS.masked_conv2d_backward(GRAD_Y[:, :, :4], X, W, "A", 1, 1, 1, ALL), "grad_y"),
        (lambda: OPS.masked_conv2d_backward(GRAD_Y[0], X, W, "A", 1, 1, 1, ALL), "grad_y"),
        (lambda: OPS.masked_conv2d_backward(GRAD_Y, X, W, "C", 1, 1, 1, ALL), "mask_type"),
        (lambda: OPS.masked_conv2d_backward(GRAD_Y, X, W, "A", 0, 1, 1, ALL), "dilation"),
        (lambda: OPS.masked_conv2d_backward(GRAD_Y, X, torch.zeros(6, 3, 2, 3), "A", 1, 1, 1, ALL),
         "weight|kernel"),
    ],
)
def test_direct_op_calls_are_checked_too(call, match):
    _needs_kernel("cpu")
    with pytest.raises(RuntimeError, match=match):
        call()
