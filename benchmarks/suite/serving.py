"""(d) Serving: `lomar serve` (Triton + gateway, JPEG in) against the same exported model called in-process (the same
JPEG decoding, then ONNX Runtime on the same provider), closed loop at each concurrency: images/s and p50/p99
request latency; the ratio compares each at its best concurrency.

The model: on cuda, LoMaR-<model>/16 at 224 (random init, 1000 classes) exported as `lomar export --device gpu
--precision fp16` writes it (a KIND_GPU config with the GPU serving profile: Triton's runner runs it on CUDA or
refuses to load it); on cpu, the repository's built-in `lomar_classifier`. One image per request.

Needs the serving extras (tritonclient, nvidia-pytriton, fastapi, uvicorn, aiohttp) and, on a GPU, an onnxruntime
whose CUDA provider loads (checked with a session before the stack starts); missing pieces make the part a skip
with the reason."""
from __future__ import annotations

import asyncio
import importlib.util
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.suite.common import Recorder, Settings, Skip, error_text

REPO = Path(__file__).resolve().parents[2]
REPOSITORY = REPO / "model_repository"
MODEL = "lomar_classifier"
TARGET_RATIO = 0.70
NEEDS = {"tritonclient": "tritonclient", "pytriton": "nvidia-pytriton", "fastapi": "fastapi", "uvicorn": "uvicorn",
         "aiohttp": "aiohttp"}


def check_requirements(settings: Settings) -> None:
    if settings.quick:
        raise Skip("quick mode: starting Triton takes longer than the smoke run allows")
    missing = [package for module, package in NEEDS.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise Skip(f"serving packages missing: {', '.join(missing)} (pip install -e .[serve])")
    import onnxruntime as ort

    if settings.device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise Skip(f"onnxruntime {ort.__version__} has no CUDA provider: the model would not run on the GPU")


def providers_for(device: str) -> list[str]:
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]


def open_session(onnx_file: Path, device: str):
    """An ONNX Runtime session on the device's provider; Skip when CUDA does not load (Triton's runner would then
    refuse the model, and the stack would never be ready)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=providers_for(device))
    wanted = providers_for(device)[0]
    if wanted not in session.get_providers():
        why = ("it is listed but could not load: check the build's CUDA/cuDNN against this machine's"
               if wanted in ort.get_available_providers() else "this build does not have it")
        raise Skip(f"onnxruntime {ort.__version__}: {wanted} does not run here ({why}); the session runs on "
                   f"{session.get_providers()}")
    return session


def gpu_repository(settings: Settings, folder: Path) -> Path:
    """A repository with MODEL exported for the GPU from a random-init checkpoint (needs torch)."""
    from export.pipeline import ExportOptions, export_checkpoint
    from training.models import create_model, save_checkpoint

    checkpoint = folder / "random_init.pth"
    save_checkpoint(checkpoint, create_model(f"lomar_{settings.model}_patch16", img_size=224, num_classes=1000))
    repository = folder / "model_repository"
    export_checkpoint(ExportOptions(checkpoint=checkpoint, task="classify", out=repository, name=MODEL,
                                    device="gpu", precision="fp16"))
    return repository


def percentiles(latencies: list[float]) -> dict[str, float]:
    values = np.array(latencies) * 1000.0 if latencies else np.array([np.nan])
    return {"p50_ms": round(float(np.percentile(values, 50)), 2), "p99_ms": round(float(np.percentile(values, 99)), 2)}


def in_process(session, jpegs: list[bytes], concurrency: int, seconds: float) -> tuple[float, list[float]]:
    """(img/s, per-image latencies in s) of `concurrency` threads each decoding a JPEG (the gateway's rules) and
    running the ONNX model on it."""
    from contracts.preprocessing import DecodeOptions
    from lomar_serve.gateway.decode_budget import decode_image

    size = tuple(session.get_inputs()[0].shape[-2:])
    options = DecodeOptions(size=size)
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        step = 0
        while time.monotonic() < stop:
            begin = time.perf_counter()
            image = decode_image(jpegs[(index + step) % len(jpegs)], options)[None]
            session.run(None, {"image": image})
            latencies[index].append(time.perf_counter() - begin)
            step += 1

    session.run(None, {"image": np.zeros((1, 3, *size), np.uint8)})  # warm-up
    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [value for per_thread in latencies for value in per_thread]
    return len(flat) / (time.monotonic() - start), flat


def run(settings: Settings, record: Recorder) -> None:
    check_requirements(settings)
    from benchmarks.serve_load import photo_jpegs, run_gateway, start_stack

    jpegs = photo_jpegs()
    with tempfile.TemporaryDirectory(prefix="lomar-suite-") as scratch:
        if settings.device == "cuda":
            repository = gpu_repository(settings, Path(scratch))
            record.note(f"model: LoMaR-{settings.model}/16 at 224, random init, `lomar export --device gpu "
                        "--precision fp16` (KIND_GPU)")
        else:
            repository = REPOSITORY
            record.note(f"model: {MODEL} of {REPOSITORY.name}/ (its config.pbtxt sets the instance kind)")
        session = open_session(repository / MODEL / "1" / "model.onnx", settings.device)
        process, url, _ = start_stack(repository, Path(scratch) / "serve.log")
        try:
            for concurrency in settings.serve_concurrency:
                if record.time_left() <= 0:
                    record.note(f"concurrency {concurrency}: not measured, part time cap reached")
                    continue
                try:
                    latencies, errors = asyncio.run(run_gateway(url, "classify", MODEL, jpegs, 1, concurrency, 1.0,
                                                                settings.serve_seconds))
                    record.add(target="lomar serve (gateway)", concurrency=concurrency,
                               img_per_s=round(len(latencies) / settings.serve_seconds, 1), **percentiles(latencies),
                               errors=errors)
                except Exception as exc:
                    record.add(target="lomar serve (gateway)", concurrency=concurrency, error=error_text(exc))
                try:
                    ips, latencies = in_process(session, jpegs, concurrency, settings.serve_seconds)
                    record.add(target="in-process", concurrency=concurrency, img_per_s=round(ips, 1),
                               **percentiles(latencies))
                except Exception as exc:
                    record.add(target="in-process", concurrency=concurrency, error=error_text(exc))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    summarise(record)


def summarise(record: Recorder) -> None:
    best = {}
    for row in record.rows:
        if "img_per_s" in row and row["img_per_s"] > best.get(row["target"], {}).get("img_per_s", -1.0):
            best[row["target"]] = row
    gateway, local = best.get("lomar serve (gateway)"), best.get("in-process")
    if gateway and local:
        ratio = round(gateway["img_per_s"] / local["img_per_s"], 3)
        record.summary.update(gateway_img_s=gateway["img_per_s"], gateway_concurrency=gateway["concurrency"],
                              in_process_img_s=local["img_per_s"], in_process_concurrency=local["concurrency"],
                              ratio=ratio, target_met=ratio >= TARGET_RATIO)
    record.summary["target"] = f"gateway >= {TARGET_RATIO}x in-process, each at its best concurrency"
    record.flush()
