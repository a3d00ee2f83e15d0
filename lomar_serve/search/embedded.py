"""The embedded engine: a usearch HNSW index in one file per collection and model version, no server.

The file is written atomically (temporary file, then rename) with a sidecar JSON naming the store generation
it reflects; the collection rebuilds it from its store when the two disagree (see engine.py).
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
from usearch.index import Index

from lomar_serve.search.engine import EngineConfig, VectorIndex, exact_top_k

# Below this many allowed keys a filtered search scores them exactly; above it, the graph is searched with
# oversampling and the hits are filtered.
EXACT_FILTER_LIMIT = 50_000


class UsearchIndex(VectorIndex):
    """Inner-product HNSW over float32 vectors, persisted in `path` (+ `path`.json)."""

    def __init__(self, path: Path, dim: int, config: EngineConfig) -> None:
        self.path, self.dim = Path(path), dim
        self._sidecar = self.path.with_suffix(".json")
        self._lock = threading.Lock()
        self._index = self._new(config)
        self._config = config
        self._generation = -1
        if self.path.is_file() and self._sidecar.is_file():
            try:
                state = json.loads(self._sidecar.read_text())
                self._index.load(str(self.path))
                if self._index.ndim == dim:
                    self._generation = int(state["generation"])
                else:
                    self._index = self._new(config)
            except (OSError, ValueError, KeyError, RuntimeError):
                self._index = self._new(config)  # unreadable: rebuilt from the store

    def _new(self, config: EngineConfig) -> Index:
        return Index(ndim=self.dim, metric="ip", dtype="f32", connectivity=config.connectivity,
                     expansion_add=config.expansion_add, expansion_search=config.expansion_search)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys):
            with self._lock:
                self._index.add(keys.astype(np.uint64), np.ascontiguousarray(vectors, dtype=np.float32))

    def remove(self, keys: np.ndarray) -> None:
        with self._lock:
            present = keys[self._index.contains(keys.astype(np.uint64))] if len(keys) else keys
            if len(present):
                self._index.remove(present.astype(np.uint64))

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        query = np.ascontiguousarray(query, dtype=np.float32)
        with self._lock:
            if allowed is not None and len(allowed) <= EXACT_FILTER_LIMIT:
                allowed = allowed[self._index.contains(allowed.astype(np.uint64))] if len(allowed) else allowed
                if not len(allowed):
                    return np.zeros(0, np.int64), np.zeros(0, np.float32)
                vectors = np.stack(self._index.get(allowed.astype(np.uint64)))  # (M, D)
                return exact_top_k(vectors, allowed, query, k)
            count = len(self._index)
            if not count:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            wanted = k if allowed is None else min(count, k * 20)
            exact = count <= self._config.exact_limit  # small: every vector scored, recall 1.0
            matches = self._index.search(query, min(wanted, count), exact=exact, threads=1)  # one query: one thread
        keys = matches.keys.astype(np.int64)
        scores = (1.0 - matches.distances).astype(np.float32)  # usearch's "ip" distance is 1 - <a, b>
        if allowed is not None:
            keep = np.isin(keys, allowed)
            keys, scores = keys[keep], scores[keep]
        return keys[:k], scores[:k]

    def __len__(self) -> int:
        return len(self._index)

    def generation(self) -> int:
        return self._generation

    def save(self, generation: int) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            self._index.save(str(temporary))
            os.replace(temporary, self.path)
            sidecar = self._sidecar.with_suffix(".json.tmp")
            sidecar.write_text(json.dumps({"generation": generation, "dim": self.dim, "count": len(self._index)}))
            os.replace(sidecar, self._sidecar)
            self._generation = generation

    def clear(self) -> None:
        with self._lock:
            self._index = self._new(self._config)
            self._generation = -1

    def drop(self) -> None:
        self.clear()
        for path in (self.path, self._sidecar):
            path.unlink(missing_ok=True)

    def tune(self, expansion_search: int) -> None:
        with self._lock:
            self._index.expansion_search = expansion_search

    def memory_bytes(self) -> int:
        return int(self._index.memory_usage)
