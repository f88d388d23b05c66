"""Naive vs cached autoregressive sampling, PixelCNN and WaveNet, in one run (issue: fast generation).

    python benchmarks/autoregressive_sampling.py [--quick] [--out DIR] [--threads 2]

Random-weight models at the issue's sizes (speed does not depend on training):

* WaveNet: 2 stacks of 15 layers (dilations 1 .. 16384, receptive field 65,535 samples),
  residual 64, gate 128, skip 256, 256-way mu-law output; batch 1 and 16.
  - cached: ``model.sample(..., method="cached")`` generating 8,000 samples (best of 3) with the fused
    decoder (``fastgen.ops.wavenet_generate``: every layer and step in one call), and 2,000 with
    one ``wavenet_layer_step`` call per layer and step (``fused=False``);
  - naive: what public PyTorch WaveNets do, one full forward pass over the receptive field
    (the last 65,535 inputs) per generated sample; timed over 3 samples at a
    full window (every step costs the same) and reported per sample.
  Real-time factor = generation time / audio duration at 16 kHz (batch 1; < 1 is faster than
  real time).
* PixelCNN: 15 gated layers of 64 channels, 28x28, 256 levels; batch 1, 16, 128.
  - cached: whole images with the row caches, each row in one ``pixelcnn_generate_row`` call
    (fused rows, the default on the CPU) and with one step-op call per layer and pixel
    (``fused=False``);
  - naive: one full forward pass per pixel; every pixel step costs the same, so
    4 steps are timed and the image time is that x 784 (said in the table).

Both samplers get the same uniforms; the benchmark checks that the naive steps it times give
the same values as the cached run. Prints a markdown table and writes results.json/results.md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import os
import platform
import time
from pathlib import Path

import torch

import fastgen
from fastgen.bench.report import cpu_ticks, steal_share
from fastgen.models import PixelCNN, WaveNet
from fastgen.ops._step_registration import cuda_decoder_built

SAMPLE_RATE = 16000
CLUSTER_SIZES = (8, 16)  # blocks per sample tried for the cluster decoder on sm_90+ GPUs


DEVICE = torch.device("cpu")


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def _timed(fn) -> tuple[float, object]:
    _sync()
    start = time.perf_counter()
    out = fn()
    _sync()
    return time.perf_counter() - start, out


@torch.no_grad()
def wavenet_rows(batches: tuple[int, ...], wave_steps: int, naive_steps: int) -> list[dict]:
    torch.manual_seed(0)
    model = WaveNet(residual_channels=64, gate_channels=128, skip_channels=256, layers_per_stack=15,
                    stacks=2).to(DEVICE).eval()
    field = model.receptive_field
    rows = []
    for n in batches:
        u = torch.rand(n, wave_steps, generator=torch.Generator().manual_seed(n)).to(DEVICE)
        model.sample(n, 8, uniforms=u[:, :8])  # warm-up
        # Best of 3 (same uniforms, same codes): a busy shared machine only ever slows a run down.
        cached_s, codes = min((_timed(lambda: model.sample(n, wave_steps, uniforms=u)) for _ in range(3)),
                              key=lambda timed: timed[0])
        cached_per_step = cached_s / wave_steps
        steps_s, step_codes = _timed(lambda: model.sample(n, wave_steps // 4, uniforms=u[:, :wave_steps // 4],
                                                          fused=False))
        steps_per_step = steps_s / (wave_steps // 4)
        graph_per_step = triton_per_step = None
        if DEVICE.type == "cuda" and cuda_decoder_built():  # the Triton decoder, for comparison
            with _triton_decoder():
                triton_s, triton_codes = min((_timed(lambda: model.sample(n, wave_steps, uniforms=u))
                                              for _ in range(2)), key=lambda timed: timed[0])
            triton_per_step = triton_s / wave_steps
        cluster_rates = {}
        if DEVICE.type == "cuda" and cuda_decoder_built() and torch.cuda.get_device_capability(DEVICE)[0] >= 9:
            for blocks in CLUSTER_SIZES:  # the cluster decoder (opt-in: FASTGEN_DECODER_CLUSTER)
                with _environment("FASTGEN_DECODER_CLUSTER", str(blocks)):
                    model.sample(n, 8, uniforms=u[:, :8])
                    cluster_s, cluster_codes = min((_timed(lambda: model.sample(n, wave_steps, uniforms=u))
                                                    for _ in range(2)), key=lambda timed: timed[0])
                cluster_rates[blocks] = {"samples_per_s": n * wave_steps / cluster_s,
                                         "real_time_factor": cluster_s / wave_steps * SAMPLE_RATE if n == 1 else None,
                                         "equal_fused": bool(torch.equal(cluster_codes, codes))}
        if DEVICE.type == "cuda":  # the step loop captured in a CUDA graph
            model.sample(n, 4, uniforms=u[:, :4], cuda_graph=True)
            graph_s, _ = _timed(lambda: model.sample(n, wave_steps, uniforms=u, cuda_graph=True))
            graph_per_step = graph_s / wave_steps
        # Naive at a full window: the network over the last `field` inputs, last output kept.
        context = torch.randint(0, 256, (n, field), device=DEVICE)
        model.next_params(context[:, -512:])  # warm-up
        naive_s, _ = _timed(lambda: [model.next_params(context) for _ in range(naive_steps)])
        naive_per_step = naive_s / naive_steps
        # The naive sampler itself, on the first steps: it must draw what the cached one drew.
        check = model.sample(n, 16, uniforms=u[:, :16], method="naive")
        rows.append({
            "model": "wavenet", "batch": n, "cached_samples_per_s": n / cached_per_step,
            "step_ops_samples_per_s": n / steps_per_step,
            "cuda_graph_samples_per_s": None if graph_per_step is None else n / graph_per_step,
            "real_time_factor_cuda_graph": graph_per_step * SAMPLE_RATE if graph_per_step and n == 1 else None,
            "triton_decoder_samples_per_s": None if triton_per_step is None else n / triton_per_step,
            "real_time_factor_triton_decoder": triton_per_step * SAMPLE_RATE if triton_per_step and n == 1 else None,
            "triton_decoder_equal_fused": None if triton_per_step is None else bool(torch.equal(triton_codes, codes)),
            "cluster_decoder": cluster_rates,
            "naive_samples_per_s": n / naive_per_step, "speedup": naive_per_step / cached_per_step,
            "real_time_factor": cached_per_step * SAMPLE_RATE if n == 1 else None,
            "real_time_factor_step_ops": steps_per_step * SAMPLE_RATE if n == 1 else None,
            "step_ops_equal_fused": bool(torch.equal(step_codes, codes[:, :wave_steps // 4])),
            "step_ops_vs_fused_first_difference": _first_difference(model, step_codes, codes, u),
            "cached_steps_timed": wave_steps, "naive_steps_timed": naive_steps, "receptive_field": field,
            "naive_equals_cached_on_first_16": bool(torch.equal(check, codes[:, :16])),
        })
        print(rows[-1], flush=True)
    return rows


@contextlib.contextmanager
def _environment(name: str, value: str):
    """The environment variable ``name`` set to ``value`` inside the block."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


