"""The memory one retrain job may use, and the check of a job's architecture against it at submission.

The estimate (`training.models.memory`, torch-free) counts the model's fp32 weights, gradients and AdamW state and
the activations of one batch; a job above the budget is refused with both figures (422 over_memory_budget) before
anything is queued. The budget is LOMAR_JOB_MEMORY_GB (GiB, 2**30 bytes) when set, else 3/4 of the physical
memory of the machine that checks the request: a CPU job beyond it would be killed for memory, taking the page
cache or a neighbour (Triton, the gateway) with it. Where workers run on other machines, set the budget to theirs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from lomar_serve.common.settings import variable
from lomar_serve.jobs.errors import OverMemoryBudget
from training.models.config import LoMaRConfig  # no torch (training/models/__init__.py imports lazily)
from training.models.memory import GIB, MemoryEstimate, size, training_memory

SETTING = variable("job_memory_gb")
MACHINE_FRACTION = 0.75  # of physical memory, when the setting is absent


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine (None where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True)
class MemoryBudget:
    """At most `bytes` per training process; `source` says where the figure comes from (for messages)."""

    bytes: int
    source: str

    @classmethod
    def of(cls, gigabytes: float | None) -> MemoryBudget | None:
        """The configured budget, else 3/4 of physical memory; None only when neither is known (no check)."""
        if gigabytes is not None:
            return cls(int(gigabytes * GIB), SETTING)
        machine = machine_memory_bytes()
        if machine is None:
            return None
        return cls(int(machine * MACHINE_FRACTION), f"3/4 of this machine's memory; set {SETTING} to change it")

    def check(self, architecture: LoMaRConfig, batch_size: int, image_size: int, pretrain: bool, *,
              fp32: bool = True, ema: bool = False) -> MemoryEstimate:
        """The job's estimate, or OverMemoryBudget naming it and the budget."""
        estimate = training_memory(architecture, batch_size, image_size, pretrain, fp32=fp32, ema=ema)
        if estimate.total_bytes > self.bytes:
            raise OverMemoryBudget(
                f"this job would need {estimate.describe()} (depth {architecture.depth}, embed_dim "
                f"{architecture.embed_dim}, num_heads {architecture.num_heads}, batch_size {batch_size}, image_size "
                f"{image_size}), more than the job memory budget of {size(self.bytes)} ({self.source}): "
                "use a smaller model, depth, embed_dim, batch_size or image_size")
        return estimate
