"""Process-group set-up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), and the rank-0 gate.

Single process when WORLD_SIZE is unset or 1. Multi-GPU: `torchrun --nproc_per_node=N -m training.pretrain ...`;
multi-node: add `--nnodes=K --node_rank=I --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from training.errors import ConfigError, TrainingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among world_size processes and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """The one process that logs, shows progress and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int) -> torch.device:
    """'auto' -> CUDA when available; 'cuda' without a GPU is an error."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA device is available")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_distributed(device_preference: str, backend: str = "") -> DistContext:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
        log.info("process group %s: rank %d of %d on %s", backend, rank, world_size, device)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def close_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of a tensor over all processes (a copy; the input is unchanged)."""
    value = value.detach().clone()
    if ctx.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= ctx.world_size
    return value


def all_reduce_sum(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    value = value.detach().clone()
    if ctx.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def weights_fingerprint(model: torch.nn.Module) -> torch.Tensor:
    """Three float64 numbers that differ when any parameter differs: sum, sum of squares, position-weighted sum."""
    total = torch.zeros(3, dtype=torch.float64)
    offset = 0
    for param in model.parameters():
        flat = param.detach().double().flatten().cpu()
        weights = torch.arange(offset + 1, offset + 1 + flat.numel(), dtype=torch.float64).sqrt()
        total += torch.stack([flat.sum(), flat.square().sum(), (flat * weights).sum()])
        offset += flat.numel()
    return total


def check_replicas(model: torch.nn.Module, ctx: DistContext) -> None:
    """Fail loudly if the processes of a DDP run ended with different weights (they must stay identical)."""
    if not ctx.distributed:
        return
    mine = weights_fingerprint(model).to(ctx.device)
    gathered = [torch.zeros_like(mine) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, mine)
    if any(not torch.equal(other, gathered[0]) for other in gathered):
        raise TrainingError(f"processes hold different weights after training: {[g.tolist() for g in gathered]}")
    if ctx.is_main:
        log.info("all %d processes hold identical weights (fingerprint %s)", ctx.world_size, gathered[0].tolist())
