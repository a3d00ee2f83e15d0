"""Every LOMAR_* setting the compose file, the Kubernetes manifests and the Dockerfile set is one a role reads:
a misspelt or renamed variable would be ignored silently (pydantic-settings ignores unknown ones)."""
from __future__ import annotations

import re

import pytest

from lomar_serve.control_plane.settings import ControlPlaneSettings
from lomar_serve.gateway.settings import Settings
from lomar_serve.worker.executors import ExecutorSettings
from lomar_serve.worker.main import WorkerSettings
from tests.deploy.fleet import COMPOSE_FILE, DOCKERFILE, KUBERNETES_DIR

KNOWN = {f"LOMAR_{name.upper()}" for settings in (Settings, ControlPlaneSettings, ExecutorSettings, WorkerSettings)
         for name in settings.model_fields}
NAME = re.compile(r"\bLOMAR_[A-Z0-9_]*[A-Z0-9]\b")  # "LOMAR_K8S_*" in prose is a family, not a name
FILES = [COMPOSE_FILE, DOCKERFILE, *sorted(KUBERNETES_DIR.glob("*.yaml")), *sorted(KUBERNETES_DIR.glob("*.example"))]
# Read by the images' own scripts, not by a role: compose's PostgreSQL password (put into LOMAR_STORE_URL) and the
# seed of the shared repository (deploy/docker/seed-model-repository.sh).
DOCUMENTED_ONLY = {"LOMAR_PG_PASSWORD", "LOMAR_SEED_REPOSITORY"}


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_every_lomar_variable_is_a_setting(path) -> None:
    names = set(NAME.findall(path.read_text())) - DOCUMENTED_ONLY
    unknown = sorted(names - KNOWN)
    assert not unknown, f"{path.name} sets {unknown}, which no role reads"


def test_the_check_knows_the_settings() -> None:
    assert {"LOMAR_TRITON_URLS", "LOMAR_K8S_PVC_MODEL_REPOSITORY", "LOMAR_WORKER_ID"} <= KNOWN
    assert "LOMAR_K8S_PVC_REPOSITORY" not in KNOWN
