"""Closed-loop load on the serving stack: the gateway (JPEG in, JSON out) against Triton called directly with the
same images already preprocessed (UINT8 tensors, binary HTTP), side by side.

    python benchmarks/serve_load.py                                    # exports the official micro fixtures
    python benchmarks/serve_load.py --model-repository model_repository --concurrency 1,4,16 --batch-sizes 1,8
    python benchmarks/serve_load.py --url http://gw:8000 --triton-url triton:8000     # a running stack

Without --url it starts `lomar serve` (Triton + gateway) on the repository and stops it at the end. Each cell
runs `--duration` seconds after a warm-up: C clients each send a request of B images, wait for the answer and
send the next (closed loop). Printed: images/s, p50 and p99 request latency, and gateway / Triton throughput.
The load generator runs on the same machine, so on a small CPU it competes with the server for cores; both
columns pay that cost.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from contracts.model_repository import DEFAULT_CLASSIFIER  # noqa: E402
from contracts.preprocessing import DecodeOptions, decode_image  # noqa: E402
from lomar_serve.gateway.inference import TritonClient  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "official_lomar_micro"  # vendored reference checkpoints
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "cat", "coins")


@dataclass
class Cell:
    """One (target, batch size, concurrency) measurement."""

    target: str  # "gateway" or "triton"
    batch_size: int
    concurrency: int
    images_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_ms_per_image: float = float("nan")  # CPU of the target's processes per image (serve_peer.py measures it)


def photo_jpegs() -> list[bytes]:
    """scikit-image's bundled photographs as JPEG (quality 90), sizes 300x451 .. 872x1000."""
    import skimage.data
    from PIL import Image

    blobs = []
    for name in PHOTOS:
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB").save(buffer, "JPEG", quality=90)
        blobs.append(buffer.getvalue())
    return blobs