@contextlib.contextmanager
def _triton_decoder():
    """WaveNet.sample's fused path on the persistent Triton decoder instead of the CUDA one."""
    from fastgen.models import wavenet as wavenet_module
    from fastgen.triton_kernels import wavenet_decoder

    def triton_generate(states, first_input, uniforms, embedding, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip,
                        dilations, w_hidden, b_hidden, w_out, b_out, *, cond=None, w_cond=None, start=0):
        return wavenet_decoder.wavenet_generate(
            states, first_input, uniforms, embedding, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip,
            w_cond or [None] * len(states), dilations, w_hidden, b_hidden, w_out, b_out, cond, start)

    original = wavenet_module.wavenet_generate
    wavenet_module.wavenet_generate = triton_generate
    try:
        yield
    finally:
        wavenet_module.wavenet_generate = original


@torch.no_grad()
def _first_difference(model: WaveNet, step_codes: torch.Tensor, fused_codes: torch.Tensor,
                      u: torch.Tensor) -> dict | None:
    """Where the step-op and fused samples first part (None if never), and how close that draw
    was to a tie: the distance of its uniform from the nearest boundary of the categorical CDF,
    computed in float64 on the shared prefix. Float32 sums in another order move a boundary by
    about 1e-7, so a draw that close can go either way (after which the sequences part)."""
    differ = step_codes != fused_codes[:, :step_codes.shape[1]]
    if not differ.any():
        return None
    row = int(differ.any(1).nonzero()[0])
    step = int(differ[row].nonzero()[0])
    model64 = copy.deepcopy(model).double()
    logits = model64.next_params(step_codes[row:row + 1, :step]).flatten()
    cdf = torch.softmax(logits, 0).cumsum(0)
    return {"row": row, "step": step, "tie_distance": float((cdf - float(u[row, step])).abs().min())}


