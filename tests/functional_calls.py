"""One small call of every functional op on fixed random inputs, for the tests that run all the
ops alike (their rules under autocast, their second derivatives)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from fastgen import ops


def functional_calls(dtype: torch.dtype = torch.float32, requires_grad: bool = False
                     ) -> dict[str, tuple[Callable[..., object], torch.Tensor]]:
    """op name -> (a call of ``fastgen.ops.<name>``, its first input). Every call is deterministic
    (reparameterize gets its noise); ``call(x)`` runs it on another first input ``x``."""

    def rnd(*shape):
        return torch.randn(*shape, dtype=dtype, requires_grad=requires_grad)

    x4, w3, ch = rnd(2, 4, 5, 5), rnd(4, 4, 3, 3), rnd(4)
    x3, w1 = rnd(2, 4, 9), rnd(6, 4, 2)
    wave = [rnd(8, 4, 2), rnd(8), rnd(4, 4), rnd(4), rnd(5, 4), rnd(5)]
    pixel = [rnd(8, 4, 2, 3), None, rnd(8, 4, 1, 2), None, rnd(8, 8), None, rnd(4, 4), None]
    mu = rnd(3, 5)
    matrix = torch.eye(4, dtype=dtype) + 0.1 * rnd(4, 4)
    conditioner = [rnd(6, 4, 3, 3), rnd(6), rnd(6, 6, 1, 1), rnd(6), rnd(4, 6, 3, 3), rnd(4)]
    return {
        "masked_conv2d": (lambda x=x4: ops.masked_conv2d(x, w3, ch, mask_type="B"), x4),
        "causal_conv1d": (lambda x=x3: ops.causal_conv1d(x, w1, dilation=2), x3),
        "wavenet_layer": (lambda x=x3: ops.wavenet_layer(x, *wave, dilation=2), x3),
        "gated_pixelcnn_layer": (lambda x=x4: ops.gated_pixelcnn_layer(x, x4, *pixel, mask_type="B"), x4),
        "reparameterize": (lambda x=mu: ops.reparameterize(x, mu, eps=torch.ones(3, 5, dtype=dtype)), mu),
        "gaussian_kl": (lambda x=mu: ops.gaussian_kl(x, mu), mu),
        "standard_normal_log_prob": (lambda x=mu: ops.standard_normal_log_prob(x), mu),
        "affine_coupling": (lambda x=x4: ops.affine_coupling(x, x4, x4, scale="sigmoid"), x4),
        "additive_coupling": (lambda x=x4: ops.additive_coupling(x, x4), x4),
        "actnorm": (lambda x=x4: ops.actnorm(x, ch, ch), x4),
        "invertible_conv1x1": (lambda x=x4: ops.invertible_conv1x1(x, matrix), x4),
        "conv_conditioner": (lambda x=x4: ops.conv_conditioner(x, *conditioner), x4),
    }
