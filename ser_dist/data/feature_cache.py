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

A model whose encoder is a fixed, deterministic function that does not depend on its weights (openSMILE's
functionals: ``feature_cache_id``, a folder name for what its output depends on) gets a :class:`FeatureStore`
too: each clip's features also go to disk, one ``.npy`` per clip named by a hash of its decoded samples, under
``<decode cache>/features/<feature_cache_id>/``. Every later run on those clips reads them back instead of
computing them: each fold of a cross-validation, a resumed run, another recipe with the same extractor, and
another corpus listing the same clip. A missing or unreadable file is computed (and written) again. A learned
encoder (HuBERT, ...) has no such id: its output depends on its weights, so it is cached in memory only.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError
from ..progress import progress


class FeatureClips(Dataset):
    """Items like ``AudioClips``' (``waveform``, ``label``, ``index``, ``dimensions`` when rated) where ``waveform`` is
    [frames, ...] features."""

    def __init__(self, features: list[torch.Tensor], labels, from_store: int = 0, dimensions=None):
        self.features = features
        self.labels = labels
        self.dimensions = dimensions
        self.from_store = from_store  # how many were read from a FeatureStore instead of computed

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        item = {"waveform": self.features[index], "label": int(self.labels[index]), "index": index}
        if self.dimensions is not None:
            item["dimensions"] = self.dimensions[index]
        return item


def check_cacheable(model, model_cfg) -> None:
    """The backbone must have an encoder to cache (the config side is checked by ``Experiment.validate``)."""
    if not hasattr(model, "encode"):
        raise ConfigError(
            f"model.cache_features=true needs an encoder backbone (HuBERT, wav2vec2, WavLM, ...); {model_cfg.backbone} has no separate encoder"
        )


class FeatureStore:
    """A fixed extractor's features on disk: ``folder/<hash[:2]>/<hash>.npy``, the hash (SHA-256) of a clip's
    float32 samples, which the decode cache makes the same in every run. Files are written whole (a temporary
    name, then a rename), so concurrent runs or ranks never read half a file."""

    def __init__(self, root, extractor_id: str):
        self.folder = Path(root).expanduser() / "features" / extractor_id

    def path(self, waveform: torch.Tensor) -> Path:
        digest = hashlib.sha256(waveform.detach().cpu().numpy().astype(np.float32, copy=False).tobytes()).hexdigest()[:40]
        return self.folder / digest[:2] / f"{digest}.npy"

    def load(self, path: Path) -> torch.Tensor | None:
        """The stored features, or None when they are not there or do not load (then they are computed again)."""
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError, EOFError):
            return None

    def save(self, path: Path, features: torch.Tensor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
        try:
            with open(partial, "wb") as handle:
                np.save(handle, features.numpy(), allow_pickle=False)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)


def feature_store(model, cache_root) -> FeatureStore | None:
    """The disk store for ``model``'s encoder under ``cache_root`` (the decode cache's folder), or None for an
    encoder whose output depends on its weights (no ``feature_cache_id``)."""
    extractor_id = getattr(model, "feature_cache_id", None)
    return FeatureStore(cache_root, extractor_id) if extractor_id else None


@torch.no_grad()
def cache_encoder_features(model, clips, device: torch.device, store: FeatureStore | None = None) -> FeatureClips:
    """Features of every clip of an ``AudioClips`` dataset, computed one clip at a time (or read from ``store``)."""
    was_training = model.training
    model.eval()
    features, from_store = [], 0
    with progress(total=len(clips), desc="encoder features", unit="clip") as bar:
        for index in range(len(clips)):
            waveform = clips[index]["waveform"]
            path = store.path(waveform) if store is not None else None
            stored = store.load(path) if path is not None else None
            if stored is not None:
                features.append(stored)
                from_store += 1
            else:
                features.append(_encode_one(model, waveform.to(device)[None], device))
                if path is not None:
                    store.save(path, features[-1])
            bar.update(1)
    model.train(was_training)
    return FeatureClips(features, clips.labels, from_store=from_store, dimensions=getattr(clips, "dimensions", None))


def _encode_one(model, waveform: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One clip [1, T] through ``model.encode`` alone: its valid frames, float32 on the CPU."""
    hidden, valid = model.encode(waveform, torch.tensor([waveform.shape[1]], device=device))
    return hidden[0, : int(valid[0])].float().cpu()


def freeze_encoder_for_good(model) -> None:
    """Autograd off for every encoder parameter (the cached path never runs the encoder)."""
    groups = model.parameter_groups()
    for name in ("encoder", "feature_encoder"):
        for parameter in groups[name]:
            parameter.requires_grad_(False)
