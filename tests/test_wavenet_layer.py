"""wavenet_layer (one fused WaveNet residual layer): kernels vs the float64 reference, gradients,
causality, gradcheck, opcheck, torch.compile and bad input."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import pytest
import torch
from conv_cases import DTYPES, close
from torch.library import opcheck

from fastgen import _ext, ops, reference
from fastgen.ops import _dispatch

OPS = torch.ops.fastgen
NAMES = ("x", "w_dilated", "b_dilated", "w_res", "b_res", "w_skip", "b_skip", "cond", "w_cond")
needs_ext = pytest.mark.skipif(not (_ext.available() and _ext.has_op("wavenet_layer")),
                               reason="compiled extension (with wavenet_layer) not loaded")


class Case(NamedTuple):
    n: int
    c_res: int
    c_gate: int
    c_skip: int
    c_cond: int  # 0: no conditioning
    t: int
    k: int
    dilation: int

    def __str__(self) -> str:
        return (f"{self.n}x{self.c_res}x{self.t} gate{self.c_gate} skip{self.c_skip} cond{self.c_cond} "
                f"k{self.k} d{self.dilation}")


# K in {1, 2, 3}, dilations {1, 2, 8}; channels 1 and odd; batch 1; T = 1, T shorter than the
# receptive field, T longer than a CPU time tile (512 steps), more tiles than weight-gradient
# groups (16); with and without conditioning. The CPU backward recomputes the gates of a tile's
# halo ((K-1) * dilation steps) when it is at most 64 steps, else keeps dh in a full buffer.
SHAPES = [
    Case(2, 3, 6, 5, 0, 37, 3, 2),
    Case(1, 1, 2, 1, 0, 1, 1, 1),  # T = 1, one channel everywhere
    Case(1, 1, 2, 3, 2, 1, 3, 8),  # T = 1 with a receptive field of 17
    Case(3, 5, 4, 7, 3, 9, 2, 8),  # receptive field 9 = T
    Case(2, 7, 10, 1, 1, 6, 3, 8),  # receptive field 17 > T
    Case(1, 3, 6, 4, 2, 1100, 2, 8),  # three CPU time tiles, halo recomputed across tile edges
    Case(3, 2, 4, 3, 0, 3000, 3, 1),  # 18 tiles: several tiles per weight-gradient group
    Case(2, 3, 4, 2, 1, 700, 2, 100),  # halo 100: dh through the full buffer, second pass
    Case(2, 4, 2, 5, 0, 20, 1, 2),  # K = 1: no shifted tap
]


def _inputs(case: Case, dtype, device="cpu", seed=0, biases=(True, True, True), pointwise_3d=False):
    """x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, cond, w_cond (None where absent)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dtype=dtype, device=device)

    half = case.c_gate // 2
    x = rand(case.n, case.c_res, case.t)
    w_dilated = rand(case.c_gate, case.c_res, case.k, scale=(case.c_res * case.k) ** -0.5)
    b_dilated = rand(case.c_gate, scale=0.5) if biases[0] else None
    w_res = rand(case.c_res, half, scale=half ** -0.5)
    b_res = rand(case.c_res, scale=0.5) if biases[1] else None
    w_skip = rand(case.c_skip, half, scale=half ** -0.5)
    b_skip = rand(case.c_skip, scale=0.5) if biases[2] else None
    cond = w_cond = None
    if case.c_cond:
        cond = rand(case.n, case.c_cond, case.t)
        w_cond = rand(case.c_gate, case.c_cond, scale=case.c_cond ** -0.5)
    if pointwise_3d:  # the nn.Conv1d layout (C_out, C_in, 1)
        w_res, w_skip = w_res[:, :, None], w_skip[:, :, None]
        w_cond = None if w_cond is None else w_cond[:, :, None]
    return [x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, cond, w_cond]


