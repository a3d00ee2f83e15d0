"""Images in a JSON body: base64 strings or data URIs (`data:image/png;base64,...`)."""
from __future__ import annotations

import base64
import binascii

from lomar_serve.errors import BadRequest


def decode_base64_image(text: str, index: int) -> bytes:
    """The bytes of image `index` of a JSON body. Raises BadRequest for text that is not base64."""
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise BadRequest(f"images[{index}]: a data URI must be base64-encoded (data:image/...;base64,...)")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequest(f"images[{index}] is not valid base64: {error}") from error
