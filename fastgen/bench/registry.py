"""What a benchmark case is, and the registry op families add their cases to.

A :class:`BenchCase` is one op at one shape, dtype and pass ("forward" or "forward+backward"),
with the implementations to compare on the same inputs. An op family registers a factory of
cases with :func:`register_cases` from a module in ``fastgen/bench/cases/`` (every module there
is imported automatically); :func:`collect_cases` asks every factory for a device's cases.

Implementation names with a meaning to the harness:

- ``eager``: the plain-PyTorch reference, as a user would write it. Ratios are relative to it.
- ``compiled``: not given by the case; the harness makes it by ``torch.compile`` of the
  implementation named by ``BenchCase.compile_from`` (``eager`` by default), once per function.
- ``fastgen``, ``fastgen-triton``: fastgen's op and its Triton kernel.
"""

from __future__ import annotations

import importlib

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

FORWARD = "forward"
FORWARD_BACKWARD = "forward+backward"
PASSES = (FORWARD, FORWARD_BACKWARD)

EAGER = "eager"
COMPILED = "compiled"
FASTGEN = "fastgen"
FASTGEN_TRITON = "fastgen-triton"
IMPLEMENTATION_ORDER = (EAGER, COMPILED, FASTGEN, FASTGEN_TRITON)

Inputs = tuple[torch.Tensor, ...]


@dataclass(frozen=True, eq=False)
class BenchCase:
    """One op at one shape, dtype and pass, and the implementations to compare.

    Attributes:
        op: op name, e.g. ``"reparameterize_with_kl"``.
        shape: shape label shown in the table, e.g. ``"4096x512"``.
        dtype: dtype of the inputs.
        mode: ``"forward"`` or ``"forward+backward"``. For the latter the harness marks the
            inputs in ``grad_args`` as requiring grad and times ``forward`` plus
            ``torch.autograd.grad`` of all differentiable outputs with fixed random grads.
        make_inputs: ``device -> tuple of tensors``, the positional arguments of every
            implementation (called under a fixed seed).
        implementations: name -> callable taking ``*inputs``; returns a tensor or a tuple.
            Must contain ``"eager"``.
        bytes_moved: the minimum bytes the whole pass must read and write (same for every
            implementation), from which achieved GB/s is computed.
        family: the op family that registered the case (filled in by the registry).
        compile_from: implementation that ``torch.compile`` turns into ``"compiled"``; None
            for no compiled row.
        check_implementations: name -> callable used for the correctness spot-check, taking
            ``*inputs, *check_extra(inputs)``. Needed when the timed callables are not
            deterministic (noise drawn inside), e.g. the same op with an explicit ``eps``;
            must contain ``"eager"``. None: the timed callables are compared directly.
            Implementations without an entry are reported as unchecked.
        check_extra: ``inputs -> tuple of extra arguments`` for ``check_implementations``.
        grad_args: indices of the inputs to differentiate in ``"forward+backward"``
            (None: every floating-point input).
        tolerance: ``(rtol, atol)`` overriding :data:`DEFAULT_TOLERANCES`.
        output_atol: output index -> an absolute tolerance for that output, used where it is
            larger than ``atol``. For a per-sample sum of many terms (a flow's log-determinant):
            its rounding grows with the sum of the terms' magnitudes, not with the sum itself,
            which cancels to near zero for some samples; so ``rtol`` of the sum is no bound.
        flops: the useful floating-point operations of the whole pass (same for every
            implementation; e.g. a masked convolution counts its kept taps only), from which
            achieved TFLOP/s is computed; 0 (the default) for ops where FLOPs say nothing
            (memory-bound ops), which then get no TFLOP/s column.
    """

    op: str
    shape: str
    dtype: torch.dtype
    mode: str
    make_inputs: Callable[[torch.device], Inputs]
    implementations: Mapping[str, Callable[..., Any]]
    bytes_moved: int
    family: str = ""
    compile_from: str | None = EAGER
    check_implementations: Mapping[str, Callable[..., Any]] | None = None
    check_extra: Callable[[Inputs], Inputs] | None = None
    grad_args: tuple[int, ...] | None = None
    tolerance: tuple[float, float] | None = None
    output_atol: Mapping[int, float] = field(default_factory=dict)
    flops: int = 0

    def __post_init__(self) -> None:
        if self.mode not in PASSES:
            raise ValueError(f"mode must be one of {PASSES}, got {self.mode!r}")
        if EAGER not in self.implementations:
            raise ValueError(f"case {self.op} {self.shape} has no {EAGER!r} implementation")
        if self.check_implementations is not None and EAGER not in self.check_implementations:
            raise ValueError(f"check_implementations of {self.op} {self.shape} lack {EAGER!r}")
        if self.flops < 0:
            raise ValueError(f"flops of {self.op} {self.shape} must be >= 0, got {self.flops}")

    @property
    def label(self) -> str:
        return f"{self.op} {self.shape} {dtype_name(self.dtype)} {self.mode}"

    def implementation_names(self) -> list[str]:
        """Every implementation this case times, ``compiled`` included, in table order."""
        names = list(self.implementations)
        if self.compile_from is not None and COMPILED not in names:
            names.append(COMPILED)
        return sorted(names, key=_implementation_rank)


