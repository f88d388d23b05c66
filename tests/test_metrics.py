"""Tests for fastgen.metrics: histogram baseline, Fréchet distance, the shipped classifier, coverage."""

import json
import math

import numpy as np
import pytest
import torch

from fastgen.metrics import (
    class_coverage,
    digit_sample_quality,
    digits_train_test_split,
    frechet_distance,
    frechet_floor_train_vs_test,
    histogram_baseline,
    load_digits_classifier,
    nats_to_bits_per_dim,
)
from fastgen.metrics.classifier import INFO_PATH, WEIGHTS_PATH


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")  # the digits come from sklearn; the rest needs torch + numpy only
    return digits_train_test_split()  # uint8 (N, 1, 8, 8), int64 labels


# ---------------------------------------------------------------- likelihood


def test_nats_to_bits_per_dim():
    assert nats_to_bits_per_dim(64 * math.log(2.0), 64) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        nats_to_bits_per_dim(1.0, 0)


def test_histogram_baseline_hand_computed():
    levels, alpha = 3, 0.5
    train = [[0, 2], [0, 1], [1, 1]]  # 3 images of 1x1x2
    test = [[0, 1], [2, 0]]
    # Independent oracle with plain loops: per-position counts, add-alpha probabilities.
    n = len(train)
    expected = 0.0
    for img in test:
        for d, v in enumerate(img):
            count = sum(1 for t in train if t[d] == v)
            expected -= math.log((count + alpha) / (n + alpha * levels))
    expected /= len(test)
    as_img = lambda rows: torch.tensor(rows, dtype=torch.uint8).reshape(-1, 1, 1, 2)
    out = histogram_baseline(as_img(train), as_img(test), levels, alpha=alpha)
    assert out["nll_nats"] == pytest.approx(expected, rel=1e-12)
    assert out["bits_per_dim"] == pytest.approx(expected / (2 * math.log(2.0)), rel=1e-12)


def test_histogram_baseline_digits_beats_uniform(digits):
    x_tr, _, x_te, _ = digits
    out = histogram_baseline(x_tr, x_te, 17)
    assert 1.0 < out["bits_per_dim"] < math.log2(17)


def test_histogram_baseline_errors():
    x = torch.zeros(2, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(TypeError, match="uint8"):
        histogram_baseline(x.float(), x, 3)
    with pytest.raises(ValueError, match="levels"):
        histogram_baseline(x + 3, x, 3)
    with pytest.raises(ValueError, match="shapes differ"):
        histogram_baseline(x, torch.zeros(2, 1, 2, 3, dtype=torch.uint8), 3)


# ---------------------------------------------------------------- Fréchet distance


def _random_feats(n, f, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(f, f, generator=g, dtype=torch.float64)
    return torch.randn(n, f, generator=g, dtype=torch.float64) @ mix + shift


def test_frechet_identical_and_symmetric():
    a, b = _random_feats(300, 6, 0), _random_feats(200, 6, 1)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_frechet_of_one_feature_by_hand():
    # a: mean 0, variance 2; b: mean 3, variance 8 -> 9 + 2 + 8 - 2 * sqrt(2 * 8) = 11
    assert frechet_distance(torch.tensor([[-1.0], [1.0]]), torch.tensor([[1.0], [5.0]])) == pytest.approx(11.0)


def test_bits_per_dim_is_the_nats_conversion():
    import fastgen.metrics as metrics

    assert metrics.bits_per_dim(2 * math.log(2.0), 2) == pytest.approx(1.0)


def test_frechet_equal_covariance_is_squared_mean_distance():
    a = _random_feats(100, 5, 2)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    # Translating a set leaves its covariance unchanged, so only ||mu1 - mu2||^2 remains.
    assert frechet_distance(a, a + shift) == pytest.approx(float((shift**2).sum()), rel=1e-8)


def test_frechet_grows_with_mean_shift():
    a, b = _random_feats(300, 4, 3), _random_feats(300, 4, 4)
    fds = [frechet_distance(a, b + s) for s in (0.0, 0.5, 1.0, 2.0)]
    assert fds == sorted(fds) and len(set(fds)) == len(fds)


def test_frechet_matches_scipy_formula():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    a, b = _random_feats(400, 8, 5).numpy(), (_random_feats(300, 8, 6, shift=0.3) * 0.7).numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy_linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(torch.from_numpy(a).float(), torch.from_numpy(b)) == pytest.approx(
        expected, rel=1e-5
    )


def test_frechet_errors():
    with pytest.raises(ValueError, match="same F"):
        frechet_distance(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(4, 3))


# ---------------------------------------------------------------- classifier and coverage


def test_loading_the_classifier_leaves_the_global_rng_alone():
    # It is loaded lazily at a run's first evaluation: a resumed run must draw what an
    # uninterrupted one draws (flow dropout uses the global RNG).
    from fastgen.metrics import classifier

    classifier._load.cache_clear()
    torch.manual_seed(0)
    state = torch.get_rng_state()
    load_digits_classifier()
    assert torch.equal(torch.get_rng_state(), state)


def test_shipped_classifier_accuracy(digits):
    _, _, x_te, y_te = digits
    model = load_digits_classifier()
    assert model is load_digits_classifier("cpu") and not model.training
    assert WEIGHTS_PATH.stat().st_size < 500_000
    with torch.no_grad():
        acc = (model(x_te.float() / 16).argmax(1) == y_te).double().mean().item()
        assert model.features(x_te[:3].float() / 16).shape == (3, 128)
    assert acc >= 0.97
    assert acc == pytest.approx(json.loads(INFO_PATH.read_text())["test_accuracy"], abs=1e-6)


def test_class_coverage_one_hot():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    one_hot = torch.nn.functional.one_hot(labels, 10).float()
    out = class_coverage(one_hot)
    assert out["class_shares"] == pytest.approx([0.5, 0.3, 0.2] + [0.0] * 7)
    assert out["max_share"] == pytest.approx(0.5)
    assert out["classes_covered"] == 3
    assert out["entropy_bits"] == pytest.approx(-sum(p * math.log2(p) for p in (0.5, 0.3, 0.2)))
    assert out["mean_confidence"] == pytest.approx(1.0)
    # The same as logits: identical shares, confidence is the softmax maximum.
    out = class_coverage(one_hot * 5)
    assert out["class_shares"] == pytest.approx([0.5, 0.3, 0.2] + [0.0] * 7)
    assert out["mean_confidence"] == pytest.approx(math.exp(5) / (math.exp(5) + 9))


def test_digit_sample_quality_real_vs_noise(digits):
    x_tr, _, x_te, _ = digits
    real = digit_sample_quality(x_te.float() / 16, x_tr.float() / 16)
    assert real["classes_covered"] == 10 and real["max_share"] < 0.15
    assert real["frechet_distance"] < 1.0
    assert real["frechet_distance"] == pytest.approx(frechet_floor_train_vs_test(), rel=1e-4)
    uniform = torch.rand(360, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    noise = digit_sample_quality(uniform, x_tr.float() / 16)
    assert noise["frechet_distance"] > 20 * real["frechet_distance"]


def test_digit_sample_quality_rejects_bad_inputs(digits):
    x_tr = digits[0]
    with pytest.raises(TypeError, match="float"):
        digit_sample_quality(x_tr, x_tr.float() / 16)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        digit_sample_quality(x_tr.float() / 8 - 1, x_tr.float() / 16)
    with pytest.raises(ValueError, match="shape"):
        digit_sample_quality(torch.rand(4, 1, 28, 28), x_tr.float() / 16)
