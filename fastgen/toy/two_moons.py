"""RealNVP on the 2-D two-moons density: data, training, exact test log-likelihood, density plot.

Data. ``sklearn.datasets.make_moons(n_train + n_test, noise=0.05, random_state=data_seed)``
(shuffled; reproduced bit for bit in numpy, see :func:`moons`): the first ``n_train`` points
for training, the rest for test. The points are *not* standardised: they stay in make_moons'
own coordinates (x in about [-1.1, 2.1], y in about [-0.6, 1.1]), so every log-likelihood
here is the density of those points, in nats per 2-D point (not per dimension).

Reference point. The test log-likelihood of one full-covariance Gaussian fitted (maximum
likelihood) to the training points: a flow that has learnt the two moons beats it by more
than a nat per point.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastgen.models import RealNVP
from fastgen.models._conv import check_positive_int

DEFAULT_STEPS = 2000
QUICK_STEPS = 300
DEFAULT_OUT = Path("runs/two-moons")
PNG_NAME = "two_moons_density.png"

# Plot window (make_moons coordinates) and resolution of the density panel.
XLIM, YLIM = (-1.6, 2.6), (-1.1, 1.6)
GRID = 200
PLOT_POINTS = 2000


def _check_number(value: object, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive; got {value!r}")
    if not positive and value < 0:
        raise ValueError(f"{name} must be >= 0; got {value!r}")
    return float(value)


def _check_seed(value: object, name: str) -> int:
    return check_positive_int(value, name, minimum=0)


# ------------------------------------------------------------------------------------ data
def moons(n: int, noise: float, seed: int) -> np.ndarray:
    """``sklearn.datasets.make_moons(n, noise=noise, random_state=seed)[0]``, in numpy alone.

    The same definition and the same random stream (a ``RandomState(seed)`` shuffles the
    points, then draws the noise), so the points equal sklearn's; the tests check it. Written
    out because importing sklearn takes about 2 s, most of ``--quick``.
    """
    n_out, n_in = n // 2, n - n // 2
    rng = np.random.RandomState(seed)
    outer = np.linspace(0, np.pi, n_out)
    inner = np.linspace(0, np.pi, n_in)
    points = np.vstack([np.append(np.cos(outer), 1 - np.cos(inner)),
                        np.append(np.sin(outer), 1 - np.sin(inner) - 0.5)]).T
    order = np.arange(n)
    rng.shuffle(order)
    points = points[order]
    return points + rng.normal(scale=noise, size=points.shape)


def make_two_moons(n_train: int = 10_000, n_test: int = 5_000, *, noise: float = 0.05,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-moons points as float32 tensors ``(train (n_train, 2), test (n_test, 2))``.

    One ``make_moons`` draw of ``n_train + n_test`` points with ``random_state=seed`` (see
    :func:`moons`), split in order; unstandardised. The same arguments give the same tensors.
    """
    n_train = check_positive_int(n_train, "n_train", minimum=3)  # a 2-D covariance needs 3 points
    n_test = check_positive_int(n_test, "n_test")
    noise = _check_number(noise, "noise")
    seed = _check_seed(seed, "seed")
    if seed >= 2**32:
        raise ValueError(f"seed must be < 2**32 (numpy RandomState); got {seed}")
    points = torch.from_numpy(moons(n_train + n_test, noise, seed).astype(np.float32))
    return points[:n_train].clone(), points[n_train:].clone()


