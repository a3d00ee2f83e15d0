"""Exports shared by the export tests (each export takes seconds, so each is made once per session)."""
from __future__ import annotations

from pathlib import Path

import pytest

from export.pipeline import ExportOptions, export_checkpoint
from export.repository import PublishedVersion
from training.models import create_model, save_checkpoint

TINY_CLASSES = ["cat", "dog", "bird"]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our own classifier checkpoint: lomar_tiny_patch16, depth 2, 3 classes, 112 px, with class names."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(path, create_model("lomar_tiny_patch16", depth=2, num_classes=3, img_size=112),
                    class_names=TINY_CLASSES)
    return path


@pytest.fixture(scope="session")
def served_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding the session's exports (served by Triton in test_triton_serving)."""
    return tmp_path_factory.mktemp("model_repository")


@pytest.fixture(scope="session")
def official_classifier(official_dir: Path, served_repo: Path) -> PublishedVersion:
    return export_checkpoint(ExportOptions(checkpoint=official_dir / "official_finetuned.pth", task="classify",
                                           out=served_repo, max_batch_size=8))


@pytest.fixture(scope="session")
def official_reconstruction(official_dir: Path, served_repo: Path) -> PublishedVersion:
    return export_checkpoint(ExportOptions(checkpoint=official_dir / "official_pretrained.pth", task="reconstruct",
                                           out=served_repo, max_batch_size=8))


@pytest.fixture(scope="session")
def official_fused_classifier(official_dir: Path, served_repo: Path) -> PublishedVersion:
    """The paper's classifier as the ort_fused graph (export/ort_fused.py)."""
    return export_checkpoint(ExportOptions(checkpoint=official_dir / "official_finetuned.pth", task="classify",
                                           out=served_repo, name="fused_classifier", max_batch_size=8,
                                           graph="ort_fused"))


@pytest.fixture(scope="session")
def tiny_classifier(tiny_checkpoint: Path, served_repo: Path) -> PublishedVersion:
    return export_checkpoint(ExportOptions(checkpoint=tiny_checkpoint, task="classify", out=served_repo,
                                           name="tiny_classifier", max_batch_size=8))