def _run(fn, tensors, dilation):
    x, wd, bd, wr, br, ws, bs, cond, wc = tensors
    if fn is reference.wavenet_layer:
        return fn(x, wd, bd, wr, br, ws, bs, dilation, cond, wc)
    return fn(x, wd, bd, wr, br, ws, bs, dilation=dilation, cond=cond, w_cond=wc)


def _as_double_leaves(tensors):
    return [None if t is None else t.detach().double().cpu().requires_grad_(True) for t in tensors]


def _check_forward_and_grads(case, tensors, dtype, device, seed=1):
    """Outputs and the gradient of every tensor argument vs autograd through the float64 reference."""
    leaves = [None if t is None else t.detach().clone().requires_grad_(True) for t in tensors]
    residual, skip = _run(ops.wavenet_layer, leaves, case.dilation)
    ref_leaves = _as_double_leaves(tensors)
    ref_residual, ref_skip = _run(reference.wavenet_layer, ref_leaves, case.dilation)
    close(residual, ref_residual, dtype, "residual")
    close(skip, ref_skip, dtype, "skip")
    g = torch.Generator().manual_seed(seed)
    grad_res = torch.randn(residual.shape, generator=g).to(dtype=dtype, device=device)
    grad_skip = torch.randn(skip.shape, generator=g).to(dtype=dtype, device=device)
    torch.autograd.backward((residual, skip), (grad_res, grad_skip))
    torch.autograd.backward((ref_residual, ref_skip), (grad_res.double().cpu(), grad_skip.double().cpu()))
    for name, actual, expected in zip(NAMES, leaves, ref_leaves):
        if actual is None:
            continue
        assert actual.grad is not None, name
        close(actual.grad, expected.grad, dtype, f"grad of {name}")


