"""``fastgen toy <name>``: train a flow on a toy 2-D density and plot it (``two-moons``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fastgen.cli import CommandError, Handler, command, int_at_least


def _print_figures(figures: dict) -> None:
    gain = figures["gain_over_gaussian"]
    rows = [
        ("test log-likelihood", f"{figures['test_log_likelihood']:.4f} nats/point"),
        ("Gaussian baseline (test)", f"{figures['gaussian_test_log_likelihood']:.4f} nats/point "
                                     "(full covariance, fitted to train)"),
        ("flow - Gaussian (test)", f"{gain:+.4f} nats/point"),
        ("train log-likelihood", f"{figures['train_log_likelihood']:.4f} nats/point"),
        ("Gaussian baseline (train)", f"{figures['gaussian_train_log_likelihood']:.4f} nats/point"),
        ("steps", f"{figures['steps']} (batch {figures['batch_size']})"),
        ("train / test points", f"{figures['n_train']} / {figures['n_test']}"),
        ("training seconds", f"{figures['seconds']:.1f}"),
        ("total seconds", f"{figures['total_seconds']:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    print("RealNVP on two moons (make_moons noise 0.05, unstandardised coordinates):")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print(f"density plot: {figures['png']}")


@command("toy", help="train a flow on a toy 2-D density and plot it (two-moons)")
def _toy(parser: argparse.ArgumentParser) -> Handler:
    """Toy densities with exact test log-likelihoods and a density plot.

    fastgen toy two-moons [--steps N] [--out DIR] [--seed S] [--quick]
    """
    from fastgen.toy.two_moons import DEFAULT_OUT, DEFAULT_STEPS, PNG_NAME, QUICK_STEPS

    toys = parser.add_subparsers(dest="toy", metavar="<toy>", required=True)
    moons = toys.add_parser(
        "two-moons", help="RealNVP on two moons: test log-likelihood and a density PNG",
        description="Train RealNVP (8 affine couplings, 64-wide MLPs) on two moons (sklearn make_moons, "
                    "noise 0.05; 10000 train / 5000 test points, unstandardised) with Adam, print the exact "
                    "mean test log-likelihood next to a fitted full-covariance Gaussian's, and write "
                    f"DIR/{PNG_NAME} (training data, model density, model samples).")
    moons.add_argument("--steps", type=int_at_least(1), metavar="N",
                       help=f"training steps (default {DEFAULT_STEPS}; {QUICK_STEPS} with --quick)")
    moons.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR", help=f"folder for the PNG (default {DEFAULT_OUT})")
    moons.add_argument("--seed", type=int_at_least(0), default=0, metavar="S",
                       help="model initialisation, batches and samples (the data split is fixed)")
    moons.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps: a few seconds")
    moons.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from fastgen.toy.two_moons import train_two_moons

        if args.out.exists() and not args.out.is_dir():
            raise CommandError(f"--out {args.out}: exists and is not a directory")
        steps = args.steps or (QUICK_STEPS if args.quick else DEFAULT_STEPS)
        try:
            figures = train_two_moons(steps=steps, seed=args.seed, out=args.out,
                                      progress=False if args.no_progress else None)
        except (ValueError, FloatingPointError) as error:
            raise CommandError(str(error)) from None
        except OSError as error:
            raise CommandError(f"--out {args.out}: {error.strerror or error}") from None
        _print_figures(figures)
        return 0

    return run
