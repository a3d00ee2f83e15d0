"""Exported classifiers in ONNX Runtime: LoMaR's standard and ort_fused graphs against a plain ViT's, side by side.

Four graphs per image size, all with the export contract (UINT8 image in, ImageNet normalisation inside, logits and
embedding out) and the same exporter (export/onnx_export.py), randomly initialised (iRPE tables too, so the term is
not zero), 1000 classes, fp32:
- lomar standard: `lomar export`'s default graph (attention in standard operators, the iRPE bias a GatherElements);
- lomar ort_fused: `lomar export --graph ort_fused` (export/ort_fused.py: one MultiHeadAttention per layer, the iRPE
  term as its attention_bias);
- vit standard / vit ort_fused: timm's plain ViT of the same size (class token, absolute position embedding, no
  iRPE, average pool + fc_norm like LoMaR's head), its attention as standard operators / as the same
  MultiHeadAttention node without a bias.
Every session has the same thread count; the four run one call each in turn (alternating), so load from other
processes falls on all alike; figures are medians. `--clock cpu` times each call in CPU time of this process
(ONNX Runtime's thread spinning off, so waiting costs nothing): the work each graph does, which other processes
on a busy machine disturb far less than wall time. Each graph's max |embedding - PyTorch| is printed first.

    python benchmarks/ort_graphs.py                                          # ViT-S/16, 224 px, batch 1 and 8
    python benchmarks/ort_graphs.py --model small --sizes 224 448 --batch-sizes 1 8 --threads 2 --seconds 20
    python benchmarks/ort_graphs.py --clock cpu                              # on a machine others are using
    python benchmarks/ort_graphs.py --device cuda --model base --batch-sizes 1 32   # a host with onnxruntime-gpu
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import timm
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.export_latency import alternating_timings, onnx_step, session_for  # noqa: E402
from benchmarks.model_throughput import TIMM_NAMES  # noqa: E402
from export.onnx_export import EXAMPLE_BATCH, export_onnx  # noqa: E402
from export.ort_fused import CONTRIB_DOMAIN, CONTRIB_OPSET, MultiHeadAttention, export_ort_fused  # noqa: E402
from export.wrappers import ClassifierExport, ImageNormalize  # noqa: E402
from training.models import create_model  # noqa: E402

TARGETS = ("lomar standard", "lomar ort_fused", "vit standard", "vit ort_fused")
OUTPUTS = ["logits", "embedding"]
RPE_INIT_STD = 0.02  # trained tables are not zero (LoMaR initialises them to zero)


class PlainViTExport(nn.Module):
    """image UINT8 (B, 3, H, W) -> logits FP32 (B, C), embedding FP32 (B, D): ClassifierExport's contract around a
    timm VisionTransformer with global_pool="avg"."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.normalize = ImageNormalize()
        self.model = model.eval()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.model.forward_features(self.normalize(image))  # (B, 1 + h*w, D)
        embedding = self.model.forward_head(tokens, pre_logits=True)  # (B, D)
        return self.model.head(embedding), embedding


