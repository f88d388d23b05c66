"""The benchmark harness every fastgen op plugs into: check, time, compare.

:func:`run_cases` takes :class:`~fastgen.bench.registry.BenchCase` objects (see
``fastgen/bench/cases/`` for how op families register them), spot-checks every implementation
against the eager reference on the same inputs, times the ones that pass and returns
:class:`BenchRow` results with ratios and bandwidth; :mod:`fastgen.bench.report` prints and
writes them. The case and timer names are re-exported here, so ``fastgen.bench.harness`` is the
one import a case module or a script needs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from fastgen.bench.registry import (
    COMPILED,
    EAGER,
    FASTGEN,
    FASTGEN_TRITON,
    FORWARD,
    FORWARD_BACKWARD,
    IMPLEMENTATION_ORDER,
    PASSES,
    BenchCase,
    CaseFactory,
    CaseLoadError,
    CaseSpec,
    Inputs,
    case_families,
    collect_cases,
    dtype_name,
    parse_dtype,
    register_cases,
)
from fastgen.bench.timer import Timing, copy_bandwidth, measure, measure_interleaved

__all__ = [
    "COMPILED", "EAGER", "FASTGEN", "FASTGEN_TRITON", "FORWARD", "FORWARD_BACKWARD",
    "IMPLEMENTATION_ORDER", "PASSES", "BenchCase", "BenchRow", "BenchRun", "CaseFactory",
    "CaseLoadError", "CaseSpec", "CompileCache", "DEFAULT_TOLERANCES", "Inputs", "Timing",
    "case_families", "check_case", "collect_cases", "copy_bandwidth", "dtype_name",
    "make_timed_callable", "many_recompiles", "measure", "measure_interleaved", "parse_dtype", "register_cases",
    "resolve_implementation", "run_cases",
]

# Per-dtype (rtol, atol) of the correctness spot-check; the kernels use their own exp/log
# approximations and summation order, so they agree with the reference to rounding only.
DEFAULT_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1e-4, 1e-4),
    torch.float16: (3e-3, 3e-3),
    torch.bfloat16: (1.6e-2, 1e-2),
}


@dataclass
class BenchRow:
    """One implementation of one case. Times in seconds; None where not measured."""

    op: str
    shape: str
    dtype: str
    mode: str
    implementation: str
    median_s: float | None = None
    q1_s: float | None = None
    q3_s: float | None = None
    samples: int = 0
    vs_eager: float | None = None
    vs_compiled: float | None = None
    gbps: float | None = None
    pct_copy_bandwidth: float | None = None
    bytes_moved: int = 0
    check: str = "-"
    error: str | None = None
    family: str = ""
    flops: int = 0
    tflops: float | None = None

    @property
    def iqr_s(self) -> float | None:
        if self.q1_s is None or self.q3_s is None:
            return None
        return self.q3_s - self.q1_s


@dataclass
class BenchRun:
    """Rows of one run plus its environment and settings (what report.py writes)."""

    rows: list[BenchRow]
    environment: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def failed_checks(self) -> list[BenchRow]:
        return [row for row in self.rows if row.check.startswith("FAIL")]


def _as_tuple(out: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(out, torch.Tensor):
        return (out,)
    return tuple(out)


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first}"[:500]


def _grad_indices(case: BenchCase, inputs: Inputs) -> tuple[int, ...]:
    if case.grad_args is not None:
        return case.grad_args
    return tuple(i for i, t in enumerate(inputs) if t.is_floating_point())


def _prepare_grad_inputs(case: BenchCase, inputs: Inputs) -> Inputs:
    if case.mode != FORWARD_BACKWARD:
        return inputs
    grad_idx = set(_grad_indices(case, inputs))
    return tuple(
        t.detach().clone().requires_grad_(True) if i in grad_idx else t
        for i, t in enumerate(inputs)
    )


def _differentiable(outputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(o for o in outputs if o.requires_grad)


def _fixed_grads(outputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator(device=outputs[0].device if outputs else "cpu").manual_seed(1)
    return tuple(
        torch.randn(o.shape, dtype=o.dtype, device=o.device, generator=generator)
        for o in outputs
    )


def _forward_backward(fn: Callable[..., Any], args: Inputs, grad_inputs: Inputs,
                      grad_outputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    outputs = _differentiable(_as_tuple(fn(*args)))
    return torch.autograd.grad(outputs, grad_inputs, grad_outputs)


def make_timed_callable(case: BenchCase, fn: Callable[..., Any], inputs: Inputs
                        ) -> Callable[[], Any]:
    """The zero-argument callable the timer runs for ``fn`` on ``inputs``, in the case's pass.

    For ``forward+backward`` this calls ``fn`` once (to learn the outputs) and then times
    forward plus ``torch.autograd.grad`` of the differentiable outputs with fixed random grads
    (no ``.grad`` accumulation, so no extra add kernel is timed).
    """
    args = _prepare_grad_inputs(case, inputs)
    if case.mode == FORWARD:
        return lambda: fn(*args)
    grad_inputs = tuple(args[i] for i in _grad_indices(case, args))
    outputs = _differentiable(_as_tuple(fn(*args)))
    if not outputs:
        raise RuntimeError("no output requires grad: the implementation does not support autograd")
    grad_outputs = _fixed_grads(outputs)
    del outputs
    return lambda: _forward_backward(fn, args, grad_inputs, grad_outputs)


def _compare(actual: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...],
             rtol: float, atol: float, output_atol: Mapping[int, float] | None = None) -> str | None:
    """None when close, else a short description of the first mismatch. ``output_atol``: a
    larger absolute tolerance for the outputs it names (by index)."""
    if len(actual) != len(expected):
        return f"{len(actual)} outputs, expected {len(expected)}"
    for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
        if a.shape != e.shape:
            return f"output {index} has shape {tuple(a.shape)}, expected {tuple(e.shape)}"
        if a.dtype != e.dtype:
            return f"output {index} has dtype {a.dtype}, expected {e.dtype}"
        if a.numel() == 0:
            continue
        a64, e64 = a.detach().double(), e.detach().double()
        output_tolerance = max(atol, (output_atol or {}).get(index, 0.0))
        close = torch.isclose(a64, e64, rtol=rtol, atol=output_tolerance, equal_nan=True)
        if not bool(close.all()):
            err = (a64 - e64).abs().nan_to_num(nan=math.inf)
            return (f"output {index}: {int((~close).sum())} of {a.numel()} elements differ, "
                    f"max abs err {float(err.max()):.3g} (rtol {rtol:g}, atol {output_tolerance:g})")
    return None


def _evaluate(case: BenchCase, fn: Callable[..., Any], inputs: Inputs, extra: Inputs = ()
              ) -> tuple[torch.Tensor, ...]:
    """Outputs of ``fn(*inputs, *extra)``, and for forward+backward the grads of the inputs
    (not of ``extra``, e.g. an explicit eps) under fixed output grads."""
    inputs = _prepare_grad_inputs(case, inputs)
    outputs = _as_tuple(fn(*inputs, *extra))
    if case.mode == FORWARD:
        return tuple(o.detach() for o in outputs)
    grad_inputs = tuple(inputs[i] for i in _grad_indices(case, inputs))
    diff = _differentiable(outputs)
    if not diff:
        raise RuntimeError("no output requires grad: the implementation does not support autograd")
    grads = torch.autograd.grad(diff, grad_inputs, _fixed_grads(diff))
    return tuple(o.detach() for o in outputs) + tuple(grads)


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    """Full float32 matmuls and convolutions for the spot-check.

    On a GPU, cuDNN convolutions use TF32 (10-bit mantissa) by default, so an eager float32
    reference would be a worse oracle than the kernels it checks. The timed runs keep the
    defaults: that is what users get.
    """
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def check_case(case: BenchCase, inputs: Inputs, implementations: Mapping[str, Callable[..., Any]]
               ) -> dict[str, str]:
    """Spot-check every implementation against eager on the same inputs (and the same noise).

    Returns name -> ``"ref"`` (eager), ``"ok"``, ``"-"`` (not checkable: noise drawn inside
    and no explicit-noise twin) or ``"FAIL: ..."`` / ``"error: ..."``. float32 runs without TF32.
    """
    with _no_tf32():
        return _check_case(case, inputs, implementations)


def _check_case(case: BenchCase, inputs: Inputs, implementations: Mapping[str, Callable[..., Any]]
                ) -> dict[str, str]:
    rtol, atol = case.tolerance or DEFAULT_TOLERANCES.get(case.dtype, (1e-4, 1e-4))
    extra: Inputs = ()
    if case.check_implementations is not None:
        twins = dict(case.check_implementations)
        if case.check_extra is not None:
            torch.manual_seed(0)
            extra = tuple(case.check_extra(inputs))
    else:
        twins = dict(implementations)
    torch.manual_seed(0)
    expected = _evaluate(case, twins[EAGER], inputs, extra)
    status: dict[str, str] = {}
    for name in implementations:
        if name == EAGER:
            status[name] = "ref"
            continue
        twin = twins.get(name)
        if twin is None:
            status[name] = "-"
            continue
        try:
            torch.manual_seed(0)
            problem = _compare(_evaluate(case, twin, inputs, extra), expected, rtol, atol, case.output_atol)
        except Exception as error:  # noqa: BLE001 - recorded in the row
            status[name] = f"error: {_describe(error)}"
            continue
        status[name] = "ok" if problem is None else f"FAIL: {problem}"
    return status


class CompileCache:
    """One ``torch.compile`` wrapper per reference function, shared by all cases using it."""

    def __init__(self) -> None:
        self._compiled: dict[Callable[..., Any], Callable[..., Any]] = {}

    def get(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if fn not in self._compiled:
            # dynamic=False: one specialised graph per shape and dtype, as a user with fixed
            # shapes gets; fastgen's ops are compared with the best the reference can do.
            self._compiled[fn] = torch.compile(fn, dynamic=False)
        return self._compiled[fn]


def resolve_implementation(case: BenchCase, name: str, compile_cache: CompileCache | None = None
                           ) -> Callable[..., Any]:
    """The callable of implementation ``name`` of ``case``; ``compiled`` comes from the cache
    (compilation itself happens lazily, on the first call)."""
    if name == COMPILED and COMPILED not in case.implementations:
        if case.compile_from is None:
            raise KeyError(f"case {case.label} has no compiled implementation")
        cache = compile_cache if compile_cache is not None else CompileCache()
        return cache.get(case.implementations[case.compile_from])
    return case.implementations[name]


@contextlib.contextmanager
def many_recompiles(limit: int = 256) -> Iterator[None]:
    """Raise dynamo's recompile limit: every shape x dtype x pass of one reference function
    is a recompile, and past the default limit (8) dynamo silently runs it eagerly, which
    would report eager times as compiled ones."""
    import torch._dynamo.config as dynamo_config

    names = [n for n in ("recompile_limit", "cache_size_limit") if hasattr(dynamo_config, n)]
    saved = {n: getattr(dynamo_config, n) for n in names}
    for n in names:
        setattr(dynamo_config, n, max(limit, saved[n]))
    try:
        yield
    finally:
        for n, value in saved.items():
            setattr(dynamo_config, n, value)


def _ratio(baseline: float | None, value: float | None) -> float | None:
    if baseline is None or value is None or value <= 0:
        return None
    return baseline / value


def run_cases(
    cases: Sequence[BenchCase],
    device: torch.device | str = "cpu",
    *,
    implementations: Iterable[str] | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
    max_seconds: float = 2.0,
    measure_copy_bandwidth: bool | None = None,
    progress: bool = False,
    environment: dict[str, Any] | None = None,
) -> BenchRun:
    """Check and time every implementation of every case on ``device``.

    Args:
        cases: the cases (see :func:`collect_cases`).
        device: where inputs are made and timed.
        implementations: names to run (e.g. ``{"eager", "fastgen"}`` to skip ``compiled``);
            None runs all. ``eager`` always runs: the ratios need it.
        warmup, repeats: timer settings (defaults: 3/20 on CPU, 10/100 on GPU).
        max_seconds: time budget of the sampling of one implementation of one case.
        measure_copy_bandwidth: measure device copy bandwidth for the "% copy BW" column
            (default: on GPUs only).
        progress: show a tqdm bar on stderr.
        environment: extra keys for the run's environment record.

    Returns:
        A :class:`BenchRun`. Failures never raise: an implementation that errors (compile
        failure, missing kernel, out of memory) gets a row with ``error`` set, and one that
        fails the correctness check is not timed and gets ``check = "FAIL: ..."``.
    """
    from fastgen.bench.report import collect_environment, cpu_ticks, steal_share

    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    on_gpu = device.type == "cuda"
    warmup = (10 if on_gpu else 3) if warmup is None else warmup
    repeats = (100 if on_gpu else 20) if repeats is None else repeats
    wanted = None if implementations is None else set(implementations) | {EAGER}
    if measure_copy_bandwidth is None:
        measure_copy_bandwidth = on_gpu
    copy_gbps = copy_bandwidth(device) if measure_copy_bandwidth else None

    env = collect_environment(device)
    env["copy_bandwidth_gbps"] = copy_gbps
    env.update(environment or {})
    settings = {"device": str(device), "warmup": warmup, "repeats": repeats,
                "max_seconds": max_seconds,
                "implementations": sorted(wanted) if wanted is not None else "all"}

    plan = [(case, [n for n in case.implementation_names() if wanted is None or n in wanted])
            for case in cases]
    total = sum(len(names) for _, names in plan)
    compile_cache = CompileCache()
    rows: list[BenchRow] = []
    bar = _progress_bar(total, progress)
    ticks_before = cpu_ticks()
    try:
        with many_recompiles():
            for case, names in plan:
                bar.set_description(case.label)
                rows.extend(_run_case(case, names, device, compile_cache, warmup, repeats,
                                      max_seconds, copy_gbps, bar))
    finally:
        bar.close()
    env["cpu_steal_share"] = steal_share(ticks_before, cpu_ticks())
    return BenchRun(rows=rows, environment=env, settings=settings)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_description(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    # disable=None: no bar when stderr is not a terminal (logs, CI).
    return tqdm(total=total, unit="impl", leave=False, disable=None, dynamic_ncols=True)


def _run_case(case: BenchCase, names: list[str], device: torch.device,
              compile_cache: CompileCache, warmup: int, repeats: int, max_seconds: float,
              copy_gbps: float | None, bar: Any) -> list[BenchRow]:
    def row(name: str, **values: Any) -> BenchRow:
        return BenchRow(op=case.op, shape=case.shape, dtype=dtype_name(case.dtype),
                        mode=case.mode, implementation=name, bytes_moved=case.bytes_moved,
                        family=case.family, flops=case.flops, **values)

    try:
        torch.manual_seed(0)
        inputs = tuple(case.make_inputs(device))
    except Exception as error:  # noqa: BLE001 - e.g. out of memory for a large shape
        bar.update(len(names))
        _release(device)
        return [row(name, error=f"inputs: {_describe(error)}") for name in names]

    callables: dict[str, Callable[..., Any]] = {}
    errors: dict[str, str] = {}
    for name in names:
        try:
            callables[name] = resolve_implementation(case, name, compile_cache)
        except Exception as error:  # noqa: BLE001
            errors[name] = f"compile: {_describe(error)}"
    # With explicit-noise twins (noise drawn inside the timed callables) "compiled" has no
    # twin and is not checked: compiling the twin too would double the compile time, to test
    # torch.compile rather than fastgen.
    try:
        checks = check_case(case, inputs, callables)
    except Exception as error:  # noqa: BLE001 - the eager reference itself failed
        bar.update(len(names))
        _release(device)
        return [row(name, error=f"eager reference: {_describe(error)}") for name in names]

    # The implementations that passed the check are timed together, their samples in turns
    # (measure_interleaved), so that drift of a shared machine's speed does not move the ratios.
    timed: dict[str, Callable[[], Any]] = {}
    raised: dict[str, BaseException] = {}
    for name in names:
        if name in errors or checks.get(name, "-").startswith(("FAIL", "error")):
            continue
        try:
            timed[name] = make_timed_callable(case, callables[name], inputs)
        except Exception as error:  # noqa: BLE001 - compile failures surface here
            raised[name] = error
    timings = measure_interleaved(timed, device, warmup=warmup, repeats=repeats, max_seconds=max_seconds,
                                  errors=raised)
    for name, error in raised.items():
        prefix = "compile" if name == COMPILED else "run"
        errors[name] = f"{prefix}: {_describe(error)}"
    if raised:
        _release(device)
    bar.update(len(names))

    eager_s = timings[EAGER].median_s if EAGER in timings else None
    compiled_s = timings[COMPILED].median_s if COMPILED in timings else None
    rows = []
    for name in names:
        check = checks.get(name, "-")
        error = errors.get(name)
        if error is None and check.startswith("error: "):
            stage = "compile" if name == COMPILED else "run"
            error, check = f"{stage}: {check.removeprefix('error: ')}", "-"
        timing = timings.get(name)
        if timing is None:
            rows.append(row(name, check=check, error=error))
            continue
        gbps = case.bytes_moved / timing.median_s / 1e9 if case.bytes_moved else None
        tflops = case.flops / timing.median_s / 1e12 if case.flops else None
        rows.append(row(
            name, median_s=timing.median_s, q1_s=timing.q1_s, q3_s=timing.q3_s,
            samples=timing.samples, vs_eager=_ratio(eager_s, timing.median_s),
            vs_compiled=_ratio(compiled_s, timing.median_s), gbps=gbps,
            pct_copy_bandwidth=(100.0 * gbps / copy_gbps) if gbps and copy_gbps else None,
            tflops=tflops, check=check))
    del inputs, callables
    _release(device)
    return rows


def _release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
