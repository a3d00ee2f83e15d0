"""Adding folders and globs of images to a collection (lomar_serve/clients/ingest.py) through LomarClient and
`lomar collections add`, against a live gateway (FAKE backend: an image's embedding is a projection of its mean
colour, so flat colours are told apart). The CLI against the real model, killed mid-ingest, is in
tests/lomar_serve/search/test_search_e2e.py."""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import numpy as np
import pytest

from lomar_serve.cli import main as lomar
from lomar_serve.clients import ingest
from lomar_serve.clients.errors import GatewayClientError
from lomar_serve.clients.gateway import LomarClient
from tests.lomar_serve.photos import encode

COLOURS = 40  # more than the gateway's 32 images per request


def colour_image(index: int) -> bytes:
    """A PNG of one colour of its own (the fake model tells them apart), with a little noise."""
    rng = np.random.default_rng(index)
    colour = np.array([(index * 53) % 256, (index * 97) % 256, (index * 191) % 256])
    pixels = np.clip(colour + rng.integers(-3, 4, (40, 40, 3)), 0, 255).astype(np.uint8)
    return encode(pixels, "PNG")


@pytest.fixture()
def library(tmp_path: Path) -> Path:
    """COLOURS images in nested folders (a/, a/b/, c/), plus a text file and a hidden image that are not added."""
    root = tmp_path / "library"
    for index in range(COLOURS):
        folder = root / ("a" if index % 3 == 0 else "a/b" if index % 3 == 1 else "c")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img {index:02d}.png").write_bytes(colour_image(index))
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(colour_image(99))
    return root


@pytest.fixture()
def collection(live_server) -> str:
    name = f"ingest-{secrets.token_hex(3)}"
    with LomarClient(live_server[0]) as client:
        client.create_collection(name)
    return name


def test_find_images_names_them_by_folder_glob_or_file(library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_folder = ingest.find_images([library])
    assert len(in_folder) == COLOURS and in_folder[0].name == "a/b/img 01.png"
    assert {source.name for source in in_folder} >= {"a/img 00.png", "c/img 02.png"}
    globbed = ingest.find_images([f"{library}/a/**/*.png"])
    assert sorted(source.name for source in globbed)[:2] == ["b/img 01.png", "b/img 04.png"]
    assert len(globbed) == len([i for i in range(COLOURS) if i % 3 != 2])
    monkeypatch.chdir(library / "c")
    assert [source.name for source in ingest.find_images(["img 02.png", "*5.png"])] == [
        "img 02.png", "img 05.png", "img 35.png"]
    overlapping = ingest.find_images([library, library / "c" / "img 02.png"])
    assert len(overlapping) == COLOURS  # reached twice, added once
    with pytest.raises(FileNotFoundError, match="absent.png"):
        ingest.find_images([library, "absent.png"])
    with pytest.raises(FileNotFoundError, match=r"\*.gif"):
        ingest.find_images([f"{library}/*.gif"])


def test_a_folder_is_added_in_requests_within_the_limits_and_found_by_name(live_server, library: Path,
                                                                            collection: str) -> None:
    with LomarClient(live_server[0]) as client:
        assert client.limits().max_images == 32  # the gateway's default: more than one request is needed
        report = client.ingest(collection, [library], metadata={"album": "colours"})
        assert (report["files"], report["added"], report["skipped"], report["failed"]) == (COLOURS, COLOURS, 0, [])
        assert report["count"] == COLOURS and None not in report["ids"] and len(set(report["ids"])) == COLOURS
        for index in (0, 1, 2, 39):
            name = next(n for n in report["names"] if n.endswith(f"img {index:02d}.png"))
            hit = client.search(collection, colour_image(index), top_k=1)["results"][0]
            assert hit["name"] == name and hit["metadata"] == {"album": "colours"}
        again = client.ingest(collection, [library], chunk_images=7)
        assert (again["added"], again["skipped"], again["count"]) == (0, COLOURS, COLOURS)
        assert again["ids"] == report["ids"]  # the images already in, by name and bytes


def test_a_partial_ingest_is_resumed_and_a_bad_image_fails_alone(live_server, library: Path,
                                                                  collection: str) -> None:
    sources = ingest.find_images([library])
    (library / "c" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with LomarClient(live_server[0]) as client:
        first = sources[:10]  # an earlier run that stopped after 10 images
        client.add_images(collection, [s.path for s in first], names=[s.name for s in first])
        copy = library / "c" / "z copy of img 02.png"  # known bytes under another name: skipped by the gateway
        copy.write_bytes((library / "c" / "img 02.png").read_bytes())
        report = client.ingest(collection, [library], chunk_images=8)
        assert report["files"] == COLOURS + 2 and report["added"] == COLOURS - 10
        assert report["skipped"] == 10 + 1 and report["count"] == COLOURS
        assert [failure["name"] for failure in report["failed"]] == ["c/broken.png"]
        assert "415 unsupported_media_type" in report["failed"][0]["error"]
        listed = {image["name"] for image in client.images(collection, limit=1000)["images"]}
        # every image once; of the two with the same bytes, the one whose request was stored first (2 in flight)
        assert listed ^ {source.name for source in sources} in (set(), {"c/img 02.png", copy.relative_to(library)
                                                                           .as_posix()})


def test_refusals_are_raised_and_transient_failures_retried(live_server, library: Path, monkeypatch) -> None:
    with LomarClient(live_server[0]) as client, pytest.raises(GatewayClientError) as refused:
        client.ingest("no-such-collection", [library])
    assert refused.value.status == 404
    monkeypatch.setattr(ingest, "wait_exponential", lambda **_: ingest.wait_random(0, 0))  # no pauses here
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise GatewayClientError(503, "unavailable", "Triton is restarting")
        return "done"
    assert ingest._call(flaky, retries=5) == "done" and len(calls) == 3
    calls.clear()
    with pytest.raises(GatewayClientError):
        ingest._call(flaky, retries=1)  # gives up after one retry
    assert len(calls) == 2


def test_the_command_line_adds_folders_and_globs(live_server, library: Path, collection: str, capsys) -> None:
    url = live_server[0]
    assert lomar(["collections", "add", collection, str(library / "a"), f"{library}/c/*.png", "--url", url,
                  "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == COLOURS and report["names"][0] == "b/img 01.png"
    assert lomar(["collections", "images", collection, "--name", "img 02.png", "--url", url]) == 0
    assert [image["name"] for image in json.loads(capsys.readouterr().out)["images"]] == ["img 02.png"]
    assert lomar(["collections", "add", collection, str(library / "absent"), "--url", url]) == 2
    assert "absent" in capsys.readouterr().err
    assert lomar(["collections", "add", collection, str(library / "a"), "--id", "x", "--url", url]) == 2
