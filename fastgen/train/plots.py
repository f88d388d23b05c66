"""The images a training run writes: sample grids and loss curves (PNG)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def image_grid(images: torch.Tensor, *, nrow: int | None = None, padding: int = 1, scale: int = 1) -> np.ndarray:
    """Tile (N, C, H, W) images in [0, 1] into one uint8 array (rows*H', cols*W', C)."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
    n, channels, height, width = images.shape
    cols = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if scale > 1:  # nearest-neighbour upscaling: 8x8 digits are unreadable at 1:1
        pixels = pixels.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        height, width = height * scale, width * scale
    grid = torch.full((channels, rows * (height + padding) + padding, cols * (width + padding) + padding), 128,
                      dtype=torch.uint8)
    for index in range(n):
        r, c = divmod(index, cols)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        grid[:, top:top + height, left:left + width] = pixels[index]
    return grid.permute(1, 2, 0).numpy()


def save_image_grid(images: torch.Tensor, path: str | Path, *, nrow: int | None = None) -> Path:
    """Write ``images`` (N, C, H, W) in [0, 1] as one PNG; small images are scaled up."""
    from PIL import Image

    scale = max(1, 64 // max(images.shape[-2:]))
    array = image_grid(images, nrow=nrow, scale=scale, padding=max(1, scale // 2))
    mode = "L" if array.shape[2] == 1 else "RGB"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[:, :, 0] if mode == "L" else array, mode=mode).save(path)
    return path


def save_loss_curves(steps: list[dict], path: str | Path, *, keys: list[str] | None = None) -> Path:
    """Plot the per-step losses of a run (one line per key) against the global step."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    keys = keys or [k for k in steps[0] if k.endswith("loss")] if steps else []
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for key in keys:
        xs = [s["global_step"] for s in steps if key in s]
        ys = [s[key] for s in steps if key in s]
        ax.plot(xs, ys, label=key, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if keys:
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
