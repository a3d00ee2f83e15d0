"""Images out of a request: multipart form field `image` (repeat it for a batch), one raw `image/*` body, or JSON
`{"images": ["data:image/jpeg;base64,...", "<plain base64>"]}` (never URLs: the server fetches nothing).

The body is read with a byte limit before anything is parsed, so an oversized upload costs at most the limit.
"""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncGenerator, Sequence
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from lomar_serve.common.errors import BadRequest, InvalidParameter, PayloadTooLarge, UnsupportedMediaType
from lomar_serve.gateway.api.schemas import ImagesRequest
from lomar_serve.gateway.server_timing import READ, timed
from lomar_serve.gateway.settings import Settings

FIELD = "image"
RAW_TYPES = ("image/", "application/octet-stream")
JSON_TYPE = "application/json"
# data:[<media type>][;param=value]*;base64,<data>  (RFC 2397); only base64 data URIs carry binary images.
DATA_URI = re.compile(r"^data:[^,;]*(?:;[^,;]*)*?;base64,", re.IGNORECASE)
Body = TypeVar("Body", bound=BaseModel)


async def read_images(request: Request, settings: Settings) -> list[bytes]:
    """The uploaded images' bytes, in order (see read_named_images)."""
    return [blob for blob, _ in await read_named_images(request, settings)]


async def read_named_images(request: Request, settings: Settings) -> list[tuple[bytes, str | None]]:
    """The uploaded images' bytes with the file names the client sent (multipart; None otherwise), in order.

    Raises:
        PayloadTooLarge (body over max_upload_bytes, more than max_images files), UnsupportedMediaType (a body
        that is neither multipart, JSON nor an image type), BadRequest (no image at all, malformed multipart,
        JSON or base64), InvalidParameter (JSON of the wrong shape).
    """
    with timed(READ):
        return await _read_images(request, settings)


async def _read_images(request: Request, settings: Settings) -> list[bytes]:
    content_type = request.headers.get("content-type", "").lower()
    body = await read_body(request, settings.max_upload_bytes)
    if content_type.startswith("multipart/form-data"):
        files = await _parse_multipart(request, body, settings.max_images)
        if not files:
            raise BadRequest(f"no image in the form: send the image(s) in the multipart field '{FIELD}'")
        return files
    if content_type.startswith(JSON_TYPE):
        return [(blob, None) for blob in decode_base64_images(parse_json(ImagesRequest, body).images,
                                                              settings.max_images)]
    if not content_type or content_type.startswith(RAW_TYPES):
        if not body:
            raise BadRequest("empty request body: send an image as the body (Content-Type: image/...), in the "
                             f"multipart field '{FIELD}', or as JSON {{\"images\": [base64, ...]}}")
        if not content_type:
            raise UnsupportedMediaType("missing Content-Type: use image/..., multipart/form-data or "
                                       "application/json")
        return [(body, None)]
    raise UnsupportedMediaType(f"Content-Type {content_type!r} is not accepted: send image/..., "
                               "multipart/form-data or application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; PayloadTooLarge as soon as it exceeds `limit` bytes (or declares it will)."""
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


def parse_json(model: type[Body], body: bytes) -> Body:
    """`body` as `model`: BadRequest when it is not JSON, InvalidParameter when a field is wrong."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        if any(problem["type"] == "json_invalid" for problem in error.errors()):
            raise BadRequest(f"the body is not valid JSON: {error.errors()[0]['msg']}") from None
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors())
        raise InvalidParameter(problems) from None


def decode_base64_images(items: Sequence[str], max_images: int) -> list[bytes]:
    """Data URIs or plain base64 strings -> the images' bytes (whitespace inside the base64 is ignored)."""
    if len(items) > max_images:
        raise PayloadTooLarge(f"{len(items)} images in one request; the limit is {max_images}")
    blobs = []
    for index, item in enumerate(items):
        if item.startswith(("http://", "https://")):
            raise BadRequest(f"image {index}: URLs are not fetched; send the image's bytes as base64")
        match = DATA_URI.match(item)
        if match is None and item[:5].lower() == "data:":
            raise BadRequest(f"image {index}: only base64 data URIs are accepted (data:image/...;base64,...)")
        encoded = item[match.end():] if match else item
        try:
            blobs.append(base64.b64decode("".join(encoded.split()), validate=True))
        except (binascii.Error, ValueError) as error:
            raise BadRequest(f"image {index}: not valid base64 ({error})") from None
    return blobs


def _file_name(sent: str | None) -> str | None:
    """A part's file name as the client meant it: browsers and httpx write a '"' in it as %22 (the HTML form
    encoding; CR and LF likewise, which no image name may hold)."""
    return sent.replace("%22", '"') if sent else None


async def _parse_multipart(request: Request, body: bytes, max_images: int) -> list[tuple[bytes, str | None]]:
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
        files = []
        for value in form.getlist(FIELD):
            if not isinstance(value, UploadFile):
                raise BadRequest(f"form field '{FIELD}' must be a file upload, not a text value")
            files.append((await value.read(), _file_name(value.filename)))
        return files
    finally:
        await form.close()
