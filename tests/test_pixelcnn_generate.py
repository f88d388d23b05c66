"""pixelcnn_generate_row (one PixelCNN image row per call) against its reference, the loop over
gated_pixelcnn_horizontal_step, the head and the draw; opcheck; bad arguments."""

from __future__ import annotations

import pytest
import torch

from fastgen import ops
from fastgen.reference import steps as reference_steps
from step_cases import boundary_row_args, replaced
from step_cases import row_args as _row_args


def _reference(args, kwargs):
    links, uniforms, w_h, b_h, w_res, b_res, masks, wh, bh, wo, bo = args
    w_cond_h = kwargs["w_cond_h"] or [None] * len(w_h)
    return reference_steps.pixelcnn_generate_row(links, uniforms, w_h, b_h, w_res, b_res, masks, kwargs["cond"],
                                                 w_cond_h, wh, bh, wo, bo, kwargs["levels"])


@pytest.mark.parametrize("case", [dict(), dict(c_img=3, levels=9, cond_features=2), dict(kernels=(3,), bias=False),
                                  dict(n=5, c=9, kernels=(5, 3, 1), width=11, levels=256)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_row_matches_the_reference_loop(case, dtype):
    args, kwargs = _row_args(dtype=dtype, **case)
    got = ops.pixelcnn_generate_row(*args, **kwargs)
    want = _reference(args, kwargs)
    assert got.dtype == torch.int64 and got.shape == args[1].shape
    assert torch.equal(got, want)
    assert got.unique().numel() > 2


def test_half_precision_rows_run_the_reference():
    args, kwargs = _row_args(dtype=torch.bfloat16)
    got = ops.pixelcnn_generate_row(*args, **kwargs)
    assert torch.equal(got, _reference(args, kwargs))


def test_rows_are_the_same_on_one_and_two_threads():
    args, kwargs = _row_args(n=7, c=8, dtype=torch.float32, levels=64, width=9)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.pixelcnn_generate_row(*args, **kwargs)
        torch.set_num_threads(2)
        two = ops.pixelcnn_generate_row(*args, **kwargs)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_opcheck_and_errors():
    args, kwargs = _row_args(dtype=torch.float32, cond_features=2)
    links, uniforms, w_h, b_h, w_res, b_res, masks, wh, bh, wo, bo = args
    op_args = (links, uniforms, w_h, b_h, w_res, b_res, masks, kwargs["cond"], kwargs["w_cond_h"], wh, bh, wo, bo,
               kwargs["levels"])
    torch.library.opcheck(torch.ops.fastgen.pixelcnn_generate_row, op_args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))
    with pytest.raises(ValueError, match="w_res must have one entry per layer"):
        ops.pixelcnn_generate_row(links, uniforms, w_h, b_h, w_res[:2], b_res, masks, wh, bh, wo, bo, **kwargs)
    with pytest.raises(ValueError, match="mask_types must each be one of"):
        ops.pixelcnn_generate_row(links, uniforms, w_h, b_h, w_res, b_res, ["A", "B", "C"], wh, bh, wo, bo, **kwargs)
    with pytest.raises(ValueError, match="levels must be an int >= 2"):
        ops.pixelcnn_generate_row(*args, **dict(kwargs, levels=1))
    with pytest.raises(ValueError, match="C_img \\* levels"):
        ops.pixelcnn_generate_row(*args, **dict(kwargs, levels=16))
    with pytest.raises(TypeError, match="must have the dtype of uniforms"):
        ops.pixelcnn_generate_row(links, uniforms.double(), *args[2:], **kwargs)
    with pytest.raises(ValueError, match="cond and w_cond_h must be given together"):
        ops.pixelcnn_generate_row(*args, **dict(kwargs, cond=None))
    with pytest.raises(RuntimeError, match="sampling op without a gradient"):
        ops.pixelcnn_generate_row(links, uniforms, w_h, b_h, [w_res[0].requires_grad_(True)] + w_res[1:], b_res,
                                  masks, wh, bh, wo, bo, **kwargs)
    with pytest.raises(RuntimeError, match="links\\[1\\] must have shape"):
        torch.ops.fastgen.pixelcnn_generate_row([links[0], links[1][:, :, :3], links[2]], *op_args[1:])


@pytest.mark.parametrize("index, layer, value, name", [
    (3, 0, torch.zeros(3), r"b_h\[0\]"),
    (5, 2, torch.zeros(9), r"b_res\[2\]"),
    (4, 1, torch.zeros(4, 3), r"w_res\[1\]"),
    (8, None, torch.zeros(10), "b_hidden"),
    (10, None, torch.zeros(33), "b_out"),
])
def test_every_tensor_of_the_model_is_checked(index, layer, value, name):
    """A mis-shaped bias or weight anywhere in the per-layer lists is an error naming it, from the
    function and from the op called directly, never an out-of-bounds read."""
    args, kwargs = _row_args(dtype=torch.float32, cond_features=2)
    bad = replaced(args, index, layer, value)
    with pytest.raises(ValueError, match=name):
        ops.pixelcnn_generate_row(*bad, **kwargs)
    links, uniforms, w_h, b_h, w_res, b_res, masks, wh, bh, wo, bo = bad
    with pytest.raises(RuntimeError, match=name):
        torch.ops.fastgen.pixelcnn_generate_row(links, uniforms, w_h, b_h, w_res, b_res, masks, kwargs["cond"],
                                                kwargs["w_cond_h"], wh, bh, wo, bo, kwargs["levels"])
    w_cond_h = list(kwargs["w_cond_h"])
    w_cond_h[1] = w_cond_h[1][:, :1]
    with pytest.raises(ValueError, match=r"w_cond_h\[1\]"):
        ops.pixelcnn_generate_row(*args, **dict(kwargs, w_cond_h=w_cond_h))


def test_row_draws_the_boundaries_exactly():
    """Uniforms one float32 step either side of every boundary of the draw: the levels the rule
    gives (float32 cumulative sums drew hundreds of them wrong for 256 levels)."""
    args, kwargs, want = boundary_row_args()
    assert torch.equal(_reference(args, kwargs), want)
    assert torch.equal(ops.pixelcnn_generate_row(*args, **kwargs), want)
