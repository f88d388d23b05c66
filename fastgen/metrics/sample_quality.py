"""Sample quality for digits-shaped images: Fréchet distance and class coverage.

The feature space is the 128-d penultimate layer of the shipped
:class:`~fastgen.metrics.classifier.DigitClassifier` (an FID for 8x8 digits). Like FID the
estimate is biased upwards for small sets and depends on their sizes, so compare models with
the same number of samples and the same reference set. The floor a perfect generator reaches,
the distance between the train (1438) and test (359) splits, is
:func:`frechet_floor_train_vs_test`: 0.317 with the shipped weights. For scale, the test
split shifted right by one pixel scores about 1.5 against the train split, and uniform noise
about 27.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from fastgen.metrics.classifier import DIGITS_LEVELS, digits_train_test_split, load_digits_classifier

__all__ = ["class_coverage", "digit_sample_quality", "frechet_distance", "frechet_floor_train_vs_test"]

COVERED_SHARE = 0.01  # a class counts as covered when > 1 % of samples are predicted as it


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix via its eigen decomposition."""
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^{1/2})`` with means and unbiased
    covariances in float64. ``S_a S_b`` is not symmetric, so ``scipy.linalg.sqrtm`` of it
    returns tiny imaginary parts from rounding (which FID code usually drops). Here the trace
    term is computed as ``tr((S_a^{1/2} S_b S_a^{1/2})^{1/2})``: the same value, since the two
    products are similar matrices, but the matrix is symmetric PSD, so ``eigh`` gives real
    eigenvalues; tiny negative ones from rounding are clipped to 0, and so is the result.

    Parameters
    ----------
    feats_a : Tensor
        Shape (N, F), N >= 2.
    feats_b : Tensor
        Shape (M, F), M >= 2.

    Returns
    -------
    float
        The distance, >= 0; 0 for identical sets, symmetric in its arguments.
    """
    a = np.asarray(torch.as_tensor(feats_a).detach().cpu(), dtype=np.float64)
    b = np.asarray(torch.as_tensor(feats_b).detach().cpu(), dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (N, F) and (M, F) with the same F, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 samples per set for a covariance, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("features contain NaN or inf")
    mu_a, mu_b = a.mean(0), b.mean(0)
    # atleast_2d: with one feature np.cov returns a 0-d array
    cov_a, cov_b = (np.atleast_2d(np.cov(f, rowvar=False, ddof=1)) for f in (a, b))
    root_a = _sqrtm_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    middle = (middle + middle.T) / 2  # exact symmetry, so eigvalsh sees the matrix it assumes
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)).sum()
    fd = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt
    return float(max(fd, 0.0))


def class_coverage(scores: torch.Tensor, *, from_logits: bool | None = None) -> dict:
    """How predicted classes are spread over a set of samples.

    Parameters
    ----------
    scores : Tensor
        Shape (N, K): class probabilities (rows >= 0 summing to 1) or logits.
    from_logits : bool, optional
        Whether ``scores`` are logits; by default probabilities are recognised by their rows.

    Returns
    -------
    dict
        ``class_shares``: list of K floats, the share of samples whose argmax is each class;
        ``max_share``: the largest share (1/K is perfectly balanced, 1.0 is total collapse);
        ``classes_covered``: classes with share > 1 % (``COVERED_SHARE``), so one stray sample
        in a small set does not count as covering a class;
        ``entropy_bits``: entropy of the shares in bits (log2 K is perfectly balanced);
        ``mean_confidence``: mean of the highest class probability per sample.
    """
    s = torch.as_tensor(scores).detach().double().cpu()
    if s.dim() != 2 or s.shape[0] == 0 or s.shape[1] < 2:
        raise ValueError(f"scores must have shape (N, K) with N >= 1, K >= 2, got {tuple(s.shape)}")
    if from_logits is None:
        from_logits = not (
            bool((s >= 0).all()) and torch.allclose(s.sum(1), torch.ones(len(s), dtype=s.dtype), atol=1e-4)
        )
    probs = s.softmax(1) if from_logits else s
    conf, pred = probs.max(1)
    shares = torch.bincount(pred, minlength=s.shape[1]).double() / len(s)
    nz = shares[shares > 0]
    return {
        "class_shares": shares.tolist(),
        "max_share": shares.max().item(),
        "classes_covered": int((shares > COVERED_SHARE).sum()),
        "entropy_bits": float(-(nz * nz.log2()).sum()),
        "mean_confidence": conf.mean().item(),
    }


def _check_images(name: str, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a float tensor in [0, 1] (level / (levels - 1)), got {got}")
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8) or len(x) < 2:
        raise ValueError(f"{name} must have shape (N, 1, 8, 8) with N >= 2, got {tuple(x.shape)}")
    lo, hi = x.min().item(), x.max().item()
    if not (lo >= -1e-3 and hi <= 1 + 1e-3):  # also catches NaN and [-1, 1] (tanh) outputs
        raise ValueError(f"{name} must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return x.detach().float().clamp(0.0, 1.0)


@torch.no_grad()
def _features_and_logits(x: torch.Tensor, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    model = load_digits_classifier("cpu")
    feats = torch.cat([model.features(x[i : i + batch_size].cpu()) for i in range(0, len(x), batch_size)])
    return feats, model.head(feats)


def digit_sample_quality(samples: torch.Tensor, reference: torch.Tensor) -> dict:
    """Fréchet distance to a reference set and class coverage of digit samples.

    Parameters
    ----------
    samples : Tensor
        Float (N, 1, 8, 8) in [0, 1], N >= 2: generated images.
    reference : Tensor
        Float (M, 1, 8, 8) in [0, 1], M >= 2: real images (for example the test split / 16).

    Returns
    -------
    dict
        ``frechet_distance`` (float) in the classifier's feature space plus the
        :func:`class_coverage` entries of the samples.
    """
    fs, logits = _features_and_logits(_check_images("samples", samples))
    fr, _ = _features_and_logits(_check_images("reference", reference))
    return {"frechet_distance": frechet_distance(fs, fr), **class_coverage(logits, from_logits=True)}


@functools.lru_cache(maxsize=1)
def frechet_floor_train_vs_test() -> float:
    """Fréchet distance between the digits train and test splits (needs scikit-learn).

    What a perfect generator would score against the test split with the train split's size;
    computed on first call, then cached.
    """
    x_tr, _, x_te, _ = digits_train_test_split()
    scale = float(DIGITS_LEVELS - 1)
    f_tr, _ = _features_and_logits(x_tr.float() / scale)
    f_te, _ = _features_and_logits(x_te.float() / scale)
    return frechet_distance(f_tr, f_te)
