"""Where one request's time goes through the gateway + Triton, at one client: a per-stage table.

    python benchmarks/serve_stages.py --model-repository model_repository
    python benchmarks/serve_stages.py --model-repository model_repository --requests 400 --rounds 4

Starts `lomar serve` with LOMAR_SERVER_TIMING=1 and sends JPEG photographs to /v1/classify one at a time
(multipart, batch 1). Each stage comes from the clock that sees it:
- the client's latency (aiohttp, as benchmarks/serve_load.py's load generator);
- the gateway's Server-Timing header: `read` (body + multipart parse), `decode`, `infer` (Triton round trip as the
  gateway sees it), `total` (the app, from the first middleware to the response headers);
- Triton's statistics (GET /v2/models/NAME/stats, before and after): request time, queue, compute input/infer/
  output, averaged per request;
- the CPU time of `lomar serve`'s processes (gateway, Triton, the Python-backend stub) during the gateway rounds;
- in this process, between the rounds: `decode_image` of the same photographs and ONNX Runtime's `run` of the same
  model at batch 1 with the runner's options from config.pbtxt (the work itself, without any serving around it), and the same tensors sent straight to Triton
  with the gateway's `TritonClient` (the Triton call without the gateway's event loop around it).
Rows are means in milliseconds; the stages sum to the client's mean latency.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.serve_load import cpu_seconds, photo_jpegs, start_stack, stop  # noqa: E402
from contracts.model_repository import CONFIG_FILE, DEFAULT_CLASSIFIER, ONNX_FILE  # noqa: E402
from contracts.preprocessing import decode_image  # noqa: E402
from contracts.triton_config import parse_config  # noqa: E402
from lomar_serve.gateway import server_timing  # noqa: E402
from lomar_serve.gateway.inference import TritonClient  # noqa: E402
from lomar_serve.gateway.service import decode_options  # noqa: E402
from lomar_serve.gateway.settings import Settings  # noqa: E402

TRITON_STAGES = ("success", "queue", "compute_input", "compute_infer", "compute_output")


def triton_totals(triton_url: str, model: str) -> dict[str, tuple[int, int]]:
    """Triton's cumulative inference statistics of `model`, summed over its versions: stage -> (count, ns)."""
    with urllib.request.urlopen(f"http://{triton_url}/v2/models/{model}/stats", timeout=10) as response:
        stats = json.load(response)["model_stats"]
    totals = {}
    for stage in TRITON_STAGES:
        entries = [version["inference_stats"][stage] for version in stats]
        totals[stage] = (sum(int(e["count"]) for e in entries), sum(int(e["ns"]) for e in entries))
    return totals


