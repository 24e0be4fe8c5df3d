"""Distributed data parallel under torchrun: RANK, LOCAL_RANK and WORLD_SIZE from the environment.

Gloo on CPU, NCCL on CUDA. Every rank builds the same epoch plan and takes every world_size-th batch; rank 0
writes files and shows progress. Without torchrun the run is a single process (rank 0 of 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cache.devices import resolve_device


@dataclass(frozen=True)
class Ranks:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device_choice: str) -> Ranks:
    """Join the process group when torchrun started us; pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_choice, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Ranks(rank, local_rank, world_size, device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, ranks: Ranks) -> torch.nn.Module:
    """DistributedDataParallel around `model` when running on several ranks."""
    if not ranks.distributed:
        return model
    device_ids = [ranks.device.index] if ranks.device.type == "cuda" else None
    # TS3 freezes the classifier: parameters without gradients must not stall the all-reduce
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=False)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
