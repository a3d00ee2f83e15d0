"""A job's verification stage: score an exported version, as served, on the job's evaluation images, beside the
version that serves, and write the evaluation report of both.

    python -m lomar_serve.worker.scoring --repository REPO --name NAME --version 3 --data-dir VAL \
        [--baseline 2] [--data-roots ROOT1:ROOT2] --out verification.json [--report-dir evaluation/]

Runs the version's `model.onnx` with ONNX Runtime on images found and decoded by the shared contracts
(`contracts.datasets`, `contracts.preprocessing`: exactly as the gateway decodes uploads and training evaluates),
so it checks the artefact Triton will load, not the PyTorch checkpoint.
Classifiers: top-1 accuracy (%) with predictions compared by label name against the class folders, so a
baseline version with other classes is scored fairly. Reconstruction models: mean squared error (0..1 pixel
scale) of the reconstruction on hidden patches at mask ratio 0.75, fixed seed. The same figure for the baseline
(the serving version) lets auto-deploy check that the new version is not worse. With --data-roots (a job
passes its own), an evaluation image that resolves outside them (a symlink leading out) stops the scoring.
--report-dir: the evaluation report (lomar_serve/jobs/report.py: top-1/top-5, per-label precision and recall,
confusion matrix, worst mistakes, the images on which the two versions disagree) as evaluation.json, with 96 px
thumbnails of the images it shows in thumbnails/. The serving version is scored here, by the stage that has both
versions on disk, so both reports come from the same images, decoder and runtime.
Runs as a subprocess of a worker (it needs onnxruntime, which the worker process itself never imports).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.datasets import OutsideDataRoots, image_files, parse_roots
from contracts.model_card import ModelCard
from contracts.model_repository import ONNX_FILE
from contracts.preprocessing import DecodeOptions, ImageError, decode_image
from contracts.reconstruction_mask import sample_mask
from lomar_serve.common.processes import configure_logging
from lomar_serve.jobs.files import EVALUATION_FILE, THUMBNAILS_DIR
from lomar_serve.jobs.report import Evaluation, EvaluationReport, thumbnail_name
from lomar_serve.worker.evaluation import Predictions, classifier_report, disagreements, write_thumbnails

LOGGER = logging.getLogger("lomar_serve.worker.scoring")
BATCH = 16
MASK_RATIO, MASK_SEED = 0.75, 0


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str  # the class folder's name ("" outside a class layout)


@dataclass(frozen=True)
class Score:
    """One version's figure on the evaluation images."""

    version: str
    metric: str  # "top1" (higher is better) or "masked_mse" (lower is better)
    value: float
    count: int


def list_samples(data_dir: Path, limit: int, roots: Sequence[Path] | None = None) -> list[Sample]:
    """Images under data_dir, labelled by their class folder (data_dir/CLASS/IMAGE), sorted, at most `limit`.

    Raises:
        OutsideDataRoots: with resolved `roots`, an image resolves outside them.
    """
    files = image_files(data_dir, roots)
    samples = [Sample(p, label_of(p.relative_to(data_dir))) for p in files]
    if len(samples) > limit:  # an even spread over the classes, not the first few folders
        samples = [samples[round(i * len(samples) / limit)] for i in range(limit)]
    return samples


def label_of(relative: Path) -> str:
    """The class of an image at `relative` under the evaluation folder: its first folder, as training's ImageFolder
    labels it ("" for an image outside any class folder)."""
    return relative.parts[0] if len(relative.parts) > 1 else ""


class Version:
    """One exported version: its ONNX file run by ONNX Runtime, and its model card."""

    def __init__(self, repository: Path, name: str, version: str) -> None:
        import onnxruntime as ort  # only in this subprocess

        directory = repository / name / version
        self.version = version
        self.card = ModelCard.read(directory)
        self.session = ort.InferenceSession(str(directory / ONNX_FILE), providers=["CPUExecutionProvider"])
        self.size = self.card.image_size
        self.classes = list(self.card.classes)

    def run(self, inputs: dict[str, np.ndarray], output: str) -> np.ndarray:
        return self.session.run([output], inputs)[0]


