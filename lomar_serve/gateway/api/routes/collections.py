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

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from contracts.model_repository import MODEL_NAME_PATTERN
from lomar_serve.common.errors import InvalidParameter
from lomar_serve.common.openapi import error_responses
from lomar_serve.common.paging import MAX_OFFSET, MAX_PAGE
from lomar_serve.gateway.api.deps import GatewayDep
from lomar_serve.gateway.api.uploads import (decode_base64_images, parse_json, read_body, read_images,
                                             read_named_images)
from lomar_serve.gateway.collections import (COLLECTION_NAME_PATTERN, COLLECTION_NAME_RULE, IMAGE_NAME_PATTERN,
                                             ITEM_ID_PATTERN, SearchAnswer, SearchService)
from lomar_serve.search.errors import ImageNotFound
from lomar_serve.search.store import OnDuplicate

router = APIRouter(prefix="/v1/collections", tags=["collections"],
                   responses=error_responses(400, 404, 408, 409, 413, 415, 422, 502, 503, 504))
CollectionName = Annotated[str, Path(pattern=COLLECTION_NAME_PATTERN, description="collection name")]
ImageId = Annotated[str, Path(pattern=ITEM_ID_PATTERN, description="image id")]
JsonScalar = str | int | float | bool | None
SHA256_PATTERN = r"^[0-9a-f]{64}$"
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

    images: list[str] = Field(min_length=1)
    ids: list[str] | None = None
    names: list[Annotated[str, Field(pattern=IMAGE_NAME_PATTERN)] | None] | None = Field(
        None, description="one per image (null or absent: its id)")
    metadata: list[dict[str, Any]] | None = None
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


class SearchRequest(BaseModel):
    """JSON form of a search: a base64 query image or the id of an indexed image."""

    # exactly one of the two: said in the schema too, so clients (and fuzzers) know it
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["image"], "properties": {"image": {"type": "string"}}},
        {"required": ["id"], "properties": {"id": {"type": "string"}}}]})

    image: str | None = None
    id: str | None = None
    top_k: int = Field(10, ge=1)
    threshold: float | None = Field(None, ge=-1.0, le=1.0, description="only hits scoring at least this")
    filter: dict[str, JsonScalar] | None = Field(None, description="metadata equality filter")


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


@router.post("", status_code=201, response_model=CollectionOut, summary="Create a collection")
async def create_collection(body: CreateCollection, request: Request) -> dict[str, Any]:
    search = get_search(request)
    return await search.describe(await search.create(body.name, body.model, body.dim))


@router.get("", response_model=CollectionList, summary="Every collection")
async def list_collections(request: Request) -> dict[str, Any]:
    search = get_search(request)
    return {"collections": [await search.describe(collection) for collection in await search.collections()]}


@router.get("/{name}", response_model=CollectionOut, summary="A collection: model, version, counts, re-index")
async def show_collection(name: CollectionName, request: Request) -> dict[str, Any]:
    search = get_search(request)
    return await search.describe(await search.collection(name))


@router.delete("/{name}", summary="Delete a collection and its index")
async def delete_collection(name: CollectionName, request: Request) -> dict[str, str]:
    await get_search(request).delete(name)
    return {"deleted": name}


@router.post("/{name}/images", status_code=201, response_model=Added, openapi_extra=_body_doc(AddImages),
             summary="Embed and add images (multipart, raw or JSON base64)")
async def add_images(name: CollectionName, request: Request, gateway: GatewayDep,
                     id: Annotated[list[str] | None, Query(description="one id per image (multipart/raw)")] = None,
                     names: Annotated[list[str] | None, Query(
                         alias="name", description="one name per image (multipart/raw; default: the part's file "
                                                   "name, else the id)")] = None,
                     metadata: Annotated[list[str] | None, Query(description="one JSON object per image")] = None,
                     upsert: Annotated[bool, Query(description="replace images whose id exists")] = False,
                     on_duplicate: Annotated[OnDuplicate, Query(description=ON_DUPLICATE_DOC)] = "skip",
                     ) -> dict[str, Any]:
    """Returns the images' ids (generated when not given) and names. A duplicate id is a 409 unless `upsert`;
    bytes the collection holds already are skipped unless `on_duplicate` says otherwise."""
    search = get_search(request)
    collection = await search.collection(name)  # 404 before reading the body
    if _is_json(request):
        body = await _json_body(request, gateway, AddImages)
        blobs = decode_base64_images(body.images, gateway.settings.max_images)
        ids, image_names, meta, upsert = body.ids, list(body.names or []), body.metadata, body.upsert
        on_duplicate = body.on_duplicate
    else:
        files = await read_named_images(request, gateway.settings)
        blobs = [blob for blob, _ in files]
        image_names = list(names) if names else [file_name for _, file_name in files]
        ids, meta = id, _json_query(metadata or [], "metadata") or None
        if meta is not None and not all(isinstance(m, dict) for m in meta):
            raise InvalidParameter("metadata must be JSON objects, one per image")
    inserted, version = await search.add(collection, blobs, ids=ids, names=image_names, metadata=meta,
                                         upsert=upsert, on_duplicate=on_duplicate)
    return {"collection": name, "ids": inserted.ids, "names": inserted.names, "added": len(inserted.keys),
            "skipped": [{"index": skip.position, "id": skip.id, "name": skip.name} for skip in inserted.skipped],
            "replaced": inserted.replaced_ids, "model_version": version,
            "count": await asyncio.to_thread(collection.count)}


