"""The pgvector engine's collection store: every collection in one PostgreSQL database that all gateways of a
fleet share, so a collection created through one gateway is searched through any other.

Tables: `lomar_collections` (one row per collection: model, dimension, live and building versions, owner),
`lomar_collection_items` (ids, metadata as jsonb, the model input as stored_input.py keeps it) and one pgvector
table per collection and model version (pgvector.vector_table), which is at once the store's vectors and the
search index: an item and its vectors are written in one transaction, so no index lags the store.

Consistency between processes: a write locks its collection's row FOR SHARE and checks that it brings vectors
for every version the row names (else VersionsChanged); a switch of versions (`promote`) locks it FOR UPDATE and
checks that no image lacks a vector of the new version. One process at a time re-indexes a collection, under a
session advisory lock (`reindex_lease`) that PostgreSQL releases if that process dies.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import astuple
from typing import Any

import numpy as np
import psycopg

from contracts.collections import OnDuplicate
from lomar_serve.search.errors import CollectionExists, CollectionNotFound, DuplicateId
from lomar_serve.search.pgvector import copy_vectors, vector_table
from lomar_serve.search.postgres import PgSession
from lomar_serve.search.store import (CollectionInfo, CollectionStore, Inserted, ItemRow, Lease, NewItem,
                                      Stored, VersionsChanged, inserted, metadata_filter,
                                      plan_insert)

COLLECTIONS, ITEMS = "lomar_collections", "lomar_collection_items"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {COLLECTIONS} (
    name text PRIMARY KEY, model text NOT NULL, dim integer NOT NULL, version text NOT NULL, created double precision
    NOT NULL, building text);
CREATE TABLE IF NOT EXISTS {ITEMS} (
    key bigserial PRIMARY KEY, collection text NOT NULL REFERENCES {COLLECTIONS} (name) ON DELETE CASCADE,
    id text NOT NULL, metadata jsonb NOT NULL, input bytea NOT NULL, added double precision NOT NULL,
    name text NOT NULL, sha256 text, UNIQUE (collection, id));
ALTER TABLE {COLLECTIONS} ADD COLUMN IF NOT EXISTS owner text;
"""
# Columns a database created before them lacks: added (with the statement filling them) by the first gateway that
# opens it, under the schema's lock.
MIGRATIONS = {
    "name": f"ALTER TABLE {ITEMS} ADD COLUMN name text; UPDATE {ITEMS} SET name = id; "
            f"ALTER TABLE {ITEMS} ALTER COLUMN name SET NOT NULL",
    "sha256": f"ALTER TABLE {ITEMS} ADD COLUMN sha256 text",  # unknown for images added before
}
INDEXES = (f"CREATE INDEX IF NOT EXISTS {ITEMS}_name ON {ITEMS} (collection, name); "
           f"CREATE INDEX IF NOT EXISTS {ITEMS}_sha256 ON {ITEMS} (collection, sha256)")
ITEM_COLUMNS = "id, name, sha256, metadata"


class CollectionCatalog:
    """The names of every collection in the database at `url` (the schema created once)."""

    def __init__(self, url: str, pool_size: int) -> None:
        self._session = PgSession(url, pool_size=pool_size)
        _create_schema(self._session)

    def names(self) -> list[str]:
        return [row[0] for row in self._session.run(f"SELECT name FROM {COLLECTIONS} ORDER BY name", fetch=True)]


def _create_schema(session: PgSession) -> None:
    with session.transaction() as connection:  # serialised: concurrent CREATE TABLE IF NOT EXISTS can collide
        connection.execute("SELECT pg_advisory_xact_lock(hashtext('lomar_collections_schema'))")
        connection.execute(SCHEMA)
        columns = {row[0] for row in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s", (ITEMS,))}
        for column, statements in MIGRATIONS.items():
            if column not in columns:
                for statement in statements.split("; "):
                    connection.execute(statement)
        for statement in INDEXES.split("; "):
            connection.execute(statement)


class PgLease(Lease):
    """A session advisory lock on its own connection: released by `release()` or by the session ending."""

    def __init__(self, session: PgSession, name: str) -> None:
        self._connection = session.connect()
        try:
            self.held = bool(self._connection.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                                                      (f"lomar-reindex:{name}",)).fetchone()[0])
        except psycopg.Error as error:
            self._connection.close()
            raise session.failure("PostgreSQL error", error) from None
        if not self.held:
            self._connection.close()

    def release(self) -> None:
        self._connection.close()


