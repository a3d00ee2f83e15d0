"""Which implementation backs a collection, by engine: the vector index (usearch files or a pgvector table) and the
collection store (a SQLite file or PostgreSQL rows). The interfaces (engine.py, store.py) know none of them.

    index = open_index(EngineConfig(kind="embedded"), folder, "photos", version="2", dim=192)
    store = open_collection_store(EngineConfig(), folder / "photos")
"""
from __future__ import annotations

from pathlib import Path

from lomar_serve.search.engine import EngineConfig, VectorIndex
from lomar_serve.search.store import STORE_FILE_NAME, CollectionStore


def open_index(config: EngineConfig, folder: Path, collection: str, version: str, dim: int) -> VectorIndex:
    """The index of `collection`'s vectors of model `version` (created empty if new)."""
    if config.kind == "embedded":
        from lomar_serve.search.embedded import UsearchIndex

        return UsearchIndex(folder / f"vectors-v{version}.usearch", dim, config)
    from lomar_serve.search.pgvector import PgvectorIndex, vector_table

    return PgvectorIndex(str(config.pg_url), vector_table(collection, version), dim, config)


def open_collection_store(engine: EngineConfig, folder: Path) -> CollectionStore:
    """The store of the collection named `folder.name`: a SQLite file in `folder` (embedded engine), or rows in
    the PostgreSQL database of the pgvector engine."""
    if engine.kind == "pgvector":
        from lomar_serve.search.pg_store import PostgresCollectionStore

        return PostgresCollectionStore(str(engine.pg_url), folder.name, engine.pool_size)
    from lomar_serve.search.sqlite_store import SqliteCollectionStore

    return SqliteCollectionStore(folder / STORE_FILE_NAME)


def release_connections(engine: EngineConfig) -> None:
    """Close what this process keeps open for `engine` across collections (pgvector: its connection pool)."""
    if engine.kind == "pgvector":
        from lomar_serve.search.postgres import close_pool

        close_pool(str(engine.pg_url))
