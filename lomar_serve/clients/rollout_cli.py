"""`lomar rollout status|promote|abort NAME`: the canary or shadow rollout of a model, through the control plane's
admin API (docs/rollouts.md). A rollout begins with `lomar deploy NAME VERSION --canary 10,50` or `--shadow 20`.

    lomar rollout status NAME     state, step, share, why, and each guard's figures (--json: the API's answer)
    lomar rollout promote NAME    deploy the candidate now, whatever step it is at
    lomar rollout abort NAME      every request back on the serving version; the candidate is unloaded

--url (default $LOMAR_CONTROL_PLANE_URL or http://127.0.0.1:8100) and --token (default $LOMAR_ADMIN_TOKEN) pick the
control plane.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from lomar_serve.clients.admin import AdminClient
from lomar_serve.clients.admin_cli import add_connection_args, print_json, run_with_client


def describe(rollout: dict[str, Any]) -> str:
    """A rollout as lines for people: what, where it stands and why, the figures per version, each guard."""
    steps = " -> ".join(f"{p:g}%" for p in rollout["steps"])
    lines = [f"{rollout['model']}: {rollout['mode']} of version {rollout['candidate']} against {rollout['baseline']} "
             f"({rollout['id']}): {rollout['state']}",
             f"  step {rollout['step'] + 1} of {len(rollout['steps'])} ({steps} -> deploy), now {rollout['percent']:g}%"
             f"; each step at least {rollout['min_seconds']:g} s and {rollout['min_requests']} requests"]
    if rollout["reason"]:
        lines.append(f"  why: {rollout['reason']}")
    figures = rollout.get("figures") or {}
    for version, f in figures.get("versions", {}).items():
        role = "candidate" if version == rollout["candidate"] else "baseline"
        lines.append(f"  version {version} ({role}): {f['calls']} calls, {f['errors']} errors, {f['unavailable']} "
                     f"unavailable, p50 {_value(f['p50_ms'])} ms, p99 {_value(f['p99_ms'])} ms, mean confidence "
                     f"{_value(f['mean_confidence'])}")
    agreement = figures.get("agreement")
    if agreement:
        lines.append(f"  agreement: top-1 {_value(agreement['top1'])} on {agreement['top1_compared']} images, "
                     f"similarity {_value(agreement['similarity'])} on {agreement['similarity_compared']}, "
                     f"confidence drop {_value(agreement['confidence_drop'])}, {agreement['skipped']} skipped")
    for check in rollout.get("checks", []):
        lines.append(f"  {check['status']:<7} {check['guard']:<12} {check['detail']}")
    return "\n".join(lines)


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lomar rollout", description="the canary or shadow rollout of a model",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("status", "the model's latest rollout and its guards' figures"),
                       ("promote", "deploy the candidate now"),
                       ("abort", "end the rollout: every request back on the serving version")):
        command = commands.add_parser(name, help=text)
        command.add_argument("name", help="Triton model name, e.g. lomar_classifier")
        command.add_argument("--json", action="store_true", help="print the API's JSON answer")
        add_connection_args(command)
    args = parser.parse_args(argv)
    args.prog = f"{parser.prog} {args.command}"

    def action(client: AdminClient) -> int:
        call = {"status": client.rollout, "promote": client.promote, "abort": client.abort}[args.command]
        rollout = call(args.name)
        if args.json:
            print_json(rollout)
        else:
            print(describe(rollout))
        return 0

    return run_with_client(args, action)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
