"""causal_conv1d (dilated causal 1-D convolution): kernels vs the reference, gradients, causality,
opcheck, torch.compile and bad input."""

from __future__ import annotations

import itertools

import pytest
import torch
from conv_cases import DTYPES, assert_compiled_op_matches_eager, close
from torch.library import opcheck

from fastgen import _ext, ops, reference
from fastgen.ops import _dispatch

OPS = torch.ops.fastgen

# (N, C_in, C_out, T, K, dilation): K in {1, 2, 3, 5}, dilations {1, 2, 4, 7}, channels 1 and
# odd, batch 1, T = 1 and T shorter than the receptive field, T longer than a CPU time tile.
SHAPES = [
    (2, 3, 5, 37, 3, 2),
    (1, 1, 1, 1, 1, 1),
    (1, 1, 3, 1, 5, 7),
    (3, 4, 1, 5, 5, 4),  # receptive field 17 > T
    (2, 7, 3, 9, 2, 7),
    (1, 5, 6, 1100, 2, 4),  # three CPU time tiles
    (4, 2, 2, 64, 3, 1),
    (2, 3, 4, 20, 1, 7),
]


def _inputs(shape, dtype, device="cpu", seed=0, bias=True):
    n, c_in, c_out, t, k, _ = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, t, generator=g).to(dtype=dtype, device=device)
    w = (torch.randn(c_out, c_in, k, generator=g) / (c_in * k) ** 0.5).to(dtype=dtype, device=device)
    b = torch.randn(c_out, generator=g).to(dtype=dtype, device=device) if bias else None
    return x, w, b


def _expected(x, w, b, dilation):
    return reference.causal_conv1d(x.double().cpu(), w.double().cpu(), None if b is None else b.double().cpu(),
                                   dilation)


@pytest.mark.skipif(not _ext.available(), reason="compiled extension not loaded")
def test_kernels_registered():
    assert "cpu" in _dispatch.KERNEL_DEVICES["causal_conv1d"]
    assert "cpu" in _dispatch.KERNEL_DEVICES["causal_conv1d_backward"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_reference(shape, dtype, bias, device):
    x, w, b = _inputs(shape, dtype, device, bias=bias)
    y = ops.causal_conv1d(x, w, b, dilation=shape[-1])
    close(y, _expected(x, w, b, shape[-1]), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES[:6], ids=str)
def test_backward_matches_reference(shape, dtype, device):
    x, w, b = _inputs(shape, dtype, device)
    dilation = shape[-1]
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, w, b)]
    y = ops.causal_conv1d(*leaves, dilation=dilation)
    grad_y = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(dtype=dtype, device=device)
    y.backward(grad_y)
    ref_leaves = [t.detach().double().cpu().requires_grad_(True) for t in (x, w, b)]
    reference.causal_conv1d(*ref_leaves, dilation).backward(grad_y.double().cpu())
    for actual, expected in zip(leaves, ref_leaves):
        close(actual.grad, expected.grad, dtype)


def test_non_contiguous_inputs(device):
    n, c_in, c_out, t, k, dilation = 3, 5, 4, 50, 3, 2
    x = torch.randn(n, t, c_in, device=device).transpose(1, 2)  # (N, C_in, T), time not innermost
    w = torch.randn(k, c_out, c_in, device=device).permute(1, 2, 0)  # (C_out, C_in, K) view
    b = torch.randn(2 * c_out, device=device)[::2]
    assert not x.is_contiguous() and not w.is_contiguous() and not b.is_contiguous()
    xs, ws, bs = (v.detach().clone().requires_grad_(True) for v in (x, w, b))
    y = ops.causal_conv1d(xs, ws, bs, dilation=dilation)
    close(y, _expected(x, w, b, dilation), torch.float32)
    y.sum().backward()
    xr, wr, br = (v.detach().double().requires_grad_(True) for v in (x, w, b))
    reference.causal_conv1d(xr, wr, br, dilation).sum().backward()
    for a, e in [(xs, xr), (ws, wr), (bs, br)]:
        close(a.grad, e.grad.cpu(), torch.float32)


@pytest.mark.parametrize("shape", [(0, 3, 2, 5, 2, 1), (2, 3, 2, 0, 2, 1), (2, 0, 3, 6, 2, 2), (2, 3, 0, 6, 2, 1)],
                         ids=str)
def test_empty_shapes(shape, device):
    x, w, b = _inputs(shape, torch.float32, device)
    xs, ws, bs = (v.detach().clone().requires_grad_(True) for v in (x, w, b))
    y = ops.causal_conv1d(xs, ws, bs, dilation=shape[-1])
    close(y, _expected(x, w, b, shape[-1]), torch.float32)
    y.sum().backward()
    assert xs.grad.shape == x.shape and ws.grad.shape == w.shape and bs.grad.shape == b.shape
    assert torch.all(xs.grad == 0) and torch.all(ws.grad == 0)


@pytest.mark.parametrize("k, dilation", [(1, 1), (2, 1), (3, 2), (5, 1), (2, 4), (3, 7)])
def test_receptive_field_is_exactly_causal(k, dilation, device):
    t = 16
    x = torch.randn(1, 2, t, dtype=torch.float64, device=device)
    w = torch.randn(3, 2, k, dtype=torch.float64, device=device)
    jac = torch.autograd.functional.jacobian(lambda v: ops.causal_conv1d(v, w, dilation=dilation), x)
    dep = jac.abs().sum(dim=(0, 1, 3, 4))  # (T_out, T_in): |d y[:, :, i] / d x[:, :, j]|
    for i, j in itertools.product(range(t), range(t)):
        reachable = j <= i and (i - j) % dilation == 0 and (i - j) // dilation < k
        assert (dep[i, j] != 0) == reachable, (i, j)
    assert torch.all(dep.triu(1) == 0)  # nothing from the future


