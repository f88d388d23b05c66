"""Plain-PyTorch versions of every fastgen op.

They are the test oracle, the fallback when the compiled extension is missing, and the
baseline of the benchmarks. They favour clarity over speed.
"""

from fastgen.reference.conv import MASK_TYPES, causal_conv1d, gated_pixelcnn_layer, masked_conv2d, masked_conv2d_mask, wavenet_layer
from fastgen.reference.flows import (
    SCALE_MAPS,
    actnorm,
    additive_coupling,
    affine_coupling,
    conditioner_dropout_masks,
    conv_conditioner,
    coupling_log_scale,
    invertible_conv1x1,
    squeeze2d,
    unsqueeze2d,
)
from fastgen.reference.gaussian import (
    gaussian_kl,
    philox4x32_10,
    reparameterize,
    reparameterize_with_kl,
    standard_normal,
    standard_normal_log_prob,
)

__all__ = [
    "SCALE_MAPS",
    "actnorm",
    "additive_coupling",
    "affine_coupling",
    "conditioner_dropout_masks",
    "conv_conditioner",
    "coupling_log_scale",
    "invertible_conv1x1",
    "squeeze2d",
    "unsqueeze2d",
    "MASK_TYPES",
    "causal_conv1d",
    "gated_pixelcnn_layer",
    "masked_conv2d",
    "masked_conv2d_mask",
    "gaussian_kl",
    "philox4x32_10",
    "reparameterize",
    "reparameterize_with_kl",
    "standard_normal",
    "standard_normal_log_prob",
    "wavenet_layer",
]
