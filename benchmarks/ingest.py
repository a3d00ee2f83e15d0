"""Ingesting a folder into a collection end to end (`LomarClient.ingest`: read, hash, look up, send in chunks; the
gateway decodes, embeds, stores and indexes) against the raw embedding throughput of the same model on the same
machine (POST /v1/embed with the same images in the same batches, one client), side by side.

    python benchmarks/ingest.py                          # exports the official micro fixtures, starts `lomar serve`
    python benchmarks/ingest.py --images 3000 --model-repository model_repository
    python benchmarks/ingest.py --before /path/to/a/checkout/of/main   # and that checkout's stack, alternately
    python benchmarks/ingest.py --job        # also the same folder as an ingest job (control plane + worker)

The images are distinct JPEGs (crops of scikit-image's photographs at distinct offsets, resized to 640x480,
quality 90).
Printed per stack: images/s of each, their ratio, the time 100k images would take at the measured ingest rate,
the CPU each takes per image (the stack's processes and this one, the client's, in all and by process; it depends
less on what else the machine runs than the rates do) and the mean size of a stored model input. Medians over the
rounds; with --before, every round measures both stacks one after the other. With --job, the stack this benchmark
starts has a control plane and a worker (an admin token, the images' folder as its data root), and each round also
runs an ingest job of the folder into a new collection (`lomar jobs ingest`): its rate over the job's stage (the
worker's own figure) and from submission to its end (queue, claim and the job's API key included).
"""
from __future__ import annotations

import argparse
import io
import os
import secrets
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from lomar_serve.clients.admin import AdminClient  # noqa: E402
from lomar_serve.clients.gateway import LomarClient  # noqa: E402
from lomar_serve.clients.ingest import IngestOptions  # noqa: E402
from lomar_serve.search.store import STORE_FILE_NAME  # noqa: E402
from serve_load import cpu_seconds, export_fixtures, free_port, start_stack  # noqa: E402

# scikit-image's photographs, each once (its `cat` is `chelsea`: the same bytes would be skipped as known content)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "coins", "camera")
OPEN_SCOPES = "infer,collections:read,collections:write"  # the ingest creates collections: no API key needed
ADMIN_TOKEN = "ingest-benchmark-admin-token"  # --job: the stack's control plane