def gaussian_baseline(train: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
    """Mean log-likelihood (nats per point) of a full-covariance Gaussian fitted to ``train``
    by maximum likelihood, on ``train`` and on ``test``."""
    train64, test64 = train.double(), test.double()
    mean = train64.mean(0)
    cov = torch.cov(train64.T, correction=0)
    gauss = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    return {"train": float(gauss.log_prob(train64).mean()), "test": float(gauss.log_prob(test64).mean())}


# ------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def mean_log_likelihood(model: RealNVP, points: torch.Tensor, *, batch_size: int = 8192) -> float:
    """Exact mean ``log_prob`` (nats per point) of ``points`` under ``model`` (in eval mode)."""
    device = next(model.parameters()).device
    total = 0.0
    for chunk in points.split(batch_size):
        total += float(model.log_prob(chunk.to(device)).double().sum())
    return total / points.shape[0]


@contextmanager
def _threads(n: int | None):
    # The model is tiny (2-D, 64-wide MLPs): intra-op threads only add synchronisation. Measured
    # on a loaded 2-core machine: 7 ms/step on 1 thread, 6-550 ms/step on 2 (OpenMP waits on a
    # core another process holds). So a run uses one thread unless told otherwise.
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------ training
def train_two_moons(*, steps: int = DEFAULT_STEPS, batch_size: int = 256, lr: float = 3e-3,
                    num_layers: int = 8, hidden_channels: int = 64, n_train: int = 10_000,
                    n_test: int = 5_000, noise: float = 0.05, seed: int = 0, data_seed: int = 0,
                    out: str | Path | None = DEFAULT_OUT, device: str | torch.device = "cpu",
                    progress: bool | None = None, num_threads: int | None = 1) -> dict[str, Any]:
    """Train ``RealNVP((2,), None, ...)`` on two moons by maximum likelihood and evaluate it.

    Adam with a cosine learning-rate decay to 0, minibatches drawn with replacement. After
    training, the exact mean log-likelihood (nats per point) of the full train and test sets,
    and the same for a fitted full-covariance Gaussian (the reference point).

    Args:
        steps: optimiser steps (default 2000: about 15 s on one CPU core).
        batch_size: points per step (<= n_train).
        lr: peak Adam learning rate.
        num_layers, hidden_channels: RealNVP couplings and conditioner width.
        n_train, n_test, noise, data_seed: the data (see :func:`make_two_moons`); the test set
            depends only on these, not on ``seed``.
        seed: model initialisation, minibatches and plotted samples.
        out: folder for the PNG (created); None writes no PNG.
        device: where to train ("cpu" or "cuda").
        progress: tqdm bar on stderr; None shows it only when stderr is a terminal.
        num_threads: torch intra-op threads during the run (restored after); None leaves them.

    Returns:
        dict: ``test_log_likelihood``, ``train_log_likelihood``, ``gaussian_test_log_likelihood``,
        ``gaussian_train_log_likelihood``, ``gain_over_gaussian`` (test, flow minus Gaussian),
        ``final_loss``, ``steps``, ``batch_size``, ``n_train``, ``n_test``, ``seconds`` (training
        only), ``total_seconds`` (including evaluation and plot) and ``png`` (path or None).
    """
    started = time.perf_counter()
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = _check_number(lr, "lr", positive=True)
    num_layers = check_positive_int(num_layers, "num_layers")
    hidden_channels = check_positive_int(hidden_channels, "hidden_channels")
    seed = _check_seed(seed, "seed")
    data_seed = _check_seed(data_seed, "data_seed")
    if num_threads is not None:
        num_threads = check_positive_int(num_threads, "num_threads")
    if progress is not None and not isinstance(progress, bool):
        raise ValueError(f"progress must be True, False or None; got {progress!r}")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: unknown device {device!r} (use cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device}: CUDA is not available here")
    png = None
    if out is not None:
        png = Path(out) / PNG_NAME
        if Path(out).exists() and not Path(out).is_dir():
            raise ValueError(f"out {out}: exists and is not a directory")
        Path(out).mkdir(parents=True, exist_ok=True)  # fail now, not after training
    try:
        train, test = make_two_moons(n_train, n_test, noise=noise, seed=data_seed)
    except ValueError as error:  # name the argument as the caller wrote it
        raise ValueError(str(error).replace("seed", "data_seed", 1) if str(error).startswith("seed")
                         else str(error)) from None
    if batch_size > train.shape[0]:
        raise ValueError(f"batch_size ({batch_size}) must be <= n_train ({train.shape[0]})")

    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        model = RealNVP((2,), None, num_layers=num_layers, hidden_channels=hidden_channels).to(device)
    train_dev = train.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    batches = torch.Generator().manual_seed(seed)

    with _threads(num_threads):  # the whole run: evaluation and plot are tiny ops too
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="two moons", unit="step", file=sys.stderr, dynamic_ncols=True,
                   mininterval=0.5, leave=False, disable=None if progress is None else not progress)
        model.train()
        t0 = time.perf_counter()
        loss_value = float("nan")
        with bar:
            for step in range(steps):
                index = torch.randint(0, train.shape[0], (batch_size,), generator=batches)
                loss = -model.log_prob(train_dev[index.to(device)]).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                if step % 50 == 0 or step == steps - 1:
                    loss_value = float(loss.detach())  # a host sync: only every 50 steps
                    if not math.isfinite(loss_value):
                        raise FloatingPointError(f"the loss became {loss_value} at step {step}; "
                                                 f"try a lower lr (got {lr})")
                    bar.set_postfix(nll=f"{loss_value:.3f}", refresh=False)
                bar.update(1)
        seconds = time.perf_counter() - t0

        model.eval()
        baseline = gaussian_baseline(train, test)
        results: dict[str, Any] = {
            "test_log_likelihood": mean_log_likelihood(model, test),
            "train_log_likelihood": mean_log_likelihood(model, train),
            "gaussian_test_log_likelihood": baseline["test"],
            "gaussian_train_log_likelihood": baseline["train"],
        }
        results["gain_over_gaussian"] = results["test_log_likelihood"] - baseline["test"]
        results.update(final_loss=loss_value, steps=steps, batch_size=batch_size, n_train=train.shape[0],
                       n_test=test.shape[0], seconds=seconds)
        if png is not None:
            generator = torch.Generator(device=device).manual_seed(seed)
            samples = model.sample(PLOT_POINTS, generator=generator).float().cpu()
            plot_two_moons(model, train, samples, png, results)
        results["png"] = png
        results["total_seconds"] = time.perf_counter() - started
        return results


