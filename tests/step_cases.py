"""Random WaveNet and PixelCNN weights for the tests of the sampling ops: the step ops,
wavenet_generate and pixelcnn_generate_row (C++ kernels and Triton)."""

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


def row_args(n=2, c_img=1, c=4, kernels=(7, 3, 3), cond_features=0, levels=17, width=6, dtype=torch.float64,
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


def on_device(args, kwargs, device):
    """Positional and keyword arguments with every tensor (also inside lists) moved to ``device``."""
    def move(v):
        if isinstance(v, torch.Tensor):
            return v.to(device)
        if isinstance(v, list):
            return [t.to(device) if isinstance(t, torch.Tensor) else t for t in v]
        return v

    return tuple(move(a) for a in args), {k: move(v) for k, v in kwargs.items()}


def replaced(args, index, layer, value):
    """``args`` with entry ``layer`` of the list at ``index`` (or the tensor there, for layer None) replaced."""
    args = list(args)
    if layer is None:
        args[index] = value
    else:
        args[index] = list(args[index])
        args[index][layer] = value
    return tuple(args)


def boundary_uniforms(logits):
    """(float32 uniforms one step below and above every boundary cdf_k / total of the draw from
    ``logits`` (levels,), the levels the draw must give them: k just below, k + 1 just above)."""
    mass = torch.exp(logits.double() - logits.double().max())
    ratios = (mass.cumsum(0)[:-1] / mass.sum()).float()
    below = torch.nextafter(ratios, torch.zeros_like(ratios))
    above = torch.nextafter(ratios, torch.ones_like(ratios))
    k = torch.arange(logits.numel() - 1)
    return torch.cat([below, above]), torch.cat([k, k + 1])


def zeroed(value):
    """A copy of sampler arguments (tensors, lists of them, other values kept) with every tensor zero."""
    if isinstance(value, (list, tuple)):
        return type(value)(zeroed(v) for v in value)
    return torch.zeros_like(value) if isinstance(value, torch.Tensor) else value


def _boundaries(levels, every):
    """(logits b_out (levels,), every ``every``-th of their boundary uniforms, the levels drawn)."""
    bias = torch.randn(levels, generator=torch.Generator().manual_seed(levels)) * 2
    u, want = boundary_uniforms(bias)
    return bias, u[::every], want[::every]


def boundary_generate_args(levels=256, n=2, every=1):
    """float32 wavenet_generate arguments whose every step draws from the logits b_out, with
    (every ``every``-th of the) boundary uniforms, (n, T), and the codes the draw must give."""
    bias, u, want = _boundaries(levels, every)
    args, kwargs = generate_args(n=n, steps=u.numel() // n, dtype=torch.float32, sizes=(5, 6, 7, 8, levels))
    u, want = u[:n * (u.numel() // n)], want[:n * (u.numel() // n)]
    args = zeroed(args)  # every weight zero: the logits are the output bias b_out
    args = args[:2] + (u.view(n, -1),) + args[3:14] + (bias,)
    return args, kwargs, want.view(n, -1)


def boundary_row_args(levels=256, n=2, every=1):
    """float32 pixelcnn_generate_row arguments whose every pixel draws from the logits b_out, with
    (every ``every``-th of the) boundary uniforms, (n, 1, W), and the levels the draw must give."""
    bias, u, want = _boundaries(levels, every)
    args, kwargs = row_args(n=n, levels=levels, width=u.numel() // n, dtype=torch.float32)
    u, want = u[:n * (u.numel() // n)], want[:n * (u.numel() // n)]
    args = zeroed(args)  # every weight zero: the logits are the output bias b_out
    args = args[:1] + (u.view(n, 1, -1),) + args[2:10] + (bias,)
    return args, kwargs, want.view(n, 1, -1)
