"""Dtypes, tolerances and the comparison shared by the tests of the convolution-family ops
(causal_conv1d, masked_conv2d, wavenet_layer) and their Triton kernels."""

from __future__ import annotations

import torch

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
# (rtol, atol relative to the largest expected magnitude) vs the float64 reference on the same
# (rounded) inputs: the kernels accumulate in float32 (float64) and round each output once.
TOL = {
    torch.float32: (1e-4, 1e-5),
    torch.float16: (3e-3, 3e-3),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float64: (1e-10, 1e-12),
}


def close(actual, expected, dtype, name="", tol=TOL):
    """``actual`` (of ``dtype``, on any device) matches the float64 ``expected`` to ``tol[dtype]``,
    atol scaled by the largest expected magnitude; ``name`` labels a failure."""
    assert actual.dtype == dtype, name
    assert actual.shape == expected.shape, name
    rtol, atol = tol[dtype]
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual.detach().double().cpu(), expected.detach(), rtol=rtol,
                               atol=atol * scale, msg=(lambda m: f"{name}: {m}") if name else None)


def assert_compiled_op_matches_eager(compiled, eager, tensors):
    """On fresh leaf copies of ``tensors``, ``compiled`` and ``eager`` (one tensor out) give the same
    output and the same gradients of its sum."""
    leaves_c = [t.detach().clone().requires_grad_(True) for t in tensors]
    leaves_e = [t.detach().clone().requires_grad_(True) for t in tensors]
    y_c, y_e = compiled(*leaves_c), eager(*leaves_e)
    torch.testing.assert_close(y_c, y_e)
    y_c.sum().backward()
    y_e.sum().backward()
    for a, e in zip(leaves_c, leaves_e):
        torch.testing.assert_close(a.grad, e.grad)
