"""The training workflow: run files, resume exactness, signals, DDP equivalence, CLI errors."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fastgen.cli import main
from fastgen.train import TrainConfig, TrainingInterrupted, train
from fastgen.train.recipes import Amp
from fastgen.train.step_context import StepContext, global_batches

ROOT = Path(__file__).resolve().parent.parent


def _records(out: Path, kind: str) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@contextlib.contextmanager
def _holding_the_lock(out: Path):
    """Hold ``out``'s run lock as another run would (an flock on its lock file)."""
    from fastgen.train.run_lock import LOCK_NAME

    out.mkdir(parents=True, exist_ok=True)
    with (out / LOCK_NAME).open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


def _config(out: Path, **overrides) -> TrainConfig:
    settings = dict(model="vae", epochs=2, batch_size=100, out=out, progress=False, samples=16, quick=True)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_a_run_writes_its_files_and_reports_the_test_metric(tmp_path, capsys):
    status = main(["train", "vae", "--epochs", "1", "--batch-size", "128", "--out", str(tmp_path / "run"),
                   "--no-progress", "--quick", "--samples", "16"])
    assert status == 0
    run = tmp_path / "run"
    for name in ("last.pt", "metrics.jsonl", "samples.png", "samples-epoch001.png", "loss.png", "final_metrics.json"):
        assert (run / name).is_file(), name
    assert "final test bits_per_dim" in capsys.readouterr().out
    steps, epochs = _records(run, "step"), _records(run, "epoch")
    assert len(epochs) == 1 and len(steps) == epochs[0]["global_step"]
    assert all(torch.isfinite(torch.tensor(s["loss"])) for s in steps)
    assert main(["sample", str(run), "-n", "9", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["evaluate", str(run / "last.pt"), "--quick", "--json"]) == 0
    assert "bits_per_dim" in json.loads(capsys.readouterr().out.split("wrote 9 samples")[-1].split("\n", 1)[1])
    assert main(["sample", str(run), "--temperature", "0.7", "-o", str(tmp_path / "t.png")]) == 2
    assert "--temperature is for the flows (glow, realnvp), not vae" in capsys.readouterr().err
    assert main(["sample", str(run), "--seconds", "2", "-o", str(tmp_path / "t.png")]) == 2
    assert "--seconds is for audio models (wavenet), not vae" in capsys.readouterr().err


def test_resume_reproduces_the_uninterrupted_losses(tmp_path):
    full = tmp_path / "full"
    train(_config(full))
    part = tmp_path / "part"
    with pytest.raises(TrainingInterrupted):
        train(_config(part, stop_after_steps=19))  # mid-way through epoch 2 (15 steps per epoch)
    assert json.loads(json.dumps(torch.load(part / "last.pt", weights_only=True)["global_step"])) == 19
    train(_config(part, resume=True))
    full_steps, part_steps = _records(full, "step"), _records(part, "step")
    assert [s["global_step"] for s in part_steps] == [s["global_step"] for s in full_steps]
    for a, b in zip(full_steps, part_steps):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-6), a["global_step"]
    for a, b in zip(_records(full, "epoch"), _records(part, "epoch")):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)


