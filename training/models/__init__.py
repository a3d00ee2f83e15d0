"""LoMaR models: `create_model` by registered name, and loaders for this project's and the paper's checkpoints."""
from training.models.checkpoint import (
    checkpoint_kind,
    load_classifier,
    load_pretrained,
    read_checkpoint,
    save_checkpoint,
)
from training.models.classifier import LoMaRClassifier
from training.models.config import LoMaRConfig
from training.models.pretrainer import LoMaRPretrainer, masked_mse, reconstruction_targets
from training.models.registry import ARCHITECTURES, build_model, create_model, list_models, model_config

__all__ = [
    "ARCHITECTURES", "LoMaRClassifier", "LoMaRConfig", "LoMaRPretrainer", "build_model", "checkpoint_kind",
    "create_model", "list_models", "load_classifier", "load_pretrained", "masked_mse",
    "model_config", "read_checkpoint", "reconstruction_targets", "save_checkpoint",
]
