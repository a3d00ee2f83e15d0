"""A collection's durable state: its images (ids, names, metadata, the model input they were embedded from, kept
losslessly: stored_input.py), their vectors per model version, and which version is live or being built.

One interface, two stores:
- `SqliteCollectionStore` (sqlite_store.py), one file per collection, with the embedded engine. It is the source
  of truth: the usearch index is derived from its vectors and rebuilt when their generations differ.
- `PostgresCollectionStore` (pg_store.py), with pgvector: every collection in the one database that all gateways
  of a fleet share. Its vector tables ARE the search index (`holds_index`), written in the items' transaction.

    store = open_collection_store(EngineConfig(), folder / "photos")    # backends.py
    store.create(CollectionInfo(name="photos", model="lomar_classifier", dim=192, version="1", created=...))
    inserted = store.insert(items, {"1": vectors}, upsert=False)   # one transaction: rows and vectors
"""
from __future__ import annotations

import math
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from contracts.collections import OnDuplicate
from lomar_serve.common.errors import InvalidParameter
from lomar_serve.search.errors import DuplicateId
from lomar_serve.search.stored_input import encode_input

STORE_FILE_NAME = "collection.sqlite"  # in the collection's folder (embedded engine)
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
    owner: str | None = None  # the id of the API key that created it (None: created without a key)




@dataclass(frozen=True)
class NewItem:
    """An image to add: its id (None: generated), name (None: its id), metadata, model input (uint8 (3, H, W)) and
    the sha256 (hex) of the bytes it was decoded from (None: unknown, never matched)."""

    id: str | None
    metadata: dict[str, Any]
    image: np.ndarray
    name: str | None = None
    sha256: str | None = None
    encoded: bytes | None = None  # the model input as encode_input wrote it, if done already (in parallel)

    def stored_input(self) -> bytes:
        """The model input as stored (stored_input.py)."""
        return self.encoded if self.encoded is not None else encode_input(self.image)


@dataclass(frozen=True)
class ItemRow:
    """What a collection says about one of its images."""

    id: str
    name: str
    sha256: str | None  # None: added before content hashes were kept
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Stored:
    """An image an insert meets: by id (upsert) or by content (duplicates)."""

    key: int
    id: str
    name: str


@dataclass(frozen=True)
class Skipped:
    """An item not added: the collection (or an earlier item of the same add) holds its content."""

    position: int  # in the items given
    id: str  # the image with that content
    name: str


@dataclass(frozen=True)
class InsertPlan:
    """What an insert writes: the new rows (position in the items given, item with its final id and name), the
    rows it removes, and the items it skips."""

    rows: list[tuple[int, NewItem]]
    removed: list[Stored]
    skipped: list[Skipped]


@dataclass(frozen=True)
class Inserted:
    """What an insert did."""

    ids: list[str]  # one per item given: its id, or for a skipped one the id of the image it matched
    names: list[str]  # likewise
    keys: np.ndarray  # (N,) int64: the new rows' keys
    positions: list[int]  # (N,): which items given the new rows are
    replaced: np.ndarray  # (R,) int64: keys of rows removed (upsert, on_duplicate="replace")
    replaced_ids: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def new_id() -> str:
    """A generated image id: 16 hex digits."""
    return secrets.token_hex(8)


def plan_insert(items: list[NewItem], by_id: Mapping[str, Stored], by_content: Mapping[str, list[Stored]], *,
                upsert: bool, on_duplicate: OnDuplicate) -> InsertPlan:
    """Decide an insert, the same way in every store (which calls this inside its transaction).

    Args:
        by_id: the stored images whose ids some item gives.
        by_content: sha256 -> the stored images with it (oldest first), for the items' hashes.
    Raises:
        DuplicateId: an id is stored (and not `upsert`) or repeats within `items`.
    """
    rows: list[tuple[int, NewItem]] = []
    removed: dict[int, Stored] = {}
    skipped: list[Skipped] = []
    first: dict[str, NewItem] = {}  # sha256 -> the first new row with it
    for position, item in enumerate(items):
        digest = item.sha256
        if digest is not None and on_duplicate != "add":
            earlier, stored = first.get(digest), by_content.get(digest, [])
            if earlier is not None:  # the same bytes twice in one add: stored once
                skipped.append(Skipped(position, str(earlier.id), str(earlier.name)))
                continue
            if stored and on_duplicate == "skip":
                skipped.append(Skipped(position, stored[0].id, stored[0].name))
                continue
            removed.update((row.key, row) for row in stored)
            if stored and item.id is None:
                item = replace(item, id=stored[0].id)  # replaced: the image keeps its id
        item_id = item.id if item.id is not None else new_id()
        item = replace(item, id=item_id, name=item.name or item_id)
        if digest is not None:
            first[digest] = item
        rows.append((position, item))
    check_unique_ids([item for _, item in rows])
    taken = [by_id[str(item.id)] for _, item in rows if str(item.id) in by_id]
    taken = [row for row in taken if row.key not in removed]
    if taken and not upsert:
        names = ", ".join(sorted(repr(row.id) for row in taken))
        raise DuplicateId(f"id {names} already in the collection (send upsert=true to replace)")
    removed.update((row.key, row) for row in taken)
    return InsertPlan(rows=rows, removed=list(removed.values()), skipped=skipped)


