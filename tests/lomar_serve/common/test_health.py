"""Liveness fails when the process can no longer open a file descriptor, and passes again once it can; a role lifts
its soft limit on open files to the hard one at start. Each check runs in a fresh interpreter whose descriptors the
test exhausts (in this process it would starve pytest itself)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # each check runs in a fresh interpreter
ROOT = Path(__file__).resolve().parents[3]
EXHAUST = """
import json, os, resource
from lomar_serve.common.errors import ServiceUnavailable
from lomar_serve.common.health import check_descriptors
from lomar_serve.gateway.api.routes.health import healthz

def run_now(coroutine):  # the route awaits nothing; an event loop would itself need descriptors
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value

resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
check_descriptors()  # room: no error
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
answers = {}
try:
    check_descriptors()
except ServiceUnavailable as error:
    answers["exhausted"] = [error.status, error.message]
try:
    run_now(healthz())
except ServiceUnavailable as error:
    answers["healthz"] = error.status
for descriptor in held:
    os.close(descriptor)
check_descriptors()
answers["recovered"] = run_now(healthz()).status
print(json.dumps(answers))
"""


def _run(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_liveness_fails_without_free_descriptors_and_recovers() -> None:
    answers = _run(EXHAUST)
    assert answers["exhausted"][0] == 503 and "cannot open a file descriptor" in answers["exhausted"][1]
    assert answers["healthz"] == 503
    assert answers["recovered"] == "ok"


def test_a_role_lifts_its_soft_limit_on_open_files() -> None:
    code = """
import json, resource
from lomar_serve.common.health import raise_descriptor_limit
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
def run_now(coroutine):  # the route awaits nothing; an event loop would itself need descriptors
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value

resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
print(json.dumps({"limit": raise_descriptor_limit(), "soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                  "hard": hard}))
"""
    answers = _run(code)
    assert answers["soft"] == answers["limit"] and answers["soft"] in (answers["hard"], 128)
    assert answers["soft"] > 128 or answers["hard"] == 128
