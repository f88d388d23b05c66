"""fastgen's benchmark harness: compare fastgen, the eager reference and torch.compile of it.

Run it with ``fastgen bench`` (see ``benchmarks/README.md``); add an op's cases with a module
in ``fastgen/bench/cases/`` (see :func:`register_cases`).
"""

from fastgen.bench.harness import (
    COMPILED,
    EAGER,
    FASTGEN,
    FASTGEN_TRITON,
    FORWARD,
    FORWARD_BACKWARD,
    BenchCase,
    BenchRow,
    BenchRun,
    CaseSpec,
    Timing,
    check_case,
    collect_cases,
    copy_bandwidth,
    make_timed_callable,
    measure,
    register_cases,
    run_cases,
)
from fastgen.bench.report import format_run, format_table, write_results

__all__ = [
    "COMPILED",
    "EAGER",
    "FASTGEN",
    "FASTGEN_TRITON",
    "FORWARD",
    "FORWARD_BACKWARD",
    "BenchCase",
    "BenchRow",
    "BenchRun",
    "CaseSpec",
    "Timing",
    "check_case",
    "collect_cases",
    "copy_bandwidth",
    "format_run",
    "format_table",
    "make_timed_callable",
    "measure",
    "register_cases",
    "run_cases",
    "write_results",
]
