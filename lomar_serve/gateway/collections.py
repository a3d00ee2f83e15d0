"""The collections a gateway serves: create, list, add, delete and search, embedding through the gateway's own
inference path; a background task per collection re-indexes it when its model's serving version changes.

With the embedded engine the collections are this gateway's (files in its search folder). With pgvector they
live in the shared database: every gateway of a fleet serves every collection, each request re-reads the
collection's versions (one query), and one gateway at a time re-indexes a collection (the store's lease).

The re-index runs as an asyncio task owned by this service (not a lifecycle job): it needs the gateway's
Triton client and event loop, it must not queue behind a training job on a job worker, and
it is resumable from the store after a restart. The work itself is `reindex()` (reindex.py), which only needs
an `embed` callable, so it can move to a separate control plane.

    search = SearchService(SearchSettings(folder=..., engine=EngineConfig(), limits=StorageLimits(...)), gateway)
    await search.start()
    await search.create("photos", model=None, dim=None)
    photos = await search.collection("photos")      # one read of the collection per request
    await search.add(photos, [jpeg_bytes], ids=["a"], names=["cats/a.jpg"], metadata=[{"kind": "cat"}])
    await search.search(photos, Queries(images=[jpeg_bytes]), top_k=5)
    search.hold_for_switch("lomar_classifier", "2")    # from a thread, after the gateway's routing switched
    await search.close()
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from contracts.collections import COLLECTION_NAME_PATTERN, COLLECTION_NAME_RULE, OnDuplicate
from contracts.triton_config import read_serving_version
from lomar_serve.common.errors import InvalidParameter, PayloadTooLarge, ServiceError
from lomar_serve.gateway.catalog import ModelSpec
from lomar_serve.gateway.service import Gateway, unit_rows
from lomar_serve.gateway.settings import Settings
from lomar_serve.search.backends import release_connections
from lomar_serve.search.collection import Collection, Hit
from lomar_serve.search.engine import EngineConfig
from lomar_serve.search.errors import (CollectionExists, CollectionNotFound, CollectionsDisabled, CollectionsLocked,
                                       DimensionMismatch, ImageNotFound, LimitReached, QuotaExceeded, StorageError,
                                       VersionUnavailable)
from lomar_serve.search.folder_lock import FolderLock
from lomar_serve.search.reindex import reindex
from lomar_serve.search.store import (STORE_FILE_NAME, CollectionInfo, Inserted, NewItem, Skipped,
                                      Stored, VersionsChanged)
from lomar_serve.search.stored_input import as_png, encode_input

if TYPE_CHECKING:
    from lomar_serve.search.pg_store import CollectionCatalog

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
ITEM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
# An image's name: what the client called it (a file name, a path in an ingested folder); any text but control
# characters, up to 1024 characters. Names need not be unique.
IMAGE_NAME_PATTERN = r"^[^\x00-\x1f\x7f]{1,1024}$"
COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)
ITEM_ID = re.compile(ITEM_ID_PATTERN)
IMAGE_NAME = re.compile(IMAGE_NAME_PATTERN)


@dataclass(frozen=True)
class StorageLimits:
    """What clients may store: collections, images per collection, and each image's metadata."""

    collections: int
    images: int  # per collection
    metadata_bytes: int  # of one image's metadata, as compact JSON
    metadata_keys: int

    def check_metadata(self, metadata: list[dict[str, Any]]) -> None:
        """Raises InvalidParameter (too many keys) or PayloadTooLarge (too many bytes) for the first offender."""
        for position, item in enumerate(metadata):
            if len(item) > self.metadata_keys:
                raise InvalidParameter(f"metadata of image {position} has {len(item)} keys; at most "
                                       f"{self.metadata_keys} are kept per image")
            size = len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())
            if size > self.metadata_bytes:
                raise PayloadTooLarge(f"metadata of image {position} is {size} bytes of JSON; at most "
                                      f"{self.metadata_bytes} are kept per image")


