"""PixelCNN and WaveNet: exact normalisation, cached sampling equal to naive sampling given the
same uniforms, conditioning, defaults and argument errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from fastgen.models import PixelCNN, WaveNet
from fastgen.ops.pixelcnn_generate import row_sampler_limits


def _randomise(model: torch.nn.Module, seed: int, scale: float = 0.4) -> torch.nn.Module:
    """Larger random weights than the default init, so the distributions are far from uniform."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return model


def _tiny_pixelcnn(output="categorical", num_classes=None, dtype=torch.float64, seed=0):
    model = PixelCNN((2, 3, 4), levels=7, channels=6, num_layers=3, first_kernel_size=3, output=output,
                     mixtures=2, num_classes=num_classes)
    return _randomise(model.to(dtype), seed)


def _tiny_wavenet(output="categorical", cond=False, classes=False, dtype=torch.float64, seed=0):
    model = WaveNet(levels=11, residual_channels=6, gate_channels=8, skip_channels=5, kernel_size=2,
                    layers_per_stack=3, stacks=2, output=output, mixtures=2, cond_channels=3 if cond else None,
                    cond_hop=4, num_classes=3 if classes else None, class_embedding=2)
    return _randomise(model.to(dtype), seed)


@pytest.mark.parametrize("output", ["categorical", "logistic_mixture"])
@pytest.mark.parametrize("conditional", [False, True])
def test_pixelcnn_cached_equals_naive_bit_for_bit_in_float64(output, conditional):
    model = _tiny_pixelcnn(output, 4 if conditional else None)
    u = torch.rand(5, 2, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3, 1]) if conditional else None
    naive = model.sample(5, y=y, method="naive", uniforms=u)
    cached = model.sample(5, y=y, uniforms=u)  # cached is the default (fused rows where available)
    steps = model.sample(5, y=y, uniforms=u, fused=False)  # one step op per layer and pixel
    assert torch.equal(naive, cached) and torch.equal(naive, steps)
    assert naive.unique().numel() > 3  # the draws really vary


def test_pixelcnn_cached_equals_naive_class_indices_in_float32():
    model = PixelCNN((1, 6, 6), levels=17, channels=16, num_layers=4)
    _randomise(model, 3, 0.2)
    u = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    naive = model.sample(8, method="naive", uniforms=u)
    cached = model.sample(8, method="cached", uniforms=u, fused=True)
    steps = model.sample(8, method="cached", uniforms=u, fused=False)
    assert torch.equal(torch.round(naive * 16), torch.round(cached * 16))
    assert torch.equal(torch.round(naive * 16), torch.round(steps * 16))


def test_pixelcnn_fused_rows_fall_back_with_a_log_line(caplog):
    model = _tiny_pixelcnn("logistic_mixture")
    with pytest.raises(ValueError, match="fused=True, but the fused row sampler cannot run here"):
        model.sample(1, fused=True)
    with caplog.at_level("INFO", logger="fastgen.models.pixelcnn"):
        x = model.sample(2)
    assert x.shape == (2, 2, 3, 4)
    assert "categorical output" in caplog.text and "step ops" in caplog.text
    bf16 = _tiny_pixelcnn(dtype=torch.bfloat16)
    with caplog.at_level("INFO", logger="fastgen.models.pixelcnn"):
        bf16.sample(2)
    assert "float32 and float64" in caplog.text


@pytest.mark.parametrize("output", ["categorical", "logistic_mixture"])
def test_pixelcnn_likelihood_sums_to_one_over_all_images(output):
    model = _randomise(PixelCNN((1, 2, 2), levels=3, channels=4, num_layers=2, first_kernel_size=3, output=output,
                                mixtures=2).double(), 5)
    images = torch.tensor(list(itertools.product(range(3), repeat=4)), dtype=torch.float64).view(-1, 1, 2, 2) / 2
    total = model.log_prob(images).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64), rtol=1e-10, atol=1e-10)
    levels = (images * 2).round().to(torch.uint8)  # the same images as integer levels, as the data holds them
    torch.testing.assert_close(model.log_prob(levels), model.log_prob(images), rtol=0, atol=0)
    torch.testing.assert_close(model.bits_per_dim(levels.long()), model.bits_per_dim(images), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"x must hold integer levels in \[0, 2\]"):
        model.log_prob(levels + 1)
    # Float images of another dtype are taken in the model's (a float32 model, float64 data).
    single = model.float()
    torch.testing.assert_close(single.log_prob(images), single.log_prob(images.float()), rtol=0, atol=0)


