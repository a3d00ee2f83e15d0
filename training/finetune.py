"""LoMaR fine-tuning on a labelled image folder (ImageFolder: DATA_DIR/CLASS/IMAGE, or DATA_DIR/train + val).

From a pretrained checkpoint (ours or the paper's official file; the architecture comes from it):
    lomar finetune --init runs/pretrain/checkpoint-last.pth --data-dir /data/labelled --output-dir runs/finetune
One node, 8 GPUs (--batch-size is per GPU):
    torchrun --nproc_per_node=8 -m training.finetune --config training/configs/finetune_lomar_base.yaml \
        --init runs/pretrain/checkpoint-last.pth --data-dir /data/imagenet --output-dir runs/finetune
Several nodes: torchrun --nnodes=K --node_rank=I --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 ... (as above).
Fine-tune at another resolution than pretraining with --image-size 384: no position-embedding surgery is needed.
From a fine-tuned checkpoint of this project with the same classes (a retrain), the model continues, head included;
--reset-head starts the head afresh, and other classes get a new one (the log says which).
Writes checkpoint-last.pth and checkpoint-best.pth (best validation top-1, a tie going to the lower validation
loss); both load with training.models.load_classifier and hold the class names ('class_names') in label order.
"""
from __future__ import annotations

import logging
import math
import sys
from contextlib import closing
from pathlib import Path

import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import DataLoader, Subset

from contracts import datasets
from contracts.checkpoints import BEST_CHECKPOINT
from training.checkpointing import TrainingState, load_training_checkpoint, resume_path
from training.config import FinetuneConfig, parse_config
from training.data import EvalTransform, ImageDataset, finetune_transform, image_folder
from training.distributed import DistContext, init_distributed
from training.encoder_init import InitCheckpoint, check_same_architecture, choose_head, load_encoder, read_init
from training.engine import LossFn, evaluate_classifier
from training.errors import ConfigError
from training.models import LoMaRClassifier, LoMaRConfig, build_model, model_config
from training.optim import adamw, param_groups
from training.runner import (
    Trainer, configure_backends, make_scaler, make_schedule, prepare_output, run_guarded, setup_logging, wrap_model,
)

log = logging.getLogger("training.finetune")  # not "__main__" under python -m


def split_dirs(config: FinetuneConfig) -> tuple[Path, Path]:
    """(train folder, validation folder): DATA_DIR/train and DATA_DIR/val when present (`contracts.datasets`),
    else DATA_DIR for both."""
    train = datasets.train_dir(config.data_dir)
    if config.val_dir:
        return train, Path(config.val_dir)
    val = datasets.val_dir(config.data_dir)
    if val is not None:
        return train, val
    log.warning("no validation folder (DATA_DIR/val or --val-dir): evaluating on the training images")
    return train, train


def classifier_config(config: FinetuneConfig, num_classes: int) -> tuple[LoMaRConfig, InitCheckpoint | None]:
    """The classifier's architecture (from --model, else from --init) and the checkpoint to start from, if any."""
    overrides = config.architecture_overrides(num_classes)
    init = read_init(config.init) if config.init else None
    if config.model:
        arch = model_config(config.model, **overrides)
    else:
        arch = init.config.replace(**overrides)
    if init is not None:
        check_same_architecture(arch, init.config, config.model, config.init)
    return arch, init


