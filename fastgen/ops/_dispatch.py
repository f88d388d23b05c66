"""Which implementation a functional call runs: the registered kernels or the reference.

The kernels run when a kernel for the tensor's device is registered under ``torch.ops.fastgen``
(the C++ CPU kernels, the CUDA kernels, or Triton registered for CUDA); otherwise the call
falls back to the plain-PyTorch reference, which gives the same numbers, only slower.
The table is filled once at import, so under torch.compile the check is a constant.
"""

from __future__ import annotations

import os

import torch

from fastgen import _ext

_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}

# op name -> device types ("cpu", "cuda") with a registered kernel
KERNEL_DEVICES: dict[str, frozenset[str]] = {}


def record_kernels(op_names: list[str]) -> None:
    """Fill KERNEL_DEVICES for ``op_names`` from the dispatcher (call after registering kernels)."""
    force_reference = os.environ.get("FASTGEN_FORCE_REFERENCE") == "1"
    for name in op_names:
        devices = set()
        if _ext.available() and not force_reference:
            for device_type, key in _DISPATCH_KEYS.items():
                if torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgen::{name}", key):
                    devices.add(device_type)
        KERNEL_DEVICES[name] = frozenset(devices)


def use_kernel(op_name: str, tensor: torch.Tensor) -> bool:
    """Whether ``fastgen::op_name`` has a kernel for ``tensor``'s device."""
    return tensor.device.type in KERNEL_DEVICES.get(op_name, frozenset())
