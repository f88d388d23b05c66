"""Plain-PyTorch versions of the sampling step ops (one time step / one pixel / one row).

Each updates its ``state`` in place exactly as the kernels do and returns what they return.
float16/bfloat16 are computed in float32 and rounded once, like the kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_HALF = (torch.float16, torch.bfloat16)


def categorical_draw(log_mass: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The inverse-CDF draw of every sampler: the first level whose cumulative mass exceeds ``u``
    times the total; (..., levels) log-masses (logits: normalised or not), (...) uniforms ->
    int64 (...), at most levels - 1.

    Computed in float64 whatever the dtypes, in this order: mass_i = exp(l_i - max l), the
    cumulative sums in level order, the threshold ``u * (last sum)``. The fused samplers' kernels
    (C++, CUDA, Triton) draw with the same float64 rule: with float32 cumulative sums the
    rounding alone made the fused WaveNet decoder draw another level about once in 40,000 draws.
    """
    log_mass = log_mass.double()
    mass = torch.exp(log_mass - log_mass.amax(-1, keepdim=True))
    cdf = torch.cumsum(mass, dim=-1)
    below = cdf < u.double()[..., None] * cdf[..., -1:]
    return below.sum(-1).clamp_max(log_mass.shape[-1] - 1)


def _flat(weight: torch.Tensor | None) -> torch.Tensor | None:
    """A 1x1 convolution weight (C_out, C_in[, 1[, 1]]) as (C_out, C_in)."""
    return None if weight is None else weight.reshape(weight.shape[0], -1)


