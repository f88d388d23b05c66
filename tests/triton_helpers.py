"""Setup shared by the tests of the Triton kernels against the plain-PyTorch reference.

Without a GPU the kernels run on CPU tensors in Triton's interpreter (TRITON_INTERPRET=1, set
before the kernels are defined); with one they run compiled on CUDA tensors. Import this module
before ``fastgen.triton_kernels``: it skips the importing test module where Triton is missing or
no kernel can run.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from conftest import TRITON_DEVICES, TRITON_INTERPRETING  # noqa: E402

INTERPRET = TRITON_INTERPRETING
DEVICES = TRITON_DEVICES
if not DEVICES:
    pytest.skip("needs a CUDA device or TRITON_INTERPRET=1", allow_module_level=True)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@pytest.fixture(params=DEVICES)
def device(request):
    """The Triton devices; a test module imports it to replace conftest's ``device``."""
    return request.param


def use_large_blocks(monkeypatch, kernels, **sizes):
    """Set the tile sizes of the kernel module ``kernels`` under the interpreter, whose cost is per
    program: big tiles keep the suite fast."""
    if INTERPRET:
        for name, value in sizes.items():
            monkeypatch.setattr(kernels, name, value)
