"""What checking API keys and rate limits costs a gateway request, side by side in one run.

    python benchmarks/access_overhead.py                      # 3,000 requests to each gateway, alternating
    python benchmarks/access_overhead.py --requests 10000 --route /v1/models

Two `lomar gateway` processes on the same empty model repository and collections folder, identical but for access:
`open` lets anyone do everything (LOMAR_OPEN_SCOPES=infer,collections:read,collections:write, no rate limit);
`keyed` opens nothing and every request carries an API key (published as the control plane publishes keys) with a
rate limit it never reaches (1,000,000 per minute), so each request is authenticated (key parsed, SHA-256 of the
secret compared) and counted by the limiter. One client sends the same request to each in turn (closed loop, one
connection each) to a route that needs no model: the difference is the access check, nothing else. Printed: p50,
p99 and mean latency of each and their differences (target: p50 overhead under 1 ms).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from contracts.model_repository import API_KEYS_FILE  # noqa: E402
from lomar_serve.common.api_keys import SCOPES, KeyGrant, new_key, publish_grants  # noqa: E402
from tests.lomar_serve.processes import free_port  # noqa: E402


def start_gateway(work: Path, name: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - kept open by the child
    process = subprocess.Popen(
        [sys.executable, "-m", "lomar_serve.cli", "gateway", "--port", str(port), "--triton-url", "127.0.0.1:9",
         "--model-repository", str(work / "repo")], stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "LOMAR_SEARCH_DIR": str(work / "collections"),
             "LOMAR_LOG_LEVEL": "warning", **env})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"gateway {name} did not start: {(work / f'{name}.log').read_text()[-2000:]}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="requests to each gateway")
    parser.add_argument("--route", default="/v1/collections", help="a GET route that needs no model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lomar-access-") as folder:
        work = Path(folder)
        (work / "repo").mkdir()
        key_id, key, digest = new_key()
        publish_grants(work / "repo" / API_KEYS_FILE, [KeyGrant(key_id, "bench", SCOPES, digest, 1_000_000)])
        gateways = {"open": start_gateway(work, "open", {"LOMAR_OPEN_SCOPES": ",".join(SCOPES)}),
                    "keyed": start_gateway(work, "keyed", {"LOMAR_OPEN_SCOPES": ""})}
        headers = {"open": {}, "keyed": {"Authorization": f"Bearer {key}"}}
        clients = {name: httpx.Client(base_url=url, headers=headers[name], timeout=30)
                   for name, (_, url) in gateways.items()}
        latencies: dict[str, list[float]] = {name: [] for name in gateways}
        try:
            for index in range(args.requests + 200):  # the first 200 of each warm up
                for name, client in clients.items():
                    start = time.perf_counter()
                    response = client.get(args.route)
                    elapsed = time.perf_counter() - start
                    if response.status_code != 200:
                        raise SystemExit(f"{name}: {response.status_code} {response.text[:300]}")
                    if index >= 200:
                        latencies[name].append(elapsed * 1000)
        finally:
            for client in clients.values():
                client.close()
            for process, _ in gateways.values():
                process.terminate()
                process.wait(30)
    figures = {name: (np.percentile(values, 50), np.percentile(values, 99), float(np.mean(values)))
               for name, values in latencies.items()}
    print(f"GET {args.route}, {args.requests} requests to each gateway, alternating, one client")
    print(f"{'gateway':<8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, (p50, p99, mean) in figures.items():
        print(f"{name:<8} {p50:>8.3f} {p99:>8.3f} {mean:>8.3f}")
    (p50a, p99a, meana), (p50b, p99b, meanb) = figures["open"], figures["keyed"]
    print(f"{'overhead':<8} {p50b - p50a:>8.3f} {p99b - p99a:>8.3f} {meanb - meana:>8.3f}")


if __name__ == "__main__":
    main()
