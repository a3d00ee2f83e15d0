"""The vector index interface every engine implements (backends.py opens one by engine).

An index holds unit vectors of ONE model version under int64 keys and answers inner-product (= cosine) top-k.
With the embedded engine an index is derived data: the collection's SQLite store keeps every vector, and an index
whose `generation` differs from the store's is rebuilt from it (after a crash between the store's commit and the
index's save). With pgvector the PostgreSQL store writes the index's table itself (store.py: `holds_index`); the
index then searches it and manages its HNSW graph.

    index = open_index(EngineConfig(kind="embedded"), folder, "photos", version="2", dim=192)   # backends.py
    index.add(np.array([1, 2]), vectors)                # (N,) int64, (N, D) float32 unit rows
    keys, scores = index.search(query, k=10)            # query (D,), best first
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

EngineKind = Literal["embedded", "pgvector"]
DEFAULT_POOL_SIZE = 8  # pgvector: the connections one process keeps to the database
DEFAULT_EXACT_LIMIT = 10_000  # vectors up to which an index is searched exactly
DEFAULT_EF_SEARCH = 256  # HNSW ef_search: recall@10 >= 0.98 at 1M (1.000 at 100k) on the benchmark's clustered set


@dataclass(frozen=True)
class EngineConfig:
    """Which engine stores the collections' indexes."""

    kind: EngineKind = "embedded"
    # pgvector: a libpq connection string (postgresql://...); never in a repr (a log line, a traceback's locals)
    pg_url: str | None = field(default=None, repr=False)
    # Up to this many vectors an index is searched exactly (recall 1.0; at 10k x 192 here 0.5 ms a query embedded,
    # 16 ms with pgvector), above it through its HNSW graph, whose parameters give recall@10 >= 0.95 on the
    # clustered set of benchmarks/search.py (docs/search.md, "Recall").
    exact_limit: int = DEFAULT_EXACT_LIMIT
    connectivity: int = 16  # HNSW graph degree (M)
    expansion_add: int = 128  # HNSW ef_construction
    expansion_search: int = DEFAULT_EF_SEARCH  # HNSW ef_search
    build_memory_mb: int = 1024  # pgvector: maintenance_work_mem of a graph build (too small: a slower build)
    pool_size: int = DEFAULT_POOL_SIZE  # pgvector: connections this process keeps to the database, for every collection

    def __post_init__(self) -> None:
        if self.kind == "pgvector" and not self.pg_url:
            raise ValueError("the pgvector engine needs a PostgreSQL URL (LOMAR_SEARCH_PG_URL)")


class VectorIndex(ABC):
    """Unit vectors under int64 keys; inner-product top-k. Methods are thread-safe."""

    dim: int

    @abstractmethod
    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """keys (N,) int64 not yet present; vectors (N, D) float32."""

    @abstractmethod
    def remove(self, keys: np.ndarray) -> None:
        """Drop these keys (absent ones are ignored)."""

    @abstractmethod
    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The `k` nearest keys to `query` (D,) and their inner products, best first.

        Args:
            allowed: only these keys (M,) may be returned (a metadata filter); None: any.
        Returns:
            keys (<=k,) int64, scores (<=k,) float32.
        """

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def generation(self) -> int:
        """The store generation this index reflects (-1: unknown, rebuild)."""

    @abstractmethod
    def save(self, generation: int) -> None:
        """Persist the index as reflecting store generation `generation`."""

    @abstractmethod
    def clear(self) -> None:
        """Remove every vector (before a rebuild)."""

    def load(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        """Replace every vector with `batches` of keys (n,) and vectors (n, D) (a rebuild from the store).

        Engines that build a graph faster in one pass than by inserts override this (pgvector: COPY, then
        CREATE INDEX, 5x faster at 50k vectors; BENCHMARKS.md).
        """
        self.clear()
        for keys, vectors in batches:
            self.add(keys, vectors)

    def suspend_graph(self) -> None:
        """Stop maintaining the search graph while an index fills (a re-index): adds become appends, searches
        stay exact. Engines whose inserts are cheap ignore this."""

    def build_graph(self) -> None:
        """Build the search graph if it is missing (after `suspend_graph`), without blocking adds or searches."""

    @abstractmethod
    def drop(self) -> None:
        """Delete the index and its files or tables for good."""

    def close(self) -> None:
        """Release connections (the data stays)."""

    @abstractmethod
    def tune(self, expansion_search: int) -> None:
        """Set the graph search breadth (HNSW ef_search): higher is slower with better recall."""

    @abstractmethod
    def memory_bytes(self) -> int:
        """Bytes the index occupies (RAM for the embedded engine, table + index size for pgvector)."""


def exact_top_k(vectors: np.ndarray, keys: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: vectors (N, D), keys (N,), query (D,) -> the best k keys and scores (filtered searches)."""
    scores = vectors @ query  # (N,)
    k = min(k, len(scores))
    best = np.argpartition(-scores, k - 1)[:k] if k else np.zeros(0, dtype=np.int64)
    best = best[np.argsort(-scores[best], kind="stable")]
    return keys[best].astype(np.int64), scores[best].astype(np.float32)
