"""Second derivatives: the fused backward kernels have none, so differentiating their gradients
again (after ``create_graph=True``) raises an error naming the op instead of silently giving
zeros; the first-order gradients themselves are unchanged by ``create_graph=True``."""

import pytest
import torch

from fastgen import _ext, ops

pytestmark = pytest.mark.skipif(not _ext.has_op("masked_conv2d"), reason="needs the compiled extension")


def _rnd(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def _cases():
    x4, w3, ch = _rnd(2, 4, 5, 5), _rnd(4, 4, 3, 3), _rnd(4)
    x3, w1 = _rnd(2, 4, 9), _rnd(6, 4, 2)
    wave = [_rnd(8, 4, 2), _rnd(8), _rnd(4, 4), _rnd(4), _rnd(5, 4), _rnd(5)]
    pixel = [_rnd(8, 4, 2, 3), None, _rnd(8, 4, 1, 2), None, _rnd(8, 8), None, _rnd(4, 4), None]
    mu = _rnd(3, 5)
    matrix = torch.eye(4, dtype=torch.float64) + 0.1 * _rnd(4, 4)
    conditioner = [_rnd(6, 4, 3, 3), _rnd(6), _rnd(6, 6, 1, 1), _rnd(6), _rnd(4, 6, 3, 3), _rnd(4)]
    return {
        "masked_conv2d": (lambda: ops.masked_conv2d(x4, w3, ch, mask_type="B"), x4),
        "causal_conv1d": (lambda: ops.causal_conv1d(x3, w1, dilation=2), x3),
        "wavenet_layer": (lambda: ops.wavenet_layer(x3, *wave, dilation=2), x3),
        "gated_pixelcnn_layer": (lambda: ops.gated_pixelcnn_layer(x4, x4, *pixel, mask_type="B"), x4),
        "reparameterize": (lambda: ops.reparameterize(mu, mu, eps=torch.ones(3, 5, dtype=torch.float64)), mu),
        "gaussian_kl": (lambda: ops.gaussian_kl(mu, mu), mu),
        "standard_normal_log_prob": (lambda: ops.standard_normal_log_prob(mu), mu),
        "affine_coupling": (lambda: ops.affine_coupling(x4, x4, x4, scale="sigmoid"), x4),
        "actnorm": (lambda: ops.actnorm(x4, ch, ch), x4),
        "invertible_conv1x1": (lambda: ops.invertible_conv1x1(x4, matrix), x4),
        "conv_conditioner": (lambda: ops.conv_conditioner(x4, *conditioner), x4),
    }


def _scalar(out):
    outs = out if isinstance(out, tuple) else (out,)
    return sum((o.square() if i == 0 else o).sum() for i, o in enumerate(outs))


@pytest.mark.parametrize("name", list(_cases()))
def test_second_derivative_raises_naming_the_op(name):
    fn, x = _cases()[name]
    first, = torch.autograd.grad(_scalar(fn()), x)
    graph, = torch.autograd.grad(_scalar(fn()), x, create_graph=True)
    assert torch.equal(graph.detach(), first)  # create_graph changes nothing in the first derivative
    with pytest.raises(RuntimeError, match=f"fastgen::{name} has no second derivative"):
        graph.square().sum().backward()


def test_additive_coupling_has_its_exact_second_derivative():
    x, shift = _rnd(2, 3, 4), _rnd(2, 3, 4)
    assert torch.autograd.gradgradcheck(lambda a, b: ops.additive_coupling(a, b, reverse=True), (x, shift))
