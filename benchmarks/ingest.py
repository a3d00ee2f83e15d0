"""Ingesting a folder into a collection end to end (`LomarClient.ingest`: read, hash, look up, send in chunks; the
gateway decodes, embeds, stores and indexes) against the raw embedding throughput of the same model on the same
machine (POST /v1/embed with the same images in the same batches, one client), side by side.

    python benchmarks/ingest.py                          # exports the official micro fixtures, starts `lomar serve`
    python benchmarks/ingest.py --images 3000 --model-repository model_repository

The images are distinct JPEGs (crops of scikit-image's photographs at distinct offsets, resized to 640x480,
quality 90).
Printed: images/s of each, their ratio, the time 100k images would take at the measured ingest rate, and the mean
size of a stored model input (with the stack the benchmark starts).
"""
from __future__ import annotations

import argparse
import io
import secrets
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from lomar_serve.clients.gateway import LomarClient  # noqa: E402
from lomar_serve.search.store import STORE_FILE_NAME  # noqa: E402
from serve_load import export_fixtures, start_stack  # noqa: E402

# scikit-image's photographs, each once (its `cat` is `chelsea`: the same bytes would be skipped as known content)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "coins", "camera")


def write_images(folder: Path, count: int) -> list[Path]:
    """`count` distinct 640x480 JPEGs in sub-folders of 100: crops of the photographs at distinct offsets."""
    import skimage.data
    from PIL import Image

    photos = [Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB") for name in PHOTOS]
    paths = []
    for index in range(count):
        photo, step = photos[index % len(photos)], index // len(photos)
        left, top = step % 64, step // 64  # every crop of a photograph at another offset: other bytes
        crop = photo.crop((left, top, left + photo.width * 3 // 4, top + photo.height * 3 // 4)).resize((640, 480))
        path = folder / f"{index // 100:03d}" / f"{index:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        crop.save(buffer, "JPEG", quality=90)
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def raw_embedding(url: str, paths: list[Path], batch: int) -> float:
    """images/s of POST /v1/embed over `paths` in batches of `batch`, one request at a time."""
    with httpx.Client(base_url=url, timeout=300) as http:
        start = time.perf_counter()
        for offset in range(0, len(paths), batch):
            files = [("image", (path.name, path.read_bytes(), "image/jpeg")) for path in paths[offset:offset + batch]]
            response = http.post("/v1/embed", files=files)
            response.raise_for_status()
        return len(paths) / (time.perf_counter() - start)


def ingest(url: str, folder: Path, collections: Path | None) -> tuple[float, dict, float | None]:
    """images/s of LomarClient.ingest of `folder` into a new collection, its report, and the mean bytes of a stored
    model input (read from the collection's SQLite file in `collections`, the stack's own; None: not known)."""
    with LomarClient(url, timeout_s=300) as client:
        name = f"bench-{secrets.token_hex(3)}"
        client.create_collection(name)
        start = time.perf_counter()
        report = client.ingest(name, [folder])
        rate = report["files"] / (time.perf_counter() - start)
        stored, path = None, None if collections is None else collections / name / STORE_FILE_NAME
        if path is not None and path.is_file():  # the embedded engine's (not pgvector's)
            with closing(sqlite3.connect(path)) as db:
                stored = db.execute("SELECT avg(length(input)) FROM items").fetchone()[0]
        client.delete_collection(name)
    return rate, report, stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--model-repository", type=Path, help="default: export the official micro fixtures")
    parser.add_argument("--url", help="a running gateway instead of starting `lomar serve`")
    parser.add_argument("--rounds", type=int, default=2, help="raw and ingest measured alternately this often")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lomar-ingest-") as scratch:
        work = Path(scratch)
        paths = write_images(work / "images", args.images)
        process = None
        url = args.url
        if url is None:
            import os

            os.environ["LOMAR_SEARCH_DIR"] = str(work / "collections")  # the stack's own
            repository = args.model_repository or export_fixtures(work)
            # the ingest creates collections: open the write scope on the stack's own gateway (no API key)
            process, url, _ = start_stack(repository, work / "serve.log",
                                          {"LOMAR_OPEN_SCOPES": "infer,collections:read,collections:write"})
        try:
            with LomarClient(url) as client:
                batch = client.limits().max_images  # what the ingest sends per request
            raw_embedding(url, paths[:batch], batch)  # warm-up
            raws, ingests = [], []
            collections = None if args.url else work / "collections"
            for _ in range(args.rounds):
                raws.append(raw_embedding(url, paths, batch))
                rate, report, stored = ingest(url, work / "images", collections)
                assert report["added"] == len(paths) and not report["failed"], report
                ingests.append(rate)
        finally:
            if process is not None:
                process.terminate()
                process.wait(60)
    raw, end_to_end = float(np.median(raws)), float(np.median(ingests))
    print(f"{len(paths)} images of 640x480, {batch} per request, medians of {args.rounds} rounds")
    print(f"{'raw /v1/embed img/s':>20} {'ingest img/s':>13} {'ingest/raw':>10} {'100k images at this rate':>25}")
    print(f"{raw:>20.1f} {end_to_end:>13.1f} {end_to_end / raw:>10.2f} {100_000 / end_to_end / 60:>21.1f} min")
    if stored is not None:
        print(f"stored model input: {stored / 1000:.1f} KB per image on average")
    return 0


if __name__ == "__main__":
    sys.exit(main())
