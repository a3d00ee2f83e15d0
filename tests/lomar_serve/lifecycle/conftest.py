"""Fixtures of the lifecycle tests: tiny synthetic image sets, a tiny, fast training recipe, stores of both kinds."""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from fastapi import FastAPI

from lomar_serve.api.errors import install_error_handlers
from lomar_serve.api.routes import admin
from lomar_serve.lifecycle.jobs import JobQueue
from lomar_serve.lifecycle.service import Lifecycle, LifecycleConfig
from lomar_serve.lifecycle.store import STORE_FILE, JobRecord
from training.data.synth import write_synthetic

# lomar_tiny_patch16 cut to 2 blocks at 112 px (a 7x7 patch grid): seconds per epoch on a busy CPU.
TINY_MODEL = {"model": "lomar_tiny_patch16", "model_options": {"depth": 2}}
TINY_OPTIONS = {"image_size": 112, "batch_size": 8, "num_workers": 0, "mixup": 0.0, "cutmix": 0.0,
                "auto_augment": "", "reprob": 0.0, "warmup_epochs": 0.0, "device": "cpu", "blr": 0.02,
                "log_every": 1, "save_every_epochs": 0}


def synthetic_set(root: Path, classes: int = 3, per_class: int = 8, val_per_class: int = 4, seed: int = 0,
                  rename: dict[str, str] | None = None) -> Path:
    """root/train/CLASS and root/val/CLASS of 64x64 PNGs; `rename` renames class folders (new classes)."""
    for split, count, offset in (("train", per_class, 0), ("val", val_per_class, 1)):
        write_synthetic(root / split, classes, count, 64, seed + offset)
        for old, new in (rename or {}).items():
            (root / split / old).rename(root / split / new)
    return root


def new_store_url(request: pytest.FixtureRequest, kind: str, folder: Path) -> str:
    """A new, empty store: a file in `folder` (sqlite), or a fresh database in the session's PostgreSQL."""
    if kind == "sqlite":
        return str(folder / STORE_FILE)
    import psycopg
    server = request.getfixturevalue("postgres_url")
    name = f"lifecycle_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty store of each kind."""
    return new_store_url(request, request.param, tmp_path / "db")


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with `base` (3 synthetic classes) and `novel` (the same, one class renamed 'novel_class')."""
    root = tmp_path_factory.mktemp("data")
    synthetic_set(root / "base")
    synthetic_set(root / "novel", seed=5, rename={"class_002_triangle": "novel_class"})
    return root


def export_tiny(repository: Path, work: Path, classes: list[str], seed: int, image_size: int = 112,
                name: str = "lomar_classifier", **architecture: Any) -> int:
    """A random tiny classifier with these class names, exported as the next version of `name`; its number.
    `architecture`: LoMaRConfig overrides (default: ViT-Tiny, depth 1)."""
    import torch

    from export.pipeline import ExportOptions, export_checkpoint
    from training.models import create_model, save_checkpoint

    torch.manual_seed(seed)
    model = create_model("lomar_tiny_patch16", **{"depth": 1, **architecture}, img_size=image_size,
                         num_classes=len(classes)).eval()
    checkpoint = work / f"tiny-{seed}-{image_size}.pth"
    save_checkpoint(checkpoint, model, class_names=list(classes))
    published = export_checkpoint(ExportOptions(checkpoint=checkpoint, task="classify", out=repository, name=name,
                                                max_batch_size=8))
    return published.version


def export_tiny_reconstruction(repository: Path, work: Path, seed: int = 0) -> int:
    """A random tiny pretrainer at 112 px (7x7 grid), exported as lomar_reconstruction (the gateway's default)."""
    import torch

    from export.pipeline import ExportOptions, export_checkpoint
    from training.models import create_model, save_checkpoint

    torch.manual_seed(seed)
    model = create_model("lomar_tiny_patch16", pretrain=True, depth=1, img_size=112).eval()
    checkpoint = work / f"tiny-pretrained-{seed}.pth"
    save_checkpoint(checkpoint, model)
    published = export_checkpoint(ExportOptions(checkpoint=checkpoint, task="reconstruct", out=repository,
                                                max_batch_size=8))
    return published.version


TOKEN = "test-admin-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOB = {"data_dir": "set", "model": "lomar_tiny_patch16", "epochs": 1}


def admin_app(tmp_path: Path, token: str | None, **config: Any) -> tuple[FastAPI, Lifecycle]:
    """The admin router alone with a lifecycle over tmp_path (data root data/ holding set/a, outside/ beside it);
    the job worker is not started, so submitted jobs stay queued. `config`: more LifecycleConfig fields."""
    (tmp_path / "data" / "set" / "a").mkdir(parents=True)
    (tmp_path / "outside").mkdir(exist_ok=True)
    (tmp_path / "repo").mkdir(exist_ok=True)
    lifecycle = Lifecycle(LifecycleConfig(model_repository=tmp_path / "repo", triton_urls=("127.0.0.1:9",),
                                          admin_token=token, data_roots=(tmp_path / "data",),
                                          jobs_dir=tmp_path / "jobs", **config))
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(admin.router)
    app.state.lifecycle = lifecycle
    return app, lifecycle


def wait_for_job(queue: JobQueue, job_id: str, done: Callable[[JobRecord], bool], timeout_s: float = 240.0, *,
                 context: Callable[[], str] = lambda: "") -> JobRecord:
    """The job's record once `done(record)`; fails with its description (and `context()`) after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = queue.get(job_id)
        if done(record):
            return record
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not get there in time: {queue.describe(job_id)}\n{context()}")
