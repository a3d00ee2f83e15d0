"""Similar-image search end to end through a real `lomar serve` (supervised Triton + gateway + control plane):
photographs indexed with the official micro fine-tuned model, found again from altered copies; concurrent adds
and searches; a new model version deployed while clients search and add (the re-index); a gateway restart;
the CLI; and the same collection code on the pgvector engine against a real PostgreSQL."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageOps

from lomar_serve.common.api_keys import SCOPES
from tests.lomar_serve.processes import E2E_LABELS, ServeStack as Stack, wait_until
from tests.lomar_serve.tiny_models import export_tiny, export_tiny_reconstruction
from tests.lomar_serve.control_plane.test_lifecycle_e2e import AUTH, NAME, lifecycle_env
from tests.lomar_serve.photos import encode, photo_array

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[3]
# scikit-image's bundled photographs (no download)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "camera",
          "coins", "moon", "page", "text", "clock", "brick", "grass", "gravel", "retina", "cell", "colorwheel")


def rgb(name: str) -> Image.Image:
    array = photo_array(name)
    return Image.fromarray(np.stack([array] * 3, axis=-1) if array.ndim == 2 else array[..., :3])


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


ALTERATIONS: dict[str, Callable[[Image.Image], bytes]] = {
    "resized": lambda image: jpeg(image.resize((image.width // 2, image.height // 2), Image.BICUBIC)),
    "recompressed": lambda image: jpeg(image, quality=25),
    "cropped": lambda image: jpeg(image.crop((image.width // 10, image.height // 10, image.width, image.height))),
    "mirrored": lambda image: jpeg(ImageOps.mirror(image)),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, official_dir: Path) -> Iterator[Stack]:
    """`lomar serve` on the official micro classifier (version 1) with the admin API, collections in work/search."""
    from export.pipeline import ExportOptions, export_checkpoint

    work = tmp_path_factory.mktemp("search_e2e")
    labels = work / "labels.txt"
    labels.write_text("\n".join(E2E_LABELS) + "\n")
    export_checkpoint(ExportOptions(checkpoint=official_dir / "official_finetuned.pth", task="classify",
                                    out=work / "repo", labels_file=labels, max_batch_size=16))
    export_tiny_reconstruction(work / "repo", work)
    (work / "data").mkdir()
    stack = Stack(work, lifecycle_env(work / "data", work))
    # Collection writes need an API key unless opened (tests/lomar_serve/gateway/api/test_access.py): open here.
    stack.env.update({"LOMAR_OPEN_SCOPES": ",".join(SCOPES), "LOMAR_SEARCH_DIR": str(work / "search"),
                      "LOMAR_SEARCH_REINDEX_BATCH": "1", "LOMAR_SEARCH_CHECK_INTERVAL_S": "1"})
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=120) as client:
        yield client


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def search(http: httpx.Client, body: bytes, collection: str = "photos", **params) -> dict:
    return ok(http.post(f"/v1/collections/{collection}/search", content=body, params=params,
                        headers={"content-type": "image/jpeg"}))


def index_photos(http: httpx.Client, collection: str) -> None:
    ok(http.post("/v1/collections", json={"name": collection, "model": NAME}), 201)
    for start in range(0, len(PHOTOS), 6):
        names = PHOTOS[start:start + 6]
        files = [("image", (f"{n}.jpg", jpeg(rgb(n)), "image/jpeg")) for n in names]
        meta = [json.dumps({"name": n, "gray": photo_array(n).ndim == 2}) for n in names]
        ok(http.post(f"/v1/collections/{collection}/images", files=files, params={"id": list(names), "metadata": meta}),
           201)


def top_hit_rate(http: httpx.Client, collection: str) -> tuple[float, list[str]]:
    misses = []
    for name in PHOTOS:
        for alteration, alter in ALTERATIONS.items():
            hits = search(http, alter(rgb(name)), collection, top_k=3)["results"]
            if hits[0]["id"] != name:
                misses.append(f"{name}/{alteration} -> {hits[0]['id']}")
    return 1 - len(misses) / (len(PHOTOS) * len(ALTERATIONS)), misses


def test_altered_copies_find_their_source(http: httpx.Client, reference_meta: dict) -> None:
    index_photos(http, "photos")
    shown = ok(http.get("/v1/collections/photos"))
    assert (shown["count"], shown["indexed"], shown["model_version"], shown["dim"]) == (
        len(PHOTOS), len(PHOTOS), "1", reference_meta["embed_dim"])
    rate, misses = top_hit_rate(http, "photos")
    assert rate >= 0.9, misses
    exact = search(http, jpeg(rgb("coffee")), threshold=0.99)["results"]
    assert [hit["id"] for hit in exact] == ["coffee"] and exact[0]["metadata"] == {"name": "coffee", "gray": False}
    gray = search(http, jpeg(rgb("coffee")), top_k=20, filter=json.dumps({"gray": True}))["results"]
    assert gray and all(hit["metadata"]["gray"] for hit in gray)


def test_concurrent_adds_and_searches_lose_nothing(http: httpx.Client, stack: Stack) -> None:
    before = ok(http.get("/v1/collections/photos"))["count"]
    rng = np.random.default_rng(0)
    blobs = [encode(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(40)]
    failures: list[str] = []

    def adder(worker: int) -> None:
        with httpx.Client(base_url=stack.url, timeout=120) as client:
            for step in range(5):
                ids = [f"noise-{worker}-{step}-{i}" for i in range(2)]
                files = [("image", (f"{i}.jpg", blobs[worker * 10 + step * 2 + i], "image/jpeg")) for i in range(2)]
                response = client.post("/v1/collections/photos/images", files=files, params={"id": ids})
                if response.status_code != 201:
                    failures.append(response.text)

    def searcher() -> None:
        with httpx.Client(base_url=stack.url, timeout=120) as client:
            for _ in range(10):
                response = client.post("/v1/collections/photos/search", content=jpeg(rgb("clock")),
                                       headers={"content-type": "image/jpeg"})
                if response.status_code != 200 or response.json()["results"][0]["id"] != "clock":
                    failures.append(response.text)

    threads = [threading.Thread(target=adder, args=(w,)) for w in range(4)]
    threads += [threading.Thread(target=searcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not failures, failures[:3]
    shown = ok(http.get("/v1/collections/photos"))
    assert shown["count"] == before + 40 == shown["indexed"]
    ids = [image["id"] for image in ok(http.get("/v1/collections/photos/images", params={"limit": 1000}))["images"]]
    assert len(ids) == len(set(ids)) == before + 40


def test_deploying_a_new_version_reindexes_without_mixing_versions(http: httpx.Client, stack: Stack,
                                                                   reference_meta: dict) -> None:
    same_architecture = {key: reference_meta[key] for key in ("embed_dim", "depth", "num_heads")}
    assert export_tiny(stack.work / "repo", stack.work, list(E2E_LABELS), seed=7, image_size=224,
                       **same_architecture) == 2
    count = ok(http.get("/v1/collections/photos"))["count"]
    query = jpeg(rgb("astronaut"))  # the bytes indexed: the same model input, so a score of 1 in any version
    answers: list[tuple[int, str, str, float]] = []
    states: set[str | None] = set()
    added: list[tuple[str, bytes]] = []
    stop = threading.Event()

    def searcher() -> None:
        with httpx.Client(base_url=stack.url, timeout=120) as client:
            while not stop.is_set():
                response = client.post("/v1/collections/photos/search", content=query,
                                       headers={"content-type": "image/jpeg"}, params={"top_k": 1})
                body = response.json()
                hit = (body.get("results") or [{}])[0]
                answers.append((response.status_code, body.get("model_version", ""), hit.get("id", ""),
                                hit.get("score", 0.0)))

    def watcher() -> None:
        with httpx.Client(base_url=stack.url, timeout=120) as client:
            while not stop.is_set():
                states.add(client.get("/v1/collections/photos").json()["reindexing_to"])
                time.sleep(0.02)  # pacing: a poll every 20 ms while the re-index runs

    def adder() -> None:
        rng = np.random.default_rng(1)
        with httpx.Client(base_url=stack.url, timeout=120) as client:
            while not stop.is_set():
                blob = encode(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
                image_id = f"during-{len(added)}"
                response = client.post("/v1/collections/photos/images", content=blob, params={"id": image_id},
                                       headers={"content-type": "image/jpeg"})
                assert response.status_code == 201, response.text
                added.append((image_id, blob))

    workers = [threading.Thread(target=target, name=target.__name__) for target in (searcher, watcher, adder)]
    for worker in workers:
        worker.start()
    try:
        # returns once the old version is unloaded: after the gateway released its hold (the re-index is done)
        deployed = ok(httpx.post(f"{stack.admin_url}/v1/admin/models/{NAME}/deploy", json={"version": 2},
                                 headers=AUTH, timeout=600))
        assert deployed["version"] == "2"
        # the clients go on against the new version: wait for a search and an add each sent after the deploy
        # returned (the first answer counted from here may still be of a request sent before; the second is not)
        searches, adds = len(answers), len(added)

        def went_on() -> bool:
            stopped = [worker.name for worker in workers if not worker.is_alive()]
            assert not stopped, f"{stopped} stopped before the end (its exception is printed above)"
            return len(answers) >= searches + 2 and len(added) >= adds + 2

        wait_until(went_on, "the clients to go on after the deploy", 60,
                   context=lambda: f"{len(answers) - searches} searches and {len(added) - adds} adds answered since "
                                   "it returned")
    finally:
        stop.set()
        for worker in workers:
            worker.join(120)
    assert "2" in states, "the re-index was never seen running"
    assert answers and {status for status, *_ in answers} == {200}, answers[-5:]
    versions = [version for _, version, _, _ in answers]
    assert set(versions) == {"1", "2"} and versions == sorted(versions), "versions went back or never switched"
    mixed = [a for a in answers if a[2] != "astronaut" or a[3] < 0.999]
    assert not mixed, f"a query vector met vectors of another version: {mixed[:3]}"

    shown = ok(http.get("/v1/collections/photos"))
    assert (shown["model_version"], shown["reindexing_to"]) == ("2", None)
    assert len(added) >= 2 and shown["count"] == count + len(added) == shown["indexed"]
    for image_id, blob in added[:: max(1, len(added) // 5)]:
        hit = search(http, blob, top_k=1)
        assert hit["model_version"] == "2" and hit["results"][0]["id"] == image_id, hit
        assert hit["results"][0]["score"] > 0.999


def test_web_view_adds_and_searches(browser, stack: Stack, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    query, added = tmp_path / "coffee-small.jpg", tmp_path / "noise.png"
    query.write_bytes(ALTERATIONS["resized"](rgb("coffee")))
    added.write_bytes(encode(np.random.default_rng(5).integers(0, 256, (40, 40, 3), dtype=np.uint8), "PNG"))
    browser.get(stack.url + "/search")
    wait = WebDriverWait(browser, 90)
    wait.until(lambda d: "images," in d.find_element(By.ID, "info").text)
    assert browser.find_element(By.ID, "collection").get_attribute("value") == "photos"
    browser.find_element(By.ID, "add-input").send_keys(str(added))
    wait.until(lambda d: d.find_element(By.ID, "added").text.startswith("added 1"))
    browser.find_element(By.ID, "search-input").send_keys(str(query))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#hits .tile")) == 8)
    names = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "#hits .tile .name")]
    ids = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "#hits .tile .id")]
    assert (names[0], ids[0]) == ("coffee.jpg", "coffee")
    assert "score" in browser.find_element(By.CSS_SELECTOR, "#hits .tile .score").text
    wait.until(lambda d: d.execute_script("return document.querySelector('#hits .tile img').naturalWidth") == 224)
    assert not browser.find_elements(By.CSS_SELECTOR, ".error")


def photo_library(root: Path) -> list[str]:
    """Every photograph of PHOTOS twice (as taken and mirrored) in nested folders: over 32 images; their names."""
    names = []
    for index, name in enumerate(PHOTOS):
        group = f"{'people' if index % 2 else 'things'}/{index % 3}"
        for variant, image in (("", rgb(name)), ("mirrored/", ImageOps.mirror(rgb(name)))):
            path = root / group / f"{variant}{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg(image))
            names.append(f"{group}/{variant}{name}.jpg")
    return names


def test_a_folder_ingested_through_the_cli_survives_a_kill_and_is_found_by_name(http: httpx.Client, stack: Stack,
                                                                               tmp_path: Path) -> None:
    """`lomar collections add NAME FOLDER` killed (SIGKILL) mid-way, run again, and once more: every image exactly
    once, found by name; the last run adds nothing."""
    names = photo_library(tmp_path / "library")
    assert len(names) > 32
    ok(http.post("/v1/collections", json={"name": "library", "model": NAME}), 201)
    env = {**stack.env, "LOMAR_URL": stack.url}
    command = [sys.executable, "-m", "lomar_serve.cli", "collections", "add", "library", str(tmp_path / "library"),
               "--no-progress"]
    killed = subprocess.Popen([*command, "--chunk-size", "1"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        count = wait_until(lambda: ok(http.get("/v1/collections/library"))["count"] >= 3 or killed.poll() is not None,
                           "the CLI to add a few images", 120)
        assert killed.poll() is None, "the CLI finished before it could be killed"
    finally:
        killed.kill()  # SIGKILL: no clean-up of any kind
        killed.wait(30)
    before = ok(http.get("/v1/collections/library"))["count"]
    assert count and 3 <= before < len(names)

    rerun = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["failed"] == [] and report["count"] == len(names)
    assert report["added"] + report["skipped"] == len(names) and report["skipped"] >= before
    listed = ok(http.get("/v1/collections/library/images", params={"limit": 1000}))["images"]
    assert sorted(image["name"] for image in listed) == sorted(names)  # every image exactly once

    again = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["added"], json.loads(again.stdout)["count"]) == (0, len(names))

    for name in ("coffee", "rocket", "astronaut"):
        hit = search(http, ALTERATIONS["resized"](rgb(name)), "library", top_k=1)["results"][0]
        assert hit["name"].rsplit("/", 1)[-1] == f"{name}.jpg", hit  # the photograph, as taken or mirrored
        assert hit["name"] in names
    ok(http.delete("/v1/collections/library"))


def test_collections_survive_a_gateway_restart_and_the_cli_reads_them(http: httpx.Client, stack: Stack,
                                                                      tmp_path: Path) -> None:
    before = ok(http.get("/v1/collections/photos"))
    stack.stop()
    stack.start()
    with httpx.Client(base_url=stack.url, timeout=120) as fresh:
        after = ok(fresh.get("/v1/collections/photos"))
        assert {k: after[k] for k in ("count", "indexed", "model_version", "dim")} == {
            k: before[k] for k in ("count", "indexed", "model_version", "dim")}
        found = search(fresh, ALTERATIONS["resized"](rgb("chelsea")), top_k=1)
        assert found["results"][0]["id"] == "chelsea" and found["model_version"] == "2"
    photo = tmp_path / "rocket.jpg"
    photo.write_bytes(ALTERATIONS["recompressed"](rgb("rocket")))
    env = {**stack.env, "LOMAR_URL": stack.url}
    run = [sys.executable, "-m", "lomar_serve.cli"]
    listed = subprocess.run([*run, "collections", "list"], env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0 and json.loads(listed.stdout)["collections"][0]["name"] == "photos"
    searched = subprocess.run([*run, "search", "photos", str(photo), "--top-k", "2"], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)
    assert searched.returncode == 0, searched.stderr
    assert json.loads(searched.stdout)["results"][0]["id"] == "rocket"
    missing = subprocess.run([*run, "search", "absent", str(photo)], env=env, cwd=REPO, capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 1 and "collection_not_found" in missing.stderr


def test_the_pgvector_engine_serves_the_same_api(stack: Stack, postgres_url: str) -> None:
    try:
        stack.stop()
        stack.env.update({"LOMAR_SEARCH_ENGINE": "pgvector", "LOMAR_SEARCH_PG_URL": postgres_url,
                          "LOMAR_SEARCH_DIR": str(stack.work / "search-pg")})
        stack.start()
        with httpx.Client(base_url=stack.url, timeout=120) as http:
            index_photos(http, "photos-pg")
            shown = ok(http.get("/v1/collections/photos-pg"))
            assert (shown["engine"], shown["count"], shown["indexed"]) == ("pgvector", len(PHOTOS), len(PHOTOS))
            rate, misses = top_hit_rate(http, "photos-pg")
            assert rate >= 0.9, misses
            ok(http.delete("/v1/collections/photos-pg"))
    finally:
        stack.stop()