def _acc(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` in the accumulation dtype (float32 for float16/bfloat16)."""
    return None if t is None else (t.float() if t.dtype in _HALF else t)


def _gate(pre: torch.Tensor, dim: int = 1) -> torch.Tensor:
    half = pre.shape[dim] // 2
    a, b = pre.split(half, dim)
    return torch.tanh(a) * torch.sigmoid(b)


def _linear(t: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """t (N, C_in) -> (N, C_out) with weight (C_out, C_in)."""
    out = t @ weight.t()
    return out if bias is None else out + bias


def wavenet_layer_step(x: torch.Tensor, state: torch.Tensor, position: int | torch.Tensor, w_dilated: torch.Tensor,
                       b_dilated: torch.Tensor | None, w_res: torch.Tensor, b_res: torch.Tensor | None,
                       w_skip: torch.Tensor, b_skip: torch.Tensor | None, dilation: int,
                       cond: torch.Tensor | None = None, w_cond: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """One time step ``t = position`` of a WaveNet layer; ``state`` is its ring buffer of inputs.

    x (N, C_res) is the layer's input at time t; state (N, L, C_res) with L = dilation * (K - 1)
    holds the input of time t' in slot t' mod L. Tap k of the dilated convolution reads time
    t - (K - 1 - k) * dilation (x itself for k = K - 1); then x is written to slot t mod L. ::

        h = b_dilated + sum_k w_dilated[:, :, k] @ tap_k [+ w_cond @ cond]
        z = tanh(h[:, :C_gate/2]) * sigmoid(h[:, C_gate/2:])
        residual_out = x + w_res @ z + b_res,   skip = w_skip @ z + b_skip
    """
    k_taps = w_dilated.shape[2]
    length = state.shape[1]
    position = int(position)
    xs = _acc(x)
    h = xs @ _acc(w_dilated[:, :, k_taps - 1]).t()
    for k in range(k_taps - 1):
        slot = (position - (k_taps - 1 - k) * dilation) % length
        h = h + _acc(state[:, slot]) @ _acc(w_dilated[:, :, k]).t()
    if b_dilated is not None:
        h = h + _acc(b_dilated)
    if cond is not None:
        h = h + _acc(cond) @ _acc(_flat(w_cond)).t()
    z = _gate(h)
    residual = xs + _linear(z, _acc(_flat(w_res)), _acc(b_res))
    skip = _linear(z, _acc(_flat(w_skip)), _acc(b_skip))
    if length:
        state[:, position % length] = x
    return residual.to(x.dtype), skip.to(x.dtype)


def gated_pixelcnn_vertical_step(state: torch.Tensor, new_row: torch.Tensor, w_v: torch.Tensor,
                                 b_v: torch.Tensor | None, w_v2h: torch.Tensor, b_v2h: torch.Tensor | None,
                                 cond: torch.Tensor | None = None, w_cond_v: torch.Tensor | None = None
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The vertical stack of a Gated PixelCNN layer for one new image row.

    state (N, C_in, k + 1, W) holds the last k + 1 rows of the vertical input (oldest first;
    zeros above the image). The rows move up by one and ``new_row`` (N, C_in, W) becomes the
    last; then for that row ::

        v_pre = conv(state, w_v, columns j - k .. j + k) + b_v [+ w_cond_v @ cond]   (N, 2C, W)
        v_out = tanh(v_pre[:, :C]) * sigmoid(v_pre[:, C:])                          (N, C, W)
        link  = w_v2h @ v_pre + b_v2h                                              (N, 2C, W)

    ``link`` is what the horizontal stack of the next row adds at each column.
    """
    state[:, :, :-1] = state[:, :, 1:].clone()
    state[:, :, -1] = new_row
    k = w_v.shape[3] // 2
    rows = _acc(state)
    v_pre = F.conv2d(F.pad(rows, (k, k)), _acc(w_v), _acc(b_v))[:, :, 0]
    if cond is not None:
        v_pre = v_pre + (_acc(cond) @ _acc(w_cond_v).t())[:, :, None]
    v_out = _gate(v_pre)
    link = torch.einsum("oc,ncw->now", _acc(_flat(w_v2h)), v_pre)
    if b_v2h is not None:
        link = link + _acc(b_v2h)[:, None]
    return v_out.to(new_row.dtype), link.to(new_row.dtype)


def gated_pixelcnn_horizontal_step(state: torch.Tensor, new_input: torch.Tensor, link: torch.Tensor,
                                   w_h: torch.Tensor, b_h: torch.Tensor | None, w_res: torch.Tensor,
                                   b_res: torch.Tensor | None, mask_type: str, cond: torch.Tensor | None = None,
                                   w_cond_h: torch.Tensor | None = None) -> torch.Tensor:
    """The horizontal stack of a Gated PixelCNN layer at one pixel.

    state (N, C_in, k + 1) holds the last k + 1 horizontal inputs of the current row (zeros
    before column 0). They move left by one and ``new_input`` (N, C_in) becomes the last: the
    newest input the output may see, i.e. the input at the output's column for mask "B" and at
    the column before it for mask "A". ::

        h_pre = sum_t w_h[..., t] @ window_t + b_h + link [+ w_cond_h @ cond]    (N, 2C)
        h_out = w_res @ (tanh(h_pre[:, :C]) * sigmoid(h_pre[:, C:])) + b_res [+ new_input if "B"]

    with window_t = state[..., t] for t = 0..k (mask "B"), and state[..., t + 1] for t = 0..k-1
    (mask "A", whose current-pixel tap w_h[..., k] is not used). ``link`` (N, 2C) is the
    vertical stack's link of the row above at this column.
    """
    state[:, :, :-1] = state[:, :, 1:].clone()
    state[:, :, -1] = new_input
    taps = w_h.shape[3]
    window = _acc(state) if mask_type == "B" else _acc(state[:, :, 1:])
    weight = _acc(w_h[:, :, 0]) if mask_type == "B" else _acc(w_h[:, :, 0, : taps - 1])
    h_pre = torch.einsum("oct,nct->no", weight, window) + _acc(link)
    if b_h is not None:
        h_pre = h_pre + _acc(b_h)
    if cond is not None:
        h_pre = h_pre + _acc(cond) @ _acc(w_cond_h).t()
    out = _linear(_gate(h_pre), _acc(_flat(w_res)), _acc(b_res))
    if mask_type == "B":
        out = out + _acc(new_input)
    return out.to(new_input.dtype)


def wavenet_generate(states: list[torch.Tensor], first_input: torch.Tensor, uniforms: torch.Tensor,
                     embedding: torch.Tensor, w_dilated: list[torch.Tensor], b_dilated: list[torch.Tensor | None],
                     w_res: list[torch.Tensor], b_res: list[torch.Tensor | None], w_skip: list[torch.Tensor],
                     b_skip: list[torch.Tensor | None], w_cond: list[torch.Tensor | None], dilations: list[int],
                     w_hidden: torch.Tensor, b_hidden: torch.Tensor | None, w_out: torch.Tensor,
                     b_out: torch.Tensor | None, cond: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
    """A whole categorical WaveNet for T = uniforms.shape[1] steps: codes (N, T) int64.

    Step t (position start + t) runs every layer with :func:`wavenet_layer_step` (input:
    ``first_input`` at t = 0, then the embedding of the previous code), sums the skips, applies
    relu -> w_hidden -> relu -> w_out and draws the code whose cumulative softmax mass first
    exceeds ``uniforms[:, t]`` (:func:`categorical_draw`).
    """
    n, steps = uniforms.shape
    codes = torch.zeros(n, steps, dtype=torch.long, device=uniforms.device)
    x_in = first_input
    for t in range(steps):
        x, skips = x_in, 0
        c_t = None if cond is None else cond[:, :, t]
        for layer, state in enumerate(states):
            x, skip = wavenet_layer_step(x, state, start + t, w_dilated[layer], b_dilated[layer], w_res[layer],
                                         b_res[layer], w_skip[layer], b_skip[layer], dilations[layer], c_t,
                                         w_cond[layer])
            skips = skips + skip
        logits = _linear(torch.relu(_linear(torch.relu(skips), _flat(w_hidden), b_hidden)), _flat(w_out), b_out)
        code = categorical_draw(logits, uniforms[:, t])
        codes[:, t] = code
        x_in = embedding[code]
    return codes


def pixelcnn_generate_row(links: list[torch.Tensor], uniforms: torch.Tensor, w_h: list[torch.Tensor],
                          b_h: list[torch.Tensor | None], w_res: list[torch.Tensor], b_res: list[torch.Tensor | None],
                          mask_types: list[str], cond: torch.Tensor | None, w_cond_h: list[torch.Tensor | None],
                          w_hidden: torch.Tensor, b_hidden: torch.Tensor | None, w_out: torch.Tensor,
                          b_out: torch.Tensor | None, levels: int) -> torch.Tensor:
    """One image row of a categorical Gated PixelCNN: int64 levels (N, C_img, W).

    Left to right, pixel j: the first layer's horizontal input is the network input 2 v - 1 of
    the values v = level / (levels - 1) drawn at pixel j - 1 (zeros at j = 0); every layer runs
    :func:`gated_pixelcnn_horizontal_step` from zeroed row caches with ``links[l][:, :, j]``; the
    head is ``w_out @ relu(w_hidden @ relu(h) + b_hidden) + b_out`` viewed as (N, C_img, levels),
    and channel c takes the first level whose cumulative softmax mass exceeds ``uniforms[:, c, j]``
    (:func:`categorical_draw`).
    """
    n, c_img, width = uniforms.shape
    states = [uniforms.new_zeros(n, w.shape[1], w.shape[3]) for w in w_h]
    codes = torch.zeros(n, c_img, width, dtype=torch.long, device=uniforms.device)
    x = uniforms.new_zeros(n, c_img)
    for j in range(width):
        h = x
        for layer, state in enumerate(states):
            h = gated_pixelcnn_horizontal_step(state, h, links[layer][:, :, j], w_h[layer], b_h[layer], w_res[layer],
                                               b_res[layer], mask_types[layer], cond, w_cond_h[layer])
        logits = _linear(torch.relu(_linear(torch.relu(h), _flat(w_hidden), b_hidden)), _flat(w_out), b_out)
        code = categorical_draw(logits.view(n, c_img, levels), uniforms[:, :, j])
        codes[:, :, j] = code
        x = 2.0 * (code.to(uniforms.dtype) / (levels - 1)) - 1.0
    return codes
