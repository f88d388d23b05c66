"""Drop-in module for the reparameterization trick."""

from __future__ import annotations

import torch
from torch import nn

from fastgen import ops
from fastgen.ops._checks import check_flag


class GaussianReparameterization(nn.Module):
    """Sample ``z ~ N(mu, exp(logvar))`` and compute its KL to N(0, I) in one fused op.

    A drop-in for the usual ``mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)``: it
    returns ``z`` and keeps the per-sample KL in :attr:`kl` (or returns it with
    ``return_kl=True``), both produced by :func:`fastgen.ops.reparameterize_with_kl`.

    Parameters
    ----------
    sample_in_eval : bool
        When False, ``forward`` returns ``mu`` itself in eval mode (the common choice for
        deterministic reconstructions); the KL is still computed. Default True: always sample.

    Shapes
    ------
    mu, logvar: (N, ...); z: like mu; kl: (N,).
    """

    kl: torch.Tensor | None

    def __init__(self, sample_in_eval: bool = True) -> None:
        super().__init__()
        self.sample_in_eval = check_flag(sample_in_eval, "sample_in_eval")
        self.kl = None

    def forward(
        self,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        *,
        return_kl: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.training or self.sample_in_eval:
            z, kl = ops.reparameterize_with_kl(mu, logvar, generator=generator)
        else:
            z, kl = mu, ops.gaussian_kl(mu, logvar)
        self.kl = kl
        return (z, kl) if return_kl else z

    def __getstate__(self) -> dict:
        # The last KL belongs to the last forward's autograd graph (a non-leaf tensor, which
        # deepcopy refuses): copies and pickles of the module (deepcopy, EMA/SWA models) leave it out.
        state = self.__dict__.copy()
        state["kl"] = None
        return state

    def extra_repr(self) -> str:
        return f"sample_in_eval={self.sample_in_eval}"
