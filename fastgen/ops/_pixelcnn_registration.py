"""Fake kernels, autograd and the Triton GPU fallback of gated_pixelcnn_layer.

The forward op returns ``(v_out, h_out, v_pre, h_pre)``; the two gate pre-activations (in the
accumulation dtype) are all the backward needs besides the inputs, so the forward writes them
only when a gradient will be asked for (``save_pre_activation``).
"""

from __future__ import annotations

import torch

from fastgen.ops import _dispatch

PIXELCNN_OPS = ["gated_pixelcnn_layer", "gated_pixelcnn_layer_backward"]
TRITON_MODULE = "fastgen.triton_kernels.gated_pixelcnn"


def _register_fakes() -> None:
    @torch.library.register_fake("fastgen::gated_pixelcnn_layer")
    def _(v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res, mask_type, cond, w_cond_v, w_cond_h, save):
        n, _, height, width = v.shape
        two_c = w_v.shape[0]
        pre_shape = (n, two_c, height, width) if save else (0,)
        out = (n, two_c // 2, height, width)
        acc = _dispatch.accumulation_dtype(v.dtype)
        return v.new_empty(out), v.new_empty(out), v.new_empty(pre_shape, dtype=acc), v.new_empty(pre_shape, dtype=acc)

    @torch.library.register_fake("fastgen::gated_pixelcnn_layer_backward")
    def _(grad_v_out, grad_h_out, v, h, v_pre, h_pre, w_v, w_h, w_v2h, w_res, mask_type, cond, w_cond_v, w_cond_h):
        def like(t):
            return torch.empty_like(t, memory_format=torch.contiguous_format)

        def bias(size):
            return v.new_empty((size,))

        def maybe(t):
            return v.new_empty((0,)) if t is None else like(t)

        return (like(v), like(h), like(w_v), bias(w_v.shape[0]), like(w_h), bias(w_h.shape[0]), like(w_v2h),
                bias(w_v2h.shape[0]), like(w_res), bias(w_res.shape[0]), maybe(cond), maybe(w_cond_v),
                maybe(w_cond_h))


def _setup_context(ctx, inputs, output) -> None:
    v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res, mask_type, cond, w_cond_v, w_cond_h, save = inputs
    ctx.save_for_backward(v, h, output[2], output[3], w_v, w_h, w_v2h, w_res, cond, w_cond_v, w_cond_h)
    ctx.has_bias = [b is not None for b in (b_v, b_h, b_v2h, b_res)]
    ctx.mask_type = mask_type
    ctx.saved_pre_activation = save
    ctx.mark_non_differentiable(output[2], output[3])
    # No zero gradients are made for the two pre-activations; an unused output's is made in _backward.
    ctx.set_materialize_grads(False)
    ctx.output_shapes = (output[0].shape, output[1].shape)


def _backward(ctx, grad_v_out, grad_h_out, _grad_v_pre, _grad_h_pre):
    if not ctx.saved_pre_activation:
        raise RuntimeError("fastgen::gated_pixelcnn_layer was called with save_pre_activation=False, so it cannot "
                           "be differentiated: call fastgen.ops.gated_pixelcnn_layer, which sets it when needed")
    v, h, v_pre, h_pre, w_v, w_h, w_v2h, w_res, cond, w_cond_v, w_cond_h = ctx.saved_tensors
    grad_v_out, grad_h_out = _dispatch.zeros_for_none((grad_v_out, grad_h_out), ctx.output_shapes, v)
    grads = list(torch.ops.fastgen.gated_pixelcnn_layer_backward(
        grad_v_out, grad_h_out, v, h, v_pre, h_pre, w_v, w_h, w_v2h, w_res, ctx.mask_type, cond, w_cond_v,
        w_cond_h))
    if cond is None:
        grads[10:13] = [None, None, None]
    for position, has_bias in zip((3, 5, 7, 9), ctx.has_bias):
        if not has_bias:  # the kernel sums grad for every bias; a missing one gets None
            grads[position] = None
    # Inputs: v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res, mask_type, cond, w_cond_v, w_cond_h, save.
    return (*grads[:10], None, *grads[10:13], None)


def register() -> None:
    _dispatch.register_fused_layer(PIXELCNN_OPS, TRITON_MODULE, _register_fakes, _backward, _setup_context)
