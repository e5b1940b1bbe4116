"""The last layer of every SER model: a linear layer, or a cosine classifier for margin losses (AAM).

The cosine classifier returns ``scale * cos(theta)`` between the L2-normalised embedding and each
L2-normalised class weight, which is what ``ser_dist.losses`` AAM loss expects. Predictions
(argmax) are the same with or without the margin, which lives only in the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

CLASSIFIERS = ("linear", "cosine")


class CosineClassifier(nn.Module):
    """``scale * normalize(x) @ normalize(W).T``: logits are scaled cosines in ``[-scale, scale]``."""

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0):
        super().__init__()
        if scale <= 0:
            raise ConfigError(f"loss.scale={scale} must be > 0 (the cosine classifier multiplies cosines by it)")
        self.in_features = in_features
        self.num_classes = num_classes
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalising in half precision loses ~1e-3 of the cosine, which the scale (~30) multiplies;
        # the layer is tiny, so it always runs in float32.
        with torch.autocast(device_type=x.device.type, enabled=False):
            cosine = F.linear(F.normalize(x.float(), dim=-1), F.normalize(self.weight.float(), dim=-1))
        return self.scale * cosine

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, scale={self.scale}"


def build_classifier(in_features: int, num_classes: int, kind: str, scale: float) -> nn.Module:
    """``kind``: ``linear`` (``nn.Linear``) or ``cosine`` (:class:`CosineClassifier` with ``scale``)."""
    if kind == "linear":
        return nn.Linear(in_features, num_classes)
    if kind == "cosine":
        return CosineClassifier(in_features, num_classes, scale)
    raise ConfigError(f"model.classifier={kind!r} is not one of {', '.join(CLASSIFIERS)}")