def test_pixelcnn_samples_follow_the_model():
    """Sampling draws from the model's own conditionals: a 1-pixel image's histogram matches p."""
    model = _randomise(PixelCNN((1, 1, 1), levels=5, channels=4, num_layers=1, first_kernel_size=1).double(), 7)
    x = model.sample(20000, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(torch.round(x.flatten() * 4).long(), minlength=5).double() / 20000
    p = model.log_prob(torch.arange(5, dtype=torch.float64).view(5, 1, 1, 1) / 4).exp()
    torch.testing.assert_close(freq, p, atol=0.015, rtol=0)


@pytest.mark.parametrize("output", ["categorical", "logistic_mixture"])
@pytest.mark.parametrize("cond,classes", [(False, False), (True, True)])
def test_wavenet_cached_equals_naive_bit_for_bit_in_float64(output, cond, classes):
    model = _tiny_wavenet(output, cond, classes)
    g = torch.Generator().manual_seed(4)
    length = 3 * model.receptive_field  # the naive sampler's window slides
    u = torch.rand(3, length, dtype=torch.float64, generator=g)
    c = torch.randn(3, 3, -(-length // 4), dtype=torch.float64, generator=g) if cond else None
    y = torch.tensor([2, 0, 1]) if classes else None
    naive = model.sample(3, length, cond=c, y=y, method="naive", uniforms=u)
    cached = model.sample(3, length, cond=c, y=y, uniforms=u)  # fused decoder where available
    steps = model.sample(3, length, cond=c, y=y, uniforms=u, fused=False)  # one step op per layer
    assert naive.dtype == torch.int64 and naive.shape == (3, length)
    assert torch.equal(naive, cached) and torch.equal(naive, steps)
    assert naive.unique().numel() > 4


def test_wavenet_cached_equals_naive_class_indices_in_float32():
    model = WaveNet(levels=256, residual_channels=16, gate_channels=32, skip_channels=32, layers_per_stack=4, stacks=1)
    _randomise(model, 8, 0.15)
    u = torch.rand(4, 40, generator=torch.Generator().manual_seed(3))
    naive = model.sample(4, 40, method="naive", uniforms=u)
    assert torch.equal(naive, model.sample(4, 40, uniforms=u, fused=True))
    assert torch.equal(naive, model.sample(4, 40, uniforms=u, fused=False))


def test_wavenet_fused_decoder_fallback_is_logged(caplog):
    model = _tiny_wavenet("logistic_mixture")
    with caplog.at_level("INFO", logger="fastgen.models.wavenet"):
        model.sample(1, 3)
    assert "sampling with the per-layer step ops" in caplog.text and "categorical" in caplog.text
    with pytest.raises(ValueError, match="fused=True, but the fused decoder cannot run here"):
        model.sample(1, 3, fused=True)


@pytest.mark.parametrize("output", ["categorical", "logistic_mixture"])
def test_wavenet_likelihood_sums_to_one_over_all_sequences(output):
    model = _randomise(WaveNet(levels=3, residual_channels=4, gate_channels=4, skip_channels=3, layers_per_stack=2,
                               stacks=1, output=output, mixtures=2).double(), 9)
    seqs = torch.tensor(list(itertools.product(range(3), repeat=4)))
    total = model.log_prob(seqs).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64), rtol=1e-10, atol=1e-10)


def test_wavenet_prediction_does_not_see_the_present_or_future():
    model = _tiny_wavenet()
    x = torch.randint(0, 11, (1, 20))
    base = model(x)
    changed = x.clone()
    changed[0, 10] = (x[0, 10] + 1) % 11
    diff = (model(changed) - base).abs().amax(-1)[0]
    assert torch.all(diff[:11] == 0)  # outputs up to t = 10 predict x[t] from x[< t]
    assert diff[11] > 0


def test_wavenet_local_and_global_conditioning_change_the_distribution():
    model = _tiny_wavenet(cond=True, classes=True)
    x = torch.randint(0, 11, (2, 16))
    c = torch.randn(2, 3, 4, dtype=torch.float64)
    base = model.log_prob(x, c, torch.tensor([0, 1]))
    assert not torch.allclose(base, model.log_prob(x, c, torch.tensor([2, 2])))
    assert not torch.allclose(base, model.log_prob(x, c + 1, torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="cond is required"):
        model.log_prob(x, None, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="y is required"):
        model.log_prob(x, c)
    with pytest.raises(ValueError, match=r"cond must have shape \(2, 3, >= 4\)"):
        model.log_prob(x, c[:, :, :3], torch.tensor([0, 1]))


def test_default_models_and_the_benchmark_wavenet():
    pixel, wave = PixelCNN(), WaveNet()
    assert pixel.data_shape == (1, 8, 8) and pixel.levels == 17
    assert wave.levels == 256 and wave.receptive_field == 511
    assert pixel.sample(2).shape == (2, 1, 8, 8)
    assert wave.sample(2, 10).shape == (2, 10)
    big = WaveNet(residual_channels=64, gate_channels=128, skip_channels=256, layers_per_stack=15, stacks=2)
    assert max(layer.dilation for layer in big.layers) == 16384 and big.receptive_field == 65535
    assert PixelCNN(**pixel.config()).config() == pixel.config()
    assert WaveNet(**wave.config()).config() == wave.config()


def test_sampling_argument_errors():
    pixel, wave = _tiny_pixelcnn(), _tiny_wavenet()
    with pytest.raises(ValueError, match=r"uniforms must have shape \(2, 2, 3, 4\)"):
        pixel.sample(2, uniforms=torch.rand(2, 2, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="uniforms must lie in"):
        wave.sample(1, 3, uniforms=torch.full((1, 3), 1.5, dtype=torch.float64))
    for model, shape in ((wave, (1, 3)), (pixel, (2, 2, 3, 4))):  # NaN compares false both ways
        uniforms = torch.rand(shape, dtype=torch.float64)
        uniforms.view(-1)[1] = float("nan")
        with pytest.raises(ValueError, match="uniforms must lie in"):
            model.sample(shape[0], *shape[1:2] if model is wave else (), uniforms=uniforms)
    with pytest.raises(ValueError, match="method must be one of"):
        wave.sample(1, 3, method="fast")
    with pytest.raises(ValueError, match='fused=True applies to method="cached"'):
        pixel.sample(1, method="naive", fused=True)
    with pytest.raises(ValueError, match='cuda_graph=True applies to method="cached"'):
        wave.sample(1, 3, method="naive", cuda_graph=True)
    assert wave.sample(1, 3, method="naive", fused=False).shape == (1, 3)  # declining is no contradiction
    with pytest.raises(ValueError, match="length must be an int >= 1"):
        wave.sample(1, 0)
    with pytest.raises(ValueError, match="y must be None"):
        pixel.sample(1, y=0)
    with pytest.raises(ValueError, match="x must hold codes in"):
        wave.log_prob(torch.tensor([[0, 11]]))
    with pytest.raises(ValueError, match="x must hold codes in"):
        wave.log_prob(torch.tensor([[0, 200]], dtype=torch.uint8))
    uint8_codes = torch.randint(0, 11, (2, 1, 6), dtype=torch.uint8)  # the AudioData layout
    torch.testing.assert_close(wave.log_prob(uint8_codes), wave.log_prob(uint8_codes[:, 0].long()))
    with pytest.raises(TypeError, match="x must be an integer tensor"):
        wave.log_prob(torch.rand(1, 4))
    # PixelCNN: images on the grid of its levels only (not clamped and rounded into one)
    for value in (-5.0, 0.1, float("nan")):
        with pytest.raises(ValueError, match="x must hold images in"):
            pixel.log_prob(torch.full((1, 2, 3, 4), value, dtype=torch.float64))
    with pytest.raises(ValueError, match="layers_per_stack = 64"):
        WaveNet(layers_per_stack=64)
    with pytest.raises(ValueError, match=r"context must hold codes in \[0, 10\]"):
        wave.next_params(torch.tensor([[0, 99]]))
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        wave.sample(1, 3, generator="seed")
    with pytest.raises(TypeError, match="fused must be True or False"):
        pixel.sample(1, fused="yes")
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2, 3, 4\)"):
        pixel.log_prob(torch.rand(1, 1, 3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        PixelCNN(kernel_size=4)
    with pytest.raises(ValueError, match="gate_channels must be even"):
        WaveNet(gate_channels=5)
    with pytest.raises(ValueError, match="output must be one of"):
        WaveNet(output="gaussian")


def test_wavenet_sample_length_defaults():
    """Without ``length``: the width of ``uniforms``, else what ``cond`` covers, else one second."""
    wave = _tiny_wavenet()
    u = torch.rand(2, 7, dtype=torch.float64)
    assert torch.equal(wave.sample(2, uniforms=u), wave.sample(2, 7, uniforms=u))
    conditioned = _tiny_wavenet(cond=True)
    cond = torch.randn(2, 3, 3, dtype=torch.float64)
    assert conditioned.sample(2, cond=cond).shape == (2, 3 * conditioned.cond_hop)
    wave.sample_rate = 5
    assert wave.sample(1).shape == (1, 5)


def test_wavenet_local_conditioning_at_the_frame_or_the_sample_rate():
    """With cond_hop = 4 a cond as long as the audio is read at the sample rate; a shorter one
    as frames: the two spellings of the same conditioning give the same model."""
    torch.manual_seed(0)
    model = _tiny_wavenet(cond=True).eval()
    x = torch.randint(0, model.levels, (2, 10))
    frames = torch.randn(2, 3, 3, dtype=torch.float64)
    per_sample = frames.repeat_interleave(model.cond_hop, dim=2)[:, :, :10]
    torch.testing.assert_close(model.log_prob(x, cond=frames), model.log_prob(x, cond=per_sample))
    u = torch.rand(2, 10, dtype=torch.float64)
    assert torch.equal(model.sample(2, 10, cond=frames, uniforms=u), model.sample(2, 10, cond=per_sample, uniforms=u))
    with pytest.raises(ValueError, match=r"cond must have shape \(2, 3, >= 3\).*or \(2, 3, >= 10\) at the sample"):
        model.log_prob(x, cond=frames[:, :, :2])


def test_sampling_keeps_the_training_mode():
    model = _tiny_wavenet()
    model.train()
    model.sample(1, 4)
    assert model.training


def test_cuda_graph_needs_a_cuda_device():
    with pytest.raises(ValueError, match="cuda_graph=True needs the model on a CUDA device"):
        _tiny_wavenet().sample(1, 3, cuda_graph=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("conditioned", [False, True])
def test_cuda_samplers_draw_the_step_loop_codes(conditioned):
    """On CUDA: the step-op loop, that loop captured in a CUDA graph, the persistent Triton decoder
    (the default cached sampler there) and the naive sampler draw the same codes."""
    model = _tiny_wavenet(cond=conditioned, classes=conditioned, dtype=torch.float32).cuda()
    u = torch.rand(3, 50, device="cuda", generator=torch.Generator(device="cuda").manual_seed(0))
    c = torch.randn(3, 3, 13, device="cuda") if conditioned else None
    y = torch.tensor([0, 1, 2], device="cuda") if conditioned else None
    steps = model.sample(3, 50, cond=c, y=y, uniforms=u, fused=False)
    graphed = model.sample(3, 50, cond=c, y=y, uniforms=u, cuda_graph=True)
    fused = model.sample(3, 50, cond=c, y=y, uniforms=u, fused=True)
    naive = model.sample(3, 50, cond=c, y=y, uniforms=u, method="naive")
    assert torch.equal(graphed, steps) and torch.equal(fused, steps) and torch.equal(naive, steps)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_pixelcnn_fused_rows_draw_the_step_loop_values():
    """On CUDA the default cached PixelCNN sampler is the Triton row kernel: the step-op images."""
    model = _tiny_pixelcnn("categorical", 4, dtype=torch.float32).cuda()
    u = torch.rand(5, 2, 3, 4, device="cuda", generator=torch.Generator(device="cuda").manual_seed(1))
    y = torch.tensor([0, 1, 2, 3, 1], device="cuda")
    fused = model.sample(5, y=y, uniforms=u, fused=True)
    assert torch.equal(fused, model.sample(5, y=y, uniforms=u, fused=False))
    assert torch.equal(fused, model.sample(5, y=y, uniforms=u, method="naive"))


def test_row_sampler_limits_name_the_problem():
    w = [torch.zeros(8, 1, 1, 4), torch.zeros(8, 4, 1, 2)]
    assert row_sampler_limits(torch.device("cpu"), w, ["A", "A"], 16, 17) is None  # the C++ kernel takes any stack
    assert "mask 'B'" in row_sampler_limits(torch.device("cuda"), w, ["A", "A"], 16, 17)


def test_bfloat16_models_sample_with_the_fused_decoder():
    """A bfloat16 model keeps its weights in bfloat16 in the fused decoder and rounds where the step
    ops round, so both samplers start out drawing the same codes (they drift apart once a draw's
    bfloat16 rounding differs: the draw itself is computed in float32 by the decoder)."""
    model = WaveNet(levels=256, residual_channels=16, gate_channels=32, skip_channels=32, layers_per_stack=4, stacks=1)
    _randomise(model, 8, 0.15)
    model = model.to(torch.bfloat16)
    u = torch.rand(8, 6, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
    fused = model.sample(8, 6, uniforms=u, fused=True)
    steps = model.sample(8, 6, uniforms=u, fused=False)
    assert fused.dtype == torch.int64 and int(fused.min()) >= 0 and int(fused.max()) < 256
    assert (fused[:, 0] == steps[:, 0]).sum() >= 6
