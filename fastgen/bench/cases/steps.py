"""Benchmark cases of the sampling step ops (forward only: they have no gradient).

``eager`` is the plain-PyTorch step (:mod:`fastgen.reference.steps`): a few small matmuls, the
gate and the in-place state update, each a separate op; ``compiled`` is torch.compile of it;
``fastgen`` is the op (one pass per sample in C++ on the CPU). At sampling batch sizes the
work per call is tiny, so these cases measure per-call overhead as much as arithmetic: the
time a sampler spends per layer and per generated value.

The two fused samplers are timed the same way against the loop of reference steps they replace:
``wavenet_generate`` (a whole 2 x 15-layer WaveNet for 64 steps per call) and
``pixelcnn_generate_row`` (one 28-pixel row of a 15-layer PixelCNN per call). They have no
``compiled`` row: torch.compile of a Python loop over every step and layer unrolls it.

The ops update their state in place, so every timed call sees a different state; the
correctness check runs each implementation on its own copy of the state.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fastgen import ops
from fastgen.bench.harness import EAGER, FASTGEN, FORWARD, BenchCase, CaseSpec, register_cases
from fastgen.reference import steps as reference_steps

# WaveNet: the paper-sized layer (64 residual, 128 gate, 256 skip) at the largest dilation of
# the benchmark model (16384, kernel 2), batch 1 (real time) and 16. PixelCNN: 64 channels,
# 3x3 mask-B layer, 28 pixels per row, batch 16.
WAVENET_BATCHES = (1, 16)
PIXELCNN_BATCH, PIXELCNN_WIDTH = 16, 28
C_RES, C_GATE, C_SKIP, DILATION = 64, 128, 256, 16384
C_PIX = 64
# The fused samplers: WaveNet 2 stacks x 15 layers (dilations 1 .. 16384, kernel 2), 256 mu-law
# levels, head width = skip channels, GENERATE_STEPS steps per call; PixelCNN 15 layers (7-wide
# first, then 3), 256 levels, head width 2 * C_PIX, one row per call.
WAVENET_DILATIONS = [2 ** i for i in range(15)] * 2
GENERATE_STEPS, LEVELS = 64, 256
PIXELCNN_KERNELS = (7,) + (3,) * 14


def eager_wavenet_step(x, state, position, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip):
    return reference_steps.wavenet_layer_step(x, state, position, w_dilated, b_dilated, w_res, b_res, w_skip,
                                              b_skip, DILATION)


def fastgen_wavenet_step(x, state, position, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip):
    return ops.wavenet_layer_step(x, state, position, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip,
                                  dilation=DILATION)


def eager_vertical_step(state, row, w_v, b_v, w_v2h, b_v2h):
    return reference_steps.gated_pixelcnn_vertical_step(state, row, w_v, b_v, w_v2h, b_v2h)


def fastgen_vertical_step(state, row, w_v, b_v, w_v2h, b_v2h):
    return ops.gated_pixelcnn_vertical_step(state, row, w_v, b_v, w_v2h, b_v2h)


def eager_horizontal_step(state, x, link, w_h, b_h, w_res, b_res):
    return reference_steps.gated_pixelcnn_horizontal_step(state, x, link, w_h, b_h, w_res, b_res, "B")


def fastgen_horizontal_step(state, x, link, w_h, b_h, w_res, b_res):
    return ops.gated_pixelcnn_horizontal_step(state, x, link, w_h, b_h, w_res, b_res, mask_type="B")


def _on_a_copy(fn: Callable, state_index: int) -> Callable:
    """``fn`` run on a copy of its state argument, a tensor or a list of them (for the
    correctness check)."""

    def run(*args):
        args = list(args)
        state = args[state_index]
        args[state_index] = [s.clone() for s in state] if isinstance(state, list) else state.clone()
        return fn(*args)

    return run


def _weight(device, dtype, *size):
    fan_in = 1
    for d in size[1:]:
        fan_in *= d
    return (torch.randn(size, device=device) / fan_in ** 0.5).to(dtype)


def _bias(device, dtype, size):
    return (0.1 * torch.randn(size, device=device)).to(dtype)


def _case(op: str, label: str, dtype: torch.dtype, make_inputs, eager, fastgen, elements: int, flops: int,
          state_index: int | None = 0, compiled: bool = True) -> BenchCase:
    """A forward case; ``state_index``: the argument updated in place (None: none), which the
    correctness check copies; ``compiled``: whether to add torch.compile of eager."""
    element = torch.empty((), dtype=dtype).element_size()
    checks = None if state_index is None else {EAGER: _on_a_copy(eager, state_index),
                                               FASTGEN: _on_a_copy(fastgen, state_index)}
    return BenchCase(op=op, shape=label, dtype=dtype, mode=FORWARD, make_inputs=make_inputs,
                     implementations={EAGER: eager, FASTGEN: fastgen}, bytes_moved=elements * element,
                     check_implementations=checks, flops=flops, compile_from=EAGER if compiled else None)


def _wavenet_case(n: int, dtype: torch.dtype) -> BenchCase:
    half = C_GATE // 2

    def make(device):
        state = torch.randn(n, DILATION, C_RES, device=device).to(dtype)
        return (torch.randn(n, C_RES, device=device).to(dtype), state, 12345,
                _weight(device, dtype, C_GATE, C_RES, 2), _bias(device, dtype, C_GATE),
                _weight(device, dtype, C_RES, half), _bias(device, dtype, C_RES),
                _weight(device, dtype, C_SKIP, half), _bias(device, dtype, C_SKIP))

    macs = C_GATE * C_RES * 2 + (C_RES + C_SKIP) * half
    params = macs + C_GATE + C_RES + C_SKIP
    activations = n * (4 * C_RES + C_SKIP)  # x, one tap, the state write, residual, skip
    return _case("wavenet_layer_step", f"{n}x{C_RES} gate{C_GATE} skip{C_SKIP} d{DILATION}", dtype, make,
                 eager_wavenet_step, fastgen_wavenet_step, params + activations, 2 * n * macs, state_index=1)


def _vertical_case(dtype: torch.dtype) -> BenchCase:
    n, c, w = PIXELCNN_BATCH, C_PIX, PIXELCNN_WIDTH

    def make(device):
        return (torch.randn(n, c, 2, w, device=device).to(dtype), torch.randn(n, c, w, device=device).to(dtype),
                _weight(device, dtype, 2 * c, c, 2, 3), _bias(device, dtype, 2 * c),
                _weight(device, dtype, 2 * c, 2 * c), _bias(device, dtype, 2 * c))

    macs = 2 * c * c * 6 + 2 * c * 2 * c
    return _case("gated_pixelcnn_vertical_step", f"{n}x{c}x{w} 3x3", dtype, make, eager_vertical_step,
                 fastgen_vertical_step, n * w * (c * 3 + 3 * 2 * c // 2) + macs, 2 * n * w * macs)


def _horizontal_case(dtype: torch.dtype) -> BenchCase:
    n, c = PIXELCNN_BATCH, C_PIX

    def make(device):
        return (torch.randn(n, c, 2, device=device).to(dtype), torch.randn(n, c, device=device).to(dtype),
                torch.randn(n, 2 * c, device=device).to(dtype), _weight(device, dtype, 2 * c, c, 1, 2),
                _bias(device, dtype, 2 * c), _weight(device, dtype, c, c), _bias(device, dtype, c))

    macs = 2 * c * c * 2 + c * c
    return _case("gated_pixelcnn_horizontal_step", f"{n}x{c} 1x2", dtype, make, eager_horizontal_step,
                 fastgen_horizontal_step, n * (c * 4 + 2 * c) + macs, 2 * n * macs)


def eager_wavenet_generate(states, first, uniforms, embedding, wd, bd, wr, br, ws, bs, dilations, wh, bh, wo, bo):
    return reference_steps.wavenet_generate(states, first, uniforms, embedding, wd, bd, wr, br, ws, bs,
                                            [None] * len(states), dilations, wh, bh, wo, bo)


def fastgen_wavenet_generate(states, first, uniforms, embedding, wd, bd, wr, br, ws, bs, dilations, wh, bh, wo, bo):
    return ops.wavenet_generate(states, first, uniforms, embedding, wd, bd, wr, br, ws, bs, dilations, wh, bh, wo, bo)


def eager_generate_row(links, uniforms, w_h, b_h, w_res, b_res, masks, wh, bh, wo, bo):
    return reference_steps.pixelcnn_generate_row(links, uniforms, w_h, b_h, w_res, b_res, masks, None,
                                                 [None] * len(links), wh, bh, wo, bo, LEVELS)


def fastgen_generate_row(links, uniforms, w_h, b_h, w_res, b_res, masks, wh, bh, wo, bo):
    return ops.pixelcnn_generate_row(links, uniforms, w_h, b_h, w_res, b_res, masks, wh, bh, wo, bo, levels=LEVELS)


def _generate_case(n: int, dtype: torch.dtype) -> BenchCase:
    half, layers = C_GATE // 2, len(WAVENET_DILATIONS)

    def make(device):
        def per_layer(*shape):
            return [_weight(device, dtype, *shape) for _ in range(layers)]

        def biases(size):
            return [_bias(device, dtype, size) for _ in range(layers)]

        states = [torch.zeros(n, d, C_RES, device=device, dtype=dtype) for d in WAVENET_DILATIONS]
        return (states, torch.zeros(n, C_RES, device=device, dtype=dtype),
                torch.rand(n, GENERATE_STEPS, device=device).to(dtype), _weight(device, dtype, LEVELS, C_RES),
                per_layer(C_GATE, C_RES, 2), biases(C_GATE), per_layer(C_RES, half), biases(C_RES),
                per_layer(C_SKIP, half), biases(C_SKIP), WAVENET_DILATIONS,
                _weight(device, dtype, C_SKIP, C_SKIP), _bias(device, dtype, C_SKIP),
                _weight(device, dtype, LEVELS, C_SKIP), _bias(device, dtype, LEVELS))

    layer_macs = C_GATE * C_RES * 2 + (C_RES + C_SKIP) * half
    head_macs = C_SKIP * C_SKIP + LEVELS * C_SKIP
    params = layers * (layer_macs + C_GATE + C_RES + C_SKIP) + head_macs + LEVELS * C_RES
    taps = GENERATE_STEPS * n * layers * 2 * C_RES  # each step reads one past input and writes one
    return _case("wavenet_generate", f"2x15 layers {C_RES}/{C_GATE}/{C_SKIP} b{n} {GENERATE_STEPS} steps", dtype,
                 make, eager_wavenet_generate, fastgen_wavenet_generate, params + taps,
                 2 * GENERATE_STEPS * n * (layers * layer_macs + head_macs), state_index=0, compiled=False)


def _row_case(dtype: torch.dtype) -> BenchCase:
    n, c, w = PIXELCNN_BATCH, C_PIX, PIXELCNN_WIDTH

    def make(device):
        w_h = [_weight(device, dtype, 2 * c, 1 if i == 0 else c, 1, k // 2 + 1) for i, k in enumerate(PIXELCNN_KERNELS)]
        return ([torch.randn(n, 2 * c, w, device=device).to(dtype) for _ in PIXELCNN_KERNELS],
                torch.rand(n, 1, w, device=device).to(dtype), w_h, [_bias(device, dtype, 2 * c) for _ in w_h],
                [_weight(device, dtype, c, c) for _ in w_h], [_bias(device, dtype, c) for _ in w_h],
                ["A"] + ["B"] * (len(w_h) - 1), _weight(device, dtype, 2 * c, c), _bias(device, dtype, 2 * c),
                _weight(device, dtype, LEVELS, 2 * c), _bias(device, dtype, LEVELS))

    taps = sum(2 * c * (1 if i == 0 else c) * (k // 2 + 1) for i, k in enumerate(PIXELCNN_KERNELS))
    macs = taps + len(PIXELCNN_KERNELS) * c * c + 2 * c * c + LEVELS * 2 * c  # per pixel: layers, residuals, head
    links = len(PIXELCNN_KERNELS) * n * 2 * c * w
    return _case("pixelcnn_generate_row", f"15 layers x {c} b{n} row of {w}", dtype, make, eager_generate_row,
                 fastgen_generate_row, macs + links, 2 * n * w * macs, state_index=None, compiled=False)


@register_cases("steps")
def step_cases(spec: CaseSpec) -> list[BenchCase]:
    """wavenet_layer_step at batch 1 and 16 (64/128/256 channels, dilation 16384), the two
    Gated PixelCNN steps at batch 16 (64 channels, rows of 28), the fused WaveNet decoder at
    batch 1 and 16 and the fused PixelCNN row at batch 16; float32 (``--dtype`` to change).
    ``--quick``: the batch-1 WaveNet step only."""
    dtypes = spec.dtypes or (torch.float32,)
    cases = []
    for dtype in dtypes[:1] if spec.quick else dtypes:
        cases += [_wavenet_case(n, dtype) for n in (WAVENET_BATCHES[:1] if spec.quick else WAVENET_BATCHES)]
        if not spec.quick:
            cases += [_vertical_case(dtype), _horizontal_case(dtype)]
            cases += [_generate_case(n, dtype) for n in WAVENET_BATCHES] + [_row_case(dtype)]
    return cases
