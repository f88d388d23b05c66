"""``fastgen compare``: the report on a tiny budget, checkpoints, the audio section, and the error paths."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fastgen.cli import main
from fastgen.compare.budget import Budget, parse_duration


def test_report_on_a_tiny_step_budget(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["compare", "--models", "vae,gan,pixelcnn", "--steps", "3", "--quick", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["budget"] == "3 steps per model" and set(results["models"]) == {"vae", "gan", "pixelcnn"}
    for name, row in results["models"].items():
        assert row["steps"] == 3 and row["parameters"] > 1000 and row["source"] == "trained in this run"
        assert row["images_per_second"] > 0 and row["train_seconds"] > 0
        assert row["sample_images_per_s_batch1"] > 0 and row["sample_images_per_s_batch64"] > 0
        assert 0 <= row["frechet_distance"] and 1 <= row["classes_covered"] <= 10
    vae, gan, pixelcnn = (results["models"][k] for k in ("vae", "gan", "pixelcnn"))
    assert vae["x_to_z"] == "approximate" and vae["reconstruction_mean_abs_error"] > 0
    assert gan["x_to_z"] == "unavailable" and gan["bits_per_dim"] is None
    assert pixelcnn["sampling"] == "sequential" and pixelcnn["network_steps_per_sample"] == 64
    assert pixelcnn["naive_sample_images_per_s_batch64"] > 0  # measured; which is faster is the benchmark's
    assert 0 < pixelcnn["bits_per_dim"] < 8 and len(pixelcnn["curve"]) >= 1
    report = (out / "report.md").read_text()
    for text in ("| vae |", "| gan |", "| pixelcnn |", "bound (importance-weighted, k=10)", "none (no likelihood)",
                 "exact (discrete)", "| histogram baseline |", "trained in this run"):
        assert text in report, text
    baseline = results["histogram_baseline_bits_per_dim"]
    assert 1 < baseline < 8 and all(row["histogram_baseline_bits_per_dim"] == baseline
                                    for row in results["models"].values())
    assert [results["models"][k]["nll_kind"] for k in ("vae", "gan", "pixelcnn")] == [
        "bound (importance-weighted, k=10)", "none (no likelihood)", "exact (discrete)"]
    gan_row = next(line for line in report.splitlines() if line.startswith("| gan |")).split(" | ")
    assert gan_row[5] == "none"  # test bits/dim: the GAN has no likelihood
    for figure in ("samples.png", "bpd_vs_time.png", "sampling_throughput.png"):
        assert (out / figure).stat().st_size > 1000
        assert f"]({figure})" in report
    assert "| pixelcnn |" in printed and f"| histogram baseline | - | - | - | - | {baseline:.3g} |" in printed
    assert "wrote" in printed


def test_a_gan_only_report_still_has_the_baseline_row(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["compare", "--models", "gan", "--steps", "1", "--quick", "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    baseline = results["histogram_baseline_bits_per_dim"]
    assert baseline is not None and 1 < baseline < 8 and results["budget"] == "1 step per model"
    assert "| histogram baseline |" in (out / "report.md").read_text()


def test_the_training_bar_is_not_redrawn_every_step(tmp_path, capsys):
    import time

    start = time.perf_counter()
    assert main(["compare", "--models", "vae", "--steps", "120", "--quick", "--out", str(tmp_path / "r")]) == 0
    elapsed = time.perf_counter() - start
    bar = [part for part in capsys.readouterr().err.split("\r") if "vae (120 steps per model)" in part]
    # It was two redraws a step. Now at most one per 0.5 s (the bar's mininterval), plus the first
    # and the last: a bound that holds however slowly a loaded machine runs the steps.
    assert 1 <= len(bar) <= 3 + elapsed / 0.5 and len(bar) < 120, (len(bar), elapsed)


def test_flows_invert_exactly_and_wavenet_has_an_audio_section(tmp_path):
    out = tmp_path / "r"
    assert main(["compare", "--models", "realnvp,wavenet", "--steps", "1", "--quick", "--out", str(out),
                 "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    realnvp = results["models"]["realnvp"]
    assert realnvp["x_to_z"] == "exact" and realnvp["reconstruction_max_abs_error"] < 1e-4
    assert realnvp["nll_kind"] == "exact (dequantized, 1 draw)"  # --quick: one dequantization draw
    audio = results["audio"]
    assert audio["receptive_field"] == 511 and audio["cached_over_naive"] > 1
    assert 0 < audio["bits_per_sample"] <= 8.5 and audio["real_time_factor"] > 0
    assert "## Audio: WaveNet" in (out / "report.md").read_text()


def test_checkpoints_are_loaded_and_a_wrong_one_is_refused(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "gan", "--epochs", "1", "--out", str(runs / "gan"), "--no-progress", "--samples", "4"]) == 0
    out = tmp_path / "r"
    assert main(["compare", "--models", "gan", "--checkpoints", str(runs), "--quick", "--out", str(out),
                 "--no-progress"]) == 0
    row = json.loads((out / "results.json").read_text())["models"]["gan"]
    assert row["source"].startswith("checkpoint ") and row["train_seconds"] is None
    shutil.copytree(runs / "gan", runs / "vae")  # a GAN checkpoint where the VAE's should be
    capsys.readouterr()
    assert main(["compare", "--models", "vae", "--checkpoints", str(runs), "--quick", "--out", str(out),
                 "--no-progress"]) == 2
    assert "is a checkpoint of model 'gan', not 'vae'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--models", "vae,nope"], "unknown model 'nope'"),
    (["--models", "vae,vae"], "a model is named twice"),
    (["--data", "/no/such/data"], "no such file or folder"),
    (["--budget", "10x"], "--budget: a duration like 10m"),
    (["--checkpoints", "/no/such/folder"], "not a folder"),
])
def test_user_errors(argv, message, capsys, tmp_path):
    assert main(["compare", "--out", str(tmp_path / "r"), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unreadable_data_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not a numpy file")
    assert main(["compare", "--data", str(bad), "--models", "vae", "--steps", "1", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    assert str(bad) in capsys.readouterr().err


def test_budget_parsing_and_accounting():
    assert parse_duration("10m") == 600 and parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    assert parse_duration("45") == 45
    for bad in ("", "0m", "-1s", "10x", "m"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    budget = Budget(seconds=60)
    assert not budget.done(59.9, 1000) and budget.done(60.0, 1) and budget.fraction(30, 5) == 0.5
    steps = Budget(steps=10)
    assert steps.done(0.1, 10) and not steps.done(1e9, 9) and steps.label == "10 steps per model"
    assert Budget(steps=1).label == "1 step per model"
    with pytest.raises(ValueError):
        Budget(seconds=1, steps=1)


def test_a_time_budget_stops_training_on_time(tmp_path):
    out = tmp_path / "r"
    assert main(["compare", "--models", "gan", "--budget", "2s", "--quick", "--out", str(out), "--no-progress"]) == 0
    row = json.loads((out / "results.json").read_text())["models"]["gan"]
    assert 2.0 <= row["train_seconds"] < 4.0 and row["steps"] > 1
    assert np.isclose(row["images_per_second"] * row["train_seconds"], row["steps"] * 64, rtol=0.05)


def test_select_best_keeps_the_state_best_on_a_validation_split(tmp_path):
    out = tmp_path / "r"
    assert main(["compare", "--models", "pixelcnn,gan", "--steps", "8", "--select", "best", "--quick", "--out",
                 str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert "--select best" in results["command"]
    assert "best on validation at" in results["models"]["pixelcnn"]["source"]
    assert results["models"]["gan"]["source"] == "trained in this run"  # no likelihood: the last state


def test_a_bad_out_is_refused_before_any_training(tmp_path, capsys, monkeypatch):
    import fastgen.compare.training as training

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(training, "train_under_budget", no_training)
    (tmp_path / "afile").write_text("")
    assert main(["compare", "--models", "gan", "--steps", "1", "--out", str(tmp_path / "afile" / "r"),
                 "--no-progress"]) == 2
    assert "--out" in capsys.readouterr().err


def test_a_diverging_model_stops_with_one_line(tmp_path, capsys, monkeypatch):
    """A model whose parameters turned NaN would give figures built on NaN: a one-line error instead."""
    from fastgen.train import recipes

    realnvp = recipes.get("realnvp")
    monkeypatch.setattr(type(realnvp), "lr", 1e6)  # a learning rate no flow survives
    assert main(["compare", "--models", "realnvp", "--steps", "20", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "realnvp: training diverged at step" in err and "Traceback" not in err


def test_the_report_records_the_seed_and_the_kernels(tmp_path):
    out = tmp_path / "r"
    assert main(["compare", "--models", "gan", "--steps", "1", "--quick", "--seed", "7", "--out", str(out),
                 "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["seed"] == 7 and "--seed 7" in results["command"]
    assert {"cpu_extension", "cuda_extension", "triton", "force_reference"} <= set(results["environment"])
    assert results["environment"]["force_reference"] is False


def test_relabelled_checkpoints_and_a_missing_one(tmp_path, capsys):
    import torch

    from fastgen.train import checkpoint

    runs = tmp_path / "runs"
    assert main(["train", "gan", "--epochs", "1", "--out", str(runs / "gan"), "--no-progress", "--samples", "4"]) == 0
    payload = checkpoint.load(runs / "gan")
    torch.save({**payload, "model": "vae"}, runs / "vae.pt")  # a GAN's weights under the VAE's name
    capsys.readouterr()
    assert main(["compare", "--models", "vae", "--checkpoints", str(runs), "--quick", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "do not make a 'vae' model" in err and "Traceback" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", "--models", "gan", "--checkpoints", str(empty), "--steps", "1", "--quick",
                 "--out", str(tmp_path / "r2"), "--no-progress"]) == 0
    assert f"gan: no gan/ or gan.pt in {empty}: training it" in capsys.readouterr().err


def test_fewer_steps_than_curve_points_give_one_point_per_step():
    """Two steps and four curve points: each step passes two points, and the curve got the same
    state scored twice per step."""
    import torch

    from fastgen.compare.training import train_under_budget
    from fastgen.data import load_images
    from fastgen.train import recipes

    trained = train_under_budget(recipes.get("vae"), load_images("digits"), torch.device("cpu"), Budget(steps=2),
                                 curve_points=4, progress=False)
    assert trained.steps == 2 and len(trained.curve) == 2
    assert trained.curve[0][0] < trained.curve[1][0]
