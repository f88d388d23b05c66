"""A whole WaveNet generating many samples per call: ``wavenet_generate`` (the fused decoder).

Sampling with :func:`wavenet_layer_step` from Python costs one op dispatch per layer and per
sample, more than the arithmetic of a batch-1 step. ``wavenet_generate`` keeps the loop over
steps and layers, the output head and the categorical draw inside one kernel call: a C++
kernel on the CPU, and on CUDA a persistent decoder, one block per sample running every step and
layer: the CUDA kernel of kernels/wavenet/ in builds with CUDA (weights in shared memory as far
as they fit), else the Triton kernel (``decoder_limits`` says which sizes each takes). It
continues from the given ring buffers (``states``, updated in place) and position ``start``, so
generation can be split over several calls.

Sampling op: no gradient; categorical output. float32 and float64; float16/bfloat16 models keep
their weights and ring buffers in that dtype (half the bytes streamed per step), compute in
float32 and round where the step ops return tensors (the CPU kernel; the Triton decoder carries
its running vectors in float32).
"""

from __future__ import annotations

import torch

from fastgen.ops._dispatch import use_kernel
from fastgen.ops._generate_checks import check_wavenet_generate
from fastgen.ops.wavenet_step import check_no_grad
from fastgen.reference import steps as reference_steps


def decoder_limits(device: torch.device, channels: dict[str, int], dtype: torch.dtype = torch.float32
                   ) -> str | None:
    """Why wavenet_generate's kernel on ``device`` cannot run a model with these channel counts
    (keys residual, gate, skip, hidden, levels, cond; layers and kernel_size, default 1 and 2),
    or None when it can. The CPU kernel takes any size. On CUDA, the compiled decoder needs its
    running vectors (all layers' taps, the skips, hidden units and logits; in float32, float64
    for float64 models) in one block's shared memory; the Triton decoder holds each channel
    vector in registers (at most 1024 wide)."""
    if device.type != "cuda":
        return None
    from fastgen.ops._step_registration import cuda_decoder_built

    if cuda_decoder_built():
        from fastgen.ops import _wavenet_decoder_cuda as cuda_decoder

        shape = cuda_decoder.Shape(
            layers=channels.get("layers", 1), kernel_size=channels.get("kernel_size", 2),
            residual=channels["residual"], gate=channels["gate"], skip=channels["skip"], hidden=channels["hidden"],
            levels=channels["levels"], cond=channels.get("cond", 0))
        return cuda_decoder.why_not(device, shape, dtype)
    from fastgen.triton_kernels import wavenet_decoder  # only where CUDA (and so Triton) is in use

    return wavenet_decoder.why_not({key: channels[key] for key in
                                    ("residual", "gate", "skip", "hidden", "levels", "cond") if key in channels})


def wavenet_generate(
    states: list[torch.Tensor],
    first_input: torch.Tensor,
    uniforms: torch.Tensor,
    embedding: torch.Tensor,
    w_dilated: list[torch.Tensor],
    b_dilated: list[torch.Tensor | None],
    w_res: list[torch.Tensor],
    b_res: list[torch.Tensor | None],
    w_skip: list[torch.Tensor],
    b_skip: list[torch.Tensor | None],
    dilations: list[int],
    w_hidden: torch.Tensor,
    b_hidden: torch.Tensor | None,
    w_out: torch.Tensor,
    b_out: torch.Tensor | None,
    *,
    cond: torch.Tensor | None = None,
    w_cond: list[torch.Tensor | None] | None = None,
    start: int = 0,
) -> torch.Tensor:
    """Generate T = ``uniforms.shape[1]`` codes with a categorical WaveNet, every layer per step.

    Step t (position ``start + t``): each layer l runs :func:`wavenet_layer_step` on its ring
    buffer ``states[l]``; the skips are summed; ``logits = w_out @ relu(w_hidden @ relu(skips) +
    b_hidden) + b_out``; the code is the first level whose cumulative softmax mass exceeds
    ``uniforms[:, t]``; its row of ``embedding`` is the next step's input.

    Parameters
    ----------
    states : list of torch.Tensor
        One ring buffer per layer, (N, dilations[l] * (K - 1), R), contiguous; updated in place.
    first_input : torch.Tensor
        (N, R): the first layer's input at step 0 (zeros at the start of a sequence).
    uniforms : torch.Tensor
        (N, T) in [0, 1]: one per draw.
    embedding : torch.Tensor
        (levels, R): the input vector of each code.
    w_dilated, b_dilated, w_res, b_res, w_skip, b_skip : lists, one entry per layer
        As in :func:`wavenet_layer_step` (1x1 weights as (C_out, C_in) matrices).
    dilations : list of int
        Dilation of each layer.
    w_hidden, b_hidden, w_out, b_out : torch.Tensor
        The output head: (H, C_skip), (H,), (levels, H), (levels,).
    cond, w_cond : torch.Tensor and list, optional
        Conditioning at each step (N, C_cond, T) and each layer's (C_gate, C_cond) projection.
    start : int
        Position of step 0 (the number of steps the states have seen).

    Returns
    -------
    torch.Tensor
        int64 codes (N, T).
    """
    w_cond = [None] * len(states) if w_cond is None and isinstance(states, (list, tuple)) else w_cond
    w_res, w_skip, w_cond = check_wavenet_generate(states, first_input, uniforms, embedding, w_dilated, b_dilated,
                                                   w_res, b_res, w_skip, b_skip, dilations, w_hidden, b_hidden,
                                                   w_out, b_out, cond, w_cond, start)
    check_no_grad("wavenet_generate", first_input, uniforms, embedding, w_hidden, b_hidden, w_out, b_out, cond,
                  *states, *w_dilated, *b_dilated, *w_res, *b_res, *w_skip, *b_skip, *w_cond)
    if not use_kernel("wavenet_generate", first_input):
        return reference_steps.wavenet_generate(states, first_input, uniforms, embedding, w_dilated, b_dilated, w_res,
                                                b_res, w_skip, b_skip, w_cond, list(dilations), w_hidden, b_hidden,
                                                w_out, b_out, cond, start)
    return torch.ops.fastgen.wavenet_generate(states, first_input, uniforms, embedding, w_dilated, b_dilated, w_res,
                                              b_res, w_skip, b_skip, w_cond, list(dilations), w_hidden, b_hidden,
                                              w_out, b_out, cond, start)
