"""What a training step may draw randomness from.

Every random draw of a step comes from a generator seeded by ``(seed, global step)`` and is made
for the whole global batch, then sliced to this rank's rows. So a step's numbers do not depend on
how many processes share the batch (a 2-process run equals a 1-process run), and a resumed run
replays exactly the draws the uninterrupted run would have made.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_STEP_STRIDE = 1_000_003  # a prime, so (seed, step) pairs do not collide for small seeds


def global_batches(n: int, batch_size: int, world_size: int, *, seed: int, epoch: int,
                   min_batch: int = 1) -> list[torch.Tensor]:
    """The epoch's global batches: a seeded permutation of range(n) cut into ``batch_size`` pieces.

    Every rank computes the same list and takes rows ``rank::world_size`` of each batch (the
    distributed sampler). A last batch smaller than ``world_size`` is dropped so no rank idles,
    and one smaller than ``min_batch`` (2 for a model with BatchNorm, which cannot normalise a
    single image) so the step can run.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * _STEP_STRIDE + 7919 * epoch + 1))
    batches = list(order.split(batch_size))
    if batches and len(batches[-1]) < max(world_size, min_batch):
        batches.pop()
    return batches


@dataclass
class StepContext:
    """Per-step randomness and the rank's share of the global batch.

    Attributes
    ----------
    generator : torch.Generator
        CPU generator seeded from (seed, global step); identical on every rank.
    global_batch : int
        Rows in the whole global batch.
    rows : slice
        This rank's rows of the global batch (``rank::world_size``, as DistributedSampler deals them).
    device : torch.device
        Where the drawn tensors go.
    """

    generator: torch.Generator
    global_batch: int
    rows: slice
    device: torch.device
    local_batch: int = 0

    @property
    def loss_scale(self) -> float:
        """Multiply this rank's mean loss by this before backward.

        DDP averages gradients over ranks; when the last global batch does not split evenly,
        this weights each rank by its share so the result is the gradient of the global mean.
        """
        return self.local_batch * self.rows.step / self.global_batch

    @classmethod
    def for_step(cls, seed: int, global_step: int, global_batch: int, rank: int, world_size: int,
                 device: torch.device) -> "StepContext":
        generator = torch.Generator().manual_seed(seed * _STEP_STRIDE + global_step)
        rows = slice(rank, None, world_size)
        return cls(generator, global_batch, rows, device, len(range(global_batch)[rows]))

    def randn(self, *per_sample_shape: int) -> torch.Tensor:
        """Standard normal noise of shape (local batch, *per_sample_shape)."""
        noise = torch.randn((self.global_batch, *per_sample_shape), generator=self.generator)
        return noise[self.rows].to(self.device)

    def rand(self, *per_sample_shape: int) -> torch.Tensor:
        """Uniform [0, 1) noise of shape (local batch, *per_sample_shape)."""
        noise = torch.rand((self.global_batch, *per_sample_shape), generator=self.generator)
        return noise[self.rows].to(self.device)
