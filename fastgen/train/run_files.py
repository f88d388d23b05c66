"""The files of a training run folder, written by rank 0 only.

    runs/NAME/
      last.pt            checkpoint (atomic), rewritten each epoch and on SIGINT/SIGTERM
      best.pt            the checkpoint best on the validation split (recipes that select one)
      metrics.jsonl      one JSON object per step ("kind": "step") and per epoch ("kind": "epoch")
      samples.png        the latest sample grid (samples-epochNNN.png keeps each epoch's);
                         samples.wav for audio models
      loss.png           loss curves
      final_metrics.json the test metrics at the end of training
      .lock              locked (flock) while a run trains in the folder; see run_lock.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastgen.train import plots
from fastgen.train.checkpoint import BEST, LAST
from fastgen.train.run_lock import make_run_folder


class RunFiles:
    def __init__(self, out: Path, *, enabled: bool) -> None:
        self.out = out
        self.enabled = enabled
        self.checkpoint = out / LAST
        self.best = out / BEST
        self.metrics = out / "metrics.jsonl"
        self.final_metrics = out / "final_metrics.json"

    def prepare(self, *, resume: bool) -> None:
        if self.enabled:
            make_run_folder(self.out)
            if not resume and self.metrics.exists():
                self.metrics.unlink()  # a fresh run starts a fresh log

    def log(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.metrics.open("a") as handle:
                handle.write(json.dumps(record) + "\n")

    def read_log(self, kind: str) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        return [r for r in self._records() if r.get("kind") == kind]

    def _records(self) -> list[dict[str, Any]]:
        """The log's records. A last line that does not parse is the torn tail of a write a crash
        cut short (its step is recomputed on resume) and is dropped; a bad line before it is an error."""
        lines = [line for line in self.metrics.read_text().splitlines() if line.strip()]
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                if number == len(lines):
                    break
                raise ValueError(f"{self.metrics}: line {number} is not JSON ({error}); "
                                 "fix or delete that line to resume") from None
        return records

    def truncate_log_after(self, global_step: int) -> None:
        """On resume, drop log lines written after the checkpoint (they will be recomputed)."""
        if not self.enabled or not self.metrics.exists():
            return
        kept = [json.dumps(r) for r in self._records() if r.get("global_step", 0) <= global_step]
        self.metrics.write_text("".join(k + "\n" for k in kept))

    def samples(self, write, suffix: str, epoch: int) -> None:
        """Write an epoch's samples with ``write(path)`` (as samples-epochNNN and samples) and the loss curves."""
        if self.enabled:
            write(self.out / f"samples-epoch{epoch:03d}{suffix}")
            write(self.out / f"samples{suffix}")
            steps = self.read_log("step")
            if steps:
                plots.save_loss_curves(steps, self.out / "loss.png")

    def final(self, metrics: dict[str, Any]) -> None:
        if self.enabled:
            self.final_metrics.write_text(json.dumps(metrics, indent=2) + "\n")
