"""The flow ops (affine and additive coupling, ActNorm, invertible 1x1 convolution, squeeze and
channel split): kernels vs the float64 reference, gradients (through the log-determinant too),
round trips, determinism, gradcheck, opcheck, torch.compile and bad input."""

from __future__ import annotations

import pytest
import torch
from flow_helpers import float64_reference_grads
from torch.library import opcheck

from fastgen import _ext, ops
from fastgen.ops import _dispatch
from fastgen.reference import flows as ref

OPS = torch.ops.fastgen
FLOW_OPS = ["affine_coupling", "affine_coupling_backward", "additive_coupling", "actnorm", "actnorm_backward",
            "invertible_conv1x1", "invertible_conv1x1_backward"]
needs_ext = pytest.mark.skipif(not (_ext.available() and all(_ext.has_op(name) for name in FLOW_OPS)),
                               reason="compiled extension (with the flow ops) not loaded")

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# (rtol, atol relative to the largest expected magnitude) vs float64 math on the same rounded
# inputs: the kernels compute in float32 (float64) and round each output once.
TOL = {
    torch.float32: (2e-5, 2e-6),
    torch.float64: (1e-10, 1e-12),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}
# (map, clamp): tanh_clamp with a tight, the default and a loose bound.
SCALES = [("tanh_clamp", 0.7), ("tanh_clamp", 2.0), ("tanh_clamp", 5.0), ("sigmoid", 2.0), ("exp", 2.0)]
SCALE_IDS = [f"{s}-{c}" for s, c in SCALES]
# rank 2..5, odd sizes, batch 1, rows longer than one work tile (4096: per-chunk logdet partials),
# and enough elements to run on several threads.
COUPLING_SHAPES = [(1, 7), (3, 5, 9), (2, 3, 5, 7), (2, 1, 3, 4, 5), (3, 4100), (2, 3, 50, 61),
                   (37, 3, 17, 19)]


def acc_dtype(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def close(actual, expected, dtype, name=""):
    """``actual`` (computed for inputs of ``dtype``) matches the float64 ``expected``."""
    assert actual.shape == expected.shape, name
    rtol, atol = TOL[dtype]
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual.detach().double(), expected.detach().double(), rtol=rtol,
                               atol=atol * scale,
                               msg=(lambda m: f"{name}: {m}") if name else None)


