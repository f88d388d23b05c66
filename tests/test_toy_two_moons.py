"""fastgen.toy.two_moons and ``fastgen toy two-moons``: data, a short training run, the PNG, errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from fastgen import cli
from fastgen.toy import gaussian_baseline, make_two_moons, train_two_moons
from fastgen.toy.two_moons import PNG_NAME, moons

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------ data
def test_data_shapes_and_split():
    train, test = make_two_moons(1000, 300)
    assert train.shape == (1000, 2) and test.shape == (300, 2)
    assert train.dtype == test.dtype == torch.float32
    # unstandardised make_moons coordinates
    assert -1.5 < float(train[:, 0].min()) < -0.8 and 1.8 < float(train[:, 0].max()) < 2.5


def test_data_is_deterministic_and_split_in_order():
    a_train, a_test = make_two_moons(500, 200, seed=3)
    b_train, b_test = make_two_moons(500, 200, seed=3)
    assert torch.equal(a_train, b_train) and torch.equal(a_test, b_test)
    c_train, _ = make_two_moons(500, 200, seed=4)
    assert not torch.equal(a_train, c_train)
    whole = torch.from_numpy(moons(700, 0.05, 3).astype(np.float32))
    assert torch.equal(torch.cat([a_train, a_test]), whole)


@pytest.mark.parametrize("n,seed,noise", [(15000, 0, 0.05), (7, 3, 0.1), (1, 0, 0.05), (10, 5, 0.0)])
def test_moons_equals_sklearn(n, seed, noise):
    from sklearn.datasets import make_moons

    expected, _ = make_moons(n, noise=noise, random_state=seed)
    assert np.array_equal(moons(n, noise, seed), expected)


def test_gaussian_baseline_is_the_fitted_gaussian():
    train, test = make_two_moons(2000, 500)
    base = gaussian_baseline(train, test)
    cov = np.cov(train.double().numpy().T, bias=True)
    expected = -(1 + np.log(2 * np.pi)) - 0.5 * np.log(np.linalg.det(cov))  # train mean, exact for MLE
    assert base["train"] == pytest.approx(expected, abs=1e-9)
    assert -2.1 < base["test"] < -1.7


# ------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("moons")
    start = time.perf_counter()
    figures = train_two_moons(steps=300, out=out, progress=False)
    return figures, time.perf_counter() - start


def test_short_run_beats_the_gaussian(short_run):
    figures, seconds = short_run
    assert seconds < 15
    assert figures["steps"] == 300 and figures["batch_size"] == 256
    assert figures["n_train"] == 10_000 and figures["n_test"] == 5_000
    assert all(np.isfinite(figures[k]) for k in ("test_log_likelihood", "train_log_likelihood", "final_loss"))
    assert figures["gaussian_test_log_likelihood"] == pytest.approx(-1.885, abs=0.01)
    # a flow that bends around the moons wins by more than half a nat per point
    assert figures["test_log_likelihood"] > figures["gaussian_test_log_likelihood"] + 0.5
    assert figures["gain_over_gaussian"] == pytest.approx(
        figures["test_log_likelihood"] - figures["gaussian_test_log_likelihood"])
    assert 0 < figures["seconds"] <= figures["total_seconds"]


def test_short_run_writes_a_valid_png(short_run):
    from PIL import Image

    figures, _ = short_run
    png = figures["png"]
    assert png.name == PNG_NAME and png.is_file()
    assert png.read_bytes()[:8] == PNG_MAGIC
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        width, height = image.size
        assert width > 2 * height  # three panels side by side
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 10  # not a blank canvas


def test_run_is_reproducible_and_leaves_threads_and_rng_alone():
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = train_two_moons(steps=5, batch_size=64, n_train=200, n_test=50, out=None, progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    b = train_two_moons(steps=5, batch_size=64, n_train=200, n_test=50, out=None, progress=False)
    assert a["png"] is None
    assert a["test_log_likelihood"] == b["test_log_likelihood"]


@pytest.mark.parametrize("kwargs,name", [
    (dict(steps=0), "steps"),
    (dict(steps=2.5), "steps"),
    (dict(steps=True), "steps"),
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=500, n_train=100), "batch_size"),
    (dict(lr=0.0), "lr"),
    (dict(lr=float("nan")), "lr"),
    (dict(lr="fast"), "lr"),
    (dict(num_layers=0), "num_layers"),
    (dict(hidden_channels=-1), "hidden_channels"),
    (dict(n_train=2), "n_train"),
    (dict(n_test=0), "n_test"),
    (dict(noise=-0.1), "noise"),
    (dict(seed=-1), "seed"),
    (dict(data_seed=-1), "data_seed"),
    (dict(num_threads=0), "num_threads"),
    (dict(progress="yes"), "progress"),
    (dict(device="gpu0"), "device"),
])
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        train_two_moons(out=None, **kwargs)


def test_out_that_is_a_file_is_an_error(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match="out .*not a directory"):
        train_two_moons(steps=1, out=path)


@pytest.mark.parametrize("kwargs,name", [(dict(n_train=0), "n_train"), (dict(noise=float("inf")), "noise"),
                                         (dict(seed=2**32), "seed")])
def test_bad_data_arguments(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        make_two_moons(**kwargs)


# ------------------------------------------------------------------------------------ command
def test_cli_quick(tmp_path, capsys):
    start = time.perf_counter()
    assert cli.main(["toy", "two-moons", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    assert time.perf_counter() - start < 15
    out = capsys.readouterr().out
    assert "test log-likelihood" in out and "Gaussian baseline (test)" in out
    assert "300 (batch 256)" in out
    png = tmp_path / PNG_NAME
    assert f"density plot: {png}" in out
    assert png.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("argv,needle", [
    (["toy"], "<toy>"),
    (["toy", "three-moons"], "three-moons"),
    (["toy", "two-moons", "--steps", "0"], "--steps"),
    (["toy", "two-moons", "--steps", "many"], "--steps"),
    (["toy", "two-moons", "--seed", "-2"], "--seed"),
    (["toy", "two-moons", "--bogus"], "--bogus"),
])
def test_cli_bad_arguments(argv, needle, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastgen: error:") and needle in err


def test_cli_out_is_a_file(tmp_path, capsys):
    path = tmp_path / "taken"
    path.write_text("x")
    assert cli.main(["toy", "two-moons", "--quick", "--out", str(path)]) == 2
    assert "--out" in capsys.readouterr().err


def test_cli_help_lists_toy(capsys):
    assert cli.main(["--help"]) == 0
    assert "toy" in capsys.readouterr().out
