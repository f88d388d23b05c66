"""Shared test configuration.

The Triton interpreter must be switched on before any Triton kernel is decorated, so it is set
here, before fastgen is imported, on machines without a CUDA device.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import fastgen  # noqa: E402,F401

# Relative and absolute tolerances per dtype, for comparisons with the float64 reference.
TOLERANCES = {
    torch.float64: dict(rtol=1e-9, atol=1e-9),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=3e-3, atol=3e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Full float32 on a GPU: the tolerances above are for IEEE float32, and PyTorch's default TF32
# convolutions (which fastgen's Triton kernels follow) round operands to 10 mantissa bits. The
# TF32 path has its own tests (test_triton_precision.py).
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False

# Where Triton kernels can run: CPU tensors under the interpreter, CUDA tensors on a GPU.
TRITON_INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
TRITON_DEVICES = (["cpu"] if TRITON_INTERPRETING else []) + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)