def test_sigint_writes_a_checkpoint_that_resumes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fastgen", "train", "vae", "--epochs", "200", "--batch-size", "64", "--out", str(out),
           "--no-progress", "--quick", "--samples", "4"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "continue with --resume" in stderr
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["global_step"] > 0 and state["epoch"] < 200
    logged = _records(out, "step")[-1]["global_step"]
    assert state["global_step"] == logged  # nothing lost: every logged step is in the checkpoint
    resumed = subprocess.run([*cmd[:6], str(state["epoch"] + 1), *cmd[7:], "--resume"], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr


def test_sigint_during_the_last_epochs_evaluation_stops_before_the_final_one(tmp_path, monkeypatch):
    from fastgen.train import recipes

    recipe = recipes.get("vae")
    evaluate = recipe.evaluate

    def interrupted_evaluate(*args, **kwargs):  # Ctrl-C arrives while the epoch's evaluation runs
        signal.raise_signal(signal.SIGINT)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(recipe, "evaluate", interrupted_evaluate)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as stopped:
        train(_config(out, epochs=1))
    assert stopped.value.checkpoint_path == out / "last.pt"
    assert not (out / "final_metrics.json").exists()  # the final evaluation did not run
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["step_in_epoch"] == 0  # the epoch's checkpoint, complete
    monkeypatch.setattr(recipe, "evaluate", evaluate)
    assert train(_config(out, epochs=1, resume=True))["epochs"] == 1  # resuming runs only the final evaluation
    assert (out / "final_metrics.json").is_file()


def test_a_diverged_run_stops_with_a_plain_message_and_no_nan_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["train", "vae", "--epochs", "2", "--lr", "1e6", "--out", str(out), "--no-progress", "--quick",
                   "--samples", "4"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "training diverged at step" in err and "the model's parameters are no longer finite" in err
    assert "Try a lower --lr (now 1e+06)" in err
    assert not (out / "last.pt").exists()  # nothing NaN was saved


def test_divergence_after_a_checkpoint_keeps_it_as_it_was(tmp_path, capsys):
    out = tmp_path / "run"
    train(_config(out, epochs=1))
    before = (out / "last.pt").read_bytes()
    status = main(["train", "vae", "--epochs", "2", "--lr", "1e6", "--out", str(out), "--no-progress", "--quick",
                   "--samples", "16", "--resume"])
    err = capsys.readouterr().err
    assert status == 2 and f"the last checkpoint, {out / 'last.pt'}, is kept as it was" in err, err
    assert (out / "last.pt").read_bytes() == before
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1


def test_the_progress_bar_is_not_redrawn_every_step(tmp_path, capsys):
    # Redirected to a log file, a bar redrawn per step is a line per step; tqdm's mininterval
    # only holds when nothing forces a refresh.
    train(_config(tmp_path / "run", epochs=1, batch_size=16, progress=True))
    err = capsys.readouterr().err
    steps = _records(tmp_path / "run", "step")
    assert len(steps) >= 80
    assert err.count("\r") < len(steps) / 4, err.count("\r")


def test_resume_with_another_lr_uses_it(tmp_path, capsys):
    # The optimizer state in the checkpoint carries the old learning rate: a new --lr must replace it.
    from fastgen.train import recipes
    from fastgen.train.trainer import WARMUP_STEPS

    out, default = tmp_path / "run", recipes.get("vae").lr
    train(_config(out, epochs=1, batch_size=32))
    steps = torch.load(out / "last.pt", weights_only=True)["global_step"]
    train(_config(out, epochs=2, batch_size=32, lr=default / 10, resume=True))
    assert f"resuming with --lr {default / 10:g} (the run started with {default:g})" in capsys.readouterr().err
    state = torch.load(out / "last.pt", weights_only=True)
    warm = min(1.0, (2 * steps + 1) / WARMUP_STEPS)  # LambdaLR's factor after the second epoch's last step
    assert warm < 1  # still warming up: the factor and the new base must both hold
    for group in state["optimizers"]["model"]["param_groups"]:
        assert group["lr"] == pytest.approx(default / 10 * warm) and group["initial_lr"] == pytest.approx(default / 10)
    train(_config(out, epochs=3, batch_size=32, resume=True))  # no --lr: the one the run was resumed with
    assert "resuming with --lr" not in capsys.readouterr().err
    group = torch.load(out / "last.pt", weights_only=True)["optimizers"]["model"]["param_groups"][0]
    assert group["initial_lr"] == pytest.approx(default / 10)


def test_resuming_a_finished_run_says_there_is_nothing_to_train(tmp_path, capsys):
    out = tmp_path / "run"
    train(_config(out, epochs=1))
    capsys.readouterr()
    final = train(_config(out, epochs=1, resume=True))
    assert "the checkpoint has trained 1 epoch(s), --epochs is 1: nothing to train" in capsys.readouterr().err
    assert final["epochs"] == 1 and len(_records(out, "epoch")) == 1


def test_epoch_means_are_over_images_and_survive_an_older_checkpoint(tmp_path):
    full = tmp_path / "full"
    train(_config(full, epochs=1))
    steps, epoch = _records(full, "step"), _records(full, "epoch")[0]
    n_train = len(torch.cat(global_batches(1438, 100, 1, seed=0, epoch=0)))
    sizes = [100] * (len(steps) - 1) + [n_train - 100 * (len(steps) - 1)]
    assert sizes[-1] < 100  # the last batch is smaller: a mean over steps would overweight it
    weighted = sum(s["loss"] * n for s, n in zip(steps, sizes)) / n_train
    assert epoch["loss"] == pytest.approx(weighted, rel=1e-9)
    assert epoch["loss"] != pytest.approx(sum(s["loss"] for s in steps) / len(steps), rel=1e-6)
    # A checkpoint written before the counts were kept held sums of step means: still the same epoch.
    part = tmp_path / "part"
    with pytest.raises(TrainingInterrupted):
        train(_config(part, epochs=1, stop_after_steps=5))
    payload = torch.load(part / "last.pt", weights_only=False)
    totals = payload["epoch_totals"]
    payload["epoch_totals"] = {k: v / 100 for k, v in totals.items() if k != "_images"}
    torch.save(payload, part / "last.pt")
    train(_config(part, epochs=1, resume=True))
    assert _records(part, "epoch")[0]["loss"] == pytest.approx(epoch["loss"], rel=1e-6)


def test_global_batches_split_evenly_across_ranks():
    batches = global_batches(103, 10, 2, seed=3, epoch=1)
    assert sorted(torch.cat(batches).tolist()) == list(range(103))
    assert torch.equal(torch.cat(batches), torch.cat(global_batches(103, 10, 1, seed=3, epoch=1)))
    ctx0 = StepContext.for_step(0, 5, 3, 0, 2, torch.device("cpu"))
    ctx1 = StepContext.for_step(0, 5, 3, 1, 2, torch.device("cpu"))
    whole = StepContext.for_step(0, 5, 3, 0, 1, torch.device("cpu")).randn(4)
    assert torch.equal(ctx0.randn(4), whole[0::2]) and torch.equal(ctx1.randn(4), whole[1::2])
    assert ctx0.loss_scale + ctx1.loss_scale == pytest.approx(2.0)


@pytest.mark.slow
@pytest.mark.parametrize("model, epochs, keys", [
    ("vae", 2, ("loss", "recon", "kl", "test_bits_per_dim")),
    # BatchNorm: its statistics must cover the global batch, not each process's half of it
    ("gan", 1, ("d_loss", "g_loss", "test_frechet_distance")),
])
def test_two_processes_give_the_metrics_of_one(tmp_path, model, epochs, keys):
    common = [model, "--epochs", str(epochs), "--batch-size", "64", "--no-progress", "--quick", "--samples", "4",
              "--seed", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "fastgen", "train", *common, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True, timeout=600, env=env)
    assert single.returncode == 0, single.stderr
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "fastgen", "train", *common, "--out", str(tmp_path / "two")],
                            capture_output=True, text=True, timeout=600, env=env)
    assert double.returncode == 0, double.stderr
    one, two = _records(tmp_path / "one", "epoch"), _records(tmp_path / "two", "epoch")
    assert len(one) == len(two) == epochs
    for a, b in zip(one, two):
        for key in keys:
            assert a[key] == pytest.approx(b[key], rel=1e-4), key
    first_one, first_two = _records(tmp_path / "one", "step")[0], _records(tmp_path / "two", "step")[0]
    for key in keys[:2]:
        assert first_one[key] == pytest.approx(first_two[key], rel=1e-5), key


