"""``fastgen compare``: the comparison command (see :mod:`fastgen.compare`)."""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path
from typing import Any

from fastgen.cli import CommandError, Handler, command, int_at_least, seed_value

IMAGE_MODELS = ("vae", "gan", "realnvp", "glow", "pixelcnn")
AUDIO_MODELS = ("wavenet",)
QUICK_BUDGET, DEFAULT_BUDGET = "30s", "10m"


def _model_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CommandError("--models: give at least one model")
    unknown = [n for n in names if n not in IMAGE_MODELS + AUDIO_MODELS]
    if unknown:
        raise CommandError(f"--models: unknown model {unknown[0]!r} (choose from: "
                           f"{', '.join(IMAGE_MODELS + AUDIO_MODELS)})")
    if len(set(names)) != len(names):
        raise CommandError("--models: a model is named twice")
    return names


def _checkpoint_for(folder: Path | None, name: str) -> Path | None:
    """``folder/NAME`` (a run folder) or ``folder/NAME.pt``, if either exists."""
    if folder is None:
        return None
    for candidate in (folder / name, folder / f"{name}.pt"):
        if candidate.exists():
            return candidate
    return None


def _environment(device) -> dict[str, Any]:
    import torch

    import fastgen
    from fastgen.info import collect

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    backends = collect()["backends"]  # which kernels the figures were measured with
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "device": str(device), "device_name": name, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "fastgen": fastgen.__version__, "python": platform.python_version(),
            "cpu_extension": backends["cpu_extension"], "cuda_extension": backends["cuda_extension"],
            "triton": backends["triton_version"], "force_reference": backends["force_reference"]}


def _command_line(args: argparse.Namespace, models: list[str], budget_text: str | None) -> str:
    parts = ["fastgen compare", f"--data {args.data}", f"--models {','.join(models)}"]
    parts.append(f"--steps {args.steps}" if args.steps else f"--budget {budget_text}")
    if args.checkpoints:
        parts.append(f"--checkpoints {args.checkpoints}")
    if args.select != "last":
        parts.append(f"--select {args.select}")
    if args.quick:
        parts.append("--quick")
    if args.seed:
        parts.append(f"--seed {args.seed}")
    return " ".join(parts + [f"--device {args.device}", f"--out {args.out}"])


def _obtain(recipe, data, device, budget, args, progress: bool):
    """The model trained under the budget, or loaded from --checkpoints when one is there."""
    from fastgen.compare.training import load_trained, train_under_budget

    path = _checkpoint_for(args.checkpoints, recipe.name)
    if path is not None:
        print(f"{recipe.name}: loading {path}", file=sys.stderr)
        return load_trained(recipe, path, data, device)
    if args.checkpoints is not None:  # a misnamed run folder would otherwise cost a whole budget unseen
        print(f"{recipe.name}: no {recipe.name}/ or {recipe.name}.pt in {args.checkpoints}: training it",
              file=sys.stderr)
    return train_under_budget(recipe, data, device, budget, seed=args.seed, progress=progress, select=args.select)


def _training_figures(trained) -> dict[str, Any]:
    return {"source": trained.source, "steps": trained.steps, "images_per_second": trained.images_per_second,
            "train_seconds": trained.train_seconds, "curve": trained.curve}