def triton_means(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Mean milliseconds per request of each stage between two snapshots."""
    requests = after["success"][0] - before["success"][0]
    return {stage: (after[stage][1] - before[stage][1]) / 1e6 / max(requests, 1) for stage in TRITON_STAGES}


async def gateway_requests(url: str, model: str, jpegs: list[bytes], count: int, start: int
                           ) -> tuple[list[float], list[dict[str, float]]]:
    """`count` sequential classify requests; returns client latencies (ms) and their Server-Timing stages."""
    latencies, stages = [], []
    async with aiohttp.ClientSession() as session:
        for step in range(start, start + count):
            form = aiohttp.FormData()
            form.add_field("image", jpegs[step % len(jpegs)], filename="0.jpg", content_type="image/jpeg")
            begin = time.perf_counter()
            async with session.post(f"{url}/v1/classify", params={"model": model}, data=form) as response:
                await response.read()
                end = time.perf_counter()
                if response.status != 200:
                    raise SystemExit(f"the gateway answered {response.status}: {await response.text()}")
                header = response.headers.get("Server-Timing")
            if header is None:
                raise SystemExit("no Server-Timing header: is LOMAR_SERVER_TIMING reaching the gateway?")
            latencies.append((end - begin) * 1000.0)
            stages.append(server_timing.parse(header))
    return latencies, stages


async def direct_requests(triton_url: str, model: str, tensors: np.ndarray, count: int, start: int) -> list[float]:
    """`count` sequential requests of one preprocessed image straight to Triton with the gateway's TritonClient."""
    client = TritonClient(triton_url, timeout_s=60)
    latencies = []
    try:
        for step in range(start, start + count):
            begin = time.perf_counter()
            await client.infer(model, {"image": tensors[step % len(tensors)][None]}, ["logits"])
            latencies.append((time.perf_counter() - begin) * 1000.0)
    finally:
        await client.close()
    return latencies


def runner_options(model_dir: Path):  # noqa: ANN201 (onnxruntime.SessionOptions)
    """ONNX Runtime options as the Python-backend runner sets them from the model's config.pbtxt parameters
    (thread count, spinning), so that the in-process run is the runner's."""
    import onnxruntime as ort

    parameters = {key: value.string_value
                  for key, value in parse_config((model_dir / CONFIG_FILE).read_text()).parameters.items()}
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(parameters.get("intra_op_threads", "0"))
    options.add_session_config_entry("session.force_spinning_stop", parameters.get("force_spinning_stop", "0"))
    return options


def timed_ms(function, items: list) -> list[float]:  # noqa: ANN001
    times = []
    for item in items:
        begin = time.perf_counter()
        function(item)
        times.append((time.perf_counter() - begin) * 1000.0)
    return times


def stage_table(client: list[float], stages: list[dict[str, float]], triton: dict[str, float],
                direct: list[float], direct_triton: dict[str, float], decode: list[float],
                onnx: list[float]) -> list[tuple[str, float, str]]:
    """(stage, mean ms, measured by) rows that add up to the client's mean latency."""
    mean = {name: float(np.mean([s.get(name, 0.0) for s in stages]))
            for name in (server_timing.READ, server_timing.DECODE, server_timing.INFER, server_timing.TOTAL)}
    client_ms, decode_ms, onnx_ms = float(np.mean(client)), float(np.mean(decode)), float(np.mean(onnx))
    in_triton = triton["success"]
    rows = [
        ("HTTP client <-> gateway (aiohttp, loopback, uvicorn)", client_ms - mean["total"], "client - total"),
        ("gateway: read body + multipart parse", mean["read"], "Server-Timing read"),
        ("gateway: decode_image (the work)", decode_ms, "in-process decode_image"),
        ("gateway: decode hops (threads, budget, stack)", mean["decode"] - decode_ms, "decode - decode_image"),
        ("gateway -> Triton -> gateway (tritonclient, HTTP)", mean["infer"] - in_triton, "infer - Triton request"),
        ("Triton: request handling outside the model", in_triton - triton["queue"] - triton["compute_input"]
         - triton["compute_infer"] - triton["compute_output"], "request - queue - compute"),
        ("Triton: queue (dynamic batcher)", triton["queue"], "Triton stats queue"),
        ("Triton: compute input + output", triton["compute_input"] + triton["compute_output"], "Triton stats"),
        ("Triton: Python backend (IPC, stub, runner)", triton["compute_infer"] - onnx_ms,
         "compute_infer - ORT run"),
        ("ONNX Runtime run, batch 1 (the work)", onnx_ms, "in-process session.run"),
        ("gateway: the rest (routing, softmax, top-k, JSON)",
         mean["total"] - mean["read"] - mean["decode"] - mean["infer"], "total - read - decode - infer"),
    ]
    rows.append(("= client latency (mean)", client_ms, f"p50 {np.percentile(client, 50):.2f}, "
                                                       f"p99 {np.percentile(client, 99):.2f}"))
    rows.append(("reference: tritonclient -> Triton direct, outside Triton",
                 float(np.mean(direct)) - direct_triton["success"], "direct - Triton request"))
    return rows


def print_rows(rows: list[tuple[str, float, str]]) -> None:
    print("\n| stage | ms | measured as |\n|---|---|---|")
    for stage, ms, how in rows:
        print(f"| {stage} | {ms:.2f} | {how} |")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path, default=REPO / "model_repository")
    parser.add_argument("--model", default=DEFAULT_CLASSIFIER)
    parser.add_argument("--requests", type=int, default=300, help="measured requests in all")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of gateway, direct and in-process")
    parser.add_argument("--warmup", type=int, default=30, help="requests before measuring")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a LOMAR_* setting for `lomar serve`, e.g. LOMAR_DECODE_THREADS=2 (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import onnxruntime as ort

    jpegs = photo_jpegs()
    model_dir = args.model_repository / args.model
    version = max((p.name for p in model_dir.iterdir() if p.name.isdigit()), key=int)
    session = ort.InferenceSession(str(model_dir / version / ONNX_FILE), runner_options(model_dir),
                                   providers=["CPUExecutionProvider"])
    options = decode_options(Settings(model_repository=args.model_repository),
                             tuple(session.get_inputs()[0].shape[-2:]))
    tensors = np.stack([decode_image(blob, options) for blob in jpegs])  # (N, 3, H, W)
    env = {"LOMAR_SERVER_TIMING": "1", **dict(item.split("=", 1) for item in args.env)}
    per_round = args.requests // args.rounds
    client, stages, direct, decode, onnx = [], [], [], [], []
    cpu: dict[str, float] = {}  # executable -> CPU seconds of the stack's processes during the gateway rounds
    triton_ns = {stage: 0.0 for stage in TRITON_STAGES}
    direct_ns = {stage: 0.0 for stage in TRITON_STAGES}
    with tempfile.TemporaryDirectory(prefix="lomar-stages-") as scratch:
        process, url, triton_url = start_stack(args.model_repository, Path(scratch) / "serve.log", env)
        try:
            asyncio.run(gateway_requests(url, args.model, jpegs, args.warmup, 0))
            asyncio.run(direct_requests(triton_url, args.model, tensors, args.warmup, 0))
            for _ in range(args.rounds):
                before, cpu_before = triton_totals(triton_url, args.model), cpu_seconds(process.pid)
                latencies, timings = asyncio.run(gateway_requests(url, args.model, jpegs, per_round, 0))
                means = triton_means(before, triton_totals(triton_url, args.model))
                for name, seconds in cpu_seconds(process.pid).items():
                    cpu[name] = cpu.get(name, 0.0) + seconds - cpu_before.get(name, 0.0)
                client += latencies
                stages += timings
                triton_ns = {k: triton_ns[k] + means[k] * per_round for k in TRITON_STAGES}
                before = triton_totals(triton_url, args.model)
                direct += asyncio.run(direct_requests(triton_url, args.model, tensors, per_round, 0))
                means = triton_means(before, triton_totals(triton_url, args.model))
                direct_ns = {k: direct_ns[k] + means[k] * per_round for k in TRITON_STAGES}
                decode += timed_ms(lambda blob: decode_image(blob, options),
                                   [jpegs[i % len(jpegs)] for i in range(per_round)])
                onnx += timed_ms(lambda image: session.run(["logits"], {"image": image[None]}),
                                 [tensors[i % len(tensors)] for i in range(per_round)])
        finally:
            stop(process)
    measured = args.rounds * per_round
    rows = stage_table(client, stages, {k: v / measured for k, v in triton_ns.items()}, direct,
                       {k: v / measured for k, v in direct_ns.items()}, decode, onnx)
    print(f"one client, {measured} requests of one JPEG photograph to /v1/classify ({args.model} v{version})")
    print_rows(rows)
    print("\nCPU per request of the stack's processes (python: the gateway, in `lomar serve`'s process; "
          "triton_python_backend_stub: the model's Python-backend process, ONNX Runtime's threads included)")
    for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        if seconds > 0:
            print(f"  {name}: {seconds * 1000.0 / measured:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
