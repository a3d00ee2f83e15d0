"""The evaluation report's figures from known predictions: top-1/top-5, precision and recall, the confusion matrix,
the worst mistakes, the disagreements of two versions (labels compared by name), and thumbnails."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lomar_serve.jobs.report import THUMBNAIL_SIZE, is_thumbnail_name, thumbnail_name
from lomar_serve.worker.evaluation import Predictions, classifier_report, disagreements, write_thumbnails

TRUTH = ["cat", "cat", "cat", "dog", "dog", "fox"]
PATHS = [f"set/val/{label}/{i}.png" for i, label in enumerate(TRUTH)]


def predictions(version: str, classes: list[str], winners: list[str], confidence: float = 0.8) -> Predictions:
    """Each image's probability `confidence` on its winner, the rest shared by the other labels."""
    probabilities = np.full((len(winners), len(classes)), (1 - confidence) / (len(classes) - 1))
    for row, label in enumerate(winners):
        probabilities[row, classes.index(label)] = confidence
    return Predictions(version, tuple(classes), probabilities)


def test_softmax_of_logits_is_stable() -> None:
    result = Predictions.from_logits("1", ["a", "b"], np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    assert result.probabilities == pytest.approx(np.array([[0.5, 0.5], [0.25, 0.75]]))


def test_a_classifier_report() -> None:
    # cat: 2 of 3 right; dog: both right; fox: a label the model does not know, predicted as dog
    ours = predictions("2", ["cat", "dog"], ["cat", "cat", "dog", "dog", "dog", "dog"])
    ours.probabilities[5] = [0.05, 0.95]  # the most confident mistake
    report = classifier_report("pets", ours, TRUTH, PATHS, ["cat", "dog", "fox"])
    assert (report.model, report.version, report.task, report.metric) == ("pets", "2", "classify", "top1")
    assert report.top1 == report.value == pytest.approx(100 * 4 / 6) and report.count == 6
    assert report.top5 == pytest.approx(100 * 5 / 6)  # fox is in no top 5: the model does not know it
    scores = {score.label: score for score in report.classes}
    assert list(scores) == ["cat", "dog", "fox"]
    assert (scores["cat"].precision, scores["cat"].recall) == (1.0, pytest.approx(2 / 3))
    assert (scores["dog"].predicted, scores["dog"].precision, scores["dog"].recall) == (4, 0.5, 1.0)
    assert (scores["fox"].support, scores["fox"].precision, scores["fox"].recall) == (1, None, 0.0)
    assert report.confusion.labels == ["cat", "dog", "fox"] and report.confusion.predicted_labels == ["cat", "dog"]
    assert report.confusion.counts == [[2, 1], [0, 2], [0, 1]]
    assert report.mistake_count == 2
    worst = report.mistakes[0]
    assert (worst.path, worst.label, worst.predicted, worst.confidence) == (PATHS[5], "fox", "dog", pytest.approx(0.95))
    assert worst.label_confidence is None and worst.thumbnail == thumbnail_name(5)
    second = report.mistakes[1]
    assert (second.label, second.predicted, second.label_confidence) == ("cat", "dog", pytest.approx(0.2))


def test_disagreements_put_those_where_one_version_is_right_first() -> None:
    ours = predictions("2", ["cat", "dog", "fox"], ["cat", "dog", "cat", "dog", "fox", "fox"])
    theirs = predictions("1", ["cat", "dog"], ["cat", "cat", "dog", "dog", "dog", "cat"], confidence=0.9)
    shown, count = disagreements(ours, theirs, TRUTH, PATHS)
    assert count == 4
    # image 1 (cat; ours dog, theirs cat) and image 4 (dog; ours fox, theirs dog): the baseline alone is right;
    # image 5 (fox; ours fox): ours alone is right; image 2 (cat; ours cat, theirs dog): ours alone is right
    assert {d.path for d in shown[:4]} == {PATHS[1], PATHS[2], PATHS[4], PATHS[5]}
    first = next(d for d in shown if d.path == PATHS[5])
    assert (first.label, first.candidate, first.baseline) == ("fox", "fox", "cat")
    assert first.baseline_confidence == pytest.approx(0.9) and first.thumbnail == thumbnail_name(5)
    same, none = disagreements(ours, ours, TRUTH, PATHS)
    assert (same, none) == ([], 0)


def test_thumbnails_are_small_jpegs_of_the_evaluation_crop(tmp_path: Path) -> None:
    image = tmp_path / "wide.png"
    Image.new("RGB", (300, 150), (200, 10, 10)).save(image)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    write_thumbnails(tmp_path / "thumbs", [(thumbnail_name(7), image), (thumbnail_name(8), broken)])
    written = sorted(p.name for p in (tmp_path / "thumbs").iterdir())
    assert written == [thumbnail_name(7)] and is_thumbnail_name(written[0])
    with Image.open(tmp_path / "thumbs" / written[0]) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        assert thumb.getpixel((48, 48))[0] > 150
    assert not is_thumbnail_name("../00001.jpg") and not is_thumbnail_name("00001.png")
