"""How two versions' answers to the same images are compared (a rollout's agreement guards, jobs/guards.py), and the
softmax every classifier answer goes through.

- `logits` (classifiers): the top-1 label of each image, by name (each version's own labels: a version whose labels
  are permuted disagrees even when its logits are the same), and each version's top-1 probability;
- any other output (embeddings, reconstructions): the cosine similarity of each image's output, flattened.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """(N, C) logits -> (N, C) probabilities, in float64 for stable scores."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def top1_confidence(logits: np.ndarray) -> np.ndarray:
    """(N, C) logits -> (N,) the top-1 probability of each image."""
    return softmax(logits).max(axis=1)


@dataclass(frozen=True)
class Comparison:
    """Two versions' answers to the same N images."""

    top1_agreed: int = 0  # images with the same top-1 label (classifiers)
    top1_compared: int = 0
    confidence_baseline: float = 0.0  # sums of the top-1 probabilities over those images
    confidence_candidate: float = 0.0
    similarities: tuple[float, ...] = ()  # per image of every other output: cosine similarity


def compare(name: str, baseline: np.ndarray, candidate: np.ndarray, baseline_labels: Sequence[str],
            candidate_labels: Sequence[str]) -> Comparison:
    """Compare output `name` of both versions: (N, ...) each, the same images in the same order."""
    if name == "logits":
        base, cand = softmax(baseline), softmax(candidate)  # (N, C)
        base_top, cand_top = base.argmax(axis=1), cand.argmax(axis=1)
        agreed = sum(_label(baseline_labels, b) == _label(candidate_labels, c) for b, c in zip(base_top, cand_top))
        return Comparison(top1_agreed=int(agreed), top1_compared=len(base),
                          confidence_baseline=float(base.max(1).sum()), confidence_candidate=float(cand.max(1).sum()))
    a = baseline.reshape(len(baseline), -1).astype(np.float64)  # (N, D)
    b = candidate.reshape(len(candidate), -1).astype(np.float64)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return Comparison(similarities=tuple(float(v) for v in (a * b).sum(axis=1) / norms))


def _label(labels: Sequence[str], index: int) -> str:
    return labels[index] if index < len(labels) else str(index)
