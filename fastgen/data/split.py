"""A deterministic train/test split (stratified by label when there are labels).

The split depends only on N, the labels, ``test_fraction`` and ``seed`` (numpy's PCG64), never on
global random state, so the same call gives the same split on every machine and every run.
"""

from __future__ import annotations

import math

import numpy as np

from fastgen.data.errors import DataError


def check_test_fraction(test_fraction: float) -> float:
    """Return ``test_fraction`` as a float, or raise :class:`DataError` unless 0 < f < 1."""
    try:
        f = float(test_fraction)
    except (TypeError, ValueError):
        raise DataError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}") from None
    if not 0.0 < f < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    return f


def split_indices(
    n: int, labels: np.ndarray | None, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a train/test split.

    Parameters
    ----------
    n : int
        Number of items (at least 2).
    labels : np.ndarray or None
        int64 (N,). With labels the split is stratified: each class gives its share of the test
        set (largest-remainder rounding, so the total is exact).
    test_fraction : float
        In (0, 1). The test set has ``round(n * test_fraction)`` items, clipped to [1, n - 1].
    seed : int
        Seed of the numpy generator that shuffles.

    Returns
    -------
    train, test : np.ndarray
        int64 index arrays, each sorted ascending (so the split keeps the source order).
    """
    f = check_test_fraction(test_fraction)
    if n < 2:
        raise DataError(f"need at least 2 images to make a train/test split, found {n}")
    n_test = min(max(math.floor(n * f + 0.5), 1), n - 1)
    rng = np.random.default_rng(seed)
    if labels is None:
        test = rng.permutation(n)[:n_test]
    else:
        classes, counts = np.unique(labels, return_counts=True)
        quota = counts * (n_test / n)
        take = np.floor(quota).astype(np.int64)
        # Hand out the remaining test slots to the largest fractional parts (ties: lower class).
        order = np.argsort(-(quota - take), kind="stable")
        take[order[: n_test - int(take.sum())]] += 1
        test = np.concatenate(
            [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
        )
    mask = np.zeros(n, dtype=bool)
    mask[test] = True
    return np.flatnonzero(~mask).astype(np.int64), np.flatnonzero(mask).astype(np.int64)
