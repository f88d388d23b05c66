"""Triton kernels of the sampling steps (wavenet_layer_step, gated_pixelcnn_horizontal_step)
against the plain-PyTorch reference, state updates included.

Without a GPU the kernels run on CPU tensors in Triton's interpreter (set up by ``triton_helpers``,
imported before the kernels); with one they run compiled on CUDA tensors.
"""

import pytest
import torch
from triton_helpers import DTYPES, device  # noqa: F401 (device: a fixture)

from fastgen.reference import steps as ref
from fastgen.triton_kernels import steps as tk

TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 6e-2}


def _rnd(g, dtype, device, *shape, scale=0.5):
    return (torch.randn(*shape, generator=g) * scale).to(dtype=dtype, device=device)


# (N, C_res, C_gate, C_skip, K, dilation, C_cond)
WAVENET_SHAPES = [(2, 5, 6, 7, 2, 3, 0), (1, 3, 4, 2, 1, 1, 2), (3, 40, 70, 33, 3, 2, 3)]


@pytest.mark.parametrize("shape", WAVENET_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_wavenet_step_sequence_matches_reference(device, shape, dtype):
    n, c_res, c_gate, c_skip, k, dilation, c_cond = shape
    g = torch.Generator().manual_seed(0)
    w = dict(w_dilated=_rnd(g, dtype, device, c_gate, c_res, k), b_dilated=_rnd(g, dtype, device, c_gate),
             w_res=_rnd(g, dtype, device, c_res, c_gate // 2), b_res=_rnd(g, dtype, device, c_res),
             w_skip=_rnd(g, dtype, device, c_skip, c_gate // 2),
             b_skip=None if c_cond else _rnd(g, dtype, device, c_skip))
    w_cond = _rnd(g, dtype, device, c_gate, c_cond) if c_cond else None
    length = dilation * (k - 1)
    states = [torch.zeros(n, length, c_res, dtype=dtype, device=device) for _ in range(2)]
    for t in range(2 * length + 3):
        x = _rnd(g, dtype, device, n, c_res, scale=1.0)
        cond = _rnd(g, dtype, device, n, c_cond) if c_cond else None
        got = tk.wavenet_layer_step(x, states[0], torch.tensor(t, device=device), w["w_dilated"], w["b_dilated"],
                                    w["w_res"], w["b_res"], w["w_skip"], w["b_skip"], dilation, cond, w_cond)
        want = ref.wavenet_layer_step(x, states[1], t, w["w_dilated"], w["b_dilated"], w["w_res"], w["b_res"],
                                      w["w_skip"], w["b_skip"], dilation, cond, w_cond)
        for a, b in zip(got, want):
            assert a.dtype == dtype
            torch.testing.assert_close(a, b, rtol=TOL[dtype], atol=TOL[dtype])
        assert torch.equal(states[0], states[1])


# (N, C_in, C, taps, mask, D)
PIXEL_SHAPES = [(2, 3, 4, 2, "A", 0), (2, 4, 4, 2, "B", 2), (1, 1, 5, 4, "A", 0), (3, 40, 40, 3, "B", 3),
                (2, 2, 3, 1, "A", 0)]


@pytest.mark.parametrize("shape", PIXEL_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_horizontal_step_sequence_matches_reference(device, shape, dtype):
    n, c_in, c, taps, mask, d = shape
    g = torch.Generator().manual_seed(1)
    w_h, b_h = _rnd(g, dtype, device, 2 * c, c_in, 1, taps), _rnd(g, dtype, device, 2 * c)
    w_res, b_res = _rnd(g, dtype, device, c, c), (None if d else _rnd(g, dtype, device, c))
    w_cond = _rnd(g, dtype, device, 2 * c, d) if d else None
    states = [torch.zeros(n, c_in, taps, dtype=dtype, device=device) for _ in range(2)]
    for _ in range(taps + 2):
        x, link = _rnd(g, dtype, device, n, c_in, scale=1.0), _rnd(g, dtype, device, n, 2 * c)
        cond = _rnd(g, dtype, device, n, d) if d else None
        got = tk.gated_pixelcnn_horizontal_step(states[0], x, link, w_h, b_h, w_res, b_res, mask, cond, w_cond)
        want = ref.gated_pixelcnn_horizontal_step(states[1], x, link, w_h, b_h, w_res, b_res, mask, cond, w_cond)
        assert got.dtype == dtype
        torch.testing.assert_close(got, want, rtol=TOL[dtype], atol=TOL[dtype])
        assert torch.equal(states[0], states[1])
