"""The Server-Timing header of inference responses (gateway/server_timing.py), on a FAKE backend that takes a
known time in Triton's place."""
from __future__ import annotations

import asyncio

import pytest

from lomar_serve.gateway import server_timing
from tests.lomar_serve.fake_backend import FakeBackend
from tests.lomar_serve.gateway.api.conftest import gateway_client
from tests.lomar_serve.photos import photo_bytes

INFER_S = 0.2  # long beside scheduling jitter on a busy machine


class SlowBackend(FakeBackend):
    """The fake backend, INFER_S slower per inference call."""

    async def infer(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        await asyncio.sleep(INFER_S)
        return await super().infer(*args, **kwargs)


@pytest.fixture()
def timed_client(tmp_path):
    with gateway_client(tmp_path / "timed", SlowBackend(), server_timing=True) as client:
        yield client


def test_each_stage_of_an_inference_request_is_timed(timed_client):
    response = timed_client.post("/v1/classify", files=[("image", ("a.jpg", photo_bytes("chelsea"), "image/jpeg"))])
    assert response.status_code == 200, response.text
    stages = server_timing.parse(response.headers["server-timing"])
    assert list(stages) == ["read", "decode", "infer", "total"]
    assert INFER_S * 1000 <= stages["infer"] < 30 * INFER_S * 1000
    assert stages["read"] > 0 and stages["decode"] > 0  # a real multipart parse and a real JPEG decode
    assert stages["read"] + stages["decode"] + stages["infer"] <= stages["total"]


def test_a_split_batch_counts_its_triton_calls_once_each_in_parallel(timed_client):
    blobs = [photo_bytes(name) for name in ("astronaut", "coffee", "chelsea", "rocket", "camera")]  # 4 + 1
    response = timed_client.post("/v1/embed", files=[("image", (f"{i}.jpg", b, "image/jpeg"))
                                                     for i, b in enumerate(blobs)])
    stages = server_timing.parse(response.headers["server-timing"])
    assert INFER_S * 1000 <= stages["infer"] < 1.5 * INFER_S * 1000  # the two calls overlap (in turn: 2x)


def test_a_refused_upload_still_says_where_its_time_went(timed_client):
    response = timed_client.post("/v1/classify", content=b"not an image", headers={"content-type": "image/png"})
    assert response.status_code == 415
    stages = server_timing.parse(response.headers["server-timing"])
    assert "infer" not in stages and stages["total"] >= stages["read"] > 0


def test_off_by_default_and_never_on_other_routes(client, timed_client):
    upload = [("image", ("a.jpg", photo_bytes("coffee"), "image/jpeg"))]
    assert "server-timing" not in client.post("/v1/classify", files=upload).headers
    assert "server-timing" not in timed_client.get("/v1/models").headers


def test_concurrent_requests_keep_their_own_times(tmp_path):
    """Each request's stages are its own: a fast request is not charged a slow one's Triton time."""
    import httpx

    class OneSlowModel(SlowBackend):
        async def infer(self, model, inputs, outputs, **kwargs):  # noqa: ANN001, ANN003, ANN201
            if "embedding" in outputs:
                return await super().infer(model, inputs, outputs, **kwargs)
            return await FakeBackend.infer(self, model, inputs, outputs, **kwargs)

    async def main(app):  # noqa: ANN001
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            upload = {"content": photo_bytes("rocket"), "headers": {"content-type": "image/jpeg"}}
            return await asyncio.gather(http.post("/v1/embed", **upload), http.post("/v1/classify", **upload))

    with gateway_client(tmp_path, OneSlowModel(), server_timing=True) as client:
        slow, fast = asyncio.run(main(client.app))
    assert server_timing.parse(slow.headers["server-timing"])["infer"] >= INFER_S * 1000
    assert server_timing.parse(fast.headers["server-timing"])["infer"] < INFER_S * 1000


def test_header_value_and_parse_round_trip():
    times = server_timing.StageTimes()
    times.add("decode", 0.004)
    times.add("infer", 0.010)
    times.add("infer", 0.002)  # a second call of the same stage adds up
    value = times.header_value(0.0205).decode()
    assert value == "decode;dur=4.000, infer;dur=12.000, total;dur=20.500"
    assert server_timing.parse(value) == {"decode": 4.0, "infer": 12.0, "total": 20.5}
    assert server_timing.parse('cache;desc="hit", db;dur=53') == {"db": 53.0}
