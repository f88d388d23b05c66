"""``fastgen train glow|realnvp``: the validation split, the best-on-validation checkpoint,
resume, sample and evaluate from a run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fastgen.cli import main
from fastgen.train import TrainConfig, TrainingInterrupted, train
from fastgen.train.checkpoint import load


def _epochs(out: Path) -> list[dict]:
    records = map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
    return [r for r in records if r["kind"] == "epoch"]


@pytest.mark.parametrize("model", ["glow", "realnvp"])
def test_flow_run_keeps_the_epoch_best_on_validation(tmp_path, capsys, model):
    run = tmp_path / model
    assert main(["train", model, "--epochs", "3", "--out", str(run), "--no-progress", "--quick",
                 "--samples", "16"]) == 0
    for name in ("last.pt", "best.pt", "final_metrics.json", "samples.png"):
        assert (run / name).is_file(), name
    epochs = _epochs(run)
    scores = [e["validation_bits_per_dim"] for e in epochs]
    best_epoch = 1 + scores.index(min(scores))
    final = json.loads((run / "final_metrics.json").read_text())
    assert final["selected_epoch"] == best_epoch
    assert final["validation_bits_per_dim"] == pytest.approx(min(scores))
    assert final["bits_per_dim"] < 8  # far below a uniform model's log2(17) = 4.09 is not asked in 3 epochs
    best = load(run)  # a run folder loads its best checkpoint
    assert best["best"]["epoch"] == best_epoch and best["model"] == model
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    assert main(["sample", str(run), "-n", "4", "--temperature", "0.7", "-o", str(tmp_path / "t.png")]) == 0
    assert f"wrote 4 samples of {model} ({run / 'best.pt'}) to" in capsys.readouterr().out  # which file it read
    assert main(["sample", str(run), "--temperature", "-1", "-o", str(tmp_path / "u.png")]) == 2
    assert "--temperature: expected a finite number >= 0, got '-1'" in capsys.readouterr().err
    from fastgen.train.cli import _load_for_inference

    _, recipe, flow = _load_for_inference(str(run), torch.device("cpu"))
    with torch.no_grad():
        cold = recipe.sample(flow, 3, torch.Generator().manual_seed(0), temperature=0.0)
        warm = recipe.sample(flow, 3, torch.Generator().manual_seed(0))
    assert torch.equal(cold[0], cold[1]) and torch.equal(cold[0], cold[2])  # T = 0: every latent is zero
    assert not torch.equal(warm[0], warm[1])
    capsys.readouterr()
    assert main(["evaluate", str(run), "--quick", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["model"] == model and metrics["bits_per_dim"] > 0
    assert metrics["checkpoint"] == str(run / "best.pt")


def test_the_validation_split_is_held_out_of_training(tmp_path):
    from fastgen.train.trainer import Trainer

    trainer = Trainer(TrainConfig(model="glow", out=tmp_path / "g", progress=False))
    n_train, n_val = len(trainer.train_images), len(trainer.validation.test)
    assert n_train + n_val == len(trainer.data.train)
    assert n_val == round(0.1 * len(trainer.data.train))
    rows = {bytes(r.flatten().tolist()) for r in trainer.train_images}
    assert sum(bytes(r.flatten().tolist()) in rows for r in trainer.validation.test) < n_val  # mostly distinct images
    trainer.close()


def test_resumed_flow_run_keeps_its_best_record(tmp_path):
    out = tmp_path / "g"
    config = dict(model="glow", epochs=2, out=out, progress=False, samples=4, quick=True)
    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(**config, stop_after_steps=25))  # after the first epoch (20 steps)
    first = load(out / "last.pt")["best"]
    assert first["epoch"] == 1
    final = train(TrainConfig(**config, resume=True))
    assert final["selected_epoch"] in (1, 2)
    assert torch.isfinite(torch.tensor(final["bits_per_dim"]))
