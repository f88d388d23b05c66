"""The persistent CUDA WaveNet decoders (kernels/wavenet/, wavenet_generate on CUDA builds): one
block per sample, and a thread-block cluster per sample (FASTGEN_DECODER_CLUSTER).

Everywhere: their block programs run on the CPU in an emulation (tests/decoder_emulation.py: the
kernels' own source, a thread per CUDA thread, real barriers, each block's shared memory
addressable by the others) against the reference loop of step ops, with every split of the
weights between shared and global memory; the weight packing and shared-memory plans are
checked directly. With a GPU and a CUDA build, the compiled kernel runs
against the CPU kernel and the model's step-op sampler.
"""

import pytest
import torch
from decoder_emulation import build, dims, generate_cluster
from decoder_emulation import generate as emulate
from step_cases import boundary_generate_args, clone_states, generate_args, on_device

from fastgen import _ext
from fastgen.ops import _wavenet_decoder_cuda as cuda_decoder
from fastgen.reference import steps as ref


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    library = build(tmp_path_factory.mktemp("decoder_emulator"))
    if library is None:
        pytest.skip("needs g++ to build the emulation")
    return library


def _reference(args, kwargs, start=0):
    theirs = clone_states(args)
    w_cond = kwargs["w_cond"] or [None] * len(args[0])
    return ref.wavenet_generate(*theirs[:10], w_cond, *theirs[10:], kwargs["cond"], start), theirs[0]


def _shape(args, kwargs):
    return cuda_decoder.shape_of(args[0], args[4], args[8], args[11], args[13], kwargs["cond"])


@pytest.mark.parametrize("n,cond_channels,k,bias", [(1, 0, 2, True), (2, 3, 2, True), (2, 0, 3, False),
                                                   (2, 2, 1, True)])
def test_emulated_kernel_matches_the_reference_float64(lib, n, cond_channels, k, bias):
    args, kwargs = generate_args(n=n, steps=8, cond_channels=cond_channels, k=k, bias=bias)
    mine = clone_states(args)
    got = emulate(lib, *mine, **kwargs)
    want, ref_states = _reference(args, kwargs)
    assert torch.equal(got, want)
    assert got.unique().numel() > 1
    for a, b in zip(mine[0], ref_states):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threads", [32, 96])
def test_emulated_kernel_float32_wide_channels(lib, threads):
    """Channel counts past one 32-lane pass, an odd gate half, 33 levels (two scan chunks), one
    and three warps: the codes of the reference."""
    args, kwargs = generate_args(n=2, steps=6, dtype=torch.float32, sizes=(40, 2 * 19, 70, 36, 33))
    args = args[:13] + (args[13] * 0.1,) + args[14:]  # smaller logits: many different codes drawn
    mine = clone_states(args)
    got = emulate(lib, *mine, **kwargs, threads=threads)
    want, ref_states = _reference(args, kwargs)
    assert torch.equal(got, want)
    assert got.unique().numel() > 3
    for a, b in zip(mine[0], ref_states):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_weights_in_shared_or_global_memory_give_the_same_bits(lib):
    """Every prefix the plan can choose (nothing, some layers, every layer, every layer and the head)."""
    args, kwargs = generate_args(n=2, steps=7, cond_channels=2)
    shape = _shape(args, kwargs)
    layer = shape.layer_elems()
    runs = []
    for resident in (0, layer, 3 * layer, shape.head_offset(), shape.weight_elems()):
        mine = clone_states(args)
        runs.append((emulate(lib, *mine, **kwargs, resident_elems=resident), mine[0]))
    for codes, states in runs[1:]:
        assert torch.equal(codes, runs[0][0])
        assert all(torch.equal(a, b) for a, b in zip(states, runs[0][1]))


def test_emulated_kernel_continues_from_its_states(lib):
    args, _ = generate_args(n=2, steps=8)
    whole = emulate(lib, *clone_states(args))
    split = clone_states(args)
    first = emulate(lib, split[0], split[1], split[2][:, :3], *split[3:])
    second = emulate(lib, split[0], split[3][first[:, -1]], split[2][:, 3:].contiguous(), *split[3:], start=3)
    assert torch.equal(torch.cat([first, second], 1), whole)


