"""(c) The exported classifier (UINT8 image in, logits + embedding out) in ONNX Runtime on the GPU: the fp32 graph
and the fp16 graph `lomar export --precision fp16` writes (export/precision.py), on the CUDA execution provider
(and TensorRT where this onnxruntime build has it), against PyTorch on the same images: throughput, max |logit
difference| and top-1 agreement (over every image, and over those whose two best PyTorch logits are not a tie).
PyTorch runs fp32 eager (the parity reference; TF32 off, so that it is fp32) and bf16 autocast, eager and compiled
(the throughput baseline of the fp16 graph).

Targets: fp32 max |logit difference| <= 1e-3; fp16 top-1 agreement >= 99.5%; fp16 >= 0.8x the best PyTorch bf16
row. A session whose provider did not load (ONNX Runtime would run it on the CPU) is an error row, never a figure.

On `--device cpu` the CPU provider stands in (both graphs; no bf16 rows), so the code path runs in the smoke test."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.model_throughput import images_per_second
from benchmarks.suite.common import Recorder, Settings, Skip, error_text, release
from export.onnx_export import export_onnx
from export.precision import convert_to_fp16
from export.verify import top1
from export.wrappers import ClassifierExport
from training.models import create_model

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")  # CUDA first: TensorRT builds engines slowly
FP32_PARITY = 1e-3  # max |logit difference| of the fp32 graph
FP16_TOP1 = 0.995  # top-1 agreement of the fp16 graph
FP16_VS_BF16 = 0.8  # fp16 graph img/s over PyTorch's best bf16 img/s


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


def pytorch_rows(module: torch.nn.Module, images: np.ndarray, settings: Settings, record: Recorder) -> np.ndarray:
    """PyTorch fp32 eager (returns its logits (B, C), the reference) and, on CUDA, bf16 autocast eager/compiled."""
    device = torch.device(settings.device)
    batch, size = len(images), images.shape[-1]
    x = torch.from_numpy(images).to(device)
    module = module.to(device)
    with torch.inference_mode():
        expected = module(x)[0].float().cpu().numpy()
        ips = images_per_second(lambda: module(x), batch, device, settings.warmup, settings.steps)
    record.add(runtime="pytorch fp32 eager", size=size, batch=batch, img_per_s=round(ips, 1))
    if device.type != "cuda":
        record.note("pytorch bf16: measured on CUDA only")
        return expected
    for compiled in settings.compile_modes:
        mode = "compiled" if compiled else "eager"
        if record.time_left() <= 0:
            record.note(f"pytorch bf16 {mode}: not measured, part time cap reached")
            continue
        runner = torch.compile(module) if compiled else module

        @torch.inference_mode()
        def step() -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                runner(x)

        try:
            ips = images_per_second(step, batch, device, settings.warmup, settings.steps)
            record.add(runtime=f"pytorch bf16 {mode}", size=size, batch=batch, img_per_s=round(ips, 1))
        except Exception as exc:
            record.add(runtime=f"pytorch bf16 {mode}", size=size, batch=batch, error=error_text(exc))
        release(device)
    return expected


def onnx_row(path: Path, provider: str, images: np.ndarray, expected: np.ndarray, settings: Settings) -> dict:
    """Throughput and parity of one graph on one provider; raises if the provider did not load."""
    import onnxruntime as ort

    fallback = ["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else []
    session = ort.InferenceSession(str(path), providers=[provider, *fallback])
    if provider not in session.get_providers():
        raise RuntimeError(f"{provider} did not load: the session runs on {session.get_providers()}")
    logits = session.run(["logits"], {"image": images})[0]
    ips = images_per_second(lambda: session.run(None, {"image": images}), len(images), torch.device("cpu"),
                            settings.warmup, settings.steps)
    agree, tie = top1(expected, logits)
    return {"img_per_s": round(ips, 1), "max_abs_diff": float(np.abs(logits - expected).max()),
            "top1_agreement": float(agree.mean()),
            "top1_agreement_no_ties": float(agree[~tie].mean()) if (~tie).any() else None,
            "ties": int(tie.sum())}


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
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 reference is fp32 (TF32 would differ by ~1e-3)
    torch.backends.cudnn.allow_tf32 = False
    reference = ClassifierExport(create_model(f"lomar_{settings.model}_patch16", img_size=size,
                                              num_classes=1000).eval())
    images = np.random.default_rng(0).integers(0, 256, (batch, 3, size, size), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as temp:
        graphs = {"fp32": Path(temp) / "classifier.fp32.onnx", "fp16": Path(temp) / "classifier.fp16.onnx"}
        export_onnx(reference, (torch.from_numpy(images[:2]),), ["image"], ["logits", "embedding"], graphs["fp32"])
        convert_to_fp16(graphs["fp32"], graphs["fp16"])
        expected = pytorch_rows(reference, images, settings, record)
        release(torch.device(settings.device))
        for provider in providers:
            for precision, path in graphs.items():
                runtime = f"onnxruntime {provider} {precision}"
                if record.time_left() <= 0:
                    record.note(f"{runtime}: not measured, part time cap reached")
                    continue
                try:
                    record.add(runtime=runtime, size=size, batch=batch,
                               **onnx_row(path, provider, images, expected, settings))
                except Exception as exc:
                    record.add(runtime=runtime, size=size, batch=batch, error=error_text(exc))
                summarise(record, providers[0])


def summarise(record: Recorder, provider: str) -> None:
    """The targets, on the first provider measured (CUDA on a GPU, the CPU provider on --device cpu)."""
    rows = {row["runtime"]: row for row in record.rows if "img_per_s" in row}
    fp32, fp16 = rows.get(f"onnxruntime {provider} fp32"), rows.get(f"onnxruntime {provider} fp16")
    pytorch_fp32 = rows.get("pytorch fp32 eager")
    bf16 = max((row for name, row in rows.items() if name.startswith("pytorch bf16")),
               key=lambda row: row["img_per_s"], default=None)
    summary: dict = {"provider": provider}
    if fp32:
        summary.update(fp32_max_abs_diff=fp32["max_abs_diff"], fp32_parity_met=fp32["max_abs_diff"] <= FP32_PARITY)
        if pytorch_fp32:
            summary["fp32_vs_pytorch_fp32"] = round(fp32["img_per_s"] / pytorch_fp32["img_per_s"], 3)
    if fp16:
        summary.update(fp16_max_abs_diff=fp16["max_abs_diff"], fp16_top1_agreement=fp16["top1_agreement"],
                       fp16_top1_met=fp16["top1_agreement"] >= FP16_TOP1)
        if bf16:
            ratio = round(fp16["img_per_s"] / bf16["img_per_s"], 3)
            summary.update(fp16_vs_pytorch_bf16=ratio, pytorch_bf16_best=bf16["runtime"],
                           fp16_throughput_met=ratio >= FP16_VS_BF16)
    summary["targets"] = (f"fp32 max |logit diff| <= {FP32_PARITY:g}; fp16 top-1 agreement >= {FP16_TOP1:.1%}; "
                          f"fp16 >= {FP16_VS_BF16}x PyTorch's best bf16")
    record.summary.pop("targets", None)  # last, after the figures
    record.summary.update(summary)
    record.flush()
