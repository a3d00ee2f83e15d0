"""Collections of embedded images and similar-image search (/v1/collections). The work is in the gateway's
SearchService (lomar_serve/gateway/collections.py) over lomar_serve.search.

Images come as the inference routes take them (multipart field `image`, repeated, or one raw `image/*` body,
with ids, names, metadata and search options as query parameters) or as JSON with base64 images. An image's name
defaults to the file name of its multipart part, else to its id.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.collections import COLLECTION_NAME_PATTERN, COLLECTION_NAME_RULE, OnDuplicate
from contracts.model_repository import MODEL_NAME_PATTERN
from lomar_serve.common.errors import InvalidParameter
from lomar_serve.common.openapi import error_responses
from lomar_serve.common.paging import MAX_OFFSET, MAX_PAGE
from lomar_serve.gateway.api.deps import GatewayDep, grant_of, requires
from lomar_serve.gateway.api.schemas import MAX_LISTING_FILTERS, Images
from lomar_serve.gateway.api.uploads import (decode_base64_images, parse_json, read_body, read_images,
                                             read_named_images)
from lomar_serve.gateway.collections import (IMAGE_NAME_PATTERN, ITEM_ID_PATTERN, Queries, SearchAnswer, SearchService)
from lomar_serve.search.errors import ImageNotFound

router = APIRouter(prefix="/v1/collections", tags=["collections"],
                   responses=error_responses(400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 502, 503, 504))
READ, WRITE = [requires("collections:read")], [requires("collections:write")]
CollectionName = Annotated[str, Path(pattern=COLLECTION_NAME_PATTERN, description="collection name")]
ImageId = Annotated[str, Path(pattern=ITEM_ID_PATTERN, description="image id")]
JsonScalar = str | int | float | bool | None
SHA256_PATTERN = r"^[0-9a-f]{64}$"
VECTOR_DOC = ("a query vector of the collection's dimension, from its model version (model_version; e.g. "
              "/v1/embed's); scaled to unit norm")
ON_DUPLICATE_DOC = ("an image whose bytes (sha256) the collection holds already: skip (default; the answer names the "
                    "image it matched), replace (that image; it keeps its id unless one is given) or add it again")


class CreateCollection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=COLLECTION_NAME_PATTERN, description=COLLECTION_NAME_RULE)
    model: str | None = Field(None, pattern=MODEL_NAME_PATTERN,
                              description="the classifier that embeds the images; default: the gateway's")
    dim: int | None = Field(None, ge=1, description="expected embedding dimension (409 if the model's differs)")


class CollectionOut(BaseModel):
    name: str
    model: str
    model_version: str = Field(description="the model version that produced the live index's vectors")
    dim: int
    count: int = Field(description="images in the collection")
    indexed: int = Field(description="vectors in the live index")
    engine: str
    created: float
    reindexing_to: str | None = Field(description="the version a running re-index builds, if any")
    reindex_error: str | None = None


class CollectionList(BaseModel):
    collections: list[CollectionOut]


class AddImages(BaseModel):
    """JSON form of an add: base64 images (or data URIs) with optional ids and metadata, one per image."""

    model_config = ConfigDict(extra="forbid")

    images: Images
    ids: list[str] | None = None
    names: list[Annotated[str, Field(pattern=IMAGE_NAME_PATTERN)] | None] | None = Field(
        None, description="one per image (null or absent: its id)")
    metadata: list[dict[str, Any]] | None = Field(None, description="one object per image, or one for every image")
    upsert: bool = False
    on_duplicate: OnDuplicate = Field("skip", description=ON_DUPLICATE_DOC)


class SkippedImage(BaseModel):
    index: int = Field(description="position of the image in the request")
    id: str = Field(description="the stored image with the same bytes")
    name: str


class Added(BaseModel):
    collection: str
    ids: list[str] = Field(description="one per image sent, in order (a skipped one: the id of the image it matched)")
    names: list[str] = Field(description="one per image sent, in order")
    added: int = Field(description="images stored by this request")
    skipped: list[SkippedImage] = Field(description="images not stored: their bytes are in the collection already")
    replaced: list[str] = Field(description="ids of images replaced (upsert, on_duplicate=replace)")
    model_version: str
    count: int = Field(description="images in the collection afterwards")


class SearchOptions(BaseModel):
    """Options of every search (also query parameters; one given in both places is a 422)."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(10, ge=1, description="hits per query at most (capped at the gateway's max_top_k)")
    threshold: float | None = Field(None, ge=-1.0, le=1.0, description="only hits scoring at least this")
    filter: dict[str, JsonScalar] | None = Field(None, description="metadata equality filter")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "image" in data:  # the first release's key, one image as a string
            raise ValueError('"image" is now "images", a list (of one image here), as on /v1/classify and /v1/embed')
        return data


def _one_of(*keys: str) -> dict[str, Any]:
    """`json_schema_extra` saying that exactly one of `keys` is given (so clients and fuzzers know it)."""
    return {"oneOf": [{"required": [key]} for key in keys]}


class SearchRequest(SearchOptions):
    """JSON form of a search: one query image, the id of an indexed image, or a query vector."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_of("images", "id", "vector"))

    images: Annotated[Images, Field(max_length=1)] | None = None
    id: str | None = Field(None, description="search with this indexed image (left out of the answer)")
    vector: list[float] | None = Field(None, min_length=1, description=VECTOR_DOC)


class BatchSearchRequest(SearchOptions):
    """JSON form of a batch search: query images, ids of indexed images, or query vectors; one answer each."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_of("images", "ids", "vectors"))

    images: Images | None = None
    ids: list[str] | None = Field(None, min_length=1, description="search with these indexed images")
    vectors: list[Annotated[list[float], Field(min_length=1)]] | None = Field(None, min_length=1,
                                                                                description=VECTOR_DOC)


class SearchHit(BaseModel):
    id: str
    name: str
    score: float = Field(description="cosine similarity of the embeddings")
    metadata: dict[str, Any]


class SearchResults(BaseModel):
    collection: str
    model: str
    model_version: str = Field(description="the model version of the query's and every hit's vector")
    results: list[SearchHit]


class BatchSearchResults(BaseModel):
    collection: str
    model: str
    model_version: str = Field(description="the model version of every query's and every hit's vector")
    results: list[list[SearchHit]] = Field(description="one list of hits per query, in order")


class ImageInfo(BaseModel):
    id: str
    name: str
    sha256: str | None = Field(description="of the bytes it was added from (null: added before hashes were kept)")
    metadata: dict[str, Any]


class ImageList(BaseModel):
    collection: str
    images: list[ImageInfo]


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body: the JSON model, or images as multipart / a raw body."""
    upload = {"type": "object", "properties": {"image": {"type": "array",
                                                         "items": {"type": "string", "format": "binary"}}}}
    return {"requestBody": {"content": {"application/json": {"schema": model.model_json_schema()},
                                        "multipart/form-data": {"schema": upload},
                                        "image/*": {"schema": {"type": "string", "format": "binary"}}}}}


def get_search(request: Request) -> SearchService:
    return request.app.state.search


def _is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("application/json")


async def _json_body(request: Request, gateway: GatewayDep, model: type[BaseModel]) -> Any:
    """A JSON body as `model`, under the same byte limit as image uploads."""
    return parse_json(model, await read_body(request, gateway.settings.max_upload_bytes))


def _json_query(values: list[str], name: str) -> list[Any]:
    """Query values holding JSON (`metadata={"k": 1}`, or one JSON array of objects)."""
    parsed = []
    for value in values:
        try:
            item = json.loads(value)
        except ValueError as error:
            raise InvalidParameter(f"{name} must be JSON: {error}") from None
        parsed += item if isinstance(item, list) else [item]
    return parsed


@router.post("", dependencies=WRITE, status_code=201, response_model=CollectionOut, summary="Create a collection")
async def create_collection(body: CreateCollection, request: Request) -> dict[str, Any]:
    search, grant = get_search(request), grant_of(request)
    collection = await search.create(body.name, body.model, body.dim, owner=grant.id if grant else None,
                                     max_owned=grant.max_collections if grant else None)
    return await search.describe(collection)


@router.get("", dependencies=READ, response_model=CollectionList, summary="Every collection")
async def list_collections(request: Request) -> dict[str, Any]:
    search = get_search(request)
    return {"collections": [await search.describe(collection) for collection in await search.collections()]}


@router.get("/{name}", dependencies=READ, response_model=CollectionOut,
            summary="A collection: model, version, counts, re-index")
async def show_collection(name: CollectionName, request: Request) -> dict[str, Any]:
    search = get_search(request)
    return await search.describe(await search.collection(name))


@router.delete("/{name}", dependencies=WRITE, summary="Delete a collection and its index")
async def delete_collection(name: CollectionName, request: Request) -> dict[str, str]:
    await get_search(request).delete(name)
    return {"deleted": name}


@router.post("/{name}/images", dependencies=WRITE, status_code=201, response_model=Added,
             openapi_extra=_body_doc(AddImages),
             summary="Embed and add images (multipart, raw or JSON base64)")
async def add_images(name: CollectionName, request: Request, gateway: GatewayDep,
                     id: Annotated[list[str] | None, Query(description="one id per image (multipart/raw)")] = None,
                     names: Annotated[list[str] | None, Query(
                         alias="name", description="one name per image (multipart/raw; default: the part's file "
                                                   "name, else the id)")] = None,
                     metadata: Annotated[list[str] | None, Query(
                         description="one JSON object per image, or one for every image")] = None,
                     upsert: Annotated[bool, Query(description="replace images whose id exists")] = False,
                     on_duplicate: Annotated[OnDuplicate, Query(description=ON_DUPLICATE_DOC)] = "skip",
                     ) -> dict[str, Any]:
    """Returns the images' ids (generated when not given) and names. A duplicate id is a 409 unless `upsert`;
    bytes the collection holds already are skipped unless `on_duplicate` says otherwise."""
    search = get_search(request)
    collection = await search.collection(name)  # 404 before reading the body
    meta = _json_query(metadata or [], "metadata") or None
    if meta is not None and not all(isinstance(m, dict) for m in meta):
        raise InvalidParameter("metadata must be JSON objects, one per image")
    query = {"ids": id, "names": names, "metadata": meta, "upsert": upsert, "on_duplicate": on_duplicate}
    if _is_json(request):
        values = _merged(request, await _json_body(request, gateway, AddImages), query)
        blobs = decode_base64_images(values["images"], gateway.settings.max_images)
    else:
        files = await read_named_images(request, gateway.settings)
        blobs, values = [blob for blob, _ in files], query
        values["names"] = names or [file_name for _, file_name in files]
    inserted, version = await search.add(collection, blobs, ids=values["ids"], names=values["names"],
                                         metadata=values["metadata"], upsert=values["upsert"],
                                         on_duplicate=values["on_duplicate"])
    return {"collection": name, "ids": inserted.ids, "names": inserted.names, "added": len(inserted.keys),
            "skipped": [{"index": skip.position, "id": skip.id, "name": skip.name} for skip in inserted.skipped],
            "replaced": inserted.replaced_ids, "model_version": version,
            "count": await asyncio.to_thread(collection.count)}


@router.get("/{name}/images", dependencies=READ, response_model=ImageList, summary="The images, oldest first")
async def list_images(name: CollectionName, request: Request,
                      offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="images to skip")] = 0,
                      limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="images to list")] = 100,
                      names: Annotated[list[str] | None, Query(
                          alias="name", max_length=MAX_LISTING_FILTERS,
                          description="only images of these exact names")] = None,
                      hashes: Annotated[list[Annotated[str, Field(pattern=SHA256_PATTERN)]] | None, Query(
                          alias="sha256", max_length=MAX_LISTING_FILTERS,
                          description="only images of these contents (sha256 of their bytes)")] = None,
                      ) -> dict[str, Any]:
    collection = await get_search(request).collection(name)
    rows = await asyncio.to_thread(collection.store.listing, offset, limit, names=names, hashes=hashes)
    return {"collection": name, "images": [asdict(row) for row in rows]}


@router.get("/{name}/images/{image_id}", dependencies=READ, response_model=ImageInfo,
            summary="An image's name and metadata")
async def show_image(name: CollectionName, image_id: ImageId, request: Request) -> dict[str, Any]:
    collection = await get_search(request).collection(name)
    found = await asyncio.to_thread(collection.store.item, image_id)
    if found is None:
        raise ImageNotFound(f"no image {image_id!r} in collection {name!r}")
    return asdict(found[0])


@router.get("/{name}/images/{image_id}/thumbnail", dependencies=READ, response_class=Response,
            summary="The stored model input, PNG",
            responses={200: {"content": {"image/png": {}}}})
async def image_thumbnail(name: CollectionName, image_id: ImageId, request: Request) -> Response:
    search = get_search(request)
    png = await search.thumbnail(await search.collection(name), image_id)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


@router.delete("/{name}/images/{image_id}", dependencies=WRITE, summary="Remove an image")
async def delete_image(name: CollectionName, image_id: ImageId, request: Request) -> dict[str, str]:
    await get_search(request).remove(name, image_id)
    return {"deleted": image_id}


SearchQuery = Annotated[int, Query(ge=1, description="hits per query at most")]
ThresholdQuery = Annotated[float | None, Query(ge=-1.0, le=1.0, description="only hits scoring at least this")]
FilterQuery = Annotated[str | None, Query(description='metadata equality filter, JSON, e.g. {"kind": "cat"}')]


@router.post("/{name}/search", dependencies=READ, response_model=SearchResults, openapi_extra=_body_doc(SearchRequest),
             summary="The nearest images to a query image, an indexed image's id or a vector")
async def search_collection(name: CollectionName, request: Request, gateway: GatewayDep, top_k: SearchQuery = 10,
                            threshold: ThresholdQuery = None, filter: FilterQuery = None,
                            id: Annotated[str | None, Query(description="search with this indexed image")] = None,
                            ) -> dict[str, Any]:
    """A near-duplicate search is a search with a `threshold` (e.g. 0.9). Several queries: .../search/batch."""
    search = get_search(request)
    collection = await search.collection(name)  # 404 before reading the body
    query = {"top_k": top_k, "threshold": threshold, "filter": filter, "ids": [id] if id is not None else None}
    queries, options = await _search_request(request, gateway, SearchRequest, query)
    if len(queries) != 1:
        raise InvalidParameter(f"search takes one query, got {len(queries)}: send several to .../search/batch")
    answer = await search.search(collection, queries, **options)
    return {**_answered(answer), "results": [asdict(hit) for hit in answer.results[0]]}


@router.post("/{name}/search/batch", dependencies=READ, response_model=BatchSearchResults,
             openapi_extra=_body_doc(BatchSearchRequest),
             summary="The nearest images to each of several queries (images, indexed images' ids or vectors)")
async def search_collection_batch(name: CollectionName, request: Request, gateway: GatewayDep,
                                  top_k: SearchQuery = 10, threshold: ThresholdQuery = None,
                                  filter: FilterQuery = None,
                                  id: Annotated[list[str] | None, Query(description="indexed images")] = None,
                                  ) -> dict[str, Any]:
    """One list of hits per query, in order, all from one model version; at most the gateway's max_images
    queries (413 past it)."""
    search = get_search(request)
    collection = await search.collection(name)  # 404 before reading the body
    query = {"top_k": top_k, "threshold": threshold, "filter": filter, "ids": id}
    queries, options = await _search_request(request, gateway, BatchSearchRequest, query)
    answer = await search.search(collection, queries, **options)
    return {**_answered(answer), "results": [[asdict(hit) for hit in hits] for hits in answer.results]}


async def _search_request(request: Request, gateway: GatewayDep, model: type[SearchOptions],
                          query: dict[str, Any]) -> tuple[Queries, dict[str, Any]]:
    """The queries and options of a search: from the JSON body (`model`) and the query string (`query`: field ->
    parsed parameter), or images as a raw or multipart body with the options in the query string."""
    if query["filter"] is not None:
        query["filter"] = _json_query([query["filter"]], "filter")[0]
    if _is_json(request):
        body = await _json_body(request, gateway, model)
        values = _merged(request, body, query)
        ids = values.get("ids") or ([values["id"]] if values.get("id") is not None else None)
        vectors = values.get("vectors") or ([values["vector"]] if values.get("vector") is not None else None)
        images = decode_base64_images(values["images"], gateway.settings.max_images) if values["images"] else None
        queries = Queries(images=images, ids=ids, vectors=None if vectors is None else _matrix(vectors))
    else:
        values, ids = query, query["ids"]
        if ids and int(request.headers.get("content-length") or 0):
            raise InvalidParameter("give either ?id= or query images in the body, not both")
        queries = Queries(ids=ids) if ids else Queries(images=await read_images(request, gateway.settings))
    where = values["filter"]
    if where is not None and not isinstance(where, dict):
        raise InvalidParameter("filter must be a JSON object")
    return queries, {"top_k": values["top_k"], "threshold": values["threshold"], "where": where}


def _merged(request: Request, body: BaseModel, query: dict[str, Any]) -> dict[str, Any]:
    """The body's fields, and those of `query` (field -> parsed parameter) that the query string gives; a field
    given in both places is a 422, never silently one of them."""
    values = {field: getattr(body, field) for field in type(body).model_fields}
    aliases = {"ids": "id", "names": "name"}  # body field -> its query parameter, where the names differ
    for field, value in query.items():
        parameter = aliases.get(field, field)
        if parameter not in request.query_params:
            continue
        if field in body.model_fields_set or (field == "ids" and "id" in body.model_fields_set):
            raise InvalidParameter(f"{parameter!r} is given both in the query string and in the JSON body: give it "
                                   "once")
        values[field] = value
    return values


def _matrix(vectors: list[list[float]]) -> np.ndarray:
    """Query vectors as a (Q, D) array (InvalidParameter when their lengths differ)."""
    if len({len(vector) for vector in vectors}) != 1:
        raise InvalidParameter("the query vectors have different lengths")
    return np.asarray(vectors, dtype=np.float64)


def _answered(answer: SearchAnswer) -> dict[str, Any]:
    return {"collection": answer.collection, "model": answer.model, "model_version": answer.model_version}
