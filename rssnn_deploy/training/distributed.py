"""Data parallelism: joining the process group torchrun describes, and summing
per-process statistics. A single process without torchrun is a group of one."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Union

import torch
import torch.distributed as dist

__all__ = ["Distributed", "start_distributed", "all_sum"]


@dataclass
class Distributed:
    """Where this process sits in a (possibly single-process) data-parallel run."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def start_distributed(device: Optional[Union[str, torch.device]]) -> Distributed:
    """Join the process group torchrun describes in the environment, if any.

    gloo on CPU, nccl on GPU (one device per local rank). A single process without
    torchrun runs unchanged, as a group of one.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:  # one GPU per local process
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns_group = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        owns_group = True
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    return Distributed(rank, world_size, device, owns_group)


def all_sum(values: List[float], ctx: Distributed) -> List[float]:
    if not ctx.active:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return tensor.tolist()
