"""The functional API: every fastgen op as a function.

Each function checks its arguments, then runs the ``torch.ops.fastgen`` custom op (compiled
CPU/CUDA kernels or Triton; visible to torch.compile, autograd and opcheck) or, where no
kernel is available for the device, the plain-PyTorch reference in ``fastgen.reference``.
"""

from fastgen.ops import _conv_registration, _gaussian_registration
from fastgen.ops.conv import causal_conv1d
from fastgen.ops.gaussian import (
    draw_seed,
    gaussian_kl,
    reparameterize,
    reparameterize_with_kl,
    standard_normal_log_prob,
)

_gaussian_registration.register()
_conv_registration.register()

__all__ = [
    "causal_conv1d",
    "draw_seed",
    "gaussian_kl",
    "reparameterize",
    "reparameterize_with_kl",
    "standard_normal_log_prob",
]
