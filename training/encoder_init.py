"""Fine-tuning's starting point: the architecture and encoder weights of a pretrained (or fine-tuned) checkpoint,
ours or the paper's official files, and whether its classification head carries over.

A fine-tuned checkpoint of this project names its classes ('class_names'). Retraining on the same classes continues
that model, head included (a retrain job's `from_job`); other classes, or `--reset-head`, get a new head.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from training.errors import CheckpointError, ConfigError
from training.models import LoMaRClassifier, LoMaRConfig, read_checkpoint
from training.models.checkpoint import UNUSED_OFFICIAL_KEYS, stored_args, infer_config, state_dict_of

log = logging.getLogger(__name__)

# Fields that define the encoder's weights: a --model that differs in any of them contradicts the checkpoint.
ARCHITECTURE_FIELDS = ("patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias")
HEAD = "head."
# Pretraining-only weights, never carried into a classifier (the head only when it is kept: `load_encoder`).
DROPPED_PREFIXES = ("mask_token", "encoder_pred.") + UNUSED_OFFICIAL_KEYS


@dataclass(frozen=True)
class InitCheckpoint:
    """A checkpoint to start from: its architecture, its weights and, for a fine-tuned one of ours, its classes."""

    config: LoMaRConfig
    state: dict[str, torch.Tensor]
    class_names: tuple[str, ...] | None  # in label order; None: a pretrained encoder, or a file that names none

    @property
    def has_head(self) -> bool:
        return HEAD + "weight" in self.state


def read_init(path: str | Path) -> InitCheckpoint:
    """The architecture, weights and class names of a checkpoint to start from."""
    data = read_checkpoint(path)
    state = state_dict_of(data, path)
    if "model_args" in data:
        config = LoMaRConfig.from_dict(data["model_args"])
    else:
        config = infer_config(state, stored_args(data), "encoder_pred.weight" in state, path)
    names = data.get("class_names")
    return InitCheckpoint(config, state, tuple(str(name) for name in names) if names else None)


@dataclass(frozen=True)
class HeadChoice:
    """Whether a new classifier continues with the head of the checkpoint it starts from, and why."""

    keep: bool
    reason: str  # a line for the log
    classes_changed: bool = False  # a fine-tuned checkpoint of other classes: worth a warning


def choose_head(init: InitCheckpoint, classes: Sequence[str], reset_head: bool, path: str | Path) -> HeadChoice:
    """The head of `init` carries over to a classifier for `classes` only from a fine-tuned checkpoint that names
    exactly these classes, unless `reset_head`."""
    count = f"{len(classes)} classes"
    if not init.has_head:
        return HeadChoice(False, f"{path} has no classification head (a pretrained encoder): a new head for {count}")
    if reset_head:
        return HeadChoice(False, f"the head of {path} is not used (--reset-head): a new head for {count}")
    if init.class_names is None:
        return HeadChoice(False, f"{path} does not name the classes of its head: a new head for {count}")
    if list(init.class_names) == list(classes):
        return HeadChoice(True, f"continuing the fine-tuned model {path}, head included (the same {count})")
    added = [name for name in classes if name not in init.class_names]
    dropped = [name for name in init.class_names if name not in classes]
    return HeadChoice(False, f"the classes differ from those {path} was fine-tuned on (new: {_names(added)}; gone: "
                             f"{_names(dropped)}): a new head for {count}, trained on the fine-tuned encoder",
                      classes_changed=True)


def _names(names: Sequence[str], shown: int = 5) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def check_same_architecture(config: LoMaRConfig, init_config: LoMaRConfig, model_name: str, path: str | Path) -> None:
    """A clear ConfigError naming every field where the requested model and the checkpoint disagree."""
    diffs = [f"{name} {getattr(config, name)} vs {getattr(init_config, name)}" for name in ARCHITECTURE_FIELDS
             if getattr(config, name) != getattr(init_config, name)]
    if diffs:
        raise ConfigError(
            f"--model {model_name or '(with --model-option)'} contradicts the --init checkpoint {path} "
            f"({'; '.join(diffs)}): drop --model to take the architecture from the checkpoint"
        )


def load_encoder(model: LoMaRClassifier, state: dict[str, torch.Tensor], path: str | Path, *,
                 with_head: bool = False) -> None:
    """Copy the encoder (patch embed, class token, blocks; `norm` for a class-token head, `fc_norm` when present)
    into a new classifier; its head too with `with_head` (the same classes: `choose_head`), else the head stays
    freshly initialised."""
    dropped = DROPPED_PREFIXES if with_head else DROPPED_PREFIXES + (HEAD,)
    optional = ("fc_norm.", "norm.") if with_head else (HEAD, "fc_norm.", "norm.")
    wanted = set(model.state_dict())
    kept = {key: value for key, value in state.items() if not key.startswith(dropped) and key in wanted}
    unexpected = sorted(key for key in state if not key.startswith(dropped) and key not in wanted
                        and not key.startswith(("norm.", "fc_norm.")))
    missing = sorted(key for key in wanted - set(kept) if not key.startswith(optional))
    if unexpected or missing:
        raise CheckpointError(f"checkpoint {path} does not fit the {'classifier' if with_head else 'encoder'}: "
                              f"missing {missing or 'none'}; unexpected {unexpected or 'none'}")
    try:
        model.load_state_dict(kept, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} has weights of the wrong shape: {exc}") from exc
    fresh = sorted({key.split(".")[0] for key in wanted - set(kept)})
    log.info("weights loaded from %s; newly initialised: %s", path, ", ".join(fresh) or "nothing")
