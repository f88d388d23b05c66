"""The training loop behind ``fastgen train``.

One loop for every model: the model's :class:`~fastgen.train.recipes.Recipe` says what a step
does. The loop owns data order (a DistributedSampler, also with one process), per-step
randomness (:class:`StepContext`), logging, images, checkpoints, signals and resumption.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from fastgen import __version__
from fastgen.data import ImageData
from fastgen.data.split import split_indices
from fastgen.train import checkpoint, distributed
from fastgen.train.recipes import Amp, Recipe, get
from fastgen.train.resume import (
    IMAGES,
    check_mid_epoch_settings,
    data_mismatch,
    epoch_totals,
    saved_setting,
    scale_learning_rates,
)
from fastgen.train.run_files import RunFiles
from fastgen.train.run_lock import RunLock
from fastgen.train.step_context import StepContext, global_batches
from fastgen.train.sync_batchnorm import convert_batchnorm, min_batch_size

WARMUP_STEPS = 100  # linear learning-rate warm-up, then constant


@dataclass
class TrainConfig:
    """Everything ``fastgen train`` accepts (None means the recipe's default; with ``resume``, the
    settings in RESUMED_SETTINGS left None are those the checkpoint's run was started with)."""

    model: str
    data: str | None = None  # the recipe's default data (digits for images)
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    out: Path | None = None
    device: str = "cpu"
    amp: str | None = None
    seed: int | None = None  # 0
    resume: bool = False
    quick: bool | None = None  # False
    samples: int | None = None  # 64
    progress: bool = True
    sample_rate: int | None = None  # audio data: resample to this rate (None: the recipe's default)
    stop_after_steps: int | None = None  # end as if interrupted after this many steps (tests)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.out, str):  # a path given as text, as from Python code
            self.out = Path(self.out)


# What a resumed run keeps from the run it continues unless given again, and the defaults of
# those a new run leaves None without a recipe default. (Data: the checkpoint records where it
# came from, as a dataset name or an absolute path.)
RESUMED_SETTINGS = ("data", "epochs", "batch_size", "lr", "amp", "seed", "quick", "samples", "sample_rate")
_DEFAULTS = {"seed": 0, "quick": False, "samples": 64}


def resolve_settings(config: TrainConfig, default_data: str, payload: dict[str, Any] | None) -> TrainConfig:
    """``config`` with its None settings filled: from the checkpoint ``payload`` being resumed
    (its run's settings), then the defaults."""
    saved = dict((payload or {}).get("train_config") or {})
    if payload is not None:
        saved["data"] = payload["data"].get("name", saved.get("data"))
        saved["sample_rate"] = payload["data"].get("sample_rate", saved.get("sample_rate"))
    values = {}
    for name in RESUMED_SETTINGS:
        value = getattr(config, name)
        if value is None:
            value = saved.get(name)
        if value is None:
            value = default_data if name == "data" else _DEFAULTS.get(name)
        values[name] = value
    return dataclasses.replace(config, **values)


class TrainingInterrupted(Exception):
    """Raised after the checkpoint is written when SIGINT/SIGTERM (or stop_after_steps) ends a run."""

    def __init__(self, signal_number: int, checkpoint_path: Path) -> None:
        super().__init__(f"interrupted by signal {signal_number}; checkpoint saved to {checkpoint_path}")
        self.signal_number = signal_number
        self.checkpoint_path = checkpoint_path


class TrainingDiverged(RuntimeError):
    """Raised when a step leaves the model's parameters NaN or infinite (the last checkpoint is kept)."""


def divergence(model: torch.nn.Module, losses: dict[str, float]) -> str | None:
    """The non-finite losses of a step after which the parameters are not finite either, else None.

    A non-finite loss alone is not divergence: fp16 autocast overflows now and then, and its grad
    scaler skips those steps; the parameters are read only when a loss is not finite.
    """
    if all(math.isfinite(v) for v in losses.values()):
        return None
    if all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        return None
    return ", ".join(f"{k} {v}" for k, v in losses.items() if not math.isfinite(v))


class _SignalFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps (so it can checkpoint)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_SignalFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.received is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def warmup_schedulers(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
    """Per optimizer: a linear learning-rate warm-up over WARMUP_STEPS steps, then constant."""
    warmup = lambda step: min(1.0, (step + 1) / WARMUP_STEPS)  # noqa: E731
    return {name: torch.optim.lr_scheduler.LambdaLR(opt, warmup) for name, opt in optimizers.items()}


def hold_out(data: Any, fraction: float) -> tuple[torch.Tensor, Any]:
    """Split ``fraction`` of ``data``'s training split off (stratified by label, fixed seed):
    (the training images kept, a copy of ``data`` whose test split is the held-out part)."""
    labels = None if data.train_labels is None else data.train_labels.numpy()
    keep, held = (torch.from_numpy(i) for i in split_indices(len(data.train), labels, fraction, seed=0))
    held_out = dataclasses.replace(data, name=f"{data.name} (validation)", train=data.train[keep],
                                   test=data.train[held], train_labels=None, test_labels=None, class_names=None)
    return data.train[keep], held_out


class Trainer:
    """Runs one training job; see :func:`train`."""

    def __init__(self, config: TrainConfig) -> None:
        self.recipe: Recipe = get(config.model)
        self.out = config.out or Path("runs") / config.model
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"--out {self.out} is a file, not a run folder")
        self.device = torch.device(config.device)
        self.dist = distributed.setup(self.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.files = RunFiles(self.out, enabled=self.dist.is_main)
        # Rank 0 writes the run's files, so it alone locks the folder: from before the checkpoint
        # is read until close(), so that a second run on the folder stops before it reads or writes.
        self._lock: RunLock | None = None
        try:
            if self.dist.is_main:
                self._lock = RunLock.acquire(self.out)
            self._configure(config)
        except BaseException:
            self.close()
            raise

    def _configure(self, config: TrainConfig) -> None:
        """Read the checkpoint being resumed, settle the settings and load the data."""
        self._resume_from = None
        if config.resume:
            self._resume_from = checkpoint.load(self.files.checkpoint, expected_model=self.recipe.name)
        self.config = config = resolve_settings(config, self.recipe.default_data, self._resume_from)
        self.epochs = config.epochs or (self.recipe.quick_epochs if config.quick else self.recipe.epochs)
        self.batch_size = config.batch_size or self.recipe.batch_size
        self.lr = config.lr or self.recipe.lr
        if self.batch_size < self.dist.world_size:
            raise ValueError(f"--batch-size {self.batch_size} is smaller than the {self.dist.world_size} processes")
        self.data: ImageData = self.recipe.load_data(config.data, sample_rate=config.sample_rate)
        check_mid_epoch_settings(self._resume_from, self.batch_size, self.config.seed, self.data.name,
                                 default_batch_size=self.recipe.batch_size)
        self.train_images, self.validation = self._validation_split()

    def _validation_split(self) -> tuple[torch.Tensor, ImageData | None]:
        """(training images, validation split as an ImageData whose test split it is, or None)."""
        fraction = self.recipe.validation_fraction
        if fraction <= 0:
            return self.data.train, None
        return hold_out(self.data, fraction)

    # ------------------------------------------------------------------ state
    def _build(self) -> dict[str, Any]:
        resume_from, self._resume_from = self._resume_from, None
        if resume_from is not None:
            self._check_data(resume_from)
        else:
            self._check_fresh_folder()
        torch.manual_seed(self.config.seed)
        if resume_from:
            model = checkpoint.rebuild_model(resume_from, self.recipe, self.files.checkpoint)
        else:
            model = self.recipe.build(self.data)
        model = model.to(self.device)
        self.min_batch = min_batch_size(model)
        if self.batch_size < self.min_batch or len(self.train_images) < self.min_batch:
            raise ValueError(f"a {self.recipe.name} (BatchNorm) trains on at least 2 images per step: got "
                             f"--batch-size {self.batch_size} and {len(self.train_images)} training images")
        if self.dist.enabled:  # statistics over the global batch, as in a 1-process run
            model = convert_batchnorm(model)
        parts = self.recipe.trained_parts(model)
        optimizers = self.recipe.optimizers(parts, self.lr)
        schedulers = warmup_schedulers(optimizers)
        amp = Amp(self.config.amp, self.device)
        # Where the run stands; epoch_totals holds the current epoch's step losses summed over its
        # images (and the image count) so an epoch resumed mid-way reports the same means as an
        # uninterrupted one.
        position = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "epoch_totals": {},
                    "best": {"value": None, "epoch": None}}
        if resume_from:
            for name, opt in optimizers.items():
                opt.load_state_dict(resume_from["optimizers"][name])
            for name, sched in schedulers.items():
                sched.load_state_dict(resume_from["schedulers"][name])
            self._apply_new_lr(resume_from, optimizers, schedulers)
            amp.load_state_dict(resume_from.get("amp", {}))
            checkpoint.restore_rng(resume_from["rng"])
            position = {k: resume_from.get(k, position[k]) for k in position}
            position["epoch_totals"] = epoch_totals(position["epoch_totals"], position["step_in_epoch"],
                                                    self.batch_size)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            parts = {k: DDP(v, device_ids=ids) for k, v in parts.items()}
        return dict(model=model, parts=parts, optimizers=optimizers, schedulers=schedulers, amp=amp, **position)

    def _check_fresh_folder(self) -> None:
        """A new run does not start in a folder of another run: its last.pt would be overwritten,
        and a stale best.pt or final_metrics.json would be read as this run's by sample/evaluate."""
        if self.files.checkpoint.exists():
            try:
                model = checkpoint.load(self.files.checkpoint)["model"]
            except checkpoint.CheckpointError:
                model = None
            if model == self.recipe.name:
                advice = "pass --resume to continue it, or choose another --out"
            else:
                advice = "choose another --out"
            what = f"a {model} checkpoint" if model else "a checkpoint"
            raise checkpoint.CheckpointError(
                f"{self.out} already holds {what} ({self.files.checkpoint.name}): {advice}")
        stale = [p.name for p in (self.files.best, self.files.final_metrics) if p.exists()]
        if stale:
            raise checkpoint.CheckpointError(f"{self.out} holds files of an earlier run ({', '.join(stale)}) but no "
                                             f"{self.files.checkpoint.name} to resume: choose another --out, or remove "
                                             "them")

    def _apply_new_lr(self, payload: dict[str, Any], optimizers: dict[str, torch.optim.Optimizer],
                      schedulers: dict[str, Any]) -> None:
        """A resumed run given another --lr: the optimizer states just loaded carry the old one
        (and the warm-up its base), so every learning rate is scaled by new / old."""
        started_with = saved_setting(payload, "lr", self.recipe.lr)
        if self.lr == started_with:
            return
        scale_learning_rates(optimizers, schedulers, self.lr / started_with)
        if self.dist.is_main:
            print(f"resuming with --lr {self.lr:g} (the run started with {started_with:g})", file=sys.stderr)

    def _check_data(self, payload: dict[str, Any]) -> None:
        """The data loaded to resume must fit the checkpoint's model (see :func:`data_mismatch`)."""
        problem = data_mismatch(payload["data"], self._data_facts())
        if problem:
            raise checkpoint.CheckpointError(problem)

    def _data_facts(self) -> dict[str, Any]:
        """What a checkpoint records of its data (audio: also the sample rate, for evaluate)."""
        facts = {"name": self.data.name, "shape": list(self.data.shape), "levels": self.data.levels}
        if getattr(self.data, "sample_rate", None) is not None:
            facts["sample_rate"] = self.data.sample_rate
        return facts

    def _save(self, state: dict[str, Any], metrics: dict[str, Any] | None = None, *, best: bool = False) -> None:
        """Write ``last.pt`` (and the same payload as ``best.pt`` when ``best``)."""
        if not self.dist.is_main:
            return
        payload = {
            "format": checkpoint.FORMAT,
            "fastgen_version": __version__,
            "model": self.recipe.name,
            "config": state["model"].config(),
            "data": self._data_facts(),
            "state_dict": state["model"].state_dict(),
            "optimizers": {k: o.state_dict() for k, o in state["optimizers"].items()},
            "schedulers": {k: s.state_dict() for k, s in state["schedulers"].items()},
            "amp": state["amp"].state_dict(),
            "rng": checkpoint.rng_state(),
            "epoch": state["epoch"],
            "step_in_epoch": state["step_in_epoch"],
            "global_step": state["global_step"],
            "epoch_totals": state["epoch_totals"],
            "best": state["best"],
            "train_config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.config).items()},
            "metrics": metrics or {},
        }
        checkpoint.save_atomic(payload, self.files.checkpoint)
        if best:
            checkpoint.save_atomic(payload, self.files.best)

    # ------------------------------------------------------------------ loop
    def run(self) -> dict[str, Any]:
        state = self._build()
        self.files.prepare(resume=self.config.resume)
        if self.config.resume:
            self.files.truncate_log_after(state["global_step"])
        if state["epoch"] >= self.epochs and self.dist.is_main:
            done = f"{state['epoch']} epoch(s)"
            if state["step_in_epoch"]:
                done += f" and {state['step_in_epoch']} step(s) of epoch {state['epoch'] + 1}"
            print(f"the checkpoint has trained {done}, --epochs is {self.epochs}: nothing to train, only the final "
                  f"evaluation runs, of the weights at step {state['global_step']} (raise --epochs to train on)",
                  file=sys.stderr)
        train = self.train_images
        world, rank = self.dist.world_size, self.dist.rank
        steps_done = 0
        with _SignalFlag() as flag:
            for epoch in range(state["epoch"], self.epochs):
                batches = global_batches(len(train), self.batch_size, world, seed=self.config.seed, epoch=epoch,
                                         min_batch=self.min_batch)
                steps = len(batches)
                totals = state["epoch_totals"]
                start, images_timed = time.perf_counter(), 0
                bar = self._progress(epoch, steps, initial=state["step_in_epoch"])
                for step in range(state["step_in_epoch"], steps):
                    ctx = StepContext.for_step(self.config.seed, state["global_step"], len(batches[step]), rank, world,
                                               self.device)
                    batch = train[batches[step][ctx.rows]].to(self.device)
                    losses = self.recipe.train_step(state["model"], state["parts"], state["optimizers"], batch,
                                                    self.data.levels, ctx, state["amp"])
                    for sched in state["schedulers"].values():
                        if state["amp"].stepped(sched.optimizer):
                            sched.step()
                    # Means over the global batch, whatever the number of processes.
                    losses = distributed.average(losses, self.dist, self.device, weight=ctx.loss_scale)
                    self._check_finite(state, losses, epoch, step)
                    state["global_step"] += 1
                    state["step_in_epoch"] = step + 1
                    steps_done += 1
                    images = len(batches[step])  # the global batch (the epoch's last one may be smaller)
                    images_timed += images
                    for key, value in losses.items():
                        totals[key] = totals.get(key, 0.0) + value * images
                    totals[IMAGES] = totals.get(IMAGES, 0) + images
                    self.files.log({"kind": "step", "epoch": epoch, "step": step, "global_step": state["global_step"],
                                    **losses})
                    if bar is not None:
                        elapsed = time.perf_counter() - start
                        bar.set_postfix(loss=f"{next(iter(losses.values())):.4f}",
                                        img_s=f"{images_timed / max(elapsed, 1e-9):.0f}",
                                        refresh=False)  # drawn by update(), at most every mininterval
                        bar.update(1)
                    stop_signal = flag.received
                    if stop_signal is None and self.config.stop_after_steps is not None \
                            and steps_done >= self.config.stop_after_steps:
                        stop_signal = signal.SIGINT
                    if self._any_rank(stop_signal is not None):
                        if bar is not None:
                            bar.close()
                        self._save(state)
                        distributed.barrier(self.dist)
                        raise TrainingInterrupted(int(stop_signal or signal.SIGTERM), self.files.checkpoint)
                if bar is not None:
                    bar.close()
                self._end_epoch(state, epoch, totals, images_timed, time.perf_counter() - start)
                # A signal during the epoch's evaluation: the epoch's checkpoint is written, stop
                # there (after the last epoch, before the final evaluation) rather than run on.
                if self._any_rank(flag.received is not None):
                    distributed.barrier(self.dist)
                    raise TrainingInterrupted(int(flag.received or signal.SIGTERM), self.files.checkpoint)
        final = self._final_evaluation(state)
        return final

    def _check_finite(self, state: dict[str, Any], losses: dict[str, float], epoch: int, step: int) -> None:
        """Stop with a plain message once training has diverged, before NaN parameters reach a
        checkpoint or the samples (see :func:`divergence`)."""
        bad = divergence(state["model"], losses)
        if bad is None:
            return
        kept = (f"the last checkpoint, {self.files.checkpoint}, is kept as it was"
                if self.files.checkpoint.exists() else "no checkpoint was written")
        raise TrainingDiverged(f"training diverged at step {step + 1} of epoch {epoch + 1} ({bad}; the model's "
                               f"parameters are no longer finite); {kept}. Try a lower --lr (now {self.lr:g})")

    def _any_rank(self, flag: bool) -> bool:
        if not self.dist.enabled:
            return flag
        return distributed.average({"stop": float(flag)}, self.dist, self.device)["stop"] > 0

    def _progress(self, epoch: int, steps: int, initial: int):
        if not (self.config.progress and self.dist.is_main):
            return None
        from tqdm import tqdm

        return tqdm(total=steps, initial=initial, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step",
                    file=sys.stderr, dynamic_ncols=True, leave=True, mininterval=0.5)

    def _end_epoch(self, state, epoch: int, totals: dict[str, float], images_timed: int,
                   seconds: float) -> dict[str, Any]:
        """Evaluate, sample, log and checkpoint after ``epoch``. Its losses are means over its
        images; ``images_timed`` were trained in ``seconds`` (this process's part of the epoch)."""
        images = totals.get(IMAGES, 0)
        metrics: dict[str, Any] = {k: v / max(1, images) for k, v in totals.items() if k != IMAGES}
        model = state["model"]
        if self.dist.is_main:
            model.eval()
            with torch.no_grad():
                metrics.update({f"test_{k}": v for k, v in self.recipe.evaluate(
                    model, self.data, self.device, quick=True, seed=self.config.seed).items()})
                generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
                count = min(self.config.samples, self.recipe.max_epoch_samples or self.config.samples)
                samples = self.recipe.sample(model, count, generator).cpu()
                if self.validation is not None:
                    metrics[self._validation_key()] = self.recipe.validation_score(
                        model, self.validation, self.device, self.config.seed)
            model.train()
            self.files.samples(lambda path: self.recipe.save_samples(model, samples, path), self.recipe.sample_suffix,
                               epoch + 1)
        metrics = distributed.broadcast_object(metrics, self.dist)
        metrics.update(seconds=seconds, images_per_second=images_timed / max(seconds, 1e-9))
        state["epoch"], state["step_in_epoch"], state["epoch_totals"] = epoch + 1, 0, {}
        self.files.log({"kind": "epoch", "epoch": epoch + 1, "global_step": state["global_step"], **metrics})
        improved = False
        if self.validation is not None:
            score, best = metrics[self._validation_key()], state["best"]["value"]
            if best is None or score < best:
                state["best"] = {"value": score, "epoch": epoch + 1}
                improved = True
        self._save(state, metrics, best=improved)
        if self.dist.is_main:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
            print(f"epoch {epoch + 1}/{self.epochs}: {shown}", file=sys.stderr)
        return metrics

    def _validation_key(self) -> str:
        return f"validation_{self.recipe.test_metric}"

    def _final_evaluation(self, state) -> dict[str, Any]:
        final: dict[str, Any] = {}
        selected: dict[str, Any] = {}
        if self.dist.is_main:
            model = state["model"].eval()
            if self.validation is not None and self.files.best.is_file():
                # Test the epoch that was best on the validation split (early stopping).
                best = checkpoint.load(self.files.best, expected_model=self.recipe.name)
                model.load_state_dict(best["state_dict"])
                selected = {"selected_epoch": best["best"]["epoch"], self._validation_key(): best["best"]["value"]}
            with torch.no_grad():
                final = self.recipe.evaluate(model, self.data, self.device, quick=self.config.quick,
                                             seed=self.config.seed)
            final = {"model": self.recipe.name, "data": self.data.name, "epochs": state["epoch"],
                     "global_step": state["global_step"], **selected, **final}
            self.files.final(final)
        distributed.barrier(self.dist)
        return final

    def close(self) -> None:
        """Release the run folder's lock and leave the process group."""
        if self._lock is not None:
            self._lock.release()
        distributed.teardown(self.dist)


def train(config: TrainConfig) -> dict[str, Any]:
    """Train ``config.model`` on ``config.data``; returns the final test metrics (rank 0)."""
    trainer = Trainer(config)
    try:
        return trainer.run()
    finally:
        trainer.close()
