"""Check an exported model against PyTorch on fixed inputs at several batch sizes, and report the figures.

fp32: max |ONNX - PyTorch| <= tolerance (1e-4) on logits, embedding and patches; reconstruction (0..255 pixel
scale) within RECONSTRUCTION_TOLERANCE pixel levels. fp16: for every output, max |ONNX - PyTorch| <= 1% of the
output's largest magnitude in PyTorch (FP16_RELATIVE_TOLERANCE; fp16 keeps ~3 significant digits, and the figures
measured on the CPU provider are 0.05-0.15%) and cosine >= 0.999 for every sample. Both precisions: the same top-1
class (a disagreement is accepted only where PyTorch's two best logits are closer than TIE_MARGIN, a tie that any
rounding may break either way), on the same inputs (InputSpace.sample) at the same batch sizes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from export.errors import VerificationError

FP32_TOLERANCE = 1e-4
RECONSTRUCTION_TOLERANCE = 0.01  # pixel levels out of 255
FP16_MIN_COSINE = 0.999
FP16_RELATIVE_TOLERANCE = 1e-2  # of max |PyTorch output|
TIE_MARGIN = 1e-3
VERIFY_BATCH_SIZES = (1, 8)
SEED = 0

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class InputSpace:
    """Shapes of the exported model's inputs: images (3, H, W); masks (h, w) for reconstruction models."""

    image_size: tuple[int, int]
    mask_grid: tuple[int, int] | None = None  # None: the model takes no mask

    def sample(self, batch: int, seed: int = SEED) -> Arrays:
        """Deterministic inputs: `image` UINT8 (B, 3, H, W) and, if masked, `mask` Bool (B, h, w) ~75% hidden."""
        rng = np.random.default_rng(seed + batch)
        inputs = {"image": rng.integers(0, 256, (batch, 3, *self.image_size), dtype=np.uint8)}
        if self.mask_grid is not None:
            inputs["mask"] = rng.random((batch, *self.mask_grid)) < 0.75
        return inputs


def torch_runner(module: nn.Module, output_names: list[str]) -> Callable[[Arrays], Arrays]:
    """Run a contract wrapper on numpy inputs (in input order) and name its outputs."""

    def run(inputs: Arrays) -> Arrays:
        with torch.no_grad():
            outputs = module(*(torch.from_numpy(array) for array in inputs.values()))
        return {name: output.float().numpy() for name, output in zip(output_names, outputs)}

    return run


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample cosine similarity of (B, ...) arrays -> (B,)."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def compare(reference: Arrays, candidate: Arrays, precision: str, tolerance: float) -> tuple[dict, list[str]]:
    """Figures for one batch and the list of failed checks (empty when the batch passes)."""
    figures: dict = {"outputs": {}}
    failures = []
    for name, ref in reference.items():
        got = candidate[name]
        if got.shape != ref.shape:
            failures.append(f"{name}: shape {got.shape} != PyTorch {ref.shape}")
            continue
        diff, cosine = float(np.abs(got - ref).max()), float(cosines(got, ref).min())
        relative = diff / max(float(np.abs(ref).max()), np.finfo(np.float32).tiny)
        figures["outputs"][name] = {"max_abs_diff": diff, "max_rel_diff": relative, "min_cosine": cosine}
        if precision == "fp32":
            limit = RECONSTRUCTION_TOLERANCE if name == "reconstruction" else tolerance
            if not diff <= limit:
                failures.append(f"{name}: max abs diff {diff:.3g} > {limit:g}")
        else:
            if not relative <= FP16_RELATIVE_TOLERANCE:
                failures.append(f"{name}: max abs diff {diff:.3g} is {relative:.3%} of the output's range "
                                f"> {FP16_RELATIVE_TOLERANCE:.0%}")
            if not cosine >= FP16_MIN_COSINE:
                failures.append(f"{name}: min cosine {cosine:.6f} < {FP16_MIN_COSINE}")
    if "logits" in reference and "logits" in candidate and candidate["logits"].shape == reference["logits"].shape:
        ref, got = reference["logits"], candidate["logits"]
        agree, tie = top1(ref, got)
        figures["top1_agreement"] = float(agree.mean())
        if not np.all(agree | tie):
            failures.append(f"logits: top-1 class differs on {int((~agree & ~tie).sum())} of {len(ref)} samples")
    return figures, failures


def top1(reference: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample of (B, C) logits: whether the top-1 classes agree, and whether PyTorch's two best logits are a
    tie (closer than TIE_MARGIN), which any rounding may break either way. Both (B,) bool."""
    agree = reference.argmax(axis=1) == candidate.argmax(axis=1)
    top2 = np.sort(reference, axis=1)[:, -2:] if reference.shape[1] > 1 else np.zeros((len(reference), 2))
    return agree, (top2[:, 1] - top2[:, 0]) < TIE_MARGIN


def verify(reference: Callable[[Arrays], Arrays], candidate: Callable[[Arrays], Arrays], space: InputSpace,
           precision: str, tolerance: float = FP32_TOLERANCE,
           batch_sizes: tuple[int, ...] = VERIFY_BATCH_SIZES) -> dict:
    """Run both on the same inputs at each batch size; return the parity figures for the model card.

    Raises:
        VerificationError: any check fails at any batch size (the message lists them all).
    """
    fp16 = precision == "fp16"
    parity: dict = {"precision": precision, "tolerance": None if fp16 else tolerance,
                    "relative_tolerance": FP16_RELATIVE_TOLERANCE if fp16 else None,
                    "min_cosine_required": FP16_MIN_COSINE if fp16 else None, "batches": []}
    problems = []
    for batch in batch_sizes:
        inputs = space.sample(batch)
        try:
            got = candidate(inputs)
        except Exception as error:  # a runtime that rejects a batch size is a failed verification, not a crash
            problems.append(f"batch {batch}: the exported model failed to run: {type(error).__name__}: {error}")
            continue
        figures, failures = compare(reference(inputs), got, precision, tolerance)
        parity["batches"].append({"batch_size": batch, **figures})
        problems += [f"batch {batch}: {failure}" for failure in failures]
    if problems:
        raise VerificationError("the exported model does not match PyTorch:\n  " + "\n  ".join(problems))
    return parity
