"""The Triton kernel of pixelcnn_generate_row (one PixelCNN image row per launch) against the
reference loop over the step ops: the same levels from the same uniforms.

Without a GPU the kernel runs on CPU tensors in Triton's interpreter (set up by
``triton_helpers``, imported before the kernels); with one it runs compiled on CUDA tensors.
"""

import pytest
import torch
from step_cases import boundary_row_args, on_device, row_args
from triton_helpers import device  # noqa: F401 (a fixture)

from fastgen.reference import steps as ref
from fastgen.triton_kernels import pixelcnn_rows as tk


def _both(args, kwargs):
    links, uniforms, w_h, b_h, w_res, b_res, masks, wh, bh, wo, bo = args
    w_cond_h = kwargs["w_cond_h"] or [None] * len(w_h)
    common = (links, uniforms, w_h, b_h, w_res, b_res, masks, kwargs["cond"], w_cond_h, wh, bh, wo, bo, kwargs["levels"])
    return tk.pixelcnn_generate_row(*common), ref.pixelcnn_generate_row(*common)


@pytest.mark.parametrize("case", [dict(), dict(c_img=3, levels=9, cond_features=2), dict(kernels=(3,), bias=False),
                                  dict(n=3, c=9, kernels=(5, 3, 3), width=7, levels=40)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_row_kernel_matches_the_reference(device, case, dtype):
    args, kwargs = on_device(*row_args(dtype=dtype, **case), device)
    got, want = _both(args, kwargs)
    assert got.dtype == torch.int64 and got.shape == args[1].shape
    assert torch.equal(got, want)
    assert got.unique().numel() > 2


def test_row_kernel_limits():
    w = [torch.zeros(8, 1, 1, 4), torch.zeros(8, 4, 1, 2), torch.zeros(8, 4, 1, 3)]
    assert tk.why_not(w[:2], ["A", "B"], 16, 17) is None
    assert "same weight shape" in tk.why_not(w, ["A", "B", "B"], 16, 17)
    assert "mask 'B'" in tk.why_not(w[:2], ["A", "A"], 16, 17)
    assert "levels" in tk.why_not(w[:2], ["A", "B"], 16, 4096)


def test_row_kernel_draws_the_boundaries_exactly(device):
    """Uniforms one float32 step either side of every boundary of the draw: the levels the rule
    gives (float32 cumulative sums drew hundreds of them wrong for 256 levels)."""
    args, kwargs, want = boundary_row_args(every=4)  # 128 draws: the interpreter is slow
    got, ref_levels = _both(*on_device(args, kwargs, device))
    assert torch.equal(ref_levels.cpu(), want)
    assert torch.equal(got.cpu(), want)
