"""Images out of a request: multipart form field `image` (repeat it for a batch) or one raw `image/*` body.

The body is read with a byte limit before anything is parsed, so an oversized upload costs at most the limit.
"""
from __future__ import annotations

from collections.abc import AsyncGenerator

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from lomar_serve.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from lomar_serve.settings import Settings

FIELD = "image"
RAW_TYPES = ("image/", "application/octet-stream")


async def read_images(request: Request, settings: Settings) -> list[bytes]:
    """The uploaded images' bytes, in order.

    Raises:
        PayloadTooLarge (body over max_upload_bytes, more than max_images files), UnsupportedMediaType (a body
        that is neither multipart nor an image type), BadRequest (no image at all, malformed multipart).
    """
    content_type = request.headers.get("content-type", "").lower()
    body = await _read_body(request, settings.max_upload_bytes)
    if content_type.startswith("multipart/form-data"):
        blobs = await _parse_multipart(request, body, settings.max_images)
        if not blobs:
            raise BadRequest(f"no image in the form: send the image(s) in the multipart field '{FIELD}'")
        return blobs
    if not content_type or content_type.startswith(RAW_TYPES):
        if not body:
            raise BadRequest("empty request body: send an image as the body (Content-Type: image/...) or in the "
                             f"multipart field '{FIELD}'")
        if not content_type:
            raise UnsupportedMediaType("missing Content-Type: use image/... or multipart/form-data")
        return [body]
    raise UnsupportedMediaType(f"Content-Type {content_type!r} is not accepted: send image/... or "
                               "multipart/form-data")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {int(declared)} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse_multipart(request: Request, body: bytes, max_images: int) -> list[bytes]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(request.headers, stream(), max_files=max_images, max_fields=100)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        if "too many files" in error.message.lower():
            raise PayloadTooLarge(f"too many images in one request; the limit is {max_images}") from error
        raise BadRequest(f"malformed multipart body: {error.message}") from error
    try:
        blobs = []
        for value in form.getlist(FIELD):
            if not isinstance(value, UploadFile):
                raise BadRequest(f"form field '{FIELD}' must be a file upload, not a text value")
            blobs.append(await value.read())
        return blobs
    finally:
        await form.close()
