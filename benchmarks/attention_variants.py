"""Where the LoMaR classifier loses to a plain ViT: the iRPE attention, timed in its variants, side by side.

Parts, in priority order (each measurement guarded: an error or an unsupported kernel is recorded, not raised;
nothing new starts once the total time cap would be passed):
- layer: one attention layer (qkv, iRPE, attention, proj) at ViT shapes: (a) SDPA + materialised (B, H, L, L) bias,
  default backend; (b) the same with each SDPA backend forced; (c) FlexAttention with the bucket computed from the
  token indices in a score_mod (training/models/flex_irpe.py); (d) timm's attention layer, flash SDPA without bias
  (the lower bound); (e) the fused Triton kernel (training/models/irpe_triton.py; CUDA only, noted as not measured
  elsewhere). Each output is compared with (a) (max abs diff; (d) has no iRPE term, so its diff is not one).
- model: the whole classifier forward, LoMaR with each implementation vs timm's ViT, eager then compiled.
- pretrain: the LoMaR pretraining step at the largest size, compiled, at two batch sizes and with
  mode "max-autotune-no-cudagraphs" (benchmarks/pretrain_throughput.py's measure, in a child killed at the cap;
  attention "auto": the fused kernel on CUDA).

    PYTHONPATH=. python benchmarks/attention_variants.py --out DIR            # CUDA, ViT-B/16, ~150 s cap
    PYTHONPATH=. python benchmarks/attention_variants.py --out DIR --device cpu --quick   # tiny, seconds
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import timm
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.model_throughput import TIMM_NAMES, images_per_second, synchronize  # noqa: E402
from benchmarks.pretrain_throughput import measure_in_child  # noqa: E402
from benchmarks.suite.common import Recorder, error_text, release  # noqa: E402
from training.models import create_model  # noqa: E402
from training.models.irpe import bucket_table  # noqa: E402
from training.models.registry import model_config  # noqa: E402
from training.models.vit import Attention  # noqa: E402

PARTS = ("layer", "model", "pretrain")
FORCED_BACKENDS = ("EFFICIENT_ATTENTION", "CUDNN_ATTENTION")
AUTOTUNE_MODE = "max-autotune-no-cudagraphs"
RPE_STD = 0.1  # non-zero iRPE tables, so a wrong bucket shows in the diffs (zero at init)


@dataclass(frozen=True)
class Plan:
    device: str
    model: str  # tiny | base
    cases: tuple[tuple[int, int], ...]  # (image size, batch), most important first
    pretrain_size: int
    pretrain_batches: tuple[int, ...]
    steps: int
    warmup: int
    pretrain_compile: bool
    patch: int = 16

    @classmethod
    def for_device(cls, device: str, quick: bool) -> "Plan":
        if quick:
            return cls(device, "tiny", ((64, 2), (48, 2)), 128, (2, 4), steps=1, warmup=1, pretrain_compile=False)
        return cls(device, "base", ((448, 64), (224, 256)), 448, (128, 256), steps=10, warmup=3,
                   pretrain_compile=True)


class Run(Recorder):
    """The suite's Recorder (rows and notes rewritten to JSON after each, a time cap) with the run's environment
    in `summary` and a check that a measurement still fits in the cap."""

    def fits(self, label: str, estimate_s: float) -> bool:
        """True when `estimate_s` more seconds stay inside the cap; else a note says what was skipped."""
        if self.time_left() >= estimate_s:
            return True
        self.note(f"{label}: not measured, {self.time_left():.0f} s left of the cap, needs ~{estimate_s:.0f} s")
        return False


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def timed(run: Run, device: torch.device, plan: Plan, batch: int, fn: Callable[[], torch.Tensor],
          reference: torch.Tensor | None, exact: bool, **row: Any) -> torch.Tensor | None:
    """Time `fn` (warm-up first), record img/s, ms per call and max |fn() - reference|; errors become rows."""
    start = time.perf_counter()
    try:
        with torch.inference_mode(), autocast(device):
            out = fn()  # first call: compilation, kernel selection
            synchronize(device)
            value = images_per_second(fn, batch, device, plan.warmup, plan.steps)
        result: dict[str, Any] = {"img_per_s": round(value, 1), "ms": round(1000 * batch / value, 3)}
        if reference is not None:
            result["max_abs_diff"] = float((out.float() - reference.float()).abs().max())
            result["exact_variant"] = exact
        run.add(**row, batch=batch, **result, seconds=round(time.perf_counter() - start, 1))
        return out
    except Exception as exc:  # an unsupported kernel or a compile failure is a result too
        run.add(**row, batch=batch, error=error_text(exc), seconds=round(time.perf_counter() - start, 1))
        return None


@contextlib.contextmanager
def forced(backend: str | None) -> Iterator[None]:
    if backend is None:
        yield
    else:
        with sdpa_kernel(getattr(SDPBackend, backend)):
            yield


def layer_part(run: Run, plan: Plan, device: torch.device, size: int, batch: int) -> None:
    config = model_config(f"lomar_{plan.model}_patch16")
    if not run.fits(f"layer {size}", 20.0 if device.type == "cuda" else 5.0):
        return
    grid = size // plan.patch
    length = 1 + grid * grid
    torch.manual_seed(0)
    attn = Attention(config.embed_dim, config.num_heads).to(device).eval()
    torch.nn.init.normal_(attn.rpe_k.lookup_table_weight, std=RPE_STD)
    plain = timm.models.vision_transformer.Attention(config.embed_dim, config.num_heads, qkv_bias=True)
    plain = plain.to(device).eval()
    x = torch.randn(batch, length, config.embed_dim, device=device)
    buckets = bucket_table(grid, grid).to(device)
    common = dict(part="layer", size=size, tokens=length)

    def lomar(implementation: str, backend: str | None) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            attn.implementation = implementation
            with forced(backend):
                return attn(x, buckets, grid)
        return call

    reference = timed(run, device, plan, batch, lomar("sdpa_bias", None), None, True,
                      variant="a sdpa_bias default", **common)
    backends = FORCED_BACKENDS if device.type == "cuda" else ()
    for backend in backends:
        timed(run, device, plan, batch, lomar("sdpa_bias", backend), reference, True,
              variant=f"b sdpa_bias {backend}", **common)
    if run.fits(f"layer {size} flex", 15.0 if device.type == "cuda" else 5.0):
        timed(run, device, plan, batch, lomar("flex", None), reference, True, variant="c flex score_mod",
              **common)
    lower = "FLASH_ATTENTION" if device.type == "cuda" else None
    with forced(lower):
        timed(run, device, plan, batch, lambda: plain(x), reference, False,
              variant=f"d timm no bias {lower or 'default'}", **common)
    if kernel_runs(run, device, f"layer {size} triton"):
        timed(run, device, plan, batch, lomar("triton", None), reference, True, variant="e triton fused kernel",
              **common)
    release(device)


def kernel_runs(run: Run, device: torch.device, label: str) -> bool:
    """The fused Triton kernel runs on CUDA only; elsewhere a note says so."""
    if device.type == "cuda":
        return True
    run.note(f"{label}: not measured, the fused kernel runs on CUDA only")
    return False


def model_part(run: Run, plan: Plan, device: torch.device, size: int, batch: int, compiled: bool) -> None:
    """Eager: LoMaR sdpa_bias, LoMaR flex, timm, LoMaR triton; compiled: triton, flex, timm, sdpa_bias. Diffs
    against the first LoMaR output of the call (the same weights: same seed)."""
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    lomar = create_model(f"lomar_{plan.model}_patch16", img_size=size, num_classes=1000).to(device).eval()
    for name, param in lomar.named_parameters():
        if name.endswith("lookup_table_weight"):
            torch.nn.init.normal_(param, std=RPE_STD)
    torch.nn.init.normal_(lomar.head.weight, std=0.02)  # logits of order 1, so the diffs mean something
    images = torch.randn(batch, 3, size, size, device=device)
    reference = None
    order = {False: ("sdpa_bias", "flex", "timm", "triton"), True: ("triton", "flex", "timm", "sdpa_bias")}
    mode = "compiled" if compiled else "eager"
    for what in order[compiled]:
        estimate = (60.0 if compiled else 15.0) if cuda else 3.0
        if what == "triton" and not kernel_runs(run, device, f"model {size} {mode} triton"):
            continue
        if not run.fits(f"model {size} {mode} {what}", estimate):
            continue
        if what == "timm":
            net = timm.create_model(TIMM_NAMES[plan.model], pretrained=False, img_size=size,
                                    num_classes=1000).to(device).eval()
        else:
            lomar.set_attention(what)
            net = lomar
        runner = torch.compile(net) if compiled else net
        out = timed(run, device, plan, batch, lambda: runner(images), None if what == "timm" else reference,
                    True, part="model", size=size, mode=mode, model=what if what == "timm" else f"lomar {what}")
        if what != "timm" and reference is None:
            reference = out
        release(device)


def pretrain_part(run: Run, plan: Plan, device: torch.device) -> None:
    items = [(batch, None) for batch in plan.pretrain_batches]
    if plan.pretrain_compile:
        items.append((plan.pretrain_batches[0], AUTOTUNE_MODE))
    for batch, mode in items:
        compiled = plan.pretrain_compile
        label = f"pretrain {plan.pretrain_size} batch {batch} {mode or ('compiled' if compiled else 'eager')}"
        if not run.fits(label, (150.0 if mode else 75.0) if compiled else 5.0):
            continue
        start = time.perf_counter()
        row = dict(part="pretrain", size=plan.pretrain_size, batch=batch,
                   mode=mode or ("compiled" if compiled else "eager"))
        try:
            result = measure_in_child("lomar", plan.model, plan.pretrain_size, batch, plan.steps, plan.warmup,
                                      plan.device, compiled, mode, timeout_s=max(run.time_left(), 1.0))
            row.update({key: round(value, 1) if isinstance(value, float) else value for key, value in result.items()})
        except Exception as exc:
            row["error"] = error_text(exc)
        run.add(**row, seconds=round(time.perf_counter() - start, 1))


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'part':<8} {'size':>4} {'batch':>5} {'what':<34} {'img/s':>10} {'ms':>9} {'max|diff|':>10}  note"]
    for row in rows:
        what = row.get("variant") or " ".join(str(row[key]) for key in ("model", "mode") if key in row) \
            or str(row.get("mode", ""))
        diff = row.get("max_abs_diff")
        diff_text = "" if diff is None else f"{diff:.2e}" + ("" if row.get("exact_variant") else "*")
        note = row.get("error", "")
        lines.append(f"{row['part']:<8} {row['size']:>4} {row['batch']:>5} {what:<34} "
                     f"{row.get('img_per_s', float('nan')):>10.1f} {row.get('ms', float('nan')):>9.3f} "
                     f"{diff_text:>10}  {note[:100]}")
    lines.append("(* not an exact variant: no iRPE term, the diff only shows the term's size)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for attention_variants.json / .txt")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny model and shapes, eager pretraining (seconds)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--cap-s", type=float, default=150.0,
                        help="no measurement starts unless its estimated time fits in this many seconds")
    parser.add_argument("--grace-s", type=float, default=30.0,
                        help="past cap + grace the script reports what it has and exits (status 3)")
    args = parser.parse_args(argv)
    plan = Plan.for_device(args.device, args.quick)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    args.out.mkdir(parents=True, exist_ok=True)
    label = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    meta = {"device": label, "torch": torch.__version__, "plan": plan.__dict__, "cap_s": args.cap_s,
            "dtype": "bf16 autocast" if device.type == "cuda" else "fp32",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    run = Run(args.out / "attention_variants.json", deadline=time.monotonic() + args.cap_s, summary=meta)
    # cheap first (the worst case first): layers and eager models, then compiled models (CUDA: compiling a whole
    # model on a few CPU cores takes minutes), then the pretraining step
    stages: list[tuple[str, Callable[..., None], tuple[Any, ...]]] = []
    for case in plan.cases:
        stages += [("layer", layer_part, case), ("model", model_part, (*case, False))]
    if device.type == "cuda":
        stages += [("model", model_part, (*case, True)) for case in plan.cases]
    stages.append(("pretrain", pretrain_part, ()))
    watchdog = threading.Timer(args.cap_s + args.grace_s, hard_stop, (run, plan))
    watchdog.daemon = True
    watchdog.start()
    for name, part, case in stages:
        if name in args.parts:
            try:
                part(run, plan, device, *case)
            except Exception as exc:  # a part's own failure is recorded, the next part still runs
                run.note(f"{name} {case}: {error_text(exc)}")
    watchdog.cancel()
    report(run, plan)
    return 0


def report(run: Run, plan: Plan) -> None:
    """Print the table and notes, and write them next to the JSON."""
    text = table(run.rows) + "".join(f"\nnote: {note}" for note in run.notes)
    (run.path.parent / "attention_variants.txt").write_text(text + "\n")
    print(f"attention variants, ViT-{plan.model}/16, {run.summary['dtype']}, {run.summary['device']}, "
          f"torch {torch.__version__}")
    print(text, flush=True)


def hard_stop(run: Run, plan: Plan) -> None:
    """Past cap + grace: note it, report what was measured, kill measuring children and exit at once."""
    run.note("hard stop: the measurement running at cap + grace was abandoned")
    report(run, plan)
    for child in multiprocessing.active_children():
        child.kill()
    os._exit(3)


if __name__ == "__main__":
    sys.exit(main())
