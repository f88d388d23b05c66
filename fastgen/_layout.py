"""Memory-layout rules shared by the op kernels, their fake kernels and the Triton wrappers.

Kept at the bottom of the package (torch only) so every layer can import it.
"""

from __future__ import annotations

import torch


def takes_channels_last(x: torch.Tensor) -> bool:
    """Whether masked_conv2d works in, and returns y and grad_x in, channels-last for ``x``.

    True when x is channels-last and not also contiguous (an (N, 1, H, W) or 1x1 image is both
    and stays NCHW). The C++ kernels apply the same rule (csrc/cpu/masked_conv2d_nhwc.h), so
    fake and real outputs agree on strides under torch.compile.
    """
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def layout_of(x: torch.Tensor) -> torch.memory_format:
    """The memory format of masked_conv2d's y and grad_x for input ``x``."""
    return torch.channels_last if takes_channels_last(x) else torch.contiguous_format
