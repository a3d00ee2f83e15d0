"""docs/settings.md, generated from the settings classes of every role and the flags of their command lines:

    python -m lomar_serve.settings_reference > docs/settings.md

Each `LOMAR_*` variable is listed once, in the section of the first role that reads it, with every role that reads
it, the flags that override it and its default in each. tests/lomar_serve/test_settings_reference.py fails when the
page differs from this output, or when the code or the docs name a variable that is not here.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

from pydantic import SecretStr
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from lomar_serve.clients import admin_cli, gateway_cli, search_cli
from lomar_serve.clients.settings import ClientSettings
from lomar_serve.common.settings import flags_of, variable
from lomar_serve.control_plane import main as control_plane_main
from lomar_serve.control_plane.settings import ControlPlaneSettings
from lomar_serve.gateway import main as gateway_main
from lomar_serve.gateway.settings import Settings as GatewaySettings
from lomar_serve.serve import main as serve_main
from lomar_serve.serve.settings import ServeSettings
from lomar_serve.triton import cli as triton_cli
from lomar_serve.triton.distribution import BackendCacheSettings
from lomar_serve.triton.settings import TritonSettings
from lomar_serve.worker import main as worker_main
from lomar_serve.worker.executors.settings import ExecutorSettings
from lomar_serve.worker.settings import WorkerSettings


@dataclass(frozen=True)
class Role:
    """A program (or a part of one) and the settings class it reads."""

    name: str
    settings: type[BaseSettings]
    parsers: tuple[Callable[[], argparse.ArgumentParser], ...] = ()
    summary: str = ""


ROLES = (
    Role("lomar gateway", GatewaySettings, (gateway_main.build_parser,),
         "The data plane (`lomar_serve/gateway/settings.py`)."),
    Role("lomar serve", ServeSettings, (serve_main.build_parser,),
         "One box: the gateway's settings, plus its own Triton's and the admin token "
         "(`lomar_serve/serve/settings.py`). "
         "With the token set, the control plane and the worker it starts read their settings from the same "
         "environment."),
    Role("lomar triton", TritonSettings, (triton_cli.build_parser,),
         "Triton alone, one member of a fleet (`lomar_serve/triton/settings.py`)."),
    Role("lomar control-plane", ControlPlaneSettings, (control_plane_main.build_parser,),
         "The admin API (`lomar_serve/control_plane/settings.py`)."),
    Role("lomar worker", WorkerSettings, (worker_main.build_parser,),
         "Job workers (`lomar_serve/worker/settings.py`)."),
    Role("lomar worker: executor", ExecutorSettings, (),
         "Where a worker runs its stages (`lomar_serve/worker/executors/settings.py`)."),
    Role("client commands", ClientSettings,
         (lambda: gateway_cli.build_parser("classify"), search_cli.collections_parser, admin_cli.build_parser),
         "`lomar classify|embed|reconstruct|collections|search` (a gateway) and `lomar jobs|deploy|rollback` (the "
         "control plane) (`lomar_serve/clients/settings.py`)."),
    Role("every process that launches Triton", BackendCacheSettings, (),
         "`lomar serve`, `lomar triton`, and any program that starts `lomar_serve.triton.TritonServer` "
         "(`lomar_serve/triton/distribution.py`)."),
)

# Read by the container images' own scripts, not by a role: variable -> (the file that reads it, meaning).
CONTAINER_VARIABLES = {
    "LOMAR_PG_PASSWORD": ("docker-compose.yml", "PostgreSQL's password in the compose fleet, put into "
                                                "LOMAR_STORE_URL and LOMAR_SEARCH_PG_URL (set it in .env)"),
    "LOMAR_SEED_REPOSITORY": ("deploy/docker/seed-model-repository.sh", "the built-in models inside the images "
                                                                       "(/models), copied into an empty "
                                                                       "LOMAR_MODEL_REPOSITORY"),
}


def secret_variables() -> set[str]:
    """Every variable a role reads as a secret (a SecretStr field of its settings class): what must never reach a
    log, an error body or a child process (tests check each place against this set)."""
    return {variable(name) for role in ROLES for name, info in role.settings.model_fields.items()
            if SecretStr in (info.annotation, *get_args(info.annotation))}


@dataclass
class Entry:
    """One variable: what it means and, per role, its flags and default."""

    variable: str
    description: str
    roles: list[str] = field(default_factory=list)
    flags: dict[str, list[str]] = field(default_factory=dict)  # role -> flags
    defaults: dict[str, str] = field(default_factory=dict)  # role -> default, as shown


def _default(settings: type[BaseSettings], name: str) -> str:
    info = settings.model_fields[name]
    if info.default_factory is not None:
        return "computed"
    if info.default is PydanticUndefined:
        return "required"
    value: Any = info.default
    if value is None or value == () or value == {}:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    return str(value)


def _role_flags(role: Role) -> dict[str, list[str]]:
    flags: dict[str, list[str]] = {}
    for make in role.parsers:
        for name, flag in flags_of(make()):
            if name in role.settings.model_fields and flag not in flags.setdefault(name, []):
                flags[name].append(flag)
    return flags


def entries() -> dict[str, Entry]:
    """Every variable a role reads, in the order of the roles and of their fields."""
    found: dict[str, Entry] = {}
    for role in ROLES:
        flags = _role_flags(role)
        for name, info in role.settings.model_fields.items():
            entry = found.setdefault(variable(name), Entry(variable(name), info.description or ""))
            if entry.description != (info.description or ""):
                raise ValueError(f"{entry.variable}: {role.name} describes it differently from {entry.roles[0]}; "
                                 "declare the field once in lomar_serve/common/settings.py")
            entry.roles.append(role.name)
            entry.defaults[role.name] = _default(role.settings, name)
            if flags.get(name):
                entry.flags[role.name] = flags[name]
    return found


def variables() -> set[str]:
    """Every LOMAR_* variable the reference lists: the roles' settings and the container scripts'."""
    return set(entries()) | set(CONTAINER_VARIABLES)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _per_role(values: dict[str, Any], roles: list[str], show: Callable[[Any], str]) -> str:
    """One value when every role agrees, else each role's."""
    distinct = {show(value) for value in values.values()}
    if len(distinct) == 1 and len(values) == len(roles):
        return distinct.pop()
    return "; ".join(f"{show(value)} ({role.removeprefix('lomar ')})" for role, value in values.items())


