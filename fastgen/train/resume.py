"""What a resumed run takes over from its checkpoint, and what it may not change mid-epoch."""

from __future__ import annotations

from typing import Any

import torch

IMAGES = "_images"  # the image count kept beside an epoch's loss sums (checkpoint key)


def saved_setting(payload: dict[str, Any], name: str, recipe_default: Any) -> Any:
    """The value of train setting ``name`` the checkpoint's run used: the one it recorded, or
    ``recipe_default`` when it was started without the option (the checkpoint records None)."""
    value = (payload.get("train_config") or {}).get(name)
    return recipe_default if value is None else value


def check_mid_epoch_settings(payload: dict[str, Any] | None, batch_size: int, seed: int, data: str, *,
                             default_batch_size: int) -> None:
    """A run stopped mid-epoch continues that epoch's batches: another batch size, seed (which
    orders the epoch's images) or dataset would skip or repeat images, and mix two of them in the
    epoch's means. ``default_batch_size`` is the recipe's, which a run started without
    --batch-size used (its checkpoint records None)."""
    if not payload or not payload.get("step_in_epoch"):
        return
    saved = {"--batch-size": saved_setting(payload, "batch_size", default_batch_size),
             "--seed": saved_setting(payload, "seed", None),
             "--data": (payload.get("data") or {}).get("name")}
    for option, value in (("--batch-size", batch_size), ("--seed", seed), ("--data", data)):
        if saved[option] is not None and saved[option] != value:
            raise ValueError(f"{option} {value} differs from the {saved[option]} of the checkpoint, which stopped at "
                             f"step {payload['step_in_epoch']} of an epoch: resume with {option} {saved[option]} (or "
                             "none), or change it at an epoch boundary")


def data_mismatch(saved: dict[str, Any], here: dict[str, Any]) -> str | None:
    """Why the data a resumed run loaded does not fit its checkpoint's model, or None when it does.

    Parameters
    ----------
    saved : dict
        The checkpoint's record of its data: name, shape, levels and, for audio, sample_rate.
    here : dict
        The same facts of the data this run loaded.

    Returns
    -------
    str or None
        The message, naming each setting that differs with both values. Another sample rate is
        refused (the model is built for its rate); another dataset only when its shape or levels
        differ (fine-tuning on other data of the same shape is allowed).
    """
    problems = []
    rate = saved.get("sample_rate")  # None: images, or a checkpoint from before rates were recorded
    if rate is not None and here.get("sample_rate") != rate:
        problems.append(f"--sample-rate {here.get('sample_rate')} differs from the {rate} Hz the checkpoint's run "
                        f"trained at (its model is built for that rate): resume without --sample-rate")
    shape = [saved["shape"], saved["levels"]] != [here["shape"], here["levels"]]
    if shape and saved.get("name") != here["name"]:
        problems.append(f"--data {here['name']} (shape {tuple(here['shape'])}, {here['levels']} levels) differs "
                        f"from the checkpoint's data, {saved.get('name')} (shape {tuple(saved['shape'])}, "
                        f"{saved['levels']} levels): resume without --data, or with data of that shape")
    if shape and not problems:  # the same settings: the data itself changed since the checkpoint
        problems.append(f"the checkpoint was trained on data of shape {tuple(saved['shape'])} with {saved['levels']} "
                        f"levels, but {here['name']} now has shape {tuple(here['shape'])} with {here['levels']} levels")
    return "; ".join(problems) or None


def scale_learning_rates(optimizers: dict[str, torch.optim.Optimizer], schedulers: dict[str, Any],
                         factor: float) -> None:
    """Multiply every learning rate by ``factor``: the optimizers' current and initial rates and
    the warm-up schedulers' bases (their states, loaded from a checkpoint, carry the old rate)."""
    for opt in optimizers.values():
        for group in opt.param_groups:
            for key in ("lr", "initial_lr"):
                if key in group:
                    group[key] *= factor
    for sched in schedulers.values():
        sched.base_lrs = [lr * factor for lr in sched.base_lrs]
        sched._last_lr = [group["lr"] for group in sched.optimizer.param_groups]


def epoch_totals(saved: dict[str, float], step_in_epoch: int, batch_size: int) -> dict[str, float]:
    """The running totals of a checkpoint's unfinished epoch: loss sums over images plus IMAGES.
    Older checkpoints summed the step means; every batch before a mid-epoch stop was full."""
    if not saved or IMAGES in saved:
        return dict(saved)
    return {**{k: v * batch_size for k, v in saved.items()}, IMAGES: step_in_epoch * batch_size}
