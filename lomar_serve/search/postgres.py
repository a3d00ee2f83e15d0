"""One PostgreSQL session behind a lock, for the pgvector index and the PostgreSQL collection store: opened again
after the server restarted or the network dropped; a psycopg error becomes EngineError (a 503, never a 500)."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector

from lomar_serve.common.redaction import redact
from lomar_serve.search.errors import EngineError


class PgSession:
    """An autocommit session with the `vector` type registered; `setup` runs on every new connection."""

    def __init__(self, url: str, setup: Callable[[psycopg.Connection], None] | None = None) -> None:
        self.url = url
        self._setup = setup
        self._lock = threading.Lock()
        self._connection: psycopg.Connection | None = None
        with self.connection():  # a wrong URL or a missing extension fails here, at start
            pass

    def connect(self) -> psycopg.Connection:
        """A new connection of its own (for work that must not hold the shared one, such as an index build)."""
        try:
            connection = psycopg.connect(self.url, autocommit=True)
            connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(connection)
            if self._setup is not None:
                self._setup(connection)
        except psycopg.Error as error:
            raise self.failure("PostgreSQL/pgvector is not usable", error) from None
        return connection

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """The shared connection, for this thread alone until the block ends."""
        with self._lock:
            if self._connection is None or self._connection.closed or self._connection.broken:
                self._connection = self.connect()
            try:
                yield self._connection
            except psycopg.Error as error:
                raise self.failure("PostgreSQL/pgvector error", error) from None

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """The shared connection inside one transaction (committed when the block ends, rolled back on error)."""
        with self.connection() as connection, connection.transaction():
            yield connection

    def failure(self, what: str, error: psycopg.Error) -> EngineError:
        """EngineError saying `what` and the driver's message, the URL's secrets masked in it (libpq quotes a
        malformed URL whole). Raise it `from None`: the driver's exception, chained, would show them in a
        traceback."""
        return EngineError(f"{what}: {redact(str(error), self.url)}")

    def run(self, sql: str, params: tuple[Any, ...] = (), *, fetch: bool = False) -> list[tuple[Any, ...]]:
        with self.connection() as connection:
            cursor = connection.execute(sql, params)
            return cursor.fetchall() if fetch else []

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
