"""Likelihood units and the per-pixel histogram baseline.

Bits/dim always refers to the *discrete* data: the negative log-likelihood of the integer levels
of one image, divided by ``dims * ln 2``. A density model trained on dequantized inputs
``y = (x + u) / levels`` (``u ~ U[0, 1)``, ``y`` in [0, 1]^D) gives an upper bound on the discrete
NLL of ``-log p(y) + dims * log(levels)`` nats: add that term before converting.
"""

from __future__ import annotations

import math

import torch

__all__ = ["histogram_baseline", "nats_to_bits_per_dim"]


def nats_to_bits_per_dim(nll_nats, dims: int):
    """Convert a negative log-likelihood per image from nats to bits per dimension.

    Parameters
    ----------
    nll_nats : float or Tensor
        NLL of one image (or a tensor of them, any shape), in nats.
    dims : int
        Dimensions per image, ``C * H * W``.

    Returns
    -------
    float or Tensor
        ``nll_nats / (dims * ln 2)``, same type and shape as ``nll_nats``.
    """
    if dims <= 0:
        raise ValueError(f"dims must be positive, got {dims}")
    return nll_nats / (dims * math.log(2.0))


def _check_levels(name: str, x: torch.Tensor, levels: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8:
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a uint8 tensor of integer levels, got {got}")
    if x.dim() != 4 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, C, H, W) with N > 0, got {tuple(x.shape)}")
    if int(x.max()) >= levels:
        raise ValueError(f"{name} has a value {int(x.max())} >= levels={levels}")
    return x.reshape(x.shape[0], -1).long()


def histogram_baseline(train: torch.Tensor, test: torch.Tensor, levels: int, *, alpha: float = 1.0) -> dict:
    """NLL of ``test`` under independent per-pixel categoricals fitted on ``train``.

    Each dimension ``d`` gets its own distribution over the ``levels`` values, estimated with
    add-``alpha`` smoothing: ``p_d(v) = (count_d(v) + alpha) / (N_train + alpha * levels)``.
    The smoothing keeps a level never seen in training at a finite cost. Any generative model
    worth its parameters must beat this number, since it ignores all pixel correlations.

    Parameters
    ----------
    train, test : Tensor
        uint8, shape (N, C, H, W), values in ``[0, levels - 1]``; the same (C, H, W).
    levels : int
        Number of discrete levels (17 for the sklearn digits, 256 for 8-bit images).
    alpha : float
        Pseudo-count added to every level of every dimension (1.0 = Laplace), > 0.

    Returns
    -------
    dict
        ``nll_nats``: mean NLL per test image in nats (float);
        ``bits_per_dim``: the same in bits per dimension (float).
    """
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if train.shape[1:] != test.shape[1:]:
        raise ValueError(
            f"train and test image shapes differ: {tuple(train.shape[1:])} vs {tuple(test.shape[1:])}"
        )
    tr = _check_levels("train", train, levels)
    te = _check_levels("test", test, levels)
    n, dims = tr.shape
    # Counts of every (dimension, level) pair in one bincount over flat indices d * levels + v.
    offsets = torch.arange(dims) * levels
    counts = torch.bincount((tr + offsets).reshape(-1), minlength=dims * levels).reshape(dims, levels)
    log_p = torch.log(counts.double() + alpha) - math.log(n + alpha * levels)
    # Gather log p_d(x_d) for every test image and dimension, sum over dimensions.
    nll = -log_p.reshape(-1)[te + offsets].sum(dim=1).mean().item()
    return {"nll_nats": nll, "bits_per_dim": nats_to_bits_per_dim(nll, dims)}
