"""Benchmark cases of the normalizing-flow family: affine and additive coupling, ActNorm, the
invertible 1x1 convolution and Glow's coupling conditioner, forward and forward+backward.

``eager`` is :mod:`fastgen.reference.flows`, the chain of small PyTorch ops a flow library runs
(for an affine coupling: the scale map, exp, multiply, add and a per-sample sum, each writing a
full tensor); ``compiled`` is torch.compile of it; ``fastgen`` is :mod:`fastgen.ops.flows`, one
fused pass forward and one backward.

Target (the goal the fused kernels are held to, shown in each case's label): fastgen
forward+backward at least ``TARGET_VS_EAGER`` times faster than eager and no slower than
compiled, float32 on a 2-thread CPU at these flow-sized shapes. The invertible 1x1 convolution
is a small GEMM (C x C times C x H W per sample), where eager already runs BLAS; the additive
coupling is a single add in eager too: for those two the gain can only come from fewer ops.
The conditioner (conv3x3 -> ReLU -> conv1x1 -> ReLU -> conv3x3, 64 hidden channels) is timed at
the two level sizes of the 8x8-digit Glow, at 4x4 with more channels and at RealNVP's first 8x8
scale (its CPU kernel takes up to 8 input channels; wider inputs go to oneDNN, see
``fastgen.ops.conditioner``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fastgen import ops, reference
from fastgen.bench.cases._common import family_cases, layer_case
from fastgen.bench.harness import FORWARD_BACKWARD, BenchCase, CaseSpec, register_cases

TARGET_VS_EAGER = 2.0

# (op, (N, C, H, W), scale map or None): Glow/RealNVP-sized steps. affine_coupling acts on half
# the channels (6 of a 12-channel 16x16 level; 12 of 24 at 32x32), actnorm and the 1x1
# convolution on all of them.
CPU_SHAPES = (
    ("affine_coupling", (64, 6, 16, 16), "sigmoid"),
    ("affine_coupling", (64, 6, 16, 16), "tanh_clamp"),
    ("affine_coupling", (256, 12, 32, 32), "sigmoid"),
    ("affine_coupling", (256, 12, 32, 32), "tanh_clamp"),
    ("actnorm", (64, 12, 16, 16), None),
    ("invertible_conv1x1", (64, 12, 16, 16), None),
    ("additive_coupling", (64, 6, 16, 16), None),
    ("conv_conditioner", (64, 2, 4, 4), None),
    ("conv_conditioner", (64, 4, 2, 2), None),
    ("conv_conditioner", (64, 6, 4, 4), None),
    ("conv_conditioner", (64, 1, 8, 8), None),
)
CONDITIONER_HIDDEN = 64
# The log-determinant (output 1 of the ops that have one) sums C*H*W terms of magnitude up to
# about 1 per sample. Two float32 summation orders (the reference's, torch.compile's, a kernel's)
# differ by up to about that count times the unit roundoff (6e-8), whatever the sum: measured
# 2.5e-4 at 12,288 terms for torch.compile of the reference, on a sample whose logdet was -55.
# So its absolute tolerance grows with the count, at 4 unit roundoffs per term.
LOGDET_ATOL_PER_TERM = 2.5e-7
# On a GPU the goal is a share of the measured copy bandwidth, so each op also runs on tensors
# several times the L2 (50-200 MB a pass); the conditioner is cuDNN's there: nothing to time.
TARGET_COPY_BANDWIDTH = 0.85
COPY_BANDWIDTH_SHAPES = (
    ("affine_coupling", (256, 48, 32, 32), "tanh_clamp"),
    ("affine_coupling", (256, 48, 32, 32), "sigmoid"),
    ("additive_coupling", (256, 48, 32, 32), None),
    ("actnorm", (256, 96, 32, 32), None),
    ("invertible_conv1x1", (256, 96, 32, 32), None),
)
GPU_SHAPES = tuple(case for case in CPU_SHAPES if case[0] != "conv_conditioner") + COPY_BANDWIDTH_SHAPES
QUICK_SHAPES = (("affine_coupling", (64, 6, 16, 16), "sigmoid"),)


# ---------------------------------------------------------------------------------------------
# Implementations: module-level functions, so torch.compile of a reference is compiled once per
# function and shared by the cases that time it.


def eager_affine_coupling(x, shift, log_scale, scale):
    return reference.affine_coupling(x, shift, log_scale, False, scale, 2.0)


def fastgen_affine_coupling(x, shift, log_scale, scale):
    return ops.affine_coupling(x, shift, log_scale, scale=scale, clamp=2.0)


def eager_additive_coupling(x, shift):
    return reference.additive_coupling(x, shift, False)


def fastgen_additive_coupling(x, shift):
    return ops.additive_coupling(x, shift)


def eager_actnorm(x, bias, log_scale):
    return reference.actnorm(x, bias, log_scale, False)


def fastgen_actnorm(x, bias, log_scale):
    return ops.actnorm(x, bias, log_scale)


# Glow's LU parameterisation knows log|det W| (sum of log|s|), so both sides get it as an input
# and the timing is the layer's, not a slogdet's.
def eager_invertible_conv1x1(x, weight, logabsdet):
    return reference.invertible_conv1x1(x, weight, False, logabsdet)


def fastgen_invertible_conv1x1(x, weight, logabsdet):
    return ops.invertible_conv1x1(x, weight, logabsdet=logabsdet)


def eager_conv_conditioner(x, w1, b1, w2, b2, w3, b3):
    return reference.conv_conditioner(x, w1, b1, w2, b2, w3, b3)


def fastgen_conv_conditioner(x, w1, b1, w2, b2, w3, b3):
    return ops.conv_conditioner(x, w1, b1, w2, b2, w3, b3)


_IMPLEMENTATIONS = {
    "conv_conditioner": (eager_conv_conditioner, fastgen_conv_conditioner),
    "affine_coupling": (eager_affine_coupling, fastgen_affine_coupling),
    "additive_coupling": (eager_additive_coupling, fastgen_additive_coupling),
    "actnorm": (eager_actnorm, fastgen_actnorm),
    "invertible_conv1x1": (eager_invertible_conv1x1, fastgen_invertible_conv1x1),
}


def _inputs(op: str, shape: tuple[int, int, int, int], scale: str | None, dtype: torch.dtype
            ) -> Callable[[torch.device], tuple]:
    n, c, h, w = shape

    def make(device: torch.device) -> tuple:
        x = torch.randn(n, c, h, w, device=device).to(dtype)
        if op == "conv_conditioner":  # Glow's network on half the channels: out = shift + scale per channel
            return (x, *_conditioner_weights(c, CONDITIONER_HIDDEN, 2 * c, device, dtype))
        if op == "affine_coupling":
            shift = (0.5 * torch.randn(n, c, h, w, device=device)).to(dtype)
            raw = torch.randn(n, c, h, w, device=device).to(dtype)
            return x, shift, raw, scale
        if op == "additive_coupling":
            return x, (0.5 * torch.randn(n, c, h, w, device=device)).to(dtype)
        if op == "actnorm":
            bias = (0.1 * torch.randn(c, device=device)).to(dtype)
            return x, bias, (0.1 * torch.randn(c, device=device)).to(dtype)
        q = torch.linalg.qr(torch.randn(c, c, device=device, dtype=torch.float64))[0]
        weight = (q + 0.1 * torch.randn(c, c, device=device, dtype=torch.float64)).to(dtype)
        logabsdet = torch.linalg.slogdet(weight.double()).logabsdet.to(dtype)
        return x, weight, logabsdet

    return make


def _conditioner_weights(c_in: int, hidden: int, c_out: int, device: torch.device, dtype: torch.dtype) -> list:
    """w1, b1, w2, b2, w3, b3 at He-like scales (the last conv not zero: a trained network)."""
    shapes = ((hidden, c_in, 3, 3), (hidden,), (hidden, hidden, 1, 1), (hidden,), (c_out, hidden, 3, 3), (c_out,))
    out = []
    for shape in shapes:
        fan_in = shape[1] * shape[2] * shape[3] if len(shape) == 4 else 10
        out.append((torch.randn(shape, device=device) * fan_in ** -0.5).to(dtype))
    return out


def _conditioner_size(c: int) -> tuple[int, int]:
    """(parameters, multiply-adds per position) of the conditioner on c input channels."""
    hidden, c_out = CONDITIONER_HIDDEN, 2 * c
    macs = 9 * c * hidden + hidden * hidden + 9 * hidden * c_out
    return macs + 2 * hidden + c_out, macs


def _traffic(op: str, numel: int, c: int, n: int, backward: bool) -> int:
    """Minimum elements read and written (full tensors; per-sample logdet and parameters)."""
    if op == "conv_conditioner":  # fwd: x, params -> y (2c channels); bwd: + gy -> gx, grads of params
        params = _conditioner_size(c)[0]
        return (numel * 3 + params) * (2 if backward else 1)
    if op == "affine_coupling":  # fwd: x, t, r -> y; bwd: gy, x, r -> gx, gt, gr
        return numel * (10 if backward else 4) + n * (2 if backward else 1)
    if op == "additive_coupling":  # fwd: x, t -> y; bwd: gy -> (gx = gy), -gy or gy
        return numel * (4 if backward else 3)
    if op == "actnorm":  # fwd: x -> y; bwd: gy, x -> gx
        return numel * (5 if backward else 2) + 6 * c + 2 * n
    return numel * (5 if backward else 2) + 3 * c * c + 2 * n  # 1x1 conv: + x for grad_weight


def _cases(case: tuple, dtype: torch.dtype, mode: str, triton: bool) -> list[BenchCase]:
    op, shape, scale = case
    n, c, h, w = shape
    eager, fast = _IMPLEMENTATIONS[op]
    backward = mode == FORWARD_BACKWARD
    goal = (f"{TARGET_COPY_BANDWIDTH:.0%} copy BW" if case in COPY_BANDWIDTH_SHAPES else f"{TARGET_VS_EAGER:g}x eager")
    label = "x".join(map(str, shape)) + (f" {scale}" if scale else "") + f" (goal {goal})"
    grad_args = {"affine_coupling": (0, 1, 2), "additive_coupling": (0, 1), "actnorm": (0, 1, 2),
                 "invertible_conv1x1": (0, 1, 2), "conv_conditioner": tuple(range(7))}[op]
    numel = n * c * h * w
    flops = 0
    if op == "invertible_conv1x1":  # 2 C^2 per position forward; grad_x and grad_weight as much again
        flops = 2 * c * c * n * h * w * (3 if backward else 1)
    if op == "conv_conditioner":  # the three products per position; backward twice as many again
        flops = 2 * _conditioner_size(c)[1] * n * h * w * (3 if backward else 1)
    has_logdet = op in ("affine_coupling", "actnorm", "invertible_conv1x1")
    return [
        layer_case(op, label, dtype, mode, make_inputs=_inputs(op, shape, scale, dtype), eager=eager,
                   fastgen=fast, triton=None, elements_moved=_traffic(op, numel, c, n, backward),
                   grad_args=grad_args, gradient_atol=1e-3, flops=flops,
                   output_atol={1: LOGDET_ATOL_PER_TERM * c * h * w} if has_logdet else None)
    ]


@register_cases("flows")
def flow_cases(spec: CaseSpec) -> list[BenchCase]:
    """Every flow op at Glow/RealNVP sizes, fp32 forward and forward+backward on a CPU (on a
    GPU also bf16/fp16 and larger tensors, and no conditioner: cuDNN runs it there). ``--quick``:
    the sigmoid affine coupling at (64, 6, 16, 16) only, forward+backward."""
    if spec.quick:
        cases = family_cases(spec, "flows", QUICK_SHAPES, _cases)
        return [case for case in cases if case.mode == FORWARD_BACKWARD]
    shapes = GPU_SHAPES if spec.device.type == "cuda" else CPU_SHAPES
    return family_cases(spec, "flows", shapes, _cases)
