"""Glow on the embedded digits for 2,000 steps under bfloat16 autocast: every loss and every
gradient must stay finite (the issue's stability check; the NaNs users of other flow libraries
report come from unbounded scales and from ActNorm/1x1-convolution numerics in low precision).

    python benchmarks/glow_bf16_stability.py [--steps 2000] [--out PATH]

The flow path stays in float32 (fastgen's ops take the conditioners' bf16 outputs and compute in
float32); the conditioners run in bf16. Prints and writes a short markdown report.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import time
from pathlib import Path

import torch

import fastgen
from fastgen.data import load_images
from fastgen.models import Glow
from fastgen.models._flow import standard_normal_log_density


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench-results/glow_bf16_stability.md"),
                        help="report file (default: ./bench-results/glow_bf16_stability.md, git-ignored)")
    parser.add_argument("--backward-inside-autocast", action="store_true",
                        help="also run the loss and its backward inside the autocast region")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_images("digits")
    model = Glow(tuple(data.shape), levels=data.levels)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    dims, levels = data.dims, data.levels
    generator = torch.Generator().manual_seed(0)
    bad_losses = bad_grads = 0
    losses = []
    start = time.perf_counter()
    for step in range(args.steps):
        idx = torch.randint(0, len(data.train), (args.batch_size,), generator=generator)
        x = (data.train[idx].float() + torch.rand(data.train[idx].shape, generator=generator)) / levels
        for group in opt.param_groups:
            group["lr"] = 1e-3 * min(1.0, (step + 1) / 100)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.backward_inside_autocast):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                latents, logdet = model(x)
            log_p = sum(standard_normal_log_density(z.float()) for z in latents) + logdet.float()
            loss = ((-log_p + dims * math.log(levels)) / (dims * math.log(2))).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
        bad_losses += int(not torch.isfinite(loss))
        bad_grads += int(not all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None))
        opt.step()
        losses.append(float(loss))
        if (step + 1) % 250 == 0:
            print(f"step {step + 1}: bits/dim {sum(losses[-250:]) / 250:.4f}", flush=True)
    seconds = time.perf_counter() - start
    params_finite = all(torch.isfinite(p).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        samples = model.sample(256, generator=torch.Generator().manual_seed(1))
    lines = [
        "# Glow bf16-autocast stability on the embedded digits",
        "",
        f"date {datetime.date.today()}, fastgen {fastgen.__version__}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {args.threads} threads",
        "",
        "Command: `python benchmarks/glow_bf16_stability.py"
        + (" --backward-inside-autocast`: the loss and its backward also inside the autocast region"
           if args.backward_inside_autocast else "`: the forward under autocast, the backward outside"),
        "",
        "| figure | value |",
        "|---|---|",
        f"| steps (batch {args.batch_size}, Adam 1e-3, bf16 autocast) | {args.steps} |",
        f"| steps with a non-finite loss | {bad_losses} |",
        f"| steps with a non-finite gradient | {bad_grads} |",
        f"| parameters finite at the end | {params_finite} |",
        f"| training bits/dim, first / last 100 steps | {sum(losses[:100]) / 100:.4f} / {sum(losses[-100:]) / 100:.4f} |",
        f"| 256 samples finite | {bool(torch.isfinite(samples).all())} |",
        f"| seconds | {seconds:.1f} |",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    return 0 if bad_losses == bad_grads == 0 and params_finite else 1


if __name__ == "__main__":
    raise SystemExit(main())