@pytest.mark.parametrize("shape", [(2, 3, 2, 7, 3, 2), (1, 1, 1, 1, 1, 1), (1, 2, 3, 5, 2, 7)], ids=str)
def test_gradcheck_float64(shape, device):
    x, w, b = _inputs(shape, torch.float64, device)
    leaves = tuple(t.detach().clone().requires_grad_(True) for t in (x, w, b))
    dilation = shape[-1]
    assert torch.autograd.gradcheck(lambda *a: OPS.causal_conv1d(*a, dilation), leaves)
    assert torch.autograd.gradcheck(lambda x_, w_: OPS.causal_conv1d(x_, w_, None, dilation), leaves[:2])


def test_opcheck(device):
    x, w, b = _inputs((2, 3, 4, 9, 3, 2), torch.float32, device)
    xg, wg, bg = (t.detach().clone().requires_grad_(True) for t in (x, w, b))
    grad_y = torch.randn(2, 4, 9, device=device)
    samples = [
        (OPS.causal_conv1d.default, (xg, wg, bg, 2)),
        (OPS.causal_conv1d.default, (xg, wg, None, 1)),
        (OPS.causal_conv1d.default, (x.transpose(1, 2).contiguous().transpose(1, 2), w, b, 3)),
        (OPS.causal_conv1d_backward.default, (grad_y, x, w, 2, [True, True, True])),
        (OPS.causal_conv1d_backward.default, (grad_y, x, w, 2, [True, False, False])),
        (OPS.causal_conv1d_backward.default, (grad_y, x, w, 4, [False, True, True])),
    ]
    for op, args in samples:
        opcheck(op, args)


def test_torch_compile_fullgraph(device):
    x, w, b = _inputs((2, 3, 4, 33, 3, 2), torch.float32, device)

    def f(x_, w_, b_):
        return torch.tanh(ops.causal_conv1d(x_, w_, b_, dilation=2)) * 2.0

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert_compiled_op_matches_eager(compiled, f, (x, w, b))


def test_torch_compile_inductor(device):
    x, w, b = _inputs((2, 3, 4, 33, 2, 4), torch.float32, device)
    compiled = torch.compile(lambda *a: ops.causal_conv1d(*a, dilation=4), fullgraph=True)
    torch.testing.assert_close(compiled(x, w, b), ops.causal_conv1d(x, w, b, dilation=4))


X = torch.zeros(2, 3, 8)
W = torch.zeros(4, 3, 2)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: ops.causal_conv1d(X, W, dilation=0), ValueError, "dilation must be >= 1"),
        (lambda: ops.causal_conv1d(X, W, dilation=-2), ValueError, "dilation must be >= 1"),
        (lambda: ops.causal_conv1d(X, W, dilation=1.5), TypeError, "dilation must be an int"),
        (lambda: ops.causal_conv1d(X, W, dilation=2**62), ValueError, r"dilation must keep \(K - 1\) \* dilation"),
        (lambda: ops.causal_conv1d(X[0], W), ValueError, "x must have 3 dimensions"),
        (lambda: ops.causal_conv1d(X, W[0]), ValueError, "weight must have 3 dimensions"),
        (lambda: ops.causal_conv1d(X, torch.zeros(4, 2, 2)), ValueError, "weight must have C_in"),
        (lambda: ops.causal_conv1d(X, torch.zeros(4, 3, 0)), ValueError, "kernel size K >= 1"),
        (lambda: ops.causal_conv1d(X.long(), W.long()), TypeError, "x must have a floating dtype"),
        (lambda: ops.causal_conv1d(X, W.int()), TypeError, "weight must have a floating dtype"),
        (lambda: ops.causal_conv1d(X, W.double()), TypeError, "weight must have the dtype of x"),
        (lambda: ops.causal_conv1d(X, W, torch.zeros(3)), ValueError, r"bias must have shape \(C_out,\)"),
        (lambda: ops.causal_conv1d(X, W, torch.zeros(4).half()), TypeError, "bias must have the dtype of x"),
        (lambda: ops.causal_conv1d([1.0], W), TypeError, "x must be a torch.Tensor"),
    ],
)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: OPS.causal_conv1d(X, W, None, 0), "dilation must be >= 1"),
        (lambda: OPS.causal_conv1d(X, W, None, 2**62), "dilation must keep"),
        (lambda: OPS.causal_conv1d(X[0], W, None, 1), "x must have 3 dimensions"),
        (lambda: OPS.causal_conv1d(X, torch.zeros(4, 2, 2), None, 1), "weight must have C_in"),
        (lambda: OPS.causal_conv1d(X.long(), W.long(), None, 1), "x must be a floating-point"),
        (lambda: OPS.causal_conv1d(X, W.double(), None, 1), "weight must have the dtype of x"),
        (lambda: OPS.causal_conv1d(X, W, torch.zeros(2), 1), r"bias must have shape \(C_out,\)"),
        (lambda: OPS.causal_conv1d_backward(torch.zeros(2, 4, 7), X, W, 1, [True] * 3), "grad_y must have shape"),
        (lambda: OPS.causal_conv1d_backward(torch.zeros(2, 4, 8), X, W, 0, [True] * 3), "dilation must be >= 1"),
    ],
)
def test_direct_op_calls_are_checked_too(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()
