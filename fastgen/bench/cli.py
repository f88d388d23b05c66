"""``fastgen bench``: run the benchmark cases, print the table, write results.json/.md."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from fastgen.cli import CommandError, Handler, command, int_at_least, number_at_least

DEFAULT_OUT = "bench-results"


def _names(values: list[str] | None) -> list[str] | None:
    """``--ops a,b --ops c`` -> ``["a", "b", "c"]``; None when the option was not given."""
    if not values:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return names or None


def _resolve_device(name: str | None):  # -> torch.device
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CommandError(f"--device: unknown device {name!r} (use cpu or cuda)") from None
    if device.type not in ("cpu", "cuda"):
        raise CommandError(f"--device: unsupported device {name!r} (use cpu or cuda)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CommandError(f"--device {name}: CUDA is not available "
                               f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CommandError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) present")
    return device


def _check_writable(out: Path) -> None:
    """Fail before benchmarking (not after minutes of it) when results can't be written."""
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise CommandError(f"--out {out}: cannot write results there ({reason})") from None


@command("bench", help="benchmark fastgen against the eager reference and torch.compile of it")
def _bench(parser: argparse.ArgumentParser) -> Handler:
    """Benchmark every op (or those named) on one device: fastgen vs the eager reference vs
torch.compile of the reference, same inputs. Prints a table and writes results.json and
results.md into --out. See benchmarks/README.md for the columns."""
    parser.add_argument("--quick", action="store_true",
                        help="a few small cases only (a smoke run of about a minute on a CPU)")
    parser.add_argument("--ops", action="append", metavar="NAME[,NAME...]",
                        help="ops or op families to run (default: all)")
    parser.add_argument("--device", metavar="cpu|cuda",
                        help="device to benchmark on (default: cuda when available, else cpu)")
    parser.add_argument("--dtypes", action="append", metavar="DTYPE[,DTYPE...]",
                        help="fp32, bf16, fp16, fp64 (default: fp32 on CPU; fp32,bf16,fp16 on GPU)")
    parser.add_argument("--impls", action="append", metavar="NAME[,NAME...]",
                        help="implementations to run, e.g. eager,fastgen to skip torch.compile "
                             "(default: all; eager always runs)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"folder for results.json and results.md (default: ./{DEFAULT_OUT}; "
                             "files there are overwritten)")
    parser.add_argument("--repeats", type=int_at_least(1), metavar="N",
                        help="timed samples per implementation (default: 20 on CPU, 100 on GPU; "
                             "10 with --quick)")
    parser.add_argument("--warmup", type=int_at_least(0), metavar="N",
                        help="untimed calls before timing (default: 3 on CPU, 10 on GPU)")
    parser.add_argument("--max-time", type=number_at_least(0, inclusive=False), default=2.0, metavar="SECONDS",
                        help="time budget for sampling one implementation of one case (default 2)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return _run_bench


def _run_bench(args: argparse.Namespace) -> int:
    from fastgen.bench.harness import CaseLoadError, CaseSpec, collect_cases, parse_dtype, run_cases
    from fastgen.bench.report import format_run, write_results

    device = _resolve_device(args.device)
    dtype_names = _names(args.dtypes)
    try:
        dtypes = tuple(parse_dtype(name) for name in dtype_names) if dtype_names else None
    except ValueError as error:
        raise CommandError(f"--dtypes: {error}") from None
    spec = CaseSpec(device=device, quick=args.quick, dtypes=dtypes)
    try:
        cases = collect_cases(spec, _names(args.ops))
    except ValueError as error:
        raise CommandError(f"--ops: {error}") from None
    except CaseLoadError as error:
        print(f"fastgen: error: {error}", file=sys.stderr)
        return 1
    if not cases:
        raise CommandError(f"no benchmark cases for {device.type} with these options")
    known_impls = sorted({name for case in cases for name in case.implementation_names()})
    impls = _names(args.impls)
    if impls is not None:
        unknown = [name for name in impls if name not in known_impls]
        if unknown:
            raise CommandError(f"--impls: unknown implementation {', '.join(map(repr, unknown))} "
                               f"(available here: {', '.join(known_impls)})")
    if args.list:
        for case in cases:
            names = [n for n in case.implementation_names() if impls is None or n in impls
                     or n == "eager"]
            print(f"{case.family:<10} {case.label:<55} {', '.join(names)}")
        return 0

    out = Path(args.out)
    _check_writable(out)
    repeats = args.repeats if args.repeats is not None else (10 if args.quick else None)
    run = run_cases(cases, device, implementations=impls, warmup=args.warmup, repeats=repeats,
                    max_seconds=args.max_time, progress=not args.no_progress,
                    environment={"command": " ".join(["fastgen bench", *_argv_echo(args)])})
    print(format_run(run))
    try:
        paths = write_results(run, out)
    except OSError as error:
        raise CommandError(f"--out {out}: cannot write results ({error})") from None
    print()
    for path in paths:
        print(f"wrote {os.path.relpath(path) if not path.is_absolute() else path}")
    failed = run.failed_checks
    if failed:
        print(f"fastgen: {len(failed)} implementation(s) failed the correctness check and were "
              "not timed (see the check column)", file=sys.stderr)
        return 1
    return 0


def _argv_echo(args: argparse.Namespace) -> list[str]:
    """The options of this run, for the results' environment record."""
    echo = []
    for key in ("quick", "list"):
        if getattr(args, key):
            echo.append(f"--{key}")
    for key in ("ops", "dtypes", "impls"):
        names = _names(getattr(args, key))
        if names:
            echo.append(f"--{key} {','.join(names)}")
    if args.device:
        echo.append(f"--device {args.device}")
    for key in ("repeats", "warmup"):
        if getattr(args, key) is not None:
            echo.append(f"--{key} {getattr(args, key)}")
    return echo
