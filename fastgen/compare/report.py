"""The output of ``fastgen compare``: the table (printed and in report.md), results.json and the figures.

Every cell is a figure measured in the run or read from a checkpoint's recorded metrics; the
"source" column says which. Nothing here is typed in by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

COLUMNS = ("model", "parameters", "train img/s", "train time", "steps", "test bits/dim", "NLL kind",
           "Fréchet distance", "classes covered", "sample img/s (batch 1)", "sample img/s (batch 64)",
           "x -> z", "reconstruction error", "sampling", "source")


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def nll_kind(row: dict[str, Any]) -> str:
    """What the bits/dim figure is, from the evaluation that produced it."""
    if row.get("bits_per_dim") is None:
        return "none (no likelihood)"
    if "iw_samples" in row:
        return f"bound (importance-weighted, k={row['iw_samples']:.0f})"
    if "dequantization_draws" in row:
        draws = round(row["dequantization_draws"])
        return f"exact (dequantized, {draws} draw{'s' if draws != 1 else ''})"
    return "exact (discrete)"


def _throughput(row: dict[str, Any], batch: int) -> str:
    cached = _num(row.get(f"sample_images_per_s_batch{batch}"))
    naive = row.get(f"naive_sample_images_per_s_batch{batch}")
    return cached if naive is None else f"{cached} cached / {_num(naive)} naive"


def _reconstruction(row: dict[str, Any]) -> str:
    if "reconstruction_max_abs_error" in row:
        return f"max {row['reconstruction_max_abs_error']:.1e}"
    if "reconstruction_mean_abs_error" in row:
        return f"mean {row['reconstruction_mean_abs_error']:.3f}"
    return "-"


def table_rows(models: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = []
    for name, row in models.items():
        sampling = row["sampling"]
        if sampling == "sequential":
            sampling += f" ({row['network_steps_per_sample']} steps)"
        covered = row.get("classes_covered")
        rows.append([
            name, f"{row['parameters']:,}", _num(row.get("images_per_second")),
            "-" if row.get("train_seconds") is None else f"{row['train_seconds']:.0f} s", _num(row.get("steps")),
            "none" if row.get("bits_per_dim") is None else _num(row["bits_per_dim"]), nll_kind(row),
            _num(row.get("frechet_distance")),
            "-" if covered is None else f"{covered:.0f}", _throughput(row, 1), _throughput(row, 64),
            row["x_to_z"], _reconstruction(row), sampling, row["source"],
        ])
    baseline = histogram_baseline(models)
    if baseline is not None:  # the row every likelihood is read against
        cells = {"model": "histogram baseline", "test bits/dim": _num(baseline),
                 "NLL kind": "exact (independent pixels, per-pixel histogram of the training split)",
                 "source": "computed from the data in this run"}
        rows.append([cells.get(column, "-") for column in COLUMNS])
    return rows


def histogram_baseline(models: dict[str, dict[str, Any]]) -> float | None:
    """The per-pixel histogram baseline's test bits/dim (the same data for every model), if measured."""
    return next((row["histogram_baseline_bits_per_dim"] for row in models.values()
                 if row.get("histogram_baseline_bits_per_dim") is not None), None)


def markdown_table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def audio_table(audio: dict[str, Any]) -> str:
    header = ["model", "parameters", "receptive field", "train clips/s", "train time", "test bits/sample",
              "unigram baseline", "cached samples/s", "naive samples/s", "cached / naive", "real-time factor",
              "source"]
    row = [
        "wavenet", f"{audio['parameters']:,}", str(audio["receptive_field"]), _num(audio.get("images_per_second")),
        "-" if audio.get("train_seconds") is None else f"{audio['train_seconds']:.0f} s",
        _num(audio["bits_per_sample"]), _num(audio["unigram_baseline_bits_per_sample"]),
        _num(audio["cached_samples_per_s"], 4), _num(audio["naive_samples_per_s"]),
        f"{audio['cached_over_naive']:.0f}x",
        _num(audio["real_time_factor"]), audio["source"],
    ]
    return markdown_table(header, [row])


def curve_lines(models: dict[str, dict[str, Any]]) -> list[str]:
    """One line per model with a learning curve: its points, and its lowest point when it ends higher."""
    lines = []
    for name, row in models.items():
        curve = row.get("curve") or []
        if not curve:
            continue
        points = ", ".join(f"{seconds:.0f} s: {bpd:.3f}" for seconds, bpd in curve)
        best_seconds, best = min(curve, key=lambda point: point[1])
        rise = curve[-1][1] - best
        note = f" (lowest at {best_seconds:.0f} s, {rise:+.3f} by the end)" if best < curve[-1][1] else ""
        lines.append(f"- {name}: {points}{note}")
    return lines