@command("compare", help="train VAE, GAN, flows and PixelCNN (and WaveNet) under one budget; measure them alike")
def _compare(parser: argparse.ArgumentParser) -> Handler:
    """Train (or load) each model under the same budget on the same data split, evaluate them the
    same way, print the comparison table and write report.md, results.json and figures to --out."""
    parser.add_argument("--data", default="digits", help="image data for the image models (default digits)")
    parser.add_argument("--models", default=",".join(IMAGE_MODELS),
                        help=f"comma-separated, from {','.join(IMAGE_MODELS + AUDIO_MODELS)} "
                             "(default: the image models)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--budget", help=f"training time per model, e.g. 10m, 90s, 1h (default {DEFAULT_BUDGET}; "
                        f"{QUICK_BUDGET} with --quick)")
    budget.add_argument("--steps", type=int_at_least(1), help="training steps per model instead of a time budget")
    parser.add_argument("--checkpoints", type=Path, help="folder holding a run folder or NAME.pt per model: those "
                        "models are loaded instead of trained")
    parser.add_argument("--select", choices=("last", "best"), default="last",
                        help="last: each model as it is at the end of its budget, trained on the whole training "
                        "split (default); best: hold out 10%% of it and keep the state best on that validation "
                        "split at the curve points (early stopping; models without a likelihood keep the last)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=Path("reports/compare"), help="report folder")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_BUDGET} per model and quick evaluations "
                        "(about 5 minutes on 2 CPU cores)")
    parser.add_argument("--seed", type=seed_value, default=0, help="random seed of training and measuring (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def run(args: argparse.Namespace) -> int:
        models = _model_list(args.models)
        from fastgen.compare.budget import Budget, parse_duration

        budget_text = None if args.steps else (args.budget or (QUICK_BUDGET if args.quick else DEFAULT_BUDGET))
        try:
            budget = Budget(steps=args.steps) if args.steps else Budget(seconds=parse_duration(budget_text))
        except ValueError as error:
            raise CommandError(f"--budget: {error}") from None
        if args.checkpoints is not None and not args.checkpoints.is_dir():
            raise CommandError(f"--checkpoints {args.checkpoints}: not a folder")
        from fastgen.train.cli import parse_device, user_errors

        device = parse_device(args.device)
        try:  # before any training: a bad --out found after an hour of it would lose the hour
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CommandError(f"--out {args.out}: {error.strerror or error}") from None
        from fastgen.train.trainer import TrainingDiverged

        try:
            return _run(args, models, budget, budget_text, device)
        except (*user_errors(), TrainingDiverged) as error:
            raise CommandError(str(error)) from None

    return run


def _run(args: argparse.Namespace, models: list[str], budget, budget_text, device) -> int:
    import torch

    from fastgen.compare.audio import measure_wavenet
    from fastgen.compare.measure import measure_image_model
    from fastgen.compare.report import (
        COLUMNS,
        histogram_baseline,
        markdown_table,
        nll_kind,
        table_rows,
        write_figures,
        write_report,
    )
    from fastgen.data import load_images
    from fastgen.train import recipes

    progress = not args.no_progress
    image_models = [m for m in models if m in IMAGE_MODELS]
    data = load_images(args.data) if image_models else None
    rows: dict[str, dict[str, Any]] = {}
    samples: dict[str, torch.Tensor] = {}
    for name in image_models:
        recipe = recipes.get(name)
        trained = _obtain(recipe, data, device, budget, args, progress)
        print(f"{name}: measuring", file=sys.stderr)
        row = measure_image_model(recipe, trained.model, data, device, quick=args.quick, seed=args.seed)
        rows[name] = {**row, "nll_kind": nll_kind(row), **_training_figures(trained)}
        with torch.no_grad():
            samples[name] = recipe.sample(trained.model, 32 if args.quick else 64,
                                          torch.Generator(device=device).manual_seed(args.seed)).cpu()
    audio = None
    if "wavenet" in models:
        recipe = recipes.get("wavenet")
        audio_data = recipe.load_data(recipe.default_data)
        trained = _obtain(recipe, audio_data, device, budget, args, progress)
        print("wavenet: measuring", file=sys.stderr)
        audio = {**measure_wavenet(recipe, trained.model, audio_data, device, quick=args.quick, seed=args.seed),
                 **_training_figures(trained), "data": audio_data.name}
    results = {"command": _command_line(args, models, budget_text), "data": args.data if image_models else "notes",
               "budget": budget.label, "seed": args.seed, "environment": _environment(device), "models": rows,
               "histogram_baseline_bits_per_dim": histogram_baseline(rows), "audio": audio}
    try:
        results["figures"] = write_figures(args.out, rows, samples)
        write_report(args.out, results)
    except OSError as error:
        raise CommandError(f"--out {args.out}: {error.strerror or error}") from None
    if rows:
        print(markdown_table(COLUMNS, table_rows(rows)))
    if audio:
        from fastgen.compare.report import audio_table

        print(audio_table(audio))
    print(f"wrote {args.out / 'report.md'}, results.json and {len(results['figures'])} figures")
    return 0