def decode(samples: list[Sample], size: tuple[int, int]) -> np.ndarray:
    """(N, 3, H, W) uint8, decoded as the gateway decodes uploads.

    Raises:
        ImageError: an image cannot be decoded (the message names the file).
    """
    options = DecodeOptions(size=size)
    images = []
    for sample in samples:
        try:
            images.append(decode_image(sample.path, options))
        except ImageError as error:
            raise type(error)(f"{sample.path}: {error.message}") from error
    return np.stack(images)


def predict(version: Version, samples: list[Sample]) -> Predictions:
    """The classifier's probabilities on every sample."""
    if not version.classes:
        raise ValueError(f"version {version.version} has no classes in its model card")
    chunks = []
    for start in range(0, len(samples), BATCH):
        chunk = samples[start:start + BATCH]
        logits = version.run({"image": decode(chunk, version.size)}, "logits")  # (B, C)
        if not np.isfinite(logits).all() or logits.shape != (len(chunk), len(version.classes)):
            raise ValueError(f"version {version.version} gave logits of shape {logits.shape} or non-finite values")
        chunks.append(logits)
    return Predictions.from_logits(version.version, version.classes, np.concatenate(chunks))


def masked_mse(version: Version, samples: list[Sample]) -> Score:
    grid = version.card.mask_grid
    if grid is None:
        raise ValueError(f"version {version.version} has no mask input in its model card")
    mask = sample_mask(grid, MASK_RATIO, MASK_SEED)  # (h, w) True = hidden
    patch = version.size[0] // grid[0]
    pixels = np.kron(mask, np.ones((patch, patch), dtype=bool))  # (H, W)
    total, count = 0.0, 0
    for start in range(0, len(samples), BATCH):
        images = decode(samples[start:start + BATCH], version.size)  # (B, 3, H, W)
        masks = np.broadcast_to(mask, (len(images), *grid)).copy()
        out = version.run({"image": images, "mask": masks}, "reconstruction")  # (B, 3, H, W), 0..255
        if not np.isfinite(out).all():
            raise ValueError(f"version {version.version} reconstructs non-finite values")
        diff = (out - images.astype(np.float32)) / 255.0
        total += float((diff[:, :, pixels] ** 2).sum())
        count += int(diff[:, :, pixels].size)
    return Score(version.version, "masked_mse", total / max(count, 1), len(samples))


@dataclass(frozen=True)
class Scored:
    """One version's figure, and its predictions when it is a classifier."""

    score: Score
    predictions: Predictions | None = None


def score(repository: Path, name: str, version: str, samples: list[Sample]) -> Scored:
    loaded = Version(repository, name, version)
    if loaded.card.task != "classify":
        return Scored(masked_mse(loaded, samples))
    predictions = predict(loaded, samples)
    return Scored(Score(version, "top1", predictions.top1([s.label for s in samples]), len(samples)), predictions)


def relative_path(path: Path, roots: Sequence[Path], data_dir: Path) -> str:
    """`path` relative to the data root that holds it (without roots: to the evaluation folder's parent)."""
    for root in roots:
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return str(path.relative_to(data_dir.parent)) if path.is_relative_to(data_dir.parent) else path.name


def report_of(name: str, scored: Scored, samples: list[Sample], paths: list[str],
              true_labels: list[str]) -> EvaluationReport:
    if scored.predictions is None:
        return EvaluationReport(model=name, version=scored.score.version, task="reconstruct",
                                metric="masked_mse", value=scored.score.value, count=scored.score.count)
    return classifier_report(name, scored.predictions, [s.label for s in samples], paths, true_labels)


