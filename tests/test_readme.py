"""The README's two set-up commands stay in step with what CI runs, and its code runs as written."""

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line for line in lines if line.startswith("python -m pip install torch==")]


def test_readme_has_the_two_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("python -m fastgen compare --quick")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = _readme_commands()[1]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


@pytest.mark.slow
def test_the_usage_examples_run_as_written(tmp_path, monkeypatch):
    """Every ```python block of the README, in order in one namespace, as a user pastes them."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)  # the examples write files (note.wav)
    namespace: dict = {}
    for index, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {index}", "exec"), namespace)  # noqa: S102
    n_test = len(namespace["digits"].test)
    assert namespace["bpd"].shape == (n_test,) and torch.isfinite(namespace["bpd"]).all()
    assert namespace["images"].shape[0] == 16 and namespace["codes"].shape == (2, 16000)
    torch.testing.assert_close(namespace["x2_back"], namespace["x2"], rtol=1e-5, atol=1e-5)
    assert (tmp_path / "note.wav").stat().st_size > 16000
