"""A collection on each engine (usearch + SQLite; pgvector + PostgreSQL, a real server started by conftest.py):
adds, duplicates, filters, deletes, persistence, and a re-index to another "model version" while adds keep
coming; and, on PostgreSQL, two gateways' objects sharing one collection. The two versions are two fixed random
projections of the stored model input (a stand-in for two ONNX versions: the model itself is exercised by the
e2e tests)."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from lomar_serve.search.collection import Collection
from lomar_serve.search.engine import EngineConfig
from lomar_serve.search.errors import CollectionExists, CollectionNotFound, DuplicateId, ImageNotFound
from lomar_serve.search.reindex import reindex
from lomar_serve.search.store import CollectionInfo, NewItem, VersionsChanged

DIM, SIZE = 16, 8


def embedder(version: str):
    """A deterministic "model version": uint8 (N, 3, SIZE, SIZE) -> (N, DIM) unit vectors."""
    projection = np.random.default_rng(int(version)).standard_normal((3 * SIZE * SIZE, DIM))

    def embed(images: np.ndarray) -> np.ndarray:
        vectors = images.reshape(len(images), -1).astype(np.float64) @ projection
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    return embed


def images(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 3, SIZE, SIZE), dtype=np.uint8)


@pytest.fixture(params=["embedded", "pgvector"])
def engine(request: pytest.FixtureRequest) -> EngineConfig:
    if request.param == "pgvector":
        return EngineConfig(kind="pgvector", pg_url=request.getfixturevalue("new_postgres_database")())
    return EngineConfig()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The collection's folder, named after it."""
    return tmp_path / "things"


def new(folder: Path, engine: EngineConfig) -> Collection:
    info = CollectionInfo(name=folder.name, model="m", dim=DIM, version="1", created=0.0)
    return Collection(folder, engine, info)


def add(collection: Collection, pixels: np.ndarray, ids: list[str], **kwargs) -> None:
    items = [NewItem(id=i, metadata={"n": n, "odd": n % 2 == 1}, image=p)
             for n, (i, p) in enumerate(zip(ids, pixels))]
    vectors = {version: embedder(version)(pixels) for version in collection.versions()}
    collection.add(items, vectors, **kwargs)


def test_add_search_filter_delete_and_duplicates(folder: Path, engine: EngineConfig) -> None:
    collection = new(folder, engine)
    pixels = images(0, 30)
    add(collection, pixels, [f"img{i}" for i in range(30)])
    query = embedder("1")(pixels[4:5])[0]
    hits = collection.search("1", query, 3)
    assert hits[0].id == "img4" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert collection.search("2", query, 3) is None  # not the live version: never answered
    odd = collection.search("1", query, 5, where={"odd": True})
    assert odd and all(hit.metadata["odd"] for hit in odd) and "img4" not in {h.id for h in odd}
    assert all(hit.score >= 0.5 for hit in collection.search("1", query, 10, threshold=0.5))
    assert [h.id for h in collection.search("1", query, 1, exclude="img4")] != ["img4"]
    with pytest.raises(DuplicateId):
        add(collection, pixels[:1], ["img4"])
    with pytest.raises(DuplicateId):
        add(collection, pixels[:2], ["x", "x"])
    add(collection, pixels[5:6], ["img4"], upsert=True)  # replaced by another picture
    assert collection.search("1", query, 1)[0].id != "img4" and collection.count() == 30 == collection.indexed()
    collection.delete("img4")
    with pytest.raises(ImageNotFound):
        collection.delete("img4")
    assert collection.count() == 29 == collection.indexed()


def test_persists_and_rebuilds_a_lagging_index(folder: Path, engine: EngineConfig) -> None:
    collection = new(folder, engine)
    pixels = images(1, 10)
    add(collection, pixels, [f"a{i}" for i in range(10)])
    collection.close()
    reopened = Collection(folder, engine)
    assert reopened.count() == 10 == reopened.indexed()
    add(reopened, images(2, 5), [f"b{i}" for i in range(5)])  # not saved: a crash now leaves the file behind
    reopened.store.close()
    rebuilt = Collection(folder, engine)
    assert rebuilt.indexed() == 15
    assert rebuilt.search("1", embedder("1")(pixels[3:4])[0], 1)[0].id == "a3"


