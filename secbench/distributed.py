"""Multi-process training under ``torchrun``: the process group, this process's rank, and global sums.

``torchrun --nproc_per_node N -m secbench run ...`` starts N copies of the command. Each builds the same
in-memory data and draws the same batch order from the same seed; :func:`engine.fit` trains a
DistributedDataParallel wrapper on this rank's shard of every batch (DistributedSampler semantics), and
only rank 0 records results, writes artifacts and shows progress. Without ``torchrun`` all of this is a
no-op: one process, rank 0 of 1.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_from_env() -> torch.device | None:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1): NCCL on CUDA, gloo on CPU.
    Returns this rank's CUDA device when there is one (``LOCAL_RANK``), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return None
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else None
    if device is not None:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    return device


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process records results (rank 0, or the only process)."""
    return rank() == 0


def global_sum(*values: float | torch.Tensor) -> list[float]:
    """The sums of ``values`` over all ranks (one all-reduce), as floats."""
    packed = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if world_size() > 1:
        packed = packed.to("cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(packed)
    return packed.tolist()
