"""A collection's durable state in one SQLite file: its images (ids, metadata, the model input they were embedded
from, as lossless PNG), their vectors per model version, and which version is live or being built.

The store is the source of truth: engines' indexes are rebuilt from its vectors when their recorded generation
differs from `generation()` (bumped by every change of vectors).

    store = CollectionStore(folder / "collection.sqlite")
    store.create(CollectionInfo(name="photos", model="lomar_classifier", dim=192, version="1", created=...))
    keys = store.insert(items, {"1": vectors})           # one transaction: rows and vectors
"""
from __future__ import annotations

import io
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lomar_serve.errors import InvalidParameter
from lomar_serve.search.errors import DuplicateId

SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    key INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, metadata TEXT NOT NULL,
    input BLOB NOT NULL, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    version TEXT NOT NULL, key INTEGER NOT NULL REFERENCES items(key) ON DELETE CASCADE, vector BLOB NOT NULL,
    PRIMARY KEY (version, key));
"""
STORE_FILE_NAME = "collection.sqlite"  # in the collection's folder
FILTER_KEY = re.compile(r"^[A-Za-z0-9_]{1,64}$")


@dataclass(frozen=True)
class CollectionInfo:
    """What a collection is: its name, the model that embeds its images and the live version's vectors."""

    name: str
    model: str
    dim: int
    version: str  # the model version of the live index
    created: float
    building: str | None = None  # the version a re-index is building, if one runs


@dataclass(frozen=True)
class NewItem:
    """An image to add: its id, metadata and model input (uint8 (3, H, W))."""

    id: str
    metadata: dict[str, Any]
    image: np.ndarray


def encode_input(image: np.ndarray) -> bytes:
    """uint8 (3, H, W) -> lossless PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def decode_input(data: bytes) -> np.ndarray:
    """Lossless PNG bytes -> uint8 (3, H, W)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB")).transpose(2, 0, 1).copy()


