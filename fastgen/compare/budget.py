"""The training budget of ``fastgen compare``: wall-clock seconds or optimisation steps per model."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``"10m"``, ``"90s"``, ``"1.5h"`` or plain seconds ``"600"`` -> seconds (> 0)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", str(text))
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"a duration like 10m, 90s or 1.5h, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass(frozen=True)
class Budget:
    """Each model trains until ``seconds`` of training time (evaluation not counted) or ``steps``
    optimisation steps, whichever is set."""

    seconds: float | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.steps is None):
            raise ValueError("a budget is either seconds or steps")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"budget seconds must be > 0, got {self.seconds}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"budget steps must be >= 1, got {self.steps}")

    def done(self, seconds: float, steps: int) -> bool:
        return steps >= self.steps if self.steps is not None else seconds >= self.seconds

    def fraction(self, seconds: float, steps: int) -> float:
        """How much of the budget is spent, in [0, 1]."""
        spent = steps / self.steps if self.steps is not None else seconds / self.seconds
        return min(1.0, spent)

    @property
    def label(self) -> str:
        if self.steps is not None:
            return f"{self.steps} step{'s' if self.steps != 1 else ''} per model"
        seconds = self.seconds
        shown = f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
        return f"{shown} of training per model"