@needs_ext
def test_kernels_registered():
    assert "cpu" in _dispatch.KERNEL_DEVICES["wavenet_layer"]
    assert "cpu" in _dispatch.KERNEL_DEVICES["wavenet_layer_backward"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", SHAPES, ids=str)
def test_forward_and_gradients_match_reference(case, dtype, device):
    _check_forward_and_grads(case, _inputs(case, dtype, device), dtype, device)


@pytest.mark.parametrize("biases", [b for b in itertools.product([True, False], repeat=3) if not all(b)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_without_biases(biases, dtype, device):
    case = Case(2, 3, 6, 4, 2, 40, 2, 2)
    _check_forward_and_grads(case, _inputs(case, dtype, device, biases=biases), dtype, device)


@pytest.mark.parametrize("cond", [False, True])
def test_pointwise_weights_in_conv1d_layout(cond, device):
    case = Case(2, 3, 6, 4, 2 if cond else 0, 30, 2, 4)
    tensors = _inputs(case, torch.float64, device, pointwise_3d=True)
    assert tensors[3].dim() == 3 and tensors[5].dim() == 3
    _check_forward_and_grads(case, tensors, torch.float64, device)
    leaves = [None if t is None else t.detach().clone().requires_grad_(True) for t in tensors]
    residual, skip = _run(ops.wavenet_layer, leaves, case.dilation)
    (residual.sum() + skip.sum()).backward()
    for name, leaf in zip(NAMES, leaves):
        if leaf is not None:
            assert leaf.grad.shape == leaf.shape, name  # (C_out, C_in, 1) gradients for 3-D weights


def test_non_contiguous_inputs(device):
    case = Case(3, 5, 6, 4, 3, 70, 3, 2)
    x = torch.randn(case.n, case.t, case.c_res, device=device).transpose(1, 2)  # time not innermost
    wd = (torch.randn(case.k, case.c_gate, case.c_res, device=device) / 4).permute(1, 2, 0)
    bd = torch.randn(2 * case.c_gate, device=device)[::2]
    wr = (torch.randn(case.c_gate // 2, case.c_res, device=device) / 2).t()
    br = torch.randn(case.c_res, 2, device=device)[:, 0]
    ws = (torch.randn(case.c_gate // 2, case.c_skip, device=device) / 2).t()
    bs = torch.randn(2 * case.c_skip, device=device)[1::2]
    cond = torch.randn(case.n, case.t, case.c_cond, device=device).transpose(1, 2)
    wc = torch.randn(case.c_cond, case.c_gate, device=device).t()
    tensors = [x, wd, bd, wr, br, ws, bs, cond, wc]
    assert not any(t.is_contiguous() for t in tensors)
    _check_forward_and_grads(case, tensors, torch.float32, device)


@pytest.mark.parametrize("case", [Case(0, 3, 4, 2, 2, 5, 2, 1), Case(2, 3, 4, 2, 2, 0, 2, 1)], ids=str)
def test_empty_batch_or_sequence(case, device):
    _check_forward_and_grads(case, _inputs(case, torch.float32, device), torch.float32, device)


def test_deterministic_across_thread_counts():
    """The weight gradients are summed over fixed groups of tiles, whatever the thread count."""
    case = Case(3, 4, 6, 5, 2, 1500, 2, 4)
    tensors = _inputs(case, torch.float32)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
            residual, skip = _run(ops.wavenet_layer, leaves, case.dilation)
            (residual.sum() + (skip * skip).sum()).backward()
            results.append([residual, skip] + [leaf.grad for leaf in leaves])
    finally:
        torch.set_num_threads(threads)
    for name, a, b in zip(("residual", "skip") + NAMES, *results):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("k, dilation, cond", [(1, 1, False), (2, 1, True), (3, 2, False), (2, 8, True), (3, 8, False)])
def test_receptive_field_is_exactly_causal(k, dilation, cond, device):
    t = 20
    case = Case(1, 2, 4, 3, 2 if cond else 0, t, k, dilation)
    x, wd, bd, wr, br, ws, bs, c, wc = _inputs(case, torch.float64, device, seed=3)

    def layer(v):
        return ops.wavenet_layer(v, wd, bd, wr, br, ws, bs, dilation=dilation, cond=c, w_cond=wc)

    jac_res, jac_skip = torch.autograd.functional.jacobian(layer, x)
    for jac in (jac_res, jac_skip):
        dep = jac.abs().sum(dim=(0, 1, 3, 4))  # (T_out, T_in): |d out[:, :, i] / d x[:, :, j]|
        assert torch.all(dep.triu(1) == 0)  # nothing from the future
        assert torch.all(dep.diagonal() != 0)  # the present always matters
    dep_skip = jac_skip.abs().sum(dim=(0, 1, 3, 4))
    for i, j in itertools.product(range(t), range(t)):
        reachable = j <= i and (i - j) % dilation == 0 and (i - j) // dilation < k
        assert (dep_skip[i, j] != 0) == reachable, (i, j)


@pytest.mark.parametrize("case, biases", [
    (Case(2, 3, 4, 2, 0, 7, 3, 2), (True, True, True)),
    (Case(1, 2, 2, 3, 2, 5, 2, 1), (False, True, False)),
    (Case(1, 1, 2, 1, 1, 4, 2, 8), (True, False, True)),  # receptive field 9 > T
], ids=str)
def test_gradcheck_float64(case, biases, device):
    tensors = _inputs(case, torch.float64, device, biases=biases)
    idx = [i for i, t in enumerate(tensors) if t is not None]
    leaves = tuple(tensors[i].detach().clone().requires_grad_(True) for i in idx)

    def layer(*args):
        full = [None] * len(NAMES)
        for i, a in zip(idx, args):
            full[i] = a
        return _run(ops.wavenet_layer, full, case.dilation)

    assert torch.autograd.gradcheck(layer, leaves)


def _raw_args(case, device, save, requires_grad=False, cond=True, biases=True):
    tensors = _inputs(case, torch.float32, device, biases=(biases,) * 3)
    if not cond:
        tensors[7] = tensors[8] = None
    if requires_grad:
        tensors = [None if t is None else t.requires_grad_(True) for t in tensors]
    x, wd, bd, wr, br, ws, bs, c, wc = tensors
    return (x, wd, bd, wr, br, ws, bs, case.dilation, c, wc, save)


@needs_ext
def test_opcheck(device):
    case = Case(2, 3, 6, 5, 2, 11, 3, 2)
    samples = [
        (OPS.wavenet_layer.default, _raw_args(case, device, True, requires_grad=True)),
        (OPS.wavenet_layer.default, _raw_args(case, device, True, requires_grad=True, cond=False, biases=False)),
        (OPS.wavenet_layer.default, _raw_args(case, device, False)),
        (OPS.wavenet_layer.default, _raw_args(case, device, False, cond=False)),
    ]
    for op, args in samples:
        opcheck(op, args)
    x, wd, bd, wr, br, ws, bs, dilation, c, wc, _ = _raw_args(case, device, True)
    _, _, h = OPS.wavenet_layer(x, wd, bd, wr, br, ws, bs, dilation, c, wc, True)
    g = torch.Generator().manual_seed(2)
    grad_res = torch.randn(x.shape, generator=g).to(device)
    grad_skip = torch.randn(x.shape[0], ws.shape[0], x.shape[2], generator=g).to(device)
    opcheck(OPS.wavenet_layer_backward.default, (grad_res, grad_skip, x, h, wd, wr, ws, dilation, c, wc))


@needs_ext
def test_opcheck_backward_without_cond(device):
    case = Case(2, 3, 6, 5, 0, 11, 3, 2)
    x, wd, bd, wr, br, ws, bs, dilation, _, _, _ = _raw_args(case, device, True, cond=False)
    _, _, h = OPS.wavenet_layer(x, wd, bd, wr, br, ws, bs, dilation, None, None, True)
    grad_res, grad_skip = torch.randn_like(x), torch.randn(x.shape[0], ws.shape[0], x.shape[2], device=device)
    opcheck(OPS.wavenet_layer_backward.default, (grad_res, grad_skip, x, h, wd, wr, ws, dilation, None, None))


def test_torch_compile_fullgraph(device):
    case = Case(2, 3, 6, 4, 2, 33, 2, 4)
    tensors = _inputs(case, torch.float32, device)

    def f(*args):
        residual, skip = _run(ops.wavenet_layer, args, case.dilation)
        return torch.tanh(residual) * 2.0, skip.relu()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    leaves_c = [t.detach().clone().requires_grad_(True) for t in tensors]
    leaves_e = [t.detach().clone().requires_grad_(True) for t in tensors]
    out_c, out_e = compiled(*leaves_c), f(*leaves_e)
    for a, e in zip(out_c, out_e):
        torch.testing.assert_close(a, e)
    sum(o.sum() for o in out_c).backward()
    sum(o.sum() for o in out_e).backward()
    for name, a, e in zip(NAMES, leaves_c, leaves_e):
        torch.testing.assert_close(a.grad, e.grad, msg=lambda m: f"grad of {name}: {m}")


def test_torch_compile_inductor(device):
    case = Case(2, 3, 4, 5, 0, 29, 2, 2)
    tensors = _inputs(case, torch.float32, device)
    compiled = torch.compile(lambda *a: _run(ops.wavenet_layer, a, case.dilation), fullgraph=True)
    for a, e in zip(compiled(*tensors), _run(ops.wavenet_layer, tensors, case.dilation)):
        torch.testing.assert_close(a, e)


@needs_ext
def test_raw_op_without_saved_pre_activation_cannot_backward(device):
    case = Case(1, 2, 4, 3, 0, 9, 2, 1)
    args = _raw_args(case, device, False, requires_grad=True, cond=False)
    residual, skip, h = OPS.wavenet_layer(*args)
    assert h.shape == (0,)
    with pytest.raises(RuntimeError, match="save_pre_activation=False"):
        (residual.sum() + skip.sum()).backward()


# Python-side checks (fastgen.ops.wavenet_layer): each error names the argument.
X = torch.zeros(2, 3, 8)
WD = torch.zeros(6, 3, 2)
WR = torch.zeros(3, 3)
WS = torch.zeros(4, 3)
COND = torch.zeros(2, 2, 8)
WC = torch.zeros(6, 2)


def _call(x=X, wd=WD, bd=None, wr=WR, br=None, ws=WS, bs=None, dilation=1, cond=None, wc=None):
    return ops.wavenet_layer(x, wd, bd, wr, br, ws, bs, dilation=dilation, cond=cond, w_cond=wc)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(x=[1.0]), TypeError, "x must be a torch.Tensor"),
        (dict(x=X.long()), TypeError, "x must have a floating dtype"),
        (dict(x=X[0]), ValueError, "x must have 3 dimensions"),
        (dict(wd=WD[0]), ValueError, "w_dilated must have 3 dimensions"),
        (dict(wd=WD.double()), TypeError, "w_dilated must have the dtype of x"),
        (dict(wd=torch.zeros(6, 2, 2)), ValueError, "w_dilated must have C_res"),
        (dict(wd=torch.zeros(5, 3, 2)), ValueError, "w_dilated must have an even"),
        (dict(wd=torch.zeros(0, 3, 2)), ValueError, "w_dilated must have an even"),
        (dict(wd=torch.zeros(6, 3, 0)), ValueError, "kernel size K >= 1"),
        (dict(bd=torch.zeros(5)), ValueError, r"b_dilated must have shape \(C_out,\) = \(6,\)"),
        (dict(bd=torch.zeros(6).double()), TypeError, "b_dilated must have the dtype of x"),
        (dict(bd=torch.zeros(6).long()), TypeError, "b_dilated must have a floating dtype"),
        (dict(wr=torch.zeros(3)), ValueError, "w_res must have 2 dimensions"),
        (dict(wr=torch.zeros(3, 3, 2)), ValueError, "w_res must be a 1x1 convolution weight"),
        (dict(wr=torch.zeros(3, 4)), ValueError, "w_res must have 3 input channels"),
        (dict(wr=torch.zeros(2, 3)), ValueError, "w_res must have C_res = 3 output channels"),
        (dict(wr=WR.half()), TypeError, "w_res must have the dtype of x"),
        (dict(br=torch.zeros(4)), ValueError, r"b_res must have shape \(C_out,\) = \(3,\)"),
        (dict(ws=torch.zeros(4, 2)), ValueError, "w_skip must have 3 input channels"),
        (dict(ws=torch.zeros(4, 3, 3)), ValueError, "w_skip must be a 1x1 convolution weight"),
        (dict(ws=WS.int()), TypeError, "w_skip must have a floating dtype"),
        (dict(bs=torch.zeros(3)), ValueError, r"b_skip must have shape \(C_out,\) = \(4,\)"),
        (dict(dilation=0), ValueError, "dilation must be >= 1"),
        (dict(dilation=-2), ValueError, "dilation must be >= 1"),
        (dict(dilation=1.5), TypeError, "dilation must be an int"),
        (dict(dilation=2**62), ValueError, "dilation must keep"),
        (dict(dilation=True), TypeError, "dilation must be an int"),
        (dict(cond=COND), ValueError, "cond and w_cond must be given together"),
        (dict(wc=WC), ValueError, "cond and w_cond must be given together"),
        (dict(cond=COND[0], wc=WC), ValueError, "cond must have 3 dimensions"),
        (dict(cond=COND.double(), wc=WC), TypeError, "cond must have the dtype of x"),
        (dict(cond=torch.zeros(1, 2, 8), wc=WC), ValueError, "cond must have the batch and length of x"),
        (dict(cond=torch.zeros(2, 2, 7), wc=WC), ValueError, "cond must have the batch and length of x"),
        (dict(cond=COND, wc=torch.zeros(6, 3)), ValueError, "w_cond must have 2 input channels"),
        (dict(cond=COND, wc=torch.zeros(4, 2)), ValueError, "w_cond must have C_gate = 6 output channels"),
        (dict(cond=COND, wc=WC.double()), TypeError, "w_cond must have the dtype of x"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_names_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        _call(**kwargs)


def _raw(x=X, wd=WD, bd=None, wr=WR, br=None, ws=WS, bs=None, dilation=1, cond=None, wc=None, save=True):
    return OPS.wavenet_layer(x, wd, bd, wr, br, ws, bs, dilation, cond, wc, save)


def _raw_backward(gr=None, gs=None, x=X, h=None, wd=WD, wr=WR, ws=WS, dilation=1, cond=None, wc=None):
    gr = torch.zeros(2, 3, 8) if gr is None else gr
    gs = torch.zeros(2, 4, 8) if gs is None else gs
    h = torch.zeros(2, 6, 8) if h is None else h
    return OPS.wavenet_layer_backward(gr, gs, x, h, wd, wr, ws, dilation, cond, wc)


@needs_ext
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: _raw(x=X[0]), "x must have 3 dimensions"),
        (lambda: _raw(x=X.long(), wd=WD.long()), "x must be a floating-point"),
        (lambda: _raw(wd=WD.double()), "w_dilated must have the dtype of x"),
        (lambda: _raw(wd=torch.zeros(6, 2, 2)), "w_dilated must have C_res"),
        (lambda: _raw(wd=torch.zeros(5, 3, 2)), "w_dilated must have an even"),
        (lambda: _raw(wd=torch.zeros(6, 3, 0)), "kernel size K >= 1"),
        (lambda: _raw(bd=torch.zeros(5)), r"b_dilated must have shape \(6,\)"),
        (lambda: _raw(wr=torch.zeros(3, 3, 1)), "w_res must have 2 dimensions"),
        (lambda: _raw(wr=torch.zeros(3, 4)), "w_res must have shape"),
        (lambda: _raw(br=torch.zeros(3).double()), "b_res must have the dtype of x"),
        (lambda: _raw(ws=torch.zeros(4, 2)), "w_skip must have C_gate / 2 = 3"),
        (lambda: _raw(bs=torch.zeros(3)), r"b_skip must have shape \(4,\)"),
        (lambda: _raw(dilation=0), "dilation must be >= 1"),
        (lambda: _raw(cond=COND), "cond and w_cond must be given together"),
        (lambda: _raw(wc=WC), "cond and w_cond must be given together"),
        (lambda: _raw(cond=torch.zeros(2, 2, 7), wc=WC), "cond must have the batch and length of x"),
        (lambda: _raw(cond=COND, wc=torch.zeros(6, 3)), "w_cond must have shape"),
        (lambda: _raw_backward(gr=torch.zeros(2, 3, 7)), "grad_residual must be"),
        (lambda: _raw_backward(gs=torch.zeros(2, 5, 8)), "grad_skip must be"),
        (lambda: _raw_backward(h=torch.zeros(0)), "save_pre_activation=False"),
        (lambda: _raw_backward(h=torch.zeros(2, 4, 8)), "h must have shape"),
        (lambda: _raw_backward(h=torch.zeros(2, 6, 8).double()), "h must have the accumulation dtype"),
        (lambda: _raw_backward(dilation=0), "dilation must be >= 1"),
        (lambda: _raw_backward(cond=COND), "cond and w_cond must be given together"),
    ],
)
def test_direct_op_calls_are_checked_too(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()


@pytest.mark.parametrize("used", ["residual", "skip"])
def test_gradients_when_only_one_output_is_used(used, device):
    """Autograd gives no gradient for an unused output (the layer does not make zero tensors for
    its outputs up front): the backward supplies the zeros and matches the reference."""
    case = Case(2, 3, 4, 5, 2, 17, 3, 2)
    tensors = _inputs(case, torch.float64, device)
    pick = 0 if used == "residual" else 1
    grads = []
    for fn in (ops.wavenet_layer, reference.wavenet_layer):
        leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in tensors]
        out = _run(fn, leaves, case.dilation)[pick]
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out)).sum().backward()
        # the reference leaves the unused output's own weights without a gradient: zero
        grads.append([torch.zeros_like(t) if t.grad is None else t.grad for t in leaves if t is not None])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want)
