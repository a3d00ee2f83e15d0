"""The embedded engine's collection store: one SQLite file per collection, the source of truth from which its
usearch index is rebuilt when their generations differ (store.py has the interface)."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from contracts.collections import OnDuplicate
from lomar_serve.search.store import (CollectionInfo, CollectionStore, Inserted, ItemRow, NewItem,
                                      Stored, inserted, metadata_filter, plan_insert)

SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    key INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, metadata TEXT NOT NULL,
    input BLOB NOT NULL, added REAL NOT NULL, name TEXT NOT NULL, sha256 TEXT);
CREATE TABLE IF NOT EXISTS vectors (
    version TEXT NOT NULL, key INTEGER NOT NULL REFERENCES items(key) ON DELETE CASCADE, vector BLOB NOT NULL,
    PRIMARY KEY (version, key));
CREATE INDEX IF NOT EXISTS items_name ON items (name);
CREATE INDEX IF NOT EXISTS items_sha256 ON items (sha256);
"""
# Files written before a column existed get it here, in order; PRAGMA user_version counts the steps done.
MIGRATIONS = (
    # 1: names (the id stands for the name of images added before)
    "ALTER TABLE items ADD COLUMN name TEXT NOT NULL DEFAULT ''; UPDATE items SET name = id;",
    # 2: content hashes (unknown for images added before: their bytes were not kept)
    "ALTER TABLE items ADD COLUMN sha256 TEXT;",
)
ITEM_COLUMNS = "id, name, sha256, metadata"


def _item(row: tuple[Any, ...]) -> ItemRow:
    """(id, name, sha256, metadata JSON) -> ItemRow."""
    return ItemRow(id=row[0], name=row[1], sha256=row[2], metadata=json.loads(row[3]))


class SqliteCollectionStore(CollectionStore):
    """One collection's SQLite file (one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        """Create the tables, or bring those of an older file up to date (one transaction)."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            done = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            existed = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'items'").fetchone() is not None
            if existed:
                for step in MIGRATIONS[done:]:
                    for statement in filter(str.strip, step.split(";")):
                        self._db.execute(statement)
            for statement in filter(str.strip, SCHEMA.split(";")):
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

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

    def promote(self, version: str) -> bool:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            building = self._db.execute("SELECT value FROM info WHERE key = 'building'").fetchone()
            if building is None or json.loads(building[0]) != version or self.missing(version, 1):
                return False
            self._db.executemany("INSERT OR REPLACE INTO info (key, value) VALUES (?, ?)",
                                 [("version", json.dumps(version)), ("building", json.dumps(None))])
        return True

    def generation(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM info WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def _bump(self) -> None:
        self._db.execute("UPDATE info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    # -- items and vectors ------------------------------------------------------------------------------------
    def insert(self, items: list[NewItem], vectors: Mapping[str, np.ndarray], *, upsert: bool,
               on_duplicate: OnDuplicate = "skip") -> Inserted:
        inputs = [item.stored_input() for item in items]
        given = [item.id for item in items if item.id is not None]
        hashes = [item.sha256 for item in items if item.sha256 is not None]
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            by_id = {row.id: row for _, row in self._stored("id", given)}
            by_content: dict[str, list[Stored]] = {}
            for digest, row in self._stored("sha256", hashes):
                by_content.setdefault(digest, []).append(row)
            plan = plan_insert(items, by_id, by_content, upsert=upsert, on_duplicate=on_duplicate)
            self._db.executemany("DELETE FROM items WHERE key = ?", [(row.key,) for row in plan.removed])
            now = time.time()
            keys = []
            for position, item in plan.rows:
                cursor = self._db.execute(
                    "INSERT INTO items (id, name, sha256, metadata, input, added) VALUES (?, ?, ?, ?, ?, ?)",
                    (item.id, item.name, item.sha256, json.dumps(item.metadata), inputs[position], now))
                keys.append(int(cursor.lastrowid))
            positions = [position for position, _ in plan.rows]
            for version, matrix in vectors.items():
                self._db.executemany("INSERT INTO vectors (version, key, vector) VALUES (?, ?, ?)",
                                     [(version, key, matrix[position].astype(np.float32).tobytes())
                                      for key, position in zip(keys, positions)])
            self._bump()
        return inserted(items, plan, keys)

    def _stored(self, column: str, values: list[str]) -> list[tuple[str, Stored]]:
        """(value, image) of the stored images whose `column` (id or sha256) is among `values`, oldest first."""
        if not values:
            return []
        rows = self._db.execute(f"SELECT {column}, key, id, name FROM items WHERE {column} IN "
                                f"({','.join('?' * len(values))}) ORDER BY key", values).fetchall()
        return [(row[0], Stored(*row[1:])) for row in rows]

    def with_content(self, hashes: list[str]) -> dict[str, Stored]:
        found: dict[str, Stored] = {}
        with self._lock:
            for digest, row in self._stored("sha256", hashes):
                found.setdefault(digest, row)
        return found

    def delete(self, item_id: str) -> int | None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT key FROM items WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                return None
            self._db.execute("DELETE FROM items WHERE key = ?", (row[0],))
            self._bump()
        return int(row[0])

    def put_vectors(self, version: str, keys: np.ndarray, vectors: np.ndarray) -> np.ndarray:
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
        with self._lock:
            return self._db.execute(
                "SELECT key, input FROM items WHERE key NOT IN (SELECT key FROM vectors WHERE version = ?) "
                "ORDER BY key LIMIT ?", (version, limit)).fetchall()

    def vectors(self, version: str, batch: int = 10_000) -> Iterable[tuple[np.ndarray, np.ndarray]]:
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

    def rows(self, keys: np.ndarray) -> dict[int, ItemRow]:
        if not len(keys):
            return {}
        placeholders = ",".join("?" * len(keys))
        with self._lock:
            found = self._db.execute(f"SELECT key, {ITEM_COLUMNS} FROM items WHERE key IN ({placeholders})",
                                     [int(k) for k in keys]).fetchall()
        return {row[0]: _item(row[1:]) for row in found}

    def item(self, item_id: str) -> tuple[ItemRow, bytes] | None:
        with self._lock:
            row = self._db.execute(f"SELECT {ITEM_COLUMNS}, input FROM items WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else (_item(row[:-1]), row[-1])

    def listing(self, offset: int, limit: int, *, names: list[str] | None = None,
                hashes: list[str] | None = None) -> list[ItemRow]:
        clauses, params = [], []
        for column, values in (("name", names), ("sha256", hashes)):
            if values is not None:
                clauses.append(f"{column} IN ({','.join('?' * len(values))})")
                params += list(values)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        with self._lock:
            rows = self._db.execute(f"SELECT {ITEM_COLUMNS} FROM items{where} ORDER BY key LIMIT ? OFFSET ?",
                                    (*params, limit, offset)).fetchall()
        return [_item(row) for row in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])

    def matching(self, where: Mapping[str, Any]) -> np.ndarray:
        clauses, params = [], []
        for key, value in metadata_filter(where).items():
            path = f'$."{key}"'
            if value is None:
                clauses.append("json_type(metadata, ?) = 'null'")
                params.append(path)
            else:
                clauses.append("json_extract(metadata, ?) = ?")
                params += [path, int(value) if isinstance(value, bool) else value]
        sql = "SELECT key FROM items" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        with self._lock:
            return np.array([row[0] for row in self._db.execute(sql, params)], dtype=np.int64)

    def drop(self) -> None:
        self.close()
        for path in self.path.parent.glob(self.path.name + "*"):  # the file, its WAL and shared memory
            path.unlink(missing_ok=True)
