"""Precision of the Triton tile products: float32 follows ``torch.backends.cudnn.allow_tf32``.

PyTorch's float32 convolutions on a GPU use TF32 tensor cores unless that switch is off, and
fastgen's Triton convolutions do the same (MODE 3 of ``_common.mma``), so a user gets the
precision and speed class of ``nn.Conv2d``. The interpreter computes a TF32 ``tl.dot`` exactly,
so on a CPU the TF32 branch is checked for its plumbing (the products reach ``tl.dot`` and come
back right); on a GPU also for its rounding.
"""

import contextlib

import pytest
import torch
import triton.language as tl
from conv_cases import close
from triton_helpers import INTERPRET, device, use_large_blocks  # noqa: F401 (device: a fixture)

from fastgen.reference import conv as ref
from fastgen.triton_kernels import _common
from fastgen.triton_kernels import conv as conv_kernels
from fastgen.triton_kernels import gated_pixelcnn as pixel_kernels
from fastgen.triton_kernels import masked_conv as masked_kernels
from fastgen.triton_kernels import wavenet as wavenet_kernels


@contextlib.contextmanager
def _tf32(enabled: bool):
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("interpreting", [False, True])
def test_mode_follows_the_cudnn_tf32_switch(monkeypatch, interpreting):
    monkeypatch.setattr(_common, "interpreting", lambda: interpreting)
    with _tf32(True):
        tf32_mode = _common.mma_meta(torch.float32)["MODE"]
    with _tf32(False):
        ieee_mode = _common.mma_meta(torch.float32)["MODE"]
        half_mode = _common.mma_meta(torch.bfloat16)["MODE"]
    assert ieee_mode == 1
    assert tf32_mode == (1 if interpreting else 3)  # the interpreter is always exact
    assert half_mode == (1 if interpreting else 0)
    assert _common.mma_meta(torch.float64) == {"MODE": 2, "ACC": tl.float64}


def _force_tf32(monkeypatch, *modules):
    """Make the kernel modules pick MODE 3 for float32 even under the interpreter."""
    def meta(dtype):
        found = _common.mma_meta(dtype)
        return {**found, "MODE": 3} if dtype == torch.float32 else found
    for module in modules:
        monkeypatch.setattr(module, "mma_meta", meta)


def _rnd(g, *shape, fan_in=1, device="cpu"):
    return (torch.randn(*shape, generator=g) / fan_in ** 0.5).to(device)


def _grads(fn, leaves, grad_out):
    leaves = [t.detach().double().cpu().requires_grad_(True) for t in leaves]
    out = fn(*leaves)
    return out.detach(), torch.autograd.grad(out, leaves, grad_out.double().cpu())


@pytest.mark.skipif(not INTERPRET, reason="forcing MODE 3 on a GPU is what the TF32 test below does")
def test_tf32_branch_reaches_the_dot_products(monkeypatch):
    """Every kernel family with tile products, run with MODE 3 under the interpreter (exact):
    forward and backward equal the float64 reference to float32 rounding."""
    _force_tf32(monkeypatch, conv_kernels, masked_kernels, pixel_kernels, wavenet_kernels)
    use_large_blocks(monkeypatch, conv_kernels, BLOCK_O=32, BLOCK_C=32, BLOCK_T=128, WEIGHT_SPLIT=2)
    use_large_blocks(monkeypatch, masked_kernels, BLOCK_O=32, BLOCK_C=32, BLOCK_P=128, WEIGHT_SPLIT=2)
    use_large_blocks(monkeypatch, wavenet_kernels, BLOCK_O=32, BLOCK_C=32, BLOCK_G=32, BLOCK_T=128,
                     WEIGHT_SPLIT=2)
    g = torch.Generator().manual_seed(0)
    f32 = torch.float32

    x, w, gy = _rnd(g, 2, 5, 30), _rnd(g, 6, 5, 3, fan_in=15), _rnd(g, 2, 6, 30)
    want, want_grads = _grads(lambda a, b: ref.causal_conv1d(a, b, None, 2), (x, w), gy)
    close(conv_kernels.causal_conv1d(x, w, None, 2), want, f32)
    for got, expected in zip(conv_kernels.causal_conv1d_backward(gy, x, w, 2, [True, True, False]), want_grads):
        close(got, expected, f32)

    x, w, gy = _rnd(g, 2, 6, 5, 6), _rnd(g, 9, 6, 3, 3, fan_in=54), _rnd(g, 2, 9, 5, 6)
    options = ("B", 1, 1, 3)
    want, want_grads = _grads(lambda a, b: ref.masked_conv2d(a, b, None, *options), (x, w), gy)
    close(masked_kernels.masked_conv2d(x, w, None, *options), want, f32)
    got = masked_kernels.masked_conv2d_backward(gy, x, w, *options, [True, True, False])
    for got, expected in zip(got, want_grads):
        close(got, expected, f32)

    args = [_rnd(g, 2, 4, 20), _rnd(g, 8, 4, 2, fan_in=8), None, _rnd(g, 4, 4, fan_in=4), None,
            _rnd(g, 5, 4, fan_in=4), None]
    want_res, want_skip = ref.wavenet_layer(*[None if a is None else a.double() for a in args], 3)
    residual, skip, _ = wavenet_kernels.wavenet_layer(*args, 3, None, None, False)
    close(residual, want_res, f32)
    close(skip, want_skip, f32)


@pytest.mark.skipif(INTERPRET, reason="TF32 rounding exists only on a GPU")
def test_tf32_convolution_has_tf32_precision(device):
    """On a GPU with the switch on, the float32 masked convolution is as close to the float64
    reference as cuDNN's own TF32 convolution (10-bit mantissa), and with it off, IEEE-close."""
    g = torch.Generator().manual_seed(0)
    x, w = _rnd(g, 4, 64, 12, 12, device=device), _rnd(g, 64, 64, 3, 3, fan_in=576, device=device)
    want = ref.masked_conv2d(x.double(), w.double(), None, "B", 1, 1, 1)
    with _tf32(True):
        tf32 = masked_kernels.masked_conv2d(x, w, None, "B", 1, 1, 1)
        cudnn_tf32 = ref.masked_conv2d(x, w, None, "B", 1, 1, 1)
    with _tf32(False):
        ieee = masked_kernels.masked_conv2d(x, w, None, "B", 1, 1, 1)
    tf32_err = float((tf32.double() - want).abs().max())
    cudnn_err = float((cudnn_tf32.double() - want).abs().max())
    assert float((ieee.double() - want).abs().max()) < 1e-4
    assert tf32_err < max(4 * cudnn_err, 1e-4)
    assert tf32_err < 2e-2
