"""The sampling step ops: wavenet_layer_step, gated_pixelcnn_vertical_step, gated_pixelcnn_horizontal_step.

Stepped through a whole sequence / image from a zeroed state, each must give what the
full-sequence fused op gives; the kernels must match the reference step by step (state
included); bad arguments are refused with the argument's name.
"""

from __future__ import annotations

import pytest
import torch

from fastgen import ops
from fastgen.reference import steps as reference_steps
from step_cases import boundary_generate_args as _boundary_generate_args
from step_cases import clone_states as _clone_states
from step_cases import generate_args as _generate_args
from step_cases import replaced as _replaced
from step_cases import wavenet_params as _wavenet_params

TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 3e-2, torch.bfloat16: 8e-2}


def _run_wavenet_steps(step_fn, x, p, dilation, cond=None):
    n, c_res, t_len = x.shape
    k = p["w_dilated"].shape[2]
    state = ops.wavenet_state(n, c_res, dilation, k, dtype=x.dtype)
    residuals, skips = [], []
    for t in range(t_len):
        r, s = step_fn(x[:, :, t], state, t, dilation=dilation, cond=None if cond is None else cond[:, :, t], **p)
        residuals.append(r)
        skips.append(s)
    return torch.stack(residuals, -1), torch.stack(skips, -1), state


