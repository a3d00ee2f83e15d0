"""The real `openai` package against the real gateway: POST /v1/embeddings gives /v1/embed's vectors."""
from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.lomar_serve.photos import photo_bytes

pytestmark = pytest.mark.e2e


def test_openai_embeddings_create_equals_embed(gateway, client):
    import openai

    blobs = [photo_bytes("chelsea"), photo_bytes("rocket", "PNG")]
    images = [f"data:image/jpeg;base64,{base64.b64encode(blobs[0]).decode()}", base64.b64encode(blobs[1]).decode()]
    expected = np.array([item["embedding"] for item in client.post(
        "/v1/embed", files=[("image", (f"{i}", blob, "application/octet-stream")) for i, blob in enumerate(blobs)]
    ).json()["results"]])
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="not-needed", max_retries=0) as openai_client:
        packed = openai_client.embeddings.create(model="lomar_classifier", input=images)  # base64 by default
        floats = openai_client.embeddings.create(model="lomar_classifier", input=images, encoding_format="float",
                                                 dimensions=expected.shape[1])
        single = openai_client.embeddings.create(model="lomar_classifier", input=images[0])
        with pytest.raises(openai.BadRequestError, match="dimensions"):
            openai_client.embeddings.create(model="lomar_classifier", input=images,
                                            dimensions=expected.shape[1] + 1)
        with pytest.raises(openai.NotFoundError):
            openai_client.embeddings.create(model="no_such_model", input=images)
    for response in (packed, floats):
        assert response.object == "list" and response.model == "lomar_classifier"
        assert [item.index for item in response.data] == [0, 1]
        np.testing.assert_allclose(np.array([item.embedding for item in response.data]), expected, atol=1e-6)
    np.testing.assert_allclose(single.data[0].embedding, expected[0], atol=1e-6)
