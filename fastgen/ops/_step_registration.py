"""Fake kernels and the Triton GPU kernels of the sampling step ops.

The step ops update their ``state`` argument in place (declared ``Tensor(a!)`` in the schema)
and have no autograd: they are for sampling, and their Python wrappers refuse inputs that
require grad. wavenet_generate (the fused decoder) has a C++ CPU kernel and, on CUDA, the
persistent CUDA decoder (kernels/wavenet/, via fastgen/ops/_wavenet_decoder_cuda.py) in builds
with CUDA, else the persistent Triton decoder (fastgen/triton_kernels/wavenet_decoder.py);
pixelcnn_generate_row (a whole PixelCNN image row) a C++ CPU kernel and a Triton row kernel
(pixelcnn_rows.py) for standard layer stacks. gated_pixelcnn_vertical_step is a C++ CPU kernel
(im2col + GEMM) and, in CUDA builds, ATen code (cuDNN + cuBLAS); the two per-position steps use
Triton on CUDA.
"""

from __future__ import annotations

import torch

from fastgen import _ext
from fastgen.ops import _dispatch

STEP_OPS = ["wavenet_layer_step", "gated_pixelcnn_vertical_step", "gated_pixelcnn_horizontal_step", "wavenet_generate",
            "pixelcnn_generate_row"]
TRITON_OPS = {"wavenet_layer_step": "fastgen.triton_kernels.steps",
              "gated_pixelcnn_horizontal_step": "fastgen.triton_kernels.steps",
              "wavenet_generate": "fastgen.triton_kernels.wavenet_decoder",
              "pixelcnn_generate_row": "fastgen.triton_kernels.pixelcnn_rows"}


def _register_fakes() -> None:
    @torch.library.register_fake("fastgen::wavenet_layer_step")
    def _(x, state, position, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation, cond, w_cond):
        return x.new_empty(x.shape), x.new_empty((x.shape[0], w_skip.shape[0]))

    @torch.library.register_fake("fastgen::wavenet_generate")
    def _(states, first_input, uniforms, *rest):
        return uniforms.new_empty(uniforms.shape, dtype=torch.int64)

    @torch.library.register_fake("fastgen::pixelcnn_generate_row")
    def _(links, uniforms, *rest):
        return uniforms.new_empty(uniforms.shape, dtype=torch.int64)

    @torch.library.register_fake("fastgen::gated_pixelcnn_vertical_step")
    def _(state, new_row, w_v, b_v, w_v2h, b_v2h, cond, w_cond_v):
        n, _, width = new_row.shape
        two_c = w_v.shape[0]
        return new_row.new_empty((n, two_c // 2, width)), new_row.new_empty((n, two_c, width))

    @torch.library.register_fake("fastgen::gated_pixelcnn_horizontal_step")
    def _(state, new_input, link, w_h, b_h, w_res, b_res, mask_type, cond, w_cond_h):
        return new_input.new_empty((new_input.shape[0], w_h.shape[0] // 2))


def cuda_decoder_built() -> bool:
    """Whether this build has the compiled persistent CUDA decoder (CUDA builds only)."""
    return _ext.has_op("wavenet_decoder_cuda")


def register() -> None:
    if _ext.check_ops(STEP_OPS):
        _register_fakes()
        gpu_modules = dict(TRITON_OPS)
        if cuda_decoder_built():
            gpu_modules["wavenet_generate"] = "fastgen.ops._wavenet_decoder_cuda"
        _dispatch.register_triton_for_cuda(gpu_modules)
    _dispatch.record_kernels(STEP_OPS)
