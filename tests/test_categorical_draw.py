"""The inverse-CDF draw every sampler shares (fastgen.reference.steps.categorical_draw), at the
uniforms where it is hardest to get right: one float32 step either side of a boundary
cdf_k / total. Just below boundary k the draw is level k, just above it level k + 1, whatever the
implementation; float32 cumulative sums (the fused samplers' old rule) missed hundreds of these
for 256 levels, and drew another level than the naive sampler about once in 40,000 draws.

Models with every weight zero but the output bias have the logits ``bias`` at every step in
every sampler, exactly, so naive, cached and fused sampling must all draw the expected levels.
"""

from __future__ import annotations

import pytest
import torch
from step_cases import boundary_uniforms

from fastgen.models import PixelCNN, WaveNet
from fastgen.reference.steps import categorical_draw


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_reference_draw_at_the_boundaries(levels):
    logits = torch.randn(levels, generator=torch.Generator().manual_seed(levels)) * 2
    u, want = boundary_uniforms(logits)
    assert torch.equal(categorical_draw(logits, u), want)
    # normalised or not, any dtype of the logits: the same rule
    assert torch.equal(categorical_draw(logits.double() + 3.0, u), want)
    assert categorical_draw(logits, torch.tensor([0.0, 1.0])).tolist() == [0, levels - 1]


def _output_bias_only(model: torch.nn.Module, bias: torch.Tensor) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.head_out.bias.copy_(bias)


@pytest.mark.parametrize("levels", [17, 256])
def test_wavenet_samplers_draw_the_boundaries_exactly(levels):
    torch.manual_seed(0)
    model = WaveNet(levels=levels, residual_channels=4, gate_channels=8, skip_channels=8, layers_per_stack=3,
                    stacks=1)
    bias = torch.randn(levels) * 2
    _output_bias_only(model, bias)
    u, want = boundary_uniforms(bias)
    u, want = u.view(2, -1), want.view(2, -1)  # 2 sequences; every step has the logits `bias`
    for kwargs in ({}, {"fused": False}, {"method": "naive"}):
        assert torch.equal(model.sample(2, uniforms=u, **kwargs), want), kwargs


@pytest.mark.parametrize("levels", [17, 256])
def test_pixelcnn_samplers_draw_the_boundaries_exactly(levels):
    torch.manual_seed(0)
    bias = torch.randn(levels) * 2
    u, want = boundary_uniforms(bias)
    width = 8
    pad = (-u.numel()) % width  # fill the last row with more of the same uniforms
    u, want = torch.cat([u, u[:pad]]), torch.cat([want, want[:pad]])
    model = PixelCNN((1, u.numel() // width, width), levels, channels=4, num_layers=2)
    _output_bias_only(model, bias)
    u, want = u.view(1, 1, -1, width), want.view(1, 1, -1, width)
    for kwargs in ({}, {"fused": False}, {"method": "naive"}):
        got = model.sample(1, uniforms=u, **kwargs)
        assert torch.equal(torch.round(got * (levels - 1)).long(), want), kwargs
