"""The ``fastgen`` command: info, bench on a tiny case list, user errors, command registry."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys

import pytest
import torch

from fastgen import cli
from fastgen.bench import cases as bench_cases
from fastgen.bench import harness, registry
from fastgen.bench.harness import EAGER, FASTGEN, FORWARD, FORWARD_BACKWARD, BenchCase

BENCH_FAST = ["--impls", "eager,fastgen", "--repeats", "2", "--warmup", "1", "--max-time", "0.2",
              "--no-progress"]


def _case(mode: str, fast=None) -> BenchCase:
    return BenchCase(op="axpy", shape="32x8", dtype=torch.float32, mode=mode,
                     make_inputs=lambda device: (torch.randn(32, 8), torch.randn(32, 8)),
                     implementations={EAGER: lambda x, y: 2 * x + y,
                                      FASTGEN: fast or (lambda x, y: torch.add(y, x, alpha=2))},
                     bytes_moved=3 * 32 * 8 * 4)


@pytest.fixture
def tiny_cases(monkeypatch):
    """Replace the registered case families by one tiny family ("tiny", op "axpy")."""
    monkeypatch.setattr(registry, "_FAMILIES", {})
    monkeypatch.setattr(bench_cases, "load_all", lambda: [])
    state = {"fast": None}

    @harness.register_cases("tiny")
    def tiny(spec):
        return [_case(FORWARD, state["fast"]), _case(FORWARD_BACKWARD, state["fast"])]

    return state


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("fastgen: error: ")
    return err[0]


def test_info_prints_backends(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for label in ("fastgen:", "torch:", "CPU threads:", "CPU extension:", "CUDA extension:",
                  "Triton:", "GPU:"):
        assert label in out


def test_info_says_when_the_kernels_are_bypassed(capsys, monkeypatch):
    assert cli.main(["info"]) == 0
    assert "FASTGEN_FORCE_REFERENCE" not in capsys.readouterr().out
    monkeypatch.setenv("FASTGEN_FORCE_REFERENCE", "1")
    assert cli.main(["info"]) == 0
    assert "FASTGEN_FORCE_REFERENCE=1: every op runs it, the kernels are bypassed" in capsys.readouterr().out


def test_info_json(capsys):
    assert cli.main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["torch"] == torch.__version__
    assert {"cpu_extension", "cuda_extension", "triton"} <= set(data["backends"])


def test_fastgen_info_function_returns_the_dict(capsys):
    import fastgen

    data = fastgen.info()
    assert "Triton" in capsys.readouterr().out
    assert data["cpu_threads"] == torch.get_num_threads()


def test_python_dash_m_fastgen():
    result = subprocess.run([sys.executable, "-m", "fastgen", "info"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "CPU extension:" in result.stdout


def test_help_exits_zero(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "bench" in out and "info" in out


def test_no_command_is_a_user_error(capsys):
    assert cli.main([]) == 2
    _one_error_line(capsys)


def test_unknown_command(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "frobnicate" in _one_error_line(capsys)


def test_bench_unknown_op(capsys):
    assert cli.main(["bench", "--ops", "no_such_op"]) == 2
    line = _one_error_line(capsys)
    assert "unknown op 'no_such_op'" in line and "reparameterize_with_kl" in line


@pytest.mark.parametrize("argv, fragment", [
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--repeats", "many"], "--repeats"),
    (["bench", "--max-time", "0"], "expected a finite number > 0"),
    (["bench", "--max-time", "nan"], "--max-time"),
    (["bench", "--dtypes", "fp8"], "unknown dtype 'fp8'"),
    (["bench", "--bogus"], "--bogus"),
])
def test_bench_bad_arguments(capsys, argv, fragment):
    assert cli.main(argv) == 2
    assert fragment in _one_error_line(capsys)


def test_bench_cuda_without_cuda(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert cli.main(["bench", "--device", "cuda"]) == 2
    assert "CUDA is not available" in _one_error_line(capsys)


def test_bench_unwritable_out(tmp_path, capsys, tiny_cases):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli.main(["bench", "--ops", "axpy", "--out", str(blocker / "sub"), *BENCH_FAST]) == 2
    assert "--out" in _one_error_line(capsys)
    assert cli.main(["bench", "--ops", "axpy", "--out", str(blocker), *BENCH_FAST]) == 2
    assert "not a directory" in _one_error_line(capsys)


def test_bench_unknown_impl(capsys, tiny_cases):
    assert cli.main(["bench", "--impls", "cuda-magic"]) == 2
    assert "unknown implementation 'cuda-magic'" in _one_error_line(capsys)


def test_bench_tiny_case_list(tmp_path, capsys, tiny_cases):
    out = tmp_path / "results"
    assert cli.main(["bench", "--ops", "axpy", "--out", str(out), *BENCH_FAST]) == 0
    stdout = capsys.readouterr().out
    assert "vs eager" in stdout and "axpy" in stdout and "forward+backward" in stdout
    assert f"wrote {out / 'results.json'}" in stdout
    data = json.loads((out / "results.json").read_text())
    assert len(data["rows"]) == 4
    assert {row["implementation"] for row in data["rows"]} == {EAGER, FASTGEN}
    assert data["environment"]["command"].startswith("fastgen bench --ops axpy")
    assert (out / "results.md").exists()


def test_bench_wrong_kernel_exits_one(tmp_path, capsys, tiny_cases):
    tiny_cases["fast"] = lambda x, y: 2 * x + y + 1
    assert cli.main(["bench", "--out", str(tmp_path), *BENCH_FAST]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "failed the correctness check" in captured.err


def test_bench_list(capsys, tiny_cases):
    assert cli.main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "axpy 32x8 fp32 forward" in out and "compiled" in out


def test_commands_register_without_editing_main(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_COMMANDS", dict(cli._COMMANDS))

    @cli.command("hello", help="say hello")
    def _hello(parser):
        parser.add_argument("--name", default="world")

        def run(args):
            if args.name == "nobody":
                cli.fail("--name: nobody is not a name")
            print(f"hello {args.name}")
            return 0

        return run

    assert cli.main(["hello", "--name", "fastgen"]) == 0
    assert capsys.readouterr().out == "hello fastgen\n"
    assert cli.main(["hello", "--name", "nobody"]) == 2
    assert _one_error_line(capsys) == "fastgen: error: --name: nobody is not a name"


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, option name, help) of every argument of every (sub)command of ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield path, choice.dest, choice.help
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        else:
            yield path, (action.option_strings or [action.dest])[-1], action.help


def test_every_argument_of_every_command_has_help():
    missing = [(" ".join(path), name) for path, name, text in _options(cli.build_parser()) if not text]
    assert not missing
    for command in ("sample", "evaluate"):
        shown = {name: text for path, name, text in _options(cli.build_parser()) if path == (command,)}
        assert shown["checkpoint"] and shown["--seed"] and shown["--device"]


def test_the_command_prints_fastgen_log_records_and_leaves_logging_as_it_was(monkeypatch, capsys):
    """INFO records of the fastgen loggers (the samplers' fallback notes) reach the command
    line's stderr as "fastgen: <message>"; other loggers, the root logger and the fastgen logger
    outside the command are left alone."""
    monkeypatch.setattr(cli, "_COMMANDS", dict(cli._COMMANDS))
    fastgen_logger, root = logging.getLogger("fastgen"), logging.getLogger()
    before = (fastgen_logger.level, list(fastgen_logger.handlers), root.level)
    assert before[:2] == (logging.NOTSET, [])  # `import fastgen` (conftest) configures no logging

    @cli.command("notes", help="log a few records")
    def _notes(parser):
        def run(args):
            logging.getLogger("fastgen.models.example").debug("a debug detail")
            logging.getLogger("fastgen.models.example").info("sampling with the per-layer step ops")
            logging.getLogger("fastgen.ops.example").warning("a kernel failed to load")
            logging.getLogger("otherlib").info("another library's note")
            return 0

        return run

    assert cli.main(["notes"]) == 0
    assert capsys.readouterr().err == ("fastgen: sampling with the per-layer step ops\n"
                                       "fastgen: warning: a kernel failed to load\n")
    assert (fastgen_logger.level, list(fastgen_logger.handlers), root.level) == before
    logging.getLogger("fastgen.models.example").info("outside a command")
    assert capsys.readouterr().err == ""