def write_report(out: Path, name: str, data_dir: Path, roots: Sequence[Path], samples: list[Sample], new: Scored,
                 baseline: Scored | None) -> Evaluation:
    """evaluation.json in `out`, and the thumbnails of the images it shows in out/thumbnails."""
    paths = [relative_path(s.path, roots, data_dir) for s in samples]
    true_labels = sorted({s.label for s in samples})  # the class folders that hold evaluation images, as sorted
    candidate = report_of(name, new, samples, paths, true_labels)
    base = None if baseline is None else report_of(name, baseline, samples, paths, true_labels)
    shown, count = [], 0
    if new.predictions is not None and baseline is not None and baseline.predictions is not None:
        shown, count = disagreements(new.predictions, baseline.predictions, [s.label for s in samples], paths)
    evaluation = Evaluation(data_dir=relative_path(data_dir, roots, data_dir), candidate=candidate, baseline=base,
                            not_worse=not_worse(new.score, None if baseline is None else baseline.score),
                            disagreements=shown, disagreement_count=count)
    files = {thumbnail_name(i): sample.path for i, sample in enumerate(samples)}
    names = {item.thumbnail for item in [*candidate.mistakes, *(base.mistakes if base else []), *shown]}
    write_thumbnails(out / THUMBNAILS_DIR, [(name, files[name]) for name in sorted(names) if name])
    partial = out / f".{EVALUATION_FILE}.partial"  # the control plane never reads half a report
    partial.write_text(evaluation.model_dump_json(indent=1) + "\n")
    partial.replace(out / EVALUATION_FILE)
    return evaluation


def not_worse(new: Score, baseline: Score | None) -> bool:
    """The auto-deploy gate: no baseline, or the new figure is at least as good."""
    if baseline is None or baseline.metric != new.metric:
        return True
    return new.value >= baseline.value if new.metric == "top1" else new.value <= baseline.value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lomar_serve.worker.scoring", description=__doc__)
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--baseline", help="the serving version, scored the same way for comparison")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--max-images", type=int, default=1000)
    parser.add_argument("--data-roots", default="", help="folders every image must resolve into (os.pathsep-"
                                                          "separated); empty = no confinement")
    parser.add_argument("--out", type=Path, required=True, help="JSON result file")
    parser.add_argument("--report-dir", type=Path, help="write the evaluation report (evaluation.json) and its "
                                                        "thumbnails here")
    args = parser.parse_args(argv)
    configure_logging(logging.INFO)
    roots = parse_roots(args.data_roots) if args.data_roots else ()
    try:
        samples = list_samples(args.data_dir, args.max_images, roots or None)
    except OutsideDataRoots as error:
        print(f"verify: {error}", file=sys.stderr)
        return 2
    if not samples:
        print(f"verify: no images under {args.data_dir}", file=sys.stderr)
        return 2
    try:
        new = score(args.repository, args.name, args.version, samples)
        LOGGER.info("version %s: %s = %.4f on %d images", args.version, new.score.metric, new.score.value,
                    new.score.count)
        baseline = None
        if args.baseline and args.baseline != args.version:
            baseline = score(args.repository, args.name, args.baseline, samples)
            LOGGER.info("baseline version %s: %s = %.4f", args.baseline, baseline.score.metric, baseline.score.value)
    except ImageError as error:
        print(f"verify: an evaluation image cannot be decoded: {error.message}", file=sys.stderr)
        return 2
    base = None if baseline is None else baseline.score
    result = {"metric": new.score.metric, "value": new.score.value, "count": new.score.count,
              "version": new.score.version,
              "baseline": None if base is None else {"version": base.version, "value": base.value},
              "not_worse": not_worse(new.score, base)}
    if args.report_dir is not None:
        evaluation = write_report(args.report_dir, args.name, args.data_dir, roots, samples, new, baseline)
        LOGGER.info("evaluation report: %d mistakes, %d disagreements with the serving version, in %s",
                    evaluation.candidate.mistake_count, evaluation.disagreement_count, args.report_dir)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