def test_emulated_draw_at_the_ends_of_the_unit_interval(lib):
    """u = 0 draws the first level with mass, u = 1 the last: the reference's rule at its edges."""
    args, kwargs = generate_args(n=2, steps=4, sizes=(5, 6, 7, 8, 40))
    uniforms = torch.tensor([[0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.5]], dtype=torch.float64)
    args = args[:2] + (uniforms,) + args[3:]
    got = emulate(lib, *clone_states(args))
    want, _ = _reference(args, kwargs)
    assert torch.equal(got, want)
    assert got[0, 1] == 39 and got[0, 0] == 0


@pytest.mark.parametrize("cluster,cond_channels,k,resident_layers,head", [
    (2, 0, 2, None, True), (3, 3, 2, 2, False), (5, 0, 3, 0, False), (4, 2, 1, None, True)])
def test_emulated_cluster_kernel_matches_the_reference_float64(lib, cluster, cond_channels, k, resident_layers,
                                                               head):
    """Clusters with more blocks than some matrices have rows (a gate of 3 units over 4 or 5
    blocks), every layer's slice on chip or some or none, the head's or not."""
    args, kwargs = generate_args(n=2, steps=6, cond_channels=cond_channels, k=k)
    mine = clone_states(args)
    got = generate_cluster(lib, *mine, **kwargs, cluster=cluster, resident_layers=resident_layers,
                           head_resident=head)
    want, ref_states = _reference(args, kwargs)
    assert torch.equal(got, want)
    for a, b in zip(mine[0], ref_states):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_emulated_cluster_kernel_float32_wide_channels(lib):
    args, kwargs = generate_args(n=1, steps=5, dtype=torch.float32, sizes=(40, 2 * 19, 70, 36, 33))
    args = args[:13] + (args[13] * 0.1,) + args[14:]
    mine = clone_states(args)
    got = generate_cluster(lib, *mine, **kwargs, cluster=3, threads=64)
    want, ref_states = _reference(args, kwargs)
    assert torch.equal(got, want)
    for a, b in zip(mine[0], ref_states):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_emulated_cluster_kernel_continues_from_its_states(lib):
    args, _ = generate_args(n=1, steps=8)
    whole = generate_cluster(lib, *clone_states(args), cluster=2)
    split = clone_states(args)
    first = generate_cluster(lib, split[0], split[1], split[2][:, :3], *split[3:], cluster=2)
    second = generate_cluster(lib, split[0], split[3][first[:, -1]], split[2][:, 3:].contiguous(), *split[3:],
                              start=3, cluster=2)
    assert torch.equal(torch.cat([first, second], 1), whole)


def test_packed_weights_follow_the_kernel_layout():
    args, kwargs = generate_args(n=1, steps=1, cond_channels=3, k=3)
    (_, _, _, _, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, _, w_hidden, b_hidden, w_out, b_out) = args
    shape = _shape(args, kwargs)
    packed = cuda_decoder.pack_weights(shape, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, kwargs["w_cond"],
                                       w_hidden, b_hidden, w_out, b_out)
    assert packed.shape == (shape.weight_elems(),)
    h, s, head = shape.hidden, shape.skip, shape.head_offset()
    assert packed[head + 5] == w_hidden.reshape(-1)[5]
    assert packed[head + h * s + 2] == b_hidden[2] and packed[head + h * s + h + 3] == w_out.reshape(-1)[3]
    assert packed[-1] == b_out[-1]
    r, g, k = shape.residual, shape.gate, shape.kernel_size
    inputs = k * r + shape.cond
    base = 2 * shape.layer_elems()  # layer 2
    j, c, tap = 5, 4, 1
    assert packed[base + j * inputs + tap * r + c] == w_dilated[2][j, c, tap]
    assert packed[base + j * inputs + k * r + 2] == kwargs["w_cond"][2][j, 2]
    b_gate = base + 2 * g * inputs
    assert packed[b_gate + j] == b_dilated[2][j]
    w_rs = b_gate + 2 * g
    assert packed[w_rs + 1 * g + 2] == w_res[2][1, 2]
    assert packed[w_rs + (r + 5) * g + 1] == w_skip[2][5, 1]
    assert packed[w_rs + (r + s) * g + r + 5] == b_skip[2][5]