def randn(shape, dtype, g, scale=1.0):
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def coupling_inputs(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return randn(shape, dtype, g), randn(shape, dtype, g, 0.5), randn(shape, dtype, g, 1.5)


def grads_of(fn, inputs, grad_y, grad_logdet):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    y, logdet = fn(*leaves)
    return torch.autograd.grad((y, logdet), leaves, (grad_y, grad_logdet))


@needs_ext
def test_kernels_registered():
    for name in FLOW_OPS:
        assert "cpu" in _dispatch.KERNEL_DEVICES[name], name


# ------------------------------------------------------------------------ affine coupling


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("scale, clamp", SCALES, ids=SCALE_IDS)
@pytest.mark.parametrize("shape", COUPLING_SHAPES, ids=str)
def test_affine_coupling_matches_reference(shape, scale, clamp, reverse, dtype):
    x, t, r = coupling_inputs(shape, dtype)
    y, logdet = ops.affine_coupling(x, t, r, reverse=reverse, scale=scale, clamp=clamp)
    y_ref, logdet_ref = ref.affine_coupling(x.double(), t.double(), r.double(), reverse, scale, clamp)
    assert y.dtype == dtype and logdet.dtype == acc_dtype(dtype) and y.is_contiguous()
    close(y, y_ref, dtype, "y")
    close(logdet, logdet_ref, dtype, "logdet")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("scale, clamp", SCALES, ids=SCALE_IDS)
@pytest.mark.parametrize("shape", COUPLING_SHAPES[1:6], ids=str)
def test_affine_coupling_backward_matches_reference(shape, scale, clamp, reverse, dtype):
    inputs = coupling_inputs(shape, dtype)
    g = torch.Generator().manual_seed(1)
    grad_y = randn(shape, dtype, g)
    grad_logdet = randn((shape[0],), acc_dtype(dtype), g)
    fn = lambda *a: ops.affine_coupling(*a, reverse=reverse, scale=scale, clamp=clamp)  # noqa: E731
    ref_fn = lambda *a: ref.affine_coupling(*a, reverse, scale, clamp)  # noqa: E731
    expected = float64_reference_grads(ref_fn, inputs, grad_y, grad_logdet)
    actual_grads = grads_of(fn, inputs, grad_y, grad_logdet)
    for name, actual, exp in zip(("x", "shift", "log_scale"), actual_grads, expected):
        assert actual.dtype == dtype
        close(actual, exp, dtype, f"grad_{name}")


@needs_ext
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("scale, clamp", SCALES, ids=SCALE_IDS)
def test_affine_coupling_backward_without_grad_logdet(scale, clamp, reverse):
    inputs = coupling_inputs((3, 4, 5), torch.float64)
    grad_y = torch.randn(3, 4, 5, dtype=torch.float64)
    grads = OPS.affine_coupling_backward(grad_y, None, *inputs, reverse, scale, clamp)
    ref_fn = lambda *a: ref.affine_coupling(*a, reverse, scale, clamp)  # noqa: E731
    expected = float64_reference_grads(ref_fn, inputs, grad_y, None)
    for actual, exp in zip(grads, expected):
        close(actual, exp, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("scale, clamp", SCALES, ids=SCALE_IDS)
def test_affine_coupling_round_trip(scale, clamp, dtype):
    x, t, r = coupling_inputs((5, 3, 7, 9), dtype)
    y, logdet = ops.affine_coupling(x, t, r, scale=scale, clamp=clamp)
    back, logdet_inverse = ops.affine_coupling(y, t, r, reverse=True, scale=scale, clamp=clamp)
    close(back, x.double(), dtype)
    assert torch.equal(logdet, -logdet_inverse)  # the same sum, negated


@pytest.mark.parametrize("scale", ["tanh_clamp", "sigmoid"])
def test_affine_coupling_is_finite_for_huge_log_scales(scale):
    # Bounded maps keep exp(s) finite for any finite raw output: no NaN in y, logdet or the grads.
    r = torch.tensor([[-1e30, -1e4, -90.0, -30.0, -2.0, 0.0, 30.0, 90.0, 1e4, 1e30]])
    x, t = torch.linspace(-2, 2, 10)[None], torch.linspace(1, -1, 10)[None]
    y, logdet = ops.affine_coupling(x, t, r, scale=scale, clamp=2.0)
    y_ref, logdet_ref = ref.affine_coupling(x.double(), t.double(), r.double(), False, scale, 2.0)
    assert torch.isfinite(y).all() and torch.isfinite(logdet).all()
    close(y, y_ref, torch.float32)
    if scale == "tanh_clamp":
        close(logdet, logdet_ref, torch.float32)
    leaves = [v.clone().requires_grad_() for v in (x, t, r)]
    y, logdet = ops.affine_coupling(*leaves, scale=scale, clamp=2.0)
    grads = torch.autograd.grad((y.sum() + logdet.sum()), leaves)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("reverse", [False, True])
def test_affine_coupling_non_contiguous(reverse):
    x = torch.randn(4, 9, 6).transpose(1, 2)  # (4, 6, 9), last dim not innermost
    t = torch.randn(4, 6, 18)[:, :, ::2]
    r = torch.randn(6, 4, 9).permute(1, 0, 2)
    assert not (x.is_contiguous() or t.is_contiguous() or r.is_contiguous())
    grad_y = torch.randn(9, 6, 4).permute(2, 1, 0)
    grad_logdet = torch.randn(1).expand(4)  # stride 0, as sum() gives
    fn = lambda *a: ops.affine_coupling(*a, reverse=reverse, scale="sigmoid")  # noqa: E731
    y, logdet = fn(x, t, r)
    y_ref, logdet_ref = ref.affine_coupling(x.double(), t.double(), r.double(), reverse, "sigmoid")
    close(y, y_ref, torch.float32)
    close(logdet, logdet_ref, torch.float32)
    ref_fn = lambda *a: ref.affine_coupling(*a, reverse, "sigmoid")  # noqa: E731
    expected = float64_reference_grads(ref_fn, (x, t, r), grad_y, grad_logdet)
    for actual, exp in zip(grads_of(fn, (x, t, r), grad_y, grad_logdet), expected):
        close(actual, exp, torch.float32)


@pytest.mark.parametrize("shape", [(0, 3, 4), (0, 5), (3, 0), (2, 3, 0, 4)], ids=str)
@pytest.mark.parametrize("reverse", [False, True])
def test_affine_coupling_empty(shape, reverse):
    x, t, r = (v.requires_grad_() for v in coupling_inputs(shape, torch.float32))
    y, logdet = ops.affine_coupling(x, t, r, reverse=reverse)
    assert y.shape == shape and logdet.shape == (shape[0],) and torch.all(logdet == 0)
    grads = torch.autograd.grad((y.sum() + logdet.sum()), (x, t, r))
    assert all(g.shape == shape for g in grads)


# ------------------------------------------------------------------------ additive coupling


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", [(1, 7), (3, 5, 9), (2, 1, 3, 4, 5), (0, 3), (9, 70001)], ids=str)
def test_additive_coupling(shape, reverse, dtype):
    x, t, _ = coupling_inputs(shape, dtype)
    xs, ts = x.clone().requires_grad_(), t.clone().requires_grad_()
    y = ops.additive_coupling(xs, ts, reverse=reverse)
    assert y.dtype == dtype and y.shape == shape
    torch.testing.assert_close(y, ref.additive_coupling(x, t, reverse), rtol=0, atol=0)
    grad_y = torch.randn(shape).to(dtype)
    gx, gt = torch.autograd.grad(y, (xs, ts), grad_y)
    torch.testing.assert_close(gx, grad_y, rtol=0, atol=0)
    torch.testing.assert_close(gt, -grad_y if reverse else grad_y, rtol=0, atol=0)


def test_additive_coupling_non_contiguous_round_trip():
    x, t = torch.randn(5, 8, 3).transpose(1, 2), torch.randn(5, 3, 16)[..., ::2]
    y = ops.additive_coupling(x, t)
    torch.testing.assert_close(y, x + t)
    torch.testing.assert_close(ops.additive_coupling(y, t, reverse=True), x)


# ------------------------------------------------------------------------ actnorm

# spatial size S: 1 (vectors), short (< 16: per-position layout), long rows, rows longer than a
# tile (> 4096), many samples (several groups), many channels (several channel blocks).
ACTNORM_SHAPES = [(5, 3), (1, 7), (3, 4, 7), (2, 3, 5, 6), (2, 2, 3, 4, 5), (3, 2, 70, 65), (300, 3, 5),
                  (2, 700, 3), (64, 12, 4, 4)]


def actnorm_inputs(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    return randn(shape, dtype, g), randn((c,), dtype, g, 0.5), randn((c,), dtype, g, 0.5)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", ACTNORM_SHAPES, ids=str)
def test_actnorm_matches_reference(shape, reverse, dtype):
    inputs = actnorm_inputs(shape, dtype)
    y, logdet = ops.actnorm(*inputs, reverse=reverse)
    y_ref, logdet_ref = ref.actnorm(*(v.double() for v in inputs), reverse)
    assert y.dtype == dtype and logdet.dtype == acc_dtype(dtype)
    close(y, y_ref, dtype, "y")
    close(logdet, logdet_ref, dtype, "logdet")
    g = torch.Generator().manual_seed(1)
    grad_y, grad_logdet = randn(shape, dtype, g), randn((shape[0],), acc_dtype(dtype), g)
    fn = lambda *a: ops.actnorm(*a, reverse=reverse)  # noqa: E731
    expected = float64_reference_grads(lambda *a: ref.actnorm(*a, reverse), inputs, grad_y, grad_logdet)
    actual_grads = grads_of(fn, inputs, grad_y, grad_logdet)
    for name, actual, exp in zip(("x", "bias", "log_scale"), actual_grads, expected):
        assert actual.dtype == dtype
        # grad_bias and grad_log_scale sum N * S products, rounded once to dtype
        close(actual, exp, dtype, f"grad_{name}")


@needs_ext
@pytest.mark.parametrize("reverse", [False, True])
def test_actnorm_backward_without_grad_logdet(reverse):
    inputs = actnorm_inputs((3, 4, 5), torch.float64)
    grad_y = torch.randn(3, 4, 5, dtype=torch.float64)
    grads = OPS.actnorm_backward(grad_y, None, *inputs, reverse)
    expected = float64_reference_grads(lambda *a: ref.actnorm(*a, reverse), inputs, grad_y, None)
    for actual, exp in zip(grads, expected):
        close(actual, exp, torch.float64)


@pytest.mark.parametrize("shape", [(3, 4, 7), (2, 3, 5, 6), (4, 5)], ids=str)
def test_actnorm_round_trip(shape):
    x, b, s = actnorm_inputs(shape, torch.float64)
    y, logdet = ops.actnorm(x, b, s)
    back, logdet_inverse = ops.actnorm(y, b, s, reverse=True)
    close(back, x, torch.float64)
    assert torch.equal(logdet, -logdet_inverse)


def test_actnorm_non_contiguous():
    x = torch.randn(4, 7, 5, 3).permute(0, 3, 2, 1)  # (4, 3, 5, 7)
    b, s = torch.randn(6)[::2], torch.randn(3, 2)[:, 1]
    assert not (x.is_contiguous() or b.is_contiguous() or s.is_contiguous())
    y, logdet = ops.actnorm(x, b, s)
    y_ref, logdet_ref = ref.actnorm(x.double(), b.double(), s.double())
    close(y, y_ref, torch.float32)
    close(logdet, logdet_ref, torch.float32)
    grad_y = torch.randn(4, 7, 5, 3).permute(0, 3, 2, 1)
    grad_logdet = torch.ones(1).expand(4)
    expected = float64_reference_grads(ref.actnorm, (x, b, s), grad_y, grad_logdet)
    for actual, exp in zip(grads_of(ops.actnorm, (x, b, s), grad_y, grad_logdet), expected):
        close(actual, exp, torch.float32)


@pytest.mark.parametrize("shape", [(0, 3, 4), (0, 5), (2, 0, 3), (2, 3, 0, 4)], ids=str)
def test_actnorm_empty(shape):
    x, b, s = (v.requires_grad_() for v in actnorm_inputs(shape, torch.float32))
    y, logdet = ops.actnorm(x, b, s)
    y_ref, logdet_ref = ref.actnorm(x.detach(), b.detach(), s.detach())
    assert y.shape == shape
    torch.testing.assert_close(logdet, logdet_ref)
    grads = torch.autograd.grad(y.sum() + logdet.sum(), (x, b, s))
    assert [g.shape for g in grads] == [x.shape, b.shape, s.shape]
    assert torch.all(grads[1] == 0)
    assert torch.all(grads[2] == 0)  # no samples, or no positions: logdet does not depend on s


# ------------------------------------------------------------------------ invertible 1x1 conv

CONV_SHAPES = [(2, 3, 5, 7), (4, 5), (1, 4, 3), (2, 3, 2, 3, 2), (3, 8, 33, 35)]


def conv_inputs(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    w = torch.linalg.qr(torch.randn(c, c, generator=g, dtype=torch.float64))[0]
    w = w + 0.2 * torch.randn(c, c, generator=g, dtype=torch.float64)
    return randn(shape, dtype, g), w.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=str)
def test_invertible_conv1x1_matches_reference(shape, reverse, dtype):
    x, w = conv_inputs(shape, dtype)
    # logabsdet given (as an LU layer has it), already in the input dtype, so both sides use the same
    lad = torch.linalg.slogdet(w.double()).logabsdet.to(dtype)
    w_inv = torch.linalg.inv(w.double()).to(dtype) if reverse else None
    y, logdet = ops.invertible_conv1x1(x, w, reverse=reverse, logabsdet=lad, weight_inverse=w_inv)
    y_ref, logdet_ref = ref.invertible_conv1x1(x.double(), w.double(), reverse, lad.double(),
                                               None if w_inv is None else w_inv.double())
    assert y.dtype == dtype and logdet.dtype == acc_dtype(dtype)
    close(y, y_ref, dtype, "y")
    close(logdet, logdet_ref, dtype, "logdet")
    g = torch.Generator().manual_seed(1)
    grad_y, grad_logdet = randn(shape, dtype, g), randn((shape[0],), acc_dtype(dtype), g)
    # Gradients w.r.t. x, the matrix actually applied (W, or the given W^-1) and logabsdet.
    matrix = w if w_inv is None else w_inv

    def fn(x_, m_, l_):
        return ops.invertible_conv1x1(x_, w if reverse else m_, reverse=reverse, logabsdet=l_,
                                      weight_inverse=m_ if reverse else None)

    def ref_fn(x_, m_, l_):  # the matrix applied forward, logdet = +-L * logabsdet
        return ref.invertible_conv1x1(x_, m_, False, -l_ if reverse else l_)

    expected = float64_reference_grads(ref_fn, (x, matrix, lad), grad_y, grad_logdet)
    actual_grads = grads_of(fn, (x, matrix, lad), grad_y, grad_logdet)
    for name, actual, exp in zip(("x", "matrix", "logabsdet"), actual_grads, expected):
        assert actual.dtype == dtype
        close(actual, exp, dtype, f"grad_{name}")


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("given", ["nothing", "logabsdet", "inverse", "both"])
def test_invertible_conv1x1_weight_gradients(given, reverse):
    # Through the functional API: slogdet / inv computed when not given, and the gradient reaches
    # the weight through them (or through the given tensors).
    x, w = conv_inputs((2, 4, 3, 5), torch.float64)
    w = w.requires_grad_()
    xs = x.clone().requires_grad_()

    def extras(w_):
        lad = torch.linalg.slogdet(w_).logabsdet if given in ("logabsdet", "both") else None
        inv = torch.linalg.inv(w_) if given in ("inverse", "both") and reverse else None
        return lad, inv

    lad, inv = extras(w)
    y, logdet = ops.invertible_conv1x1(xs, w, reverse=reverse, logabsdet=lad, weight_inverse=inv)
    loss = (y * torch.cos(y)).sum() + (logdet * torch.arange(2.0, dtype=torch.float64)).sum()
    gx, gw = torch.autograd.grad(loss, (xs, w))
    xr, wr = x.clone().requires_grad_(), w.detach().clone().requires_grad_()
    y_ref, logdet_ref = ref.invertible_conv1x1(xr, wr, reverse)
    loss_ref = (y_ref * torch.cos(y_ref)).sum() + (logdet_ref * torch.arange(2.0, dtype=torch.float64)).sum()
    gx_ref, gw_ref = torch.autograd.grad(loss_ref, (xr, wr))
    close(y, y_ref, torch.float64)
    close(logdet, logdet_ref, torch.float64)
    close(gx, gx_ref, torch.float64)
    close(gw, gw_ref, torch.float64)


def test_invertible_conv1x1_conv2d_weight_layout_and_round_trip():
    x, w = conv_inputs((3, 5, 4, 6), torch.float32)
    y, logdet = ops.invertible_conv1x1(x, w[:, :, None, None])
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, w[:, :, None, None]), rtol=1e-5, atol=1e-5)
    back, logdet_inverse = ops.invertible_conv1x1(y, w, reverse=True)
    torch.testing.assert_close(back, x, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logdet, -logdet_inverse)


def test_invertible_conv1x1_non_contiguous():
    x = torch.randn(3, 6, 5, 4).permute(0, 3, 2, 1)  # (3, 4, 5, 6)
    w = torch.randn(4, 4).t() + 2 * torch.eye(4)
    y, logdet = ops.invertible_conv1x1(x, w)
    y_ref, logdet_ref = ref.invertible_conv1x1(x.double(), w.double())
    close(y, y_ref, torch.float32)
    close(logdet, logdet_ref, torch.float32)


@pytest.mark.parametrize("shape", [(0, 3, 4), (2, 3, 0, 4), (2, 0, 3)], ids=str)
def test_invertible_conv1x1_empty(shape):
    c = shape[1]
    x = torch.randn(shape, requires_grad=True)
    w = (torch.randn(c, c) + 3 * torch.eye(c)).requires_grad_()
    y, logdet = ops.invertible_conv1x1(x, w)
    assert y.shape == shape and logdet.shape == (shape[0],)
    gx, gw = torch.autograd.grad(y.sum() + logdet.sum(), (x, w))
    assert gx.shape == shape and gw.shape == (c, c)


# ------------------------------------------------------------------------ determinism


@needs_ext
def test_reductions_do_not_depend_on_the_thread_count():
    g = torch.Generator().manual_seed(3)
    x, t, r = (torch.randn(6, 3, 50, 61, generator=g) for _ in range(3))
    ax = torch.randn(40, 12, 33, 31, generator=g)
    ab, al = torch.randn(12, generator=g), torch.randn(12, generator=g)
    sx = torch.randn(900, 3, 5, generator=g)
    cx, cw = torch.randn(70, 12, 16, 16, generator=g), torch.randn(12, 12, generator=g)

    def run():
        out = list(OPS.affine_coupling(x, t, r, False, "sigmoid", 2.0))
        out += OPS.actnorm_backward(ax, torch.ones(40), ax, ab, al, False)
        out += OPS.actnorm_backward(sx, torch.ones(900), sx, ab[:3], al[:3], True)
        # grad_matrix: per-sample products summed by fixed groups (grad_x is a plain BLAS product)
        out += OPS.invertible_conv1x1_backward(cx, torch.ones(70), cx, cw, False, [False, True, True])[1:]
        return out

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = run()
        torch.set_num_threads(max(2, threads))
        multi = run()
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(single, multi):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------ gradcheck, opcheck


@needs_ext
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("scale, clamp", SCALES, ids=SCALE_IDS)
def test_affine_coupling_gradcheck(scale, clamp, reverse):
    leaves = tuple(v.requires_grad_() for v in coupling_inputs((2, 3, 4), torch.float64))
    # Both outputs, so the gradient through logdet is checked too.
    assert torch.autograd.gradcheck(lambda *a: OPS.affine_coupling(*a, reverse, scale, clamp), leaves)


@needs_ext
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_other_ops(reverse):
    x, t, _ = (v.requires_grad_() for v in coupling_inputs((2, 3, 4), torch.float64))
    assert torch.autograd.gradcheck(lambda *a: OPS.additive_coupling(*a, reverse), (x, t))
    for shape in [(2, 3, 4, 5), (3, 4)]:
        leaves = tuple(v.requires_grad_() for v in actnorm_inputs(shape, torch.float64))
        assert torch.autograd.gradcheck(lambda *a: OPS.actnorm(*a, reverse), leaves)
    x, w = conv_inputs((2, 3, 4, 5), torch.float64)
    lad = torch.tensor(0.3, dtype=torch.float64)
    leaves = tuple(v.requires_grad_() for v in (x, w, lad))
    assert torch.autograd.gradcheck(lambda *a: OPS.invertible_conv1x1(*a, reverse), leaves)


@needs_ext
def test_functional_gradcheck_through_slogdet_and_inverse():
    x, w = (v.requires_grad_() for v in conv_inputs((2, 3, 2, 3), torch.float64))
    for reverse in (False, True):
        fn = lambda x_, w_: ops.invertible_conv1x1(x_, w_, reverse=reverse)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, w))


