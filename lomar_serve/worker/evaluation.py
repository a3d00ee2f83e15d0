"""The evaluation report of a classifier version from its predictions on the evaluation images (numpy only):
top-1/top-5, per-label precision and recall, the confusion matrix, the worst mistakes, and the images on which two
versions disagree. The verification stage (scoring.py) runs the versions and writes the result
(lomar_serve/jobs/report.py); thumbnails of the images shown are written by `write_thumbnails`.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from contracts.preprocessing import DecodeOptions, ImageError, decode_image
from lomar_serve.jobs.report import (DISAGREEMENTS_SHOWN, THUMBNAIL_SIZE, WORST_MISTAKES, ClassScore, Confusion,
                                     Disagreement, EvaluationReport, Mistake, thumbnail_name)

TOP_K = 5


@dataclass(frozen=True)
class Predictions:
    """What one classifier version says about the evaluation images."""

    version: str
    classes: tuple[str, ...]  # its labels, in the column order of `probabilities` (its model card)
    probabilities: np.ndarray  # (N, C) softmax of its logits

    @classmethod
    def from_logits(cls, version: str, classes: Sequence[str], logits: np.ndarray) -> Predictions:
        """logits (N, C) -> probabilities (N, C), computed stably in float64."""
        shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return cls(version, tuple(classes), exp / exp.sum(axis=1, keepdims=True))

    @property
    def best(self) -> np.ndarray:
        """(N,) index of each image's predicted label."""
        return self.probabilities.argmax(axis=1)

    def labels(self) -> list[str]:
        return [self.classes[int(i)] for i in self.best]

    def confidences(self) -> np.ndarray:
        """(N,) the probability of each image's predicted label."""
        return self.probabilities.max(axis=1)

    def probability_of(self, index: int, label: str) -> float | None:
        """The probability image `index` gets for `label`; None when the version does not know the label."""
        return float(self.probabilities[index, self.classes.index(label)]) if label in self.classes else None

    def top1(self, truth: Sequence[str]) -> float:
        """Percent of images whose predicted label is the true one (compared by name)."""
        return 100.0 * sum(p == t for p, t in zip(self.labels(), truth)) / max(len(truth), 1)

    def top5(self, truth: Sequence[str]) -> float:
        """Percent of images whose true label is among the TOP_K most probable."""
        k = min(TOP_K, len(self.classes))
        top = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]  # (N, k)
        hits = sum(t in {self.classes[int(j)] for j in row} for row, t in zip(top, truth))
        return 100.0 * hits / max(len(truth), 1)


def class_scores(predicted: Sequence[str], truth: Sequence[str], labels: Sequence[str]) -> list[ClassScore]:
    """Precision and recall of each label of `labels`."""
    scores = []
    for label in labels:
        support = sum(t == label for t in truth)
        guessed = sum(p == label for p in predicted)
        correct = sum(p == t == label for p, t in zip(predicted, truth))
        scores.append(ClassScore(label=label, support=support, predicted=guessed, correct=correct,
                                 precision=correct / guessed if guessed else None,
                                 recall=correct / support if support else None))
    return scores


def confusion(predicted: Sequence[str], truth: Sequence[str], true_labels: Sequence[str],
              predicted_labels: Sequence[str]) -> Confusion:
    rows = {label: i for i, label in enumerate(true_labels)}
    columns = {label: j for j, label in enumerate(predicted_labels)}
    counts = np.zeros((len(true_labels), len(predicted_labels)), dtype=np.int64)
    for p, t in zip(predicted, truth):
        counts[rows[t], columns[p]] += 1
    return Confusion(labels=list(true_labels), predicted_labels=list(predicted_labels), counts=counts.tolist())


def classifier_report(model: str, predictions: Predictions, truth: Sequence[str], paths: Sequence[str],
                      true_labels: Sequence[str]) -> EvaluationReport:
    """The report of one version. `truth[i]`, `paths[i]`: image i's label and its path relative to its data root;
    `true_labels`: the class folders of the evaluation images, in order."""
    predicted = predictions.labels()
    confidences = predictions.confidences()
    wrong = [i for i, (p, t) in enumerate(zip(predicted, truth)) if p != t]
    wrong.sort(key=lambda i: (-confidences[i], i))
    labels = list(true_labels) + [label for label in predictions.classes if label not in true_labels]
    top1 = predictions.top1(truth)
    return EvaluationReport(
        model=model, version=predictions.version, task="classify", metric="top1", value=top1, count=len(truth),
        top1=top1, top5=predictions.top5(truth), classes=class_scores(predicted, truth, labels),
        confusion=confusion(predicted, truth, true_labels, predictions.classes),
        mistakes=[Mistake(path=paths[i], label=truth[i], predicted=predicted[i], confidence=float(confidences[i]),
                          label_confidence=predictions.probability_of(i, truth[i]), thumbnail=thumbnail_name(i))
                  for i in wrong[:WORST_MISTAKES]],
        mistake_count=len(wrong))


def disagreements(candidate: Predictions, baseline: Predictions, truth: Sequence[str],
                  paths: Sequence[str]) -> tuple[list[Disagreement], int]:
    """The images on which the two versions predict different labels (at most DISAGREEMENTS_SHOWN: those where
    exactly one of them is right first, then the most confident), and how many there are."""
    ours, theirs = candidate.labels(), baseline.labels()
    ours_p, theirs_p = candidate.confidences(), baseline.confidences()
    differ = [i for i in range(len(truth)) if ours[i] != theirs[i]]
    differ.sort(key=lambda i: ((ours[i] == truth[i]) == (theirs[i] == truth[i]), -max(ours_p[i], theirs_p[i]), i))
    shown = [Disagreement(path=paths[i], label=truth[i], candidate=ours[i], candidate_confidence=float(ours_p[i]),
                          baseline=theirs[i], baseline_confidence=float(theirs_p[i]), thumbnail=thumbnail_name(i))
             for i in differ[:DISAGREEMENTS_SHOWN]]
    return shown, len(differ)


def write_thumbnails(folder: Path, images: Iterable[tuple[str, Path]]) -> None:
    """A THUMBNAIL_SIZE px JPEG of each (thumbnail name, image file): the evaluation crop, decoded as the gateway
    decodes uploads, so it shows what the model saw."""
    folder.mkdir(parents=True, exist_ok=True)
    options = DecodeOptions(size=(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    for name, path in images:
        try:
            pixels = decode_image(path, options)  # (3, H, W) uint8
        except ImageError:  # scored already, so readable; a file changed since is left without a thumbnail
            continue
        Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0))).save(folder / name, "JPEG", quality=85)