class CollectionStore:
    """One collection's SQLite file; every method is thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- collection info --------------------------------------------------------------------------------------
    def create(self, info: CollectionInfo) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO info (key, value) VALUES (?, ?)",
                                 [(key, json.dumps(value)) for key, value in asdict(info).items()]
                                 + [("generation", "0")])

    def info(self) -> CollectionInfo | None:
        with self._lock:
            rows = dict(self._db.execute("SELECT key, value FROM info").fetchall())
        if "name" not in rows:
            return None
        fields = CollectionInfo.__dataclass_fields__
        return CollectionInfo(**{key: json.loads(value) for key, value in rows.items() if key in fields})

    def set_versions(self, version: str, building: str | None) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO info (key, value) VALUES (?, ?)",
                                 [("version", json.dumps(version)), ("building", json.dumps(building))])

    def generation(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM info WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def _bump(self) -> None:
        self._db.execute("UPDATE info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    # -- items and vectors ------------------------------------------------------------------------------------
    def insert(self, items: list[NewItem], vectors: Mapping[str, np.ndarray], *, upsert: bool) -> tuple[
            np.ndarray, np.ndarray]:
        """Add `items` with their vectors (version -> (N, D) float32) in one transaction.

        Returns:
            the new keys (N,) and the keys of replaced items (upsert).
        Raises:
            DuplicateId: an id exists (and not `upsert`) or repeats within `items`.
        """
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            raise DuplicateId("the same id appears twice in one request")
        inputs = [encode_input(item.image) for item in items]
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            placeholders = ",".join("?" * len(ids))
            existing = self._db.execute(f"SELECT key, id FROM items WHERE id IN ({placeholders})", ids).fetchall()
            if existing and not upsert:
                taken = ", ".join(sorted(repr(row[1]) for row in existing))
                raise DuplicateId(f"id {taken} already in the collection (send upsert=true to replace)")
            replaced = np.array([row[0] for row in existing], dtype=np.int64)
            self._db.executemany("DELETE FROM items WHERE key = ?", [(int(key),) for key in replaced])
            now = time.time()
            keys = []
            for item, data in zip(items, inputs):
                cursor = self._db.execute("INSERT INTO items (id, metadata, input, added) VALUES (?, ?, ?, ?)",
                                          (item.id, json.dumps(item.metadata), data, now))
                keys.append(int(cursor.lastrowid))
            for version, matrix in vectors.items():
                self._db.executemany("INSERT INTO vectors (version, key, vector) VALUES (?, ?, ?)",
                                     [(version, key, row.astype(np.float32).tobytes())
                                      for key, row in zip(keys, matrix)])
            self._bump()
        return np.array(keys, dtype=np.int64), replaced

    def delete(self, item_id: str) -> int | None:
        """Remove one image; its key, or None when the id is unknown."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT key FROM items WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                return None
            self._db.execute("DELETE FROM items WHERE key = ?", (row[0],))
            self._bump()
        return int(row[0])

    def put_vectors(self, version: str, keys: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Store a re-index's vectors for the keys that still exist; returns those keys."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            placeholders = ",".join("?" * len(keys))
            alive = {row[0] for row in self._db.execute(f"SELECT key FROM items WHERE key IN ({placeholders})",
                                                        keys.tolist())}
            rows = [(version, int(key), row.astype(np.float32).tobytes())
                    for key, row in zip(keys, vectors) if int(key) in alive]
            self._db.executemany("INSERT OR REPLACE INTO vectors (version, key, vector) VALUES (?, ?, ?)", rows)
            self._bump()
        return np.array([row[1] for row in rows], dtype=np.int64)

    def drop_vectors(self, version: str) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM vectors WHERE version = ?", (version,))
            self._bump()

    def missing(self, version: str, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` (key, input PNG) of images without a vector of `version`, oldest first."""
        with self._lock:
            return self._db.execute(
                "SELECT key, input FROM items WHERE key NOT IN (SELECT key FROM vectors WHERE version = ?) "
                "ORDER BY key LIMIT ?", (version, limit)).fetchall()

    def vectors(self, version: str, batch: int = 10_000) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        """All vectors of `version` in batches of keys (n,) and vectors (n, D) (for rebuilding an index)."""
        last = -1
        while True:
            with self._lock:
                rows = self._db.execute("SELECT key, vector FROM vectors WHERE version = ? AND key > ? "
                                        "ORDER BY key LIMIT ?", (version, last, batch)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield (np.array([row[0] for row in rows], dtype=np.int64),
                   np.stack([np.frombuffer(row[1], dtype=np.float32) for row in rows]))

    def vector_of(self, version: str, item_id: str) -> np.ndarray | None:
        with self._lock:
            row = self._db.execute("SELECT v.vector FROM vectors v JOIN items i ON i.key = v.key "
                                   "WHERE v.version = ? AND i.id = ?", (version, item_id)).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype=np.float32)

    def rows(self, keys: np.ndarray) -> dict[int, tuple[str, dict[str, Any]]]:
        """key -> (id, metadata) for the keys that exist."""
        if not len(keys):
            return {}
        placeholders = ",".join("?" * len(keys))
        with self._lock:
            found = self._db.execute(f"SELECT key, id, metadata FROM items WHERE key IN ({placeholders})",
                                     [int(k) for k in keys]).fetchall()
        return {row[0]: (row[1], json.loads(row[2])) for row in found}

    def item(self, item_id: str) -> tuple[dict[str, Any], bytes] | None:
        """(metadata, input PNG) of one image."""
        with self._lock:
            row = self._db.execute("SELECT metadata, input FROM items WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else (json.loads(row[0]), row[1])

    def ids(self, offset: int, limit: int) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("SELECT id, metadata FROM items ORDER BY key LIMIT ? OFFSET ?",
                                    (limit, offset)).fetchall()
        return [(row[0], json.loads(row[1])) for row in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])

    def matching(self, where: Mapping[str, Any]) -> np.ndarray:
        """Keys of images whose metadata has each key equal to the value (a JSON scalar)."""
        clauses, params = [], []
        for key, value in where.items():
            if not FILTER_KEY.fullmatch(key):
                raise InvalidParameter(f"filter key {key!r}: use 1-64 letters, digits or '_'")
            path = f'$."{key}"'
            if value is None:
                clauses.append("json_type(metadata, ?) = 'null'")
                params.append(path)
            elif isinstance(value, (bool, int, float, str)):
                clauses.append("json_extract(metadata, ?) = ?")
                params += [path, int(value) if isinstance(value, bool) else value]
            else:
                raise InvalidParameter(f"filter value of {key!r} must be a string, number, boolean or null")
        sql = "SELECT key FROM items" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        with self._lock:
            return np.array([row[0] for row in self._db.execute(sql, params)], dtype=np.int64)