@needs_ext
def test_opcheck():
    x, t, r = coupling_inputs((2, 3, 5), torch.float32)
    xg, tg, rg = (v.clone().requires_grad_() for v in (x, t, r))
    gy, gl = torch.randn(2, 3, 5), torch.randn(2)
    ax, ab, al = actnorm_inputs((2, 3, 4, 5), torch.float32)
    axg, abg, alg = (v.clone().requires_grad_() for v in (ax, ab, al))
    cx, cw = conv_inputs((2, 3, 4, 5), torch.float32)
    lad = torch.tensor(0.25)
    cxg, cwg, ladg = (v.clone().requires_grad_() for v in (cx, cw, lad))
    gc = torch.randn(2, 3, 4, 5)
    samples = [
        (OPS.affine_coupling.default, (xg, tg, rg, False, "tanh_clamp", 2.0)),
        (OPS.affine_coupling.default, (xg, tg, rg, True, "sigmoid", 2.0)),
        (OPS.affine_coupling.default,
         (x.transpose(1, 2), t.transpose(1, 2), r.transpose(1, 2), False, "exp", 1.0)),
        (OPS.affine_coupling_backward.default, (gy, gl, x, t, r, True, "tanh_clamp", 0.5)),
        (OPS.affine_coupling_backward.default, (gy, None, x, t, r, False, "sigmoid", 2.0)),
        (OPS.additive_coupling.default, (xg, tg, True)),
        (OPS.actnorm.default, (axg, abg, alg, False)),
        (OPS.actnorm.default, (ax[:, :, 0], ab, al, True)),
        (OPS.actnorm_backward.default, (torch.randn(2, 3, 4, 5), gl, ax, ab, al, True)),
        (OPS.actnorm_backward.default, (torch.randn(2, 3, 4, 5), None, ax, ab, al, False)),
        (OPS.invertible_conv1x1.default, (cxg, cwg, ladg, False)),
        (OPS.invertible_conv1x1.default, (cx, cw, lad, True)),
        (OPS.invertible_conv1x1_backward.default, (gc, gl, cx, cw, False, [True, True, True])),
        (OPS.invertible_conv1x1_backward.default, (gc, None, cx, cw, True, [False, True, True])),
        (OPS.invertible_conv1x1_backward.default, (gc, gl, cx, cw, False, [True, False, False])),
    ]
    for op, args in samples:
        opcheck(op, args)


