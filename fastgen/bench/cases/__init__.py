"""Benchmark cases, one module per op family.

To benchmark a new op family, add a module here that registers a case factory::

    from fastgen.bench.harness import BenchCase, CaseSpec, register_cases

    @register_cases("flows")
    def flow_cases(spec: CaseSpec) -> list[BenchCase]:
        return [BenchCase(op="actnorm", shape="64x3x32x32", ...), ...]

Every module in this package is imported by :func:`load_all` (no list to edit); see
``gaussian.py`` for a complete family.
"""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> list[str]:
    """Import every case module of this package (registering its cases); their names."""
    names = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names
