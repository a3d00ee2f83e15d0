"""Processes: children that never outlive their parent, and what every `lomar` role does at start and stop:
its settings (refused with exit status 2 when invalid), its log format, its SIGINT/SIGTERM handling."""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

from pydantic import ValidationError

from lomar_serve.common.health import raise_descriptor_limit
from lomar_serve.common.settings import RoleSettings, flag_overrides

StopSignals = (signal.SIGINT, signal.SIGTERM)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SettingsT = TypeVar("SettingsT")
RoleSettingsT = TypeVar("RoleSettingsT", bound=RoleSettings)

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """preexec_fn: ask the kernel for SIGTERM when the parent goes (Linux), and leave at once if it already has.

    The kernel sends it when the *thread* that forked the child exits: start children from long-lived threads.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        os._exit(1)


def stop_on_signals(event: threading.Event, logger: logging.Logger) -> dict[int, Any]:
    """Set `event` (and log it) on SIGINT or SIGTERM; returns the previous handlers for restore_signals()."""
    def handler(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s; shutting down", signal.Signals(signum).name)
        event.set()
    return {sig: signal.signal(sig, handler) for sig in StopSignals}


def restore_signals(previous: dict[int, Callable[..., Any] | int | None]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def load_settings(settings_class: Callable[..., SettingsT], program: str, overrides: dict[str, Any]
                  ) -> SettingsT | None:
    """The role's settings from the environment and the command line's `overrides`; None, with the reasons on
    stderr, when they are invalid (the caller exits with status 2)."""
    try:
        return settings_class(**overrides)
    except ValidationError as error:
        print(f"{program}: invalid settings:\n{error}", file=sys.stderr)
        return None


def start_role(settings_class: type[RoleSettingsT], parser: argparse.ArgumentParser, argv: list[str],
               logger: logging.Logger) -> RoleSettingsT | None:
    """What every role does first: its settings from the environment, overridden by `parser`'s flags in `argv`;
    then its log format and level, and its settings logged (secrets masked). None, with the reasons on stderr,
    when they are invalid (the caller exits with status 2)."""
    args = parser.parse_args(argv)
    settings = load_settings(settings_class, parser.prog, flag_overrides(args, settings_class))
    if settings is not None:
        configure_logging(settings.log_level)
        logger.info("settings:\n%s", settings.describe())
        logger.info("open files: at most %d", raise_descriptor_limit())
    return settings


def configure_logging(level: str | int) -> None:
    """The log format of every `lomar` role; `level` a name ("info") or a logging constant."""
    logging.basicConfig(level=level.upper() if isinstance(level, str) else level, format=LOG_FORMAT)
