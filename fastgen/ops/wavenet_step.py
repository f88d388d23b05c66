"""One time step of a WaveNet layer for fast (cached) sampling: ``wavenet_layer_step``.

Naive WaveNet sampling reruns the whole network over its receptive field for every new audio
sample. The cached scheme (fast-wavenet) keeps, per layer, a ring buffer of the layer's last
``dilation * (K - 1)`` inputs, so one new sample costs one time step of work per layer. The
step op reads the taps from the ring buffer, computes the gate, residual and skip of that one
step in one pass, and writes the new input into the buffer in place (the
``causal_conv1d_update`` pattern).

The step ops are for sampling: they have no gradient (train with :func:`wavenet_layer`).
"""

from __future__ import annotations

import torch

from fastgen.reference import steps as reference_steps
from fastgen.ops._checks import check_apart, check_positive_int, check_rank, check_same
from fastgen.ops._dispatch import use_kernel
from fastgen.ops.wavenet import check_cond_weight, check_layer_weights


def check_no_grad(op_name: str, *tensors: torch.Tensor | None) -> None:
    """Sampling step ops have no autograd: refuse inputs that would need a gradient."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError(
            f"{op_name} is a sampling op without a gradient, but an input requires grad: call it under "
            "torch.no_grad() (or torch.inference_mode()); train with the full-sequence op instead"
        )


def position_tensor(position: object, x: torch.Tensor) -> torch.Tensor:
    """``position`` (an int >= 0, or a 0-dim int64 tensor on x's device) as that tensor."""
    if isinstance(position, torch.Tensor):
        if position.dim() != 0 or position.dtype != torch.int64:
            raise ValueError(f"position must be an int or a 0-dim int64 tensor, got a {position.dtype} tensor "
                             f"of shape {tuple(position.shape)}")
        if position.device != x.device:
            raise ValueError(f"position must be on the device of x ({x.device}), got {position.device}")
        return position
    if isinstance(position, bool) or not isinstance(position, int):
        raise TypeError(f"position must be an int or a 0-dim int64 tensor, got {type(position).__name__}")
    if position < 0:
        raise ValueError(f"position must be >= 0, got {position}")
    return torch.tensor(position, dtype=torch.int64, device=x.device)


def check_wavenet_layer_step(x: object, state: object, w_dilated: object, b_dilated: object, w_res: object,
                             b_res: object, w_skip: object, b_skip: object, dilation: object, cond: object,
                             w_cond: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Check the arguments of ``wavenet_layer_step``; return w_res, w_skip and w_cond as 2-D weights."""
    x = check_rank(x, "x", 2, "(N, C_res)")
    w_dilated, w_res, w_skip = check_layer_weights(x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation)
    n, c_res = x.shape
    state = check_rank(state, "state", 3, "(N, L, C_res)")
    check_same(state, "state", x)
    length = dilation * (w_dilated.shape[2] - 1)
    if tuple(state.shape) != (n, length, c_res):
        raise ValueError(f"state must have shape (N, dilation * (K - 1), C_res) = {(n, length, c_res)}, "
                         f"got {tuple(state.shape)}")
    if not state.is_contiguous():
        raise ValueError("state must be contiguous: it is updated in place")
    if (cond is None) != (w_cond is None):
        raise ValueError("cond and w_cond must be given together (local conditioning) or both be None")
    if cond is not None:
        cond = check_rank(cond, "cond", 2, "(N, C_cond)")
        check_same(cond, "cond", x)
        if cond.shape[0] != n:
            raise ValueError(f"cond must have the batch size of x, N = {n}, got shape {tuple(cond.shape)}")
        w_cond = check_cond_weight(cond, w_cond, w_dilated.shape[0], x)
    check_apart(state, x=x, cond=cond)
    return w_res, w_skip, w_cond


def wavenet_state(n: int, residual_channels: int, dilation: int, kernel_size: int = 2, *,
                  dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """A zeroed ring buffer for :func:`wavenet_layer_step`: (N, dilation * (K - 1), C_res).

    Zeros stand for the inputs before time 0, as the causal convolution's left padding does.
    """
    check_positive_int(n, "n")
    check_positive_int(residual_channels, "residual_channels")
    check_positive_int(dilation, "dilation")
    check_positive_int(kernel_size, "kernel_size")
    return torch.zeros(n, dilation * (kernel_size - 1), residual_channels, dtype=dtype, device=device)


def wavenet_layer_step(
    x: torch.Tensor,
    state: torch.Tensor,
    position: int | torch.Tensor,
    w_dilated: torch.Tensor,
    b_dilated: torch.Tensor | None,
    w_res: torch.Tensor,
    b_res: torch.Tensor | None,
    w_skip: torch.Tensor,
    b_skip: torch.Tensor | None,
    *,
    dilation: int,
    cond: torch.Tensor | None = None,
    w_cond: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One time step of :func:`wavenet_layer`, with the layer's past inputs in a ring buffer.

    Run for t = 0, 1, 2, ... with a zeroed ``state`` (:func:`wavenet_state`) it gives, step by
    step, what :func:`wavenet_layer` gives for the whole sequence. Time t reads the dilated
    convolution's taps t - (K - 1 - k) * dilation from the buffer (slot t' mod L holds the input
    of time t'), computes ::

        h = b_dilated + sum_k w_dilated[:, :, k] @ tap_k [+ w_cond @ cond]
        z = tanh(h[:, :C_gate // 2]) * sigmoid(h[:, C_gate // 2:])
        residual_out = x + w_res @ z + b_res,   skip = w_skip @ z + b_skip

    and then writes ``x`` into slot t mod L of ``state`` (in place).

    Parameters
    ----------
    x : torch.Tensor
        The layer's input at time t, shape (N, C_res); float32, float16, bfloat16 (computed in
        float32) or float64.
    state : torch.Tensor
        Ring buffer (N, L, C_res) with L = dilation * (K - 1), contiguous, dtype and device of
        ``x`` (time-major, so one step reads each tap's channels contiguously). Updated in place.
    position : int or torch.Tensor
        t, the number of steps taken before this one (>= 0); a 0-dim int64 tensor on x's device
        also works (so a captured CUDA graph can advance it).
    w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation, cond, w_cond
        As in :func:`wavenet_layer`; ``cond`` is this step's (N, C_cond).

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        ``residual_out`` (N, C_res) and ``skip`` (N, C_skip), dtype of ``x``. No gradient: call
        under ``torch.no_grad()`` when the parameters require grad.
    """
    w_res2, w_skip2, w_cond2 = check_wavenet_layer_step(x, state, w_dilated, b_dilated, w_res, b_res, w_skip,
                                                        b_skip, dilation, cond, w_cond)
    check_no_grad("wavenet_layer_step", x, state, w_dilated, b_dilated, w_res2, b_res, w_skip2, b_skip, cond,
                  w_cond2)
    if not use_kernel("wavenet_layer_step", x):
        return reference_steps.wavenet_layer_step(x, state, int(position_tensor(position, x)), w_dilated,
                                                  b_dilated, w_res2, b_res, w_skip2, b_skip, dilation, cond,
                                                  w_cond2)
    return torch.ops.fastgen.wavenet_layer_step(x, state, position_tensor(position, x), w_dilated, b_dilated,
                                                w_res2, b_res, w_skip2, b_skip, dilation, cond, w_cond2)
