"""Triton kernels of masked_conv2d against the plain-PyTorch reference.

Without a GPU the kernels run on CPU tensors in Triton's interpreter (set up by ``triton_helpers``,
imported before the kernels); with one they run compiled on CUDA tensors.
"""

import itertools

import pytest
import torch
from conv_cases import close
from triton_helpers import DTYPES, device, use_large_blocks  # noqa: F401 (device: a fixture)

from fastgen.reference import conv as ref
from fastgen.triton_kernels import masked_conv as tk

# (N, C_in, C_out, H, W, KH, KW, dilation, groups, color_channels, mask_type)
CASES = [
    (2, 3, 5, 6, 7, 3, 3, 1, 1, 1, "A"),
    (2, 3, 5, 6, 7, 3, 3, 1, 1, 1, "B"),
    (1, 1, 1, 5, 4, 5, 5, 2, 1, 1, "B"),  # single channels, dilation 2
    (2, 4, 6, 7, 1, 7, 7, 1, 2, 1, "A"),  # W = 1, groups 2
    (1, 10, 6, 5, 6, 5, 3, 2, 2, 1, "B"),  # rectangular 5x3, groups 2, odd channels per group
    (1, 6, 9, 1, 8, 3, 5, 2, 1, 3, "B"),  # H = 1, rectangular 3x5, RGB mask
    (2, 6, 3, 5, 5, 3, 3, 1, 1, 3, "A"),  # RGB mask A, one output channel per colour
    (1, 3, 3, 6, 6, 7, 7, 2, 1, 3, "B"),  # RGB, one input channel per colour
    (2, 3, 4, 4, 5, 1, 1, 1, 1, 1, "B"),  # 1x1 "B": the centre tap only
    (1, 3, 4, 4, 5, 1, 1, 1, 1, 1, "A"),  # 1x1 "A": no tap at all, bias only
    (1, 6, 6, 4, 4, 1, 1, 1, 1, 3, "A"),  # 1x1 RGB "A": the masked centre only
    (1, 40, 36, 12, 13, 3, 3, 1, 1, 1, "B"),  # more than one channel and pixel block
]


@pytest.fixture(autouse=True)
def _large_blocks(monkeypatch):
    use_large_blocks(monkeypatch, tk, BLOCK_O=32, BLOCK_C=32, BLOCK_P=128, WEIGHT_SPLIT=2)


