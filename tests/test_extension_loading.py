"""import fastgen without the compiled extension: a warning and the reference, or an error on request."""

from __future__ import annotations

import os
import subprocess
import sys

import fastgen
from fastgen import _ext

SCRIPT = """
import warnings, torch
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastgen, fastgen.ops
messages = [str(w.message) for w in caught if "fastgen._C" in str(w.message)]
print(len(messages))
print(messages[0] if messages else "")
z, kl = fastgen.ops.reparameterize_with_kl(torch.zeros(2, 3), torch.zeros(2, 3))
print(tuple(z.shape), tuple(kl.shape), float(kl.sum()))
"""


def _run(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **extra_env}
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)


def test_extension_is_loaded_here():
    assert _ext.available(), _ext.load_error()
    assert fastgen.info(echo=False)["backends"]["cpu_extension"] is True


def test_missing_extension_warns_once_and_falls_back_to_the_reference():
    result = _run({"FASTGEN_DISABLE_EXT": "1", "FASTGEN_REQUIRE_EXT": "0"})
    assert result.returncode == 0, result.stderr
    count, message, shapes = result.stdout.strip().splitlines()
    assert count == "1"
    assert "using the plain-PyTorch reference" in message and "FASTGEN_DISABLE_EXT" in message
    assert shapes == "(2, 3) (2,) 0.0"


def test_require_ext_turns_the_warning_into_an_error():
    result = _run({"FASTGEN_DISABLE_EXT": "1", "FASTGEN_REQUIRE_EXT": "1"})
    assert result.returncode != 0
    assert "FASTGEN_REQUIRE_EXT=1" in result.stderr
