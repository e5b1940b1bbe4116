"""Model builders: ``build_model(experiment, num_classes)`` looks the backbone up by name."""

from __future__ import annotations

from pathlib import Path

from ..registry import BACKBONES, refusal, untrusted_source
from .base import SERModel, SEROutput
from .dimensional import num_classes_learned, num_dimensions, split_outputs


def classifier_kind(exp) -> str:
    if num_dimensions(exp):  # regression outputs beside (or instead of) the classes: unbounded, so linear
        return "linear"
    if exp.model.classifier != "auto":
        return exp.model.classifier
    from ..losses import uses_cosine_classifier

    return "cosine" if uses_cosine_classifier(exp.loss) else "linear"


def build_model(exp, num_classes: int) -> SERModel:
    """The backbone with ``num_classes`` class outputs, and one regression output per dimension when
    ``data.targets`` is dimensional (no class outputs then) or both (``models/dimensional.py``)."""
    name = exp.model.backbone
    if name in BACKBONES:
        builder = BACKBONES.get(name)
    else:  # any Hub id or local directory transformers' Auto classes load
        source = untrusted_source()
        if source is not None and not Path(name).is_dir():  # a model folder rebuilds an SSL encoder only from its own files
            raise refusal(source, "model.backbone", name, BACKBONES.names())
        builder = BACKBONES.get("ssl_encoder")
    classes, dimensions = num_classes_learned(exp, num_classes), num_dimensions(exp)
    model = builder(exp.model, classes + dimensions, exp.data.sample_rate, classifier=classifier_kind(exp), classifier_scale=exp.loss.scale)
    return split_outputs(model, classes, dimensions) if dimensions else model


__all__ = ["SERModel", "SEROutput", "build_model", "classifier_kind"]
