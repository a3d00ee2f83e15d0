"""Models made by name, timm-style: the registered architectures (`training.models.architectures`) and
`create_model`."""
from __future__ import annotations

from typing import Any, Union

from training.models.architectures import ARCHITECTURES, list_models, model_config
from training.models.classifier import LoMaRClassifier
from training.models.config import LoMaRConfig
from training.models.pretrainer import LoMaRPretrainer

LoMaRModel = Union[LoMaRClassifier, LoMaRPretrainer]
__all__ = ["ARCHITECTURES", "LoMaRModel", "build_model", "create_model", "list_models", "model_config"]


def build_model(config: LoMaRConfig, pretrain: bool) -> LoMaRModel:
    return LoMaRPretrainer(config) if pretrain else LoMaRClassifier(config)


def create_model(name: str, pretrain: bool = False, **overrides: Any) -> LoMaRModel:
    """Build registered model `name`: the pretraining model if `pretrain`, else the classifier."""
    return build_model(model_config(name, **overrides), pretrain)
