"""The ``fastgen`` command: ``fastgen <command> [options]`` (also ``python -m fastgen``).

Commands are registered, not dispatched by an if-chain. A command is a module-level function
decorated with :func:`command`: it receives its own ``argparse`` subparser, adds its options
and returns the handler ``(args) -> exit status``::

    @command("sample", help="draw samples from a trained model")
    def _sample(parser: argparse.ArgumentParser) -> Handler:
        parser.add_argument("checkpoint")
        return run_sample            # imported lazily inside, so `fastgen --help` stays fast

Commands defined in other modules register the same way; list the module in
``COMMAND_MODULES`` so it is imported when the parser is built.

User errors (bad arguments, unknown names, unwritable paths) are raised as
:class:`CommandError` and printed as one line, ``fastgen: error: ...``, with exit status 2.

While a command runs, the ``fastgen`` loggers' INFO and higher records (such as a sampler
falling back to slower ops) are printed to stderr as ``fastgen: <message>``. Only the command
line does this: ``import fastgen`` configures no logging.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NoReturn

Handler = Callable[[argparse.Namespace], "int | None"]
Configure = Callable[[argparse.ArgumentParser], Handler]

# Modules that define commands with @command; imported when the parser is built.
COMMAND_MODULES: tuple[str, ...] = ("fastgen.bench.cli", "fastgen.train.cli", "fastgen.toy.cli", "fastgen.compare.cli")


class CommandError(Exception):
    """A user error: printed as ``fastgen: error: <message>``, exit status 2, no traceback."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Configure
    description: str | None = None


_COMMANDS: dict[str, Command] = {}


def command(name: str, *, help: str, description: str | None = None  # noqa: A002
            ) -> Callable[[Configure], Configure]:
    """Register a ``fastgen <name>`` command (decorator on its configure function)."""

    def decorator(configure: Configure) -> Configure:
        _COMMANDS[name] = Command(name, help, configure, description or configure.__doc__)
        return configure

    return decorator


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are CommandErrors (one line, exit 2, see main)."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see `{self.prog} --help`)"
        raise CommandError(message + hint)


def _version() -> str:
    try:
        import fastgen

        return str(getattr(fastgen, "__version__", "unknown"))
    except Exception:  # noqa: BLE001 - --version must not fail
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The full parser: every registered command as a subcommand."""
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    parser = _Parser(prog="fastgen", description="fastgen: fast kernels, layers and models "
                     "for deep generative models in PyTorch.")
    parser.add_argument("--version", action="version", version=f"fastgen {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True,
                                       parser_class=_Parser)
    for name in sorted(_COMMANDS):
        cmd = _COMMANDS[name]
        sub = subparsers.add_parser(name, help=cmd.help, description=cmd.description,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(handler=cmd.configure(sub))
    return parser


class _LogFormatter(logging.Formatter):
    """``fastgen: <message>``, and ``fastgen: warning: <message>`` from WARNING up."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = "fastgen: warning: " if record.levelno >= logging.WARNING else "fastgen: "
        return prefix + super().format(record)


@contextlib.contextmanager
def _log_to_stderr() -> Iterator[None]:
    """Print the ``fastgen`` logger hierarchy's INFO and higher records on stderr while a command runs.

    The fallback notes (e.g. a sampler running the per-layer ops) are logged at INFO, which
    Python's default WARNING threshold would drop. Only the ``fastgen`` logger is changed, and
    only for the command: the root logger and other libraries' logging stay as they were.
    """
    logger = logging.getLogger("fastgen")
    handler = logging.StreamHandler(sys.stderr)  # the stderr of this call (tests swap sys.stderr)
    handler.setLevel(logging.INFO)
    handler.setFormatter(_LogFormatter())
    level = logger.level
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fastgen`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as done:  # --help and --version
            return done.code if isinstance(done.code, int) else 0
        with _log_to_stderr():
            status = args.handler(args)
        return 0 if status is None else int(status)
    except CommandError as error:
        print(f"fastgen: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastgen: interrupted", file=sys.stderr)
        return 130


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` for integers >= ``minimum`` (the error names the bound and the value)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def number_at_least(minimum: float, *, inclusive: bool = True) -> Callable[[str], float]:
    """An argparse ``type`` for finite numbers >= ``minimum`` (> ``minimum`` when not ``inclusive``)."""
    bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}") from None
        if not (math.isfinite(value) and (value >= minimum if inclusive else value > minimum)):
            raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text!r}")
        return value

    return parse


def seed_value(text: str) -> int:
    """An argparse ``type`` for random seeds: integers in [0, 2**32) (a wider seed would overflow
    the per-step generator seeds derived from it)."""
    value = int_at_least(0)(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer below 2**32, got {value}")
    return value


def fail(message: str) -> NoReturn:
    """Stop the command with a user error (one line on stderr, exit status 2)."""
    raise CommandError(message)


# ---------------------------------------------------------------------------------------------
# Commands defined here. (bench lives in fastgen/bench/cli.py.)


@command("info", help="show versions and which backends (extension, CUDA, Triton) are live")
def _info(parser: argparse.ArgumentParser) -> Handler:
    """Print fastgen/torch/python versions, CPU threads, live backends and GPUs."""
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")

    def run(args: argparse.Namespace) -> int:
        from fastgen.info import collect, format_info

        data = collect()
        print(json.dumps(data, indent=2) if args.json else format_info(data))
        return 0

    return run
