"""CUDA-only behaviour of the Gaussian ops: streams and CUDA graphs. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch
from gaussian_cases import as_float64, gaussian_inputs, reference_noise

from fastgen import _ext, ops, reference
from fastgen.ops._dispatch import use_kernel

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_a_gpu_kernel_is_registered():
    # Either the compiled CUDA kernels or Triton must serve CUDA tensors, never the reference.
    assert use_kernel("reparameterize_with_kl", torch.empty(1, device="cuda"))
    print("compiled CUDA kernels:", _ext.cuda_kernels())


def test_runs_on_the_current_stream():
    mu, logvar = gaussian_inputs((512, 1024), torch.float32, "cuda")
    seed = torch.tensor(21, device="cuda")
    expected = torch.ops.fastgen.reparameterize_with_kl(mu, logvar, None, seed)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        z, kl = torch.ops.fastgen.reparameterize_with_kl(mu, logvar, None, seed)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    assert torch.equal(z, expected[0]) and torch.equal(kl, expected[1])


def test_cuda_graph_replays_draw_fresh_noise_that_follows_the_stream():
    mu, logvar = gaussian_inputs((64, 300), torch.float32, "cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside capture, as torch.cuda.graphs requires
        for _ in range(2):
            ops.reparameterize_with_kl(mu, logvar)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        seed = ops.draw_seed(mu.device)
        z, kl = torch.ops.fastgen.reparameterize_with_kl(mu, logvar, None, seed)
    seen = []
    for _ in range(2):
        graph.replay()
        torch.cuda.synchronize()
        z_ref, kl_ref = reference.reparameterize_with_kl(*as_float64(mu, logvar), reference_noise(mu.shape, seed))
        torch.testing.assert_close(z.double().cpu(), z_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(kl.double().cpu(), kl_ref, rtol=1e-5, atol=1e-4)
        seen.append(z.clone())
    assert not torch.equal(seen[0], seen[1])


@pytest.mark.parametrize("shape", [(1, 10_000_000), (1_000_000, 1), (3, 4097)])
def test_extreme_aspect_ratios(shape):
    mu, logvar = gaussian_inputs(shape, torch.float32, "cuda")
    seed = torch.tensor(8, device="cuda")
    z, kl = torch.ops.fastgen.reparameterize_with_kl(mu, logvar, None, seed)
    z_ref, kl_ref = reference.reparameterize_with_kl(*as_float64(mu, logvar), reference_noise(shape, seed))
    torch.testing.assert_close(z.double().cpu(), z_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kl.double().cpu(), kl_ref, rtol=1e-5, atol=1e-3)
