"""`lomar classify|embed|reconstruct FILE... [--url URL] [--api-key KEY]`: call a running gateway, print JSON.

    lomar classify photo.jpg --top-k 3
    lomar embed a.jpg b.png > embeddings.json
    lomar reconstruct photo.jpg --mask-ratio 0.75 --seed 0 --out-dir previews/    # writes PNG strips

The gateway URL defaults to $LOMAR_URL, else http://127.0.0.1:8000. Exit status: 0 ok, 1 the gateway refused
(its error is printed), 2 bad usage. `lomar_serve/cli.py` dispatches to `classify`, `embed` and `reconstruct`.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import httpx

from lomar_serve.clients.errors import GatewayClientError
from lomar_serve.clients.gateway import LomarClient
from lomar_serve.clients.settings import ClientSettings, client_settings
from lomar_serve.common.settings import add_flags
from lomar_serve.gateway.api.schemas import ReconstructResponse

Command = Literal["classify", "embed", "reconstruct"]


def classify(argv: list[str]) -> int:
    """`lomar classify FILE...`: top-k labels as JSON."""
    return run("classify", argv)


def embed(argv: list[str]) -> int:
    """`lomar embed FILE...`: embeddings as JSON."""
    return run("embed", argv)


def reconstruct(argv: list[str]) -> int:
    """`lomar reconstruct FILE...`: PNG strips written to --out-dir, their paths as JSON."""
    return run("reconstruct", argv)


def build_parser(command: Command) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"lomar {command}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="image files (sent as one batch)")
    add_flags(parser, ClientSettings, {"--url": "url", "--api-key": "api_key"})
    parser.add_argument("--model", help="model name (default: the gateway's default)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds")
    if command == "classify":
        parser.add_argument("--top-k", type=int, default=5, help="labels per image (more than the classes: all)")
    elif command == "embed":
        parser.add_argument("--no-normalize", action="store_true", help="raw vectors instead of unit-norm ones")
    else:
        parser.add_argument("--mask-ratio", type=float, default=0.8)
        parser.add_argument("--seed", type=int, help="fixes the mask (random if absent)")
        parser.add_argument("--out-dir", type=Path, default=Path("."), help="where the PNG strips go")
    return parser


def run(command: Command, argv: list[str]) -> int:
    """Entry point shared by the three commands."""
    args = build_parser(command).parse_args(argv)
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        print(f"lomar {command}: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2

    def action(client: LomarClient) -> dict[str, Any]:
        if command == "classify":
            result = client.classify(args.files, top_k=args.top_k, model=args.model).model_dump()
        elif command == "embed":
            result = client.embed(args.files, normalize=not args.no_normalize, model=args.model).model_dump()
        else:
            result = _write_strips(client.reconstruct(args.files, mask_ratio=args.mask_ratio, seed=args.seed,
                                                      model=args.model), args.files, args.out_dir)
        for path, item in zip(args.files, result["results"]):
            item["file"] = str(path)
        return result

    return call_gateway(command, args, action)


def call_gateway(program: str, args: argparse.Namespace, action: Callable[[LomarClient], dict[str, Any]]) -> int:
    """Run `action` with a client of the gateway (--url, else $LOMAR_URL) and print its result as JSON. Returns the
    exit status: 0, 1 when the gateway refused (its error printed) or cannot be reached, 2 bad settings."""
    settings = client_settings(args, f"lomar {program}")
    if settings is None:
        return 2
    url, timeout = settings.url, args.timeout
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    try:
        with LomarClient(url, api_key=api_key, timeout_s=timeout) as client:
            result = action(client)
    except GatewayClientError as error:
        print(f"lomar {program}: {error}", file=sys.stderr)
        return 1
    except httpx.HTTPError as error:
        print(f"lomar {program}: cannot reach the gateway at {url}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def _write_strips(result: ReconstructResponse, files: list[Path], out_dir: Path) -> dict[str, Any]:
    """Save each strip as OUT_DIR/<stem>.reconstruction.png; the JSON keeps the paths instead of base64."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path, item in zip(files, result.results):
        target = out_dir / f"{path.stem}.reconstruction.png"
        target.write_bytes(base64.b64decode(item.strip))
        written.append({"png": str(target)})
    return {**result.model_dump(exclude={"results"}), "results": written}