def test_reindex_switches_at_once_and_keeps_adds_made_meanwhile(folder: Path, engine: EngineConfig) -> None:
    collection = new(folder, engine)
    pixels = images(3, 40)
    add(collection, pixels, [f"p{i}" for i in range(40)])
    late = images(4, 6)
    steps = []

    async def slow_embed(batch: np.ndarray) -> np.ndarray:
        steps.append(collection.versions())
        if len(steps) == 2:  # during the re-index: an add lands in both indexes
            add(collection, late, [f"late{i}" for i in range(6)])
        if len(steps) == 3:  # ... so the old index finds it before the switch
            assert collection.search("1", embedder("1")(late[2:3])[0], 1)[0].id == "late2"
        live = collection.info.version
        query = embedder(live)(pixels[0:1])[0]
        assert collection.search(live, query, 1)[0].id == "p0"  # the old index answers throughout
        await asyncio.sleep(0)
        return embedder("2")(batch)

    done = asyncio.run(reindex(collection, "2", slow_embed, batch=8))
    assert steps[0] == ["1", "2"] and done == 40
    assert collection.info.version == "2" and collection.info.building is None
    assert collection.count() == 46 == collection.indexed()
    hit = collection.search("2", embedder("2")(late[2:3])[0], 1)[0]
    assert hit.id == "late2" and hit.score == pytest.approx(1.0, abs=1e-4)
    assert collection.search("1", embedder("1")(late[2:3])[0], 1) is None
    assert list(collection.store.vectors("1")) == []  # the old version's vectors are gone
    [(keys, vectors)] = collection.store.vectors("2", batch=100)  # the new one's, read back as stored
    assert len(keys) == 46 and vectors.shape == (46, DIM) and vectors.dtype == np.float32


def test_add_with_stale_versions_is_refused(folder: Path, engine: EngineConfig) -> None:
    collection = new(folder, engine)
    collection.begin_reindex("2")
    items = [NewItem(id="a", metadata={}, image=images(5, 1)[0])]
    with pytest.raises(VersionsChanged) as raised:
        collection.add(items, {"1": embedder("1")(images(5, 1))})
    assert raised.value.missing == ["2"]
    reopened_versions = Collection(folder, engine).versions()
    assert reopened_versions == ["1", "2"]  # an interrupted re-index is resumed after a restart


# The tables of a collection written before images had names (the schema of the first release), to migrate.
OLD_SQLITE = """
CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (key INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, metadata TEXT NOT NULL,
                    input BLOB NOT NULL, added REAL NOT NULL);
CREATE TABLE vectors (version TEXT NOT NULL, key INTEGER NOT NULL REFERENCES items(key) ON DELETE CASCADE,
                      vector BLOB NOT NULL, PRIMARY KEY (version, key));
"""
OLD_POSTGRES = """
CREATE TABLE lomar_collections (name text PRIMARY KEY, model text NOT NULL, dim integer NOT NULL,
    version text NOT NULL, created double precision NOT NULL, building text);
CREATE TABLE lomar_collection_items (key bigserial PRIMARY KEY, collection text NOT NULL
    REFERENCES lomar_collections (name) ON DELETE CASCADE, id text NOT NULL, metadata jsonb NOT NULL,
    input bytea NOT NULL, added double precision NOT NULL, UNIQUE (collection, id));
"""


