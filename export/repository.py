"""Write an exported model into a Triton model repository as a new version, atomically.

The layout and its file names are contracts.model_repository's.

A version directory is assembled in a hidden staging directory inside REPO/NAME (same file system) and renamed
to its number in one step, so Triton never sees a half-written version. The number is the highest existing one
plus one; if a concurrent export takes it first, the next one is used. config.pbtxt and labels.txt are each
replaced atomically (temp file + rename) after the version is in place, and only when their content changes.

A new version does not change what serves (contracts/triton_config.py): config.pbtxt keeps the model's serving
version policy; only a model's first version is published as serving. A model whose config still has Triton's
default `latest` policy (written before this rule) keeps serving the newest version it had.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from contracts.model_repository import CONFIG_FILE, LABELS_FILE, versions
from contracts.triton_config import (config_lock, render_config, serving_versions, set_serving_versions,
                                     write_atomic)
from export.errors import ExportError
from export.triton_config import TritonModelConfig, parse_pbtxt

LOGGER = logging.getLogger(__name__)
STAGING_PREFIX = ".staging-"
RENAME_ATTEMPTS = 20


@dataclass(frozen=True)
class PublishedVersion:
    """Where an export landed."""

    name: str
    version: int
    path: Path  # REPO/NAME/<version>


def next_version(model_dir: Path) -> int:
    existing = versions(model_dir)
    return existing[-1] + 1 if existing else 1


def check_compatible(model_dir: Path, config: TritonModelConfig) -> None:
    """Refuse to add a version that the model's existing versions could not share one config with.

    Raises:
        ExportError: the existing model is served by another backend or has other input names.
    """
    path = model_dir / CONFIG_FILE
    if not path.is_file() or not versions(model_dir):
        return
    existing = parse_pbtxt(path.read_text())
    new = config.to_proto()
    old_kind = existing.platform or existing.backend
    new_kind = new.platform or new.backend
    old_inputs = [tensor.name for tensor in existing.input]
    new_inputs = [tensor.name for tensor in new.input]
    if old_kind != new_kind or old_inputs != new_inputs:
        raise ExportError(
            f"model {model_dir.name!r} in {model_dir.parent} is a {old_kind} model with inputs {old_inputs}; this "
            f"export is a {new_kind} model with inputs {new_inputs}. Use another --name or repository.")


def publish(repository: Path, config: TritonModelConfig, files: dict[str, Path],
            labels: list[str] | None = None) -> PublishedVersion:
    """Add a new version of model `config.name` to `repository`.

    Args:
        repository: the model repository root (created if missing).
        config: the model's config; written as REPO/NAME/config.pbtxt.
        files: {file name inside the version directory: source file}, copied.
        labels: class names for REPO/NAME/labels.txt (classifiers), one per line.
    """
    model_dir = repository / config.name
    model_dir.mkdir(parents=True, exist_ok=True)
    check_compatible(model_dir, config)
    config.to_pbtxt()  # refuses a config that does not survive the schema, before anything is written
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_dir))
    try:
        for name, source in files.items():
            shutil.copyfile(source, staging / name)
        version = _rename_into_place(staging, model_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if labels is not None:
        write_atomic(model_dir / LABELS_FILE, "".join(f"{label}\n" for label in labels))
    with config_lock(model_dir):  # a deploy may publish another serving version meanwhile: keep that one
        serving = _serving_before(model_dir, version) or (version,)
        write_atomic(model_dir / CONFIG_FILE, render_config(set_serving_versions(config.to_proto(), serving)))
    LOGGER.info("published %s version %d in %s", config.name, version, repository)
    return PublishedVersion(config.name, version, model_dir / str(version))


def _serving_before(model_dir: Path, new: int) -> tuple[int, ...] | None:
    """What serves `model_dir` besides the `new` version just added; None for a model's first version."""
    existing = [v for v in versions(model_dir) if v != new]
    if not existing:
        return None
    path = model_dir / CONFIG_FILE
    published = serving_versions(parse_pbtxt(path.read_text())) if path.is_file() else None
    return published or (existing[-1],)


def _rename_into_place(staging: Path, model_dir: Path) -> int:
    os.chmod(staging, 0o755)  # mkdtemp makes it private; Triton may run as another user
    for _ in range(RENAME_ATTEMPTS):
        version = next_version(model_dir)
        try:
            os.rename(staging, model_dir / str(version))  # fails if another export created that version
            return version
        except OSError:
            if not (model_dir / str(version)).exists():
                raise
    raise ExportError(f"could not claim a version number in {model_dir} after {RENAME_ATTEMPTS} attempts")
