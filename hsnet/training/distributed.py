"""DistributedDataParallel plumbing: read torchrun's environment, join the process group, reduce metrics.

``torchrun --nproc-per-node N -m hsnet train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous
address; without them a run is a single process and every helper here is a no-op. Backend: NCCL on CUDA, gloo on
CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from hsnet.errors import HSNetError

__all__ = ["DistInfo", "all_reduce_sum", "barrier", "cleanup", "init_distributed", "is_initialized"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and prints progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise HSNetError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun prepared (NCCL for CUDA devices, gloo otherwise), if any.

    Raises:
        HSNetError: malformed torchrun environment or a process group that cannot be formed.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    info = DistInfo(_env_int("RANK", 0), world_size, _env_int("LOCAL_RANK", 0))
    if world_size <= 1:
        return info
    if not dist.is_available():
        raise HSNetError("this torch build has no torch.distributed; run without torchrun")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend, rank=info.rank, world_size=world_size)
        except (RuntimeError, ValueError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise HSNetError(f"cannot form the {backend} process group of {world_size} ranks: {first}") from None
    return info


def is_initialized() -> bool:
    """Whether this process is already in a process group."""
    return dist.is_available() and dist.is_initialized()


def cleanup() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (identity in a single process) and return it."""
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":  # NCCL reduces GPU tensors only
        on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
        tensor.copy_(on_gpu.cpu())
    else:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
