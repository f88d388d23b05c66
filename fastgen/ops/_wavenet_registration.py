"""Fake kernels, autograd and the Triton GPU fallback of wavenet_layer.

The forward op returns ``(residual_out, skip, h)``; ``h``, the gate pre-activation in the
accumulation dtype, is what the backward needs (the gates are recomputed from it), so the
forward writes it only when a gradient will be asked for (``save_pre_activation``).
"""

from __future__ import annotations

import torch

from fastgen.ops import _dispatch

WAVENET_OPS = ["wavenet_layer", "wavenet_layer_backward"]
TRITON_MODULE = "fastgen.triton_kernels.wavenet"


def _register_fakes() -> None:
    @torch.library.register_fake("fastgen::wavenet_layer")
    def _(x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation, cond, w_cond, save_pre_activation):
        n, _, t = x.shape
        h_shape = (n, w_dilated.shape[0], t) if save_pre_activation else (0,)
        return (x.new_empty(x.shape), x.new_empty((n, w_skip.shape[0], t)),
                x.new_empty(h_shape, dtype=_dispatch.accumulation_dtype(x.dtype)))

    @torch.library.register_fake("fastgen::wavenet_layer_backward")
    def _(grad_residual, grad_skip, x, h, w_dilated, w_res, w_skip, dilation, cond, w_cond):
        def like(t):
            return torch.empty_like(t, memory_format=torch.contiguous_format)

        def maybe(t):  # a fresh empty tensor each: outputs must not alias
            return x.new_empty((0,)) if t is None else like(t)

        return (like(x), like(w_dilated), x.new_empty((w_dilated.shape[0],)), like(w_res),
                x.new_empty((w_res.shape[0],)), like(w_skip), x.new_empty((w_skip.shape[0],)),
                maybe(cond), maybe(w_cond))


def _setup_context(ctx, inputs, output) -> None:
    x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation, cond, w_cond, save = inputs
    ctx.save_for_backward(x, output[2], w_dilated, w_res, w_skip, cond, w_cond)
    ctx.dilation = dilation
    ctx.saved_pre_activation = save
    ctx.has_bias = [b is not None for b in (b_dilated, b_res, b_skip)]
    ctx.mark_non_differentiable(output[2])
    # No zero gradient is made for the pre-activation h (a (N, 2 * gate, T) fill each backward);
    # an unused residual or skip output's is made in _backward.
    ctx.set_materialize_grads(False)
    ctx.output_shapes = (output[0].shape, output[1].shape)


def _backward(ctx, grad_residual, grad_skip, _grad_h):
    if not ctx.saved_pre_activation:
        raise RuntimeError("fastgen::wavenet_layer was called with save_pre_activation=False, so it cannot be "
                           "differentiated: call fastgen.ops.wavenet_layer, which sets it when needed")
    x, h, w_dilated, w_res, w_skip, cond, w_cond = ctx.saved_tensors
    grad_residual, grad_skip = _dispatch.zeros_for_none((grad_residual, grad_skip), ctx.output_shapes, x)
    grads = torch.ops.fastgen.wavenet_layer_backward(grad_residual, grad_skip, x, h, w_dilated, w_res, w_skip,
                                                     ctx.dilation, cond, w_cond)
    gx, gwd, gbd, gwr, gbr, gws, gbs, gc, gwc = grads
    if cond is None:
        gc = gwc = None
    # The kernel sums the gradient of every bias; a missing one gets None.
    gbd, gbr, gbs = (g if has else None for g, has in zip((gbd, gbr, gbs), ctx.has_bias))
    # Inputs: x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation, cond, w_cond, save.
    return gx, gwd, gbd, gwr, gbr, gws, gbs, None, gc, gwc, None


def register() -> None:
    _dispatch.register_fused_layer(WAVENET_OPS, TRITON_MODULE, _register_fakes, _backward, _setup_context)
