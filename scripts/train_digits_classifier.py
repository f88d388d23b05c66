"""Train the digits classifier once and write the weights shipped in ``fastgen/metrics``.

Deterministic, bit for bit (seed 0, one CPU thread, the fixed stratified split of
``fastgen.metrics.classifier.digits_train_test_split``); takes about 10 s.
Writes ``digits_classifier.pt`` (float32 state_dict) and ``digits_classifier.json`` (accuracy,
split, seed, date, torch version). Run from the repository root::

    python scripts/train_digits_classifier.py [--epochs 40] [--out-dir fastgen/metrics]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # use this checkout's fastgen
from fastgen.metrics.classifier import DIGITS_LEVELS, DigitClassifier, digits_train_test_split

SEED = 0


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """±1 pixel shifts (zero fill) and random level noise on float images (N, 1, 8, 8) in [0, 1].

    Generated samples are blurrier, noisier and less centred than real digits; training on such
    perturbations keeps the classifier's predictions and features stable on them.
    """
    n = x.shape[0]
    padded = F.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(8))[:, None, :, None].expand(n, 1, 8, 10)
    shifted = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(8))[:, None, None, :].expand(n, 1, 8, 8)
    shifted = shifted.gather(3, cols)
    # Noise of up to ~1 level on a random half of the images, then back into [0, 1].
    noisy = torch.rand(n, 1, 1, 1, generator=gen) < 0.5
    noise = torch.randn(shifted.shape, generator=gen) / (DIGITS_LEVELS - 1)
    return (shifted + noisy * noise).clamp(0.0, 1.0)


def accuracy(model: DigitClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).double().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument(
        "--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "fastgen" / "metrics"
    )
    args = ap.parse_args()

    # One thread: the result does not depend on the machine's core count (reduction order), and a
    # busy machine does not slow it down (2 threads took 85 s instead of 6 s under load, 1 takes 10 s).
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(SEED)
    x_tr, y_tr, x_te, y_te = digits_train_test_split()
    x_tr = x_tr.float() / (DIGITS_LEVELS - 1)
    x_te = x_te.float() / (DIGITS_LEVELS - 1)

    model = DigitClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * ((len(x_tr) + args.batch_size - 1) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(x_tr), args.batch_size):
            idx = perm[i : i + args.batch_size]
            loss = F.cross_entropy(model(augment(x_tr[idx], gen)), y_tr[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  test acc {accuracy(model, x_te, y_te):.4f}")
    seconds = time.perf_counter() - t0

    test_acc = accuracy(model, x_te, y_te)
    test_acc_aug = accuracy(model, augment(x_te, torch.Generator().manual_seed(SEED + 1)), y_te)
    n_correct = round(test_acc * len(y_te))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    weights = args.out_dir / "digits_classifier.pt"
    torch.save({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, weights)
    info = {
        "test_accuracy": test_acc,
        "test_correct": n_correct,
        "test_accuracy_augmented": test_acc_aug,
        "split": {
            "data": "sklearn.datasets.load_digits (1797 images, 1x8x8, levels 0..16, inputs level/16)",
            "method": "fastgen.data.load_images(\"digits\") (seed 0, test_fraction 0.2, stratified)",
            "n_train": len(y_tr),
            "n_test": len(y_te),
        },
        "seed": SEED,
        "threads": 1,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "augmentation": "random +-1 pixel shifts (zero fill); N(0, 1/16) level noise on half the images",
        "train_seconds": round(seconds, 1),
        "date": datetime.date.today().isoformat(),
        "torch_version": torch.__version__,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "weights_bytes": weights.stat().st_size,
    }
    (args.out_dir / "digits_classifier.json").write_text(json.dumps(info, indent=2) + "\n")
    print(
        f"test accuracy {test_acc:.4f} ({n_correct}/{len(y_te)}), augmented {test_acc_aug:.4f}, "
        f"{seconds:.1f} s, {info['weights_bytes']} bytes -> {weights}"
    )


if __name__ == "__main__":
    main()
