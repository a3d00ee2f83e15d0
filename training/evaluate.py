"""`lomar evaluate`: accuracy of a checkpoint on a labelled image folder, printed as one JSON object.

    lomar evaluate --checkpoint runs/finetune/checkpoint-best.pth --data-dir /data/labelled [--image-size 224]
        -> {"kind": "classifier", "top1": ..., "top5": ..., "loss": ..., "count": ...}
    lomar evaluate --checkpoint runs/pretrain/checkpoint-last.pth --data-dir /data/labelled
        -> {"kind": "pretrained", "knn_top1": ..., "linear_probe_top1": ..., ...}

A classifier is scored on DATA_DIR/val (or DATA_DIR). A pretrained encoder's pooled embeddings are scored by
cosine k-NN (k=20) and a linear probe, fitted on DATA_DIR/train and scored on DATA_DIR/val; without that split,
every 5th image of each class is held out.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from contracts import datasets
from training.config import AMP_CHOICES, MAX_DEFAULT_WORKERS, default_num_workers
from training.data import EvalTransform, image_folder
from training.distributed import DistContext, resolve_device
from training.encoder_init import load_encoder, read_init
from training.engine import autocast, evaluate_classifier
from training.errors import DataError
from training.models import LoMaRClassifier, build_model, checkpoint_kind, load_classifier, read_checkpoint
from training.probes import knn_top1, linear_probe_top1
from training.runner import run_guarded

HOLD_OUT_EVERY = 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lomar evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="fine-tuned or pretrained checkpoint (ours or official)")
    parser.add_argument("--data-dir", required=True, help="labelled images: DATA_DIR/CLASS/* or DATA_DIR/{train,val}")
    parser.add_argument("--image-size", type=int, default=0, help="default: the checkpoint's image size")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=default_num_workers(),
                        help="data-loading worker processes (default: the available CPUs, at most "
                             f"{MAX_DEFAULT_WORKERS})")
    parser.add_argument("--amp", choices=AMP_CHOICES, default="auto", help="autocast on CUDA (auto = bf16); fp32 on "
                                                                           "any other device")
    parser.add_argument("--knn-k", type=int, default=20)
    return parser


def loader_of(dataset, args: argparse.Namespace) -> DataLoader:
    return DataLoader(dataset, batch_size=args.batch_size, shuffle=False, num_workers=args.num_workers)


def evaluate_classifier_file(args: argparse.Namespace, ctx: DistContext) -> dict:
    model = load_classifier(args.checkpoint).to(ctx.device)
    names = read_checkpoint(args.checkpoint).get("class_names")
    root = Path(args.data_dir)
    folder = datasets.val_dir(root) or root
    size = args.image_size or model.config.img_size
    dataset, classes = image_folder(folder, EvalTransform(size), classes=list(names) if names else None)
    if len(classes) != model.config.num_classes:
        raise DataError(f"{folder} has {len(classes)} classes but the model predicts {model.config.num_classes}")
    result = evaluate_classifier(model, loader_of(dataset, args), ctx, args.amp)
    return {"kind": "classifier", "image_size": size, **result}


@torch.no_grad()
def embed(model: LoMaRClassifier, loader: DataLoader, ctx: DistContext, amp: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled embeddings (N, D) and labels (N,) of every image in the loader."""
    features, labels = [], []
    for images, batch_labels, _ in loader:
        with autocast(ctx.device, amp):
            features.append(model.forward_features(images.to(ctx.device)).float().cpu())
        labels.append(batch_labels)
    return torch.cat(features), torch.cat(labels)


def evaluate_encoder_file(args: argparse.Namespace, ctx: DistContext) -> dict:
    init = read_init(args.checkpoint)
    size = args.image_size or init.config.img_size
    model = build_model(init.config.replace(num_classes=0, global_pool=True, img_size=size), pretrain=False)
    load_encoder(model, init.state, args.checkpoint)
    model.to(ctx.device).eval()
    root, transform = Path(args.data_dir), EvalTransform(size)
    if datasets.has_splits(root):
        train_set, classes = image_folder(root / datasets.TRAIN_SPLIT, transform)
        test_set, _ = image_folder(root / datasets.VAL_SPLIT, transform, classes=classes)
    else:
        dataset, classes = image_folder(root, transform)
        held = [i for i in range(len(dataset)) if i % HOLD_OUT_EVERY == 0]
        kept = [i for i in range(len(dataset)) if i % HOLD_OUT_EVERY != 0]
        train_set, test_set = Subset(dataset, kept), Subset(dataset, held)
    train_x, train_y = embed(model, loader_of(train_set, args), ctx, args.amp)
    test_x, test_y = embed(model, loader_of(test_set, args), ctx, args.amp)
    return {
        "kind": "pretrained", "image_size": size, "num_train": len(train_y), "num_test": len(test_y),
        "knn_k": args.knn_k,
        "knn_top1": knn_top1(train_x, train_y, test_x, test_y, k=args.knn_k, num_classes=len(classes)),
        "linear_probe_top1": linear_probe_top1(train_x, train_y, test_x, test_y, num_classes=len(classes)),
    }


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=resolve_device(args.device, 0))
    if checkpoint_kind(args.checkpoint) == "classifier":
        result = evaluate_classifier_file(args, ctx)
    else:
        result = evaluate_encoder_file(args, ctx)
    print(json.dumps({"checkpoint": str(args.checkpoint), **result}))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return run_guarded("lomar evaluate", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