def render() -> str:
    found = entries()
    lines = [
        "# Settings",
        "",
        "Every `lomar` process reads its settings from `LOMAR_*` environment variables; a flag on its command line "
        "overrides the variable. A variable means the same thing in every role that reads it. Invalid settings stop "
        "a process at start with exit status 2 and the reasons; the settings a process runs with are logged at "
        "start, secrets masked.",
        "",
        "This page is generated from the settings classes (`python -m lomar_serve.settings_reference > "
        "docs/settings.md`); `tests/lomar_serve/test_settings_reference.py` fails when it is out of date, or when "
        "the code or the docs name a variable it does not list.",
        "",
        "Moving the ports of one box: `LOMAR_PORT` (the gateway, 8000), `LOMAR_CONTROL_PORT` (the admin API, "
        "8100), and `LOMAR_TRITON_HTTP_PORT`, `LOMAR_TRITON_GRPC_PORT`, `LOMAR_TRITON_METRICS_PORT` (Triton, on "
        "loopback; free ports by default).",
    ]
    listed: set[str] = set()
    for role in ROLES:
        rows = [entry for entry in found.values() if entry.roles[0] == role.name]
        lines += ["", f"## {role.name}", "", role.summary, "",
                  "| Variable | Flag | Default | Read by | Meaning |", "| --- | --- | --- | --- | --- |"]
        for entry in rows:
            flags = _per_role(entry.flags, entry.roles, lambda names: ", ".join(f"`{flag}`" for flag in names))
            default = _per_role(entry.defaults, entry.roles, lambda value: f"`{value}`")
            readers = ", ".join(role_name.removeprefix("lomar ") for role_name in entry.roles)
            lines.append(f"| `{entry.variable}` | {_cell(flags) or '-'} | {_cell(default)} | {_cell(readers)} | "
                         f"{_cell(entry.description)} |")
            listed.add(entry.variable)
    lines += ["", "## Container images", "", "Read by the images' scripts, not by a `lomar` process.", "",
              "| Variable | Read by | Meaning |", "| --- | --- | --- |"]
    for name, (reader, meaning) in CONTAINER_VARIABLES.items():
        lines.append(f"| `{name}` | `{reader}` | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
