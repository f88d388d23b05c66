"""The functional API: every fastgen op as a function.

Each function checks its arguments, then runs the ``torch.ops.fastgen`` custom op (compiled
CPU/CUDA kernels or Triton; visible to torch.compile, autograd and opcheck) or, where no
kernel is available for the device, the plain-PyTorch reference in ``fastgen.reference``.
"""

from fastgen.ops import (
    _autocast,
    _conditioner_registration,
    _conv_registration,
    _flow_registration,
    _gaussian_registration,
    _pixelcnn_registration,
    _step_registration,
    _wavenet_registration,
)
from fastgen.ops.conditioner import conv_conditioner
from fastgen.ops.conv import causal_conv1d
from fastgen.ops.gaussian import (
    draw_seed,
    gaussian_kl,
    reparameterize,
    reparameterize_with_kl,
    standard_normal_log_prob,
)
from fastgen.ops.flows import (
    actnorm,
    additive_coupling,
    affine_coupling,
    invertible_conv1x1,
    merge_channels,
    split_channels,
    squeeze2d,
    unsqueeze2d,
)
from fastgen.ops.gated_pixelcnn import gated_pixelcnn_layer
from fastgen.ops.masked_conv import masked_conv2d
from fastgen.ops.pixelcnn_generate import pixelcnn_generate_row
from fastgen.ops.pixelcnn_step import gated_pixelcnn_horizontal_step, gated_pixelcnn_vertical_step
from fastgen.ops.wavenet import wavenet_layer
from fastgen.ops.wavenet_generate import wavenet_generate
from fastgen.ops.wavenet_step import wavenet_layer_step, wavenet_state

_gaussian_registration.register()
_conv_registration.register()
_wavenet_registration.register()
_pixelcnn_registration.register()
_flow_registration.register()
_step_registration.register()
_conditioner_registration.register()
_autocast.register()  # after the families: every op the extension declares

__all__ = [
    "actnorm",
    "additive_coupling",
    "affine_coupling",
    "invertible_conv1x1",
    "merge_channels",
    "split_channels",
    "squeeze2d",
    "unsqueeze2d",
    "causal_conv1d",
    "conv_conditioner",
    "draw_seed",
    "gated_pixelcnn_horizontal_step",
    "pixelcnn_generate_row",
    "gated_pixelcnn_layer",
    "gated_pixelcnn_vertical_step",
    "gaussian_kl",
    "masked_conv2d",
    "reparameterize",
    "reparameterize_with_kl",
    "standard_normal_log_prob",
    "wavenet_generate",
    "wavenet_layer",
    "wavenet_layer_step",
    "wavenet_state",
]
