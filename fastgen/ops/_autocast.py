"""What fastgen's ops do inside ``torch.autocast``: the rules of the PyTorch ops they replace.

Without a rule of its own, a custom op falls through autocast and runs on whatever dtypes it is
given, while the ATen calls inside its kernels (a GEMM in a CPU kernel, say) are still autocast:
results come back in a dtype the op did not choose, and a backward run inside the autocast
region then mixes dtypes and fails. So every ``fastgen::`` op gets an autocast kernel that runs
it with autocast switched off, after casting its floating-point inputs as PyTorch would cast the
inputs of the op it stands for:

* ``LOWER``: the convolutions (masked_conv2d, causal_conv1d, wavenet_layer, gated_pixelcnn_layer,
  conv_conditioner) run in the autocast dtype, as ``nn.Conv2d`` / ``nn.Conv1d`` do: a
  ``MaskedConv2d`` behaves under autocast like the ``nn.Conv2d`` it replaces.
* ``FLOAT32``: the flow and Gaussian ops (exp, log and sums of many terms, log-determinants)
  run in float32, like ``torch.exp`` / ``torch.logdet`` on autocast's float32 list: a flow's
  inverse and log-determinant keep full precision in mixed-precision training.
* ``AS_GIVEN`` (every other op: the backward ops, which autograd calls with the dtypes of
  their forward, and the sampling steps): no cast.

float64 tensors and tensors of another device are never cast (autocast's own rule).
"""

from __future__ import annotations

import torch
from torch.amp.autocast_mode import _cast

LOWER = "lower"
FLOAT32 = "float32"
AS_GIVEN = "as_given"

POLICIES = {
    "masked_conv2d": LOWER, "causal_conv1d": LOWER, "wavenet_layer": LOWER, "gated_pixelcnn_layer": LOWER,
    "conv_conditioner": LOWER,
    "affine_coupling": FLOAT32, "additive_coupling": FLOAT32, "actnorm": FLOAT32, "invertible_conv1x1": FLOAT32,
    "reparameterize": FLOAT32, "reparameterize_with_kl": FLOAT32, "gaussian_kl": FLOAT32,
    "standard_normal_log_prob": FLOAT32,
}
DEVICE_TYPES = ("cpu", "cuda")

_library: torch.library.Library | None = None  # kept alive: dropping it removes the kernels


def policy(op_name: str) -> str:
    return POLICIES.get(op_name, AS_GIVEN)


def autocast_inputs(op_name: str, *values):
    """``values`` with their tensors cast as the autocast kernel of ``fastgen::op_name`` casts them,
    when autocast is on for their device; unchanged otherwise.

    The functional wrappers call it before their checks, so that under autocast mixed dtypes
    (a bfloat16 activation and a float32 weight, say) are accepted as PyTorch's own ops accept
    them, instead of failing a "must have the dtype of x" check the op itself would never see.
    The reference path (no extension) gets the same dtypes as the kernels.
    """
    rule = policy(op_name)
    if rule == AS_GIVEN:
        return values
    for device_type in DEVICE_TYPES:
        if torch.is_autocast_enabled(device_type):
            dtype = torch.float32 if rule == FLOAT32 else torch.get_autocast_dtype(device_type)
            values = _cast(values, device_type, dtype)
    return values


def _kernel(op: torch._ops.OpOverload, device_type: str, rule: str):
    autocast_keys = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey,
                                                    "Autocast" + torch._C._dispatch_key_for_device(device_type)))

    def run(*args, **kwargs):
        if rule != AS_GIVEN:
            dtype = torch.float32 if rule == FLOAT32 else torch.get_autocast_dtype(device_type)
            args, kwargs = _cast(args, device_type, dtype), _cast(kwargs, device_type, dtype)
        with torch._C._ExcludeDispatchKeyGuard(autocast_keys):
            return op(*args, **kwargs)

    return run


def register() -> None:
    """Register the autocast kernel of every ``fastgen::`` op the extension declares (once)."""
    global _library
    if _library is not None:
        return
    names = sorted(name.split("::", 1)[1] for name in torch._C._dispatch_get_all_op_names()
                   if name.startswith("fastgen::"))
    if not names:
        return
    _library = torch.library.Library("fastgen", "IMPL")
    for name in names:
        op = getattr(torch.ops.fastgen, name).default
        for device_type in DEVICE_TYPES:
            key = "Autocast" + torch._C._dispatch_key_for_device(device_type)
            kernel = _kernel(op, device_type, policy(name))
            op.py_impl(getattr(torch._C.DispatchKey, key))(kernel)  # seen when torch.compile traces
            _library.impl(name, lambda _keys, *args, _kernel=kernel, **kwargs: _kernel(*args, **kwargs), key,
                          with_keyset=True)
