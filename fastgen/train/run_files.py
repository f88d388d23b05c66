"""The files of a training run folder, written by rank 0 only.

    runs/NAME/
      last.pt            checkpoint (atomic), rewritten each epoch and on SIGINT/SIGTERM
      best.pt            the checkpoint best on the validation split (recipes that select one)
      metrics.jsonl      one JSON object per step ("kind": "step") and per epoch ("kind": "epoch")
      samples.png        the latest sample grid (samples-epochNNN.png keeps each epoch's);
                         samples.wav for audio models
      loss.png           loss curves
      final_metrics.json the test metrics at the end of training
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastgen.train import plots
from fastgen.train.checkpoint import BEST, LAST


class RunFiles:
    def __init__(self, out: Path, *, enabled: bool) -> None:
        self.out = out
        self.enabled = enabled
        self.checkpoint = out / LAST
        self.best = out / BEST
        self.metrics = out / "metrics.jsonl"

    def prepare(self, *, resume: bool) -> None:
        if self.enabled:
            self.out.mkdir(parents=True, exist_ok=True)
            if not resume and self.metrics.exists():
                self.metrics.unlink()  # a fresh run starts a fresh log

    def log(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.metrics.open("a") as handle:
                handle.write(json.dumps(record) + "\n")

    def read_log(self, kind: str) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        records = [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]
        return [r for r in records if r.get("kind") == kind]

    def truncate_log_after(self, global_step: int) -> None:
        """On resume, drop log lines written after the checkpoint (they will be recomputed)."""
        if not self.enabled or not self.metrics.exists():
            return
        kept = []
        for line in self.metrics.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if record.get("global_step", 0) <= global_step:
                kept.append(line)
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
            (self.out / "final_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
