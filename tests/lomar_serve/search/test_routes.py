"""The collections API's request handling and error contract, in-process on the FAKE backend (its "model"
embeds an image by its mean colour), on each engine (embedded; pgvector on a real PostgreSQL). Search quality,
re-indexing and persistence against the real Triton are in test_search_e2e.py."""
from __future__ import annotations

import base64
import io
import json
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from contracts.preprocessing import DecodeOptions, decode_image
from lomar_serve.common.api_keys import SCOPES
from lomar_serve.gateway.app import create_app
from lomar_serve.gateway.settings import Settings
from tests.lomar_serve.fake_backend import DIM, FakeBackend
from tests.lomar_serve.photos import PHOTO_NAMES, photo_bytes


# Collection writes need an API key unless opened: these tests are about the routes, on a gateway open to all.
OPEN = {"open_scopes": SCOPES}
LIMITS = {"search_max_collections": 3, "search_max_images": 6, "search_max_metadata_bytes": 64,
          "search_max_metadata_keys": 4}


@pytest.fixture(params=["embedded", "pgvector"])
def client(tmp_path, request):
    (tmp_path / "repo").mkdir()
    engine = {"search_engine": "pgvector", "search_pg_url": request.getfixturevalue("new_postgres_database")()} \
        if request.param == "pgvector" else {}
    settings = Settings(model_repository=tmp_path / "repo", default_classifier="fake_classifier",
                        default_reconstructor="fake_reconstructor", max_images=4, max_upload_bytes=2_000_000,
                        search_dir=tmp_path / "collections", **OPEN, **LIMITS, **engine)
    with TestClient(create_app(settings, backend=FakeBackend())) as test_client:
        yield test_client


def error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]


def test_collection_lifecycle_and_errors(client: TestClient) -> None:
    assert client.post("/v1/collections", json={"name": "pics"}).status_code == 201
    error(client.post("/v1/collections", json={"name": "pics"}), 409, "collection_exists")
    error(client.post("/v1/collections", json={"name": "other", "dim": DIM + 1}), 409, "dimension_mismatch")
    error(client.post("/v1/collections", json={"name": "Bad Name"}), 422, "invalid_parameter")
    error(client.post("/v1/collections", json={"name": "x", "model": "nope"}), 404, "model_not_found")
    error(client.get("/v1/collections/absent"), 404, "collection_not_found")
    error(client.post("/v1/collections/absent/images", content=photo_bytes("coffee"),
                      headers={"content-type": "image/jpeg"}), 404, "collection_not_found")
    error(client.post("/v1/collections/absent/search", params={"id": "a"}), 404, "collection_not_found")
    shown = client.get("/v1/collections/pics").json()
    assert shown["model"] == "fake_classifier" and shown["dim"] == DIM and shown["model_version"] == "1"
    assert [c["name"] for c in client.get("/v1/collections").json()["collections"]] == ["pics"]
    assert client.delete("/v1/collections/pics").json() == {"deleted": "pics"}
    error(client.get("/v1/collections/pics"), 404, "collection_not_found")


def test_storage_limits_refuse_clearly_and_write_nothing(client: TestClient) -> None:
    """Past search_max_collections / _images / _metadata_*: a 4xx saying which bound, and nothing stored."""
    for name in ("a", "b", "c"):
        assert client.post("/v1/collections", json={"name": name}).status_code == 201
    error(client.post("/v1/collections", json={"name": "d"}), 409, "limit_reached")
    assert "at most 3 collections" in client.post("/v1/collections", json={"name": "d"}).json()["error"]["message"]
    assert client.delete("/v1/collections/c").status_code == 200
    assert client.post("/v1/collections", json={"name": "d"}).status_code == 201  # room again

    files = [("image", (f"{n}.jpg", photo_bytes(n), "image/jpeg")) for n in PHOTO_NAMES[:4]]
    assert client.post("/v1/collections/a/images", files=files).json()["count"] == 4
    again = {"on_duplicate": "add"}  # the same photographs once more, as new images
    error(client.post("/v1/collections/a/images", files=files[:3], params=again), 409, "limit_reached")  # 4 + 3 > 6
    assert client.get("/v1/collections/a").json()["count"] == 4
    assert client.post("/v1/collections/a/images", files=files[:2], params=again).json()["count"] == 6  # the bound

    one = [("image", ("x.jpg", photo_bytes(PHOTO_NAMES[0]), "image/jpeg"))]
    many_keys = json.dumps({str(key): key for key in range(5)})
    error(client.post("/v1/collections/b/images", files=one, params={"metadata": [many_keys]}), 422,
          "invalid_parameter")
    error(client.post("/v1/collections/b/images", files=one, params={"metadata": [json.dumps({"k": "v" * 80})]}),
          413, "payload_too_large")
    assert client.post("/v1/collections/b/images", files=one, params={"metadata": [json.dumps({"k": "v"})]}
                       ).json()["count"] == 1
    assert client.get("/v1/collections/b").json()["count"] == 1