# ------------------------------------------------------------------------ torch.compile


def flow_step(x, an_bias, an_log_scale, weight, logabsdet, w_cond):
    """One Glow step and a NICE coupling: actnorm, 1x1 convolution, affine coupling on half the
    channels (conditioned on the other half), additive coupling; (z, logdet)."""
    y, logdet = ops.actnorm(x, an_bias, an_log_scale)
    y, ld = ops.invertible_conv1x1(y, weight, logabsdet=logabsdet)
    logdet = logdet + ld
    a, b = ops.split_channels(y)
    h = torch.tanh(torch.einsum("oc,nchw->nohw", w_cond, a))
    b, ld = ops.affine_coupling(b, h[:, :2], h[:, 2:], scale="sigmoid")
    a = ops.additive_coupling(a, 0.5 * b)
    z = ops.squeeze2d(ops.merge_channels(a, b))
    return z, logdet + ld


def flow_step_inputs():
    g = torch.Generator().manual_seed(0)
    x, w = conv_inputs((2, 4, 6, 6), torch.float32, seed=2)
    return (x, 0.1 * torch.randn(4, generator=g), 0.1 * torch.randn(4, generator=g), w,
            torch.linalg.slogdet(w).logabsdet, 0.5 * torch.randn(4, 2, generator=g))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()
    inputs = flow_step_inputs()
    compiled = torch.compile(flow_step, fullgraph=True, backend=backend)
    leaves_c = [t.clone().requires_grad_() for t in inputs]
    leaves_e = [t.clone().requires_grad_() for t in inputs]
    z_c, ld_c = compiled(*leaves_c)
    z_e, ld_e = flow_step(*leaves_e)
    torch.testing.assert_close(z_c, z_e, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ld_c, ld_e, rtol=1e-5, atol=1e-5)
    grads_c = torch.autograd.grad(z_c.square().sum() + ld_c.sum(), leaves_c)
    grads_e = torch.autograd.grad(z_e.square().sum() + ld_e.sum(), leaves_e)
    for a, e in zip(grads_c, grads_e):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)


