"""PostgreSQL sessions of the pgvector index and the PostgreSQL collection store, drawn from ONE bounded connection
pool per database and process: however many collections a gateway serves, it holds at most `pool_size`
connections to the database (plus one per re-index lease or concurrent graph build, which need a session of their
own). A connection the server dropped is replaced when next drawn; a psycopg error, or no connection free within
`POOL_TIMEOUT_S`, becomes EngineError (a 503, never a 500)."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool, PoolTimeout

from lomar_serve.common.redaction import redact
from lomar_serve.search.errors import EngineError

POOL_TIMEOUT_S = 3.0  # no connection within this long: the database is down, or the gateway is overloaded (503)
POOL_MAX_IDLE_S = 60.0  # an idle connection above the pool's minimum (none) is closed after this long

_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


class _MaskPoolSecrets(logging.Filter):
    """psycopg-pool logs a failed connection attempt with libpq's message, which may quote the URL whole."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        with _pools_lock:
            urls = list(_pools)
        for url in urls:
            message = redact(message, url)
        record.msg, record.args = redact(message), ()
        return True


logging.getLogger("psycopg.pool").addFilter(_MaskPoolSecrets())


def _prepare(connection: psycopg.Connection) -> None:
    """Every new connection: autocommit, the `vector` extension and its type."""
    connection.autocommit = True
    connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(connection)


def shared_pool(url: str, size: int) -> ConnectionPool:
    """This process's pool for `url` (created by its first user, with that user's size)."""
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None or pool.closed:
            pool = ConnectionPool(url, min_size=0, max_size=size, configure=_prepare, timeout=POOL_TIMEOUT_S,
                                  max_idle=POOL_MAX_IDLE_S, check=ConnectionPool.check_connection,
                                  name="lomar-pgvector", open=True)
            _pools[url] = pool
        return pool


def close_pool(url: str) -> None:
    """Close this process's pool for `url` and its connections (when the last user of the database goes)."""
    with _pools_lock:
        pool = _pools.pop(url, None)
    if pool is not None:
        pool.close()


class PgSession:
    """Autocommit connections to one database with the `vector` type registered, drawn from its shared pool for
    the length of a block; `setup` runs on each connection drawn (e.g. a per-index SET)."""

    def __init__(self, url: str, setup: Callable[[psycopg.Connection], None] | None = None, *,
                 pool_size: int) -> None:
        self.url = url
        self._setup = setup
        self._pool_size = pool_size
        with self.connection():  # a wrong URL or a missing extension fails here, at start
            pass

    def connect(self) -> psycopg.Connection:
        """A new connection of its own, outside the pool (for work that holds a session: an advisory lock, a
        concurrent index build); the caller closes it."""
        try:
            connection = psycopg.connect(self.url, autocommit=True)
            _prepare(connection)
            if self._setup is not None:
                self._setup(connection)
        except psycopg.Error as error:
            raise self.failure("PostgreSQL/pgvector is not usable", error) from None
        return connection

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection, for this thread alone until the block ends."""
        try:
            with shared_pool(self.url, self._pool_size).connection() as connection:
                if self._setup is not None:
                    self._setup(connection)
                yield connection
        except PoolTimeout:
            raise self._no_connection() from None
        except psycopg.Error as error:
            raise self.failure("PostgreSQL/pgvector error", error) from None

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A pooled connection inside one transaction (committed when the block ends, rolled back on error)."""
        with self.connection() as connection, connection.transaction():
            yield connection

    def _no_connection(self) -> EngineError:
        """Why the pool gave no connection in time: the database refuses one (its own message), or every
        connection of the pool is busy."""
        try:
            psycopg.connect(self.url, connect_timeout=2).close()
        except psycopg.Error as error:
            return self.failure("PostgreSQL/pgvector is not reachable", error)
        return EngineError(f"no free PostgreSQL connection within {POOL_TIMEOUT_S:g} s: all {self._pool_size} of this "
                           "gateway's pool are busy (LOMAR_SEARCH_PG_POOL_SIZE)")

    def failure(self, what: str, error: psycopg.Error) -> EngineError:
        """EngineError saying `what` and the driver's message, the URL's secrets masked in it (libpq quotes a
        malformed URL whole). Raise it `from None`: the driver's exception, chained, would show them in a
        traceback."""
        return EngineError(f"{what}: {redact(str(error), self.url)}")

    def run(self, sql: str, params: tuple[Any, ...] = (), *, fetch: bool = False) -> list[tuple[Any, ...]]:
        with self.connection() as connection:
            cursor = connection.execute(sql, params)
            return cursor.fetchall() if fetch else []
