"""The job memory estimate (training/models/memory.py) against the memory a training step really takes, on CPU.

Each case runs in a fresh child process: a registered classifier, AdamW, two fp32 training steps on random
images; the figure is the growth of the child's peak resident memory over the steps (ru_maxrss), beside the
estimate's activations plus gradients and AdamW state (the weights are resident before the steps start).

    PYTHONPATH=. python benchmarks/job_memory.py                      # three CPU cases, about a minute
    PYTHONPATH=. python benchmarks/job_memory.py --case lomar_base_patch16:8:224
"""
from __future__ import annotations

import argparse
import gc
import multiprocessing
import resource
import sys

DEFAULT_CASES = ("lomar_tiny_patch16:32:224", "lomar_small_patch16:16:224", "lomar_base_patch16:8:224")


def measure(name: str, batch: int, size: int, queue: multiprocessing.Queue) -> None:
    """In a child: peak RSS growth (bytes) over two training steps, and the estimate of the same steps."""
    import torch

    from training.models import create_model
    from training.models.memory import FP32_BYTES, training_memory

    torch.set_num_threads(1)
    model = create_model(name, num_classes=10, img_size=size)
    optimizer = torch.optim.AdamW(model.parameters())
    images, labels = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))  # (B, 3, H, W), (B,)
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(2):
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        optimizer.zero_grad()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024  # KiB on Linux
    estimate = training_memory(model.config, batch, size, pretrain=False)
    queue.put((grown, estimate.total_bytes - estimate.parameters * FP32_BYTES, estimate.describe()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", help="NAME:BATCH:IMAGE_SIZE (repeatable)")
    args = parser.parse_args(argv)
    context = multiprocessing.get_context("spawn")
    for case in args.case or DEFAULT_CASES:
        name, batch, size = case.split(":")
        queue = context.Queue()
        child = context.Process(target=measure, args=(name, int(batch), int(size), queue))
        child.start()
        grown, estimated, described = queue.get()
        child.join()
        print(f"{case}: measured {grown / 2**20:.0f} MiB, estimated {estimated / 2**20:.0f} MiB "
              f"(ratio {estimated / grown:.2f}); estimate in full: {described}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