def test_torch_compile_reverse_ops():
    torch._dynamo.reset()
    x, t, r = coupling_inputs((2, 4, 6), torch.float32)
    _, w = conv_inputs((2, 4, 6), torch.float32)

    def inverse(z):
        y, ld1 = ops.affine_coupling(z, t, r, reverse=True, scale="tanh_clamp", clamp=1.5)
        y, ld2 = ops.invertible_conv1x1(y, w, reverse=True)
        y, ld3 = ops.actnorm(y, t[0, :, 0], r[0, :, 0], reverse=True)
        return ops.additive_coupling(y, t, reverse=True), ld1 + ld2 + ld3

    compiled = torch.compile(inverse, fullgraph=True, backend="aot_eager")
    for a, e in zip(compiled(x), inverse(x)):
        torch.testing.assert_close(a, e)


# ------------------------------------------------------------------------ squeeze, split


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_squeeze_unsqueeze_round_trip(factor):
    x = torch.randn(2, 3, 6 * factor, 3 * factor)
    z = ops.squeeze2d(x, factor)
    assert z.shape == (2, 3 * factor * factor, 6, 3)
    torch.testing.assert_close(ops.unsqueeze2d(z, factor), x, rtol=0, atol=0)


def test_squeeze2d_channel_order():
    # output channel c * 4 + i * 2 + j holds pixel (2h + i, 2w + j) of channel c (Glow's order)
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)
    z = ops.squeeze2d(x)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                torch.testing.assert_close(z[0, c * 4 + i * 2 + j], x[0, c, i::2, j::2], rtol=0, atol=0)


