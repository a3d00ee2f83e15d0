"""`lomar jobs|deploy|rollback`: retrain and ingest jobs, deploys and rollbacks through the control plane's admin API.

    lomar jobs submit --data-dir new_images --init runs/finetune/checkpoint-best.pth --epochs 5 --follow
    lomar jobs ingest photos photos/2024 --create --follow    a worker adds a folder's images to a collection
    lomar jobs list               state, stage, progress and ETA of each job
    lomar jobs show ID            lomar jobs follow ID [--log]
    lomar jobs cancel ID          lomar jobs resume ID
    lomar jobs report ID          lomar jobs compare ID
    lomar deploy NAME VERSION     load a version in every Triton, smoke-test it, then switch every gateway to it
                                  (the version that served before keeps serving until the new one is ready
                                  everywhere; on failure nothing changes)
    lomar deploy NAME VERSION --canary 10,50 | --shadow 20    step by step, judged by guards (lomar rollout)
    lomar rollback NAME           serve again the version deployed before the serving one (same safe switch)
    lomar keys create NAME --scope infer [--scope collections:write] [--rate-per-minute N] [--max-collections N]
    lomar keys list               lomar keys revoke ID      API keys of the gateways (the key is printed once)

`--follow` (and `follow`) draw a progress bar with the stage, loss, validation top-1 and ETA until the job ends
(`--log`: print the job's log instead). `report` prints the evaluation report of the job's version, `compare` it
beside the serving version's.

--url (default $LOMAR_CONTROL_PLANE_URL or http://127.0.0.1:8100) and --token (default $LOMAR_ADMIN_TOKEN) pick the
control plane. Paths are resolved by the control plane, inside its data roots (LOMAR_DATA_ROOTS).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, get_args

import yaml

from contracts.collections import OnDuplicate
from lomar_serve.clients.admin import DEFAULT_URL, FINAL_STATES, AdminClient, AdminError
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
    parser = argparse.ArgumentParser(prog="lomar jobs", description="retrain and ingest jobs through the control "
                                     "plane's admin API",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="jobs, newest first")
    listing.add_argument("--limit", type=int, default=20)
    for name, text in (("show", "a job's record and log tail"),
                       ("follow", "a progress bar of a job until it ends (--log: its log)"),
                       ("cancel", "cancel a job"), ("resume", "resume an interrupted, failed or cancelled job"),
                       ("report", "the evaluation report of a job's version (JSON)"),
                       ("compare", "a job's version beside the serving version, on the same images (JSON)")):
        commands.add_parser(name, help=text).add_argument("job_id")
    commands.choices["follow"].add_argument("--log", action="store_true", help="print the job's log instead")
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
    ingest = commands.add_parser("ingest", help="start an ingest job: a worker adds every image of a folder (inside "
                                 "a data root) to a collection, through a gateway")
    ingest.add_argument("collection", help="the collection")
    ingest.add_argument("data_dir", help="the folder, inside a data root of the control plane")
    ingest.add_argument("--create", action="store_true", help="create the collection if it does not exist")
    ingest.add_argument("--model", help="the embedding model of a collection the job creates")
    ingest.add_argument("--on-duplicate", choices=get_args(OnDuplicate), default="skip",
                        help="an image whose bytes the collection holds under another name (default: skip)")
    for sub in ("submit", "ingest"):
        commands.choices[sub].add_argument("--follow", action="store_true", help="draw a progress bar until the "
                                           "job ends")
        commands.choices[sub].add_argument("--log", action="store_true", help="with --follow: print the job's log "
                                           "instead")
    for sub in commands.choices.values():
        add_connection_args(sub)
    return parser


def duration(seconds: float | None) -> str:
    """42s, 3m05s, 2h07m; "-" for None."""
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def figures(job: dict[str, Any]) -> str:
    """What a job is doing, in a line: its stage and, while it trains, epoch, loss, lr, images/s, val top-1, ETA;
    while it ingests, images done, added, skipped, failed, images/s, ETA."""
    if job["state"] != "running":
        return job["state"]
    training = job["metrics"].get("training", {})
    parts = [job["stage"] or "starting"]
    ingest = job["metrics"].get("ingest", {})
    if job["stage"] == "ingest" and ingest:
        parts += [f"{ingest['done']}/{ingest['files']} images", f"added {ingest['added']}",
                  f"skipped {ingest['skipped']}", f"failed {ingest['failed']}"]
        if isinstance(ingest.get("img_per_s"), (int, float)):
            parts.append(f"{ingest['img_per_s']:.0f} img/s")
        parts.append(f"ETA {duration(job.get('eta_s'))}")
    if job["stage"] == "train":
        parts.append(f"epoch {training.get('epochs_done', 0)}/{training.get('epochs') or job['params'].get('epochs')}")
        for key, text in (("train_loss", "loss {:.4f}"), ("lr", "lr {:.2e}"), ("img_per_s", "{:.0f} img/s"),
                          ("val_top1", "val top-1 {:.1f}%")):
            if isinstance(training.get(key), (int, float)):
                parts.append(text.format(training[key]))
        parts.append(f"ETA {duration(job.get('eta_s'))}")
    return "  ".join(parts)


def follow(client: AdminClient, job_id: str, *, log: bool = False, poll_s: float = 1.0) -> int:
    """Until the job ends: a progress bar on stderr (its stage, loss, top-1, ETA; a line per stage and per epoch on
    stdout), or with `log` its log on stdout. Then its outcome; 0 if it succeeded."""
    if log:
        for text in client.follow(job_id, poll_s):
            sys.stdout.write(text)
            sys.stdout.flush()
        job = client.job(job_id)
    else:
        job = progress_bar(client, job_id, poll_s)
    outcome = f"job {job_id}: {job['state']}: {job['message']}"
    verification = job["metrics"].get("verification")
    if isinstance(verification, dict) and isinstance(verification.get("value"), (int, float)):
        outcome += f" ({verification.get('metric')} {verification['value']:.4g} on {verification.get('count')} images)"
    print(outcome)
    return 0 if job["state"] == "succeeded" else 1


def progress_bar(client: AdminClient, job_id: str, poll_s: float) -> dict[str, Any]:
    """Draw the job's progress until it ends; its final record. Without a terminal on stderr only the lines."""
    from tqdm import tqdm

    job: dict[str, Any] = {}
    seen: tuple[str, int] | None = None
    with tqdm(total=100, desc=f"job {job_id}", bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}",
              file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
        for job in client.watch(job_id, poll_s):
            training = job["metrics"].get("training", {})
            now = (job["stage"] or job["state"], training.get("epochs_done", 0))
            if now != seen and job["state"] not in FINAL_STATES:  # a new stage or epoch: a line that stays
                bar.write(f"job {job_id}: {figures(job)}", file=sys.stdout)
            seen = now
            bar.n = round(100 * job["progress"])
            bar.set_postfix_str(figures(job), refresh=True)
    return job


