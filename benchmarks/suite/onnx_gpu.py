"""(c) The exported classifier (UINT8 image in, logits + embedding out) in ONNX Runtime on the GPU: CUDA and TensorRT
execution providers where this onnxruntime build has them, throughput and parity against PyTorch fp32.

On `--device cpu` the CPU provider stands in, so the code path runs in the smoke test."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.model_throughput import images_per_second
from benchmarks.suite.common import Recorder, Settings, Skip, error_text
from export.onnx_export import export_onnx
from export.wrappers import ClassifierExport
from training.models import create_model

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")  # CUDA first: TensorRT builds engines slowly


def wanted_providers(settings: Settings, available: list[str]) -> list[str]:
    """The providers to measure, or Skip with the reason none can be."""
    if settings.device == "cpu":
        return ["CPUExecutionProvider"]
    found = [name for name in GPU_PROVIDERS if name in available]
    if not found:
        import onnxruntime as ort

        raise Skip(f"onnxruntime {ort.__version__} offers only {available}: no CUDA or TensorRT provider "
                   f"(install onnxruntime-gpu)")
    return found


def run(settings: Settings, record: Recorder) -> None:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise Skip(f"onnxruntime is not installed ({exc})") from exc
    available = ort.get_available_providers()
    providers = wanted_providers(settings, available)
    record.summary["available_providers"] = available
    for name in GPU_PROVIDERS:
        if settings.device == "cuda" and name not in providers:
            record.note(f"{name}: skipped, not in this onnxruntime build ({available})")
    size, batch = settings.infer_cases[0][0], settings.onnx_batch
    torch.manual_seed(0)
    model = create_model(f"lomar_{settings.model}_patch16", img_size=size, num_classes=1000).eval()
    reference = ClassifierExport(model)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, 3, size, size), dtype=np.uint8)
    device = torch.device(settings.device)
    with torch.inference_mode():
        expected = reference.to(device)(torch.from_numpy(images).to(device))[0].float().cpu().numpy()
        torch_ips = images_per_second(lambda: reference(torch.from_numpy(images).to(device)), batch, device,
                               settings.warmup, settings.steps)
    record.add(runtime="pytorch fp32 eager", size=size, batch=batch, img_per_s=round(torch_ips, 1))
    with tempfile.TemporaryDirectory() as temp:
        path = Path(temp) / "classifier.onnx"
        export_onnx(reference.cpu(), (torch.from_numpy(images[:2]),), ["image"], ["logits", "embedding"], path)
        for provider in providers:
            if record.time_left() <= 0:
                record.note(f"{provider}: not measured, part time cap reached")
                continue
            try:
                fallback = ["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else []
                session = ort.InferenceSession(str(path), providers=[provider, *fallback])
                if session.get_providers()[0] != provider:
                    raise RuntimeError(f"{provider} did not load (session runs on {session.get_providers()})")
                logits = session.run(["logits"], {"image": images})[0]
                ips = images_per_second(lambda: session.run(None, {"image": images}), batch, torch.device("cpu"),
                                 settings.warmup, settings.steps)
                diff = float(np.abs(logits - expected).max())
                agree = float((logits.argmax(1) == expected.argmax(1)).mean())
                record.add(runtime=f"onnxruntime {provider}", size=size, batch=batch, img_per_s=round(ips, 1),
                           max_abs_diff=diff, top1_agreement=agree, vs_pytorch=round(ips / torch_ips, 3))
            except Exception as exc:
                record.add(runtime=f"onnxruntime {provider}", size=size, batch=batch, error=error_text(exc))