@dataclass
class Stack:
    """A gateway measured: its URL, and with a stack this benchmark started, its pid and collections folder."""

    label: str
    url: str
    pid: int | None = None
    collections: Path | None = None
    raws: list[float] = field(default_factory=list)  # img/s per round
    ingests: list[float] = field(default_factory=list)
    raw_cpu: list[dict[str, float]] = field(default_factory=list)  # per round: process -> CPU ms per image
    ingest_cpu: list[dict[str, float]] = field(default_factory=list)
    stored: float | None = None  # mean bytes of a stored model input
    admin_url: str | None = None  # --job: the stack's control plane
    jobs: list[float] = field(default_factory=list)  # --job: img/s over the job's stage, per round
    job_walls: list[float] = field(default_factory=list)  # --job: img/s from submission to the job's end

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds so far of this process ("client") and of the stack's processes by executable name (python:
        the gateway; tritonserver; triton_python_backend_stub: the model); the client's alone for a gateway not
        started here."""
        used = cpu_seconds(self.pid) if self.pid is not None else {}
        return {**used, "client": sum(os.times()[:2])}

    def per_image(self, before: dict[str, float], images: int) -> dict[str, float]:
        """CPU ms per image of each process since `before` (a cpu_s())."""
        return {name: (seconds - before.get(name, 0.0)) / images * 1000 for name, seconds in self.cpu_s().items()}


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


def ingest(stack: Stack, folder: Path, concurrency: int) -> tuple[float, dict[str, float], dict]:
    """images/s and CPU ms per image (by process) of LomarClient.ingest of `folder` into a new collection, and its
    report; the mean bytes of a stored model input are kept in `stack.stored` (from the collection's SQLite file)."""
    with LomarClient(stack.url, timeout_s=300) as client:
        name = f"bench-{secrets.token_hex(3)}"
        client.create_collection(name)
        cpu, start = stack.cpu_s(), time.perf_counter()
        report = client.ingest(name, [folder], concurrency=concurrency)
        rate, cpu = report["files"] / (time.perf_counter() - start), stack.per_image(cpu, report["files"])
        path = None if stack.collections is None else stack.collections / name / STORE_FILE_NAME
        if path is not None and path.is_file():  # the embedded engine's (not pgvector's)
            with closing(sqlite3.connect(path)) as db:
                stack.stored = db.execute("SELECT avg(length(input)) FROM items").fetchone()[0]
        client.delete_collection(name)
    return rate, cpu, report


def ingest_job(stack: Stack, folder: Path) -> tuple[float, float]:
    """img/s of an ingest job of `folder` into a new collection: over its stage (the worker's figure) and from its
    submission to its end."""
    assert stack.admin_url is not None
    name = f"job-{secrets.token_hex(3)}"
    admin = AdminClient(stack.admin_url, token=ADMIN_TOKEN, timeout_s=60)
    try:
        start = time.perf_counter()
        job = admin.submit({"kind": "ingest", "data_dir": str(folder), "collection": name, "create": True})
        while (job := admin.job(job["id"], tail=0))["state"] in ("queued", "running"):
            time.sleep(0.25)  # each look costs the control plane CPU the ingest needs: not too often
        wall = time.perf_counter() - start
    finally:
        admin.close()
    figures = job["metrics"].get("ingest", {})
    assert job["state"] == "succeeded" and figures.get("added") == figures.get("files"), job
    with LomarClient(stack.url) as client:
        client.delete_collection(name)
    return figures["img_per_s"], figures["files"] / wall


def measure(stack: Stack, paths: list[Path], folder: Path, batch: int, concurrency: int) -> None:
    """One round on `stack`: the raw embedding, then the ingest (then the ingest job, with --job)."""
    cpu = stack.cpu_s()
    stack.raws.append(raw_embedding(stack.url, paths, batch))
    stack.raw_cpu.append(stack.per_image(cpu, len(paths)))
    rate, cpu_used, report = ingest(stack, folder, concurrency)
    assert report["added"] == len(paths) and not report["failed"], report
    stack.ingests.append(rate)
    stack.ingest_cpu.append(cpu_used)
    if stack.admin_url is not None:
        stage, wall = ingest_job(stack, folder)
        stack.jobs.append(stage)
        stack.job_walls.append(wall)


def print_figures(stacks: list[Stack], images: int, batch: int, rounds: int, concurrency: int) -> None:
    print(f"{images} images of 640x480, {batch} per request, ingest with {concurrency} in flight, medians of "
          f"{rounds} rounds")
    print(f"{'stack':>8} {'raw /v1/embed img/s':>20} {'ingest img/s':>13} {'ingest/raw':>10} {'100k images':>12} "
          f"{'CPU ms/img raw':>15} {'ingest':>7} {'stored KB/img':>14}")
    for stack in stacks:
        raw, end_to_end = float(np.median(stack.raws)), float(np.median(stack.ingests))
        cpu = [f"{np.median([sum(used.values()) for used in rounds_used]):.2f}" if stack.pid else "-"
               for rounds_used in (stack.raw_cpu, stack.ingest_cpu)]
        stored = "-" if stack.stored is None else f"{stack.stored / 1000:.1f}"
        print(f"{stack.label:>8} {raw:>20.1f} {end_to_end:>13.1f} {end_to_end / raw:>10.2f} "
              f"{100_000 / end_to_end / 60:>8.1f} min {cpu[0]:>15} {cpu[1]:>7} {stored:>14}")
    for stack in stacks:
        if stack.jobs:
            stage, wall, raw = (float(np.median(values)) for values in (stack.jobs, stack.job_walls, stack.raws))
            print(f"{stack.label:>8} ingest job: {stage:.1f} img/s over its stage ({stage / raw:.2f}x raw), "
                  f"{wall:.1f} img/s from submission to its end ({wall / raw:.2f}x raw)")
    print("CPU ms/img by process (medians): raw -> ingest")
    for stack in stacks:
        names = sorted({name for used in stack.raw_cpu + stack.ingest_cpu for name in used})
        print(f"{stack.label:>8} " + ", ".join(
            f"{name} {np.median([used.get(name, 0.0) for used in stack.raw_cpu]):.2f} -> "
            f"{np.median([used.get(name, 0.0) for used in stack.ingest_cpu]):.2f}" for name in names))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--model-repository", type=Path, help="default: export the official micro fixtures")
    parser.add_argument("--url", help="a running gateway instead of starting `lomar serve`")
    parser.add_argument("--before", type=Path, help="a checkout of the project whose `lomar serve` is measured too, "
                                                    "on the same model repository, alternately with this one")
    parser.add_argument("--rounds", type=int, default=2, help="raw and ingest measured alternately this often")
    parser.add_argument("--concurrency", type=int, default=IngestOptions.concurrency,
                        help="the ingest's requests in flight (default: the client's)")
    parser.add_argument("--job", action="store_true", help="also an ingest job of the folder each round (the "
                                                          "stack this benchmark starts gets a control plane and a "
                                                          "worker)")
    args = parser.parse_args()
    if args.url and (args.before or args.job):
        parser.error("--before and --job need stacks this benchmark starts: not with --url")
    with tempfile.TemporaryDirectory(prefix="lomar-ingest-") as scratch:
        work = Path(scratch)
        paths = write_images(work / "images", args.images)
        processes = []
        try:
            if args.url:
                stacks = [Stack("gateway", args.url)]
            else:
                repository = args.model_repository or export_fixtures(work)
                stacks = []
                for label, tree in [("this", REPO)] + ([("before", args.before.resolve())] if args.before else []):
                    collections = work / f"collections-{label}"  # the stack's own
                    env = {"LOMAR_OPEN_SCOPES": OPEN_SCOPES, "LOMAR_SEARCH_DIR": str(collections)}
                    admin_url = None
                    if args.job and label == "this":
                        port = free_port()
                        env.update(LOMAR_ADMIN_TOKEN=ADMIN_TOKEN, LOMAR_DATA_ROOTS=str(work),
                                   LOMAR_JOBS_DIR=str(work / "jobs"), LOMAR_CONTROL_PORT=str(port))
                        admin_url = f"http://127.0.0.1:{port}"
                    process, url, _ = start_stack(repository, work / f"serve-{label}.log", env, tree=tree)
                    processes.append(process)
                    stacks.append(Stack(label, url, process.pid, collections, admin_url=admin_url))
            with LomarClient(stacks[0].url) as client:
                batch = client.limits().max_images  # what the ingest sends per request
            for stack in stacks:
                raw_embedding(stack.url, paths[:batch], batch)  # warm-up
            for _ in range(args.rounds):
                for stack in stacks:
                    measure(stack, paths, work / "images", batch, args.concurrency)
        finally:
            for process in processes:
                process.terminate()
                process.wait(60)
    print_figures(stacks, len(paths), batch, args.rounds, args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
