"""Checkpoints: written atomically, validated on load.

A checkpoint holds everything needed to rebuild the model without the training command (its
recipe name and constructor config, the data's shape and levels) and to resume training exactly
(optimizers, schedulers, RNG states, epoch, position within the epoch, global step).
"""

from __future__ import annotations

import os
import pickle
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "fastgen-checkpoint-1"
LAST = "last.pt"
BEST = "best.pt"  # written by recipes that keep the checkpoint best on a validation split
REQUIRED = {"model": str, "config": dict, "data": dict, "state_dict": dict}  # entries every use reads
ZIP_MAGIC = b"PK\x03\x04"  # how every file torch.save writes (a zip archive) begins


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, not fastgen's, or of another model."""


def _first_line(error: BaseException) -> str:
    """An exception's first non-empty line without terminal escape codes: one line for the user."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    return lines[0] if lines else ""


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over ``path``.

    A crash or a second signal mid-write leaves the previous checkpoint intact.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve(path: str | Path) -> Path:
    """The checkpoint file ``path`` names: itself, or for a run folder its best-on-validation
    checkpoint where the recipe keeps one, else the last."""
    path = Path(path)
    if path.is_dir():
        return path / BEST if (path / BEST).is_file() else path / LAST
    return path


def _unreadable(path: Path, error: Exception) -> CheckpointError:
    """The error for a file torch.load fails on.

    What torch raises for another kind of file (a WAV file: "IndexError: pop from empty list")
    says nothing to the user, so only a zip archive, the format torch.save writes, gets torch's
    reason: it is a damaged checkpoint, or another archive.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(len(ZIP_MAGIC))
    except OSError as failure:
        return CheckpointError(f"cannot read checkpoint {path}: {failure.strerror or failure}")
    if head != ZIP_MAGIC:
        what = "an empty file" if not head else "not a file torch.save writes"
        return CheckpointError(f"cannot read checkpoint {path}: not a fastgen checkpoint ({what})")
    if isinstance(error, pickle.UnpicklingError):
        # torch's message is a page of advice to load with weights_only=False, which would run
        # whatever code the file holds; a fastgen checkpoint never needs that
        return CheckpointError(f"cannot read checkpoint {path}: not a fastgen checkpoint (torch.load with "
                               "weights_only=True finds more than tensors and plain values in it)")
    return CheckpointError(f"cannot read checkpoint {path}: not a fastgen checkpoint, or a damaged or truncated one "
                           f"({type(error).__name__}: {_first_line(error)})")


def load(path: str | Path, *, expected_model: str | None = None) -> dict[str, Any]:
    """Read and validate a checkpoint (on the CPU). ``path`` is a file or a run folder (then
    its ``best.pt`` if there is one, else ``last.pt``).

    Raises
    ------
    CheckpointError
        Missing or unreadable file, not a fastgen checkpoint, or (with ``expected_model``) a
        checkpoint of another model.
    """
    path = resolve(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same user error
        raise _unreadable(path, error) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a fastgen checkpoint")
    for key, kind in REQUIRED.items():
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"{path} is an incomplete fastgen checkpoint: no valid '{key}' entry")
    if expected_model is not None and payload["model"] != expected_model:
        raise CheckpointError(
            f"{path} is a checkpoint of model '{payload['model']}', not '{expected_model}'"
        )
    return payload


def rebuild_model(payload: dict[str, Any], recipe: Any, path: str | Path) -> torch.nn.Module:
    """The model of a loaded checkpoint: ``recipe.rebuild(config)`` with its weights loaded.

    Raises
    ------
    CheckpointError
        The config does not build the recipe's model, or its weights do not fit that model
        (a checkpoint edited by hand or relabelled as another model).
    """
    try:
        model = recipe.rebuild(payload["config"])
        model.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: the checkpoint's config and weights do not make a '{payload['model']}' model: "
            f"{type(error).__name__}: {_first_line(error)}"
        ) from None
    return model
