"""The README's two set-up commands stay in step with what CI runs."""

from pathlib import Path

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
