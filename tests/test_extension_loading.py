"""import fastgen without the compiled extension: a warning and the reference, or an error on request."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import fastgen
from fastgen import _ext
from fastgen._env import env_flag

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


def test_extension_is_built_for_the_stable_python_abi():
    # One build serves every Python 3.10+ with the same torch: scripts/gpu_carry.sh builds it under
    # one Python for a GPU machine that runs another.
    import fastgen._C

    assert fastgen._C.__file__.endswith(".abi3.so"), fastgen._C.__file__


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


def test_flags_read_true_and_yes_as_on():
    result = _run({"FASTGEN_DISABLE_EXT": "yes", "FASTGEN_REQUIRE_EXT": "true"})
    assert result.returncode != 0
    assert "FASTGEN_REQUIRE_EXT=1 turns off the plain-PyTorch fallback" in result.stderr


def test_a_misspelt_flag_is_an_error_naming_the_variable():
    result = _run({"FASTGEN_DISABLE_EXT": "0", "FASTGEN_REQUIRE_EXT": "ture"})
    assert result.returncode != 0
    assert "FASTGEN_REQUIRE_EXT" in result.stderr and "'ture'" in result.stderr


@pytest.mark.parametrize("value, expected", [("1", True), ("ON", True), (" Yes ", True), ("", False),
                                             ("off", False), ("False", False)])
def test_env_flag_values(monkeypatch, value, expected):
    monkeypatch.setenv("FASTGEN_SOME_FLAG", value)
    assert env_flag("FASTGEN_SOME_FLAG") is expected


def test_env_flag_unset_is_off(monkeypatch):
    monkeypatch.delenv("FASTGEN_SOME_FLAG", raising=False)
    assert env_flag("FASTGEN_SOME_FLAG") is False


def test_import_fastgen_alone_reaches_the_public_subpackages():
    """`import fastgen` then `fastgen.ops...`, `fastgen.nn...`, `fastgen.models...` (loaded on first use)."""
    script = ("import fastgen, torch\n"
              "print(float(fastgen.ops.gaussian_kl(torch.zeros(1, 2), torch.zeros(1, 2))[0]))\n"
              "print(fastgen.nn.MaskedConv2d.__name__, fastgen.models.Glow.__name__, fastgen.data.__name__)\n"
              "try:\n    fastgen.no_such_thing\nexcept AttributeError as e:\n    print('AttributeError', e)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["0.0", "MaskedConv2d Glow fastgen.data",
                                       "AttributeError module 'fastgen' has no attribute 'no_such_thing'"]


COMPILE_SCRIPT = """
import torch, fastgen.ops as F
counts = torch._dynamo.utils.counters
mu, logvar = torch.zeros(4, 3), torch.zeros(4, 3)
vae = torch.compile(lambda m, v: F.reparameterize_with_kl(m, v))
draws = [vae(mu, logvar)[0] for _ in range(4)]
x = torch.randn(2, 2, 4, 4)
w1, w2, w3 = torch.randn(8, 2, 3, 3), torch.randn(8, 8, 1, 1), torch.randn(4, 8, 3, 3)
net = torch.compile(lambda x: F.conv_conditioner(x, w1, None, w2, None, w3, None, dropout=0.5))
outs = [net(x) for _ in range(3)]
fresh = lambda values: all(not torch.equal(a, b) for a, b in zip(values, values[1:]))
print(fresh(draws), fresh(outs))
print(int(counts["stats"]["unique_graphs"]))
"""


def test_without_the_extension_compile_keeps_the_reference_noise_eager():
    # The plain-PyTorch Philox used to go into the graph: Inductor never finished compiling it, and
    # each call's fresh seed would have been a new constant.
    env = {**os.environ, "FASTGEN_DISABLE_EXT": "1", "FASTGEN_REQUIRE_EXT": "0"}
    result = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh, graphs = result.stdout.strip().splitlines()
    assert fresh == "True True"  # a new draw per call
    assert int(graphs) <= 6  # a few graphs around the eager noise, not one per call's seed


BARE_IMPORT_SCRIPT = """
import sys, torch
import fastgen
print("torch._dynamo" in sys.modules)
from torch.library import opcheck
x = torch.randn(2, 3, 4, 4, requires_grad=True)
args = (x, torch.randn_like(x), torch.randn_like(x), False, "tanh_clamp", 2.0)
opcheck(torch.ops.fastgen.affine_coupling.default, args)
"""


@pytest.mark.skipif(not _ext.available(), reason="needs the compiled extension")
def test_a_bare_import_registers_the_fake_kernels():
    """After `import fastgen` alone the raw torch.ops.fastgen ops pass opcheck (their fake kernels
    and autograd glue are registered by fastgen.ops, which the package imports), without the cost of
    importing torch._dynamo."""
    result = subprocess.run([sys.executable, "-c", BARE_IMPORT_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "False"  # torch._dynamo: imported by opcheck, not by fastgen
