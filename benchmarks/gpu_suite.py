"""Every GPU target of the project in one run, each next to its own baseline: one attention layer (the fused Triton
iRPE kernel vs SDPA + bias), pretraining (LoMaR vs the global MAE baseline), inference (LoMaR classifier vs timm's
ViT), both with LoMaR once per attention implementation, the exported ONNX model in ONNX Runtime's GPU providers,
serving (`lomar serve` vs in-process) and the data path (CPU workers, nvJPEG). Prints a table and writes
results.json + results.md under --out.

    PYTHONPATH=. python benchmarks/gpu_suite.py --out results/gpu                 # one H100/H200: up to ~19 min (the caps)
    PYTHONPATH=. python benchmarks/gpu_suite.py --out /tmp/suite --device cpu --quick   # tiny smoke run, CPU
    PYTHONPATH=. python benchmarks/gpu_suite.py --out results/gpu --parts inference onnx

Each part runs in its own process (--quick: in this one) with a time cap: after 3/4 of it no new measurement starts; at the cap the
process is stopped and what it measured so far is kept. A part that fails, or cannot run here (missing provider
or package), is recorded with its error or the reason, and the others still run.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.suite.common import Recorder, Settings, Skip, error_text  # noqa: E402
from benchmarks.suite.report import markdown, table  # noqa: E402

# name -> (module, time cap in seconds on a GPU); the order is the running order
PARTS: dict[str, tuple[str, float]] = {
    "attention": ("benchmarks.suite.attention", 150.0),
    "pretraining": ("benchmarks.suite.pretraining", 360.0),
    "inference": ("benchmarks.suite.inference", 200.0),
    "data": ("benchmarks.suite.data_path", 45.0),
    "onnx": ("benchmarks.suite.onnx_gpu", 150.0),  # fp32 + fp16 graphs, PyTorch bf16 eager + compiled beside
    "serving": ("benchmarks.suite.serving", 240.0),  # includes exporting the served model for the GPU (~1 min)
}
QUICK_CAP_S = 60.0
SOFT_FRACTION = 0.75  # share of the cap after which no new measurement starts


def run_part(name: str, settings: dict[str, Any], path: str, soft_s: float) -> None:
    """Child process: run one part, then write its status into its result file."""
    started = time.monotonic()
    record = Recorder(Path(path), deadline=started + soft_s)
    record.flush()
    status: dict[str, Any] = {"status": "ok"}
    try:
        module = importlib.import_module(PARTS[name][0])
        module.run(Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}), record)
    except Skip as exc:
        status = {"status": "skipped", "reason": str(exc)}
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 (SystemExit from helpers too: the part failed, the suite goes on)
        status = {"status": "error", "error": error_text(exc)}
    data = json.loads(Path(path).read_text())
    data.update(status, seconds=round(time.monotonic() - started, 1))
    Path(path).write_text(json.dumps(data, default=str))


def run_in_process(name: str, settings: Settings, folder: Path, cap_s: float) -> dict[str, Any]:
    """Run a part here (the quick smoke run: no process start-up); its cap only stops new measurements."""
    path = folder / f"{name}.json"
    run_part(name, settings.to_dict(), str(path), cap_s * SOFT_FRACTION)
    return json.loads(path.read_text())


def run_isolated(name: str, settings: Settings, folder: Path, cap_s: float) -> dict[str, Any]:
    """Run a part in a spawned process; stop it at `cap_s`, keeping what it recorded."""
    path = folder / f"{name}.json"
    path.unlink(missing_ok=True)
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=run_part, args=(name, settings.to_dict(), str(path), cap_s * SOFT_FRACTION))
    started = time.monotonic()
    process.start()
    process.join(cap_s)
    timed_out = process.is_alive()
    if timed_out:
        process.terminate()
        process.join(15)
        if process.is_alive():
            process.kill()
            process.join()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {"rows": [], "summary": {}, "notes": []}
    if timed_out:
        data.update(status="timeout", error=f"stopped at its time cap of {cap_s:.0f} s (figures so far kept)")
    elif "status" not in data:
        data.update(status="error", error=f"the part's process died (exit code {process.exitcode})")
    data.setdefault("seconds", round(time.monotonic() - started, 1))
    return data


def environment(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python", *sys.argv]), "python": platform.python_version(), "torch": torch.__version__,
        "cpu_cores": os.cpu_count(), "device": device,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json and results.md")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny model, one step each, eager only: a smoke run")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--cap-scale", type=float, default=1.0, help="multiply every part's time cap")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here (use --device cpu --quick for a smoke run)")
    settings = Settings.for_device(args.device, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    parts_dir = args.out / "parts"
    parts_dir.mkdir(exist_ok=True)
    results: dict[str, Any] = {"environment": environment(args.device), "settings": settings.to_dict(), "parts": {}}
    started = time.monotonic()
    for name in args.parts:
        cap = (QUICK_CAP_S if args.quick else PARTS[name][1]) * args.cap_scale
        print(f"[{time.monotonic() - started:6.1f} s] {name} (cap {cap:.0f} s) ...", flush=True)
        run = run_in_process if args.quick else run_isolated
        results["parts"][name] = run(name, settings, parts_dir, cap)
        part = results["parts"][name]
        print(f"[{time.monotonic() - started:6.1f} s] {name}: {part['status']} in {part['seconds']} s "
              f"{part.get('reason') or part.get('error') or ''}", flush=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    results["environment"]["total_seconds"] = round(time.monotonic() - started, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (args.out / "results.md").write_text(markdown(results))
    print(table(results))
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
