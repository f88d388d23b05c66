"""fastgen: fast kernels, layers and models for deep generative models in PyTorch.

Layers (imports point downward only):
    fastgen.cli          the ``fastgen`` command
    fastgen.nn           drop-in modules built on fastgen.ops
    fastgen.ops          the functional API (torch.library custom ops)
    fastgen.reference    plain-PyTorch version of every op
"""

from fastgen import _ext  # noqa: F401  (loads the compiled ops, or warns once)
from fastgen.info import info

__version__ = "0.1.0"

__all__ = ["info", "__version__"]
