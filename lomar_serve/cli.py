"""The `lomar` command line: a thin dispatcher to each program's own `main(argv)`.

Programs are imported lazily, so `lomar serve` never imports torch and `lomar pretrain` never imports FastAPI.
"""
from __future__ import annotations

import importlib
import sys

# subcommand -> ("module" with main(argv) -> int, or "module:function" taking argv, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("lomar_serve.serve.main", "everything on one box: Triton, the gateway (and with LOMAR_ADMIN_TOKEN the "
                                   "control plane and a worker)"),
    "gateway": ("lomar_serve.gateway.main", "the HTTP gateway alone, in front of a running Triton (a fleet)"),
    "control-plane": ("lomar_serve.control_plane.main", "the admin API: jobs, deploys, rollbacks for a fleet"),
    "triton": ("lomar_serve.triton.cli", "the bundled Triton server alone, supervised, on fixed ports (a fleet)"),
    "classify": ("lomar_serve.clients.gateway_cli:classify",
                 "top-k labels of image files from a running gateway (JSON)"),
    "embed": ("lomar_serve.clients.gateway_cli:embed", "embeddings of image files from a running gateway (JSON)"),
    "reconstruct": ("lomar_serve.clients.gateway_cli:reconstruct",
                    "masked-reconstruction PNG strips from a running gateway"),
    "collections": ("lomar_serve.clients.search_cli:collections_main",
                    "collections of images for similar-image search"),
    "search": ("lomar_serve.clients.search_cli:search_main",
               "the images of a collection most similar to an image file"),
    "export": ("export.cli", "export a checkpoint to a verified ONNX/TensorRT version in a Triton model repository"),
    "pretrain": ("training.pretrain", "LoMaR pretraining on a folder of images (also under torchrun)"),
    "finetune": ("training.finetune", "fine-tune a LoMaR classifier on a labelled image folder (also under torchrun)"),
    "evaluate": ("training.evaluate", "top-1/top-5 of a classifier, or k-NN/linear-probe of a pretrained encoder"),
    "data": ("training.data.cli", "data utilities: `lomar data synth` writes a synthetic labelled image set"),
    "jobs": ("lomar_serve.clients.admin_cli", "retrain jobs via the admin API: submit, list, follow, cancel"),
    "deploy": ("lomar_serve.clients.admin_cli:deploy", "serve a model version (smoke-tested first, no downtime)"),
    "rollback": ("lomar_serve.clients.admin_cli:rollback", "serve again the version deployed before the serving one"),
    "rollout": ("lomar_serve.clients.rollout_cli", "the canary or shadow rollout of a model: status, promote, abort"),
    "keys": ("lomar_serve.clients.admin_cli:keys", "API keys of the gateways: create, list, revoke"),
    "worker": ("lomar_serve.worker.main",
               "claim queued retrain jobs from the job store and run them (train, export, verify)"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: lomar COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "`lomar COMMAND --help` describes each command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"lomar: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, _, function = COMMANDS[name][0].partition(":")
    return int(getattr(importlib.import_module(module_name), function or "main")(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