def test_split_merge_round_trip():
    x = torch.randn(3, 7, 4)
    a, b = ops.split_channels(x)
    assert a.shape == (3, 3, 4) and b.shape == (3, 4, 4)
    torch.testing.assert_close(ops.merge_channels(a, b), x, rtol=0, atol=0)
    a, b = ops.split_channels(x, 5)
    assert a.shape[1] == 5 and b.shape[1] == 2
    torch.testing.assert_close(ops.merge_channels(a, b), x, rtol=0, atol=0)


# ------------------------------------------------------------------------ bad input

X = torch.zeros(2, 3, 4)
V = X[0, 0]  # (4,): no batch dimension to split off
INF = float("inf")
C3 = torch.zeros(3)
W3 = torch.eye(3)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: ops.affine_coupling([1.0], X, X), TypeError, "x must be a torch.Tensor"),
        (lambda: ops.affine_coupling(X.long(), X, X), TypeError, "x must have a floating dtype"),
        (lambda: ops.affine_coupling(V, V, V), ValueError, "x must have at least 2 dimension"),
        (lambda: ops.affine_coupling(X, X[:, :2], X), ValueError, "shift must have the shape of x"),
        (lambda: ops.affine_coupling(X, X, X.double()), TypeError, "log_scale must have the dtype of x"),
        (lambda: ops.affine_coupling(X, X, X, scale="softplus"), ValueError, "scale must be one of"),
        (lambda: ops.affine_coupling(X, X, X, clamp=0.0), ValueError, "clamp must be a finite number > 0"),
        (lambda: ops.affine_coupling(X, X, X, clamp=-1.0), ValueError, "clamp must be a finite number > 0"),
        (lambda: ops.affine_coupling(X, X, X, clamp=INF), ValueError, "clamp must be a finite number"),
        (lambda: ops.affine_coupling(X, X, X, clamp=1e300), ValueError, "clamp must be a finite number > 0 and <= 1e"),
        (lambda: ops.affine_coupling(X, X, X, clamp="2"), TypeError, "clamp must be a float"),
        (lambda: ops.affine_coupling(X, X, X, reverse=1), TypeError, "reverse must be a bool"),
        (lambda: ops.additive_coupling(X, X[:1]), ValueError, "shift must have the shape of x"),
        (lambda: ops.additive_coupling(X, X, reverse="yes"), TypeError, "reverse must be a bool"),
        (lambda: ops.actnorm(X, torch.zeros(4), C3), ValueError, r"bias must have shape \(C,\)"),
        (lambda: ops.actnorm(X, C3, C3.half()), TypeError, "log_scale must have the dtype of x"),
        (lambda: ops.actnorm(X, C3, torch.zeros(3, 1)), ValueError, r"log_scale must have shape \(C,\)"),
        (lambda: ops.actnorm(V, C3, C3), ValueError, "x must have at least 2 dimension"),
        (lambda: ops.actnorm(X, C3, C3, reverse=None), TypeError, "reverse must be a bool"),
        (lambda: ops.invertible_conv1x1(X, W3[:, :2]), ValueError, r"weight must have shape \(C, C\)"),
        (lambda: ops.invertible_conv1x1(X, torch.eye(4)), ValueError, r"weight must have shape \(C, C\)"),
        (lambda: ops.invertible_conv1x1(X, W3.double()), TypeError, "weight must have the dtype of x"),
        (lambda: ops.invertible_conv1x1(X, torch.zeros(3, 3), reverse=True), ValueError,
         "weight must be invertible for reverse=True"),
        (lambda: ops.invertible_conv1x1(X, W3, reverse=True, weight_inverse=torch.eye(2)), ValueError,
         r"weight_inverse must have shape \(C, C\)"),
        (lambda: ops.invertible_conv1x1(X, W3, logabsdet=torch.zeros(1)), ValueError,
         "logabsdet must be a 0-dim tensor"),
        (lambda: ops.invertible_conv1x1(X, W3, reverse=0), TypeError, "reverse must be a bool"),
        (lambda: ops.squeeze2d(torch.zeros(1, 2, 5, 4)), ValueError, "divisible by factor"),
        (lambda: ops.squeeze2d(X), ValueError, "x must have 4 dimensions"),
        (lambda: ops.squeeze2d(torch.zeros(1, 2, 4, 4), 0), ValueError, "factor must be an int >= 1"),
        (lambda: ops.squeeze2d(torch.zeros(1, 2, 4, 4), 1.5), ValueError, "factor must be an int >= 1"),
        (lambda: ops.squeeze2d(torch.zeros(1, 2, 4, 4), True), ValueError, "factor must be an int >= 1"),
        (lambda: ops.unsqueeze2d(torch.zeros(1, 6, 2, 2)), ValueError, "C divisible by factor"),
        (lambda: ops.split_channels(X, 0), ValueError, "first must be an int in"),
        (lambda: ops.split_channels(X, 3), ValueError, "first must be an int in"),
        (lambda: ops.split_channels(X[:, :1]), ValueError, "first must be an int in"),
        (lambda: ops.split_channels(V), ValueError, "x must have at least 2 dimension"),
        (lambda: ops.merge_channels(X, X[:1]), ValueError, "x1 and x2 must agree"),
        (lambda: ops.merge_channels(X, X.double()), TypeError, "x2 must have the dtype of x1"),
    ],
)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