def inserted(items: list[NewItem], plan: InsertPlan, keys: list[int]) -> Inserted:
    """The answer to an insert that wrote `plan`, the new rows under `keys`."""
    ids: list[str] = [""] * len(items)
    names: list[str] = [""] * len(items)
    for position, item in plan.rows:
        ids[position], names[position] = str(item.id), str(item.name)
    for skip in plan.skipped:
        ids[skip.position], names[skip.position] = skip.id, skip.name
    return Inserted(ids=ids, names=names, keys=np.array(keys, dtype=np.int64),
                    positions=[position for position, _ in plan.rows],
                    replaced=np.array([row.key for row in plan.removed], dtype=np.int64),
                    replaced_ids=sorted(row.id for row in plan.removed), skipped=plan.skipped)


def metadata_filter(where: Mapping[str, Any]) -> dict[str, Any]:
    """A metadata equality filter, checked: keys of 1-64 letters, digits or '_', values JSON scalars."""
    for key, value in where.items():
        if not FILTER_KEY.fullmatch(key):
            raise InvalidParameter(f"filter key {key!r}: use 1-64 letters, digits or '_'")
        if value is not None and not isinstance(value, (bool, int, float, str)) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise InvalidParameter(f"filter value of {key!r} must be a string, finite number, boolean or null")
    return dict(where)


def check_unique_ids(items: list[NewItem]) -> list[str]:
    """The items' ids; DuplicateId if one repeats."""
    ids = [str(item.id) for item in items]
    if len(set(ids)) != len(ids):
        raise DuplicateId("the same id appears twice in one request")
    return ids


class VersionsChanged(Exception):
    """The collection's versions changed while vectors were being computed: compute the missing ones."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"vectors of versions {missing} are missing")
        self.missing = missing


class Lease:
    """The right to re-index a collection, held until `release()`; a store shared by processes grants one at a
    time."""

    held = True

    def release(self) -> None:
        """Give the lease back."""


class CollectionStore(ABC):
    """One collection's images, metadata and vectors; every method is thread-safe."""

    holds_index = False  # True: the store's vector tables are the search index (nothing to feed or rebuild)

    @abstractmethod
    def create(self, info: CollectionInfo) -> None:
        """Record a new collection (CollectionExists when another process created it first)."""

    @abstractmethod
    def info(self) -> CollectionInfo | None:
        """What the collection is; None when it does not exist (or was deleted)."""

    @abstractmethod
    def set_versions(self, version: str, building: str | None) -> None: ...

    @abstractmethod
    def promote(self, version: str) -> bool:
        """Make `version`, being built, the live one if every image has its vector (one step); else False."""

    @abstractmethod
    def generation(self) -> int:
        """Bumped by every change of vectors: a derived index saved at another generation is stale."""

    @abstractmethod
    def insert(self, items: list[NewItem], vectors: Mapping[str, np.ndarray], *, upsert: bool,
               on_duplicate: OnDuplicate = "skip") -> Inserted:
        """Add `items` with their vectors (version -> (N, D) float32) in one transaction, as `plan_insert` decides.

        Raises:
            DuplicateId: an id exists (and not `upsert`) or repeats within `items`.
            VersionsChanged: `vectors` lacks a version the collection has (a shared store checks).
        """

    @abstractmethod
    def delete(self, item_id: str) -> int | None:
        """Remove one image; its key, or None when the id is unknown."""

    @abstractmethod
    def put_vectors(self, version: str, keys: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Store a re-index's vectors for the keys that still exist; returns those keys."""

    @abstractmethod
    def drop_vectors(self, version: str) -> None: ...

    @abstractmethod
    def missing(self, version: str, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` (key, stored input) of images without a vector of `version`, oldest first."""

    @abstractmethod
    def vectors(self, version: str, batch: int = 10_000) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        """All vectors of `version` in batches of keys (n,) and vectors (n, D) (for rebuilding an index)."""

    @abstractmethod
    def vector_of(self, version: str, item_id: str) -> np.ndarray | None: ...

    @abstractmethod
    def rows(self, keys: np.ndarray) -> dict[int, ItemRow]:
        """key -> the image, for the keys that exist."""

    @abstractmethod
    def item(self, item_id: str) -> tuple[ItemRow, bytes] | None:
        """One image and its stored input (stored_input.py: decode_input, as_png)."""

    @abstractmethod
    def listing(self, offset: int, limit: int, *, names: list[str] | None = None,
                hashes: list[str] | None = None) -> list[ItemRow]:
        """Images oldest first; `names`, `hashes`: only those with one of these exact names, sha256 digests."""

    @abstractmethod
    def with_content(self, hashes: list[str]) -> dict[str, Stored]:
        """sha256 -> the oldest stored image with it, for those of `hashes` the collection holds."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def matching(self, where: Mapping[str, Any]) -> np.ndarray:
        """Keys of images whose metadata has each key equal to the value (a JSON scalar; see metadata_filter)."""

    def reindex_lease(self) -> Lease:
        """The right to re-index; one process owns a file store, so it is always granted."""
        return Lease()

    @abstractmethod
    def drop(self) -> None:
        """Delete the collection's rows or files for good (its indexes are dropped by the collection)."""

    @abstractmethod
    def close(self) -> None: ...
