"""Triton kernels of causal_conv1d against the plain-PyTorch reference.

Without a GPU the kernels run on CPU tensors in Triton's interpreter (set up by ``triton_helpers``,
imported before the kernels); with one they run compiled on CUDA tensors.
"""

import pytest
import torch
from conv_cases import close
from triton_helpers import DTYPES, device, use_large_blocks  # noqa: F401 (device: a fixture)

from fastgen.reference import conv as ref
from fastgen.triton_kernels import conv as tk

# (N, C_in, C_out, T, K, dilation)
SHAPES = [
    (2, 3, 5, 37, 3, 2),
    (1, 1, 1, 1, 1, 1),
    (3, 4, 1, 5, 5, 4),  # receptive field 17 > T
    (1, 33, 40, 150, 2, 7),  # more than one channel and time block
]


@pytest.fixture(autouse=True)
def _large_blocks(monkeypatch):
    use_large_blocks(monkeypatch, tk, BLOCK_O=32, BLOCK_C=32, BLOCK_T=128, WEIGHT_SPLIT=2)


def _inputs(shape, dtype, device):
    n, c_in, c_out, t, k, _ = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c_in, t, generator=g).to(dtype=dtype, device=device)
    w = (torch.randn(c_out, c_in, k, generator=g) / (c_in * k) ** 0.5).to(dtype=dtype, device=device)
    b = torch.randn(c_out, generator=g).to(dtype=dtype, device=device)
    gy = torch.randn(n, c_out, t, generator=g).to(dtype=dtype, device=device)
    return x, w, b, gy


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_and_backward_match_reference(shape, dtype, device):
    x, w, b, gy = _inputs(shape, dtype, device)
    dilation = shape[-1]
    leaves = [t.detach().double().cpu().requires_grad_(True) for t in (x, w, b)]
    expected = ref.causal_conv1d(*leaves, dilation)
    expected.backward(gy.double().cpu())
    close(tk.causal_conv1d(x, w, b, dilation), expected.detach(), dtype)
    close(tk.causal_conv1d(x, w, None, dilation), ref.causal_conv1d(*leaves[:2], None, dilation).detach(), dtype)
    grads = tk.causal_conv1d_backward(gy, x, w, dilation, [True, True, True])
    for actual, leaf in zip(grads, leaves):
        close(actual, leaf.grad, dtype)


def test_output_mask_and_non_contiguous(device):
    x, w, b, gy = _inputs((2, 3, 4, 20, 3, 2), torch.float32, device)
    xt = x.transpose(1, 2).contiguous().transpose(1, 2)
    wt = w.permute(2, 0, 1).contiguous().permute(1, 2, 0)
    assert not xt.is_contiguous() and not wt.is_contiguous()
    close(tk.causal_conv1d(xt, wt, b, 2), ref.causal_conv1d(x.double().cpu(), w.double().cpu(), b.double().cpu(), 2),
          torch.float32)
    grad_x, grad_w, grad_b = tk.causal_conv1d_backward(gy, xt, wt, 2, [False, True, False])
    assert grad_x.shape == (0,) and grad_b.shape == (0,) and grad_w.shape == w.shape


def test_bad_input():
    x = torch.zeros(2, 3, 8)
    with pytest.raises(ValueError, match="dilation must be >= 1"):
        tk.causal_conv1d(x, torch.zeros(4, 3, 2), None, 0)
    with pytest.raises(ValueError, match="weight"):
        tk.causal_conv1d(x, torch.zeros(4, 2, 2), None, 1)