@dataclass(frozen=True)
class SearchSettings:
    folder: Path  # one sub-folder per collection
    engine: EngineConfig
    limits: StorageLimits  # what clients may store
    reindex_batch: int = 16  # images per inference call of a re-index
    check_interval_s: float = 5.0  # how often serving versions are compared with the collections'
    save_interval_s: float = 30.0  # how often changed embedded indexes are written to disk
    hold_s: float = 600.0  # a deploy keeps the old version loaded this long for running re-indexes
    enabled: bool = True  # False: this gateway serves no collections (LOMAR_SEARCH_ENGINE=none)


@dataclass(frozen=True)
class Queries:
    """What a search looks for, one kind of query: images (their bytes), indexed images (ids) or vectors (Q, D)."""

    images: list[bytes] | None = None
    ids: list[str] | None = None
    vectors: np.ndarray | None = None

    def __post_init__(self) -> None:
        given = [kind for kind in (self.images, self.ids, self.vectors) if kind is not None]
        if len(given) != 1 or not len(given[0]):
            raise InvalidParameter("give the query images, the ids of indexed images, or query vectors: one kind")

    def __len__(self) -> int:
        return len(next(kind for kind in (self.images, self.ids, self.vectors) if kind is not None))


@dataclass(frozen=True)
class SearchAnswer:
    collection: str
    model: str
    model_version: str
    results: list[list[Hit]]  # one list per query, best first