def test_add_in_every_form_then_search(client: TestClient) -> None:
    client.post("/v1/collections", json={"name": "pics"})
    files = [("image", (f"{n}.jpg", photo_bytes(n), "image/jpeg")) for n in PHOTO_NAMES[:3]]
    added = client.post("/v1/collections/pics/images", files=files,
                        params={"id": list(PHOTO_NAMES[:3]), "metadata": [json.dumps({"n": i}) for i in range(3)]})
    assert added.status_code == 201, added.text
    assert added.json()["ids"] == list(PHOTO_NAMES[:3]) and added.json()["count"] == 3
    raw = client.post("/v1/collections/pics/images", content=photo_bytes(PHOTO_NAMES[3]),
                      headers={"content-type": "image/jpeg"})
    assert raw.status_code == 201 and len(raw.json()["ids"][0]) == 16  # a generated id
    encoded = base64.b64encode(photo_bytes(PHOTO_NAMES[4])).decode()
    body = {"images": [f"data:image/jpeg;base64,{encoded}"], "ids": ["five"], "metadata": [{"n": 5}]}
    assert client.post("/v1/collections/pics/images", json=body).status_code == 201
    error(client.post("/v1/collections/pics/images", json={**body, "on_duplicate": "add"}), 409, "duplicate_id")
    assert client.post("/v1/collections/pics/images", json={**body, "upsert": True, "on_duplicate": "add"}
                       ).json()["count"] == 5
    error(client.post("/v1/collections/pics/images", json={"images": ["not base64!"]}), 400, "bad_request")
    error(client.post("/v1/collections/pics/images", json={"images": []}), 422, "invalid_parameter")
    error(client.post("/v1/collections/pics/images", json={"images": [encoded] * 5}), 413, "payload_too_large")
    error(client.post("/v1/collections/pics/images", json={"images": [encoded], "ids": ["a", "b"]}), 422,
          "invalid_parameter")
    error(client.post("/v1/collections/pics/images", content=b"hello", headers={"content-type": "image/png"}),
          415, "unsupported_media_type")
    error(client.post("/v1/collections/pics/images", content=b"", headers={"content-type": "image/png"}),
          400, "bad_request")
    error(client.post("/v1/collections/pics/images", content=b"{}", headers={"content-type": "text/plain"}),
          415, "unsupported_media_type")

    found = client.post("/v1/collections/pics/search", content=photo_bytes(PHOTO_NAMES[1]),
                        headers={"content-type": "image/jpeg"}, params={"top_k": 2}).json()
    assert found["results"][0]["id"] == PHOTO_NAMES[1] and found["model_version"] == "1"
    assert found["results"][0]["metadata"] == {"n": 1} and len(found["results"]) == 2
    by_id = client.post("/v1/collections/pics/search", json={"id": PHOTO_NAMES[1], "top_k": 10}).json()
    assert PHOTO_NAMES[1] not in {hit["id"] for hit in by_id["results"]} and len(by_id["results"]) == 4
    filtered = client.post("/v1/collections/pics/search", params={"id": "five", "filter": json.dumps({"n": 2})})
    assert [hit["id"] for hit in filtered.json()["results"]] == [PHOTO_NAMES[2]]
    near = client.post("/v1/collections/pics/search", json={"images": [encoded], "threshold": 0.999}).json()
    assert [hit["id"] for hit in near["results"]] == ["five"]
    error(client.post("/v1/collections/pics/search", json={"id": "absent"}), 404, "image_not_found")
    error(client.post("/v1/collections/pics/search", json={"images": [encoded], "id": "five"}), 422,
          "invalid_parameter")
    renamed = client.post("/v1/collections/pics/search", json={"image": encoded})  # the first release's key
    error(renamed, 422, "invalid_parameter")
    assert '"image" is now "images"' in renamed.json()["error"]["message"]
    capped = client.post("/v1/collections/pics/search", json={"id": "five", "top_k": 1000})  # capped, not refused
    count = client.get("/v1/collections/pics").json()["count"]
    assert capped.status_code == 200 and len(capped.json()["results"]) == count - 1  # every image but the query
    error(client.post("/v1/collections/pics/search", params={"id": "five", "filter": "[1]"}), 422,
          "invalid_parameter")
    error(client.post("/v1/collections/pics/search", params={"id": "five", "filter": '{"a": {"b": 1}}'}), 422,
          "invalid_parameter")
    error(client.post("/v1/collections/pics/search", params={"id": "five", "filter": '{"n": NaN}'}), 422,
          "invalid_parameter")  # Python's JSON reads NaN; PostgreSQL's jsonb would refuse it

    thumbnail = client.get("/v1/collections/pics/images/five/thumbnail")
    assert thumbnail.status_code == 200 and thumbnail.content[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(thumbnail.content)) as shown_input:  # the model input, every pixel as decoded
        pixels = np.asarray(shown_input.convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(pixels, decode_image(photo_bytes(PHOTO_NAMES[4]), DecodeOptions(size=pixels.shape[1:])))
    shown = client.get("/v1/collections/pics/images/five").json()
    assert {key: shown[key] for key in ("id", "name", "metadata")} == {"id": "five", "name": "five", "metadata": {"n": 5}}
    assert len(client.get("/v1/collections/pics/images").json()["images"]) == 5
    assert client.delete("/v1/collections/pics/images/five").json() == {"deleted": "five"}
    error(client.delete("/v1/collections/pics/images/five"), 404, "image_not_found")
    assert client.get("/v1/collections/pics").json()["count"] == 4 == client.get("/v1/collections/pics").json()[
        "indexed"]


def test_names_default_to_file_names_come_back_with_hits_and_filter_listings(client: TestClient) -> None:
    client.post("/v1/collections", json={"name": "pics"})
    files = [("image", (f"album/2024/{n}.jpg", photo_bytes(n), "image/jpeg")) for n in PHOTO_NAMES[:2]]
    added = client.post("/v1/collections/pics/images", files=files).json()
    assert added["names"] == [f"album/2024/{n}.jpg" for n in PHOTO_NAMES[:2]] and len(set(added["ids"])) == 2
    raw = client.post("/v1/collections/pics/images", content=photo_bytes(PHOTO_NAMES[2]),
                      headers={"content-type": "image/jpeg"}, params={"name": "Ünïcode name (1).jpg"}).json()
    assert raw["names"] == ["Ünïcode name (1).jpg"]
    unnamed = client.post("/v1/collections/pics/images", content=photo_bytes(PHOTO_NAMES[3]),
                          headers={"content-type": "image/jpeg"}).json()
    assert unnamed["names"] == unnamed["ids"]  # no file name: the id names it
    encoded = base64.b64encode(photo_bytes(PHOTO_NAMES[4])).decode()
    assert client.post("/v1/collections/pics/images", json={"images": [encoded], "names": ["json.jpg"]}
                       ).json()["names"] == ["json.jpg"]
    error(client.post("/v1/collections/pics/images", json={"images": [encoded], "names": ["a\nb"]}), 422,
          "invalid_parameter")
    error(client.post("/v1/collections/pics/images", json={"images": [encoded], "names": ["a", "b"]}), 422,
          "invalid_parameter")

    hit = client.post("/v1/collections/pics/search", content=photo_bytes(PHOTO_NAMES[1]),
                      headers={"content-type": "image/jpeg"}, params={"top_k": 1}).json()["results"][0]
    assert (hit["id"], hit["name"]) == (added["ids"][1], f"album/2024/{PHOTO_NAMES[1]}.jpg")
    by_name = client.get("/v1/collections/pics/images", params={"name": [f"album/2024/{PHOTO_NAMES[0]}.jpg",
                                                                         "json.jpg", "absent.jpg"]}).json()
    assert [(i["id"], i["name"]) for i in by_name["images"]] == [
        (added["ids"][0], f"album/2024/{PHOTO_NAMES[0]}.jpg"), (by_name["images"][1]["id"], "json.jpg")]
    listed = client.get("/v1/collections/pics/images").json()["images"]
    assert [i["name"] for i in listed][2] == "Ünïcode name (1).jpg" and len(listed) == 5
    shown = client.get(f"/v1/collections/pics/images/{added['ids'][0]}").json()
    assert shown["name"] == f"album/2024/{PHOTO_NAMES[0]}.jpg"


def test_known_bytes_are_skipped_replaced_or_added_again_as_asked(client: TestClient) -> None:
    import hashlib

    client.post("/v1/collections", json={"name": "pics"})
    photo = photo_bytes(PHOTO_NAMES[0])
    first = client.post("/v1/collections/pics/images", files=[("image", ("a.jpg", photo, "image/jpeg"))]).json()
    assert first["added"] == 1 and first["skipped"] == []
    shown = client.get(f"/v1/collections/pics/images/{first['ids'][0]}").json()
    assert shown["sha256"] == hashlib.sha256(photo).hexdigest()

    files = [("image", ("copy.jpg", photo, "image/jpeg")), ("image", ("other.jpg", photo_bytes(PHOTO_NAMES[1]),
                                                                     "image/jpeg")),
             ("image", ("copy-again.jpg", photo, "image/jpeg"))]
    skipped = client.post("/v1/collections/pics/images", files=files).json()  # default: skip
    assert skipped["added"] == 1 and skipped["count"] == 2
    assert skipped["skipped"] == [{"index": 0, "id": first["ids"][0], "name": "a.jpg"},
                                  {"index": 2, "id": first["ids"][0], "name": "a.jpg"}]
    assert skipped["ids"][0] == skipped["ids"][2] == first["ids"][0] and skipped["names"][1] == "other.jpg"

    twice = [("image", ("x.jpg", photo_bytes(PHOTO_NAMES[2]), "image/jpeg"))] * 2  # twice within one request
    within = client.post("/v1/collections/pics/images", files=twice).json()
    assert within["added"] == 1 and within["skipped"] == [{"index": 1, "id": within["ids"][0], "name": "x.jpg"}]

    replaced = client.post("/v1/collections/pics/images", files=[("image", ("renamed.jpg", photo, "image/jpeg"))],
                           params={"on_duplicate": "replace", "metadata": json.dumps({"v": 2})}).json()
    assert replaced["ids"] == first["ids"] and replaced["replaced"] == first["ids"] and replaced["count"] == 3
    assert client.get(f"/v1/collections/pics/images/{first['ids'][0]}").json()["name"] == "renamed.jpg"
    hit = client.post("/v1/collections/pics/search", content=photo, headers={"content-type": "image/jpeg"},
                      params={"top_k": 1}).json()["results"][0]
    assert (hit["id"], hit["name"], hit["metadata"]) == (first["ids"][0], "renamed.jpg", {"v": 2})

    again = client.post("/v1/collections/pics/images", json={"images": [base64.b64encode(photo).decode()],
                                                             "on_duplicate": "add"}).json()
    assert again["added"] == 1 and again["ids"][0] != first["ids"][0] and again["count"] == 4
    both = client.get("/v1/collections/pics/images", params={"sha256": hashlib.sha256(photo).hexdigest()}).json()
    assert [image["id"] for image in both["images"]] == [first["ids"][0], again["ids"][0]]
    assert client.get("/v1/collections/pics").json()["indexed"] == 4
    error(client.post("/v1/collections/pics/images", json={"images": ["aGk="], "on_duplicate": "never"}), 422,
          "invalid_parameter")
    error(client.get("/v1/collections/pics/images", params={"sha256": "xyz"}), 422, "invalid_parameter")


def test_search_by_vector_and_in_batches_equals_search_by_image_one_by_one(client: TestClient) -> None:
    client.post("/v1/collections", json={"name": "pics"})
    files = [("image", (f"{n}.jpg", photo_bytes(n), "image/jpeg")) for n in PHOTO_NAMES[:4]]
    ids = client.post("/v1/collections/pics/images", files=files, params={"id": list(PHOTO_NAMES[:4])}).json()["ids"]
    queries = [base64.b64encode(photo_bytes(n)).decode() for n in PHOTO_NAMES[4:7]]

    one_by_one = [client.post("/v1/collections/pics/search", json={"images": [query], "top_k": 3}).json()
                  for query in queries]
    batch = client.post("/v1/collections/pics/search/batch", json={"images": queries, "top_k": 3}).json()
    assert batch["results"] == [answer["results"] for answer in one_by_one] and len(batch["results"]) == 3
    assert batch["model_version"] == "1" and all(len(hits) == 3 for hits in batch["results"])
    multipart = client.post("/v1/collections/pics/search/batch", params={"top_k": 3}, files=[
        ("image", (f"q{i}.jpg", base64.b64decode(query), "image/jpeg")) for i, query in enumerate(queries)]).json()
    assert multipart["results"] == batch["results"]

    vectors = client.post("/v1/embed", json={"images": queries}).json()["results"]
    for vector, answer in zip(vectors, one_by_one):
        by_vector = client.post("/v1/collections/pics/search", json={"vector": vector["embedding"], "top_k": 3})
        assert by_vector.status_code == 200, by_vector.text
        assert [h["id"] for h in by_vector.json()["results"]] == [h["id"] for h in answer["results"]]
        assert [h["score"] for h in by_vector.json()["results"]] == pytest.approx(
            [h["score"] for h in answer["results"]], abs=1e-5)
    scaled = [[3 * x for x in vector["embedding"]] for vector in vectors]  # any norm: compared as unit vectors
    by_vectors = client.post("/v1/collections/pics/search/batch", json={"vectors": scaled, "top_k": 3}).json()
    assert [[h["id"] for h in hits] for hits in by_vectors["results"]] == [
        [h["id"] for h in hits] for hits in batch["results"]]
    assert [h["score"] for hits in by_vectors["results"] for h in hits] == pytest.approx(
        [h["score"] for hits in batch["results"] for h in hits], abs=1e-5)
    by_ids = client.post("/v1/collections/pics/search/batch", params={"id": ids[:2], "top_k": 2}).json()
    assert [[h["id"] for h in hits] for hits in by_ids["results"]] == [
        [h["id"] for h in client.post("/v1/collections/pics/search", params={"id": i, "top_k": 2}).json()["results"]]
        for i in ids[:2]]

    short = client.post("/v1/collections/pics/search", json={"vector": [0.5] * (DIM - 1)})
    error(short, 422, "invalid_parameter")
    assert f"{DIM - 1} dimensions" in short.json()["error"]["message"] and f"{DIM}-dimensional" in short.text
    error(client.post("/v1/collections/pics/search", json={"vector": [0.0] * DIM}), 422, "invalid_parameter")
    error(client.post("/v1/collections/pics/search/batch", json={"vectors": [[1.0] * DIM, [1.0] * 3]}), 422,
          "invalid_parameter")
    error(client.post("/v1/collections/pics/search", json={"images": queries[:2]}), 422, "invalid_parameter")
    error(client.post("/v1/collections/pics/search/batch", json={"images": queries * 2}), 413, "payload_too_large")
    error(client.post("/v1/collections/pics/search/batch", json={"top_k": 3}), 422, "invalid_parameter")


def test_a_parameter_in_both_the_query_string_and_the_body_is_refused(client: TestClient) -> None:
    """It used to be silently ignored: `?top_k=3` with a JSON body searched with the body's default of 10."""
    client.post("/v1/collections", json={"name": "pics"})
    files = [("image", (f"{n}.jpg", photo_bytes(n), "image/jpeg")) for n in PHOTO_NAMES[:4]]
    client.post("/v1/collections/pics/images", files=files, params={"id": list(PHOTO_NAMES[:4])})
    from_query = client.post("/v1/collections/pics/search", params={"top_k": 2}, json={"id": PHOTO_NAMES[0]})
    assert len(from_query.json()["results"]) == 2  # given once, in the query string: used
    for params, body in (({"top_k": 2}, {"id": PHOTO_NAMES[0], "top_k": 3}),
                         ({"id": PHOTO_NAMES[1]}, {"id": PHOTO_NAMES[0]}),
                         ({"threshold": 0.5}, {"id": PHOTO_NAMES[0], "threshold": 0.1})):
        refused = client.post("/v1/collections/pics/search", params=params, json=body)
        error(refused, 422, "invalid_parameter")
        assert "both in the query string and in the JSON body" in refused.json()["error"]["message"]
    error(client.post("/v1/collections/pics/search/batch", params={"top_k": 2},
                      json={"ids": [PHOTO_NAMES[0]], "top_k": 3}), 422, "invalid_parameter")
    encoded = base64.b64encode(photo_bytes(PHOTO_NAMES[5])).decode()
    error(client.post("/v1/collections/pics/images", params={"upsert": "true"}, json={"images": [encoded],
                                                                                      "upsert": False}),
          422, "invalid_parameter")
    error(client.post("/v1/collections/pics/images", params={"name": "a.jpg"}, json={"images": [encoded],
                                                                                     "names": ["b.jpg"]}),
          422, "invalid_parameter")
    named = client.post("/v1/collections/pics/images", params={"name": "a.jpg"}, json={"images": [encoded]})
    assert named.json()["names"] == ["a.jpg"]
    error(client.post("/v1/collections/pics/search", params={"id": PHOTO_NAMES[0]}, content=photo_bytes("coins"),
                      headers={"content-type": "image/jpeg"}), 422, "invalid_parameter")


def test_openapi_lists_the_collection_models(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    search = schema["paths"]["/v1/collections/{name}/search"]["post"]
    assert "application/json" in search["requestBody"]["content"]
    assert "multipart/form-data" in search["requestBody"]["content"]
    assert {"CollectionOut", "SearchResults", "Added"} <= set(schema["components"]["schemas"])


def test_a_folder_that_cannot_be_written_is_a_503(tmp_path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "not-a-folder").write_text("a file where the collections folder should be")
    settings = Settings(model_repository=tmp_path / "repo", default_classifier="fake_classifier",
                        default_reconstructor="fake_reconstructor", search_dir=tmp_path / "not-a-folder", **OPEN)
    with TestClient(create_app(settings, backend=FakeBackend())) as client:
        error(client.post("/v1/collections", json={"name": "pics"}), 503, "search_storage_unavailable")
        error(client.get("/v1/collections/pics"), 503, "search_storage_unavailable")  # the folder cannot be locked
        assert client.post("/v1/classify", content=photo_bytes("coffee"),
                           headers={"content-type": "image/jpeg"}).status_code == 200  # inference goes on


def test_paging_out_of_range_is_a_422_on_every_engine(client: TestClient) -> None:
    """Found by fuzzing: an offset past 64 bits was a 500 (embedded: SQLite's integer overflow) or a 503 (pgvector:
    PostgreSQL refusing the bigint), instead of the 422 of a parameter out of range."""
    assert client.post("/v1/collections", json={"name": "p"}).status_code == 201
    assert client.post("/v1/collections/p/images", content=photo_bytes("coffee"),
                       headers={"content-type": "image/jpeg"}).status_code == 201
    for params in ({"limit": 977, "offset": 43725633043640371232838487459758080}, {"offset": 2**63},
                   {"limit": 1001}, {"limit": 0}, {"offset": -1}):
        error(client.get("/v1/collections/p/images", params=params), 422, "invalid_parameter")
    assert client.get("/v1/collections/p/images", params={"offset": 2**63 - 1, "limit": 1000}).json()["images"] == []
    assert len(client.get("/v1/collections/p/images", params={"offset": 0}).json()["images"]) == 1


def test_a_gateway_without_collections_says_so(tmp_path) -> None:
    (tmp_path / "repo").mkdir()
    settings = Settings(model_repository=tmp_path / "repo", default_classifier="fake_classifier",
                        default_reconstructor="fake_reconstructor", search_engine="none",
                        search_dir=tmp_path / "collections", **OPEN)
    with TestClient(create_app(settings, backend=FakeBackend())) as client:
        for response in (client.get("/v1/collections"), client.post("/v1/collections", json={"name": "pics"}),
                         client.post("/v1/collections/pics/search", params={"id": "a"})):
            error(response, 404, "collections_disabled")
            assert "LOMAR_SEARCH_ENGINE=none" in response.json()["error"]["message"]
    assert not (tmp_path / "collections").exists()  # not even a lock file


@pytest.mark.parametrize("url", [
    "postgresql://lomar:S3cr3t-pw@[::1/lomar",  # libpq quotes a malformed URL whole
    "postgresql://lomar@[::1/lomar?password=S3cr3t-pw",
    "postgresql://lomar@127.0.0.1/lomar?password=S3cr3t-pw%ZZ",  # ... and a malformed token as written
], ids=["userinfo", "query-password", "query-password-token"])
def test_the_database_password_is_in_no_error_body_and_no_log(tmp_path, url, caplog) -> None:
    (tmp_path / "repo").mkdir()
    settings = Settings(model_repository=tmp_path / "repo", default_classifier="fake_classifier",
                        default_reconstructor="fake_reconstructor", search_engine="pgvector", search_pg_url=url,
                        **OPEN)
    with caplog.at_level("DEBUG"), TestClient(create_app(settings, backend=FakeBackend())) as client:
        for response in (client.get("/v1/collections"), client.post("/v1/collections", json={"name": "pics"})):
            error(response, 503, "search_engine_unavailable")
            assert "S3cr3t" not in response.text and "********" in response.text, response.text
    assert caplog.records and "S3cr3t" not in caplog.text


def test_a_database_that_is_down_is_a_503_and_inference_goes_on(tmp_path) -> None:
    (tmp_path / "repo").mkdir()
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"postgresql://lomar@127.0.0.1:{closed.getsockname()[1]}/lomar?connect_timeout=2"
    settings = Settings(model_repository=tmp_path / "repo", default_classifier="fake_classifier",
                        default_reconstructor="fake_reconstructor", search_engine="pgvector", search_pg_url=url,
                        **OPEN)
    with TestClient(create_app(settings, backend=FakeBackend())) as client:
        assert client.post("/v1/classify", content=photo_bytes("coffee"),
                           headers={"content-type": "image/jpeg"}).status_code == 200
        error(client.get("/v1/collections"), 503, "search_engine_unavailable")
        error(client.post("/v1/collections", json={"name": "pics"}), 503, "search_engine_unavailable")
        error(client.post("/v1/collections/pics/search", params={"id": "a"}), 503, "search_engine_unavailable")


def test_pgvector_connections_stay_within_the_pool_however_many_collections(new_postgres_database) -> None:
    """Each collection used to hold about 2 connections of its own: 29 of them exhausted a server's 100. Now the
    gateway holds at most LOMAR_SEARCH_PG_POOL_SIZE, shared by every collection, under concurrent requests."""
    import concurrent.futures

    import psycopg

    url = new_postgres_database()
    pool_size = 3
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "repo").mkdir()
        settings = Settings(model_repository=Path(work) / "repo", default_classifier="fake_classifier",
                            default_reconstructor="fake_reconstructor", search_engine="pgvector", search_pg_url=url,
                            search_pg_pool_size=pool_size, **OPEN)
        with TestClient(create_app(settings, backend=FakeBackend())) as client:
            names = [f"c{i}" for i in range(12)]
            for name in names:
                assert client.post("/v1/collections", json={"name": name}).status_code == 201

            def use(name: str) -> int:
                added = client.post(f"/v1/collections/{name}/images", content=photo_bytes(PHOTO_NAMES[0]),
                                    headers={"content-type": "image/jpeg"}, params={"id": "x", "on_duplicate": "add"})
                found = client.post(f"/v1/collections/{name}/search", params={"id": "x"})
                return added.status_code * 1000 + found.status_code

            with concurrent.futures.ThreadPoolExecutor(8) as threads:
                assert set(threads.map(use, names * 2)) <= {201200, 409200}  # the second round: a duplicate id
            with psycopg.connect(url, autocommit=True) as admin:
                held = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND pid <> pg_backend_pid()").fetchone()[0]
            assert 1 <= held <= pool_size, f"{held} connections for {len(names)} collections"
            assert client.get("/v1/collections").json()["collections"][0]["count"] == 1