class PlainFusedAttention(nn.Module):
    """timm's Attention (no q/k norm) as one MultiHeadAttention node without a bias."""

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.qkv, self.proj = attention.qkv, attention.proj
        self.num_heads, self.scale = attention.num_heads, attention.scale

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """x: (B, L, D) -> (B, L, D)."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # (B, L, D) each
        return self.proj(MultiHeadAttention.apply(q, k, v, None, self.num_heads, self.scale))


def build(model: str, size: int) -> tuple[nn.Module, nn.Module]:
    """The LoMaR and plain-ViT contract wrappers, randomly initialised (seed 0)."""
    torch.manual_seed(0)
    lomar = create_model(f"lomar_{model}_patch16", num_classes=1000, img_size=size)
    for block in lomar.blocks:
        nn.init.normal_(block.attn.rpe_k.lookup_table_weight, std=RPE_INIT_STD)
    vit = timm.create_model(TIMM_NAMES[model], num_classes=1000, img_size=size, global_pool="avg")
    return ClassifierExport(lomar), PlainViTExport(vit)


def export_graphs(lomar: nn.Module, vit: nn.Module, size: int, patch: int, folder: Path) -> dict[str, Path]:
    """The four graphs of TARGETS, written to `folder`."""
    example = (torch.from_numpy(np.random.default_rng(1).integers(0, 256, (EXAMPLE_BATCH, 3, size, size),
                                                                  dtype=np.uint8)),)
    paths = {name: folder / f"{name.replace(' ', '_')}_{size}.onnx" for name in TARGETS}
    export_onnx(lomar, example, ["image"], OUTPUTS, paths["lomar standard"])
    export_ort_fused(lomar, (size // patch, size // patch), example, ["image"], OUTPUTS, paths["lomar ort_fused"])
    export_onnx(vit, example, ["image"], OUTPUTS, paths["vit standard"])
    for block in vit.model.blocks:
        block.attn = PlainFusedAttention(block.attn)
    export_onnx(vit, example, ["image"], OUTPUTS, paths["vit ort_fused"], custom_opsets={CONTRIB_DOMAIN: CONTRIB_OPSET})
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="small", choices=sorted(TIMM_NAMES), help="ViT size (LoMaR and timm)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[224])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="ONNX Runtime intra-op threads")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="measuring time per row, the four graphs together (at least 3 runs each)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall time, or this process's CPU time with thread spinning off (busy machines)")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    print(f"ViT-{args.model}/16 fp32, ONNX Runtime {ort.__version__} {args.device}, {args.threads} threads, "
          f"torch {torch.__version__}, timm {timm.__version__}; img/s per {args.clock} second, medians of "
          f"alternating runs")
    header = (f"{'size':>5}{'batch':>6}" + "".join(f"{name:>17}" for name in TARGETS)
              + f"{'fused/std':>11}{'vs ViT std':>11}{'vs ViT fused':>13}{'best vs best':>13}")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as temp:
        for size in args.sizes:
            lomar, vit = build(args.model, size)
            probe = rng.integers(0, 256, (2, 3, size, size), dtype=np.uint8)
            with torch.no_grad():
                expected = {"lomar": lomar(torch.from_numpy(probe))[1].numpy(),
                            "vit": vit(torch.from_numpy(probe))[1].numpy()}
            paths = export_graphs(lomar, vit, size, lomar.model.config.patch_size, Path(temp))
            sessions = {name: session_for(paths[name], args.device, args.threads, spinning=args.clock == "wall")
                        for name in TARGETS}
            diffs = {name: float(np.abs(sessions[name].run(["embedding"], {"image": probe})[0]
                                        - expected[name.split()[0]]).max()) for name in TARGETS}
            print(f"{size} px, max |embedding - PyTorch|: " + ", ".join(f"{n} {d:.1e}" for n, d in diffs.items()))
            print(header)
            print("-" * len(header))
            for batch in args.batch_sizes:
                images = rng.integers(0, 256, (batch, 3, size, size), dtype=np.uint8)
                runs = alternating_timings([onnx_step(sessions[name], images) for name in TARGETS], args.seconds,
                                           clock=clock)
                ips = dict(zip(TARGETS, (batch / statistics.median(r) for r in runs)))
                fused_gain = ips["lomar ort_fused"] / ips["lomar standard"]
                standard = ips["lomar standard"] / ips["vit standard"]
                fused = ips["lomar ort_fused"] / ips["vit ort_fused"]
                best = max(ips["lomar standard"], ips["lomar ort_fused"]) / max(ips["vit standard"],
                                                                                  ips["vit ort_fused"])
                print(f"{size:>5}{batch:>6}" + "".join(f"{ips[name]:>17.2f}" for name in TARGETS)
                      + f"{fused_gain:>10.2f}x{standard:>10.2f}x{fused:>12.2f}x{best:>12.2f}x", flush=True)


if __name__ == "__main__":
    main()