def test_a_last_batch_of_one_image_is_skipped_for_batchnorm_models(tmp_path, capsys):
    """BatchNorm cannot normalise one image: the DCGAN skips an epoch's last batch of one (65
    training images at batch size 64) and refuses --batch-size 1 in one line."""
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).integers(0, 256, (81, 8, 8), dtype=np.uint8))
    out = tmp_path / "run"
    assert main(["train", "gan", "--epochs", "1", "--quick", "--no-progress", "--samples", "4", "--data", str(images),
                 "--out", str(out)]) == 0
    assert [s["global_step"] for s in _records(out, "step")] == [1]
    assert (out / "last.pt").is_file()
    capsys.readouterr()
    assert main(["train", "gan", "--batch-size", "1", "--quick", "--no-progress", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "at least 2 images per step" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "nosuchmodel"], "unknown model 'nosuchmodel'"),
        (["train", "vae", "--data", "nosuchdata"], "nosuchdata"),
        (["train", "vae", "--epochs", "0"], "argument --epochs: expected an integer >= 1, got 0"),
        (["train", "vae", "--device", "cuda:7"] if not torch.cuda.is_available() else ["train", "vae", "--lr", "-1"],
         "CUDA is not available" if not torch.cuda.is_available() else "--lr must be a finite positive number"),
        (["train", "vae", "--lr", "inf"], "--lr must be a finite positive number, got inf"),
        (["sample", "/nonexistent/ckpt.pt"], "checkpoint not found"),
        (["evaluate", "/nonexistent/ckpt.pt"], "checkpoint not found"),
    ],
)
def test_user_errors_are_one_line(argv, message, capsys, tmp_path):
    status = main([*argv, "--out", str(tmp_path / "x")] if argv[0] == "train" else argv)
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_checkpoint_of_another_model_and_garbage_files(tmp_path, capsys):
    out = tmp_path / "run"
    train(_config(out, epochs=1))
    assert main(["train", "gan", "--out", str(out), "--resume", "--no-progress"]) == 2
    assert "checkpoint of model 'vae', not 'gan'" in capsys.readouterr().err
    assert main(["train", "vae", "--out", str(out), "--no-progress"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    pickled = tmp_path / "pickled.pt"
    torch.save({"args": argparse.Namespace(lr=1)}, pickled)  # needs weights_only=False: never done
    for path in (garbage, pickled, tmp_path / "truncated.pt"):
        if path.name == "truncated.pt":
            path.write_bytes((out / "last.pt").read_bytes()[:200])
        for command in ("sample", "evaluate"):
            assert main([command, str(path)]) == 2
            err = capsys.readouterr().err
            assert "cannot read checkpoint" in err and path.name in err, err
            assert len(err.strip().splitlines()) == 1 and "weights_only` set to `False" not in err and "\x1b" not in err


def test_seeds_out_of_range_are_refused(capsys):
    for command in (["train", "vae"], ["sample", "x.pt"], ["evaluate", "x.pt"], ["compare"]):
        assert main([*command, "--seed", str(2**70)]) == 2
        err = capsys.readouterr().err
        assert "--seed" in err and "below 2**32" in err, err


def test_resume_keeps_the_settings_the_run_started_with(tmp_path):
    """``fastgen train MODEL --out RUN --resume`` alone continues the run as it was started (batch
    size, epochs, seed, --quick...), not with the defaults."""
    full, part = tmp_path / "full", tmp_path / "part"
    settings = ["--epochs", "2", "--batch-size", "128", "--seed", "3", "--quick", "--samples", "4", "--no-progress"]
    assert main(["train", "vae", *settings, "--out", str(full)]) == 0
    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(model="vae", epochs=2, batch_size=128, seed=3, quick=True, samples=4, progress=False,
                          out=part, stop_after_steps=5))
    assert main(["train", "vae", "--out", str(part), "--resume", "--no-progress"]) == 0
    full_steps, part_steps = _records(full, "step"), _records(part, "step")
    assert [s["global_step"] for s in part_steps] == [s["global_step"] for s in full_steps]
    for a, b in zip(full_steps, part_steps):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-6), a["global_step"]
    assert torch.load(part / "last.pt", weights_only=True)["train_config"]["batch_size"] == 128


