"""One collection: its store, the live index (one model version) and, during a re-index, the index being built.

Every vector in an index comes from the index's model version; a search embeds its query with the version of
the index it reads. Adds are written to every index the collection has (live and building), so a re-index that
finishes loses nothing; the switch to the new index happens in one step (the store's `promote`).

With the embedded engine the collection feeds its usearch indexes from its SQLite store and rebuilds them when
they lag it. With pgvector the store's tables are the indexes, shared by every gateway: `refresh()` picks up
what other gateways changed (versions switched, the collection deleted).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from contracts.collections import OnDuplicate
from lomar_serve.search.backends import open_collection_store, open_index
from lomar_serve.search.engine import EngineConfig, VectorIndex
from lomar_serve.search.errors import CollectionNotFound, EngineError, ImageNotFound
from lomar_serve.search.store import CollectionInfo, Inserted, NewItem, VersionsChanged
from lomar_serve.search.stored_input import decode_input

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    id: str
    name: str
    score: float
    metadata: dict[str, Any]


class Collection:
    """Thread-safe: mutations take the collection's lock; searches only the index's own."""

    def __init__(self, folder: Path, engine: EngineConfig, info: CollectionInfo | None = None) -> None:
        """Open the collection in `folder`, which is named after it (create it from `info` when given)."""
        self.folder = Path(folder)
        if info is not None and info.name != self.folder.name:
            raise ValueError(f"collection {info.name!r} must live in a folder of that name, not {self.folder}")
        self.engine = engine
        self.store = open_collection_store(engine, self.folder)
        self._derived = not self.store.holds_index  # indexes fed and rebuilt by this object
        if info is not None:
            self.store.create(info)
        loaded = self.store.info()
        if loaded is None:
            self.store.close()
            raise CollectionNotFound(f"no collection {self.folder.name!r}")
        self.info: CollectionInfo = loaded
        self._lock = threading.RLock()
        self._indexes: dict[str, VectorIndex] = {}
        for version in self.versions():
            self._indexes[version] = self._open(version)

    @property
    def name(self) -> str:
        return self.info.name

    def versions(self) -> list[str]:
        """The live version, then the one being built (if any)."""
        return [self.info.version] + ([self.info.building] if self.info.building else [])

    def _open(self, version: str) -> VectorIndex:
        """The index of `version`, rebuilt from the store when it does not reflect the store's generation."""
        index = open_index(self.engine, self.folder, self.name, version, self.info.dim)
        generation = self.store.generation()
        if self._derived and index.generation() != generation:
            LOGGER.info("collection %s: rebuilding the index of version %s from the store", self.name, version)
            index.load(self.store.vectors(version))
            index.save(generation)
        return index

    def refresh(self) -> None:
        """Take up the versions the store names now (another gateway switched them).

        Raises:
            CollectionNotFound: the collection was deleted.
        """
        with self._lock:  # read under the lock: a begin_reindex or finish_reindex here is not undone
            info = self.store.info()
            if info is None:
                raise CollectionNotFound(f"no collection {self.name!r}")
            self.info = info
            for version in self.versions():
                if version not in self._indexes:
                    self._indexes[version] = self._open(version)
            for version in set(self._indexes) - set(self.versions()):
                self._indexes.pop(version).close()  # retired by the gateway that switched

    # -- images -----------------------------------------------------------------------------------------------
    def add(self, items: list[NewItem], vectors: dict[str, np.ndarray], *, upsert: bool = False,
            on_duplicate: OnDuplicate = "skip") -> Inserted:
        """Store `items` with their vectors (version -> (N, D) float32) and add them to every index; an item whose
        bytes the collection holds is skipped, replaces that image, or is added again (`on_duplicate`).

        Raises:
            VersionsChanged: `vectors` lacks a version the collection now has (a re-index started meanwhile).
            DuplicateId.
        """
        with self._lock:
            wanted = self.versions()
            missing = [version for version in wanted if version not in vectors]
            if missing:
                raise VersionsChanged(missing)
            try:
                inserted = self.store.insert(items, {v: vectors[v] for v in wanted}, upsert=upsert,
                                             on_duplicate=on_duplicate)
            except VersionsChanged:
                self.refresh()  # another gateway began or finished a re-index
                raise
            if self._derived:
                for version in wanted:
                    self._indexes[version].remove(inserted.replaced)
                    self._indexes[version].add(inserted.keys, vectors[version][inserted.positions])
            return inserted

    def delete(self, item_id: str) -> None:
        with self._lock:
            key = self.store.delete(item_id)
            if key is None:
                raise ImageNotFound(f"no image {item_id!r} in collection {self.name!r}")
            if self._derived:
                for index in self._indexes.values():
                    index.remove(np.array([key], dtype=np.int64))

    def count(self) -> int:
        return self.store.count()

    def indexed(self) -> int:
        """Vectors in the live index (equals `count()` when nothing is lost or duplicated)."""
        with self._lock:
            return len(self._indexes[self.info.version])

    # -- search -----------------------------------------------------------------------------------------------
    def search(self, version: str, query: np.ndarray, top_k: int, *, threshold: float | None = None,
               where: dict[str, Any] | None = None, exclude: str | None = None) -> list[Hit] | None:
        """The nearest images to `query` (D,), a vector of model `version`.

        Returns None when `version` is no longer live (the collection switched meanwhile: embed again).
        """
        found = self.search_many(version, query[None], top_k, threshold=threshold, where=where, exclude=[exclude])
        return None if found is None else found[0]

    def search_many(self, version: str, queries: np.ndarray, top_k: int, *, threshold: float | None = None,
                    where: dict[str, Any] | None = None, exclude: list[str | None] | None = None,
                    ) -> list[list[Hit]] | None:
        """The nearest images to each of `queries` (Q, D), vectors of model `version`, one list per query;
        `exclude`: per query, an id left out of its answer (the query's own image).

        Returns None when `version` is no longer live (the collection switched meanwhile: embed again).
        """
        with self._lock:
            if version != self.info.version:
                return None
            index = self._indexes[version]
        allowed = self.store.matching(where) if where else None
        exclude = exclude or [None] * len(queries)
        found = []
        try:
            for query, excluded in zip(queries, exclude):
                found.append(index.search(query, top_k + (1 if excluded else 0), allowed))
        except EngineError:
            if not self._derived:
                self.refresh()  # another gateway may have switched versions and dropped this table
            if self.info.version != version:  # the index was retired under this search
                return None
            raise
        if self.info.version != version:  # switched during the search: the old index may have been emptied
            return None
        rows = self.store.rows(np.concatenate([keys for keys, _ in found]) if found else np.zeros(0, np.int64))
        answers = []
        for (keys, scores), excluded in zip(found, exclude):
            hits = [Hit(id=rows[key].id, name=rows[key].name, score=float(score), metadata=rows[key].metadata)
                    for key, score in zip(keys.tolist(), scores.tolist()) if key in rows and rows[key].id != excluded]
            if threshold is not None:
                hits = [hit for hit in hits if hit.score >= threshold]
            answers.append(hits[:top_k])
        return answers

    def vector_of(self, item_id: str) -> tuple[str, np.ndarray]:
        """(live version, the vector of an indexed image). Raises ImageNotFound."""
        with self._lock:
            version = self.info.version
            vector = self.store.vector_of(version, item_id)
        if vector is None:
            raise ImageNotFound(f"no image {item_id!r} in collection {self.name!r}")
        return version, vector

    # -- re-index ---------------------------------------------------------------------------------------------
    def begin_reindex(self, version: str) -> None:
        """Start building the index of `version` (an unfinished build of it is continued)."""
        with self._lock:
            if version == self.info.version or version == self.info.building:
                return
            if self.info.building is not None:
                self._retire(self.info.building)
            self._indexes[version] = index = self._open(version)
            index.suspend_graph()  # filled by the re-index: its graph is built once, before it goes live
            self.info = replace(self.info, building=version)
            self.store.set_versions(self.info.version, version)

    def missing(self, version: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to `limit` images still without a vector of `version`: keys (n,), model inputs (n, 3, H, W)."""
        rows = self.store.missing(version, limit)
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 3, 1, 1), dtype=np.uint8)
        return np.array([row[0] for row in rows], dtype=np.int64), np.stack([decode_input(row[1]) for row in rows])

    def put_vectors(self, version: str, keys: np.ndarray, vectors: np.ndarray) -> None:
        """A re-index batch: vectors (n, D) of `version` for `keys` (deleted meanwhile: skipped)."""
        with self._lock:
            if version != self.info.building:
                return
            kept = self.store.put_vectors(version, keys, vectors)
            if self._derived:
                self._indexes[version].add(kept, vectors[np.isin(keys, kept)])

    def finish_reindex(self, version: str) -> bool:
        """Make `version` live if every image has its vector; the old index is deleted. False: some are missing."""
        index = self._indexes.get(version)
        if index is None or version != self.info.building:
            return False
        index.build_graph()  # outside the lock: adds and searches go on while the graph is built
        with self._lock:
            if version != self.info.building or not self.store.promote(version):
                return False
            old = self.info.version
            self.info = replace(self.info, version=version, building=None)
            self._retire(old)
            if self._derived:
                self._indexes[version].save(self.store.generation())
            LOGGER.info("collection %s: now answers with version %s (was %s)", self.name, version, old)
            return True

    def _retire(self, version: str) -> None:
        index = self._indexes.pop(version)
        self.store.drop_vectors(version)
        index.drop()

    # -- life cycle -------------------------------------------------------------------------------------------
    def save(self) -> None:
        """Persist the indexes (they are rebuilt from the store after a crash otherwise)."""
        if not self._derived:
            return
        with self._lock:
            generation = self.store.generation()
            for index in self._indexes.values():
                if index.generation() != generation:
                    index.save(generation)

    def close(self) -> None:
        self.save()
        with self._lock:
            for index in self._indexes.values():
                index.close()
            self.store.close()

    def drop(self) -> None:
        """Delete the collection's indexes and rows or files."""
        with self._lock:
            for index in self._indexes.values():
                index.drop()
            self._indexes.clear()
            self.store.drop()
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*"), reverse=True):
                path.unlink(missing_ok=True)
            self.folder.rmdir()
