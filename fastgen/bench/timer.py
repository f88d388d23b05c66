"""Timing: median and quartiles of a callable on the CPU or a GPU, and copy bandwidth."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
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
    device = torch.device(device)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    # Warm-up: compilation, autotuning, allocator caching happen here, outside the timing.
    per_call_estimate = math.inf
    for _ in range(max(warmup, 1)):
        start = time.perf_counter()
        fn()
        _synchronize(device)
        # The fastest warm-up call: the first one may include compilation.
        per_call_estimate = min(per_call_estimate, time.perf_counter() - start)
    min_samples = min(repeats, 3)
    deadline = time.perf_counter() + max_seconds
    times: list[float] = []
    if device.type == "cuda":
        events = []
        for i in range(repeats):
            if flush_cache:
                _flush_l2(device)
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            events.append((begin, end))
            if i + 1 >= min_samples and time.perf_counter() > deadline:
                break
        torch.cuda.synchronize(device)
        times = [begin.elapsed_time(end) / 1e3 for begin, end in events]
        return _summarize(times, 1)
    calls = 1
    if per_call_estimate < min_sample_seconds:
        calls = max(1, math.ceil(min_sample_seconds / max(per_call_estimate, 1e-9)))
    for i in range(repeats):
        begin = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - begin) / calls)
        if i + 1 >= min_samples and time.perf_counter() > deadline:
            break
    return _summarize(times, calls)


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