G2 = torch.zeros(2)
XL = X.long()
NAN = float("nan")
ZERO = torch.tensor(0.0)


@needs_ext
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: OPS.affine_coupling(X, X, X, False, "softplus", 2.0), "scale must be one of"),
        (lambda: OPS.affine_coupling(X, X, X, False, "tanh_clamp", 0.0), "clamp must be a finite number > 0"),
        (lambda: OPS.affine_coupling(X, X, X, False, "exp", NAN), "clamp must be a finite number > 0"),
        (lambda: OPS.affine_coupling(X, X, X, False, "tanh_clamp", 1e300), "clamp must be a finite number > 0 and <="),
        (lambda: OPS.affine_coupling(X, X[:1], X, False, "exp", 1.0), "shift must have the shape of x"),
        (lambda: OPS.affine_coupling(X, X, X.double(), False, "exp", 1.0), "log_scale must have the dtype"),
        (lambda: OPS.affine_coupling(XL, XL, XL, False, "exp", 1.0), "x must be a floating-point"),
        (lambda: OPS.affine_coupling(X[0, 0, 0], X[0, 0, 0], X[0, 0, 0], False, "exp", 1.0),
         "x must have at least 1 dimension"),
        (lambda: OPS.affine_coupling_backward(X[:1], G2, X, X, X, False, "exp", 1.0), "grad_y must have sha"),
        (lambda: OPS.affine_coupling_backward(X, torch.zeros(3), X, X, X, False, "exp", 1.0),
         r"grad_logdet must have shape \(N,\)"),
        (lambda: OPS.affine_coupling_backward(X, G2.long(), X, X, X, False, "exp", 1.0),
         "grad_logdet must be a floating-point"),
        (lambda: OPS.additive_coupling(X, X[:, :1], False), "shift must have the shape of x"),
        (lambda: OPS.actnorm(X, torch.zeros(2), C3, False), r"bias must have shape \(C,\)"),
        (lambda: OPS.actnorm(X, C3, C3.double(), False), "log_scale must have the dtype of x"),
        (lambda: OPS.actnorm(X[0, 0], C3, C3, False), "x must have at least 2 dimension"),
        (lambda: OPS.actnorm_backward(X[:, :1], None, X, C3, C3, False), "grad_y must have shape"),
        (lambda: OPS.invertible_conv1x1(X, W3[:, :2], ZERO, False), "matrix must be square"),
        (lambda: OPS.invertible_conv1x1(X, W3.double(), ZERO, False), "matrix must have the dtype"),
        (lambda: OPS.invertible_conv1x1(X, W3, torch.zeros(1), False), "logabsdet must be a 0-dim"),
        (lambda: OPS.invertible_conv1x1_backward(X[:1], None, X, W3, False, [True] * 3), "grad_y must have"),
    ],
)
def test_direct_op_calls_are_checked_too(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()


def test_actnorm_takes_parameters_in_the_broadcast_layout():
    """(1, C, 1, 1) parameters (normflows' layout) act as (C,) and get gradients of their shape."""
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    bias = torch.randn(1, 4, 1, 1, dtype=torch.float64, requires_grad=True)
    log_scale = torch.randn(1, 4, 1, 1, dtype=torch.float64, requires_grad=True)
    y, logdet = ops.actnorm(x, bias, log_scale)
    y_flat, logdet_flat = ops.actnorm(x, bias.reshape(4), log_scale.reshape(4))
    torch.testing.assert_close(y, y_flat)
    torch.testing.assert_close(logdet, logdet_flat)
    (y.sum() + logdet.sum()).backward()
    assert bias.grad.shape == (1, 4, 1, 1) and log_scale.grad.shape == (1, 4, 1, 1)
    with pytest.raises(ValueError, match="bias must have shape"):
        ops.actnorm(x, torch.randn(4, 1, dtype=torch.float64), log_scale)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_invertible_conv1x1_half_inputs_keep_logdet_and_inverse_in_float32(dtype):
    """Half-precision inputs are computed in float32 inside: log|det W| and W^-1 are solved in
    float32 and used unrounded (rounded to bfloat16 they cost the logdet ~0.2% and the inverse
    an ulp on ~45% of its outputs)."""
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(16, 16, generator=g) * 0.5 + 2 * torch.eye(16)).to(dtype)
    x = torch.randn(2, 16, 32, 32, generator=g).to(dtype)
    _, logdet = ops.invertible_conv1x1(x, w)
    want = 32 * 32 * torch.linalg.slogdet(w.double()).logabsdet
    assert logdet.dtype == torch.float32
    torch.testing.assert_close(logdet.double(), want.expand(2), rtol=1e-6, atol=0)
    y, back_logdet = ops.invertible_conv1x1(x, w, reverse=True)
    torch.testing.assert_close(back_logdet.double(), -want.expand(2), rtol=1e-6, atol=0)
    exact = torch.linalg.solve(w.double(), x.double().flatten(2)).reshape(x.shape).to(dtype)
    assert (y == exact).double().mean() > 0.99  # rounded once from float32 (ties aside)


def test_invertible_conv1x1_takes_float32_matrices_with_half_inputs():
    """float32 parameters with a bfloat16 x are used as they are (not rounded to bfloat16 first)."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(4, 4, generator=g) + 3 * torch.eye(4)
    x = torch.randn(3, 4, 5, 5, generator=g).bfloat16()
    y, logdet = ops.invertible_conv1x1(x, w)
    y32, logdet32 = ref.invertible_conv1x1(x.float(), w)
    assert y.dtype == torch.bfloat16 and logdet.dtype == torch.float32
    torch.testing.assert_close(y, y32.bfloat16(), rtol=0, atol=0)
    torch.testing.assert_close(logdet, logdet32)
    back, _ = ops.invertible_conv1x1(y, w, reverse=True, weight_inverse=torch.linalg.inv(w))
    assert back.dtype == torch.bfloat16
    w.requires_grad_(True)
    ops.invertible_conv1x1(x, w)[1].sum().backward()
    assert w.grad.dtype == torch.float32
    with pytest.raises(TypeError, match=r"weight must have the dtype of x \(torch.bfloat16\) or torch.float32"):
        ops.invertible_conv1x1(x, w.double())
