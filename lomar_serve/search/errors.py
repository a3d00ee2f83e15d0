"""Errors of the search subsystem; each is a ServiceError, so routes turn it into the JSON error format."""
from __future__ import annotations

from lomar_serve.common.errors import ServiceError, ServiceUnavailable


class CollectionNotFound(ServiceError):
    status, code = 404, "collection_not_found"


class ImageNotFound(ServiceError):
    status, code = 404, "image_not_found"


class CollectionExists(ServiceError):
    status, code = 409, "collection_exists"


class DimensionMismatch(ServiceError):
    """The collection's vectors and the model's embedding have different dimensions."""

    status, code = 409, "dimension_mismatch"


class QuotaExceeded(ServiceError):
    """An API key's quota (its max_collections) would be passed."""

    status, code = 403, "quota_exceeded"


class LimitReached(ServiceError):
    """A bound on collections or on a collection's images (the gateway's search_max_* settings) would be passed."""

    status, code = 409, "limit_reached"


class DuplicateId(ServiceError):
    """An image id already in the collection (send `upsert` to replace it)."""

    status, code = 409, "duplicate_id"


class VersionUnavailable(ServiceUnavailable):
    """The model version that produced the collection's live index is not loaded (a re-index is finishing)."""

    code = "index_version_unavailable"


class EngineError(ServiceError):
    """The vector engine failed (e.g. the PostgreSQL server is down): retry later."""

    status, code = 503, "search_engine_unavailable"


class StorageError(ServiceError):
    """The collection's files or SQLite database failed (disk full, read-only folder): retry later."""

    status, code = 503, "search_storage_unavailable"


class CollectionsLocked(ServiceError):
    """The folder of embedded collections is held by another gateway (folder_lock.py)."""

    status, code = 503, "collections_locked"


class CollectionsDisabled(ServiceError):
    """This gateway serves no collections (LOMAR_SEARCH_ENGINE=none)."""

    status, code = 404, "collections_disabled"
