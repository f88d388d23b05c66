"""Drop-in ``nn.Module`` layers built on :mod:`fastgen.ops`."""

from fastgen.nn.conv import CausalConv1d, MaskedConv2d
from fastgen.nn.coupling import AdditiveCoupling, AffineCoupling, ConvConditioner, conv_conditioner, mlp_conditioner
from fastgen.nn.flow_layers import ActNorm, InvConv1x1, Split, Squeeze
from fastgen.nn.gaussian import GaussianReparameterization
from fastgen.nn.pixelcnn import GatedPixelCNNLayer
from fastgen.nn.wavenet import WaveNetLayer

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "CausalConv1d",
    "ConvConditioner",
    "GatedPixelCNNLayer",
    "GaussianReparameterization",
    "InvConv1x1",
    "MaskedConv2d",
    "Split",
    "Squeeze",
    "WaveNetLayer",
    "conv_conditioner",
    "mlp_conditioner",
]
