"""pixelcnn_generate_row (one PixelCNN image row per call) against its reference, the loop over
gated_pixelcnn_horizontal_step, the head and the draw; opcheck; bad arguments."""

from __future__ import annotations

import pytest
import torch

from fastgen import ops
from fastgen.reference import steps as reference_steps


def _row_args(n=2, c_img=1, c=4, kernels=(7, 3, 3), cond_features=0, levels=17, width=6, dtype=torch.float64,
              bias=True, seed=0):
    """(positional args of ops.pixelcnn_generate_row, its keyword args) for random weights."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.4):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    w_h, b_h, w_res, b_res, w_cond_h, masks = [], [], [], [], [], []
    for i, size in enumerate(kernels):
        c_in = c_img if i == 0 else c
        w_h.append(r(2 * c, c_in, 1, size // 2 + 1))
        b_h.append(r(2 * c) if bias else None)
        w_res.append(r(c, c))
        b_res.append(r(c) if bias else None)
        w_cond_h.append(r(2 * c, cond_features) if cond_features else None)
        masks.append("A" if i == 0 else "B")
    links = [r(n, 2 * c, width, scale=1.0) for _ in kernels]
    uniforms = torch.rand(n, c_img, width, generator=g, dtype=dtype)
    head = (r(16, c), r(16) if bias else None, r(c_img * levels, 16), r(c_img * levels) if bias else None)
    kwargs = dict(levels=levels, cond=r(n, cond_features, scale=1.0) if cond_features else None,
                  w_cond_h=w_cond_h if cond_features else None)
    return (links, uniforms, w_h, b_h, w_res, b_res, masks, *head), kwargs


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
    with pytest.raises(ValueError, match="dtype and device of uniforms"):
        ops.pixelcnn_generate_row(links, uniforms.double(), *args[2:], **kwargs)
    with pytest.raises(ValueError, match="cond and w_cond_h must be given together"):
        ops.pixelcnn_generate_row(*args, **dict(kwargs, cond=None))
    with pytest.raises(RuntimeError, match="sampling op without a gradient"):
        ops.pixelcnn_generate_row(links, uniforms, w_h, b_h, [w_res[0].requires_grad_(True)] + w_res[1:], b_res,
                                  masks, wh, bh, wo, bo, **kwargs)
    with pytest.raises(RuntimeError, match="links\\[1\\] must be"):
        torch.ops.fastgen.pixelcnn_generate_row([links[0], links[1][:, :, :3], links[2]], *op_args[1:])
