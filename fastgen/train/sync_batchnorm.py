"""BatchNorm statistics over the global batch in multi-process training, on any device.

Under DDP each process sees a slice of every global batch. A plain BatchNorm normalises with
its own slice's statistics, so a 2-process run computes a different function than the
1-process run with the same global batch (and a slice of one image cannot be normalised at
all). ``torch.nn.SyncBatchNorm`` fixes that on GPUs only; :class:`GlobalBatchNorm` does it on
the CPU too: in training mode the per-channel count, sum and centred sum of squares are summed
over the ranks with a differentiable all-reduce, so forward and backward are those of the
1-process run. :func:`convert_batchnorm` swaps it in for every BatchNorm of a model, keeping
the same parameters, buffers and state-dict keys.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over (N, C, ...) inputs whose training statistics cover every rank's batch.

    Outside training, or without an initialised process group, it is ``nn.BatchNorm*d``.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an (N, C, ...) input of at least 2 dimensions, got shape {tuple(input.shape)}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce  # differentiable: its backward sums the grads

        dims = [0] + list(range(2, input.dim()))
        x = input.float()
        count = torch.full((1,), x.numel() // max(x.shape[1], 1), dtype=x.dtype, device=x.device)
        # Two passes (mean, then the centred squares), as accurate as a single-process BatchNorm.
        sums = all_reduce(torch.cat([x.sum(dims), count]))
        total = sums[-1]
        if int(total) < 2:
            raise ValueError(f"BatchNorm needs more than 1 value per channel in training, got {int(total)} "
                             "over all processes")
        mean = sums[:-1] / total
        shape = [1, -1] + [1] * (input.dim() - 2)
        centred = x - mean.reshape(shape)
        var = all_reduce((centred * centred).sum(dims)) / total
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * (total / (total - 1)))
        y = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        return y.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), momentum)


def min_batch_size(module: nn.Module) -> int:
    """The fewest images a training step of ``module`` can take: 2 with a BatchNorm (it cannot
    normalise a single image), else 1."""
    return 2 if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()) else 1


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.BatchNorm1d/2d/3d`` replaced by a :class:`GlobalBatchNorm` that
    holds the same parameter and buffer objects (optimizers built before or after see the same
    tensors; state-dict keys are unchanged)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats)
        for name in ("weight", "bias"):
            setattr(converted, name, getattr(module, name))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(converted, name, getattr(module, name))
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        setattr(module, name, convert_batchnorm(child))
    return module