@torch.no_grad()
def _first_pixel_difference(model: PixelCNN, step_images: torch.Tensor, fused_images: torch.Tensor,
                            u: torch.Tensor) -> dict | None:
    """Where the step-op and fused-row images first part (None if never: raster order, first image),
    and how close that draw was to a tie (see _first_difference), in float64 on the shared prefix."""
    differ = (step_images != fused_images).flatten(1)
    if not differ.any():
        return None
    image = int(differ.any(1).nonzero()[0])
    flat = int(differ[image].nonzero()[0])
    c, i, j = (int(v) for v in torch.unravel_index(torch.tensor(flat), step_images.shape[1:]))
    model64 = copy.deepcopy(model).double()
    prefix = step_images[image:image + 1].double().clone()
    prefix.flatten(1)[:, flat:] = 0  # the pixel's conditional sees only what comes before it
    params = model64._params(prefix, None)[0, c, i, j]
    cdf = torch.softmax(params, 0).cumsum(0)
    return {"image": image, "pixel": [c, i, j], "tie_distance": float((cdf - float(u[image, c, i, j])).abs().min())}


@torch.no_grad()
def pixelcnn_rows(batches: tuple[int, ...], naive_pixels: int) -> list[dict]:
    torch.manual_seed(0)
    model = PixelCNN((1, 28, 28), levels=256, channels=64, num_layers=15).to(DEVICE).eval()
    pixels = 28 * 28
    rows = []
    for n in batches:
        u = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(n)).to(DEVICE)
        # Best of 2 each (same uniforms, same images), after a warm-up image of each sampler.
        model.sample(1, uniforms=u[:1])
        model.sample(1, uniforms=u[:1], fused=False)
        cached_s, images = min((_timed(lambda: model.sample(n, uniforms=u)) for _ in range(2)), key=lambda r: r[0])
        steps_s, step_images = min((_timed(lambda: model.sample(n, uniforms=u, fused=False)) for _ in range(2)),
                                   key=lambda r: r[0])
        x = torch.zeros(n, 1, 28, 28, device=DEVICE)
        model._params(x, None)  # warm-up

        def naive_prefix():
            for p in range(naive_pixels):
                i, j = divmod(p, 28)
                params = model._params(x, None)[:, :, i, j]
                x[:, :, i, j] = model._draw(params, u[:, :, i, j])

        naive_s, _ = _timed(naive_prefix)
        naive_image_s = naive_s / naive_pixels * pixels
        done = x.flatten(2)[:, :, :naive_pixels]
        rows.append({
            "model": "pixelcnn", "batch": n, "cached_images_per_s": n / cached_s,
            "step_ops_images_per_s": n / steps_s, "step_ops_equal_fused": bool(torch.equal(step_images, images)),
            "step_ops_vs_fused_first_difference": _first_pixel_difference(model, step_images, images, u),
            "naive_images_per_s": n / naive_image_s, "speedup": naive_image_s / cached_s,
            "cached_seconds": cached_s, "naive_seconds_extrapolated": naive_image_s,
            "naive_pixels_timed": naive_pixels,
            "naive_equals_cached_on_timed_pixels": bool(torch.equal(done, images.flatten(2)[:, :, :naive_pixels])),
        })
        print(rows[-1], flush=True)
    return rows


def _agreement(r: dict, naive_key: str, where: str) -> str:
    """The 'naive = step ops = fused' cell: True/False, and where (``where`` formatted with the
    difference's fields) and why the step-op and fused samples part, if they do."""
    same = str(r[naive_key] and r["step_ops_equal_fused"])
    d = r.get("step_ops_vs_fused_first_difference")
    if d:
        same += (f" ({where.format(**d)} on: a float32 near-tie, uniform {d['tie_distance']:.1e} "
                 "from a CDF boundary)")
    return same


