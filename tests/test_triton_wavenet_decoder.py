"""The persistent Triton WaveNet decoder (wavenet_generate on CUDA) against the reference loop of
step ops: the same codes from the same uniforms, the ring buffers left in the same state.

Without a GPU the kernel runs on CPU tensors in Triton's interpreter (set up by
``triton_helpers``, imported before the kernels); with one it runs compiled on CUDA tensors.
"""

import pytest
import torch
from step_cases import boundary_generate_args, clone_states, generate_args, on_device
from triton_helpers import device  # noqa: F401 (a fixture)

from fastgen.ops._step_registration import cuda_decoder_built
from fastgen.ops.wavenet_generate import decoder_limits
from fastgen.reference import steps as ref
from fastgen.triton_kernels import wavenet_decoder as tk


def _run_both(args, kwargs, start=0):
    """(decoder codes, reference codes, decoder states, reference states) from copies of the states."""
    mine, theirs = clone_states(args), clone_states(args)
    w_cond = kwargs["w_cond"] or [None] * len(args[0])
    got = tk.wavenet_generate(*mine[:10], w_cond, *mine[10:], kwargs["cond"], start)
    want = ref.wavenet_generate(*theirs[:10], w_cond, *theirs[10:], kwargs["cond"], start)
    return got, want, mine[0], theirs[0]


@pytest.mark.parametrize("n,cond_channels,k,bias", [(1, 0, 2, True), (3, 2, 2, True), (2, 0, 3, False),
                                                   (2, 3, 1, True)])
def test_decoder_matches_the_reference_loop_float64(device, n, cond_channels, k, bias):
    args, kwargs = on_device(*generate_args(n=n, steps=8, cond_channels=cond_channels, k=k, bias=bias), device)
    got, want, states, ref_states = _run_both(args, kwargs)
    assert got.dtype == torch.int64 and got.shape == (n, 8)
    assert torch.equal(got, want)
    assert got.unique().numel() > 2
    for a, b in zip(states, ref_states):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_decoder_float32_wide_channels(device):
    """Channel counts past the 32-wide chunks, an odd gate half: the codes of the reference."""
    args, kwargs = on_device(*generate_args(n=2, steps=6, dtype=torch.float32, sizes=(40, 2 * 19, 70, 36, 33)), device)
    args = args[:13] + (args[13] * 0.1,) + args[14:]  # smaller logits: many different codes drawn
    got, want, states, ref_states = _run_both(args, kwargs)
    assert torch.equal(got, want)
    assert got.unique().numel() > 3
    for a, b in zip(states, ref_states):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_decoder_continues_from_its_states(device):
    args, kwargs = on_device(*generate_args(n=2, steps=8), device)
    whole, _, _, _ = _run_both(args, kwargs)
    split = clone_states(args)
    first = tk.wavenet_generate(split[0], split[1], split[2][:, :3], *split[3:10], [None] * 4, *split[10:], None, 0)
    second = tk.wavenet_generate(split[0], split[3][first[:, -1]], split[2][:, 3:], *split[3:10], [None] * 4,
                                 *split[10:], None, 3)
    assert torch.equal(torch.cat([first, second], 1), whole)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_decoder_half_precision_models(device, dtype):
    """Weights and rings in the model's dtype, running vectors in float32: the first draws agree
    with the reference (which rounds at every layer) except near ties."""
    args, kwargs = on_device(*generate_args(n=8, steps=2, dtype=dtype), device)
    got, want, states, _ = _run_both(args, kwargs)
    assert got.dtype == torch.int64 and states[0].dtype == dtype
    assert (got[:, 0] == want[:, 0]).sum() >= 6


@pytest.mark.skipif(cuda_decoder_built(), reason="this build decodes with the CUDA kernel on CUDA (its limits: "
                    "test_wavenet_decoder_cuda.py)")
def test_decoder_limits_name_what_is_too_wide():
    sizes = {"residual": 64, "gate": 64, "skip": 256, "hidden": 256, "levels": 256, "cond": 0}
    assert decoder_limits(torch.device("cuda"), sizes) is None
    assert decoder_limits(torch.device("cpu"), dict(sizes, levels=65536)) is None  # the C++ kernel takes any size
    why = decoder_limits(torch.device("cuda"), dict(sizes, levels=65536))
    assert why is not None and "levels" in why and "1024" in why


def test_decoder_refuses_a_model_too_wide(device):
    args, kwargs = on_device(*generate_args(n=1, steps=1, dtype=torch.float32, sizes=(5, 6, 1100, 8, 9)), device)
    with pytest.raises(ValueError, match="skip"):
        tk.wavenet_generate(*args[:10], [None] * 4, *args[10:], None, 0)


def test_decoder_draws_the_boundaries_exactly(device):
    """Uniforms one float32 step either side of every boundary of the draw: the levels the rule
    gives (float32 cumulative sums drew hundreds of them wrong for 256 levels)."""
    args, kwargs, want = boundary_generate_args(every=8)  # 64 draws: the interpreter is slow
    args, kwargs = on_device(args, kwargs, device)
    got, ref_codes, _, _ = _run_both(args, kwargs)
    assert torch.equal(ref_codes.cpu(), want)
    assert torch.equal(got.cpu(), want)