def _finite_or_null(value: Any) -> Any:
    """``value`` with every NaN or infinite float inside it replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def write_report(out: Path, results: dict[str, Any]) -> str:
    """Write report.md and results.json into ``out``; return the report text."""
    env, models = results["environment"], results["models"]
    lines = [f"# fastgen compare: {results['data']}", "",
             f"{env['date']} on {env['device_name']} ({env['device']}, {env['threads']} threads), torch "
             f"{env['torch']}, fastgen {env['fastgen']}. Budget: {results['budget']}. "
             f"Command: `{results['command']}`.", ""]
    if models:
        lines += [markdown_table(COLUMNS, table_rows(models)), ""]
        lines += [
            "Histogram baseline: each pixel an independent categorical fit on the training split (with "
            "add-one smoothing), scored on the test split: a model that beats it has learned more than the "
            "pixels' marginals. Training: each model's own recipe (optimizer, learning rate, batch size, "
            "warm-up) on the training "
            "split (90% of it with `--select best`, the rest held out for the selection); only training steps "
            "count against the budget. Test bits/dim: the recipe's test "
            "evaluation (what `fastgen evaluate` prints). Fréchet distance and classes: the embedded digits "
            f"classifier on generated samples (floor between real train and test: "
            f"{_num(next((r.get('frechet_floor') for r in models.values() if r.get('frechet_floor')), None))}). "
            "Sampling throughput: best of timed calls after a warm-up. x -> z: the model's inference map and "
            "back on 64 test images (flows: inverse of the forward pass; VAE: decoder mean at the encoder mean).",
            ""]
    curves = curve_lines(models)
    if curves:
        lines += ["## Test bits/dim along training", "",
                  "Measured at each quarter of the budget (training time in seconds). Where a curve rises again "
                  "the model overfits the training split; without `--select best` (see the source column) the "
                  "table's figure is that of the end of the budget, worse than the curve's best point.", ""]
        lines += curves + [""]
    if results.get("audio"):
        lines += ["## Audio: WaveNet", "", audio_table(results["audio"]), "",
                  "Real-time factor: generation time / audio duration at batch 1 (< 1 is faster than real time). "
                  "Naive: one network pass over the receptive field per generated sample.", ""]
    if results.get("figures"):
        lines += ["## Figures", ""] + [f"![{name}]({name})" for name in results["figures"]] + [""]
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    # Strict JSON: a non-finite number (none is expected) is written as null, not as NaN/Infinity.
    (out / "results.json").write_text(json.dumps(_finite_or_null(results), indent=2, default=str,
                                                 allow_nan=False) + "\n")
    return text


def write_figures(out: Path, models: dict[str, dict[str, Any]], samples: dict[str, torch.Tensor]) -> list[str]:
    """samples.png (grids side by side), bpd_vs_time.png, sampling_throughput.png; their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastgen.train.plots import image_grid

    out.mkdir(parents=True, exist_ok=True)
    written = []
    if samples:
        fig, axes = plt.subplots(1, len(samples), figsize=(2.6 * len(samples), 2.9), squeeze=False)
        for ax, (name, images) in zip(axes[0], samples.items()):
            grid = image_grid(images.float().cpu(), nrow=8, scale=2)
            ax.imshow(grid[:, :, 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=255)
            ax.set_title(name)
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(out / "samples.png", dpi=120)
        plt.close(fig)
        written.append("samples.png")
    curves = {n: r["curve"] for n, r in models.items() if r.get("curve")}
    if curves:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for name, curve in curves.items():
            seconds, bpd = zip(*curve)
            ax.plot(seconds, bpd, marker="o", label=name)
        baseline = histogram_baseline(models)
        if baseline:
            ax.axhline(baseline, color="gray", linestyle="--", label="histogram baseline")
        ax.set_xlabel("training time (s)")
        ax.set_ylabel("test bits/dim")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "bpd_vs_time.png", dpi=120)
        plt.close(fig)
        written.append("bpd_vs_time.png")
    bars = []
    for name, row in models.items():
        for batch in (1, 64):
            if row.get(f"sample_images_per_s_batch{batch}"):
                bars.append((f"{name} b{batch}", row[f"sample_images_per_s_batch{batch}"]))
            if row.get(f"naive_sample_images_per_s_batch{batch}"):
                bars.append((f"{name} naive b{batch}", row[f"naive_sample_images_per_s_batch{batch}"]))
    if bars:
        fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(bars) + 1.2))
        labels, values = zip(*bars)
        ax.barh(range(len(bars)), values)
        ax.set_yticks(range(len(bars)), labels)
        ax.set_xscale("log")
        ax.set_xlabel("images per second (log scale)")
        ax.invert_yaxis()
        fig.tight_layout()
        fig.savefig(out / "sampling_throughput.png", dpi=120)
        plt.close(fig)
        written.append("sampling_throughput.png")
    return written
