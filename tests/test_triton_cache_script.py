"""scripts/triton_cache.py: Triton kernels compiled on one machine, packed, unpacked elsewhere, are
found by Triton there instead of being compiled again.

The compiles run in subprocesses: this process runs Triton in its interpreter (conftest), and
the compile-only driver of scripts/triton_compile_check.py needs Triton's compiler. One small
kernel family (the Gaussian ops, float32) keeps it to seconds.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

REPO = Path(__file__).resolve().parents[1]
COMPILE = """
import sys, torch
sys.path.insert(0, "scripts")
import triton_compile_check as check
from triton.runtime import driver
driver.set_active(check.CompileOnlyDriver(90))
with check.Recorder() as recorder:
    for case, call in check._gaussian_cases([torch.float32]):
        call()
print(len(recorder.launches))
"""


def _compile_into(cache: Path) -> int:
    env = {**os.environ, "TRITON_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run([sys.executable, "-c", COMPILE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.split()[-1])


def _script(*args: str) -> str:
    done = subprocess.run([sys.executable, "scripts/triton_cache.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _entries(cache: Path) -> set[str]:
    return {p.name for p in cache.iterdir() if p.is_dir()}


def test_packed_kernels_are_found_where_they_are_unpacked(tmp_path):
    first, second = tmp_path / "compiled-here", tmp_path / "unpacked-there"
    launches = _compile_into(first)
    groups = sorted(first.glob("*/__grp__*.json"))
    assert launches > 0 and len(groups) > 0

    assert f"{len(groups)} kernels from" in _script("pack", str(first), str(tmp_path / "k.tar.xz"))
    report = _script("unpack", str(tmp_path / "k.tar.xz"), str(second))
    assert f"{len(groups)} kernels unpacked" in report and "same Triton build: yes" in report

    # Only the binaries and metadata travel, and each group now names its files where they are.
    for group in second.glob("*/__grp__*.json"):
        children = json.loads(group.read_text())["child_paths"]
        assert sorted(Path(p).suffix for p in children.values()) == [".cubin", ".json"]
        assert all(Path(p).parent == group.parent and Path(p).exists() for p in children.values())
    assert not list(second.glob("*/*.ptx"))

    shutil.rmtree(first)  # as on another machine: nothing left where they were compiled
    before = _entries(second)
    assert _compile_into(second) == launches
    assert _entries(second) == before  # every launch found its kernel: nothing compiled again


def test_count_and_a_missing_cache_folder(tmp_path):
    (tmp_path / "ABC").mkdir()
    (tmp_path / "ABC" / "__grp__k.json").write_text(json.dumps({"child_paths": {}}))
    assert _script("count", str(tmp_path)).startswith("1 compiled kernels")
    assert _script("count", str(tmp_path / "none")).startswith("0 compiled kernels")
