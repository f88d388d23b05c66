"""pytest-benchmark suite of the Gaussian op family: one benchmark per case x implementation.

It reuses the cases of ``fastgen bench`` (``fastgen/bench/cases/gaussian.py``), so both always
measure the same thing; each benchmark first passes the same correctness spot-check. Not part of
the test run (``testpaths = ["tests"]``); run it explicitly::

    pytest benchmarks/test_bench_gaussian.py                       # all, on cuda if present
    FASTGEN_BENCH_QUICK=1 pytest benchmarks/test_bench_gaussian.py  # the --quick subset
    FASTGEN_BENCH_DEVICE=cpu pytest benchmarks/ -k "fastgen or eager" --benchmark-autosave

Times here are wall clock (with ``torch.cuda.synchronize()`` after each call on a GPU), as
pytest-benchmark measures; ``fastgen bench`` times GPUs with CUDA events and a cold L2, and is
the source of published numbers. This suite is for pytest-benchmark's history and comparison
(``--benchmark-autosave``, ``--benchmark-compare``).
"""

from __future__ import annotations

import os

import pytest
import torch

from fastgen._env import env_flag
from fastgen.bench.harness import (
    EAGER,
    CaseSpec,
    CompileCache,
    check_case,
    collect_cases,
    dtype_name,
    make_timed_callable,
    many_recompiles,
    parse_dtype,
    resolve_implementation,
)

pytest.importorskip("pytest_benchmark")

DEVICE = torch.device(os.environ.get("FASTGEN_BENCH_DEVICE")
                      or ("cuda" if torch.cuda.is_available() else "cpu"))
QUICK = env_flag("FASTGEN_BENCH_QUICK")
_DTYPES = os.environ.get("FASTGEN_BENCH_DTYPES")
DTYPES = tuple(parse_dtype(name) for name in _DTYPES.split(",")) if _DTYPES else None

CASES = collect_cases(CaseSpec(device=DEVICE, quick=QUICK, dtypes=DTYPES), ["gaussian"])
PARAMS = [
    pytest.param(case, name, id=f"{case.op}-{case.shape}-{dtype_name(case.dtype)}-{case.mode}-{name}")
    for case in CASES
    for name in case.implementation_names()
]
_COMPILED = CompileCache()  # one torch.compile per reference function for the whole session


@pytest.fixture(scope="module", autouse=True)
def _allow_recompiles():
    with many_recompiles():
        yield


def _synchronized(fn):
    if DEVICE.type != "cuda":
        return fn

    def run():
        fn()
        torch.cuda.synchronize(DEVICE)

    return run


@pytest.mark.parametrize("case, name", PARAMS)
def test_gaussian(benchmark, case, name):
    benchmark.group = case.label
    torch.manual_seed(0)
    inputs = tuple(case.make_inputs(DEVICE))
    implementations = {EAGER: case.implementations[EAGER],
                       name: resolve_implementation(case, name, _COMPILED)}
    status = check_case(case, inputs, implementations)[name]
    if status.startswith("FAIL"):
        pytest.fail(f"{name} is wrong on {case.label}: {status}")
    if status.startswith("error"):
        pytest.skip(f"{name} does not run on {case.label}: {status}")
    timed = _synchronized(make_timed_callable(case, implementations[name], inputs))
    timed()  # compile / autotune / allocate outside the measurement
    benchmark.extra_info.update(bytes_moved=case.bytes_moved, check=status, device=str(DEVICE))
    benchmark.pedantic(timed, warmup_rounds=3, rounds=20 if DEVICE.type == "cpu" else 100,
                       iterations=1)
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)  # None when disabled
    median = getattr(stats, "median", None)
    if median:
        benchmark.extra_info["gbps"] = case.bytes_moved / median / 1e9
