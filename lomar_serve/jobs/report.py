"""A job's evaluation report: what its verification stage writes (lomar_serve/worker/scoring.py) and the control
plane serves (`GET /v1/admin/jobs/{id}/report`, `.../compare`). One schema for both sides, in
JOBS_DIR/<id>/evaluation/evaluation.json (`JobFiles.evaluation`), thumbnails beside it (`JobFiles.thumbnails`).

The verification stage scores the version the job exported and the version that served when it ran (the baseline)
on the same evaluation images, decoded as the gateway decodes uploads; labels are compared by name, so a baseline
with other classes is scored fairly. Image paths are relative to the data root that holds them (the job's own
data roots), never absolute.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

WORST_MISTAKES = 24  # per report: the confident errors worth looking at
DISAGREEMENTS_SHOWN = 48
THUMBNAIL_SIZE = 96  # px, square: the evaluation crop, as the model saw it
THUMBNAIL_PATTERN = r"^[0-9]{5,7}\.jpg$"  # thumbnail_name(); nothing else is served from the folder


def thumbnail_name(index: int) -> str:
    """The thumbnail file of the evaluation image `index` (its place in the sorted list of evaluation images)."""
    return f"{index:05d}.jpg"


def is_thumbnail_name(name: str) -> bool:
    return re.fullmatch(THUMBNAIL_PATTERN, name) is not None


class ClassScore(BaseModel):
    """How one label fares: precision over the images predicted as it, recall over the images of it."""

    label: str
    support: int = Field(ge=0, description="evaluation images of this class (its class folder)")
    predicted: int = Field(ge=0, description="evaluation images predicted as this label")
    correct: int = Field(ge=0)
    precision: float | None = Field(description="correct / predicted (null: never predicted)")
    recall: float | None = Field(description="correct / support (null: no evaluation image of this class)")


class Confusion(BaseModel):
    """counts[i][j]: images of the true label labels[i] predicted as predicted_labels[j]."""

    labels: list[str] = Field(description="rows: the true labels (class folders of the evaluation images)")
    predicted_labels: list[str] = Field(description="columns: the labels the version predicts (its model card)")
    counts: list[list[int]]


class Mistake(BaseModel):
    """One wrongly classified evaluation image."""

    path: str = Field(description="the image, relative to the data root that holds it")
    label: str = Field(description="its true label (class folder)")
    predicted: str
    confidence: float = Field(ge=0.0, le=1.0, description="the probability the version gave its prediction")
    label_confidence: float | None = Field(description="the probability it gave the true label (null: a label it "
                                                       "does not know)")
    thumbnail: str | None = Field(description="file name of its thumbnail (GET /v1/admin/jobs/{id}/thumbnails/"
                                              "{name}): the evaluation crop, 96 px JPEG")


class EvaluationReport(BaseModel):
    """One version scored on the job's evaluation images."""

    model: str
    version: str
    task: Literal["classify", "reconstruct"]
    metric: Literal["top1", "masked_mse"] = Field(description="top1: percent, higher is better; masked_mse: mean "
                                                              "squared error of hidden patches (0..1 pixels), lower "
                                                              "is better")
    value: float
    count: int = Field(ge=0, description="evaluation images")
    top1: float | None = Field(None, description="percent of images whose first label is right (classifiers)")
    top5: float | None = Field(None, description="percent whose right label is among the first five")
    classes: list[ClassScore] = Field(default_factory=list, description="per label, the true labels first")
    confusion: Confusion | None = None
    mistakes: list[Mistake] = Field(default_factory=list, description=f"the worst (at most {WORST_MISTAKES}): "
                                                                      "wrong and most confident first")
    mistake_count: int = Field(0, ge=0, description="all wrongly classified images")


class Disagreement(BaseModel):
    """An evaluation image on which the job's version and the serving version predict different labels."""

    path: str = Field(description="the image, relative to the data root that holds it")
    label: str = Field(description="its true label")
    candidate: str = Field(description="the label the job's version predicts")
    candidate_confidence: float = Field(ge=0.0, le=1.0)
    baseline: str = Field(description="the label the serving version predicted")
    baseline_confidence: float = Field(ge=0.0, le=1.0)
    thumbnail: str | None


class Evaluation(BaseModel):
    """What a job's verification stage wrote: its version's report, the serving version's on the same images, and
    the images on which they disagree."""

    data_dir: str = Field(description="the evaluation images, relative to the data root that holds them")
    candidate: EvaluationReport
    baseline: EvaluationReport | None = Field(description="the version that served when the job verified (null: "
                                                          "none did, or it was the job's own)")
    not_worse: bool = Field(description="the candidate's figure is at least as good as the baseline's (auto-deploy's "
                                        "gate)")
    disagreements: list[Disagreement] = Field(default_factory=list, description=(
        f"at most {DISAGREEMENTS_SHOWN}; those where exactly one of the two is right first"))
    disagreement_count: int = Field(0, ge=0)
