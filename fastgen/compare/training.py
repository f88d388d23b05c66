"""One model of ``fastgen compare``: trained under the budget with its recipe, or loaded from a checkpoint.

Training uses the model's own recipe (the same steps as ``fastgen train``: its optimizers,
learning rate, batch size and warm-up) on the whole training split, so every model sees the
same data. Only the training steps count against the budget; the learning-curve evaluations
in between (test bits/dim at a few points of the budget) are timed apart.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fastgen.compare.budget import Budget
from fastgen.train import checkpoint
from fastgen.train.recipes import Amp, Recipe
from fastgen.train.step_context import StepContext, global_batches
from fastgen.train.sync_batchnorm import min_batch_size
from fastgen.train.trainer import TrainingDiverged, divergence, hold_out, warmup_schedulers


@dataclass
class Trained:
    """A model ready to measure, and where its training figures come from."""

    model: nn.Module
    source: str  # "trained in this run" or "checkpoint PATH"
    steps: int | None = None
    images_per_second: float | None = None
    train_seconds: float | None = None
    curve: list[tuple[float, float]] = field(default_factory=list)  # (training seconds, test bits/dim)
    final_loss: dict[str, float] = field(default_factory=dict)


def curve_score(recipe: Recipe, model: nn.Module, data: Any, device: torch.device, seed: int) -> float | None:
    """Test bits/dim for the learning curve (the recipe's cheap validation score on the test
    split), None for models without a likelihood."""
    if recipe.test_metric != "bits_per_dim":
        return None
    model.eval()
    try:
        with torch.no_grad():  # validation_score scores the split it is given as "test"
            return float(recipe.validation_score(model, data, device, seed))
    finally:
        model.train()


SELECTIONS = ("last", "best")


def train_under_budget(recipe: Recipe, data: Any, device: torch.device, budget: Budget, *, seed: int = 0,
                       curve_points: int = 4, progress: bool = True, select: str = "last") -> Trained:
    """Train ``recipe``'s model on ``data.train`` until ``budget`` is spent.

    ``select="last"``: the model as it is at the end of the budget. ``"best"``: 10% of the training
    split is held out, scored at every curve point, and the state best on it is kept (models
    without a likelihood keep the last state).
    """
    torch.manual_seed(seed)
    model = recipe.build(data).to(device)
    model.train()
    parts = recipe.trained_parts(model)
    optimizers = recipe.optimizers(parts, recipe.lr)
    schedulers = warmup_schedulers(optimizers)
    amp = Amp(None, device)
    train, validation = (data.train, None) if select == "last" else hold_out(data, 0.1)
    batch_size = min(recipe.batch_size, len(train))
    min_batch = min_batch_size(model)
    if len(train) < min_batch:
        from fastgen.data import DataError

        raise DataError(f"{recipe.name} (BatchNorm) needs at least 2 training images, got {len(train)}")
    best: tuple[float, float, dict] | None = None  # (validation score, seconds, state)
    bar = _bar(recipe.name, budget) if progress else None
    spent, steps, images, epoch = 0.0, 0, 0, 0
    curve: list[tuple[float, float]] = []
    next_point = 1
    losses: dict[str, float] = {}
    try:
        while not budget.done(spent, steps):
            for rows in global_batches(len(train), batch_size, 1, seed=seed, epoch=epoch, min_batch=min_batch):
                if budget.done(spent, steps):
                    break
                start = time.perf_counter()
                ctx = StepContext.for_step(seed, steps, len(rows), 0, 1, device)
                losses = recipe.train_step(model, parts, optimizers, train[rows].to(device), data.levels, ctx, amp)
                for scheduler in schedulers.values():
                    scheduler.step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                spent += time.perf_counter() - start
                steps += 1
                images += len(rows)
                _check_finite(recipe.name, model, losses, steps)
                if bar is not None:
                    # refresh=False and update(): redrawn at most every mininterval, not every step
                    # (a log file got two lines a step)
                    shown = {k: f"{v:.3g}" for k, v in list(losses.items())[:1]}
                    bar.set_postfix(shown | {"img/s": f"{images / spent:.0f}"}, refresh=False)
                    bar.update(round(budget.fraction(spent, steps) * 1000) - bar.n)
                reached = next_point
                while next_point <= curve_points and budget.fraction(spent, steps) >= next_point / curve_points:
                    next_point += 1
                if next_point > reached:  # one evaluation however many points this step passed
                    score = curve_score(recipe, model, data, device, seed)
                    if score is not None:
                        curve.append((spent, score))
                    if validation is not None:
                        held = curve_score(recipe, model, validation, device, seed)
                        if held is not None and (best is None or held < best[0]):
                            best = (held, spent, copy.deepcopy(model.state_dict()))
            epoch += 1
    finally:
        if bar is not None:
            bar.close()
    source = "trained in this run"
    if best is not None:
        model.load_state_dict(best[2])
        source += f", best on validation at {best[1]:.0f} s"
    model.eval()
    return Trained(model, source, steps, images / max(spent, 1e-9), spent, curve, losses)


def _check_finite(name: str, model: nn.Module, losses: dict[str, float], step: int) -> None:
    """Stop with a plain message once training has diverged: every figure measured after it
    (bits/dim, samples, x -> z) would be built on NaN."""
    bad = divergence(model, losses)
    if bad is None:
        return
    raise TrainingDiverged(f"{name}: training diverged at step {step} ({bad}; the parameters are no longer "
                           "finite), so nothing of it could be measured")


def load_trained(recipe: Recipe, path: Path, data: Any, device: torch.device) -> Trained:
    """The model of a checkpoint (file or run folder); its training figures from the recorded metrics.

    Raises CheckpointError for a missing/unreadable file, a checkpoint of another model, or one
    trained on data of another shape or number of levels.
    """
    payload = checkpoint.load(path, expected_model=recipe.name)
    saved = payload["data"]
    if not all(key in saved for key in ("shape", "levels")):
        raise checkpoint.CheckpointError(f"{path}: the checkpoint does not record its data's shape and levels")
    if list(saved["shape"]) != list(data.shape) or saved["levels"] != data.levels:
        raise checkpoint.CheckpointError(
            f"{path}: trained on data of shape {tuple(saved['shape'])} with {saved['levels']} levels, not "
            f"{tuple(data.shape)} with {data.levels} levels ('{data.name}')")
    model = checkpoint.rebuild_model(payload, recipe, path)
    metrics = payload.get("metrics") or {}
    return Trained(model.to(device).eval(), f"checkpoint {path} (epoch {payload.get('epoch')})",
                   steps=payload.get("global_step"), images_per_second=metrics.get("images_per_second"))


def _bar(name: str, budget: Budget):
    from tqdm import tqdm

    return tqdm(total=1000, desc=f"{name:>8} ({budget.label})", file=sys.stderr, dynamic_ncols=True, leave=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}", mininterval=0.5)