class PostgresCollectionStore(CollectionStore):
    """One collection's rows; thread-safe (each call draws a connection from the process's pool)."""

    holds_index = True

    def __init__(self, url: str, name: str, pool_size: int) -> None:
        self.name = name
        self._session = PgSession(url, pool_size=pool_size)
        _create_schema(self._session)

    def _table(self, version: str) -> str:
        return vector_table(self.name, version)

    def _versions(self, connection: psycopg.Connection, lock: str) -> list[str]:
        """The live and building versions, with the collection's row locked FOR `lock` until the transaction ends."""
        row = connection.execute(f"SELECT version, building FROM {COLLECTIONS} WHERE name = %s FOR {lock}",
                                 (self.name,)).fetchone()
        if row is None:
            raise CollectionNotFound(f"no collection {self.name!r}")
        return [row[0]] + ([row[1]] if row[1] else [])

    # -- collection info --------------------------------------------------------------------------------------
    def create(self, info: CollectionInfo) -> None:
        with self._session.transaction() as connection:
            created = connection.execute(
                f"INSERT INTO {COLLECTIONS} (name, model, dim, version, created, building, owner) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING name",
                astuple(info)).fetchone()
        if created is None:
            raise CollectionExists(f"collection {info.name!r} already exists")

    def info(self) -> CollectionInfo | None:
        row = self._session.run(f"SELECT name, model, dim, version, created, building, owner FROM {COLLECTIONS} "
                                "WHERE name = %s", (self.name,), fetch=True)
        return CollectionInfo(*row[0]) if row else None

    def set_versions(self, version: str, building: str | None) -> None:
        self._session.run(f"UPDATE {COLLECTIONS} SET version = %s, building = %s WHERE name = %s",
                          (version, building, self.name))

    def promote(self, version: str) -> bool:
        with self._session.transaction() as connection:
            versions = self._versions(connection, "UPDATE")
            if versions[1:] != [version] or self._missing(connection, version, 1):
                return False
            connection.execute(f"UPDATE {COLLECTIONS} SET version = %s, building = NULL WHERE name = %s",
                               (version, self.name))
        return True

    def generation(self) -> int:
        return 0  # vectors are written with their items: the index never lags

    # -- items and vectors ------------------------------------------------------------------------------------
    def insert(self, items: list[NewItem], vectors: Mapping[str, np.ndarray], *, upsert: bool,
               on_duplicate: OnDuplicate = "skip") -> Inserted:
        inputs = [item.stored_input() for item in items]
        given = [item.id for item in items if item.id is not None]
        hashes = sorted({item.sha256 for item in items if item.sha256 is not None})
        with self._session.transaction() as connection:
            versions = self._versions(connection, "SHARE")
            missing = [version for version in versions if version not in vectors]
            if missing:
                raise VersionsChanged(missing)
            if on_duplicate != "add":  # two gateways adding the same bytes: one after the other (sorted: no deadlock)
                for digest in hashes:
                    connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.name}:{digest}",))
            by_id = {row.id: row for _, row in self._stored(connection, "id", given)}
            by_content: dict[str, list[Stored]] = {}
            for digest, row in self._stored(connection, "sha256", hashes):
                by_content.setdefault(digest, []).append(row)
            plan = plan_insert(items, by_id, by_content, upsert=upsert, on_duplicate=on_duplicate)
            self._remove(connection, versions, np.array([row.key for row in plan.removed], dtype=np.int64))
            try:
                keys = [connection.execute(
                    f"INSERT INTO {ITEMS} (collection, id, name, sha256, metadata, input, added) VALUES (%s, %s, %s, "
                    "%s, %s, %s, extract(epoch FROM now())) RETURNING key",
                    (self.name, item.id, item.name, item.sha256, json.dumps(item.metadata), inputs[position])
                ).fetchone()[0] for position, item in plan.rows]
            except psycopg.errors.UniqueViolation as error:  # another gateway added one of these ids meanwhile
                raise DuplicateId(f"an id was added meanwhile ({error.diag.message_detail}); send "
                                  "upsert=true to replace it") from error
            positions = [position for position, _ in plan.rows]
            for version in versions:
                copy_vectors(connection, self._table(version), np.array(keys, dtype=np.int64),
                             vectors[version][positions])
        return inserted(items, plan, keys)

    def _stored(self, connection: psycopg.Connection, column: str, values: list[str]) -> list[tuple[str, Stored]]:
        """(value, image) of the stored images whose `column` (id or sha256) is among `values`, oldest first,
        locked until the transaction ends."""
        if not values:
            return []
        rows = connection.execute(f"SELECT {column}, key, id, name FROM {ITEMS} WHERE collection = %s AND "
                                  f"{column} = ANY(%s) ORDER BY key FOR UPDATE", (self.name, values)).fetchall()
        return [(row[0], Stored(*row[1:])) for row in rows]

    def with_content(self, hashes: list[str]) -> dict[str, Stored]:
        rows = self._session.run(f"SELECT sha256, key, id, name FROM {ITEMS} WHERE collection = %s AND "
                                 "sha256 = ANY(%s) ORDER BY key", (self.name, list(hashes)), fetch=True)
        found: dict[str, Stored] = {}
        for row in rows:
            found.setdefault(row[0], Stored(*row[1:]))
        return found

    def _remove(self, connection: psycopg.Connection, versions: list[str], keys: np.ndarray) -> None:
        if len(keys):
            for version in versions:
                connection.execute(f"DELETE FROM {self._table(version)} WHERE key = ANY(%s)", (keys.tolist(),))
            connection.execute(f"DELETE FROM {ITEMS} WHERE key = ANY(%s)", (keys.tolist(),))

    def delete(self, item_id: str) -> int | None:
        with self._session.transaction() as connection:
            versions = self._versions(connection, "SHARE")
            row = connection.execute(f"SELECT key FROM {ITEMS} WHERE collection = %s AND id = %s FOR UPDATE",
                                     (self.name, item_id)).fetchone()
            if row is None:
                return None
            self._remove(connection, versions, np.array([row[0]], dtype=np.int64))
        return int(row[0])

    def put_vectors(self, version: str, keys: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        with self._session.transaction() as connection:
            if self._versions(connection, "SHARE")[1:] != [version]:
                return np.zeros(0, dtype=np.int64)
            alive = {row[0] for row in connection.execute(
                f"SELECT key FROM {ITEMS} WHERE collection = %s AND key = ANY(%s) FOR SHARE",
                (self.name, keys.tolist()))}
            done = {row[0] for row in connection.execute(
                f"SELECT key FROM {self._table(version)} WHERE key = ANY(%s)", (list(alive),))}
            keep = np.array([int(key) in alive - done for key in keys], dtype=bool)
            copy_vectors(connection, self._table(version), keys[keep], vectors[keep])
        return keys[keep]

    def drop_vectors(self, version: str) -> None:
        self._session.run(f"DROP TABLE IF EXISTS {self._table(version)}")

    def _missing(self, connection: psycopg.Connection, version: str, limit: int) -> list[tuple[int, bytes]]:
        return connection.execute(
            f"SELECT i.key, i.input FROM {ITEMS} i WHERE i.collection = %s AND NOT EXISTS "
            f"(SELECT 1 FROM {self._table(version)} v WHERE v.key = i.key) ORDER BY i.key LIMIT %s",
            (self.name, limit)).fetchall()

    def missing(self, version: str, limit: int) -> list[tuple[int, bytes]]:
        with self._session.connection() as connection:
            return [(int(key), bytes(data)) for key, data in self._missing(connection, version, limit)]

    def vectors(self, version: str, batch: int = 10_000) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        if not self._session.run("SELECT to_regclass(%s) IS NOT NULL", (self._table(version),), fetch=True)[0][0]:
            return  # a retired version: its table is gone
        last = -1
        while True:
            rows = self._session.run(f"SELECT key, embedding FROM {self._table(version)} WHERE key > %s "
                                     "ORDER BY key LIMIT %s", (last, batch), fetch=True)
            if not rows:
                return
            last = rows[-1][0]
            yield (np.array([row[0] for row in rows], dtype=np.int64),
                   np.stack([row[1].to_numpy() for row in rows]).astype(np.float32))

    def vector_of(self, version: str, item_id: str) -> np.ndarray | None:
        rows = self._session.run(f"SELECT v.embedding FROM {self._table(version)} v JOIN {ITEMS} i "
                                 "ON i.key = v.key WHERE i.collection = %s AND i.id = %s", (self.name, item_id),
                                 fetch=True)
        return rows[0][0].to_numpy().astype(np.float32) if rows else None

    def rows(self, keys: np.ndarray) -> dict[int, ItemRow]:
        if not len(keys):
            return {}
        found = self._session.run(f"SELECT key, {ITEM_COLUMNS} FROM {ITEMS} WHERE collection = %s AND key = ANY(%s)",
                                  (self.name, [int(key) for key in keys]), fetch=True)
        return {row[0]: ItemRow(*row[1:]) for row in found}

    def item(self, item_id: str) -> tuple[ItemRow, bytes] | None:
        rows = self._session.run(f"SELECT {ITEM_COLUMNS}, input FROM {ITEMS} WHERE collection = %s AND id = %s",
                                 (self.name, item_id), fetch=True)
        return (ItemRow(*rows[0][:-1]), bytes(rows[0][-1])) if rows else None

    def listing(self, offset: int, limit: int, *, names: list[str] | None = None,
                hashes: list[str] | None = None) -> list[ItemRow]:
        where, params = "", []
        for column, values in (("name", names), ("sha256", hashes)):
            if values is not None:
                where += f" AND {column} = ANY(%s)"
                params.append(list(values))
        rows = self._session.run(f"SELECT {ITEM_COLUMNS} FROM {ITEMS} WHERE collection = %s{where} ORDER BY key "
                                 "LIMIT %s OFFSET %s", (self.name, *params, limit, offset), fetch=True)
        return [ItemRow(*row) for row in rows]

    def count(self) -> int:
        return int(self._session.run(f"SELECT count(*) FROM {ITEMS} WHERE collection = %s", (self.name,),
                                     fetch=True)[0][0])

    def matching(self, where: Mapping[str, Any]) -> np.ndarray:
        rows = self._session.run(f"SELECT key FROM {ITEMS} WHERE collection = %s AND metadata @> %s::jsonb",
                                 (self.name, json.dumps(metadata_filter(where))), fetch=True)
        return np.array([row[0] for row in rows], dtype=np.int64)

    def reindex_lease(self) -> Lease:
        return PgLease(self._session, self.name)

    def drop(self) -> None:
        self._session.run(f"DELETE FROM {COLLECTIONS} WHERE name = %s", (self.name,))  # items cascade

    def close(self) -> None:
        """Nothing to release: connections go back to the process's pool after each call."""