@pytest.mark.parametrize("k,dilation", [(1, 1), (2, 1), (2, 4), (3, 2), (4, 3)])
@pytest.mark.parametrize("with_cond", [False, True])
def test_wavenet_steps_equal_the_full_layer(k, dilation, with_cond):
    x = torch.randn(3, 5, 17, dtype=torch.float64)
    p = _wavenet_params(5, 8, 6, k, c_cond=3 if with_cond else None)
    cond = torch.randn(3, 3, 17, dtype=torch.float64) if with_cond else None
    want_r, want_s = ops.wavenet_layer(x, **p, dilation=dilation, cond=cond)
    got_r, got_s, _ = _run_wavenet_steps(ops.wavenet_layer_step, x, p, dilation, cond)
    torch.testing.assert_close(got_r, want_r, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_s, want_s, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_wavenet_step_kernel_matches_reference_and_state(dtype):
    x = torch.randn(2, 4, 9).to(dtype)
    p = _wavenet_params(4, 6, 5, 2, bias=dtype != torch.float16, dtype=dtype, seed=1)

    def reference_step(x_t, state, t, *, dilation, cond, **q):
        return reference_steps.wavenet_layer_step(x_t, state, t, q["w_dilated"], q["b_dilated"], q["w_res"],
                                                  q["b_res"], q["w_skip"], q["b_skip"], dilation, cond)

    got_r, got_s, got_state = _run_wavenet_steps(ops.wavenet_layer_step, x, p, 3)
    want_r, want_s, want_state = _run_wavenet_steps(reference_step, x, p, 3)
    tol = TOL[dtype]
    torch.testing.assert_close(got_r, want_r, rtol=tol, atol=tol)
    torch.testing.assert_close(got_s, want_s, rtol=tol, atol=tol)
    assert torch.equal(got_state, want_state)  # the buffer holds copies of the inputs, exactly
    assert got_r.dtype == dtype and got_s.dtype == dtype


def test_wavenet_step_position_tensor_and_batch_one():
    x = torch.randn(1, 3, 6, dtype=torch.float64)
    p = _wavenet_params(3, 4, 2, 2)
    want_r, want_s = ops.wavenet_layer(x, **p, dilation=2)
    state = ops.wavenet_state(1, 3, 2, 2, dtype=torch.float64)
    position = torch.tensor(0)
    for t in range(6):
        r, s = ops.wavenet_layer_step(x[:, :, t], state, position, **p, dilation=2)
        torch.testing.assert_close(r, want_r[:, :, t])
        torch.testing.assert_close(s, want_s[:, :, t])
        position += 1


def _pixelcnn_layers(c_in, c, kernels, dtype=torch.float64, cond_features=None, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return (torch.randn(*shape, generator=g) * 0.4).to(dtype)

    layers = []
    for i, n in enumerate(kernels):
        cin = c_in if i == 0 else c
        k = n // 2
        p = dict(w_v=r(2 * c, cin, k + 1, n), b_v=r(2 * c), w_h=r(2 * c, cin, 1, k + 1), b_h=r(2 * c),
                 w_v2h=r(2 * c, 2 * c), b_v2h=r(2 * c), w_res=r(c, c), b_res=r(c))
        if cond_features:
            p["w_cond_v"], p["w_cond_h"] = r(2 * c, cond_features), r(2 * c, cond_features)
        layers.append((p, "A" if i == 0 else "B"))
    return layers


def _full_stack(image, layers, cond=None):
    v = h = image
    for p, mask in layers:
        v, h = ops.gated_pixelcnn_layer(v, h, **p, mask_type=mask, cond=cond)
    return h


def _cached_stack(image, layers, vertical, horizontal, cond=None):
    """h of the last layer, pixel by pixel with the row caches (what the model's sampler does)."""
    n, c_in, height, width = image.shape
    c = layers[0][0]["w_res"].shape[0]
    dtype = image.dtype
    v_states = [torch.zeros(n, p["w_v"].shape[1], p["w_v"].shape[2], width, dtype=dtype) for p, _ in layers]
    h_states = [torch.zeros(n, p["w_h"].shape[1], p["w_h"].shape[3], dtype=dtype) for p, _ in layers]
    links = [p["b_v2h"][None, :, None].expand(n, -1, width).contiguous() for p, _ in layers]
    out = torch.zeros(n, c, height, width, dtype=dtype)
    for i in range(height):
        for s in h_states:
            s.zero_()
        for j in range(width):
            x = image[:, :, i, j - 1] if j > 0 else torch.zeros(n, c_in, dtype=dtype)
            for (p, mask), state, link in zip(layers, h_states, links):
                x = horizontal(state, x, link[:, :, j], p["w_h"], p["b_h"], p["w_res"], p["b_res"], mask_type=mask,
                               cond=cond, w_cond_h=p.get("w_cond_h"))
            out[:, :, i, j] = x
        row = image[:, :, i]
        for layer, ((p, _), state) in enumerate(zip(layers, v_states)):
            row, links[layer] = vertical(state, row, p["w_v"], p["b_v"], p["w_v2h"], p["b_v2h"], cond=cond,
                                         w_cond_v=p.get("w_cond_v"))
    return out


@pytest.mark.parametrize("kernels", [(3, 3), (5, 3, 3), (1, 1), (7,)])
@pytest.mark.parametrize("with_cond", [False, True])
def test_pixelcnn_steps_equal_the_full_stack(kernels, with_cond):
    image = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    layers = _pixelcnn_layers(3, 4, kernels, cond_features=2 if with_cond else None)
    cond = torch.randn(2, 2, dtype=torch.float64) if with_cond else None
    want = _full_stack(image, layers, cond)
    got = _cached_stack(image, layers, ops.gated_pixelcnn_vertical_step, ops.gated_pixelcnn_horizontal_step, cond)
    torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-11)


def _kw_reference_vertical(state, row, w_v, b_v, w_v2h, b_v2h, *, cond, w_cond_v):
    return reference_steps.gated_pixelcnn_vertical_step(state, row, w_v, b_v, w_v2h, b_v2h, cond, w_cond_v)


def _kw_reference_horizontal(state, x, link, w_h, b_h, w_res, b_res, *, mask_type, cond, w_cond_h):
    return reference_steps.gated_pixelcnn_horizontal_step(state, x, link, w_h, b_h, w_res, b_res, mask_type, cond,
                                                          w_cond_h)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_pixelcnn_step_kernels_match_reference(dtype):
    image = torch.randn(2, 1, 4, 5).to(dtype)
    layers = _pixelcnn_layers(1, 4, (5, 3), dtype=dtype, seed=3)
    got = _cached_stack(image, layers, ops.gated_pixelcnn_vertical_step, ops.gated_pixelcnn_horizontal_step)
    want = _cached_stack(image, layers, _kw_reference_vertical, _kw_reference_horizontal)
    assert got.dtype == dtype
    torch.testing.assert_close(got, want, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("width,taps", [(1, 5), (6, 3), (2, 7)])
@pytest.mark.parametrize("biases,with_cond", [(True, True), (False, True), (False, False)])
def test_vertical_step_kernel_edges(width, taps, biases, with_cond):
    """Rows narrower than the kernel, each bias missing, conditioning without b_v: the
    reference's outputs and shifted state."""
    g = torch.Generator().manual_seed(width * 10 + taps)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    c_in, c, k = 3, 2, taps // 2
    args = dict(w_v=r(2 * c, c_in, k + 1, taps), b_v=r(2 * c) if biases else None, w_v2h=r(2 * c, 2 * c),
                b_v2h=r(2 * c) if biases else None, cond=r(2, 4) if with_cond else None,
                w_cond_v=r(2 * c, 4) if with_cond else None)
    state, row = r(2, c_in, k + 1, width), r(2, c_in, width)
    mine, theirs = state.clone(), state.clone()
    got = ops.gated_pixelcnn_vertical_step(mine, row, **args)
    want = reference_steps.gated_pixelcnn_vertical_step(theirs, row, *args.values())
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.equal(mine, theirs)


def test_mask_a_never_reads_its_current_pixel_tap():
    layers = _pixelcnn_layers(2, 3, (3,))
    p, _ = layers[0]
    state = torch.zeros(1, 2, 2, dtype=torch.float64)
    x, link = torch.randn(1, 2, dtype=torch.float64), torch.randn(1, 6, dtype=torch.float64)
    want = ops.gated_pixelcnn_horizontal_step(state.clone(), x, link, p["w_h"], p["b_h"], p["w_res"], p["b_res"],
                                              mask_type="A")
    poisoned = p["w_h"].clone()
    poisoned[..., -1] = float("nan")
    got = ops.gated_pixelcnn_horizontal_step(state.clone(), x, link, poisoned, p["b_h"], p["w_res"], p["b_res"],
                                             mask_type="A")
    torch.testing.assert_close(got, want)


def _opcheck_args():
    p = _wavenet_params(3, 4, 2, 2, c_cond=2, dtype=torch.float32)
    wave = (torch.randn(2, 3), torch.zeros(2, 2, 3), torch.tensor(1), p["w_dilated"], p["b_dilated"], p["w_res"],
            p["b_res"], p["w_skip"], p["b_skip"], 2, torch.randn(2, 2), p["w_cond"])
    (q, _), = _pixelcnn_layers(2, 2, (3,), dtype=torch.float32)
    vertical = (torch.randn(2, 2, 2, 5), torch.randn(2, 2, 5), q["w_v"], q["b_v"], q["w_v2h"], q["b_v2h"], None, None)
    horizontal = (torch.randn(2, 2, 2), torch.randn(2, 2), torch.randn(2, 4), q["w_h"], q["b_h"], q["w_res"],
                  q["b_res"], "B", None, None)
    return [("wavenet_layer_step", wave), ("gated_pixelcnn_vertical_step", vertical),
            ("gated_pixelcnn_horizontal_step", horizontal)]


@pytest.mark.parametrize("name,args", _opcheck_args(), ids=lambda v: v if isinstance(v, str) else "")
def test_opcheck(name, args):
    torch.library.opcheck(getattr(torch.ops.fastgen, name), args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_steps_refuse_inputs_that_require_grad():
    p = _wavenet_params(3, 4, 2, 2, dtype=torch.float32)
    p["w_dilated"].requires_grad_(True)
    with pytest.raises(RuntimeError, match="wavenet_layer_step.*torch.no_grad"):
        ops.wavenet_layer_step(torch.randn(1, 3), ops.wavenet_state(1, 3, 1), 0, **p, dilation=1)
    with torch.no_grad():
        ops.wavenet_layer_step(torch.randn(1, 3), ops.wavenet_state(1, 3, 1), 0, **p, dilation=1)


@pytest.mark.parametrize("change,match", [
    (dict(state=torch.zeros(1, 3, 3)), r"state must have shape \(N, dilation \* \(K - 1\), C_res\)"),
    (dict(state=torch.zeros(1, 3, 2).transpose(1, 2)), "state must be contiguous"),
    (dict(position=-1), "position must be >= 0"),
    (dict(position=1.5), "position must be an int"),
    (dict(position=torch.tensor([1])), "position must be an int or a 0-dim int64 tensor"),
    (dict(x=torch.randn(1, 3, 1)), r"x must have 2 dimensions \(N, C_res\)"),
    (dict(dilation=0), "dilation must be >= 1"),
    (dict(x=torch.randn(1, 3, dtype=torch.float64)), "w_dilated must have the dtype of x"),
    (dict(cond=torch.randn(1, 2)), "cond and w_cond must be given together"),
])
def test_wavenet_step_errors(change, match):
    p = _wavenet_params(3, 4, 2, 2, dtype=torch.float32)
    args = dict(x=torch.randn(1, 3), state=ops.wavenet_state(1, 3, 2), position=0, dilation=2)
    args.update(change)
    with pytest.raises((ValueError, TypeError), match=match):
        ops.wavenet_layer_step(args.pop("x"), args.pop("state"), args.pop("position"), **p, **args)


def test_pixelcnn_step_errors():
    (p, _), = _pixelcnn_layers(2, 2, (3,), dtype=torch.float32)
    with pytest.raises(ValueError, match=r"state must have shape \(N, C_in, k \+ 1, W\)"):
        ops.gated_pixelcnn_vertical_step(torch.zeros(1, 2, 3, 4), torch.randn(1, 2, 4), p["w_v"], p["b_v"],
                                         p["w_v2h"], p["b_v2h"])
    with pytest.raises(ValueError, match=r"w_v must have shape"):
        ops.gated_pixelcnn_vertical_step(torch.zeros(1, 2, 2, 4), torch.randn(1, 2, 4), p["w_v"][..., :2],
                                         p["b_v"], p["w_v2h"], p["b_v2h"])
    args = (torch.zeros(1, 2, 2), torch.randn(1, 2), torch.randn(1, 4), p["w_h"], p["b_h"], p["w_res"], p["b_res"])
    with pytest.raises(ValueError, match='mask_type must be "A" or "B"'):
        ops.gated_pixelcnn_horizontal_step(*args, mask_type="C")
    with pytest.raises(ValueError, match=r"link must have shape \(N, 2C\)"):
        ops.gated_pixelcnn_horizontal_step(args[0], args[1], torch.randn(1, 3), *args[3:])
    with pytest.raises(ValueError, match="cond and w_cond_h must be given together"):
        ops.gated_pixelcnn_horizontal_step(*args, cond=torch.randn(1, 2))


def test_direct_op_calls_check_their_arguments():
    p = _wavenet_params(3, 4, 2, 2, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="state must have shape"):
        torch.ops.fastgen.wavenet_layer_step(torch.randn(1, 3), torch.zeros(1, 5, 3), torch.tensor(0),
                                             p["w_dilated"], None, p["w_res"], None, p["w_skip"], None, 2, None, None)


@pytest.mark.parametrize("cond_channels", [0, 2])
@pytest.mark.parametrize("n", [1, 3, 9])  # one block shared by the threads; several blocks
def test_wavenet_generate_matches_the_reference_loop(cond_channels, n):
    args, kwargs = _generate_args(n=n, cond_channels=cond_channels)
    ref_args = _clone_states(args)
    got = ops.wavenet_generate(*args, **kwargs)
    want = reference_steps.wavenet_generate(*ref_args[:10], kwargs["w_cond"] or [None] * 4, *ref_args[10:],
                                            kwargs["cond"])
    assert got.dtype == torch.int64 and got.shape == (n, 9)
    assert torch.equal(got, want)
    assert got.unique().numel() > 2
    for a, b in zip(args[0], ref_args[0]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# float32 products run in register blocks of 64, 32 and 8 outputs, then one by one: sizes that
# cross every block boundary, an odd number of gates per half.
WIDE = (70, 2 * 37, 100, 72, 75)


@pytest.mark.parametrize("n", [1, 5])
def test_wavenet_generate_float32_matches_the_reference_at_wide_sizes(n):
    args, _ = _generate_args(n=n, steps=12, dtype=torch.float32, sizes=WIDE)
    args = args[:13] + (args[13] * 0.1,) + args[14:]  # smaller logits: many different codes drawn
    ref_args = _clone_states(args)
    got = ops.wavenet_generate(*args)
    want = reference_steps.wavenet_generate(*ref_args[:10], [None] * 4, *ref_args[10:], None)
    assert torch.equal(got, want)
    assert got.unique().numel() > 5
    for a, b in zip(args[0], ref_args[0]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # float32 sums in another order


def test_wavenet_generate_continues_from_its_states():
    args, _ = _generate_args(steps=10)
    whole = ops.wavenet_generate(*_clone_states(args))
    split = _clone_states(args)
    first = ops.wavenet_generate(split[0], split[1], split[2][:, :4], *split[3:])
    # The next call's input is the embedding of the last code; its position is 4.
    second = ops.wavenet_generate(split[0], split[3][first[:, -1]], split[2][:, 4:], *split[3:], start=4)
    assert torch.equal(torch.cat([first, second], 1), whole)


@pytest.mark.parametrize("n,sizes", [(2, (5, 6, 7, 8, 9)), (1, WIDE), (9, WIDE)])
def test_wavenet_generate_is_the_same_on_one_and_two_threads(n, sizes):
    """Two threads share a block (n < 8) or take whole blocks (n = 9): the same codes as one thread."""
    args, _ = _generate_args(n=n, steps=15, dtype=torch.float32, sizes=sizes)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.wavenet_generate(*_clone_states(args))
        torch.set_num_threads(2)
        two = ops.wavenet_generate(*_clone_states(args))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


@pytest.mark.parametrize("solo_at", ["0", "1", "7"])
def test_wavenet_generate_team_going_solo_mid_call_keeps_the_codes(monkeypatch, solo_at):
    """A two-thread team whose waits are slow (an oversubscribed machine) goes on with one thread
    at a step boundary; FASTGEN_DECODER_SOLO_AT_STEP forces the handover at a given step. The
    ring-buffer states and the codes are those of one thread throughout."""
    args, _ = _generate_args(n=3, steps=15, dtype=torch.float32, sizes=WIDE)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_states = _clone_states(args)
        one = ops.wavenet_generate(*one_states)
        torch.set_num_threads(2)
        monkeypatch.setenv("FASTGEN_DECODER_SOLO_AT_STEP", solo_at)
        handed_states = _clone_states(args)
        handed = ops.wavenet_generate(*handed_states)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, handed)
    for a, b in zip(one_states[0], handed_states[0]):
        assert torch.equal(a, b)


def test_wavenet_generate_opcheck_and_errors():
    args, _ = _generate_args(n=2, steps=3, dtype=torch.float32)
    op_args = args[:10] + ([None] * 4,) + args[10:] + (None, 0)
    torch.library.opcheck(torch.ops.fastgen.wavenet_generate, op_args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))
    with pytest.raises(ValueError, match="w_res must have one entry per layer"):
        ops.wavenet_generate(args[0], *args[1:6], args[6][:3], *args[7:])
    with pytest.raises(ValueError, match="start must be an int >= 0"):
        ops.wavenet_generate(*args, start=-1)
    with pytest.raises(TypeError, match="first_input must have a floating dtype"):
        ops.wavenet_generate(args[0], args[1].long(), *args[2:])
    with pytest.raises(RuntimeError, match=r"states\[1\] must be contiguous"):
        torch.ops.fastgen.wavenet_generate([args[0][0], torch.zeros(2, 5, 2).transpose(1, 2)] + args[0][2:],
                                           *op_args[1:])


# (argument index in ops.wavenet_generate's positional arguments, layer or None, bad value, what the
# error names); the model: 4 layers, C_res 5, C_gate 6, C_skip 7, hidden 8, levels 9, K 2.
_BAD_GENERATE_ARGS = [
    (5, 1, torch.zeros(5), r"b_dilated\[1\]|b_dilated"),
    (7, 2, torch.zeros(1), r"b_res\[2\]|b_res"),
    (9, 0, torch.zeros(8), r"b_skip\[0\]|b_skip"),
    (8, 3, torch.zeros(7, 2), r"w_skip\[3\]|w_skip"),
    (12, None, torch.zeros(2), "b_hidden"),
    (14, None, torch.zeros(200), "b_out"),
    (13, None, torch.zeros(0, 8), "w_out"),
    (3, None, torch.zeros(9, 4), "embedding"),
    (2, None, torch.zeros(3, 3), "uniforms"),
    (4, 1, torch.zeros(6, 5, 3), r"w_dilated\[1\]|every layer's w_dilated"),  # another K than layer 0
    (11, None, torch.zeros(8, 6), "w_hidden"),
]


@pytest.mark.parametrize("index, layer, value, names", _BAD_GENERATE_ARGS)
def test_wavenet_generate_checks_every_tensor_of_the_model(index, layer, value, names):
    """A mis-shaped bias or weight anywhere in the lists is an error naming it, from the function
    and from the op called directly, never an out-of-bounds read."""
    args, _ = _generate_args(n=2, steps=3, dtype=torch.float32)
    bad = _replaced(args, index, layer, value)
    with pytest.raises(ValueError, match=names):
        ops.wavenet_generate(*bad)
    op_args = bad[:10] + ([None] * 4,) + bad[10:] + (None, 0)
    with pytest.raises(RuntimeError, match=names):
        torch.ops.fastgen.wavenet_generate(*op_args)


def test_wavenet_generate_conditioning_and_positions_are_checked():
    args, kwargs = _generate_args(n=2, steps=3, dtype=torch.float32, cond_channels=3)
    w_cond = list(kwargs["w_cond"])
    w_cond[2] = w_cond[2][:, :1]
    with pytest.raises(ValueError, match="layer 2: w_cond"):
        ops.wavenet_generate(*args, cond=kwargs["cond"], w_cond=w_cond)
    op_args = args[:10] + (w_cond,) + args[10:] + (kwargs["cond"], 0)
    with pytest.raises(RuntimeError, match=r"w_cond\[2\] must have shape"):
        torch.ops.fastgen.wavenet_generate(*op_args)
    # start + t is a ring position: near 2**63 it would wrap negative and index before the buffer
    with pytest.raises(ValueError, match="start"):
        ops.wavenet_generate(*args, **kwargs, start=2**63 - 2)
    op_args = args[:10] + (kwargs["w_cond"],) + args[10:] + (kwargs["cond"], 2**63 - 2)
    with pytest.raises(RuntimeError, match="start"):
        torch.ops.fastgen.wavenet_generate(*op_args)


def test_a_huge_dilation_is_refused_not_wrapped():
    """dilation * (K - 1) beyond int64 would wrap (a 2**62 + 1 dilation with K = 5 wraps to 4) and
    make the kernels read the wrong taps: refused with an error naming the dilation."""
    p = _wavenet_params(3, 4, 2, 5, dtype=torch.float32)
    huge = 2**62 + 1
    with pytest.raises(ValueError, match="dilation"):
        ops.wavenet_layer_step(torch.randn(1, 3), torch.zeros(1, 4, 3), 0, **p, dilation=huge)
    with pytest.raises(RuntimeError, match="dilation"):
        torch.ops.fastgen.wavenet_layer_step(torch.randn(1, 3), torch.zeros(1, 4, 3), torch.tensor(0),
                                             p["w_dilated"], None, p["w_res"], None, p["w_skip"], None, huge,
                                             None, None)
    args, _ = _generate_args(n=1, steps=2, dtype=torch.float32)
    bad = _replaced(args, 10, 1, huge)
    with pytest.raises(ValueError, match="dilation"):
        ops.wavenet_generate(*bad)
    with pytest.raises(RuntimeError, match=r"dilations\[1\]"):
        torch.ops.fastgen.wavenet_generate(*(bad[:10] + ([None] * 4,) + bad[10:] + (None, 0)))


def test_inputs_sharing_memory_with_the_state_are_refused():
    """The steps update their state in place while reading the new input: an input that is a view
    of the state would be read half-updated."""
    (p, _), = _pixelcnn_layers(2, 2, (3,), dtype=torch.float32)
    state = torch.randn(1, 2, 2)
    link = torch.randn(1, 4)
    with pytest.raises(ValueError, match="new_input must not share memory with state"):
        ops.gated_pixelcnn_horizontal_step(state, state[:, :, 0], link, p["w_h"], p["b_h"], p["w_res"], p["b_res"])
    with pytest.raises(RuntimeError, match="new_input must not share memory with state"):
        torch.ops.fastgen.gated_pixelcnn_horizontal_step(state, state[:, :, 0], link, p["w_h"], p["b_h"], p["w_res"],
                                                         p["b_res"], "B", None, None)
    rows = torch.randn(1, 2, 2, 4)
    with pytest.raises(ValueError, match="new_row must not share memory with state"):
        ops.gated_pixelcnn_vertical_step(rows, rows[:, :, 1], p["w_v"], p["b_v"], p["w_v2h"], p["b_v2h"])
    w = _wavenet_params(3, 4, 2, 2, dtype=torch.float32)
    ring = torch.zeros(1, 2, 3)
    with pytest.raises(ValueError, match="x must not share memory with state"):
        ops.wavenet_layer_step(ring[:, 0], ring, 0, **w, dilation=2)
    # a copy is fine
    ops.gated_pixelcnn_horizontal_step(state, state[:, :, 0].clone(), link, p["w_h"], p["b_h"], p["w_res"], p["b_res"])


def test_public_steps_compile_with_fullgraph():
    """The public step functions (argument checks included) trace into one graph, and the compiled
    step updates its state in place as the eager one does."""
    w = _wavenet_params(3, 4, 2, 2, dtype=torch.float32)
    (p, _), = _pixelcnn_layers(2, 2, (3,), dtype=torch.float32)
    x, link, new_row = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 2, 5)
    cases = [
        (lambda s, t: ops.wavenet_layer_step(x, s, t, **w, dilation=2), torch.randn(2, 2, 3)),
        (lambda s, t: ops.gated_pixelcnn_vertical_step(s, new_row, p["w_v"], p["b_v"], p["w_v2h"], p["b_v2h"]),
         torch.randn(2, 2, 2, 5)),
        (lambda s, t: ops.gated_pixelcnn_horizontal_step(s, x[:, :2], link, p["w_h"], p["b_h"], p["w_res"],
                                                         p["b_res"]), torch.randn(2, 2, 2)),
    ]
    for step, state in cases:
        eager_state, compiled_state = state.clone(), state.clone()
        want = step(eager_state, 1)
        got = torch.compile(step, backend="aot_eager", fullgraph=True)(compiled_state, 1)
        for g, e in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            torch.testing.assert_close(g, e)
        torch.testing.assert_close(compiled_state, eager_state)
        assert not torch.equal(eager_state, state)  # the step did update it


@pytest.mark.parametrize("n", [1, 2])  # batch 1 splits every product between two threads
def test_wavenet_generate_draws_the_boundaries_exactly(n):
    """Uniforms one float32 step either side of every boundary of the draw: the levels the rule
    gives (float32 cumulative sums drew hundreds of them wrong for 256 levels)."""
    args, kwargs, want = _boundary_generate_args(n=n)
    assert torch.equal(ops.wavenet_generate(*args, **kwargs), want)
