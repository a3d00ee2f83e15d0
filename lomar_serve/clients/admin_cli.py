"""`lomar jobs|deploy|rollback`: retrain jobs, deploys and rollbacks through the control plane's admin API.

    lomar jobs submit --data-dir new_images --init runs/finetune/checkpoint-best.pth --epochs 5 --follow
    lomar jobs list
    lomar jobs show ID            lomar jobs follow ID
    lomar jobs cancel ID          lomar jobs resume ID
    lomar deploy NAME VERSION     load a version in every Triton, smoke-test it, then switch every gateway to it
                                  (the version that served before keeps serving until the new one is ready
                                  everywhere; on failure nothing changes)
    lomar rollback NAME           serve again the version deployed before the serving one (same safe switch)
    lomar keys create NAME --scope infer [--scope collections:write] [--rate-per-minute N] [--max-collections N]
    lomar keys list               lomar keys revoke ID      API keys of the gateways (the key is printed once)

--url (default $LOMAR_CONTROL_PLANE_URL or http://127.0.0.1:8100) and --token (default $LOMAR_ADMIN_TOKEN) pick the
control plane. Paths are resolved by the control plane, inside its data roots (LOMAR_DATA_ROOTS).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import yaml

from lomar_serve.clients.admin import DEFAULT_URL, AdminClient, AdminError
from lomar_serve.clients.settings import ClientSettings, client_settings
from lomar_serve.common.api_keys import SCOPE_DESCRIPTIONS, SCOPES
from lomar_serve.common.settings import add_flags


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, ClientSettings, {"--url": "control_plane_url", "--token": "admin_token"})


def run_with_client(args: argparse.Namespace, action: Callable[[AdminClient], int]) -> int:
    """Run `action` with a client of the control plane (--url/--token, else the environment); an API error becomes
    one line on stderr and exit code 1, bad settings exit code 2."""
    settings = client_settings(args, args.prog)
    if settings is None:
        return 2
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    client = AdminClient(settings.control_plane_url or DEFAULT_URL, token)
    try:
        return action(client)
    except AdminError as error:
        print(f"{args.prog}: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _print(answer: dict[str, Any]) -> int:
    print_json(answer)
    return 0


def _key_value(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE a JSON value (5e-3 is a number, as YAML would not read it), else YAML (a bare word)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if not value:
        return key.strip(), ""
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), yaml.safe_load(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lomar jobs", description="retrain jobs through the control plane's admin API",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="jobs, newest first")
    listing.add_argument("--limit", type=int, default=20)
    for name, text in (("show", "a job's record and log tail"), ("follow", "print a job's log until it ends"),
                       ("cancel", "cancel a job"), ("resume", "resume an interrupted, failed or cancelled job")):
        commands.add_parser(name, help=text).add_argument("job_id")
    submit = commands.add_parser("submit", help="start a retrain job (training, export, verification)")
    submit.add_argument("--kind", choices=("finetune", "pretrain"), default="finetune")
    submit.add_argument("--data-dir", required=True, help="labelled images inside a data root of the control plane")
    submit.add_argument("--val-dir")
    submit.add_argument("--init", help="checkpoint to start from (inside a data root)")
    submit.add_argument("--from-job", help="start from the checkpoint of an earlier job")
    submit.add_argument("--model", help="architecture, e.g. lomar_tiny_patch16")
    submit.add_argument("--model-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE")
    submit.add_argument("--model-name", help="Triton model to add the version to")
    submit.add_argument("--epochs", type=int, default=10)
    submit.add_argument("--option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                        help="training setting, e.g. batch_size=32 (repeatable)")
    submit.add_argument("--auto-deploy", action="store_true", help="deploy the version if it is not worse")
    submit.add_argument("--follow", action="store_true", help="print the log until the job ends")
    for sub in commands.choices.values():
        add_connection_args(sub)
    return parser


def follow(client: AdminClient, job_id: str) -> int:
    for text in client.follow(job_id):
        sys.stdout.write(text)
        sys.stdout.flush()
    job = client.job(job_id)
    print(f"job {job_id}: {job['state']}: {job['message']}")
    return 0 if job["state"] == "succeeded" else 1


def submit_request(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"kind": args.kind, "data_dir": args.data_dir, "epochs": args.epochs,
                               "model_options": dict(args.model_option), "options": dict(args.option),
                               "auto_deploy": args.auto_deploy}
    for field in ("val_dir", "init", "from_job", "model", "model_name"):
        if getattr(args, field):
            request[field] = getattr(args, field)
    return request


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    args.prog = "lomar jobs"

    def action(client: AdminClient) -> int:
        if args.command == "list":
            for job in client.jobs(args.limit):
                version = job["model_version"] or "-"
                print(f"{job['id']}  {job['state']:<11} {job['stage'] or '-':<7} {job['progress']:>5.0%}  "
                      f"{job['kind']:<8} {job['model_name']} v{version}  {job['message']}")
            return 0
        if args.command == "submit":
            job = client.submit(submit_request(args))
            print(f"job {job['id']} queued")
            return follow(client, job["id"]) if args.follow else 0
        if args.command == "follow":
            return follow(client, args.job_id)
        call = {"show": client.job, "cancel": client.cancel, "resume": client.resume}[args.command]
        print_json(call(args.job_id))
        return 0

    return run_with_client(args, action)


def deploy(argv: list[str]) -> int:
    """`lomar deploy NAME VERSION`."""
    parser = argparse.ArgumentParser(prog="lomar deploy", description="load a model version in Triton, smoke-test "
                                     "it, then switch the gateways to it")
    parser.add_argument("name", help="Triton model name, e.g. lomar_classifier")
    parser.add_argument("version", type=int, help="version number in the model repository")
    add_connection_args(parser)
    args = parser.parse_args(argv)
    args.prog = parser.prog
    return run_with_client(args, lambda client: _print(client.deploy(args.name, args.version)))


def rollback(argv: list[str]) -> int:
    """`lomar rollback NAME`."""
    parser = argparse.ArgumentParser(prog="lomar rollback", description="serve again the version of NAME deployed "
                                     "before the serving one (the same safe switch as lomar deploy)")
    parser.add_argument("name", help="Triton model name, e.g. lomar_classifier")
    add_connection_args(parser)
    args = parser.parse_args(argv)
    args.prog = parser.prog
    return run_with_client(args, lambda client: _print(client.rollback(args.name)))


def keys(argv: list[str]) -> int:
    """`lomar keys create|list|revoke`."""
    parser = argparse.ArgumentParser(prog="lomar keys", description="API keys of the gateways (kept hashed by the "
                                     "control plane, published to every gateway within seconds)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="a new key, printed once (store it: it cannot be shown again)")
    create.add_argument("name", help="who or what uses the key")
    create.add_argument("--scope", dest="scopes", action="append", choices=SCOPES, required=True,
                        help="repeatable; " + "; ".join(f"{scope}: {what}" for scope, what in SCOPE_DESCRIPTIONS.items()))
    create.add_argument("--rate-per-minute", type=int, help="requests per minute a gateway accepts with the key")
    create.add_argument("--max-collections", type=int, help="collections the key may own at once")
    commands.add_parser("list", help="every key, revoked ones included (never a secret)")
    commands.add_parser("revoke", help="every gateway refuses the key within seconds").add_argument("key_id")
    for command in commands.choices.values():
        add_connection_args(command)
    args = parser.parse_args(argv)
    args.prog = parser.prog

    def action(client: AdminClient) -> int:
        if args.command == "create":
            answer = client.create_key({"name": args.name, "scopes": args.scopes,
                                        "rate_per_minute": args.rate_per_minute,
                                        "max_collections": args.max_collections})
            print(answer["key"])
            print(f"key {answer['id']} ({answer['name']}): {', '.join(answer['scopes'])}. It is shown this once; send "
                  "it as 'Authorization: Bearer <key>' (lomar classify/collections: --api-key or $LOMAR_API_KEY).",
                  file=sys.stderr)
            return 0
        if args.command == "list":
            for key in client.keys():
                state = "revoked" if key["revoked_at"] is not None else "active"
                quotas = ", ".join(f"{name}={key[name]}" for name in ("rate_per_minute", "max_collections")
                                   if key[name] is not None)
                print(f"{key['id']}  {state:<7}  {key['name']:<20} {','.join(key['scopes'])}  {quotas}".rstrip())
            return 0
        return _print(client.revoke_key(args.key_id))

    return run_with_client(args, action)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