@pytest.mark.parametrize("dtype,acc_bytes,scalar_bytes", [(torch.float32, 4, 4), (torch.float64, 8, 8),
                                                          (torch.float16, 4, 2)])
def test_python_plan_mirrors_the_kernel_layout(lib, dtype, acc_bytes, scalar_bytes):
    shapes = [cuda_decoder.Shape(30, 2, 64, 64, 256, 256, 256, 0), cuda_decoder.Shape(3, 3, 5, 3, 7, 9, 11, 4)]
    for shape in shapes:
        for resident in (0, 1, 7, shape.head_elems(), shape.weight_elems()):
            sizes = dims(shape)
            assert cuda_decoder.smem_bytes(shape, acc_bytes, scalar_bytes, resident) == \
                lib.wavenet_decoder_smem_bytes(sizes.data_ptr(), acc_bytes, scalar_bytes, resident)


@pytest.mark.parametrize("cluster", [2, 3, 16])
def test_python_cluster_plan_mirrors_the_kernel_layout(lib, cluster):
    for shape in (cuda_decoder.Shape(30, 2, 64, 64, 256, 256, 256, 0), cuda_decoder.Shape(3, 3, 5, 3, 7, 9, 11, 4)):
        sizes = dims(shape)
        for acc_bytes, scalar_bytes in ((4, 4), (4, 2), (8, 8)):
            for layers, head in ((0, False), (1, False), (shape.layers, True)):
                assert cuda_decoder.cluster_smem_bytes(shape, cluster, acc_bytes, scalar_bytes, layers, head) == \
                    lib.wavenet_decoder_cluster_smem_bytes(sizes.data_ptr(), cluster, acc_bytes, scalar_bytes,
                                                           layers, int(head))


def test_cluster_plan_spreads_the_benchmark_model_over_the_blocks():
    shape = cuda_decoder.Shape(30, 2, 64, 64, 256, 256, 256, 0)
    h100 = 227 * 1024
    layers, head = cuda_decoder.plan_cluster(shape, torch.float32, h100, 16)
    assert 0 < layers < 30 and not head  # 16 blocks hold most, not all, of the float32 layers
    assert cuda_decoder.cluster_smem_bytes(shape, 16, 4, 4, layers, False) <= h100
    assert cuda_decoder.cluster_smem_bytes(shape, 16, 4, 4, layers + 1, False) > h100
    assert cuda_decoder.plan_cluster(shape, torch.float16, h100, 16) == (30, True)
    assert cuda_decoder.plan_cluster(shape, torch.float32, h100, 2)[0] < layers
    assert "shared memory" in cuda_decoder.plan_cluster(shape, torch.float32, 8 * 1024, 16)


def test_cluster_size_comes_from_the_environment(monkeypatch):
    assert cuda_decoder.cluster_size() == 0
    monkeypatch.setenv("FASTGEN_DECODER_CLUSTER", "8")
    assert cuda_decoder.cluster_size() == 8
    for bad in ("1", "17", "x"):
        monkeypatch.setenv("FASTGEN_DECODER_CLUSTER", bad)
        with pytest.raises(ValueError, match="FASTGEN_DECODER_CLUSTER"):
            cuda_decoder.cluster_size()


def test_plan_keeps_whole_layers_then_the_head_on_chip():
    shape = cuda_decoder.Shape(30, 2, 64, 64, 256, 256, 256, 0)  # the benchmark's 2 x 15-layer model
    h100 = 227 * 1024
    resident = cuda_decoder.plan(shape, torch.float16, h100)
    layers_on_chip = resident / shape.layer_elems()
    assert layers_on_chip == int(layers_on_chip) and 0 < layers_on_chip < 30
    assert cuda_decoder.smem_bytes(shape, 4, 2, resident) <= h100
    assert cuda_decoder.smem_bytes(shape, 4, 2, resident + shape.layer_elems()) > h100
    assert cuda_decoder.plan(shape, torch.float32, h100) < resident  # twice the bytes per weight
    small = cuda_decoder.Shape(4, 2, 8, 8, 16, 16, 17, 0)
    assert cuda_decoder.plan(small, torch.float32, h100) == small.weight_elems()
    assert cuda_decoder.plan(small, torch.float32, 1024) == 0  # vectors only
    why = cuda_decoder.plan(shape, torch.float32, 8 * 1024)
    assert isinstance(why, str) and "shared memory" in why


