"""The process group: join the one Ray Train (or torchrun) set up, or make a one-process one."""

from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_distributed(use_gpu: bool) -> DistContext:
    """This process's rank and device; world size 1 (gloo on a free local port) outside a launcher."""
    if not dist.is_initialized():
        if "WORLD_SIZE" not in os.environ:
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                              MASTER_PORT=str(_free_port()))
        dist.init_process_group("nccl" if use_gpu else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_gpu:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return DistContext(rank, world, local_rank, device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def all_reduce_sum(values: list[float], world_size: int) -> list[float]:
    """Element-wise sum over ranks (float64); the values themselves at world size 1."""
    if world_size == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def decided_by_rank0(decide, rank: int, world_size: int):
    """`decide()` run on rank 0 only and its result given to every rank (a choice all ranks must share,
    such as a measured compute dtype: timings differ between processes)."""
    if world_size == 1:
        return decide()
    box = [decide() if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
