"""Drop-in ``nn.Module`` layers built on :mod:`fastgen.ops`."""

from fastgen.nn.gaussian import GaussianReparameterization

__all__ = ["GaussianReparameterization"]