def test_threads_come_from_the_environment(monkeypatch):
    assert cuda_decoder.threads() == cuda_decoder.DEFAULT_THREADS
    monkeypatch.setenv("FASTGEN_DECODER_THREADS", "128")
    assert cuda_decoder.threads() == 128
    for bad in ("100", "0", "1024", "many"):
        monkeypatch.setenv("FASTGEN_DECODER_THREADS", bad)
        with pytest.raises(ValueError, match="FASTGEN_DECODER_THREADS"):
            cuda_decoder.threads()


# ---------------------------------------------------------------- the compiled kernel on a GPU
needs_cuda_decoder = pytest.mark.skipif(not (torch.cuda.is_available() and _ext.has_op("wavenet_decoder_cuda")),
                                        reason="needs a GPU and a CUDA build of fastgen")


def _assert_cuda_matches_cpu(args, kwargs, dtype):
    """wavenet_generate on CUDA (the compiled decoder) gives the CPU kernel's codes and states."""
    from fastgen import ops

    on_cpu = clone_states(args)
    on_gpu, gpu_kwargs = on_device(clone_states(args), kwargs, "cuda")
    want = ops.wavenet_generate(*on_cpu, **kwargs)
    got = ops.wavenet_generate(*on_gpu, **gpu_kwargs)
    assert torch.equal(got.cpu(), want)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for a, b in zip(on_gpu[0], on_cpu[0]):
        torch.testing.assert_close(a.cpu(), b, rtol=tol, atol=tol)


@needs_cuda_decoder
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cond_channels,k", [(0, 2), (3, 3)])
def test_cuda_kernel_matches_the_cpu_kernel(dtype, cond_channels, k):
    _assert_cuda_matches_cpu(*generate_args(n=3, steps=12, dtype=dtype, cond_channels=cond_channels, k=k), dtype)


@needs_cuda_decoder
def test_cuda_model_sampling_uses_the_kernel_and_matches_the_step_ops():
    from fastgen.models import WaveNet

    torch.manual_seed(0)
    model = WaveNet(layers_per_stack=4, stacks=1, residual_channels=16, gate_channels=32, skip_channels=32).double().cuda()
    u = torch.rand(2, 40, dtype=torch.float64, device="cuda")
    fused = model.sample(2, 40, uniforms=u, fused=True)
    steps = model.sample(2, 40, uniforms=u, fused=False)
    assert torch.equal(fused, steps)


@needs_cuda_decoder
def test_decoder_limits_follow_the_shared_memory_plan():
    from fastgen.ops.wavenet_generate import decoder_limits

    sizes = {"residual": 64, "gate": 64, "skip": 256, "hidden": 256, "levels": 256, "cond": 0, "layers": 30,
             "kernel_size": 2}
    assert decoder_limits(torch.device("cuda"), sizes) is None
    why = decoder_limits(torch.device("cuda"), dict(sizes, levels=1 << 17))
    assert why is not None and "shared memory" in why


@needs_cuda_decoder
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] < 9,
                    reason="thread-block clusters need sm_90+")
@pytest.mark.parametrize("cluster", [2, 8])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_cluster_kernel_matches_the_cpu_kernel(monkeypatch, cluster, dtype):
    monkeypatch.setenv("FASTGEN_DECODER_CLUSTER", str(cluster))
    _assert_cuda_matches_cpu(*generate_args(n=3, steps=12, dtype=dtype, cond_channels=2), dtype)


@pytest.mark.parametrize("cluster", [None, 2])
def test_emulated_draw_at_the_boundaries(lib, cluster):
    """Uniforms one float32 step either side of every boundary of the draw: the levels the rule
    gives (float32 cumulative sums drew hundreds of them wrong for 256 levels)."""
    args, _, want = boundary_generate_args(every=8)  # 64 draws: the emulation is slow
    if cluster is None:
        got = emulate(lib, *clone_states(args))
    else:
        got = generate_cluster(lib, *clone_states(args), cluster=cluster)
    assert torch.equal(got, want)
