"""What the deployment files are checked against: the entry points, the fleet's Triton flags, the Dockerfile's stages.

No Docker engine, kustomize binary or cluster runs on the project's machines: the tests in this folder read the
files (YAML, the Dockerfile) and check them with the real linters and schema validators, never by running them.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser

from lomar_serve.cli import COMMANDS
from lomar_serve.triton.server import TritonServerConfig

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE_FILE = REPO / "docker-compose.yml"
KUBERNETES_DIR = REPO / "deploy" / "kubernetes"
DOCKER_DIR = REPO / "deploy" / "docker"

# The three fleet roles of the fleet design (issue 10). They are registered in lomar_serve/cli.py COMMANDS as the
# roles land; until then they are accepted from this list.
FLEET_ROLES = ("gateway", "control-plane", "worker")
ENTRY_POINTS = frozenset(COMMANDS) | frozenset(FLEET_ROLES)

# Every Triton of the fleet: explicit model control, every model loaded at start (each at its deployed version),
# and a model that fails to load neither stops the server nor makes it unready (the fleet design).
FLEET_TRITON = {"model_control_mode": "explicit", "strict_readiness": False, "exit_on_error": False}
FLEET_TRITON_FLAGS = ("--model-repository", "--model-control-mode", "--load-model", "--strict-readiness",
                      "--exit-on-error")


def fleet_triton_flags(model_repository: str) -> set[str]:
    """The flags a fleet Triton must be given, spelled as the project's own Triton launcher spells them."""
    config = TritonServerConfig(model_repository=Path(model_repository), **FLEET_TRITON)
    args = config.to_args(Path("/unused"), (8000, 8001, 8002))
    return {arg for arg in args if arg.split("=", 1)[0] in FLEET_TRITON_FLAGS}


def yaml_documents(path: Path) -> list[dict]:
    """Every non-empty document of a YAML file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@dataclass
class Stage:
    """One build stage of the Dockerfile: its name, what it starts FROM, its instructions in order."""

    name: str
    parent: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, value)

    def values(self, instruction: str) -> list[str]:
        return [value for name, value in self.instructions if name == instruction]


def dockerfile_stages() -> dict[str, Stage]:
    """The Dockerfile's stages by name, as dockerfile-parse reads them."""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for item in DockerfileParser(path=str(DOCKERFILE)).structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            parent, _, name = value.partition(" AS ")
            current = stages.setdefault(name.strip(), Stage(name.strip(), parent.strip()))
        elif current is not None and instruction != "COMMENT":
            current.instructions.append((instruction, value))
    return stages


def base_image() -> str:
    """The image the `base` stage starts FROM: the default of the global ARG it names (`ARG TRITON_IMAGE=...`)."""
    parser = DockerfileParser(path=str(DOCKERFILE))
    first_from = next(item["startline"] for item in parser.structure if item["instruction"] == "FROM")
    global_args = dict(item["value"].split("=", 1) for item in parser.structure
                       if item["instruction"] == "ARG" and item["startline"] < first_from)
    parent = dockerfile_stages()["base"].parent
    reference = re.fullmatch(r"\$\{?(\w+)\}?", parent)
    return global_args[reference.group(1)] if reference else parent


def stage_env(stages: dict[str, Stage], name: str) -> dict[str, str]:
    """The ENV a stage's containers get from this Dockerfile (its parents' first, then its own)."""
    stage = stages[name]
    env = stage_env(stages, stage.parent) if stage.parent in stages else {}
    for value in stage.values("ENV"):
        env.update(part.split("=", 1) for part in shlex.split(value))
    return env


def git_ignores(path: Path) -> bool:
    """Whether git ignores `path` (a secrets file must never be committed); the file need not exist."""
    result = subprocess.run(["git", "check-ignore", "--quiet", str(path.relative_to(REPO))], cwd=REPO,
                            capture_output=True, timeout=30)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"git check-ignore failed: {result.stderr.decode()}")
    return result.returncode == 0