@router.get("/{name}/images", response_model=ImageList, summary="The images, oldest first")
async def list_images(name: CollectionName, request: Request,
                      offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="images to skip")] = 0,
                      limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="images to list")] = 100,
                      names: Annotated[list[str] | None, Query(
                          alias="name", max_length=MAX_PAGE, description="only images of these exact names")] = None,
                      hashes: Annotated[list[Annotated[str, Field(pattern=SHA256_PATTERN)]] | None, Query(
                          alias="sha256", max_length=MAX_PAGE, description="only images of these contents")] = None,
                      ) -> dict[str, Any]:
    collection = await get_search(request).collection(name)
    rows = await asyncio.to_thread(collection.store.listing, offset, limit, names=names, hashes=hashes)
    return {"collection": name, "images": [asdict(row) for row in rows]}


@router.get("/{name}/images/{image_id}", response_model=ImageInfo, summary="An image's name and metadata")
async def show_image(name: CollectionName, image_id: ImageId, request: Request) -> dict[str, Any]:
    collection = await get_search(request).collection(name)
    found = await asyncio.to_thread(collection.store.item, image_id)
    if found is None:
        raise ImageNotFound(f"no image {image_id!r} in collection {name!r}")
    return asdict(found[0])


@router.get("/{name}/images/{image_id}/thumbnail", response_class=Response, summary="The stored model input, PNG",
            responses={200: {"content": {"image/png": {}}}})
async def image_thumbnail(name: CollectionName, image_id: ImageId, request: Request) -> Response:
    collection = await get_search(request).collection(name)
    found = await asyncio.to_thread(collection.store.item, image_id)
    if found is None:
        raise ImageNotFound(f"no image {image_id!r} in collection {name!r}")
    return Response(found[1], media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


@router.delete("/{name}/images/{image_id}", summary="Remove an image")
async def delete_image(name: CollectionName, image_id: ImageId, request: Request) -> dict[str, str]:
    await get_search(request).remove(name, image_id)
    return {"deleted": image_id}


@router.post("/{name}/search", response_model=SearchResults, openapi_extra=_body_doc(SearchRequest),
             summary="The nearest images to a query image (or to an indexed image's id)")
async def search_collection(name: CollectionName, request: Request, gateway: GatewayDep,
                            top_k: Annotated[int, Query(ge=1)] = 10,
                            threshold: Annotated[float | None, Query(ge=-1.0, le=1.0)] = None,
                            filter: Annotated[str | None, Query(description='JSON, e.g. {"kind": "cat"}')] = None,
                            id: Annotated[str | None, Query(description="search with this indexed image")] = None,
                            ) -> dict[str, Any]:
    """A near-duplicate search is a search with a `threshold` (e.g. 0.9)."""
    search = get_search(request)
    collection = await search.collection(name)  # 404 before reading the body
    image = None
    if _is_json(request):
        body = await _json_body(request, gateway, SearchRequest)
        image = decode_base64_images([body.image], 1)[0] if body.image is not None else None
        id, top_k, threshold, where = body.id, body.top_k, body.threshold, body.filter
    else:
        where = _json_query([filter], "filter")[0] if filter else None
        if where is not None and not isinstance(where, dict):
            raise InvalidParameter("filter must be a JSON object")
        if id is None:
            blobs = await read_images(request, gateway.settings)
            if len(blobs) != 1:
                raise InvalidParameter(f"search takes one query image, got {len(blobs)}")
            image = blobs[0]
    answer = await search.search(collection, image=image, item_id=id, top_k=top_k, threshold=threshold,
                                 where=where)
    return _results(answer)


def _results(answer: SearchAnswer) -> dict[str, Any]:
    return {"collection": answer.collection, "model": answer.model, "model_version": answer.model_version,
            "results": [asdict(hit) for hit in answer.hits]}
