"""Model builders: ``build_model(experiment, num_classes)`` looks the backbone up by name."""

from __future__ import annotations

from pathlib import Path

from ..registry import BACKBONES, refusal, untrusted_source
from .base import SERModel, SEROutput


def classifier_kind(exp) -> str:
    if exp.model.classifier != "auto":
        return exp.model.classifier
    from ..losses import uses_cosine_classifier

    return "cosine" if uses_cosine_classifier(exp.loss) else "linear"


def build_model(exp, num_classes: int) -> SERModel:
    name = exp.model.backbone
    if name in BACKBONES:
        builder = BACKBONES.get(name)
    else:  # any Hub id or local directory transformers' Auto classes load
        source = untrusted_source()
        if source is not None and not Path(name).is_dir():  # a model folder rebuilds an SSL encoder only from its own files
            raise refusal(source, "model.backbone", name, BACKBONES.names())
        builder = BACKBONES.get("ssl_encoder")
    return builder(exp.model, num_classes, exp.data.sample_rate, classifier=classifier_kind(exp), classifier_scale=exp.loss.scale)


__all__ = ["SERModel", "SEROutput", "build_model", "classifier_kind"]
