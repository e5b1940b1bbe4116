"""Frozen-backbone feature caching: run a frozen encoder once per clip, then train only the head.

With ``model.freeze_backbone_epochs=-1`` the encoder is a fixed function of each clip, so running it
every epoch repeats the same computation (and, for HuBERT-large, almost all of the run's cost). With
``model.cache_features=true`` the trainer calls :func:`cache_encoder_features` once: every clip goes
through ``model.encode`` alone (no padding, so group-norm encoders see exactly the clip), in eval mode
(no dropout: the frozen encoder is deterministic, as s3prl runs a frozen upstream) and without autograd.
The features stay in memory as one tensor per clip; the train/val/test loaders then feed them to
``model.forward``, which skips the encoder for inputs with a feature dimension.

Every rank computes the features of the clips it reads; the model keeps all its parameters (the export
is the full model), and the encoder's are switched off for autograd before the model is prepared, so
neither DDP nor ZeRO ever expects a gradient for them.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..errors import ConfigError
from ..progress import progress


class FeatureClips(Dataset):
    """Items like ``AudioClips``' (``waveform``, ``label``, ``index``) where ``waveform`` is [frames, ...] features."""

    def __init__(self, features: list[torch.Tensor], labels):
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        return {"waveform": self.features[index], "label": int(self.labels[index]), "index": index}


def check_cacheable(model, model_cfg) -> None:
    """The backbone must have an encoder to cache (the config side is checked by ``Experiment.validate``)."""
    if not hasattr(model, "encode"):
        raise ConfigError(
            f"model.cache_features=true needs an encoder backbone (HuBERT, wav2vec2, WavLM, ...); {model_cfg.backbone} has no separate encoder"
        )


@torch.no_grad()
def cache_encoder_features(model, clips, device: torch.device) -> FeatureClips:
    """Features of every clip of an ``AudioClips`` dataset, computed one clip at a time."""
    was_training = model.training
    model.eval()
    features = []
    with progress(total=len(clips), desc="encoder features", unit="clip") as bar:
        for index in range(len(clips)):
            waveform = clips[index]["waveform"].to(device)[None]
            hidden, valid = model.encode(waveform, torch.tensor([waveform.shape[1]], device=device))
            features.append(hidden[0, : int(valid[0])].float().cpu())
            bar.update(1)
    model.train(was_training)
    return FeatureClips(features, clips.labels)


def freeze_encoder_for_good(model) -> None:
    """Autograd off for every encoder parameter (the cached path never runs the encoder)."""
    groups = model.parameter_groups()
    for name in ("encoder", "feature_encoder"):
        for parameter in groups[name]:
            parameter.requires_grad_(False)
