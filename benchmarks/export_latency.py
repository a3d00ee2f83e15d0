"""PyTorch eager vs the exported ONNX graph in ONNX Runtime: latency at batch 1, throughput at larger batches.

Both run the same contract wrapper (UINT8 image in, normalisation inside, logits + embedding out) of a randomly
initialised LoMaR classifier, with the same thread count, on the same inputs.

    python benchmarks/export_latency.py                                   # CPU: tiny and small, 224 px
    python benchmarks/export_latency.py --models tiny small base --batch-sizes 1 8 32 --threads 2 --seconds 5
    python benchmarks/export_latency.py --device cuda --precision fp16    # GPU host with onnxruntime-gpu
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from export.onnx_export import export_onnx  # noqa: E402
from export.precision import convert_to_fp16  # noqa: E402
from export.wrappers import ClassifierExport  # noqa: E402
from training.models import create_model  # noqa: E402


def alternating_timings(steps: list[Callable[[], object]], seconds: float, min_runs: int = 3, warmup: int = 2,
                        clock: Callable[[], float] = time.perf_counter) -> list[list[float]]:
    """Seconds per call of each step, measured alternately (one call of each in turn) so that load from other
    processes on a shared machine falls on all alike; at least `min_runs` rounds, more until `seconds` passed.
    `clock`: wall time by default; time.process_time counts only the CPU time this process spent."""
    for _ in range(warmup):
        for step in steps:
            step()
    runs: list[list[float]] = [[] for _ in steps]
    started = time.perf_counter()
    while len(runs[0]) < min_runs or time.perf_counter() - started < seconds:
        for step, record in zip(steps, runs):
            begin = clock()
            step()
            record.append(clock() - begin)
    return runs


def torch_step(module: torch.nn.Module, images: np.ndarray, device: str) -> Callable[[], object]:
    x = torch.from_numpy(images).to(device)

    @torch.inference_mode()
    def step() -> object:
        out = module(x)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    return step


def onnx_step(session: ort.InferenceSession, images: np.ndarray) -> Callable[[], object]:
    return lambda: session.run(None, {"image": images})


def session_for(path: Path, device: str, threads: int, spinning: bool = True) -> ort.InferenceSession:
    """spinning=False: idle intra-op threads sleep instead of spinning (so CPU time counts only work)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), options, providers=providers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "small"], choices=["tiny", "small", "base", "large"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch and ONNX Runtime threads")
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="measuring time per row, both runtimes together (at least 3 runs each)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                        help="fp16: torch runs .half() (GPU), ONNX Runtime the fp16-converted graph")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.float16 if args.precision == "fp16" else torch.float32
    print(f"device {args.device}, {args.threads} threads, {args.image_size} px, {args.precision}, "
          f"torch {torch.__version__}, onnxruntime {ort.__version__}")
    header = (f"{'model':<7}{'batch':>6}{'torch ms':>11}{'onnx ms':>10}{'torch img/s':>13}{'onnx img/s':>12}"
              f"{'speed-up':>10}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as temp:
        for name in args.models:
            torch.manual_seed(0)
            model = create_model(f"lomar_{name}_patch16", num_classes=1000, img_size=args.image_size)
            reference = ClassifierExport(model)  # the fp32 module exported below
            path = Path(temp) / f"{name}.onnx"
            example = torch.from_numpy(rng.integers(0, 256, (2, 3, args.image_size, args.image_size), np.uint8))
            export_onnx(reference, (example,), ["image"], ["logits", "embedding"], path)
            if args.precision == "fp16":
                convert_to_fp16(path, path)
            session = session_for(path, args.device, args.threads)
            eager = ClassifierExport(model, dtype).to(args.device)
            for batch in args.batch_sizes:
                images = rng.integers(0, 256, (batch, 3, args.image_size, args.image_size), dtype=np.uint8)
                runs = alternating_timings([torch_step(eager, images, args.device), onnx_step(session, images)],
                                           args.seconds)
                t_torch, t_onnx = (statistics.median(r) for r in runs)
                print(f"{name:<7}{batch:>6}{t_torch * 1e3:>11.1f}{t_onnx * 1e3:>10.1f}{batch / t_torch:>13.1f}"
                      f"{batch / t_onnx:>12.1f}{t_torch / t_onnx:>9.2f}x", flush=True)


if __name__ == "__main__":
    main()
