"""Errors of the search subsystem; each is a GatewayError, so routes turn it into the JSON error format."""
from __future__ import annotations

from lomar_serve.errors import GatewayError, TritonUnavailable


class CollectionNotFound(GatewayError):
    status, code = 404, "collection_not_found"


class ImageNotFound(GatewayError):
    status, code = 404, "image_not_found"


class CollectionExists(GatewayError):
    status, code = 409, "collection_exists"


class DimensionMismatch(GatewayError):
    """The collection's vectors and the model's embedding have different dimensions."""

    status, code = 409, "dimension_mismatch"


class DuplicateId(GatewayError):
    """An image id already in the collection (send `upsert` to replace it)."""

    status, code = 409, "duplicate_id"


class VersionUnavailable(TritonUnavailable):
    """The model version that produced the collection's live index is not loaded (a re-index is finishing)."""

    code = "index_version_unavailable"


class EngineError(GatewayError):
    """The vector engine failed (e.g. the PostgreSQL server is down): retry later."""

    status, code = 503, "search_engine_unavailable"


class StorageError(GatewayError):
    """The collection's files or SQLite database failed (disk full, read-only folder): retry later."""

    status, code = 503, "search_storage_unavailable"
