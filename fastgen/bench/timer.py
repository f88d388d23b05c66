"""Timing: median and quartiles of a callable on the CPU or a GPU, and copy bandwidth."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median and quartiles over ``samples`` samples."""

    median_s: float
    q1_s: float
    q3_s: float
    samples: int
    calls_per_sample: int = 1

    @property
    def iqr_s(self) -> float:
        return self.q3_s - self.q1_s


def _summarize(per_call: list[float], calls_per_sample: int) -> Timing:
    if len(per_call) == 1:
        q1 = med = q3 = per_call[0]
    else:
        q1, med, q3 = statistics.quantiles(per_call, n=4, method="inclusive")
    return Timing(med, q1, q3, len(per_call), calls_per_sample)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_L2_FLUSH: dict[torch.device, torch.Tensor] = {}


def _flush_l2(device: torch.device) -> None:
    """Overwrite a buffer larger than any L2 cache so each sample starts cold (as do_bench)."""
    buffer = _L2_FLUSH.get(device)
    if buffer is None:
        buffer = _L2_FLUSH[device] = torch.empty(256 * 2**20, dtype=torch.int8, device=device)
    buffer.zero_()


def measure(
    fn: Callable[[], Any],
    device: torch.device | str = "cpu",
    *,
    warmup: int = 3,
    repeats: int = 20,
    max_seconds: float = 2.0,
    min_sample_seconds: float = 2e-4,
    flush_cache: bool = True,
) -> Timing:
    """Time ``fn()``: ``warmup`` calls, then up to ``repeats`` samples; median and quartiles.

    On a GPU every sample is one call between two CUDA events, after overwriting a 256 MiB
    buffer so the inputs are not served from L2 (``flush_cache``). On the CPU a sample is
    ``time.perf_counter`` around as many calls as take ``min_sample_seconds`` (so timer
    overhead is negligible for tiny calls). Sampling stops early once ``max_seconds`` are
    spent, after at least ``min(repeats, 3)`` samples.
    """
    errors: dict[str, BaseException] = {}
    timings = measure_interleaved({"fn": fn}, device, warmup=warmup, repeats=repeats, max_seconds=max_seconds,
                                  min_sample_seconds=min_sample_seconds, flush_cache=flush_cache, errors=errors)
    if errors:
        raise errors["fn"]
    return timings["fn"]


# Samples shorter than this re-warm at the start of each turn (see measure_interleaved).
_REWARM_BELOW_S = 0.05


def measure_interleaved(
    fns: Mapping[str, Callable[[], Any]],
    device: torch.device | str = "cpu",
    *,
    warmup: int = 3,
    repeats: int = 20,
    max_seconds: float = 2.0,
    min_sample_seconds: float = 2e-4,
    flush_cache: bool = True,
    samples_per_turn: int = 5,
    errors: dict[str, BaseException] | None = None,
) -> dict[str, Timing]:
    """Time several callables that do the same work, taking their samples in turns.

    Each is warmed up (``warmup`` calls), then sampling goes round by round: each callable in
    turn takes ``samples_per_turn`` samples, the order rotated every round, until each has
    ``repeats`` samples or, after ``min(repeats, 3)``, ``max_seconds`` per callable are spent.
    Samples as in :func:`measure`. On a shared machine the speed drifts by tens of percent
    within seconds; taken in turns, every callable sees the same drift, so the ratios of their
    medians hold where the times do not.

    On the CPU a turn starts with one untimed call: a callable's first call after another's
    finds the caches and the allocator in the other's state, which costs small ops up to 2x;
    several samples per turn keep what is left of that out of the median. (On a GPU every
    sample starts from a flushed L2 anyway.)

    A callable that raises is dropped: its exception goes into ``errors`` (re-raised when
    ``errors`` is None) and it gets no timing.
    """
    device = torch.device(device)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")

    def failed(name: str, error: BaseException) -> None:
        if errors is None:
            raise error
        errors[name] = error

    # Warm-up: compilation, autotuning, allocator caching happen here, outside the timing.
    calls: dict[str, int] = {}
    call_seconds: dict[str, float] = {}
    for name, fn in fns.items():
        try:
            call_seconds[name] = _warm_up(fn, device, warmup)
        except Exception as error:  # noqa: BLE001 - reported through `errors`
            failed(name, error)
            continue
        calls[name] = _calls_per_sample(device, call_seconds[name], min_sample_seconds)
    samples: dict[str, list[Any]] = {name: [] for name in calls}
    names = list(calls)
    min_samples = min(repeats, 3)
    deadline = time.perf_counter() + max_seconds * max(len(names), 1)
    round_index = 0
    while any(len(taken) < repeats for taken in samples.values()):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            if name not in samples:
                continue
            try:
                # Re-warming pays where another callable's state costs: short CPU calls.
                if len(names) > 1 and device.type != "cuda" and calls[name] * call_seconds[name] < _REWARM_BELOW_S:
                    fns[name]()
                turn_end = time.perf_counter() + max_seconds / 4
                for _ in range(min(samples_per_turn, repeats - len(samples[name]))):
                    samples[name].append(_sample(fns[name], device, calls[name], flush_cache))
                    if time.perf_counter() > turn_end:  # slow calls: fewer samples per turn
                        break
            except Exception as error:  # noqa: BLE001 - reported through `errors`
                del samples[name]
                failed(name, error)
        round_index += 1
        if time.perf_counter() > deadline and all(len(taken) >= min_samples for taken in samples.values()):
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return {name: _summarize([begin.elapsed_time(end) / 1e3 for begin, end in events], 1)
                for name, events in samples.items()}
    return {name: _summarize(times, calls[name]) for name, times in samples.items()}


def _warm_up(fn: Callable[[], Any], device: torch.device, warmup: int) -> float:
    """``warmup`` calls (at least one); the fastest one's seconds (the first may include compilation)."""
    fastest = math.inf
    for _ in range(max(warmup, 1)):
        start = time.perf_counter()
        fn()
        _synchronize(device)
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def _calls_per_sample(device: torch.device, call_seconds: float, min_sample_seconds: float) -> int:
    """The calls one sample needs to last ``min_sample_seconds`` (1 on a GPU, timed by events)."""
    if device.type == "cuda" or call_seconds >= min_sample_seconds:
        return 1
    return max(1, math.ceil(min_sample_seconds / max(call_seconds, 1e-9)))


def _sample(fn: Callable[[], Any], device: torch.device, calls: int, flush_cache: bool) -> Any:
    """One sample: seconds per call on the CPU, a pair of recorded CUDA events on a GPU."""
    if device.type == "cuda":
        if flush_cache:
            _flush_l2(device)
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        return begin, end
    begin = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - begin) / calls


def copy_bandwidth(
    device: torch.device | str, nbytes: int | None = None, *, repeats: int = 20
) -> float:
    """Measured device memory-copy bandwidth in GB/s: ``dst.copy_(src)``, 2 * size bytes."""
    device = torch.device(device)
    if nbytes is None:
        nbytes = 512 * 2**20
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            nbytes = min(nbytes, free // 8)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    timing = measure(lambda: dst.copy_(src), device, warmup=3, repeats=repeats,
                     max_seconds=5.0, flush_cache=False)
    moved = 2 * src.numel() * src.element_size()
    return moved / timing.median_s / 1e9