def _implementation_rank(name: str) -> tuple[int, str]:
    try:
        return (IMPLEMENTATION_ORDER.index(name), name)
    except ValueError:
        return (len(IMPLEMENTATION_ORDER), name)


_DTYPE_NAMES = {
    torch.float64: "fp64",
    torch.float32: "fp32",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
}
_DTYPE_ALIASES = {
    "fp64": torch.float64, "float64": torch.float64, "double": torch.float64, "f64": torch.float64,
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32, "f32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16, "f16": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}


def dtype_name(dtype: torch.dtype) -> str:
    """Short label of a dtype: ``fp32``, ``bf16``, ..."""
    return _DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))


def parse_dtype(name: str) -> torch.dtype:
    """``"bf16"``/``"bfloat16"``/... -> torch dtype; ValueError naming the accepted spellings."""
    try:
        return _DTYPE_ALIASES[name.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown dtype {name!r} (use one of: {', '.join(sorted(_DTYPE_ALIASES))})"
        ) from None


# ---------------------------------------------------------------------------------------------
# Case registry


@dataclass(frozen=True)
class CaseSpec:
    """What a case factory is asked for.

    Attributes:
        device: the device to benchmark on.
        quick: keep only a few small cases (the ``--quick`` smoke run).
        dtypes: dtypes asked for on the command line; None: the family's default for the device.
    """

    device: torch.device
    quick: bool = False
    dtypes: tuple[torch.dtype, ...] | None = None


CaseFactory = Callable[[CaseSpec], Iterable[BenchCase]]
_FAMILIES: dict[str, CaseFactory] = {}


class CaseLoadError(RuntimeError):
    """A case module or factory failed (a bug or a broken install, not a user error)."""


def register_cases(family: str) -> Callable[[CaseFactory], CaseFactory]:
    """Register a factory of cases for an op family (decorator).

    The factory takes a :class:`CaseSpec` and returns the family's cases for that device;
    it should build closures only, no tensors (inputs are made lazily, case by case)::

        @register_cases("flows")
        def flow_cases(spec: CaseSpec) -> list[BenchCase]:
            ...
    """

    def decorator(factory: CaseFactory) -> CaseFactory:
        _FAMILIES[family] = factory
        return factory

    return decorator


def case_families() -> dict[str, CaseFactory]:
    """Every registered family, after importing all modules of :mod:`fastgen.bench.cases`."""
    from fastgen.bench import cases

    try:
        cases.load_all()
    except Exception as error:  # noqa: BLE001 - a broken case module: one line from the CLI
        raise CaseLoadError(f"loading benchmark cases failed: {type(error).__name__}: {error}"
                            ) from error
    return dict(_FAMILIES)


def collect_cases(spec: CaseSpec, names: Sequence[str] | None = None) -> list[BenchCase]:
    """The cases of every family for ``spec``, kept to ``names`` (op or family names) if given.

    Raises:
        ValueError: a name is neither a registered family nor an op of one.
        CaseLoadError: a case module or factory raised.
    """
    all_cases: list[BenchCase] = []
    families = case_families()
    for family, factory in families.items():
        try:
            made = list(factory(spec))
        except Exception as error:  # noqa: BLE001 - reported as one line by the CLI
            raise CaseLoadError(
                f"benchmark cases of family {family!r} failed: {type(error).__name__}: {error}"
            ) from error
        for case in made:
            if not case.family:
                object.__setattr__(case, "family", family)
        all_cases.extend(made)
    if not names:
        return all_cases
    known_ops = {case.op for case in all_cases}
    unknown = [name for name in names if name not in known_ops and name not in families]
    if unknown:
        raise ValueError(
            f"unknown op {', '.join(map(repr, unknown))} "
            f"(known ops: {', '.join(sorted(known_ops)) or 'none'}; "
            f"families: {', '.join(sorted(families)) or 'none'})"
        )
    wanted = set(names)
    selected = [case for case in all_cases if case.op in wanted or case.family in wanted]
    return selected


def triton_kernels(family: str) -> Any | None:
    """``fastgen.triton_kernels.<family>``, or None where Triton can't run (no GPU, no triton).

    Case files use it to add ``fastgen-triton`` rows only where the kernels can be launched.
    """
    try:
        return importlib.import_module(f"fastgen.triton_kernels.{family}")
    except Exception:  # noqa: BLE001 - missing or broken triton: no fastgen-triton rows
        return None