def submit_request(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"kind": args.kind, "data_dir": args.data_dir, "epochs": args.epochs,
                               "model_options": dict(args.model_option), "options": dict(args.option),
                               "auto_deploy": args.auto_deploy}
    for field in ("val_dir", "init", "from_job", "model", "model_name"):
        if getattr(args, field):
            request[field] = getattr(args, field)
    return request


def ingest_request(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"kind": "ingest", "collection": args.collection, "data_dir": args.data_dir,
                               "create": args.create, "on_duplicate": args.on_duplicate}
    if args.model:
        request["model"] = args.model
    return request


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    args.prog = "lomar jobs"

    def action(client: AdminClient) -> int:
        if args.command == "list":
            for job in client.jobs(args.limit):
                target = (f"collection {job['params'].get('collection')}" if job["kind"] == "ingest" else
                          f"{job['model_name']} v{job['model_version'] or '-'}")
                print(f"{job['id']}  {job['state']:<11} {job['stage'] or '-':<7} {job['progress']:>5.0%}  "
                      f"ETA {duration(job.get('eta_s')):<6} {job['kind']:<8} {target}  {job['message']}")
            return 0
        if args.command in ("submit", "ingest"):
            job = client.submit(submit_request(args) if args.command == "submit" else ingest_request(args))
            print(f"job {job['id']} queued")
            return follow(client, job["id"], log=args.log) if args.follow else 0
        if args.command == "follow":
            return follow(client, args.job_id, log=args.log)
        call = {"show": client.job, "cancel": client.cancel, "resume": client.resume, "report": client.report,
                "compare": client.compare}[args.command]
        print_json(call(args.job_id))
        return 0

    return run_with_client(args, action)


def deploy(argv: list[str]) -> int:
    """`lomar deploy NAME VERSION`."""
    parser = argparse.ArgumentParser(prog="lomar deploy", description="load a model version in Triton, smoke-test "
                                     "it, then switch the gateways to it")
    parser.add_argument("name", help="Triton model name, e.g. lomar_classifier")
    parser.add_argument("version", type=int, help="version number in the model repository")
    add_rollout_args(parser)
    add_connection_args(parser)
    args = parser.parse_args(argv)
    args.prog = parser.prog
    if args.canary is None and args.shadow is None and (args.guard or args.min_requests or args.min_seconds):
        parser.error("--guard, --min-requests and --min-seconds need --canary or --shadow")
    return run_with_client(args, lambda client: _print(client.deploy(args.name, args.version,
                                                                     **rollout_request(args))))


def _steps(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected percentages separated by commas (10,50), got {text!r}") from None


def add_rollout_args(parser: argparse.ArgumentParser) -> None:
    """`lomar deploy`'s canary and shadow flags (docs/rollouts.md)."""
    group = parser.add_argument_group("canary and shadow rollouts (every unset threshold has the server's default)")
    modes = group.add_mutually_exclusive_group()
    modes.add_argument("--canary", type=_steps, metavar="P[,P...]", help="the version answers P %% of the model's "
                       "requests at each step (e.g. 10,50), then is deployed, unless a guard trips")
    modes.add_argument("--shadow", type=_steps, metavar="P[,P...]", help="the version also gets a copy of P %% of "
                       "the requests, only to be compared; clients always get the serving version's answer")
    group.add_argument("--min-requests", type=int, help="requests to the version a step needs before it passes")
    group.add_argument("--min-seconds", type=float, help="seconds a step lasts at least")
    group.add_argument("--guard", action="append", type=_key_value, default=[], metavar="NAME=VALUE",
                       help="a guard threshold, e.g. min_agreement=0.7 or max_p99_ratio=3 (repeatable)")


def rollout_request(args: argparse.Namespace) -> dict[str, Any]:
    """The `canary` or `shadow` keyword of AdminClient.deploy from the flags ({} for a plain deploy)."""
    mode = "canary" if args.canary is not None else "shadow" if args.shadow is not None else None
    if mode is None:
        return {}
    request: dict[str, Any] = {"steps": getattr(args, mode), "guards": dict(args.guard)}
    for field in ("min_requests", "min_seconds"):
        if getattr(args, field) is not None:
            request[field] = getattr(args, field)
    return {mode: request}


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
