"""Regression outputs for dimensional emotion (``data.targets=dimensional|both``), on every backbone.

Every backbone ends in a layer on its utterance embedding (``classifier``: a linear layer for these targets).
For K dimensions it is built with C + K outputs (C = 0 under ``dimensional``): the first C are the class
logits, the last K the dimensions, so the regression head is K more rows of that layer, beside the
classifier's, trained on the same embedding. ``split_outputs`` hooks the model's forward to return them apart,
``SEROutput(logits [B, C], embedding, dimensions [B, K])``, so the state dict keeps the backbone's own keys and
an SSL export stays a transformers model (``num_labels`` = C + K; ``problem_type="regression"`` without classes).
"""

from __future__ import annotations

from torch import nn

from .base import SEROutput


def num_dimensions(exp) -> int:
    """The model's regression outputs: one per ``data.dimension_columns`` unless the targets are categorical."""
    data = exp.data
    return 0 if data.targets == "categorical" else len(data.dimension_columns)


def num_classes_learned(exp, num_classes: int) -> int:
    """The class logits the model has: none under ``data.targets=dimensional``."""
    return 0 if exp.data.targets == "dimensional" else num_classes


def split_outputs(model: nn.Module, num_classes: int, dimensions: int) -> nn.Module:
    """Make ``model``'s forward return its last ``dimensions`` outputs as ``SEROutput.dimensions`` (a forward hook)."""

    def split(module, args, output: SEROutput) -> SEROutput:
        outputs = output.logits
        return SEROutput(logits=outputs[:, :num_classes], embedding=output.embedding, dimensions=outputs[:, num_classes:])

    model.num_dimensions = dimensions
    model.mixed_outputs = num_classes > 0 and dimensions > 0  # classes and ratings in one layer: no stock transformers head
    model.register_forward_hook(split)
    return model
