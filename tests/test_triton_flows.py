"""Triton kernels of the flow ops (affine/additive coupling, ActNorm) against the plain-PyTorch
reference; backward kernels against torch.autograd of the reference in float64.

Without a GPU the kernels run on CPU tensors in Triton's interpreter (set up by ``triton_helpers``,
imported before the kernels); with one they run compiled on CUDA tensors.
"""

import pytest
import torch
from flow_helpers import float64_reference_grads
from triton_helpers import DTYPES, device, use_large_blocks  # noqa: F401 (device: a fixture)

from fastgen.reference import flows as ref
from fastgen.triton_kernels import flows as tk

SCALES = ref.SCALE_MAPS
CLAMP = 1.7  # not a float32 value: float64 results check the two-word clamp
# (rtol, atol) per output dtype, for comparisons with float64 math rounded to the output dtype.
TOL = {
    torch.float32: (2e-5, 2e-5),
    torch.float64: (1e-10, 1e-10),
    torch.float16: (3e-3, 3e-3),
    torch.bfloat16: (1e-2, 1e-2),
}
COUPLING_SHAPES = [(3, 37), (2, 3, 5), (2, 3, 4, 5)]  # rank 2..4, odd sizes
ACTNORM_SHAPES = [(5, 3), (3, 4, 7), (2, 3, 5, 6)]


@pytest.fixture(autouse=True)
def _large_blocks(monkeypatch):
    use_large_blocks(monkeypatch, tk, BLOCK=4096, ADDITIVE_BLOCK=4096)


def close(actual, expected, dtype):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert actual.is_contiguous()
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol)


def randn(shape, dtype, device, g, scale=1.0):
    return (torch.randn(shape, generator=g) * scale).to(dtype=dtype, device=device)