def make_loss(config: FinetuneConfig, num_classes: int) -> LossFn:
    """Mixup/CutMix with soft targets, else label smoothing, else plain cross-entropy."""
    mixup = None
    if config.mixup > 0 or config.cutmix > 0:
        if config.batch_size % 2:
            raise ConfigError(f"mixup/cutmix needs an even --batch-size, got {config.batch_size}")
        mixup = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, prob=config.mixup_prob,
                      switch_prob=config.mixup_switch_prob, mode="batch", label_smoothing=config.smoothing,
                      num_classes=num_classes)
        criterion: nn.Module = SoftTargetCrossEntropy()
    elif config.smoothing > 0:
        criterion = LabelSmoothingCrossEntropy(smoothing=config.smoothing)
    else:
        criterion = nn.CrossEntropyLoss()

    def loss_fn(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W), labels (B,) -> scalar loss (mixed images and soft targets under mixup)."""
        targets = labels
        if mixup is not None:
            images, targets = mixup(images, labels)
        return criterion(model(images), targets)

    return loss_fn


def eval_loader(dataset: ImageDataset, ctx: DistContext, config: FinetuneConfig) -> DataLoader:
    """Each process evaluates every world_size-th image, so counts are exact (no padding)."""
    shard = Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))
    return DataLoader(shard, batch_size=config.batch_size, shuffle=False, num_workers=config.num_workers,
                      pin_memory=config.pin_memory and ctx.device.type == "cuda")


def run(config: FinetuneConfig) -> int:
    setup_logging()
    ctx = init_distributed(config.device, config.dist_backend)
    config = config.for_device(ctx.device.type)  # what runs, saved and logged: fp32 off CUDA
    configure_backends(config, ctx)
    train_dir, val_dir = split_dirs(config)
    roots = datasets.parse_roots(config.data_roots) if config.data_roots else None
    train_set, classes = image_folder(train_dir, finetune_transform(config.image_size, config.auto_augment,
                                                                    config.reprob), seed=config.seed, roots=roots)
    val_set, _ = image_folder(val_dir, EvalTransform(config.image_size), classes=classes, roots=roots)
    arch, init = classifier_config(config, len(classes))
    torch.manual_seed(config.seed)  # identical head initialisation on every process
    model: LoMaRClassifier = build_model(arch, pretrain=False)
    if init is not None:
        head = choose_head(init, classes, config.reset_head, config.init)
        log.log(logging.WARNING if head.classes_changed else logging.INFO, "%s", head.reason)
        load_encoder(model, init.state, config.init, with_head=head.keep)
    metrics = prepare_output(config, ctx)
    model.to(ctx.device)
    optimizer = adamw(param_groups(model, config.weight_decay, config.layer_decay), ctx.device)
    scaler = make_scaler(config, ctx)
    ema = ModelEmaV3(model, decay=config.model_ema_decay) if config.model_ema else None
    state = TrainingState(extra={"best_top1": -1.0})
    checkpoint = resume_path(config.output_dir, config.resume, config.auto_resume)
    if checkpoint is not None:
        state = load_training_checkpoint(checkpoint, model, optimizer, scaler)
        if ema is not None and "model_ema" in state.extra:
            ema.module.load_state_dict(state.extra["model_ema"])
    best = {"top1": float(state.extra.get("best_top1", -1.0)), "loss": float(state.extra.get("best_loss", math.inf))}
    loader = eval_loader(val_set, ctx, config)

    def extra_state() -> dict:
        extra = {"class_names": list(classes), "best_top1": best["top1"], "best_loss": best["loss"]}
        if ema is not None:
            extra["model_ema"] = ema.module.state_dict()
        return extra

    def on_epoch_end(epoch: int, stats: dict[str, float]) -> list[str]:
        result = evaluate_classifier(model, loader, ctx, config.amp)
        if ema is not None:
            result["ema_top1"] = evaluate_classifier(ema.module, loader, ctx, config.amp)["top1"]
        metrics.log("val", int(stats["steps"]), epoch=epoch, **result)
        log.info("epoch %d: val top1 %.2f top5 %.2f (%d images)", epoch, result["top1"], result["top5"],
                 result["count"])
        if (result["top1"], -result["loss"]) > (best["top1"], -best["loss"]):  # a tie goes to the lower loss
            best.update(top1=result["top1"], loss=result["loss"])
            return [BEST_CHECKPOINT]
        return []

    trainer = Trainer(
        config=config, ctx=ctx, model=model, train_model=wrap_model(model, ctx, config.compile),
        loss_fn=make_loss(config, len(classes)), dataset=train_set, optimizer=optimizer, scaler=scaler,
        schedule=make_schedule(config, ctx), metrics=metrics, extra_state=extra_state, on_epoch_end=on_epoch_end,
        after_step=(lambda: ema.update(model)) if ema is not None else None,
    )
    with closing(metrics):
        trainer.fit(state)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    description = "LoMaR fine-tuning on a labelled image folder"
    return run_guarded("lomar finetune", lambda: run(parse_config(FinetuneConfig, argv, "lomar finetune", description)))


if __name__ == "__main__":
    sys.exit(main())
