"""What the settings of every role share: the `LOMAR_` prefix, the base class, the fields several roles read (one
declaration each, so a variable means the same everywhere), and the flags that override settings.

Each role has one settings class (gateway, `lomar serve`, control plane, worker and its executor, `lomar triton`,
the client commands); every field is a `LOMAR_<NAME>` variable, and a flag that overrides one is declared with
`add_flag`, which takes its help from the field. docs/settings.md is generated from them
(`python -m lomar_serve.settings_reference`); a test fails when the two differ.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, field_validator
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from lomar_serve.common.redaction import MASK

ENV_PREFIX = "LOMAR_"
SETTINGS_CONFIG = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")
DEFAULT_MODEL_REPOSITORY = Path("model_repository")  # relative to the working directory, as Triton's own flag
DEFAULT_GATEWAY_PORT = 8000
DEFAULT_CONTROL_PORT = 8100
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
ADMIN_TOKEN_MIN_LENGTH = 16


def _split_paths(value: object) -> object:
    return tuple(part for part in value.split(os.pathsep) if part) if isinstance(value, str) else value


# LOMAR_DATA_ROOTS and the like: folders separated by os.pathsep (":"), as PATH.
PathList = Annotated[tuple[Path, ...], NoDecode, BeforeValidator(_split_paths)]


def triton_address(value: str) -> str:
    """tritonclient wants "host:port"; "http://host:port/" is accepted too."""
    for scheme in ("http://", "https://"):
        if value.startswith(scheme):
            value = value[len(scheme):]
    value = value.rstrip("/")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"a Triton URL must look like host:port, got {value!r}")
    return value


def log_level(value: str) -> str:
    value = value.lower()
    if value not in LOG_LEVELS:
        raise ValueError(f"unknown log level {value!r}")
    return value


def _long_enough(token: SecretStr | None) -> SecretStr | None:
    if token is not None and len(token.get_secret_value()) < ADMIN_TOKEN_MIN_LENGTH:
        raise ValueError(f"the admin token must be at least {ADMIN_TOKEN_MIN_LENGTH} characters "
                         "(e.g. `openssl rand -hex 32`)")
    return token


# Fields several roles read: declared once, so each variable has one meaning and one description.
ModelRepository = Annotated[Path, Field(description="the Triton model repository (shared by a fleet: exports write "
                                                    "versions, deploys publish the serving one)")]
_ADMIN_TOKEN = Field(description=f"the admin API's bearer token (at least {ADMIN_TOKEN_MIN_LENGTH} characters); "
                                 "with `lomar serve` it also starts the control plane and a worker")
AdminToken = Annotated[SecretStr, AfterValidator(_long_enough), _ADMIN_TOKEN]
OptionalAdminToken = Annotated[SecretStr | None, AfterValidator(_long_enough), _ADMIN_TOKEN]
# What a client sends: any token; the control plane is the judge of it (a wrong one is its 403).
SentAdminToken = Annotated[SecretStr | None, _ADMIN_TOKEN]
JobsDir = Annotated[Path | None, Field(description="shared folder of job logs and checkpoints (unset: "
                                                   "$XDG_DATA_HOME/lomar/jobs, by default ~/.local/share/lomar/jobs)")]
StoreUrl = Annotated[SecretStr | None, Field(description="the job store: a SQLite file, or PostgreSQL as "
                                                         "postgresql://... or a libpq keyword string (host=... "
                                                         "dbname=...) (unset: JOBS_DIR/lifecycle.sqlite)")]
DataRoots = Annotated[PathList, Field(description="folders jobs may read images from, ':'-separated (unset: jobs "
                                                  "can read nothing)")]
ControlPlaneUrl = Annotated[str | None, Field(description="http://host:port of the control plane (the admin "
                                                          "commands; a worker's auto-deploy)")]


class RoleSettings(BaseSettings):
    """Base of each role's settings: `LOMAR_*` variables, validated once at start, immutable afterwards."""

    model_config = SETTINGS_CONFIG

    log_level: str = Field("info", description=f"log level: {', '.join(LOG_LEVELS)}")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        return log_level(value)

    def describe(self) -> str:
        """One line per setting, secrets masked: for the start-up log."""
        lines = []
        for name, value in self.model_dump().items():
            if isinstance(getattr(self, name), SecretStr):
                value = MASK
            lines.append(f"  {name} = {value}")
        return "\n".join(lines)


def variable(field_name: str) -> str:
    """The environment variable of a settings field: LOMAR_<NAME>."""
    return ENV_PREFIX + field_name.upper()


# libpq's own password variables: a store or search URL may leave its password to them.
LIBPQ_SECRETS = frozenset({"PGPASSWORD", "PGPASSFILE"})


def child_environment(parent: Mapping[str, str], reads: Iterable[type[BaseSettings]] = (), *,
                      database: bool = False) -> dict[str, str]:
    """The environment of a child process: `parent` without the `LOMAR_*` variables that none of the settings
    classes in `reads` declares (another role's admin token or database URLs never reach a process that does not
    read them), and without libpq's password variables unless the child uses a `database`.

    Triton and a job's stages read no setting at all (`reads` empty); the roles `lomar serve` starts read their own.
    """
    kept = {variable(name) for settings in reads for name in settings.model_fields}
    return {name: value for name, value in parent.items()
            if (not name.startswith(ENV_PREFIX) or name in kept) and (database or name not in LIBPQ_SECRETS)}


def _argument_type(annotation: Any) -> Any:
    """What argparse converts a flag's text with: the field's type, None stripped (validation happens in pydantic)."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    return annotation if annotation in (int, float, Path) else str


def add_flag(parser: argparse.ArgumentParser, settings: type[BaseSettings], flag: str, field_name: str,
             *, repeat: bool = False, help_suffix: str = "") -> None:
    """A flag that overrides one setting: its help is the field's description and its variable, its value None
    unless given (so the environment applies). `repeat`: the flag may be given several times (a list)."""
    field = settings.model_fields[field_name]
    shown = field.default not in (None, (), PydanticUndefined) and not isinstance(field.default, SecretStr)
    default = f"default {field.default}, " if shown else ""
    text = f"{field.description}{help_suffix} ({default}${variable(field_name)})"
    options: dict[str, Any] = {"dest": field_name, "default": None, "help": text.replace("%", "%%")}
    if field_name == "log_level":
        options["choices"] = LOG_LEVELS
    elif repeat:
        options["action"] = "append"
    else:
        options["type"] = _argument_type(field.annotation)
    parser.add_argument(flag, **options)


def add_flags(parser: argparse.ArgumentParser, settings: type[BaseSettings], flags: dict[str, str]) -> None:
    """`add_flag` for each flag -> field name of `flags`."""
    for flag, field_name in flags.items():
        add_flag(parser, settings, flag, field_name)


def flag_overrides(args: argparse.Namespace, settings: type[BaseSettings]) -> dict[str, Any]:
    """The settings the command line gave (flags left out leave the environment's value)."""
    return {name: value for name, value in vars(args).items()
            if name in settings.model_fields and value is not None}


def flags_of(parser: argparse.ArgumentParser) -> Iterable[tuple[str, str]]:
    """(destination, flag) of every long option of `parser` and of its subcommands (`lomar jobs submit --url`)."""
    for action in parser._actions:  # argparse has no public list of its options
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from flags_of(child)
        for flag in action.option_strings:
            if flag.startswith("--"):
                yield action.dest, flag