def _markdown(wave: list[dict], pixel: list[dict], env: dict) -> str:
    lines = [
        "# Autoregressive sampling: naive vs cached", "",
        f"{env['date']}, {env['machine']}, torch {env['torch']}, fastgen {env['fastgen']}, "
        f"{env['threads']} threads, device {env['device']}. Command: `python benchmarks/autoregressive_sampling.py"
        f"{' --device ' + env['device'] if env['device'] != 'cpu' else ''}`."
        + ("" if env.get("cpu_steal_share") is None else
           f" CPU time taken by other guests of the host during the run (steal): {env['cpu_steal_share']:.0%}."), "",
        "## WaveNet (2 x 15 layers, residual 64 / gate 128 / skip 256, receptive field 65,535)", "",
        "| batch | naive samples/s | cached, step ops samples/s | cached, fused decoder samples/s "
        "| fused / naive | real-time factor (step ops, fused) | naive = step ops = fused |",
        "|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in wave:
        rtf = (f"{r['real_time_factor_step_ops']:.2f}, {r['real_time_factor']:.2f}"
               if r["real_time_factor"] is not None else "-")
        same = _agreement(r, "naive_equals_cached_on_first_16", "sample {row} from step {step}")
        lines.append(f"| {r['batch']} | {r['naive_samples_per_s']:.3g} | {r['step_ops_samples_per_s']:.4g} | "
                     f"{r['cached_samples_per_s']:.4g} | {r['speedup']:.0f}x | {rtf} | {same} |")
    for r in wave:
        if r.get("triton_decoder_samples_per_s"):
            rtf = r["real_time_factor_triton_decoder"]
            lines.append(f"\nBatch {r['batch']}, the fused column is the CUDA decoder; the persistent Triton decoder: "
                         f"{r['triton_decoder_samples_per_s']:.4g} samples/s" + (f", real-time factor {rtf:.3f}" if rtf
                                                                                  else "")
                         + f", same codes as the CUDA decoder: {r['triton_decoder_equal_fused']}")
    for r in wave:
        for blocks, c in (r.get("cluster_decoder") or {}).items():
            rtf = c["real_time_factor"]
            lines.append(f"\nBatch {r['batch']}, the CUDA decoder over clusters of {blocks} blocks "
                         f"(FASTGEN_DECODER_CLUSTER={blocks}): {c['samples_per_s']:.4g} samples/s"
                         + (f", real-time factor {rtf:.3f}" if rtf else "")
                         + f", same codes as one block per sample: {c['equal_fused']}")
    for r in wave:
        if r.get("cuda_graph_samples_per_s"):
            rtf = r["real_time_factor_cuda_graph"]
            lines.append(f"\nBatch {r['batch']}, step loop in a CUDA graph: {r['cuda_graph_samples_per_s']:.4g} samples/s"
                         + (f", real-time factor {rtf:.3f}" if rtf else ""))
    lines += ["", "Targets (not asserted): cached >= 100x naive on CPU; real-time factor <= 1.0 at batch 1 "
              "on 2 CPU cores; <= 0.25 on an H100.", "",
              "## PixelCNN (15 gated layers, 64 channels, 28x28, 256 levels)", "",
              "| batch | naive images/s | cached, step ops images/s | cached, fused rows images/s | fused / naive "
              "| naive = step ops = fused |",
              "|---:|---:|---:|---:|---:|:---:|"]
    for r in pixel:
        same = _agreement(r, "naive_equals_cached_on_timed_pixels", "image {image} from pixel {pixel}")
        lines.append(f"| {r['batch']} | {r['naive_images_per_s']:.3g} | {r['step_ops_images_per_s']:.3g} | "
                     f"{r['cached_images_per_s']:.3g} | {r['speedup']:.0f}x | {same} |")
    naive_pixels = pixel[0]["naive_pixels_timed"] if pixel else 0
    naive_steps = wave[0]["naive_steps_timed"] if wave else 0
    lines += ["", f"Naive PixelCNN time per image = time of {naive_pixels} timed pixel steps / {naive_pixels} x 784 "
              "(each step reruns the whole network: the same work at every pixel). Naive WaveNet: "
              f"{naive_steps} full-window forward passes timed per batch. 'naive = cached': the naive sampler, run "
              "on the same uniforms for the timed prefix, drew exactly the values of the cached run.",
              "", "Target (not asserted): PixelCNN cached >= 100x naive at batch 16 on CPU.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small step counts (a smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (on cuda the fused WaveNet decoder is the "
                        "persistent CUDA kernel where built, also timed against the Triton one, else Triton)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/autoregressive_sampling"),
                        help="results folder (default: ./bench-results/autoregressive_sampling, "
                        "git-ignored; pass a benchmarks/results/... folder to publish)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    ticks_before = cpu_ticks()
    wave = wavenet_rows((1, 16), wave_steps=200 if args.quick else 8000, naive_steps=1 if args.quick else 3)
    pixel = pixelcnn_rows((1, 16) if args.quick else (1, 16, 128), naive_pixels=2 if args.quick else 4)
    machine = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else f"{platform.machine()} CPU"
    env = {"date": datetime.date.today().isoformat(), "machine": machine, "device": str(DEVICE),
           "torch": torch.__version__, "fastgen": fastgen.__version__, "threads": torch.get_num_threads(),
           "cpu_steal_share": steal_share(ticks_before, cpu_ticks())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"environment": env, "wavenet": wave, "pixelcnn": pixel},
                                                      indent=2) + "\n")
    report = _markdown(wave, pixel, env)
    (args.out / "results.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
