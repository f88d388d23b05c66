"""Multi-process training under ``torchrun``: process group set-up and metric averaging.

``torchrun --nproc_per_node=N -m fastgen train ...`` sets RANK/WORLD_SIZE/LOCAL_RANK; the
trainer then runs DistributedDataParallel (nccl on GPUs, gloo on the CPU), each rank on its
slice of every global batch, and only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: torch.device) -> Distributed:
    """Join the process group when started by torchrun; a single process otherwise."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Distributed()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return Distributed(rank, world, local_rank)


def teardown(info: Distributed) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def average(values: dict[str, float], info: Distributed, device: torch.device, *,
            weight: float = 1.0) -> dict[str, float]:
    """The mean of each value over all ranks, each rank's value weighted by ``weight``.

    With weights that average to 1 over the ranks (a rank's share of the batch times the number
    of ranks), per-rank batch means become the global batch mean. Every rank gets the result.
    """
    if not info.enabled or not values:
        return dict(values)
    keys = sorted(values)
    packed = torch.tensor([weight * float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    packed /= info.world_size
    return {k: float(v) for k, v in zip(keys, packed.tolist())}


def broadcast_object(value, info: Distributed):
    """Rank 0's ``value`` on every rank."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: Distributed) -> None:
    if info.enabled:
        dist.barrier()
