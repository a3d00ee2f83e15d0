"""LoMaR pretraining on any folder of images (recursive; labels ignored).

One process (one GPU, or CPU):
    lomar pretrain --data-dir /data/images --output-dir runs/pretrain --model lomar_base_patch16 --batch-size 256
One node, 8 GPUs (--batch-size is per GPU):
    torchrun --nproc_per_node=8 -m training.pretrain --config training/configs/pretrain_lomar_base.yaml \
        --data-dir /data/images --output-dir runs/pretrain
Several nodes (run on each node, NODE_RANK = 0..K-1):
    torchrun --nnodes=K --nproc_per_node=8 --node_rank=NODE_RANK --rdzv_backend=c10d \
        --rdzv_endpoint=HOST:29500 -m training.pretrain --data-dir /data/images --output-dir /shared/runs/pretrain
Resume: run the same command again (auto-resume from OUTPUT_DIR/checkpoint-last.pth) or pass --resume FILE.
"""
from __future__ import annotations

import sys
from contextlib import closing

import torch

from contracts import datasets
from training.checkpointing import TrainingState, load_training_checkpoint, resume_path
from training.config import PretrainConfig, parse_config
from training.data import ImageDataset, image_files, pretrain_transform
from training.data.gpu_decode import EncodedImageDataset, resolve_decode
from training.distributed import init_distributed
from training.errors import ConfigError
from training.models import LoMaRPretrainer, create_model
from training.optim import adamw, param_groups
from training.runner import (
    Trainer, configure_backends, make_scaler, make_schedule, prepare_output, run_guarded, setup_logging, wrap_model,
)


def build_model(config: PretrainConfig) -> LoMaRPretrainer:
    """The registered architecture with the pretraining objective's settings and any --model-option overrides."""
    model = create_model(config.model, pretrain=True, **config.architecture_overrides())
    c = model.config
    positions = (config.image_size // c.patch_size - c.window_size + 1) ** 2
    if positions < c.num_windows:
        raise ConfigError(
            f"--image-size {config.image_size} gives a {config.image_size // c.patch_size}-patch grid with "
            f"{max(positions, 0)} positions for {c.window_size}x{c.window_size} windows, fewer than --num-windows "
            f"{c.num_windows}: use a larger image size or fewer windows"
        )
    return model


def build_dataset(config: PretrainConfig) -> ImageDataset:
    """Decoded and augmented in the workers (--decode cpu), or read there and decoded on the GPU (--decode gpu)."""
    roots = datasets.parse_roots(config.data_roots) if config.data_roots else None
    dataset = image_files(config.data_dir, pretrain_transform(config.image_size, config.min_crop_scale),
                          seed=config.seed, roots=roots)
    if resolve_decode(config.decode) == "gpu":
        return EncodedImageDataset(dataset.samples, config.image_size, config.min_crop_scale, seed=config.seed)
    return dataset


def pretrain_loss(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """images (B, 3, H, W) -> norm-pix MSE over the hidden patches of M random windows per image."""
    return model(images)[0]


def run(config: PretrainConfig) -> int:
    setup_logging()
    ctx = init_distributed(config.device, config.dist_backend)
    config = config.for_device(ctx.device.type)  # what runs, saved and logged: fp32 off CUDA
    configure_backends(config, ctx)
    torch.manual_seed(config.seed)  # identical initial weights on every process
    model = build_model(config)
    dataset = build_dataset(config)
    metrics = prepare_output(config, ctx)
    model.to(ctx.device)
    optimizer = adamw(param_groups(model, config.weight_decay), ctx.device, betas=(0.9, 0.95))
    scaler = make_scaler(config, ctx)
    state = TrainingState()
    checkpoint = resume_path(config.output_dir, config.resume, config.auto_resume)
    if checkpoint is not None:
        state = load_training_checkpoint(checkpoint, model, optimizer, scaler)
    trainer = Trainer(
        config=config, ctx=ctx, model=model, train_model=wrap_model(model, ctx, config.compile),
        loss_fn=pretrain_loss, dataset=dataset, optimizer=optimizer, scaler=scaler,
        schedule=make_schedule(config, ctx), metrics=metrics,
    )
    with closing(metrics):
        trainer.fit(state)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    description = "LoMaR pretraining (local masked reconstruction) on a folder of images"
    return run_guarded("lomar pretrain", lambda: run(parse_config(PretrainConfig, argv, "lomar pretrain", description)))


if __name__ == "__main__":
    sys.exit(main())
