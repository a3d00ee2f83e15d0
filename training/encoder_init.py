"""Fine-tuning's starting point: the architecture and encoder weights of a pretrained (or fine-tuned) checkpoint,
ours or the paper's official files."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from training.errors import CheckpointError, ConfigError
from training.models import LoMaRClassifier, LoMaRConfig, read_checkpoint
from training.models.checkpoint import UNUSED_OFFICIAL_KEYS, stored_args, infer_config, state_dict_of

log = logging.getLogger(__name__)

# Fields that define the encoder's weights: a --model that differs in any of them contradicts the checkpoint.
ARCHITECTURE_FIELDS = ("patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias")
# Pretraining-only or task-specific weights never carried into a new classifier.
DROPPED_PREFIXES = ("mask_token", "encoder_pred.", "head.") + UNUSED_OFFICIAL_KEYS


def read_init(path: str | Path) -> tuple[LoMaRConfig, dict[str, torch.Tensor]]:
    """(architecture, weights) of a checkpoint to start from."""
    data = read_checkpoint(path)
    state = state_dict_of(data, path)
    if "model_args" in data:
        config = LoMaRConfig.from_dict(data["model_args"])
    else:
        config = infer_config(state, stored_args(data), "encoder_pred.weight" in state, path)
    return config, state


def check_same_architecture(config: LoMaRConfig, init_config: LoMaRConfig, model_name: str, path: str | Path) -> None:
    """A clear ConfigError naming every field where the requested model and the checkpoint disagree."""
    diffs = [f"{name} {getattr(config, name)} vs {getattr(init_config, name)}" for name in ARCHITECTURE_FIELDS
             if getattr(config, name) != getattr(init_config, name)]
    if diffs:
        raise ConfigError(
            f"--model {model_name or '(with --model-option)'} contradicts the --init checkpoint {path} "
            f"({'; '.join(diffs)}): drop --model to take the architecture from the checkpoint"
        )


def load_encoder(model: LoMaRClassifier, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Copy the encoder (patch embed, class token, blocks; `norm` for a class-token head, `fc_norm` when present)
    into a new classifier; its head stays freshly initialised."""
    wanted = set(model.state_dict())
    kept = {key: value for key, value in state.items() if not key.startswith(DROPPED_PREFIXES) and key in wanted}
    unexpected = sorted(key for key in state if not key.startswith(DROPPED_PREFIXES) and key not in wanted
                        and not key.startswith(("norm.", "fc_norm.")))
    missing = sorted(key for key in wanted - set(kept) if not key.startswith(("head.", "fc_norm.", "norm.")))
    if unexpected or missing:
        raise CheckpointError(f"checkpoint {path} does not fit the encoder: missing {missing or 'none'}; "
                              f"unexpected {unexpected or 'none'}")
    try:
        model.load_state_dict(kept, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} has encoder weights of the wrong shape: {exc}") from exc
    fresh = sorted({key.split(".")[0] for key in wanted - set(kept)})
    log.info("encoder weights loaded from %s; newly initialised: %s", path, ", ".join(fresh) or "nothing")
