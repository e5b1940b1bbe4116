"""The SER model contract every backbone builder returns.

``forward(input_values [B, T] float waveforms at the data sample rate, lengths [B] in samples)``
returns ``SEROutput(logits [B, C], embedding [B, D])``, and with ``data.targets=dimensional|both`` also
``dimensions`` [B, K] (``models/dimensional.py``; ``logits`` is then [B, 0] without classes). Models with ``model.feature_norm=speaker`` also take
``speakers`` [B] (rows of their ``speaker_normaliser``; None: the pooled statistics). Padding never reaches the prediction: each
model masks or packs using ``lengths``. Any input of 1 sample or more runs: a batch shorter than the
model's receptive field (``min_input_samples``) is zero-padded to it inside ``forward``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..errors import ConfigError


class SEROutput(NamedTuple):
    """A tuple, so hooks that walk module outputs (DeepSpeed ZeRO-3's, torch.compile's) see its tensors."""

    logits: torch.Tensor
    embedding: torch.Tensor
    dimensions: torch.Tensor | None = None  # data.targets=dimensional|both: one regression output per dimension


class SERModel(nn.Module):
    """Base class: subclasses define ``forward`` and may name parameter groups for freezing and lrs."""

    @property
    def min_input_samples(self) -> int:
        """The fewest samples the front end needs for one frame (its receptive field). Shorter batches
        are zero-padded to this inside ``forward``, so they run, but what the model hears is mostly padding."""
        return 1

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named, disjoint groups covering every parameter. ``head`` is trained with ``optim.lr``;
        ``feature_encoder`` and ``encoder`` (pretrained parts) with ``optim.backbone_lr`` and can be frozen."""
        return {"head": list(self.parameters())}

    def speaker_normaliser(self) -> nn.Module | None:
        """The ``SpeakerNormalize`` of ``model.feature_norm=speaker`` when this model has one (its forward then
        takes ``speakers``, and ``unnormalised_features`` gives what it normalises)."""
        return None

    def unnormalised_features(self, input_values: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, D] features before the speaker normalisation, and their valid frames [B]."""
        raise NotImplementedError(f"{type(self).__name__} has no speaker normalisation")

    def set_frozen(self, feature_encoder: bool, encoder: bool) -> None:
        """Freeze pretrained parts: their parameters stop requiring grad (``ser_dist.optim.Freezing`` also
        holds their lr at 0 and resets their optimizer state at the unfreeze). Models without such parts
        ignore it."""


def reject_recurrent_options(model_cfg, backbone: str) -> None:
    """``model.num_layers`` and ``model.frame_stride`` shape the (Bi)LSTM stacks only; on another backbone
    they fail before training rather than being ignored."""
    if model_cfg.num_layers is not None:
        raise ConfigError(f"model.num_layers is for the bilstm and lstm backbones, not {backbone}; leave it out (model.num_layers=null)")
    if model_cfg.frame_stride != 1:
        raise ConfigError(f"model.frame_stride is for the bilstm and lstm backbones, not {backbone}; leave it out (model.frame_stride=1)")