def acc_dtype(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


# ------------------------------------------------------------------------ affine coupling


def coupling_inputs(shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, shift, raw, grad_y = (randn(shape, dtype, device, g) for _ in range(4))
    grad_logdet = randn(shape[:1], acc_dtype(dtype), device, g)
    return x, shift, raw, grad_y, grad_logdet


def check_affine(x, shift, raw, grad_y, grad_logdet, reverse, scale, dtype, clamp=CLAMP):
    y, logdet = tk.affine_coupling(x, shift, raw, reverse, scale, clamp)
    expected_y, expected_logdet = ref.affine_coupling(x, shift, raw, reverse, scale, clamp)
    close(y, expected_y, dtype)
    close(logdet, expected_logdet, dtype)
    grads = tk.affine_coupling_backward(grad_y, grad_logdet, x, shift, raw, reverse, scale, clamp)
    expected = float64_reference_grads(lambda a, b, c: ref.affine_coupling(a, b, c, reverse, scale, clamp),
                                  (x, shift, raw), grad_y, grad_logdet)
    for actual, exp in zip(grads, expected):
        close(actual, exp.to(dtype), dtype)


@pytest.mark.parametrize("shape", COUPLING_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_affine_coupling(shape, dtype, scale, reverse, device):
    check_affine(*coupling_inputs(shape, dtype, device), reverse, scale, dtype)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_affine_coupling_backward_without_grad_logdet(scale, reverse, device):
    x, shift, raw, grad_y, _ = coupling_inputs((4, 9), torch.float32, device)
    check_affine(x, shift, raw, grad_y, None, reverse, scale, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("scale", ["tanh_clamp", "sigmoid"])
def test_log_scale_maps_are_accurate_and_finite(dtype, scale, device):
    # One element per sample, so logdet[n] = s(raw[n]) and grad_log_scale[n] = ds/draw(raw[n]):
    # relative accuracy from tiny to huge raw (tanh's Taylor branch and its edge at |raw| = clamp / 16,
    # log1p of a tiny exp), and no overflow for any finite raw.
    values = [-1e4, -100.0, -30.0, -5.0, -2.0, -0.2, -0.12, -1e-3, -1e-7, 0.0, 1e-6, 0.1, 0.13, 1.0, 5.0,
              30.0, 60.0, 1e4]
    raw = torch.tensor(values, dtype=dtype, device=device)[:, None]
    zeros = torch.zeros_like(raw)
    rtol = 1e-13 if dtype == torch.float64 else 2e-6
    _, logdet = tk.affine_coupling(zeros, zeros, raw, False, scale, 2.0)
    raw64 = raw.double()
    s = ref.coupling_log_scale(raw64, scale, 2.0)[:, 0]
    # ds/draw in closed forms without cancellation (autograd's 1 - tanh^2 loses it for large |raw|).
    ds = torch.cosh(raw64 / 2.0) ** -2 if scale == "tanh_clamp" else torch.sigmoid(-(raw64 + 2.0))
    assert torch.isfinite(logdet).all()
    torch.testing.assert_close(logdet.double(), s, rtol=rtol, atol=1e-300)
    ones = torch.ones(raw.shape[0], dtype=dtype, device=device)
    _, _, grad_raw = tk.affine_coupling_backward(zeros, ones, zeros, zeros, raw, False, scale, 2.0)
    assert torch.isfinite(grad_raw).all()
    # float32 ds of a huge |raw| underflows (exp(-60) in float32 is fine, exp(-1e4) is 0).
    atol = 1e-300 if dtype == torch.float64 else 1e-37
    torch.testing.assert_close(grad_raw.double(), ds, rtol=rtol, atol=atol)
    # Reverse: logdet is -s; grads finite where exp(-s) is (all of tanh_clamp's).
    if scale == "tanh_clamp":
        _, logdet_rev = tk.affine_coupling(zeros, zeros, raw, True, scale, 2.0)
        torch.testing.assert_close(logdet_rev, -logdet, rtol=0, atol=0)
        grads = tk.affine_coupling_backward(zeros, ones, zeros, zeros, raw, True, scale, 2.0)
        assert torch.isfinite(grads[2]).all()


# ------------------------------------------------------------------------ additive coupling


@pytest.mark.parametrize("shape", COUPLING_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_additive_coupling(shape, dtype, reverse, device):
    x, shift = coupling_inputs(shape, dtype, device)[:2]
    close(tk.additive_coupling(x, shift, reverse), ref.additive_coupling(x, shift, reverse), dtype)


# ------------------------------------------------------------------------ ActNorm


def actnorm_inputs(shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, grad_y = randn(shape, dtype, device, g), randn(shape, dtype, device, g)
    bias, log_scale = randn(shape[1:2], dtype, device, g), randn(shape[1:2], dtype, device, g, 0.5)
    grad_logdet = randn(shape[:1], acc_dtype(dtype), device, g)
    return x, bias, log_scale, grad_y, grad_logdet


def check_actnorm(x, bias, log_scale, grad_y, grad_logdet, reverse, dtype):
    y, logdet = tk.actnorm(x, bias, log_scale, reverse)
    expected_y, expected_logdet = ref.actnorm(x, bias, log_scale, reverse)
    close(y, expected_y, dtype)
    close(logdet, expected_logdet, dtype)
    grads = tk.actnorm_backward(grad_y, grad_logdet, x, bias, log_scale, reverse)
    expected = float64_reference_grads(lambda a, b, c: ref.actnorm(a, b, c, reverse), (x, bias, log_scale),
                                  grad_y, grad_logdet)
    for actual, exp in zip(grads, expected):
        close(actual, exp.to(dtype), dtype)


@pytest.mark.parametrize("shape", ACTNORM_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_actnorm(shape, dtype, reverse, device):
    check_actnorm(*actnorm_inputs(shape, dtype, device), reverse, dtype)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_actnorm_backward_without_grad_logdet(reverse, device):
    x, bias, log_scale, grad_y, _ = actnorm_inputs((3, 4, 5), torch.float32, device)
    check_actnorm(x, bias, log_scale, grad_y, None, reverse, torch.float32)


# ------------------------------------------------------------------------ layouts and sizes


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_many_programs(reverse, device, monkeypatch):
    # Small tiles: several row, column, channel and sample blocks, and the ActNorm backward's
    # sample blocks split among several programs (more than one partial per channel).
    monkeypatch.setattr(tk, "BLOCK", 64)
    monkeypatch.setattr(tk, "ADDITIVE_BLOCK", 64)
    monkeypatch.setattr(tk, "TARGET_PROGRAMS", 8)
    for shape in [(9, 37), (70, 1), (2, 3, 50)]:
        check_affine(*coupling_inputs(shape, torch.float64, device), reverse, "tanh_clamp", torch.float64)
        x, shift = coupling_inputs(shape, torch.float32, device)[:2]
        expected = ref.additive_coupling(x, shift, reverse)
        close(tk.additive_coupling(x, shift, reverse), expected, torch.float32)
    for shape in [(40, 3, 5), (9, 70), (5, 3, 9, 11), (3, 2, 200)]:
        check_actnorm(*actnorm_inputs(shape, torch.float64, device), reverse, torch.float64)


def test_non_contiguous(device):
    x, shift, raw, grad_y = (t.transpose(0, 1) for t in coupling_inputs((9, 4), torch.float32, device)[:4])
    assert not x.is_contiguous()
    grad_logdet = torch.randn(8, device=device)[::2]
    for scale in SCALES:
        check_affine(x, shift, raw, grad_y, grad_logdet, True, scale, torch.float32)
    close(tk.additive_coupling(x, shift, False), ref.additive_coupling(x, shift, False), torch.float32)
    x, bias, log_scale, grad_y, _ = actnorm_inputs((5, 6, 3, 4), torch.float32, device)
    x, grad_y = x.permute(3, 1, 0, 2), grad_y.permute(3, 1, 0, 2)  # (4, 6, 5, 3), not contiguous
    bias, log_scale = torch.randn(12, device=device)[::2], torch.randn(12, device=device)[1::2]
    for reverse in (False, True):
        check_actnorm(x, bias, log_scale, grad_y, torch.randn(8, device=device)[::2], reverse, torch.float32)


@pytest.mark.parametrize("shape", [(0, 5), (4, 0), (0, 3, 2), (2, 3, 0)], ids=str)
def test_empty(shape, device):
    x, shift, raw, grad_y, grad_logdet = coupling_inputs(shape, torch.float32, device)
    # Checked directly: the reference's per-sample sum cannot reshape an empty batch.
    for scale in SCALES:
        for reverse, gl in ((False, grad_logdet), (True, None)):
            y, logdet = tk.affine_coupling(x, shift, raw, reverse, scale, CLAMP)
            close(y, torch.empty_like(x), torch.float32)
            close(logdet, torch.zeros(shape[0], device=device), torch.float32)
            for grad in tk.affine_coupling_backward(grad_y, gl, x, shift, raw, reverse, scale, CLAMP):
                close(grad, torch.empty_like(x), torch.float32)
    assert tk.additive_coupling(x, shift, True).shape == shape
    for reverse in (False, True):
        check_actnorm(*actnorm_inputs(shape, torch.float32, device), reverse, torch.float32)


def test_bad_arguments(device):
    x = torch.zeros(2, 3, device=device)
    with pytest.raises(ValueError, match="scale"):
        tk.affine_coupling(x, x, x, False, "softplus", 2.0)
    with pytest.raises(ValueError, match="clamp"):
        tk.affine_coupling(x, x, x, False, "tanh_clamp", 0.0)
    with pytest.raises(ValueError, match="shift"):
        tk.affine_coupling(x, x[:1], x, False, "exp", 2.0)
    with pytest.raises(ValueError, match="grad_logdet"):
        tk.affine_coupling_backward(x, torch.zeros(3, device=device), x, x, x, False, "exp", 2.0)
    with pytest.raises(ValueError, match="bias"):
        tk.actnorm(x, torch.zeros(2, device=device), torch.zeros(3, device=device), False)
