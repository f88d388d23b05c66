"""Printing and writing benchmark results: a fixed-width table, results.json and results.md.

Columns (the same in all three):
    op, shape, dtype, pass      the case
    impl                        eager (the reference), compiled (torch.compile of it), fastgen, ...
    median                      median time of one call of the whole pass
    IQR                         interquartile range, as a percentage of the median
    vs eager / vs compiled      eager time / this time (and compiled time / this time): >1 = faster
    GB/s                        minimum bytes the op must move / median time (effective bandwidth)
    % copy BW                   GB/s as a share of the device's measured memory-copy bandwidth (GPU)
    TFLOP/s                     useful FLOPs of the pass / median time (achieved compute rate);
                                only for cases that declare FLOPs (BenchCase.flops > 0): the column
                                (and the JSON keys flops/tflops) appears only when a row has them
    check                       ref (eager), ok (close to eager on the same inputs and noise),
                                - (not checked), FAIL: ... (not timed)
    note                        why a row has no time (compile or run error)
"""

from __future__ import annotations

import datetime as _datetime
import json
import os
import platform
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fastgen.bench.harness import BenchRow, BenchRun

COLUMNS = ("op", "shape", "dtype", "pass", "implementation", "median time", "IQR", "vs eager",
           "vs compiled", "GB/s", "% copy BW", "TFLOP/s", "check", "note")
