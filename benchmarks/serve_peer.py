"""The gateway + Triton (`lomar serve`) against a peer: the same `model.onnx` served in-process by LitServe + ONNX
Runtime with the same decoding, closed loop, the targets alternating in one run.

    python benchmarks/serve_peer.py                                    # the built-in model, 1, 4 and 16 clients
    python benchmarks/serve_peer.py --concurrency 1 --duration 20
    python benchmarks/serve_peer.py --before /path/to/other/checkout   # + that checkout's gateway (before/after)
    python benchmarks/serve_peer.py --peer-only --port 8123            # the peer alone

The peer is what one would write without Triton: a LitServe `LitAPI` on `POST /v1/classify` that reads the
multipart field `image`, decodes it with `contracts.preprocessing.decode_image` and the gateway's default options
(the bytes the gateway sends Triton), runs the classifier with ONNX Runtime's CPU provider in LitServe's worker
process and answers the same top-5 labels JSON. Every target gets the same requests (one JPEG photograph each,
multipart) from the load generator of `benchmarks/serve_load.py`, in `--rounds` alternating slices per client
count, so a shared machine's drifting load hits all alike. Printed per target: images/s, p50 and p99, the CPU its
processes spent per image inside the measured windows (what limits throughput on a small CPU, and much less
disturbed by other work on the machine than wall-clock figures), and each gateway's images/s over the peer's.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import litserve as ls
import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.serve_load import (Cell, cpu_seconds, free_port, photo_jpegs, run_gateway, start_stack,  # noqa: E402
                                   stop, summarise, wait_ready)
from contracts.model_repository import DEFAULT_CLASSIFIER, LABELS_FILE, ONNX_FILE  # noqa: E402
from contracts.preprocessing import decode_image  # noqa: E402
from lomar_serve.gateway.service import decode_options  # noqa: E402
from lomar_serve.gateway.settings import Settings  # noqa: E402

ENDPOINT = "classify"
TOP_K = 5  # the gateway's default top_k


class PeerAPI(ls.LitAPI):
    """The peer: multipart `image` -> decode_image -> ONNX Runtime -> top-k labels (in LitServe's worker)."""

    def __init__(self, model_dir: Path, version: str, threads: int, spinning_stop: bool, max_batch_size: int,
                 batch_timeout: float) -> None:
        super().__init__(api_path=f"/v1/{ENDPOINT}", max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.model_dir, self.version, self.threads = model_dir, version, threads
        self.spinning_stop = spinning_stop

    def setup(self, device: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.add_session_config_entry("session.force_spinning_stop", "1" if self.spinning_stop else "0")
        self.session = ort.InferenceSession(str(self.model_dir / self.version / ONNX_FILE), options,
                                            providers=["CPUExecutionProvider"])
        self.options = decode_options(Settings(model_repository=self.model_dir.parent),
                                      tuple(self.session.get_inputs()[0].shape[-2:]))
        self.labels = (self.model_dir / LABELS_FILE).read_text().splitlines()

    def decode_request(self, request) -> np.ndarray:  # noqa: ANN001 (starlette FormData)
        blobs = [upload.file.read() for upload in request.getlist("image")]
        return np.stack([decode_image(blob, self.options) for blob in blobs])  # (N, 3, H, W)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"image": images})[0]  # (N, C)

    def encode_response(self, logits: np.ndarray) -> dict:
        shifted = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
        scores = shifted / shifted.sum(axis=1, keepdims=True)
        results = []
        for row in scores:
            best = np.argsort(-row, kind="stable")[:TOP_K]
            results.append({"labels": [{"label": self.labels[i], "index": int(i), "score": float(row[i])}
                                       for i in best]})
        return {"model": self.model_dir.name, "model_version": self.version, "results": results}


def serve_peer(args: argparse.Namespace) -> int:
    model_dir = args.model_repository / args.model
    version = args.version or max((p.name for p in model_dir.iterdir() if p.name.isdigit()), key=int)
    api = PeerAPI(model_dir, version, args.peer_threads, args.peer_spinning_stop, args.peer_max_batch,
                  args.peer_batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=args.peer_workers,
                          fast_queue=args.peer_fast_queue)
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, log_level="warning",
               generate_client_file=False)
    return 0


def start_peer(args: argparse.Namespace, log_path: Path) -> tuple[subprocess.Popen, str]:
    """This script with --peer-only on a free port; returns (process, URL) once /health answers."""
    port = free_port()
    command = [sys.executable, __file__, "--peer-only", "--port", str(port), "--model-repository",
               str(args.model_repository), "--model", args.model, "--peer-workers", str(args.peer_workers),
               "--peer-threads", str(args.peer_threads), "--peer-max-batch", str(args.peer_max_batch),
               "--peer-batch-timeout", str(args.peer_batch_timeout)]
    command += [flag for flag, on in (("--peer-fast-queue", args.peer_fast_queue),
                                      ("--peer-spinning-stop", args.peer_spinning_stop)) if on]
    if args.version:
        command += ["--version", args.version]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_ready(process, f"{url}/health", log_path, "the peer", 120.0, group=True)
    return process, url


async def timed_slice(args: argparse.Namespace, url: str, root: int, jpegs: list[bytes], concurrency: int,
                      slice_s: float) -> tuple[list[float], int, float]:
    """One measured slice on one target: its latencies (s), errors, and the CPU seconds its processes (`root` and
    below) used inside the measured window."""
    loop = asyncio.get_running_loop()
    snapshots: list[float] = []

    def snapshot() -> None:
        snapshots.append(sum(cpu_seconds(root).values()))

    loop.call_later(args.warmup, snapshot)
    loop.call_later(args.warmup + slice_s, snapshot)
    latencies, errors = await run_gateway(url, ENDPOINT, args.model, jpegs, 1, concurrency, args.warmup, slice_s)
    return latencies, errors, snapshots[1] - snapshots[0] if len(snapshots) == 2 else float("nan")


def measure(args: argparse.Namespace, targets: dict[str, tuple[str, int]], jpegs: list[bytes],
            concurrency: int) -> list[Cell]:
    """Every target (name -> (URL, root pid)) at `concurrency` clients, alternating in `args.rounds` slices.
    Returns one cell per target, with the CPU its processes spent per image."""
    slice_s = args.duration / args.rounds
    names = list(targets)
    results: dict[str, tuple[list[float], int, float]] = {name: ([], 0, 0.0) for name in names}
    for round_index in range(args.rounds):
        order = names if round_index % 2 == 0 else names[::-1]  # none always goes first
        for name in order:
            latencies, errors, cpu = asyncio.run(timed_slice(args, *targets[name], jpegs, concurrency, slice_s))
            done, failed, spent = results[name]
            results[name] = (done + latencies, failed + errors, spent + cpu)
    cells = []
    for name, (latencies, errors, spent) in results.items():
        cell = summarise(name, 1, concurrency, latencies, errors, args.duration)
        cells.append(replace(cell, cpu_ms_per_image=spent * 1000.0 / max(len(latencies), 1)))
    return cells


def print_table(cells: list[Cell]) -> None:
    """One row per client count: each target's images/s, p50 and p99, then each gateway's ratio to the peer."""
    targets = list(dict.fromkeys(c.target for c in cells))
    gateways = [t for t in targets if t != "peer"]
    by_key = {(c.target, c.concurrency): c for c in cells}
    head = " | ".join(f"{t + ' img/s':>16} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/img':>10}" for t in targets)
    print(f"\n{'clients':>7} | {head} | " + " | ".join(f"{t + ' / peer':>16}" for t in gateways))
    for concurrency in sorted({c.concurrency for c in cells}):
        row = [by_key[(t, concurrency)] for t in targets]
        peer = by_key[("peer", concurrency)].images_per_s
        figures = " | ".join(f"{c.images_per_s:16.1f} {c.p50_ms:7.1f} {c.p99_ms:7.1f} {c.cpu_ms_per_image:10.1f}"
                             for c in row)
        ratios = " | ".join(f"{by_key[(t, concurrency)].images_per_s / peer if peer else float('nan'):15.2f}x"
                            for t in gateways)
        print(f"{concurrency:7d} | {figures} | {ratios}")
    failed = sum(c.errors for c in cells)
    if failed:
        print(f"warning: {failed} failed requests (not counted)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path, default=REPO / "model_repository")
    parser.add_argument("--model", default=DEFAULT_CLASSIFIER)
    parser.add_argument("--version", help="the peer's model version (default: the newest on disk)")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated client counts")
    parser.add_argument("--duration", type=float, default=12.0, help="measured seconds per client count and target")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each measured slice")
    parser.add_argument("--rounds", type=int, default=4, help="alternating slices per client count and target")
    parser.add_argument("--peer-workers", type=int, default=1, help="LitServe inference workers")
    parser.add_argument("--peer-threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its "
                                                                    "default, as the Triton runner)")
    parser.add_argument("--peer-max-batch", type=int, default=1, help="LitServe max_batch_size")
    parser.add_argument("--peer-batch-timeout", type=float, default=0.0, help="LitServe batch_timeout (s)")
    parser.add_argument("--peer-fast-queue", action="store_true", help="LitServe's ZeroMQ queues")
    parser.add_argument("--peer-spinning-stop", action="store_true", help=(
        "ONNX Runtime's threads stop spin-waiting when a run returns (session.force_spinning_stop 1, as the "
        "built-in model's runner on the CPU)"))
    parser.add_argument("--before", type=Path, help="another checkout of the project: its `lomar serve` on its own "
                                                    "model_repository/ joins the run as the target 'before'")
    parser.add_argument("--json", type=Path, help="also write the cells here")
    parser.add_argument("--peer-only", action="store_true", help="run only the peer server, on --port")
    parser.add_argument("--port", type=int, default=8123, help="the peer's port with --peer-only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.peer_only:
        return serve_peer(args)
    jpegs = photo_jpegs()
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="lomar-peer-") as scratch:
        processes: list[tuple[subprocess.Popen, bool]] = []  # (process, stop its whole group)
        try:
            targets = {}
            process, url, _ = start_stack(args.model_repository, Path(scratch) / "serve.log")
            processes.append((process, False))
            targets["gateway"] = (url, process.pid)
            if args.before:
                process, url, _ = start_stack(args.before / "model_repository", Path(scratch) / "before.log",
                                              tree=args.before.resolve())
                processes.append((process, False))
                targets["before"] = (url, process.pid)
            process, url = start_peer(args, Path(scratch) / "peer.log")
            processes.append((process, True))
            targets["peer"] = (url, process.pid)
            print(f"targets {targets} (gateway: lomar serve on {args.model_repository}; peer: LitServe + ONNX "
                  f"Runtime, {args.peer_workers} worker(s), max batch {args.peer_max_batch}, "
                  f"spinning {'stopped after a run' if args.peer_spinning_stop else 'on'}, "
                  f"{'ZeroMQ' if args.peer_fast_queue else 'default'} "
                  "queues)", flush=True)
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                cells += measure(args, targets, jpegs, concurrency)
                for cell in cells[-len(targets):]:
                    print(f"  {cell.target:7s} x {concurrency:2d} clients: {cell.images_per_s:7.1f} img/s  "
                          f"p50 {cell.p50_ms:6.1f} ms  p99 {cell.p99_ms:6.1f} ms  CPU {cell.cpu_ms_per_image:5.1f} "
                          "ms/img", flush=True)
        finally:
            for process, group in reversed(processes):
                stop(process, group)
    print_table(cells)
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in cells], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
