"""(d) Serving: `lomar serve` (Triton + gateway, JPEG in) against the same exported model called in-process
(the same JPEG decoding, then ONNX Runtime), closed loop, each at the concurrency where it peaks.

Needs the serving extras (tritonclient, nvidia-pytriton, fastapi, uvicorn, aiohttp); on a GPU, an onnxruntime with
the CUDA provider, without which the model would run on the CPU. Missing pieces make the part a skip with the
reason. The model is the repository's built-in `lomar_classifier` (batch 1 per request)."""
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


def in_process(jpegs: list[bytes], concurrency: int, seconds: float, device: str) -> float:
    """img/s of `concurrency` threads each decoding a JPEG (the gateway's rules) and running the ONNX model."""
    import onnxruntime as ort

    from contracts.preprocessing import DecodeOptions
    from lomar_serve.gateway.decode_budget import decode_image

    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(REPOSITORY / MODEL / "1" / "model.onnx"), providers=providers)
    size = tuple(session.get_inputs()[0].shape[-2:])
    options = DecodeOptions(size=size)
    counts = [0] * concurrency
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        step = 0
        while time.monotonic() < stop:
            image = decode_image(jpegs[(index + step) % len(jpegs)], options)[None]
            session.run(None, {"image": image})
            counts[index] += 1
            step += 1

    session.run(None, {"image": np.zeros((1, 3, *size), np.uint8)})  # warm-up
    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - start)


def run(settings: Settings, record: Recorder) -> None:
    check_requirements(settings)
    from benchmarks.serve_load import photo_jpegs, run_gateway, start_stack

    jpegs = photo_jpegs()
    record.note(f"model: {MODEL} of {REPOSITORY.name}/ (its config.pbtxt sets the Triton instance kind)")
    with tempfile.TemporaryDirectory(prefix="lomar-suite-") as scratch:
        process, url, _ = start_stack(REPOSITORY, Path(scratch) / "serve.log")
        try:
            for concurrency in settings.serve_concurrency:
                if record.time_left() <= 0:
                    record.note(f"concurrency {concurrency}: not measured, part time cap reached")
                    continue
                try:
                    latencies, errors = asyncio.run(run_gateway(url, "classify", MODEL, jpegs, 1, concurrency, 1.0,
                                                                settings.serve_seconds))
                    record.add(target="lomar serve (gateway)", concurrency=concurrency,
                               img_per_s=round(len(latencies) / settings.serve_seconds, 1), errors=errors)
                except Exception as exc:
                    record.add(target="lomar serve (gateway)", concurrency=concurrency, error=error_text(exc))
                try:
                    ips = in_process(jpegs, concurrency, settings.serve_seconds, settings.device)
                    record.add(target="in-process", concurrency=concurrency, img_per_s=round(ips, 1))
                except Exception as exc:
                    record.add(target="in-process", concurrency=concurrency, error=error_text(exc))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
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
