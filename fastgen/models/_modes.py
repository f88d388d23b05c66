"""Running a model in eval mode for a while (sampling), then putting every module back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block (no dropout, BatchNorm running statistics).

    Afterwards every submodule gets back its own mode: ``module.train(was_training)`` would put
    a submodule the user had frozen in eval back into training mode.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
