"""Random WaveNet weights for the tests of the sampling step ops and of wavenet_generate (the C++
kernel and the Triton decoder)."""

from __future__ import annotations

import torch


def wavenet_params(c_res, c_gate, c_skip, k, c_cond=None, bias=True, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return (torch.randn(*shape, generator=g) * 0.5).to(dtype)

    p = dict(w_dilated=r(c_gate, c_res, k), b_dilated=r(c_gate) if bias else None, w_res=r(c_res, c_gate // 2),
             b_res=r(c_res) if bias else None, w_skip=r(c_skip, c_gate // 2), b_skip=r(c_skip) if bias else None)
    if c_cond:
        p["w_cond"] = r(c_gate, c_cond)
    return p


def generate_args(n=3, steps=9, dtype=torch.float64, cond_channels=0, seed=0, sizes=(5, 6, 7, 8, 9), k=2, bias=True):
    """A 4-layer categorical WaveNet's tensors for wavenet_generate (dilations 1, 2, 4, 1; kernel k);
    sizes = (C_res, C_gate, C_skip, hidden, levels); without biases when ``bias`` is false."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return (torch.randn(*shape, generator=g) * 0.5).to(dtype)

    dilations = [1, 2, 4, 1]
    c_res, c_gate, c_skip, hidden, levels = sizes
    layers = [wavenet_params(c_res, c_gate, c_skip, k, c_cond=cond_channels or None, bias=bias, dtype=dtype,
                             seed=seed + i)
              for i in range(len(dilations))]
    states = [torch.zeros(n, d * (k - 1), c_res, dtype=dtype) for d in dilations]
    kwargs = dict(cond=r(n, cond_channels, steps) if cond_channels else None,
                  w_cond=[p["w_cond"] for p in layers] if cond_channels else None)
    args = (states, r(n, c_res), torch.rand(n, steps, generator=g, dtype=dtype), r(levels, c_res),
            [p["w_dilated"] for p in layers], [p["b_dilated"] for p in layers], [p["w_res"] for p in layers],
            [p["b_res"] for p in layers], [p["w_skip"] for p in layers], [p["b_skip"] for p in layers], dilations,
            r(hidden, c_skip), r(hidden) if bias else None, r(levels, hidden), r(levels) if bias else None)
    return args, kwargs


def clone_states(args):
    """The arguments with fresh copies of the ring buffers (which wavenet_generate updates)."""
    return ([s.clone() for s in args[0]],) + args[1:]
