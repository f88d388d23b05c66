"""Dtypes, tolerances and checks shared by the tests of the fastgen.nn layers, which are compared
with plain torch.nn layers in the same dtype."""

from __future__ import annotations

import torch

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}


def assert_compiled_layers_match_eager(compiled, eager, args, params):
    """``compiled(*args)`` equals ``eager(*args)``, and so do their gradients with respect to ``params``."""
    out_c = compiled(*args)
    grads_c = torch.autograd.grad(out_c, params)
    out_e = eager(*args)
    grads_e = torch.autograd.grad(out_e, params)
    torch.testing.assert_close(out_c, out_e)
    for a, e in zip(grads_c, grads_e):
        torch.testing.assert_close(a, e)