def test_out_naming_a_file_is_a_one_line_error(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["train", "vae", "--out", str(afile), "--no-progress", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a run folder" in err and "Traceback" not in err


def test_inconsistent_checkpoints_are_one_line_errors(tmp_path, capsys):
    out = tmp_path / "run"
    train(_config(out, epochs=1))
    payload = torch.load(out / "last.pt", weights_only=True)
    cases = {
        "relabelled": ({**payload, "model": "glow"}, "do not make a 'glow' model: TypeError"),
        "no_config": ({k: v for k, v in payload.items() if k != "config"}, "no valid 'config' entry"),
        "other_sizes": ({**payload, "config": {**payload["config"], "hidden": 7}}, "do not make a 'vae' model"),
    }
    for name, (edited, message) in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(edited, path)
        for command in (["sample", str(path), "-o", str(tmp_path / "s.png")], ["evaluate", str(path), "--quick"]):
            assert main(command) == 2, (name, command)
            err = capsys.readouterr().err
            assert message in err and path.name in err and "Traceback" not in err, (name, err)


def test_evaluate_refuses_data_of_another_shape(tmp_path, capsys):
    out = tmp_path / "run"
    train(_config(out, epochs=1))
    other = tmp_path / "other.npy"
    np.save(other, np.zeros((20, 12, 12), dtype=np.uint8))
    assert main(["evaluate", str(out), "--data", str(other)]) == 2
    assert "does not match" in capsys.readouterr().err


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_steps_are_finite(tmp_path, amp):
    out = tmp_path / amp
    with pytest.raises(TrainingInterrupted):
        train(_config(out, amp=amp, stop_after_steps=5))
    steps = _records(out, "step")
    assert len(steps) == 5 and all(torch.isfinite(torch.tensor(s["loss"])) for s in steps)
    assert torch.load(out / "last.pt", weights_only=True)["train_config"]["amp"] == amp


def test_float16_scaler_skips_hold_the_learning_rate_schedule(tmp_path):
    amp = Amp("fp16", torch.device("cpu"))
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    amp.backward_and_step((weight * 1e35).sum(), optimizer)  # scaled gradient overflows float32
    assert not amp.stepped(optimizer) and torch.equal(weight.detach(), torch.ones(3))
    amp.backward_and_step(weight.sum(), optimizer)
    assert amp.stepped(optimizer) and not torch.equal(weight.detach(), torch.ones(3))
    # In a run: each schedule advances once per optimizer step that ran, and torch does not warn
    # that a schedule stepped before its optimizer.
    out = tmp_path / "fp16"
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*lr_scheduler.step.*")
        with pytest.raises(TrainingInterrupted):
            train(_config(out, amp="fp16", stop_after_steps=6))
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    for name, schedule in checkpoint["schedulers"].items():
        adam_steps = int(checkpoint["optimizers"][name]["state"][0]["step"])
        assert schedule["last_epoch"] == adam_steps, name


def test_a_torn_last_log_line_does_not_block_resume(tmp_path):
    """A crash can cut the last metrics line short: it is dropped (its step is recomputed), while
    a bad line before the end is an error naming the file."""
    from fastgen.train.run_files import RunFiles

    files = RunFiles(tmp_path, enabled=True)
    files.prepare(resume=False)
    files.log({"kind": "step", "global_step": 1, "loss": 1.0})
    files.log({"kind": "epoch", "global_step": 2, "loss": 0.5})
    with files.metrics.open("a") as handle:
        handle.write('{"kind": "step", "glo')
    assert [r["loss"] for r in files.read_log("epoch")] == [0.5]
    files.truncate_log_after(1)
    assert [json.loads(line)["global_step"] for line in files.metrics.read_text().splitlines()] == [1]
    files.metrics.write_text('{"kind": "step"\n{"kind": "epoch", "global_step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 1 is not JSON"):
        files.read_log("epoch")


def test_an_out_that_cannot_be_created_is_one_line(tmp_path, capsys):
    in_the_way = tmp_path / "a_file"
    in_the_way.write_text("")
    assert main(["train", "vae", "--quick", "--epochs", "1", "--out", str(in_the_way / "run")]) == 2
    err = capsys.readouterr().err
    assert "cannot create the folder" in err and "Traceback" not in err


def test_resuming_mid_epoch_with_another_batch_size_seed_or_data_is_refused():
    from functools import partial

    from fastgen.train.resume import check_mid_epoch_settings

    check = partial(check_mid_epoch_settings, default_batch_size=128)
    mid_epoch = {"step_in_epoch": 42, "train_config": {"batch_size": 16, "seed": 0}, "data": {"name": "digits"}}
    with pytest.raises(ValueError, match=r"--batch-size 128 differs from the 16 of the checkpoint.*step 42"):
        check(mid_epoch, 128, 0, "digits")
    with pytest.raises(ValueError, match=r"--seed 3 differs from the 0 of the checkpoint.*resume with --seed 0"):
        check(mid_epoch, 16, 3, "digits")
    with pytest.raises(ValueError, match=r"--data /x.npz differs from the digits of the checkpoint"):
        check(mid_epoch, 16, 0, "/x.npz")
    check(mid_epoch, 16, 0, "digits")
    check({**mid_epoch, "step_in_epoch": 0}, 128, 3, "/x.npz")  # at a boundary
    # A run started without --batch-size records None: the recipe's default is what it used.
    by_default = {**mid_epoch, "train_config": {"batch_size": None, "seed": 0}}
    with pytest.raises(ValueError, match=r"--batch-size 32 differs from the 128 of the checkpoint"):
        check(by_default, 32, 0, "digits")
    check(by_default, 128, 0, "digits")


def test_a_fresh_run_refuses_a_folder_of_another_run(tmp_path, capsys):
    out = tmp_path / "run"
    train(_config(out, epochs=1))
    assert main(["train", "gan", "--out", str(out), "--no-progress", "--quick", "--epochs", "1"]) == 2
    assert f"{out} already holds a vae checkpoint (last.pt): choose another --out" in capsys.readouterr().err
    assert main(["train", "vae", "--out", str(out), "--no-progress", "--quick", "--epochs", "1"]) == 2
    assert "already holds a vae checkpoint (last.pt): pass --resume" in capsys.readouterr().err
    (out / "last.pt").unlink()  # what is left: final_metrics.json (and samples), no checkpoint
    assert main(["train", "vae", "--out", str(out), "--no-progress", "--quick", "--epochs", "1"]) == 2
    assert "holds files of an earlier run (final_metrics.json) but no last.pt" in capsys.readouterr().err


def test_amp_and_quick_can_be_switched_off_on_resume(tmp_path):
    out = tmp_path / "run"
    train(_config(out, epochs=1, amp="bf16"))
    train(_config(out, epochs=2, amp="none", quick=False, resume=True))
    saved = torch.load(out / "last.pt", weights_only=True)["train_config"]
    assert saved["amp"] == "none" and saved["quick"] is False
    assert TrainConfig(model="vae", out="runs/x").out == Path("runs/x")  # text paths from Python too


def test_a_second_run_on_a_locked_run_folder_stops_at_once(tmp_path, capsys):
    """Two runs in one --out would both write last.pt and metrics.jsonl: the second stops before
    it reads or writes anything (a --resume does not even read the checkpoint)."""
    out = tmp_path / "run"
    with _holding_the_lock(out):
        for extra in ([], ["--resume"]):
            assert main(["train", "realnvp", "--out", str(out), "--quick", "--epochs", "1", "--no-progress",
                         *extra]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"fastgen: error: --out {out}: another fastgen run") and len(err.splitlines()) == 1
            assert "is using this run folder" in err, err
        assert sorted(p.name for p in out.iterdir()) == [".lock"]


def test_a_run_holds_its_folder_lock_until_it_ends(tmp_path, monkeypatch):
    from fastgen.train import recipes
    from fastgen.train.run_lock import RunFolderBusy, RunLock

    out, recipe, seen = tmp_path / "run", recipes.get("vae"), []
    evaluate = recipe.evaluate

    def evaluate_and_try_the_lock(*args, **kwargs):  # mid-run: another run cannot take the folder
        with pytest.raises(RunFolderBusy, match=re.escape(f"--out {out}: another fastgen run (process {os.getpid()})")):
            RunLock.acquire(out)
        seen.append(True)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(recipe, "evaluate", evaluate_and_try_the_lock)
    train(_config(out, epochs=1))
    assert seen
    RunLock.acquire(out).release()  # released at the end: the next run may start
    with pytest.raises(TrainingInterrupted):
        train(_config(tmp_path / "stopped", epochs=1, stop_after_steps=2))
    RunLock.acquire(tmp_path / "stopped").release()  # an interrupted run releases it too


def test_only_rank_zero_locks_the_run_folder(tmp_path, monkeypatch):
    """Under torchrun only rank 0 writes the run's files, so only it takes the lock."""
    from fastgen.train import distributed
    from fastgen.train.run_lock import RunFolderBusy
    from fastgen.train.trainer import Trainer

    out = tmp_path / "run"
    with _holding_the_lock(out):
        monkeypatch.setattr(distributed, "setup", lambda device: distributed.Distributed(rank=1, world_size=2))
        Trainer(_config(out)).close()
        monkeypatch.setattr(distributed, "setup", lambda device: distributed.Distributed(rank=0, world_size=2))
        with pytest.raises(RunFolderBusy):
            Trainer(_config(out))


def test_files_that_are_not_checkpoints_say_so(tmp_path, capsys):
    """torch.load's own error for another kind of file ("IndexError: pop from empty list" for a
    WAV file) means nothing to the user."""
    from fastgen.data import write_wav

    write_wav(tmp_path / "samples.wav", np.zeros(100), 8000)
    (tmp_path / "script.py").write_text("print('hello')\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    for name, reason in (("samples.wav", "not a file torch.save writes"), ("script.py", "not a file torch.save writes"),
                         ("empty.pt", "an empty file")):
        assert main(["evaluate", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err == f"fastgen: error: cannot read checkpoint {tmp_path / name}: not a fastgen checkpoint ({reason})\n"
    np.savez(tmp_path / "arrays.npz", x=np.zeros(3))  # a zip archive, as torch.save writes, but not torch's
    assert main(["sample", str(tmp_path / "arrays.npz")]) == 2
    assert "arrays.npz: not a fastgen checkpoint, or a damaged or truncated one (" in capsys.readouterr().err


def test_resumed_data_that_does_not_fit_names_the_setting():
    from fastgen.train.resume import data_mismatch

    audio = {"name": "/wavs", "shape": [1, 4000], "levels": 256, "sample_rate": 8000}
    assert data_mismatch(audio, dict(audio)) is None
    assert data_mismatch(audio, {**audio, "name": "notes"}) is None  # other data of the same shape: fine-tuning
    rate = data_mismatch(audio, {**audio, "shape": [1, 8000], "sample_rate": 16000})
    assert rate.startswith("--sample-rate 16000 differs from the 8000 Hz") and "--data" not in rate
    both = data_mismatch(audio, {"name": "/other", "shape": [1, 8000], "levels": 256, "sample_rate": 16000})
    assert "--sample-rate 16000" in both and "--data /other (shape (1, 8000), 256 levels) differs from the " \
        "checkpoint's data, /wavs (shape (1, 4000), 256 levels)" in both
    images = {"name": "digits", "shape": [1, 8, 8], "levels": 17}
    other = data_mismatch(images, {"name": "/x.npy", "shape": [1, 12, 12], "levels": 256})
    assert other.startswith("--data /x.npy (shape (1, 12, 12), 256 levels) differs from the checkpoint's data, digits")
    changed = data_mismatch(images, {**images, "shape": [1, 12, 12]})  # the same name, other contents
    assert changed.startswith("the checkpoint was trained on data of shape (1, 8, 8) with 17 levels, but digits now")
    old = {k: v for k, v in audio.items() if k != "sample_rate"}  # from before rates were recorded
    assert data_mismatch(old, {**audio, "sample_rate": 16000}) is None