# ------------------------------------------------------------------------------------ plot
@torch.no_grad()
def density_grid(model: RealNVP, *, xlim=XLIM, ylim=YLIM, size: int = GRID) -> np.ndarray:
    """``exp(log_prob)`` on a ``size`` x ``size`` grid over ``xlim`` x ``ylim`` (rows: y)."""
    device = next(model.parameters()).device
    xs = torch.linspace(*xlim, size)
    ys = torch.linspace(*ylim, size)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    logp = torch.cat([model.log_prob(chunk.to(device)).float().cpu() for chunk in points.split(16384)])
    return logp.exp().reshape(size, size).numpy()


def plot_two_moons(model: RealNVP, train: torch.Tensor, samples: torch.Tensor, path: str | Path,
                   figures: dict[str, Any]) -> Path:
    """Write the three-panel PNG: training data, the model's density on a grid, model samples."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    density = density_grid(model)
    data = train[:PLOT_POINTS].numpy()
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.6), dpi=100)
    panels = [(axes[0], f"training data ({PLOT_POINTS} of {train.shape[0]})"),
              (axes[1], "model density exp(log p(x))"),
              (axes[2], f"model samples ({samples.shape[0]})")]
    axes[0].scatter(data[:, 0], data[:, 1], s=2, alpha=0.5, color="tab:blue", linewidths=0)
    axes[1].imshow(density, origin="lower", extent=(*XLIM, *YLIM), cmap="viridis", aspect="equal",
                   interpolation="bilinear")
    s = samples.numpy()
    axes[2].scatter(s[:, 0], s[:, 1], s=2, alpha=0.5, color="tab:orange", linewidths=0)
    for ax, title in panels:
        ax.set_title(title, fontsize=10)
        ax.set_xlim(*XLIM)
        ax.set_ylim(*YLIM)
        ax.set_aspect("equal")
    fig.suptitle(f"RealNVP on two moons ({figures['steps']} steps): test log-likelihood "
                 f"{figures['test_log_likelihood']:.3f} nats/point "
                 f"(full-covariance Gaussian: {figures['gaussian_test_log_likelihood']:.3f})", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