_RIGHT_ALIGNED = {"median time", "IQR", "vs eager", "vs compiled", "GB/s", "% copy BW", "TFLOP/s"}
# Shown only when some row has a value: the ops without FLOPs keep their table unchanged.
_OPTIONAL_COLUMNS = {"TFLOP/s"}
_NOTE_WIDTH = 60


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def collect_environment(device: torch.device | str) -> dict[str, Any]:
    """Where and with what a run happens: device name, versions, threads, host, date."""
    from fastgen.info import collect

    device = torch.device(device)
    facts = collect()
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = _cpu_name()
    backends = facts["backends"]
    return {
        "device": str(device),
        "device_name": device_name,
        "fastgen": facts["fastgen"],
        "torch": facts["torch"],
        "torch_cuda": facts["torch_cuda"],
        "triton": backends["triton_version"],
        "triton_interpreter": backends["triton_interpreter"],
        "cpu_extension": backends["cpu_extension"],
        "cuda_extension": backends["cuda_extension"],
        "python": facts["python"],
        "platform": facts["platform"],
        "cpu_threads": facts["cpu_threads"],
        "host": socket.gethostname(),
        "date": _datetime.datetime.now(_datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def cpu_ticks() -> list[int] | None:
    """The machine's CPU time counters (user, nice, system, idle, iowait, irq, softirq, steal),
    from Linux's /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    return [int(value) for value in fields[1:9]]


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of CPU time between two :func:`cpu_ticks` readings that the hypervisor gave
    to other guests ("steal"): on a shared virtual machine, the run's slowdown and much of its
    noise. None when unknown."""
    if before is None or after is None:
        return None
    total = sum(after) - sum(before)
    return (after[7] - before[7]) / total if total > 0 else None


def format_seconds(seconds: float | None) -> str:
    """``1.23 ms``, ``45.6 us``: three significant digits in the unit that fits."""
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{_three_digits(seconds / scale)} {unit}"
    return f"{_three_digits(seconds / 1e-9)} ns"


def _three_digits(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cells(row: BenchRow) -> dict[str, str]:
    iqr = row.iqr_s
    note = row.error or ""
    check = row.check
    if check.startswith("FAIL"):
        note, check = check.removeprefix("FAIL: "), "FAIL"
    return {
        "op": row.op,
        "shape": row.shape,
        "dtype": row.dtype,
        "pass": row.mode,
        "implementation": row.implementation,
        "median time": format_seconds(row.median_s),
        "IQR": f"{100 * iqr / row.median_s:.1f}%" if iqr is not None and row.median_s else "-",
        "vs eager": f"{row.vs_eager:.2f}x" if row.vs_eager is not None else "-",
        "vs compiled": f"{row.vs_compiled:.2f}x" if row.vs_compiled is not None else "-",
        "GB/s": f"{row.gbps:.1f}" if row.gbps is not None else "-",
        "% copy BW": f"{row.pct_copy_bandwidth:.0f}%" if row.pct_copy_bandwidth is not None
        else "-",
        "TFLOP/s": _format_tflops(row.tflops),
        "check": check,
        "note": note,
    }


def _format_tflops(tflops: float | None) -> str:
    if tflops is None:
        return "-"
    return f"{tflops:.3f}" if tflops < 1 else f"{tflops:.2f}"


def _has_flops(rows: Sequence[BenchRow]) -> bool:
    return any(row.flops > 0 for row in rows)


def _shown_columns(rows: Sequence[BenchRow]) -> list[str]:
    """COLUMNS less the optional ones no row has (TFLOP/s without any FLOP count)."""
    return [c for c in COLUMNS if c not in _OPTIONAL_COLUMNS or _has_flops(rows)]


def format_table(rows: Sequence[BenchRow], *, note_width: int = _NOTE_WIDTH) -> str:
    """Fixed-width table, a blank line between cases, long notes cut to ``note_width``."""
    cells = [_cells(row) for row in rows]
    for cell in cells:
        if len(cell["note"]) > note_width:
            cell["note"] = cell["note"][: note_width - 3] + "..."
    columns = [c for c in _shown_columns(rows) if c != "note" or any(cell["note"] for cell in cells)]
    widths = {c: max([len(c)] + [len(cell[c]) for cell in cells]) for c in columns}

    def line(values: dict[str, str]) -> str:
        parts = [values[c].rjust(widths[c]) if c in _RIGHT_ALIGNED else values[c].ljust(widths[c])
                 for c in columns]
        return "  ".join(parts).rstrip()

    out = [line({c: c for c in columns}), "  ".join("-" * widths[c] for c in columns)]
    previous = None
    for row, cell in zip(rows, cells, strict=True):
        key = (row.op, row.shape, row.dtype, row.mode)
        if previous is not None and key != previous:
            out.append("")
        previous = key
        out.append(line(cell))
    return "\n".join(out)


def format_markdown_table(rows: Sequence[BenchRow]) -> str:
    """The same table in GitHub markdown (numbers right-aligned, notes in full)."""
    cells = [_cells(row) for row in rows]
    columns = _shown_columns(rows)
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---:" if c in _RIGHT_ALIGNED else "---" for c in columns) + "|"
    body = ["| " + " | ".join(cell[c].replace("|", "\\|") for c in columns) + " |"
            for cell in cells]
    return "\n".join([header, rule, *body])


def _environment_lines(run: BenchRun) -> list[str]:
    env = run.environment
    copy = env.get("copy_bandwidth_gbps")
    lines = [
        f"device: {env.get('device_name')} ({env.get('device')})",
        f"fastgen {env.get('fastgen')}, torch {env.get('torch')} (CUDA {env.get('torch_cuda') or 'none'}), "
        f"triton {env.get('triton')}, python {env.get('python')}",
        f"CPU extension: {env.get('cpu_extension')}, CUDA extension: {env.get('cuda_extension')}, "
        f"CPU threads: {env.get('cpu_threads')}",
        f"host: {env.get('host')} ({env.get('platform')}), date: {env.get('date')}",
    ]
    if copy:
        lines.append(f"measured device copy bandwidth: {copy:.0f} GB/s")
    steal = env.get("cpu_steal_share")
    if steal is not None:
        lines.append(f"CPU time taken by other guests of the host during the run (steal): {steal:.0%}"
                     + (" -- times are slower and noisier than on idle cores" if steal >= 0.05 else ""))
    settings = run.settings
    if settings:
        lines.append("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    return lines


def format_run(run: BenchRun) -> str:
    """Environment block plus fixed-width table, as ``fastgen bench`` prints it."""
    return "\n".join(_environment_lines(run)) + "\n\n" + format_table(run.rows)


def to_dict(run: BenchRun) -> dict[str, Any]:
    """JSON-ready dict: ``schema``, ``environment``, ``settings``, ``columns``, ``rows``."""
    rows = []
    for row in run.rows:
        rows.append({
            "op": row.op, "shape": row.shape, "dtype": row.dtype, "pass": row.mode,
            "implementation": row.implementation, "family": row.family,
            "median_s": row.median_s, "q1_s": row.q1_s, "q3_s": row.q3_s, "iqr_s": row.iqr_s,
            "samples": row.samples, "vs_eager": row.vs_eager, "vs_compiled": row.vs_compiled,
            "gbps": row.gbps, "pct_copy_bandwidth": row.pct_copy_bandwidth,
            "bytes_moved": row.bytes_moved, "check": row.check, "error": row.error,
        })
        if row.flops > 0:
            rows[-1].update({"flops": row.flops, "tflops": row.tflops})
    return {"schema": "fastgen-bench/1", "environment": run.environment,
            "settings": run.settings, "columns": _shown_columns(run.rows), "rows": rows}


def write_json(run: BenchRun, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.write_text(json.dumps(to_dict(run), indent=2, default=str) + "\n", encoding="utf-8")
    return path


def write_markdown(run: BenchRun, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    env = run.environment
    text = [f"# fastgen benchmarks: {env.get('device_name')}", ""]
    text += [f"- {line}" for line in _environment_lines(run)]
    text += ["", format_markdown_table(run.rows), "",
             "Times are medians of one call of the whole pass; `vs eager` and `vs compiled` are "
             "baseline time / this time (>1 = faster); GB/s is the minimum bytes the op must "
             "move / median time; `% copy BW` compares it with the measured device copy "
             "bandwidth (GPU only)." + (" TFLOP/s is the useful FLOPs of the pass (e.g. the "
                                        "kept taps of a masked convolution) / median time."
                                        if _has_flops(run.rows) else ""), ""]
    path.write_text("\n".join(text), encoding="utf-8")
    return path


def write_results(run: BenchRun, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``results.json`` and ``results.md`` into ``out_dir`` (created); their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [write_json(run, out / "results.json"), write_markdown(run, out / "results.md")]
