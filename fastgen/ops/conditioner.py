"""Glow's coupling conditioner (conv -> ReLU -> conv 1x1 -> ReLU -> conv) as one op.

A Glow coupling runs this network on small images (4x4 and 2x2 for 8x8 digits), where three
library convolutions and their backwards cost more in per-call setup than in arithmetic; the
CPU kernel does each product as one GEMM over all positions (see
``csrc/cpu/conv_conditioner_cpu.cpp``). It runs for inputs of up to ``KERNEL_MAX_CHANNELS``
channels, where it is measured faster; wider inputs, and CUDA tensors, run the reference (oneDNN
or cuDNN convolutions, the fast path there). float16/bfloat16 are computed in float32 and the
output rounded once, as the flow ops do.
"""

from __future__ import annotations

import torch

from fastgen import reference
from fastgen.ops._autocast import autocast_inputs
from fastgen.ops._checks import check_bias, check_generator, check_rank, check_same
from fastgen.ops._dispatch import use_kernel
from fastgen.ops.gaussian import draw_seed

# The dtypes of the CPU kernel.
KERNEL_DTYPES = (torch.float32, torch.float64)
# The most input channels the CPU kernel takes; wider inputs run the reference (oneDNN). Measured
# forward+backward on 2 cores, batch 64 (16 at 32x32), in interleaved rounds, kernel / eager:
# C_in 1-6: 1.2-2.3x from 2x2 to 32x32 images and 64 to 512 hidden channels; C_in 12: 0.93x at
# 8x8, 1.13x with 512 hidden; C_in 24: 0.80-1.02x. (Its gain is the six library convolutions'
# per-call cost; oneDNN's direct convolutions catch up as the channel count grows.)
KERNEL_MAX_CHANNELS = 8


def _check_weight(w: object, name: str, x: torch.Tensor, in_channels: int, layout: str, *, one_by_one: bool
                  ) -> torch.Tensor:
    w = check_rank(w, name, 4, layout)
    check_same(w, name, x)
    if w.shape[0] < 1 or w.shape[1] != in_channels:
        raise ValueError(f"{name} must have shape {layout} with {in_channels} input channels (dim 1), "
                         f"got {tuple(w.shape)}")
    if one_by_one and tuple(w.shape[2:]) != (1, 1):
        raise ValueError(f"{name} must be a 1x1 kernel {layout}, got {tuple(w.shape)}")
    if not one_by_one and (w.shape[2] != w.shape[3] or w.shape[2] % 2 == 0):
        raise ValueError(f"{name} must have a square, odd kernel (k, k) for 'same' padding, got {tuple(w.shape)}")
    return w


def check_conv_conditioner(x: object, w1: object, b1: object, w2: object, b2: object, w3: object, b3: object
                           ) -> None:
    """Raise an error naming the argument if the shapes, dtypes or devices do not fit."""
    x = check_rank(x, "x", 4, "(N, C_in, H, W)")
    w1 = _check_weight(w1, "w1", x, x.shape[1], "(H1, C_in, k1, k1)", one_by_one=False)
    w2 = _check_weight(w2, "w2", x, w1.shape[0], "(H2, H1, 1, 1)", one_by_one=True)
    w3 = _check_weight(w3, "w3", x, w2.shape[0], "(C_out, H2, k3, k3)", one_by_one=False)
    for bias, weight, name in ((b1, w1, "b1"), (b2, w2, "b2"), (b3, w3, "b3")):
        check_bias(bias, weight.shape[0], x, name)


def kernel_runs(x: torch.Tensor) -> bool:
    """Whether :func:`conv_conditioner` runs the compiled kernel for ``x`` (else the reference)."""
    return use_kernel("conv_conditioner", x) and x.shape[1] <= KERNEL_MAX_CHANNELS


def _check_dropout(dropout: object) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}")
    return float(dropout)


@torch._disable_dynamo  # eager, as fastgen.ops.gaussian._stream_noise (the Philox stream)
def _reference_dropout_masks(seed: torch.Tensor, x: torch.Tensor, hidden: tuple[int, int], dropout: float
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    positions = x.shape[0] * x.shape[2] * x.shape[3]
    return reference.conditioner_dropout_masks(int(seed), positions, hidden, dropout, x.dtype, x.device)


def conv_conditioner(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor | None, w2: torch.Tensor,
                     b2: torch.Tensor | None, w3: torch.Tensor, b3: torch.Tensor | None, *, dropout: float = 0.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Glow's coupling network in one op: conv k1 x k1 -> ReLU -> conv 1x1 -> ReLU -> conv k3 x k3.

    Equal to ``conv2d(relu(conv2d(relu(conv2d(x, w1, b1, padding=k1 // 2)), w2, b2)), w3, b3,
    padding=k3 // 2)``, forward and backward; with ``dropout > 0``, inverted dropout after each
    ReLU (as ``nn.Dropout`` in training mode).

    Parameters
    ----------
    x : Tensor (N, C_in, H, W)
        float32/float64 (float16/bfloat16 computed in float32). May be a channel slice of a
        larger tensor (read in place by the CPU kernel). The CPU kernel runs when
        C_in <= ``KERNEL_MAX_CHANNELS`` (8), else the reference.
    w1, b1 : Tensor (H1, C_in, k1, k1), Tensor (H1,) or None
        First convolution (odd k1, "same" padding).
    w2, b2 : Tensor (H2, H1, 1, 1), Tensor (H2,) or None
        The 1x1 convolution.
    w3, b3 : Tensor (C_out, H2, k3, k3), Tensor (C_out,) or None
        Last convolution (odd k3, "same" padding).
    dropout : float in [0, 1)
        Probability of zeroing each hidden unit after each ReLU (kept units scaled by
        1 / (1 - dropout)); 0 (default) for none. The masks come from fastgen's counter-based
        stream keyed by one seed per call (drawn inside the kernel, and again in the backward,
        never stored): :func:`fastgen.reference.conditioner_dropout_masks` gives them. Where the
        reference runs, it builds those masks on the host (a slow path; ``ConvConditioner`` uses
        ``nn.Dropout`` there instead).
    generator : torch.Generator, optional
        Source of that seed (default: torch's generator of x's device).

    Returns
    -------
    Tensor (N, C_out, H, W), of x's dtype.
    """
    x, w1, b1, w2, b2, w3, b3 = autocast_inputs("conv_conditioner", x, w1, b1, w2, b2, w3, b3)
    check_conv_conditioner(x, w1, b1, w2, b2, w3, b3)
    dropout = _check_dropout(dropout)
    if x.dtype not in KERNEL_DTYPES:  # float16/bfloat16 (also autocast's): computed in float32
        args = [None if t is None else t.float() for t in (x, w1, b1, w2, b2, w3, b3)]
        with torch.autocast(x.device.type, enabled=False):  # or autocast would cast them back
            return conv_conditioner(*args, dropout=dropout, generator=generator).to(x.dtype)
    seed = draw_seed(x.device, check_generator(generator)) if dropout > 0 else None
    if not kernel_runs(x):
        keep = (None, None)
        if seed is not None:
            keep = _reference_dropout_masks(seed, x, (w1.shape[0], w2.shape[0]), dropout)
        return reference.conv_conditioner(x, w1, b1, w2, b2, w3, b3, *keep)
    return torch.ops.fastgen.conv_conditioner(x, w1, b1, w2, b2, w3, b3, dropout, seed)[0]