async def closed_loop(send, concurrency: int, warmup_s: float, duration_s: float) -> tuple[list[float], int]:
    """Run `concurrency` workers calling `await send(worker, i)` back to back. Returns the latencies (s) of the
    requests that completed inside the measured window (after the warm-up) and the count of errors among them."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup_s, start + warmup_s + duration_s

    async def worker(index: int) -> None:
        nonlocal errors
        step = 0
        while time.perf_counter() < stop_at:
            begin = time.perf_counter()
            ok = await send(index, step)
            end = time.perf_counter()
            step += 1
            if measure_from <= end <= stop_at:
                if ok:
                    latencies.append(end - begin)
                else:
                    errors += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return latencies, errors


def summarise(target: str, batch: int, concurrency: int, latencies: list[float], errors: int,
              duration_s: float) -> Cell:
    values = np.array(latencies) * 1000.0 if latencies else np.array([np.nan])
    return Cell(target=target, batch_size=batch, concurrency=concurrency,
                images_per_s=len(latencies) * batch / duration_s, p50_ms=float(np.percentile(values, 50)),
                p99_ms=float(np.percentile(values, 99)), requests=len(latencies), errors=errors)


async def run_gateway(url: str, endpoint: str, model: str, jpegs: list[bytes], batch: int, concurrency: int,
                      warmup_s: float, duration_s: float) -> tuple[list[float], int]:
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def send(worker: int, step: int) -> bool:
            form = aiohttp.FormData()
            for k in range(batch):
                blob = jpegs[(worker + step * batch + k) % len(jpegs)]
                form.add_field("image", blob, filename=f"{k}.jpg", content_type="image/jpeg")
            async with session.post(f"{url}/v1/{endpoint}", params={"model": model}, data=form) as response:
                await response.read()
                return response.status == 200

        latencies, errors = await closed_loop(send, concurrency, warmup_s, duration_s)
    return latencies, errors


async def run_triton(triton_url: str, model: str, output: str, tensors: np.ndarray, batch: int, concurrency: int,
                     warmup_s: float, duration_s: float) -> tuple[list[float], int]:
    client = TritonClient(triton_url, timeout_s=120)
    batches = [np.ascontiguousarray(np.take(tensors, range(i, i + batch), axis=0, mode="wrap"))
               for i in range(len(tensors))]
    try:
        async def send(worker: int, step: int) -> bool:
            try:
                await client.infer(model, {"image": batches[(worker + step * batch) % len(batches)]}, [output])
                return True
            except Exception:  # noqa: BLE001 (counted as an error cell, the benchmark goes on)
                return False

        latencies, errors = await closed_loop(send, concurrency, warmup_s, duration_s)
    finally:
        await client.close()
    return latencies, errors


def measure_pair(args: argparse.Namespace, url: str, triton_url: str, jpegs: list[bytes], tensors: np.ndarray,
                 output: str, batch: int, concurrency: int) -> list[Cell]:
    """Triton direct and the gateway for one (batch, concurrency), alternating in `args.rounds` slices so that
    drifts in a shared machine's load hit both alike. Returns [triton cell, gateway cell]."""
    slice_s = args.duration / args.rounds
    results: dict[str, tuple[list[float], int]] = {"triton": ([], 0), "gateway": ([], 0)}
    for _ in range(args.rounds):
        for target in ("triton", "gateway"):
            if target == "triton":
                run = run_triton(triton_url, args.model, output, tensors, batch, concurrency, args.warmup, slice_s)
            else:
                run = run_gateway(url, args.endpoint, args.model, jpegs, batch, concurrency, args.warmup, slice_s)
            latencies, errors = asyncio.run(run)
            results[target] = (results[target][0] + latencies, results[target][1] + errors)
    return [summarise(target, batch, concurrency, latencies, errors, args.duration)
            for target, (latencies, errors) in results.items()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def export_fixtures(directory: Path) -> Path:
    """The official micro checkpoints (tests/fixtures) exported as lomar_classifier / lomar_reconstruction (needs torch)."""
    from export.pipeline import ExportOptions, export_checkpoint

    repository = directory / "model_repository"
    export_checkpoint(ExportOptions(checkpoint=FIXTURES / "official_finetuned.pth", task="classify", out=repository))
    export_checkpoint(ExportOptions(checkpoint=FIXTURES / "official_pretrained.pth", task="reconstruct",
                                    out=repository))
    return repository


def start_stack(repository: Path, log_path: Path, env: dict[str, str] | None = None, tree: Path = REPO
                ) -> tuple[subprocess.Popen, str, str]:
    """`lomar serve` on the repository, with `env` (LOMAR_* settings) added to this process's environment and the
    code of the project checkout `tree` (another one: before/after comparisons); returns (process, gateway URL,
    Triton "host:port")."""
    port = free_port()
    with open(log_path, "wb") as log:
        # run in `tree`: `python -m` puts the working directory before PYTHONPATH, so started from another
        # checkout it would serve that checkout's code
        process = subprocess.Popen([sys.executable, "-m", "lomar_serve.cli", "serve", "--model-repository",
                                    str(Path(repository).resolve()), "--port", str(port), "--log-level", "warning"],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=tree,
                                   env={**os.environ, **(env or {}), "PYTHONPATH": str(tree)})
    url = f"http://127.0.0.1:{port}"
    wait_ready(process, f"{url}/readyz", log_path, "lomar serve", 300.0)
    return process, url, triton_url_of(process.pid)


def wait_ready(process: subprocess.Popen, url: str, log_path: Path, what: str, timeout_s: float,
               group: bool = False) -> None:
    """Until `url` answers 200; SystemExit with the end of the log if `process` exits first, or stopped (`stop`,
    its whole group with `group`) if the time runs out."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    stop(process, group)
    raise SystemExit(f"{what} was not ready in time")


def stop(process: subprocess.Popen, group: bool = False) -> None:
    """SIGTERM, SIGKILL after 60 s. `lomar serve` stops its gateway and Triton itself; `group`: the whole process
    group of a process started in a session of its own (LitServe's workers outlive its main process otherwise)."""
    def kill(number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, number) if group else process.send_signal(number)

    kill(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        kill(signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 10
    while group and time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)  # anyone left in the group?
        except ProcessLookupError:
            return
        time.sleep(0.2)
    if group:
        kill(signal.SIGKILL)


def processes() -> dict[int, tuple[int, float, str]]:
    """Every process: pid -> (parent pid, CPU seconds used so far (user + system), executable)."""
    table = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode()
        except OSError:
            continue
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, argv0)
    return table


def descendants(root: int, table: dict[int, tuple[int, float, str]]) -> list[int]:
    """`root` and every process below it."""
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, (ppid, _, _) in table.items() if ppid in frontier]
        found += frontier
    return found


def cpu_seconds(root: int) -> dict[str, float]:
    """CPU seconds used so far by `root` and its descendants, by executable name (tritonserver, python, ...)."""
    table = processes()
    used: dict[str, float] = {}
    for pid in descendants(root, table):
        if pid in table:
            name = Path(table[pid][2]).name
            used[name] = used.get(name, 0.0) + table[pid][1]
    return used


def triton_url_of(parent: int) -> str:
    """Triton's HTTP "host:port" from the command line of the tritonserver child of `parent`."""
    for pid, (ppid, _, argv0) in processes().items():
        if ppid == parent and argv0.endswith("tritonserver"):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            args = dict(arg.split("=", 1) for arg in argv[1:] if "=" in arg)
            return f"{args['--http-address']}:{args['--http-port']}"
    raise SystemExit("no tritonserver child found")


def print_table(cells: list[Cell], endpoint: str, device: str) -> None:
    print(f"\nclosed-loop load, {endpoint}, JPEG in ({device})")
    print(f"{'batch':>5} {'conc':>4} | {'gateway img/s':>13} {'p50 ms':>8} {'p99 ms':>8} | "
          f"{'triton img/s':>12} {'p50 ms':>8} {'p99 ms':>8} | {'gw/triton':>9}")
    by_key = {(c.target, c.batch_size, c.concurrency): c for c in cells}
    for batch, concurrency in sorted({(c.batch_size, c.concurrency) for c in cells}):
        gw, tr = by_key.get(("gateway", batch, concurrency)), by_key.get(("triton", batch, concurrency))
        ratio = f"{gw.images_per_s / tr.images_per_s:9.0%}" if gw and tr and tr.images_per_s else f"{'-':>9}"
        gw_text = f"{gw.images_per_s:13.1f} {gw.p50_ms:8.1f} {gw.p99_ms:8.1f}" if gw else " " * 31
        tr_text = f"{tr.images_per_s:12.1f} {tr.p50_ms:8.1f} {tr.p99_ms:8.1f}" if tr else " " * 30
        print(f"{batch:5d} {concurrency:4d} | {gw_text} | {tr_text} | {ratio}")
    failed = sum(c.errors for c in cells)
    if failed:
        print(f"warning: {failed} failed requests (not counted)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path,
                        help="repository to serve (default: export the official micro fixtures to a temp dir)")
    parser.add_argument("--url", help="a running gateway (then --triton-url is required too)")
    parser.add_argument("--triton-url", help="host:port of the running gateway's Triton HTTP endpoint")
    parser.add_argument("--endpoint", choices=("classify", "embed"), default="classify")
    parser.add_argument("--model", default=DEFAULT_CLASSIFIER)
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated client counts")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated images per request")
    parser.add_argument("--duration", type=float, default=9.0, help="measured seconds per cell and target")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each measured slice")
    parser.add_argument("--rounds", type=int, default=3, help="alternating slices per cell and target")
    parser.add_argument("--json", type=Path, help="also write the cells here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if bool(args.url) != bool(args.triton_url):
        raise SystemExit("--url and --triton-url go together")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    jpegs = photo_jpegs()
    tensors = np.stack([decode_image(blob, DecodeOptions(size=(224, 224))) for blob in jpegs])  # (N, 3, H, W)
    output = "logits" if args.endpoint == "classify" else "embedding"
    process = None
    with tempfile.TemporaryDirectory(prefix="lomar-bench-") as scratch:
        url, triton_url = args.url, args.triton_url
        if url is None:
            repository = args.model_repository or export_fixtures(Path(scratch))
            process, url, triton_url = start_stack(repository, Path(scratch) / "serve.log")
            print(f"serving {repository} at {url} (Triton {triton_url})")
        try:
            cells = []
            for batch in batch_sizes:
                for concurrency in concurrencies:
                    cells += measure_pair(args, url, triton_url, jpegs, tensors, output, batch, concurrency)
                    for cell in cells[-2:]:
                        print(f"  {cell.target:7s} batch {batch:2d} x {concurrency:2d} clients: "
                              f"{cell.images_per_s:7.1f} img/s  p50 {cell.p50_ms:6.1f} ms  p99 {cell.p99_ms:6.1f} ms",
                              flush=True)
        finally:
            if process is not None:
                stop(process)
    device = f"{os.cpu_count()} CPU cores" if not _has_gpu() else "GPU"
    print_table(cells, args.endpoint, device)
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in cells], indent=2))
    return 0


def _has_gpu() -> bool:
    return Path("/dev/nvidia0").exists()


if __name__ == "__main__":
    sys.exit(main())
