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

# `import fastgen` then `fastgen.ops.reparameterize(...)`: the public subpackages load on first
# use (importing them all up front would cost every `fastgen info` the models and Triton).
_SUBPACKAGES = ("compare", "data", "metrics", "models", "nn", "ops", "reference", "toy", "train")

__all__ = ["info", "__version__", *_SUBPACKAGES]


# The ops' Python registrations (fake kernels, autocast, autograd glue, Triton for CUDA) come
# with fastgen.ops (~50 ms): loaded here so that after a bare `import fastgen` the raw
# torch.ops.fastgen ops already work under opcheck, torch.compile and autocast.
import fastgen.ops  # noqa: E402, F401


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"fastgen.{name}")
    raise AttributeError(f"module 'fastgen' has no attribute {name!r}")