def _inputs(case, dtype, device):
    n, c_in, c_out, h, w, kh, kw, _, groups, _, _ = case
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c_in, h, w, generator=g).to(dtype=dtype, device=device)
    wt = (torch.randn(c_out, c_in // groups, kh, kw, generator=g) / (c_in // groups * kh * kw) ** 0.5)
    b = torch.randn(c_out, generator=g).to(dtype=dtype, device=device)
    gy = torch.randn(n, c_out, h, w, generator=g).to(dtype=dtype, device=device)
    return x, wt.to(dtype=dtype, device=device), b, gy


def _options(case):
    *_, dilation, groups, colour, mask_type = case
    return mask_type, dilation, groups, colour


def _mask(weight, case):
    mask_type, _, groups, colour = _options(case)
    return ref.masked_conv2d_mask(weight.shape, mask_type, colour, groups).to(weight.device) == 0


def _expected(x, w, b, gy, options):
    leaves = [t.detach().double().cpu().requires_grad_(True) for t in (x, w, b)]
    y = ref.masked_conv2d(*leaves, *options)
    y.backward(gy.double().cpu())
    return y.detach(), [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_and_backward_match_reference(case, dtype, device):
    x, w, b, gy = _inputs(case, dtype, device)
    options = _options(case)
    expected, grads = _expected(x, w, b, gy, options)
    # The masked weight entries are never read: poisoning them changes nothing.
    masked = _mask(w, case)
    poisoned = w.masked_fill(masked, float("nan"))
    close(tk.masked_conv2d(x, poisoned, b, *options), expected, dtype)
    close(tk.masked_conv2d(x, poisoned, None, *options),
          ref.masked_conv2d(x.double().cpu(), w.double().cpu(), None, *options), dtype)
    actual = tk.masked_conv2d_backward(gy, x, poisoned, *options, [True, True, True])
    for a, e in zip(actual, grads):
        close(a, e, dtype)
    # masked weight entries get exactly zero gradient, by construction
    assert (actual[1][masked] == 0).all()


@pytest.mark.parametrize("layout", ["channels_last", "transposed"])
def test_non_contiguous_inputs(layout, device):
    case = (2, 4, 6, 5, 7, 3, 5, 2, 2, 1, "B")
    x, w, b, gy = _inputs(case, torch.float32, device)
    options = _options(case)
    expected, grads = _expected(x, w, b, gy, options)
    if layout == "channels_last":
        xs, ws, gys = (t.to(memory_format=torch.channels_last) for t in (x, w, gy))
    else:
        xs, ws, gys = (t.transpose(2, 3).contiguous().transpose(2, 3) for t in (x, w, gy))
    assert not xs.is_contiguous() and not ws.is_contiguous() and not gys.is_contiguous()
    close(tk.masked_conv2d(xs, ws, b, *options), expected, torch.float32)
    for a, e in zip(tk.masked_conv2d_backward(gys, xs, ws, *options, [True, True, True]), grads):
        close(a, e, torch.float32)


OUTPUT_MASKS = [list(m) for m in itertools.product([False, True], repeat=3)]


@pytest.mark.parametrize("output_mask", OUTPUT_MASKS, ids=str)
def test_output_mask(output_mask, device):
    case = (2, 6, 6, 4, 5, 3, 3, 1, 1, 3, "A")
    x, w, b, gy = _inputs(case, torch.float32, device)
    options = _options(case)
    _, grads = _expected(x, w, b, gy, options)
    actual = tk.masked_conv2d_backward(gy, x, w, *options, output_mask)
    for wanted, a, e in zip(output_mask, actual, grads):
        if wanted:
            close(a, e, torch.float32)
        else:
            assert a.shape == (0,) and a.dtype == torch.float32 and a.device == x.device


@pytest.mark.parametrize("shape", [(0, 3, 4, 5), (2, 3, 0, 5)], ids=str)
def test_empty_input(shape, device):
    x = torch.zeros(shape, device=device)
    w = torch.ones(4, 3, 3, 3, device=device)
    b = torch.arange(4.0, device=device)
    y = tk.masked_conv2d(x, w, b, "B", 1, 1, 1)
    assert y.shape == (shape[0], 4, shape[2], shape[3])
    grad_x, grad_w, grad_b = tk.masked_conv2d_backward(
        torch.zeros(y.shape, device=device), x, w, "B", 1, 1, 1, [True, True, True])
    assert grad_x.shape == x.shape and (grad_w == 0).all() and grad_w.shape == w.shape
    assert (grad_b == 0).all() and grad_b.shape == (4,)


def test_bad_input():
    x = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="odd"):
        tk.masked_conv2d(x, torch.zeros(4, 3, 2, 3), None, "A", 1, 1, 1)
    with pytest.raises(ValueError, match="mask_type"):
        tk.masked_conv2d(x, torch.zeros(4, 3, 3, 3), None, "C", 1, 1, 1)
    with pytest.raises(ValueError, match="groups"):
        tk.masked_conv2d(x, torch.zeros(4, 3, 3, 3), None, "A", 1, 2, 1)
    with pytest.raises(ValueError, match="color_channels"):
        tk.masked_conv2d(x, torch.zeros(4, 3, 3, 3), None, "A", 1, 1, 2)
    with pytest.raises(ValueError, match=">= 1"):
        tk.masked_conv2d(x, torch.zeros(4, 3, 3, 3), None, "A", 0, 1, 1)
    with pytest.raises(ValueError, match="grad_y"):
        tk.masked_conv2d_backward(torch.zeros(2, 4, 8, 7), x, torch.zeros(4, 3, 3, 3), "A", 1, 1, 1,
                                  [True, True, True])
