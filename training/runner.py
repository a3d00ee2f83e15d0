"""What pretraining and fine-tuning share: logging set-up, loaders, the model wrapper, the epoch loop with its
checkpoints, and the error boundary of the entry points."""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from contracts.checkpoints import CONFIG_FILE, LAST_CHECKPOINT, periodic_checkpoint
from training.checkpointing import Position, TrainingState, save_training_checkpoint
from training.config import TrainConfig, save_config
from training.data import ImageDataset, ResumableSampler
from training.distributed import DistContext, check_replicas, close_distributed
from training.engine import LoopSettings, LossFn, train_one_epoch
from training.errors import DataError, TrainingError
from training.metrics_log import MetricsLogger
from training.optim import CosineSchedule

log = logging.getLogger(__name__)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (programs may run in-process several times)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging() -> None:
    """INFO on rank 0, warnings only elsewhere (RANK from torchrun); every line names its rank. Other root
    handlers are kept."""
    rank = int(os.environ.get("RANK", "0"))
    root = logging.getLogger()
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)


def run_guarded(program: str, body: Callable[[], int]) -> int:
    """Run an entry point; a TrainingError (bad config, data or checkpoint) becomes one clear line and exit 2."""
    try:
        return body()
    except TrainingError as exc:
        logging.getLogger(program).error("%s", exc)
        print(f"{program}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        close_distributed()


def prepare_output(config: TrainConfig, ctx: DistContext) -> MetricsLogger:
    """Create the output folder, save the resolved config there (rank 0), open the metrics log."""
    if ctx.is_main:
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        save_config(config, Path(config.output_dir) / CONFIG_FILE)
        log.info("resolved config: %s", config.to_dict())
    return MetricsLogger(config.output_dir, enabled=ctx.is_main)


def configure_backends(config: TrainConfig, ctx: DistContext) -> None:
    """TF32 matmuls and cuDNN convolutions on CUDA unless --no-tf32 (bf16/fp16 autocast covers most of the rest)."""
    if ctx.device.type == "cuda":
        torch.set_float32_matmul_precision("high" if config.tf32 else "highest")
        torch.backends.cudnn.allow_tf32 = config.tf32


def wrap_model(model: nn.Module, ctx: DistContext, compile_model: bool) -> nn.Module:
    """Move to the device, optionally torch.compile, wrap in DDP when distributed."""
    model.to(ctx.device)
    wrapped: nn.Module = torch.compile(model) if compile_model else model
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        wrapped = DistributedDataParallel(wrapped, device_ids=device_ids)
    return wrapped


def make_scaler(config: TrainConfig, ctx: DistContext) -> torch.amp.GradScaler:
    """A loss scaler for fp16 on CUDA; disabled (a no-op) otherwise."""
    return torch.amp.GradScaler("cuda", enabled=ctx.device.type == "cuda" and config.amp == "fp16")


def make_schedule(config: TrainConfig, ctx: DistContext) -> CosineSchedule:
    lr = config.effective_lr(ctx.world_size)
    log.info("lr %.3g (effective batch %d)", lr, config.batch_size * config.accum_iter * ctx.world_size)
    warmup = config.warmup
    share = warmup / config.epochs
    if config.warmup_epochs is None:
        log.info("warm-up %.3g epochs (warmup_fraction %.3g of %d epochs)", warmup, config.warmup_fraction,
                 config.epochs)
    else:
        log.info("warm-up %.3g epochs, as given (--warmup-epochs): %.0f%% of the %d-epoch run", warmup, 100 * share,
                 config.epochs)
    if share >= 1:
        log.warning("the whole run is warm-up (%.3g of %d epochs): the learning rate never reaches %.3g; leave "
                    "--warmup-epochs unset for warmup_fraction x epochs", warmup, config.epochs, lr)
    return CosineSchedule(lr=lr, min_lr=config.min_lr, warmup_epochs=warmup, epochs=config.epochs)


@dataclass
class Trainer:
    """The epoch loop of one program: builds each epoch's loader, trains, checkpoints, calls `on_epoch_end`.

    `extra_state()` adds program-specific entries (EMA weights, best metric, class names) to every checkpoint;
    `on_epoch_end(epoch, stats)` evaluates and returns the names of extra checkpoints to write now
    (fine-tuning's checkpoint-best.pth).
    """

    config: TrainConfig
    ctx: DistContext
    model: nn.Module  # unwrapped: what checkpoints store
    train_model: nn.Module  # compiled / DDP-wrapped: what the loop calls
    loss_fn: LossFn
    dataset: ImageDataset
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: CosineSchedule
    metrics: MetricsLogger
    extra_state: Callable[[], dict[str, Any]] = dict
    on_epoch_end: Callable[[int, dict[str, float]], list[str]] = lambda epoch, stats: []
    after_step: Callable[[], None] | None = None
    sampler: ResumableSampler = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        self.sampler = ResumableSampler(self.dataset, self.ctx.world_size, self.ctx.rank, shuffle=True, seed=c.seed,
                                        drop_last=True)
        per_epoch = self.sampler.num_samples // c.batch_size
        if per_epoch < 1:
            raise DataError(f"{len(self.dataset)} images over {self.ctx.world_size} process(es) do not fill one "
                            f"batch of {c.batch_size}: lower --batch-size")
        self.iterations = min(per_epoch, c.steps_per_epoch * c.accum_iter) if c.steps_per_epoch else per_epoch

    def loader(self, epoch: int, start_iteration: int) -> DataLoader:
        self.dataset.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        self.sampler.set_start(start_iteration * self.config.batch_size)
        return DataLoader(
            self.dataset, batch_size=self.config.batch_size, sampler=self.sampler, drop_last=True,
            num_workers=self.config.num_workers, pin_memory=self.config.pin_memory and self.ctx.device.type == "cuda",
            collate_fn=getattr(self.dataset, "collate", None),  # EncodedImageDataset (--decode gpu) has its own
        )

    def save(self, position: Position, name: str = LAST_CHECKPOINT) -> None:
        if not self.ctx.is_main:
            return
        path = Path(self.config.output_dir) / name
        save_training_checkpoint(path, self.model, self.optimizer, self.scaler, self.schedule, position,
                                 self.config.to_dict(), **self.extra_state())
        log.info("saved %s (epoch %d, iteration %d, step %d)", path.name, position.epoch, position.iteration,
                 position.step)

    def fit(self, state: TrainingState) -> Position:
        c = self.config
        steps_per_epoch = self.iterations // c.accum_iter
        settings = LoopSettings(
            iterations=self.iterations, accum_iter=c.accum_iter, clip_grad=c.clip_grad, amp=c.amp,
            log_every=c.logging_interval(steps_per_epoch), save_every_steps=c.save_every_steps, seed=c.seed,
            progress=c.progress,
        )
        position = state.position
        self.metrics.log("run", position.step, epoch=position.epoch, epochs=c.epochs, steps_per_epoch=steps_per_epoch,
                         total_steps=steps_per_epoch * c.epochs, images=len(self.dataset))
        for epoch in range(position.epoch, c.epochs):
            if position.epoch != epoch:
                position = Position(epoch=epoch, iteration=0, step=position.step)
            self.train_model.train()
            stats = train_one_epoch(
                self.train_model, self.loss_fn, self.loader(epoch, position.iteration), self.optimizer, self.scaler,
                self.schedule, position, settings, self.ctx, self.metrics, self.save, self.after_step,
            )
            position = Position(epoch=epoch + 1, iteration=0, step=stats["steps"])
            self.metrics.log("epoch", position.step, epoch=epoch, **stats)
            log.info("epoch %d done: loss %.4f, lr %.3g, step %d", epoch, stats["loss"], stats["lr"], position.step)
            for name in self.on_epoch_end(epoch, stats):
                self.save(position, name)
            self.save(position)
            if c.save_every_epochs and (epoch + 1) % c.save_every_epochs == 0:
                self.save(position, periodic_checkpoint(epoch + 1))
        check_replicas(self.model, self.ctx)
        return position
