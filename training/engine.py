"""The loops: `train_one_epoch` and `evaluate_classifier`. They take built objects, never an args namespace.

Every micro-batch reseeds Python, NumPy and torch from (seed, epoch, iteration, rank), so masks, mixup and drop
path depend only on the position in training: a run resumed from a mid-epoch checkpoint takes the same steps as an
uninterrupted one.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from training.checkpointing import Position
from training.config import resolved_amp
from training.distributed import DistContext, all_reduce_mean, all_reduce_sum
from training.errors import NonFiniteLossError
from training.metrics_log import MetricsLogger, peak_memory_mb
from training.optim import CosineSchedule

log = logging.getLogger(__name__)

# loss_fn(model, images (B, 3, H, W), labels (B,)) -> scalar loss
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class LoopSettings:
    """How the loop runs: accumulation, clipping, precision, logging and mid-epoch checkpoint cadence."""

    iterations: int  # micro-batches per epoch
    accum_iter: int = 1
    clip_grad: float = 0.0
    amp: str = "none"  # auto | bf16 | fp16 | none; applied on CUDA only
    log_every: int = 20  # optimizer steps
    save_every_steps: int = 0  # optimizer steps; 0 = no mid-epoch checkpoints
    seed: int = 0
    progress: bool = True


def seed_step(seed: int, epoch: int, iteration: int, rank: int) -> None:
    """Seed every RNG from the training position (and the rank, so processes draw different masks)."""
    value = hash((seed, epoch, iteration, rank)) & (2**62 - 1)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CUDA ("auto": bf16); a no-op on CPU or with amp='none'."""
    amp = resolved_amp(amp, device.type)
    if amp in AMP_DTYPES:
        return torch.autocast("cuda", dtype=AMP_DTYPES[amp])
    return contextlib.nullcontext()


def progress_bar(items: Iterable, total: int, enabled: bool, description: str) -> Iterable:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=description, dynamic_ncols=True, leave=False)


def train_one_epoch(
    model: nn.Module, loss_fn: LossFn, loader: Iterable, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, schedule: CosineSchedule, position: Position, settings: LoopSettings,
    ctx: DistContext, metrics: MetricsLogger, checkpoint: Callable[[Position], None],
    after_step: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Train from `position` (epoch, iteration) to the end of the epoch; returns mean loss, last lr, skipped images.

    `checkpoint(position)` is called every `save_every_steps` optimizer steps; `after_step()` after each
    optimizer step (EMA update). Raises NonFiniteLossError on a NaN/inf loss (checked on every process).
    """
    epoch, accum = position.epoch, settings.accum_iter
    optimizer.zero_grad(set_to_none=True)
    loss_sum, loss_count, skipped, lr = 0.0, 0, 0, 0.0
    window_start, window_images = time.perf_counter(), 0
    remaining = settings.iterations - position.iteration
    batches = progress_bar(loader, remaining, settings.progress and ctx.is_main, f"epoch {epoch}")
    iteration = position.iteration
    for images, labels, skipped_here in batches:
        if iteration >= settings.iterations:
            break
        seed_step(settings.seed, epoch, iteration, ctx.rank)
        if iteration % accum == 0:
            lr = schedule.apply(optimizer, epoch + iteration / settings.iterations)
        images = images.to(ctx.device, non_blocking=True)
        labels = labels.to(ctx.device, non_blocking=True)
        boundary = (iteration + 1) % accum == 0
        sync = contextlib.nullcontext() if boundary or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast(ctx.device, settings.amp):
                loss = loss_fn(model, images, labels)
            scaler.scale(loss / accum).backward()
        loss_value = all_reduce_mean(loss.detach().float(), ctx).item()
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"loss is {loss_value} at epoch {epoch}, iteration {iteration}: stopping. Lower the learning rate "
                f"(--blr/--lr), raise --warmup-epochs, use --amp bf16 instead of fp16, or set --clip-grad"
            )
        loss_sum, loss_count = loss_sum + loss_value, loss_count + 1
        skipped += int(skipped_here.sum())
        window_images += images.shape[0] * ctx.world_size
        iteration += 1
        if boundary:
            if settings.clip_grad > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            position = Position(epoch=epoch, iteration=iteration, step=position.step + 1)
            if after_step is not None:
                after_step()
            if position.step % settings.log_every == 0:
                elapsed = time.perf_counter() - window_start
                metrics.log("train", position.step, epoch=epoch, loss=loss_value, lr=lr,
                            img_per_s=window_images / max(elapsed, 1e-9), memory_mb=peak_memory_mb(ctx.device))
                window_start, window_images = time.perf_counter(), 0
            if settings.save_every_steps and position.step % settings.save_every_steps == 0:
                checkpoint(position)
    skipped_total = int(all_reduce_sum(torch.tensor(skipped, device=ctx.device), ctx).item())
    if skipped_total and ctx.is_main:
        log.warning("epoch %d: %d unreadable image(s) skipped (replaced by the next readable one)", epoch,
                    skipped_total)
    return {"loss": loss_sum / max(loss_count, 1), "lr": lr, "skipped_images": skipped_total,
            "steps": position.step}


@torch.no_grad()
def evaluate_classifier(model: nn.Module, loader: Iterable, ctx: DistContext, amp: str = "none",
                        progress: bool = False) -> dict[str, float]:
    """Cross-entropy, top-1 and top-5 accuracy (percent) over the loader, summed across processes."""
    model.eval()
    totals = torch.zeros(4, device=ctx.device, dtype=torch.float64)  # loss sum, top1, top5, count
    for images, labels, _ in progress_bar(loader, len(loader), progress and ctx.is_main, "eval"):
        images, labels = images.to(ctx.device), labels.to(ctx.device)
        with autocast(ctx.device, amp):
            logits = model(images)
        logits = logits.float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices  # (B, k)
        hits = top.eq(labels[:, None])
        totals += torch.stack([
            nn.functional.cross_entropy(logits, labels, reduction="sum").double(),
            hits[:, :1].any(dim=1).sum().double(), hits.any(dim=1).sum().double(),
            torch.tensor(labels.shape[0], device=ctx.device, dtype=torch.float64),
        ])
    totals = all_reduce_sum(totals, ctx)
    count = max(totals[3].item(), 1.0)
    return {"loss": totals[0].item() / count, "top1": 100 * totals[1].item() / count,
            "top5": 100 * totals[2].item() / count, "count": int(totals[3].item())}