class SearchService:
    """Collections by name; thread-safe collection objects, used from the event loop."""

    def __init__(self, settings: SearchSettings, gateway: Gateway) -> None:
        self.settings = settings
        self.gateway = gateway
        self._collections: dict[str, Collection] = {}
        self._admin = asyncio.Lock()  # create and delete
        self._reindexing: dict[str, tuple[str, asyncio.Task[None]]] = {}  # name -> (target version, task)
        self._errors: dict[str, str] = {}  # name -> why the last re-index stopped
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._catalog: CollectionCatalog | None = None  # pgvector: opened on first use (the database may be down)
        self._catalog_lock = threading.Lock()
        # embedded: this gateway's alone while it runs (folder_lock.py)
        self._folder_lock = FolderLock(settings.folder) if settings.enabled and not self.shared else None

    # -- life cycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the existing collections (rebuilding indexes that lag their store) and start the watcher.

        Raises:
            CollectionsLocked: the folder of embedded collections is another gateway's.
        """
        self._loop = asyncio.get_running_loop()
        if not self.settings.enabled:
            LOGGER.info("search: no collections on this gateway (LOMAR_SEARCH_ENGINE=none)")
            return
        try:
            if self._folder_lock is not None:
                await _stored(self._folder_lock.acquire)
            await self._open_all(await _stored(self._stored_names))
        except CollectionsLocked:
            raise
        except ServiceError as error:  # the database is down: inference starts anyway, the watcher retries
            LOGGER.error("collections not opened (retried every %.0f s): %s", self.settings.check_interval_s,
                         error.message)
        for collection in self._collections.values():
            if collection.info.building:
                self._ensure_reindex(collection, collection.info.building)
        LOGGER.info("search: %d collection(s) in %s, %s engine", len(self._collections), self.settings.folder,
                    self.settings.engine.kind)
        self._watcher = asyncio.create_task(self._watch(), name="lomar-search-watch")

    async def close(self) -> None:
        tasks = [task for _, task in self._reindexing.values()] + ([self._watcher] if self._watcher else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for collection in self._collections.values():
            await asyncio.to_thread(collection.close)
        self._collections.clear()
        self._catalog = None
        await asyncio.to_thread(release_connections, self.settings.engine)
        if self._folder_lock is not None:
            self._folder_lock.release()

    async def _available(self) -> None:
        """Collections can be served: not disabled and, embedded, the folder is this gateway's (taken now if it
        was not; its collections opened then).

        Raises:
            CollectionsDisabled, CollectionsLocked, StorageError (the folder cannot be created or locked).
        """
        if not self.settings.enabled:
            raise CollectionsDisabled("this gateway serves no collections (LOMAR_SEARCH_ENGINE=none): use the "
                                      "gateway that holds the collections, or pgvector to share them")
        if self._folder_lock is not None and not self._folder_lock.held:
            await _stored(self._folder_lock.acquire)
            await self._open_all(await _stored(self._stored_names))
    @property
    def shared(self) -> bool:
        """Whether the collections live in a database that other gateways share (pgvector)."""
        return self.settings.engine.kind == "pgvector"

    def _stored_names(self) -> list[str]:
        """The collections in the store (folders of this gateway, or rows of the shared database)."""
        if self.shared:
            with self._catalog_lock:
                if self._catalog is None:
                    from lomar_serve.search.pg_store import CollectionCatalog

                    self._catalog = CollectionCatalog(str(self.settings.engine.pg_url), self.settings.engine.pool_size)
            return self._catalog.names()
        return sorted(path.parent.name for path in self.settings.folder.glob(f"*/{STORE_FILE_NAME}"))

    async def _open_all(self, names: list[str]) -> None:
        """Open the collections in `names` not open yet; forget open ones not in `names` (deleted elsewhere)."""
        for name in sorted(set(self._collections) - set(names)):
            await self._forget(name)
        for name in names:
            if name not in self._collections:
                try:
                    collection = await asyncio.to_thread(Collection, self.settings.folder / name,
                                                         self.settings.engine)
                except (OSError, ServiceError, ValueError) as error:
                    LOGGER.error("collection %s cannot be opened: %s", name, error)
                    continue
                if self._collections.setdefault(name, collection) is not collection:
                    await asyncio.to_thread(collection.close)

    async def _forget(self, name: str) -> None:
        """Close a collection another gateway deleted."""
        collection = self._collections.pop(name, None)
        running = self._reindexing.pop(name, None)
        if running is not None:
            running[1].cancel()
        if collection is not None:
            await asyncio.to_thread(collection.close)

    # -- collections ------------------------------------------------------------------------------------------
    async def collection(self, name: str) -> Collection:
        """The collection `name`, as the store has it now (CollectionNotFound)."""
        await self._available()
        collection = self._collections.get(name)
        if not self.shared:
            if collection is None:
                raise CollectionNotFound(f"no collection {name!r}")
            return collection
        try:
            if collection is None:  # created through another gateway
                opened = await _stored(Collection, self.settings.folder / name, self.settings.engine)
                collection = self._collections.setdefault(name, opened)
                if collection is not opened:  # another request opened it meanwhile
                    await asyncio.to_thread(opened.close)
            else:
                await _stored(collection.refresh)
        except CollectionNotFound:
            await self._forget(name)
            raise
        return collection

    async def collections(self) -> list[Collection]:
        """Every collection, by name."""
        await self._available()
        if self.shared:
            await self._open_all(await _stored(self._stored_names))
        return [self._collections[name] for name in sorted(self._collections)]

    def indexes(self, model: str) -> bool:
        """Whether a collection holds vectors of `model` (a switch of its version means a re-index)."""
        return any(collection.info.model == model for collection in list(self._collections.values()))

    async def create(self, name: str, model: str | None, dim: int | None, *, owner: str | None = None,
                     max_owned: int | None = None) -> Collection:
        """A new empty collection of `model` (default: the gateway's classifier) at its serving version, owned by
        `owner` (an API key's id), who may own at most `max_owned` collections (None: no quota).

        Raises:
            InvalidParameter (bad name), CollectionExists, DimensionMismatch (`dim` is not the model's),
            LimitReached (the gateway's limit), QuotaExceeded (the owner's).
        """
        await self._available()
        if not COLLECTION_NAME.fullmatch(name):
            raise InvalidParameter(f"invalid collection name {name!r}: {COLLECTION_NAME_RULE}")
        spec = await self._spec(model or self.gateway.settings.default_classifier)
        if dim is not None and dim != spec.embedding_dim:
            raise DimensionMismatch(f"model {spec.name!r} embeds into {spec.embedding_dim} dimensions, not {dim}")
        async with self._admin:
            if name in self._collections:
                raise CollectionExists(f"collection {name!r} already exists")
            existing = len(await _stored(self._stored_names))
            if existing >= self.settings.limits.collections:
                raise LimitReached(f"this gateway keeps at most {self.settings.limits.collections} collections "
                                   f"({existing} exist): delete one first")
            if max_owned is not None:
                owned = sum(collection.info.owner == owner for collection in await self.collections())
                if owned >= max_owned:
                    raise QuotaExceeded(f"the API key {owner} may own at most {max_owned} collections and owns "
                                        f"{owned}: delete one first")
            info = CollectionInfo(name=name, model=spec.name, dim=spec.embedding_dim, version=spec.version,
                                  created=time.time(), owner=owner)
            folder = self.settings.folder / name
            shutil.rmtree(folder, ignore_errors=True)  # leftovers of a collection deleted while half-written
            collection = await _stored(Collection, folder, self.settings.engine, info)
            self._collections[name] = collection
        LOGGER.info("collection %s created (%s version %s, %d dims)", name, spec.name, spec.version,
                    spec.embedding_dim)
        return collection

    async def delete(self, name: str) -> None:
        async with self._admin:
            collection = await self.collection(name)
            running = self._reindexing.pop(name, None)
            if running is not None:
                running[1].cancel()
                await asyncio.gather(running[1], return_exceptions=True)
            del self._collections[name]
            self._errors.pop(name, None)
            await _stored(collection.drop)
        LOGGER.info("collection %s deleted", name)

    async def describe(self, collection: Collection) -> dict[str, Any]:
        info = collection.info
        count, indexed = await _stored(lambda: (collection.count(), collection.indexed()))
        return {"name": info.name, "model": info.model, "model_version": info.version, "dim": info.dim,
                "count": count, "indexed": indexed, "engine": self.settings.engine.kind,
                "created": info.created, "reindexing_to": info.building,
                "reindex_error": self._errors.get(info.name)}

    # -- images -----------------------------------------------------------------------------------------------
    async def add(self, collection: Collection, blobs: list[bytes], *, ids: list[str] | None = None,
                  names: list[str | None] | None = None, metadata: list[dict[str, Any]] | None = None,
                  upsert: bool = False, on_duplicate: OnDuplicate = "skip") -> tuple[Inserted, str]:
        """Embed and store images into `collection` (from `collection(name)`); returns what was stored (ids given
        or generated, names given or the ids; for an image whose bytes the collection holds, what `on_duplicate`
        did) and the live model version."""
        given_ids: list[str | None] = list(ids) if ids else [None] * len(blobs)
        names = list(names) if names else [None] * len(blobs)
        metadata = metadata if metadata else [{} for _ in blobs]
        if len(metadata) == 1:
            metadata = metadata * len(blobs)  # one object: every image's
        if not len(given_ids) == len(names) == len(metadata) == len(blobs):
            raise InvalidParameter(f"{len(blobs)} images but {len(given_ids)} ids, {len(names)} names and "
                                   f"{len(metadata)} metadata objects")
        for item_id in ids or []:
            if not isinstance(item_id, str) or not ITEM_ID.fullmatch(item_id):
                raise InvalidParameter(f"invalid image id {item_id!r}: 1-128 letters, digits, '_.:@-'")
        for name in names:
            check_image_name(name)
        self.settings.limits.check_metadata(metadata)
        hashes = await self.gateway.offload(lambda: [hashlib.sha256(blob).hexdigest() for blob in blobs])
        known = await _stored(collection.store.with_content, hashes) if on_duplicate == "skip" else {}
        todo = [position for position, digest in enumerate(hashes) if digest not in known]  # to embed and store
        count = await _stored(collection.count)
        if count + len(todo) > self.settings.limits.images:  # upserts counted as new: the bound is never passed
            raise LimitReached(f"collection {collection.name!r} holds {count} images; {len(todo)} more would pass "
                               f"its limit of {self.settings.limits.images}")
        stored = Inserted(ids=[], names=[], keys=np.zeros(0, np.int64), positions=[], replaced=np.zeros(0, np.int64))
        if todo:
            spec = await self._spec(collection.info.model)
            images = await self.gateway.decode_inputs("collections", [blobs[i] for i in todo], spec)  # (N, 3, H, W)
            # the stored inputs are encoded (stored_input.py) on a decode thread while the model embeds them
            encoding = asyncio.ensure_future(self.gateway.offload(lambda: [encode_input(image) for image in images]))
            try:
                vectors = {version: await self._embed(spec, images, version, collection)
                           for version in collection.versions()}
            finally:
                encoded = await encoding
            items = [NewItem(id=given_ids[i], name=names[i], metadata=metadata[i], image=image, sha256=hashes[i],
                             encoded=data) for i, image, data in zip(todo, images, encoded)]
            while True:
                try:
                    stored = await _stored(collection.add, items, vectors, upsert=upsert, on_duplicate=on_duplicate)
                    break
                except VersionsChanged as changed:  # a re-index started while we embedded: embed for it too
                    for version in changed.missing:
                        vectors[version] = await self._embed(spec, images, version, collection)
        return _with_known(stored, todo, known, hashes), collection.info.version

    async def thumbnail(self, collection: Collection, item_id: str) -> bytes:
        """The model input stored for an image, as PNG (ImageNotFound)."""
        found = await _stored(collection.store.item, item_id)
        if found is None:
            raise ImageNotFound(f"no image {item_id!r} in collection {collection.name!r}")
        return await self.gateway.offload(as_png, found[1])

    async def remove(self, name: str, item_id: str) -> None:
        await _stored((await self.collection(name)).delete, item_id)

    async def search(self, collection: Collection, queries: Queries, *, top_k: int = 10,
                     threshold: float | None = None, where: dict[str, Any] | None = None) -> SearchAnswer:
        """The nearest images in `collection` (from `collection(name)`) to each query: an image, an indexed image
        (by id, left out of its own answer) or a vector.

        Every query is embedded by (or, a vector, compared with) the model version of the live index, and the
        answer names that version.
        """
        name = collection.name
        if top_k < 1:
            raise InvalidParameter(f"top_k must be at least 1, got {top_k}")
        top_k = min(top_k, self.gateway.settings.max_top_k)  # capped, never refused (as classify's top_k)
        if len(queries) > self.gateway.settings.max_images:
            raise PayloadTooLarge(f"{len(queries)} queries in one request; the limit is "
                                  f"{self.gateway.settings.max_images}")
        vectors = None if queries.vectors is None else self._query_vectors(collection, queries.vectors)
        images = None
        for _ in range(3):  # the live version may switch between embedding and searching: embed again
            version = collection.info.version
            if queries.ids is not None:
                found = [await _stored(collection.vector_of, item_id) for item_id in queries.ids]
                if {found_version for found_version, _ in found} != {version}:
                    continue  # switched between two reads
                vectors = np.stack([vector for _, vector in found])
            elif queries.images is not None:
                spec = await self._spec(collection.info.model)
                if images is None:
                    images = await self.gateway.decode_inputs("collections", queries.images, spec)
                vectors = await self._embed(spec, images, version, collection)
            assert vectors is not None
            results = await _stored(collection.search_many, version, vectors, top_k, threshold=threshold,
                                    where=where, exclude=queries.ids)
            if results is not None:
                return SearchAnswer(collection=name, model=collection.info.model, model_version=version,
                                    results=results)
        raise VersionUnavailable(f"collection {name!r} switched model versions during the search; retry",
                                 retry_after_s=1)

    @staticmethod
    def _query_vectors(collection: Collection, vectors: np.ndarray) -> np.ndarray:
        """Query vectors (Q, D) checked against the collection's dimension, as unit rows (InvalidParameter)."""
        info = collection.info
        if vectors.ndim != 2 or vectors.shape[1] != info.dim:
            raise InvalidParameter(f"a query vector has {vectors.shape[-1]} dimensions; collection {info.name!r} "
                                   f"holds {info.dim}-dimensional vectors of {info.model} version {info.version}")
        norms = np.linalg.norm(vectors, axis=1)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise InvalidParameter("query vectors must be finite and not zero")
        return unit_rows(vectors.astype(np.float64)).astype(np.float32)

    # -- re-index ---------------------------------------------------------------------------------------------
    def hold_for_switch(self, model: str, version: str) -> None:
        """Called in a thread of its own right after the gateway's routing of `model` switched to `version`, while
        the gateway holds the old version (lomar_serve/common/holds.py: the control plane keeps it loaded): re-index the
        model's collections and return when they are done (at most hold_s), so that the live indexes can embed
        queries with the old version until their switch."""
        loop = self._loop
        if loop is None or loop.is_closed() or _in_event_loop():
            return  # never block the event loop (the re-index needs it); the watcher starts the re-index
        future = asyncio.run_coroutine_threadsafe(self._reindex_model(model, version), loop)
        try:
            future.result(self.settings.hold_s)
        except concurrent.futures.TimeoutError:
            LOGGER.warning("re-index of %s collections to version %s still running after %.0f s; the old version "
                           "may be unloaded before it ends", model, version, self.settings.hold_s)
        except Exception as error:  # noqa: BLE001 - a failed re-index must not fail the deploy
            LOGGER.error("re-index of %s collections to version %s failed: %s", model, version, error)

    async def _reindex_model(self, model: str, version: str) -> None:
        await self.collections()
        tasks = [self._ensure_reindex(c, version) for c in list(self._collections.values())
                 if c.info.model == model and c.info.version != version]
        if tasks:
            await asyncio.wait(tasks)

    def _ensure_reindex(self, collection: Collection, version: str) -> asyncio.Task[None]:
        """The task re-indexing `collection` to `version` (started if none runs for that version)."""
        running = self._reindexing.get(collection.name)
        if running is not None and not running[1].done():
            if running[0] == version:
                return running[1]
            running[1].cancel()
        task = asyncio.create_task(self._reindex(collection, version), name=f"lomar-reindex-{collection.name}")
        self._reindexing[collection.name] = (version, task)
        return task

    async def _reindex(self, collection: Collection, version: str) -> None:
        started = time.monotonic()
        try:
            lease = await _stored(collection.store.reindex_lease)
            if not lease.held:  # another gateway re-indexes it; this one follows through refresh()
                return
            try:
                await _stored(collection.refresh)  # the lease's last holder may have finished it
                if collection.info.version == version:
                    return
                spec = await self._spec(collection.info.model)
                count = await reindex(collection, version,
                                      lambda images: self._embed(spec, images, version, collection),
                                      batch=self.settings.reindex_batch)
            finally:
                await asyncio.to_thread(lease.release)
            self._errors.pop(collection.name, None)
            LOGGER.info("collection %s: re-indexed %d images with version %s in %.1f s", collection.name, count,
                        version, time.monotonic() - started)
        except ServiceError as error:  # Triton down, version gone: the watcher tries again
            self._errors[collection.name] = error.message
            LOGGER.warning("collection %s: re-index to version %s stopped: %s", collection.name, version,
                           error.message)
        except (OSError, ValueError, RuntimeError) as error:  # disk full, a broken index file: logged, retried
            self._errors[collection.name] = f"{type(error).__name__}: {error}"
            LOGGER.exception("collection %s: re-index to version %s failed", collection.name, version)

    async def _watch(self) -> None:
        """Compare each collection's version with its model's serving version; save changed indexes."""
        last_save = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.check_interval_s)
            if self.shared:
                try:
                    await self.collections()
                    for collection in list(self._collections.values()):
                        await asyncio.to_thread(collection.refresh)
                except ServiceError as error:  # the database is down, a collection deleted: next time
                    LOGGER.warning("collections not refreshed: %s", error.message)
            for collection in list(self._collections.values()):
                try:
                    serving = (await self._spec(collection.info.model)).version
                except ServiceError:
                    continue
                running = self._reindexing.get(collection.name)
                busy = running is not None and not running[1].done()
                if serving and serving != collection.info.version and not (busy and running[0] == serving) \
                        and await asyncio.to_thread(self._still_published, collection.info.model, serving):
                    self._ensure_reindex(collection, serving)
            if time.monotonic() - last_save >= self.settings.save_interval_s:
                last_save = time.monotonic()
                for collection in list(self._collections.values()):
                    try:
                        await asyncio.to_thread(collection.save)
                    except (OSError, ServiceError) as error:  # rebuilt from the store at the next start
                        LOGGER.warning("collection %s: index not saved: %s", collection.name, error)

    def _still_published(self, model: str, version: str) -> bool:
        """Whether the repository publishes `version` of `model` now. This gateway's view (its catalog, its routing)
        may lag a switch by a routing interval; a shared collection another gateway has just re-indexed to the new
        version would then look stale and be re-indexed back. So a re-index starts only for the version
        config.pbtxt names at this moment (a gateway without the repository trusts its view)."""
        repository = self.gateway.settings.model_repository
        if not repository.is_dir():
            return True
        return read_serving_version(repository / model) in (None, version)

    # -- inference --------------------------------------------------------------------------------------------
    async def _spec(self, model: str) -> ModelSpec:
        return await self.gateway.catalog.get(model, "classifier")

    async def _embed(self, spec: ModelSpec, images: np.ndarray, version: str, collection: Collection) -> np.ndarray:
        vectors = await self.gateway.embed_inputs(spec, images, version)
        if vectors.shape[1] != collection.info.dim:
            raise DimensionMismatch(f"model {spec.name!r} version {version} embeds into {vectors.shape[1]} "
                                    f"dimensions; collection {collection.name!r} holds {collection.info.dim}")
        return vectors


def _with_known(stored: Inserted, todo: list[int], known: dict[str, Stored], hashes: list[str]) -> Inserted:
    """An add's answer over every image sent: `stored` answers for the images at positions `todo`; the others
    were skipped before embedding, their bytes being those of the `known` images."""
    ids, names = [""] * len(hashes), [""] * len(hashes)
    skipped = [Skipped(todo[skip.position], skip.id, skip.name) for skip in stored.skipped]
    for position, digest in enumerate(hashes):
        if digest in known:
            ids[position], names[position] = known[digest].id, known[digest].name
            skipped.append(Skipped(position, known[digest].id, known[digest].name))
    for sub, position in enumerate(todo):
        ids[position], names[position] = stored.ids[sub], stored.names[sub]
    return replace(stored, ids=ids, names=names, positions=[todo[p] for p in stored.positions],
                   skipped=sorted(skipped, key=lambda skip: skip.position))


def check_image_name(name: str | None) -> None:
    """InvalidParameter unless `name` is None (the id stands for it) or a valid image name."""
    if name is not None and (not isinstance(name, str) or not IMAGE_NAME.fullmatch(name)):
        raise InvalidParameter(f"invalid image name {str(name)[:80]!r}: 1-1024 characters, no control characters")


async def _stored(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run store/index work off the event loop; a failing disk or database is a 503, never a 500."""
    try:
        return await asyncio.to_thread(function, *args, **kwargs)
    except (OSError, sqlite3.Error) as error:
        LOGGER.error("collection storage failed: %s: %s", type(error).__name__, error)
        raise StorageError(f"the collection store failed ({type(error).__name__}); retry later") from error


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def search_settings(settings: Settings) -> SearchSettings:
    """The search subsystem's settings from the gateway's; collections live next to the model repository
    (REPO/../collections) unless LOMAR_SEARCH_DIR says otherwise."""
    folder = settings.search_dir or Path(settings.model_repository).resolve().parent / "collections"
    url = settings.search_pg_url.get_secret_value() if settings.search_pg_url else None
    enabled = settings.search_engine != "none"
    engine = EngineConfig(kind=settings.search_engine if settings.search_engine != "none" else "embedded", pg_url=url,
                          build_memory_mb=settings.search_pg_build_memory_mb, pool_size=settings.search_pg_pool_size,
                          exact_limit=settings.search_exact_limit, expansion_search=settings.search_ef_search)
    return SearchSettings(folder=Path(folder), engine=engine, enabled=enabled,
                          reindex_batch=settings.search_reindex_batch,
                          check_interval_s=settings.search_check_interval_s, hold_s=settings.search_hold_s,
                          limits=StorageLimits(collections=settings.search_max_collections,
                                               images=settings.search_max_images,
                                               metadata_bytes=settings.search_max_metadata_bytes,
                                               metadata_keys=settings.search_max_metadata_keys))
