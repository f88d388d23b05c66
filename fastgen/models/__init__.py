"""Generative models built on :mod:`fastgen.nn` and :mod:`fastgen.ops`.

Every model is an ``nn.Module`` on images in [0, 1] shaped (N, C, H, W), with ``sample(n)`` and
``config()`` (its constructor kwargs, so a checkpoint can rebuild it).
"""

from fastgen.models.dcgan import DCGAN
from fastgen.models.glow import Glow
from fastgen.models.pixelcnn import PixelCNN
from fastgen.models.realnvp import RealNVP
from fastgen.models.vae import VAE
from fastgen.models.wavenet import WaveNet

__all__ = ["DCGAN", "Glow", "PixelCNN", "RealNVP", "VAE", "WaveNet"]