def write_old_collection(folder: Path, engine: EngineConfig, pixels: np.ndarray) -> None:
    """A collection `folder.name` of 3 images ("old0".."old2", version 1) as the first release stored it (model
    inputs as PNG)."""
    from lomar_serve.search.stored_input import encode_png

    info = {"name": folder.name, "model": "m", "dim": DIM, "version": "1", "created": 0.0, "building": None}
    vectors = embedder("1")(pixels)
    if engine.kind == "embedded":
        import json
        import sqlite3

        folder.mkdir(parents=True)
        db = sqlite3.connect(folder / "collection.sqlite")
        db.executescript(OLD_SQLITE)
        db.executemany("INSERT INTO info VALUES (?, ?)", [(k, json.dumps(v)) for k, v in info.items()]
                       + [("generation", "0")])
        for n, image in enumerate(pixels):
            db.execute("INSERT INTO items (id, metadata, input, added) VALUES (?, '{}', ?, 0)",
                       (f"old{n}", encode_png(image)))
            db.execute("INSERT INTO vectors VALUES ('1', ?, ?)", (n + 1, vectors[n].tobytes()))
        db.commit()
        db.close()
        return
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(str(engine.pg_url), autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(db)
        db.execute(OLD_POSTGRES)
        db.execute("INSERT INTO lomar_collections VALUES (%(name)s, %(model)s, %(dim)s, %(version)s, %(created)s, "
                   "%(building)s)", info)
        table = f"lomar_vectors_{folder.name}_v1"
        db.execute(f"CREATE TABLE {table} (key bigint PRIMARY KEY, embedding vector({DIM}) NOT NULL)")
        for n, image in enumerate(pixels):
            key = db.execute("INSERT INTO lomar_collection_items (collection, id, metadata, input, added) "
                             "VALUES (%s, %s, '{}', %s, 0) RETURNING key",
                             (folder.name, f"old{n}", encode_png(image))).fetchone()[0]
            db.execute(f"INSERT INTO {table} VALUES (%s, %s)", (key, vectors[n]))


def test_a_collection_of_the_first_release_is_migrated(folder: Path, engine: EngineConfig) -> None:
    """Images stored before names existed are named by their ids; their ids, vectors and searches are kept."""
    pixels = images(8, 3)
    write_old_collection(folder, engine, pixels)
    collection = Collection(folder, engine)
    assert [(row.id, row.name) for row in collection.store.listing(0, 10)] == [
        ("old0", "old0"), ("old1", "old1"), ("old2", "old2")]
    hit = collection.search("1", embedder("1")(pixels[1:2])[0], 1)[0]
    assert (hit.id, hit.name) == ("old1", "old1") and hit.score == pytest.approx(1.0, abs=1e-4)
    add(collection, images(9, 1), ["new0"])
    assert [row.id for row in collection.store.listing(0, 10, names=["new0", "old2"])] == ["old2", "new0"]
    collection.close()
    assert Collection(folder, engine).count() == 4  # opening a migrated collection again changes nothing


def test_png_rows_of_before_and_new_rows_are_reindexed_from_their_exact_pixels(folder: Path,
                                                                                engine: EngineConfig) -> None:
    """A collection whose first images were stored as PNG (before format 1) takes new ones in format 1; a re-index
    embeds every one of them from exactly the pixels first embedded."""
    from lomar_serve.search.stored_input import MAGIC, PNG_SIGNATURE

    old, late = images(10, 3), images(11, 2)
    write_old_collection(folder, engine, old)
    collection = Collection(folder, engine)
    add(collection, late, ["new0", "new1"])
    stored = {item_id: collection.store.item(item_id)[1] for item_id in ("old0", "old1", "old2", "new0", "new1")}
    assert all(stored[f"old{n}"].startswith(PNG_SIGNATURE) for n in range(3))
    assert all(stored[f"new{n}"].startswith(MAGIC) for n in range(2))
    seen = []

    async def embed(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.copy())
        return embedder("2")(batch)

    assert asyncio.run(reindex(collection, "2", embed, batch=2)) == 5
    assert np.array_equal(np.concatenate(seen), np.concatenate([old, late]))  # oldest first, every pixel exact
    for item_id, pixels in zip(["old1", "new1"], [old[1:2], late[1:2]]):
        hit = collection.search("2", embedder("2")(pixels)[0], 1)[0]
        assert hit.id == item_id and hit.score == pytest.approx(1.0, abs=1e-4)


def add_as_a_gateway_does(collection: Collection, pixels: np.ndarray, ids: list[str]) -> None:
    """Embed for the versions this process knows; embed again when the store names others (service.add)."""
    while True:
        try:
            return add(collection, pixels, ids)
        except VersionsChanged:
            continue  # the collection refreshed its versions


def test_two_gateways_share_a_collection_its_adds_and_its_reindex(folder: Path, new_postgres_database) -> None:
    engine = EngineConfig(kind="pgvector", pg_url=new_postgres_database())
    first = new(folder, engine)
    second = Collection(folder, engine)  # another gateway, same database
    with pytest.raises(CollectionExists):
        new(folder, engine)
    pixels = images(6, 40)
    writers = [threading.Thread(target=add_as_a_gateway_does, args=(gateway, pixels[i::4], [f"s{i}-{n}" for n in
                                                                                          range(10)]))
               for i, gateway in enumerate([first, second, first, second])]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert first.count() == 40 == second.indexed()  # concurrent adds through both: none lost or doubled
    assert second.search("1", embedder("1")(pixels[5:6])[0], 1)[0].id == "s1-1"

    owner, other = first.store.reindex_lease(), second.store.reindex_lease()
    assert owner.held and not other.held  # one gateway at a time re-indexes a collection
    late = images(7, 4)
    calls = []

    async def embed_v2(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        if len(calls) == 2:  # the other gateway adds meanwhile: it learns of version 2 and embeds for both
            add_as_a_gateway_does(second, late, [f"late{i}" for i in range(4)])
            assert second.versions() == ["1", "2"]
        return embedder("2")(batch)

    asyncio.run(reindex(first, "2", embed_v2, batch=16))
    owner.release()
    assert first.info.version == "2" and second.info.version == "1"  # the other has not looked yet ...
    assert second.search("1", embedder("1")(pixels[0:1])[0], 1) is None  # ... its search finds the switch
    assert second.info.version == "2" and second.indexed() == 44 == first.count()
    assert second.search("2", embedder("2")(late[3:4])[0], 1)[0].id == "late3"
    again = second.store.reindex_lease()
    assert again.held
    again.release()
    first.drop()
    with pytest.raises(CollectionNotFound):
        second.refresh()
