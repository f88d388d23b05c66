"""Bad input to the Gaussian ops raises an error that names the argument."""

from __future__ import annotations

import pytest
import torch

from fastgen import nn, ops

X = torch.zeros(2, 3)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: ops.reparameterize(X.long(), X), TypeError, "mu must have a floating dtype"),
        (lambda: ops.reparameterize(X, X.int()), TypeError, "logvar must have a floating dtype"),
        (lambda: ops.reparameterize(X, X.double()), TypeError, "logvar must have the dtype of mu"),
        (lambda: ops.reparameterize(X, torch.zeros(3, 2)), ValueError, "logvar must have the shape of mu"),
        (lambda: ops.reparameterize(X, X, torch.zeros(2, 4)), ValueError, "eps must have the shape of mu"),
        (lambda: ops.reparameterize(X, X, X.half()), TypeError, "eps must have the dtype of mu"),
        (lambda: ops.reparameterize(X, X, generator=3), TypeError, "generator must be a torch.Generator"),
        (lambda: ops.reparameterize([1.0], X), TypeError, "mu must be a torch.Tensor"),
        (lambda: ops.reparameterize(torch.tensor(1.0), torch.tensor(0.0)), ValueError, "mu must have at least 1"),
        (lambda: ops.gaussian_kl(X, X[:, :2]), ValueError, "logvar must have the shape of mu"),
        (lambda: ops.reparameterize_with_kl(X.bool(), X), TypeError, "mu must have a floating dtype"),
        (lambda: ops.standard_normal_log_prob(X.long()), TypeError, "z must have a floating dtype"),
        (lambda: ops.standard_normal_log_prob(torch.tensor(0.5)), ValueError, "z must have at least 1"),
        (lambda: nn.GaussianReparameterization()(X, X[:1]), ValueError, "logvar must have the shape"),
    ],
)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: torch.ops.fastgen.reparameterize(X, X, None, None), "exactly one of eps"),
        (lambda: torch.ops.fastgen.reparameterize(X, X, X, torch.tensor(1)), "exactly one of eps"),
        (lambda: torch.ops.fastgen.reparameterize(X, X, None, torch.tensor([1, 2])), "seed must be a 0-dim int64"),
        (lambda: torch.ops.fastgen.reparameterize(X, X, None, torch.tensor(1.0)), "seed must be a 0-dim int64"),
        (lambda: torch.ops.fastgen.gaussian_kl(X.long(), X.long()), "mu must be a floating-point"),
        (lambda: torch.ops.fastgen.gaussian_kl(X, X.double()), "logvar must have the dtype of mu"),
        (lambda: torch.ops.fastgen.reparameterize_backward(X, torch.zeros(3), X, X, X, None), "grad_kl must have shape"),
        (lambda: torch.ops.fastgen.reparameterize_backward(X[:1], None, X, X, X, None), "grad_z must have the shape"),
        (lambda: torch.ops.fastgen.standard_normal_log_prob_backward(torch.zeros(5), X), "grad must have shape"),
    ],
)
def test_direct_op_calls_are_checked_too(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()
