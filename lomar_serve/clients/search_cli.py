"""`lomar collections ...` and `lomar search COLLECTION IMAGE`: collections of a running gateway, JSON output.

    lomar collections create photos [--model lomar_classifier]
    lomar collections add photos a.jpg b.jpg [--id a --id b] [--metadata '{"album": "2024"}'] [--upsert]
    lomar collections add photos ~/Pictures 'scans/**/*.png'     # folders (recursive) and globs; resumable
    lomar collections list | show photos | remove photos IMAGE_ID | delete photos
    lomar collections images photos [--name cats/a.jpg] [--offset 0] [--limit 100]
    lomar search photos query.jpg [--top-k 5] [--threshold 0.9] [--filter '{"album": "2024"}']
    lomar search photos --id a                      # neighbours of an indexed image

The gateway URL defaults to $LOMAR_URL, else http://127.0.0.1:8000. Exit status: 0 ok, 1 the gateway refused
(its error is printed), 2 bad usage.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lomar_serve.clients import ingest
from lomar_serve.clients.gateway import LomarClient
from lomar_serve.clients.gateway_cli import call_gateway
from lomar_serve.clients.settings import ClientSettings
from lomar_serve.common.settings import add_flags
from lomar_serve.gateway.api.schemas import ON_DUPLICATE


def _common() -> argparse.ArgumentParser:
    """--url and --timeout, accepted after any subcommand."""
    parser = argparse.ArgumentParser(add_help=False)
    add_flags(parser, ClientSettings, {"--url": "url", "--api-key": "api_key"})
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds")
    return parser


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def collections_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lomar collections", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = [_common()]
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every collection", parents=common)
    for name, text in (("show", "a collection's model, version and counts"), ("delete", "delete a collection")):
        commands.add_parser(name, help=text, parents=common).add_argument("name")
    images = commands.add_parser("images", help="ids, names and metadata of a collection's images", parents=common)
    images.add_argument("name")
    images.add_argument("--name", action="append", dest="names", help="only images of this exact name (repeat)")
    images.add_argument("--offset", type=int, default=0)
    images.add_argument("--limit", type=int, default=100)
    create = commands.add_parser("create", help="create a collection", parents=common)
    create.add_argument("name")
    create.add_argument("--model", help="classifier that embeds the images (default: the gateway's)")
    add = commands.add_parser("add", help="embed and add image files, folders (recursive) and glob patterns",
                              parents=common, description=ingest.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add.add_argument("name")
    add.add_argument("paths", nargs="+", metavar="PATH", help="an image file, a folder, or a glob ('a/**/*.jpg')")
    add.add_argument("--id", action="append", dest="ids", help="one per image (default: generated)")
    add.add_argument("--metadata", type=_json_object, help="a JSON object given to every image")
    add.add_argument("--upsert", action="store_true", help="replace images whose id exists")
    add.add_argument("--on-duplicate", choices=ON_DUPLICATE, default="skip",
                     help="an image whose bytes the collection holds under another name: skip it (default), "
                          "replace that image, or add it again")
    add.add_argument("--chunk-size", type=int, help="images per request at most (default: the gateway's limit)")
    add.add_argument("--concurrency", type=int, default=2, help="requests in flight")
    add.add_argument("--retries", type=int, default=5, help="retries of a request after a transient failure")
    add.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="a progress bar on stderr (default: when stderr is a terminal)")
    remove = commands.add_parser("remove", help="remove an image", parents=common)
    remove.add_argument("name")
    remove.add_argument("image_id")
    return parser


def search_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lomar search", description=__doc__, parents=[_common()],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("collection")
    parser.add_argument("file", nargs="?", type=Path, help="the query image")
    parser.add_argument("--id", help="search with this indexed image instead of a file")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--threshold", type=float, help="only hits scoring at least this (near duplicates)")
    parser.add_argument("--filter", type=_json_object, help="metadata equality filter, a JSON object")
    return parser


def collections_main(argv: list[str]) -> int:
    args = collections_parser().parse_args(argv)
    if args.command == "add":
        try:
            sources = ingest.find_images(args.paths)
        except FileNotFoundError as error:
            print(f"lomar collections: {error}", file=sys.stderr)
            return 2
        if args.ids and len(args.ids) != len(sources):
            print(f"lomar collections: {len(args.ids)} --id for {len(sources)} images", file=sys.stderr)
            return 2
        options = ingest.IngestOptions(
            metadata=args.metadata, ids=args.ids, upsert=args.upsert, on_duplicate=args.on_duplicate,
            chunk_images=args.chunk_size, concurrency=args.concurrency, retries=args.retries,
            progress=sys.stderr.isatty() if args.progress is None else args.progress)
    actions: dict[str, Callable[[LomarClient], dict[str, Any]]] = {
        "list": lambda c: c.collections(),
        "show": lambda c: c.collection(args.name),
        "delete": lambda c: c.delete_collection(args.name),
        "images": lambda c: c.images(args.name, offset=args.offset, limit=args.limit, names=args.names),
        "create": lambda c: c.create_collection(args.name, model=args.model),
        "add": lambda c: ingest.ingest(c, args.name, sources, options),
        "remove": lambda c: c.delete_image(args.name, args.image_id),
    }
    return call_gateway("collections", args, actions[args.command])


def search_main(argv: list[str]) -> int:
    args = search_parser().parse_args(argv)
    if (args.file is None) == (args.id is None):
        print("lomar search: give a query image file or --id", file=sys.stderr)
        return 2
    if args.file is not None and not args.file.is_file():
        print(f"lomar search: no such file: {args.file}", file=sys.stderr)
        return 2
    return call_gateway("search", args, lambda c: c.search(args.collection, args.file, image_id=args.id,
                                                           top_k=args.top_k, threshold=args.threshold,
                                                           where=args.filter))
