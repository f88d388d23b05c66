"""Drop-in ``nn.Module`` layers built on :mod:`fastgen.ops`."""

from fastgen.nn.conv import CausalConv1d, MaskedConv2d
from fastgen.nn.gaussian import GaussianReparameterization
from fastgen.nn.pixelcnn import GatedPixelCNNLayer
from fastgen.nn.wavenet import WaveNetLayer

__all__ = ["CausalConv1d", "GatedPixelCNNLayer", "GaussianReparameterization", "MaskedConv2d", "WaveNetLayer"]
