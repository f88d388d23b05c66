"""``fastgen train``, ``fastgen sample`` and ``fastgen evaluate``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from fastgen.cli import CommandError, Handler, command, int_at_least, number_at_least, seed_value

CHECKPOINT_HELP = "a checkpoint (.pt) or a run folder (its best.pt when it has one, else last.pt)"


def parse_device(name: str):
    """``--device`` as a torch.device; a CommandError for an unknown or unavailable device."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise CommandError(f"--device: unknown device {name!r} (use cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {name}: CUDA is not available here")
    if device.type not in ("cpu", "cuda"):
        raise CommandError(f"--device: unsupported device {name!r} (use cpu or cuda)")
    return device


def user_errors():
    """The exceptions that are the user's to fix: shown as one line, never a traceback."""
    from fastgen.data import DataError
    from fastgen.train.checkpoint import CheckpointError
    from fastgen.train.recipes import UnknownModelError

    return (DataError, CheckpointError, UnknownModelError)


def _print_metrics(title: str, metrics: dict) -> None:
    print(title)
    width = max((len(k) for k in metrics), default=0)
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")


@command("train", help="train a model (vae, gan, glow, pixelcnn, wavenet, ...) on embedded or your data")
def _train(parser: argparse.ArgumentParser) -> Handler:
    """Train MODEL and write checkpoints, metrics, sample grids and loss curves to --out.

    Multi-process: torchrun --nproc_per_node=N -m fastgen train MODEL ... (DDP: nccl on GPUs,
    gloo on the CPU). Ctrl-C or SIGTERM saves a checkpoint first; --resume continues it.
    """
    parser.add_argument("model", help="model name (fastgen train --list shows them)", nargs="?")
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    parser.add_argument("--data", help="digits (default), faces, or a path (folder, .npy/.npz, MNIST, CIFAR-10); "
                        "for wavenet: notes (default) or a folder of WAV files")
    parser.add_argument("--sample-rate", type=int_at_least(1), metavar="HZ",
                        help="audio models: resample the WAV files (or synthesise the notes) at this rate "
                        "(default 16000); the model, its checkpoint and its generated WAV files use it")
    parser.add_argument("--epochs", type=int_at_least(1), help="epochs (default: the model's)")
    parser.add_argument("--batch-size", type=int_at_least(1), help="global batch size (default: the model's)")
    parser.add_argument("--lr", type=float, help="learning rate (default: the model's)")
    parser.add_argument("--out", type=Path, help="run folder (default runs/MODEL)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--amp", choices=["bf16", "fp16", "none"],
                        help="mixed precision (none: float32, e.g. to resume an --amp run without it)")
    parser.add_argument("--seed", type=seed_value, help="random seed (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue the checkpoint in --out, with the settings "
                        "it was started with (data, epochs, batch size, lr, amp, seed, --quick, samples) unless "
                        "given again")
    parser.add_argument("--quick", action=argparse.BooleanOptionalAction, default=None,
                        help="a short run (a few minutes on 2 CPU cores); --no-quick resumes a quick run as a full one")
    parser.add_argument("--samples", type=int_at_least(1), help="images in each epoch's sample grid (default 64)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from fastgen.train import recipes

        if args.list:
            print("\n".join(recipes.names()))
            return 0
        if args.model is None:
            raise CommandError("MODEL is required (one of: " + ", ".join(recipes.names()) + ")")
        if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
            raise CommandError(f"--lr must be a finite positive number, got {args.lr}")
        from fastgen.train.trainer import TrainConfig, TrainingDiverged, TrainingInterrupted, train

        try:
            recipes.get(args.model)
        except recipes.UnknownModelError as error:
            raise CommandError(str(error)) from None
        config = TrainConfig(model=args.model, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, out=args.out, device=str(parse_device(args.device)), amp=args.amp,
                             seed=args.seed, resume=args.resume, quick=args.quick, samples=args.samples,
                             progress=not args.no_progress, sample_rate=args.sample_rate)
        try:
            final = train(config)
        except user_errors() as error:
            raise CommandError(str(error)) from None
        except (ValueError, TrainingDiverged) as error:  # configuration problems found by the trainer, divergence
            raise CommandError(str(error)) from None
        except TrainingInterrupted as stop:
            print(f"fastgen: {stop}; continue with --resume", file=sys.stderr)
            return 128 + stop.signal_number
        if final:
            recipe = recipes.get(args.model)
            _print_metrics(f"test metrics ({final['model']} on {final['data']}):", final)
            if recipe.test_metric in final:
                print(f"final test {recipe.test_metric}: {final[recipe.test_metric]:.4f}")
            else:
                print(f"no test {recipe.test_metric} for this data (sample quality is measured on digits-shaped data)")
        return 0

    return run


def _write_samples(recipe, model, samples, output: Path) -> None:
    """Write ``samples`` to ``-o``; a path that cannot be written is a user error (one line)."""
    try:
        recipe.save_samples(model, samples, output)
    except OSError as error:
        raise CommandError(f"-o {output}: {error.strerror or error}") from None
    except user_errors() as error:  # write_wav's DataError names the file and the problem
        raise CommandError(str(error)) from None


def _load_for_inference(path: str, device):
    from fastgen.train import checkpoint, recipes

    payload = checkpoint.load(path)
    recipe = recipes.get(payload["model"])
    return payload, recipe, checkpoint.rebuild_model(payload, recipe, path).to(device).eval()


@command("sample", help="draw samples from a checkpoint (a PNG grid; a WAV file for audio models)")
def _sample(parser: argparse.ArgumentParser) -> Handler:
    """Draw -n samples from CHECKPOINT (a file or a run folder) and write them as one PNG grid
    (image models) or one WAV file with the clips one after another (WaveNet)."""
    parser.add_argument("checkpoint", help=CHECKPOINT_HELP)
    parser.add_argument("-n", type=int_at_least(1), default=64, help="number of samples")
    parser.add_argument("-o", "--output", type=Path, help="file to write (default samples.png, or samples.wav); "
                        "its folder is created if need be")
    parser.add_argument("--seed", type=seed_value, default=0, help="random seed of the draws (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--temperature", type=number_at_least(0),
                        help="flows (glow, realnvp): latents drawn from N(0, T^2) (default 1; Glow's samples often "
                             "look best near 0.7)")
    parser.add_argument("--seconds", type=number_at_least(0, inclusive=False),
                        help="audio models (wavenet): length of each generated clip (default 0.5)")

    def run(args: argparse.Namespace) -> int:
        import torch

        from fastgen.train import checkpoint

        device = parse_device(args.device)
        try:
            payload, recipe, model = _load_for_inference(args.checkpoint, device)
        except user_errors() as error:
            raise CommandError(str(error)) from None
        output = args.output or Path(f"samples{recipe.sample_suffix}")
        if output.suffix.lower() != recipe.sample_suffix:
            raise CommandError(f"-o {output}: {payload['model']} samples are written as {recipe.sample_suffix} files")
        options = {}
        if args.temperature is not None:
            if recipe.sample_temperature is None:
                raise CommandError(f"--temperature is for the flows (glow, realnvp), not {payload['model']}")
            options["temperature"] = args.temperature
        if args.seconds is not None:
            if recipe.sample_seconds is None:
                raise CommandError(f"--seconds is for audio models (wavenet), not {payload['model']}")
            options["seconds"] = args.seconds
        with torch.no_grad():
            samples = recipe.sample(model, args.n, torch.Generator(device=device).manual_seed(args.seed), **options)
        _write_samples(recipe, model, samples, output)
        print(f"wrote {args.n} samples of {payload['model']} ({checkpoint.resolve(args.checkpoint)}) to {output}")
        return 0

    return run


@command("evaluate", help="print a checkpoint's test metrics")
def _evaluate(parser: argparse.ArgumentParser) -> Handler:
    """Evaluate CHECKPOINT on the test split of its data (or of --data, which must match in shape)."""
    parser.add_argument("checkpoint", help=CHECKPOINT_HELP)
    parser.add_argument("--data", help="dataset (default: the one it was trained on)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--seed", type=seed_value, default=0,
                        help="random seed of the sampled metrics (importance samples, generated images; default 0)")
    parser.add_argument("--quick", action="store_true", help="fewer importance samples / generated images")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")

    def run(args: argparse.Namespace) -> int:
        import torch

        from fastgen.train import checkpoint

        device = parse_device(args.device)
        try:
            payload, recipe, model = _load_for_inference(args.checkpoint, device)
            data = recipe.load_data(args.data or payload["data"]["name"],
                                    sample_rate=payload["data"].get("sample_rate"))
            saved = payload["data"]
            if list(data.shape) != list(saved["shape"]) or data.levels != saved["levels"]:
                raise CommandError(
                    f"--data {args.data}: shape {tuple(data.shape)} with {data.levels} levels does not match the "
                    f"checkpoint's {tuple(saved['shape'])} with {saved['levels']} levels"
                )
            with torch.no_grad():
                metrics = recipe.evaluate(model, data, device, quick=args.quick, seed=args.seed)
        except user_errors() as error:
            raise CommandError(str(error)) from None
        # Which file was read: a run folder gives best.pt when it has one, else last.pt.
        metrics = {"model": payload["model"], "data": data.name, "checkpoint": str(checkpoint.resolve(args.checkpoint)),
                   **metrics}
        if args.json:
            print(json.dumps(metrics, indent=2))
        else:
            _print_metrics(f"test metrics ({metrics['model']} on {metrics['data']}):", metrics)
        return 0

    return run
