"""`lomar export`: a checkpoint becomes a verified new version of a model in a Triton model repository.

    lomar export --checkpoint official_finetuned.pth --task classify --out model_repository
    lomar export --checkpoint official_pretrained.pth --task reconstruct --out model_repository
    lomar export --checkpoint ckpt.pth --task classify --out repo --device gpu --precision fp16
    lomar export --checkpoint ckpt.pth --task classify --out repo --backend onnxruntime --precision fp16
    lomar export --checkpoint ckpt.pth --task classify --out repo --graph ort_fused
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from contracts.model_repository import DEFAULT_CLASSIFIER, DEFAULT_RECONSTRUCTOR, MODEL_NAME_RULE, TASKS
from export.errors import ExportError
from export.pipeline import FORMATS, GRAPHS, PRECISIONS, ExportOptions, export_checkpoint
from export.triton_config import DEVICES, FLAVOURS, SERVING_PROFILES
from export.verify import FP32_TOLERANCE
from training.errors import TrainingError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lomar export", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a .pth file: ours or the paper's (fine-tuned for classify, pretrained for reconstruct)")
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="model repository root (created if missing)")
    parser.add_argument("--name", help=f"Triton model name, {MODEL_NAME_RULE} (default: {DEFAULT_CLASSIFIER} / "
                                       f"{DEFAULT_RECONSTRUCTOR})")
    parser.add_argument("--image-size", type=int, help="input height = width (default: the checkpoint's)")
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--precision", choices=PRECISIONS, help="default: fp32 for onnx, fp16 for tensorrt")
    parser.add_argument("--graph", choices=GRAPHS, default="standard",
                        help="onnx: standard operators (any runtime, TensorRT) or ort_fused (each attention layer "
                             "one ONNX Runtime MultiHeadAttention node, the iRPE term as its attention bias; "
                             "python and onnxruntime backends)")
    parser.add_argument("--labels", type=Path, help="class names, one per line (default: the checkpoint's "
                                                    "class_names, else class_0..class_{C-1})")
    parser.add_argument("--backend", choices=FLAVOURS,
                        help="Triton backend: python (ONNX Runtime inside the Python backend; runs on the Triton "
                             "bundled with nvidia-pytriton), onnxruntime or tensorrt (NVIDIA's Triton container); "
                             "default: python for onnx, tensorrt for tensorrt")
    cpu, gpu = SERVING_PROFILES["cpu"], SERVING_PROFILES["gpu"]
    parser.add_argument("--device", choices=DEVICES,
                        help="where Triton runs the model (instance kind KIND_CPU or KIND_GPU: a KIND_GPU version "
                             "never loads anywhere but on CUDA) and the defaults of the three options below; "
                             "default: cpu for --backend python, gpu otherwise")
    parser.add_argument("--max-batch-size", type=int,
                        help=f"default {cpu.max_batch_size} on cpu, {gpu.max_batch_size} on gpu")
    parser.add_argument("--max-queue-delay-us", type=int,
                        help=f"dynamic batcher queue delay; default {cpu.max_queue_delay_us} on cpu, "
                             f"{gpu.max_queue_delay_us} on gpu")
    parser.add_argument("--instances", type=int, help=f"model instances in Triton (per GPU on gpu); default "
                                                      f"{cpu.instances} on cpu, {gpu.instances} on gpu")
    parser.add_argument("--intra-op-threads", type=int, default=0,
                        help="python backend: ONNX Runtime threads per instance (0 = ONNX Runtime's default)")
    parser.add_argument("--ort-tensorrt", action="store_true",
                        help="onnxruntime backend: let ONNX Runtime use TensorRT on the GPU")
    parser.add_argument("--tolerance", type=float, default=FP32_TOLERANCE,
                        help="fp32 verification: max abs difference allowed against PyTorch")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = ExportOptions(
            checkpoint=args.checkpoint, task=args.task, out=args.out, name=args.name, image_size=args.image_size,
            format=args.format, precision=args.precision, labels_file=args.labels, backend=args.backend,
            device=args.device, max_batch_size=args.max_batch_size, max_queue_delay_us=args.max_queue_delay_us,
            instances=args.instances, intra_op_threads=args.intra_op_threads, ort_tensorrt=args.ort_tensorrt,
            tolerance=args.tolerance, graph=args.graph)
        published = export_checkpoint(options)
    except (ExportError, TrainingError) as error:
        print(f"lomar export: error: {error}", file=sys.stderr)
        return 2
    print(f"exported {published.name} version {published.version} to {published.path}")
    return 0
