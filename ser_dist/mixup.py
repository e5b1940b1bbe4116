"""A training batch's loss, with ``train.mixup_alpha`` > 0 mixup (Zhang et al., 2018).

Mixup pairs each clip of a batch with another clip of the same batch (a random permutation), hears
``lam * a + (1 - lam) * b`` (waveforms, zero-padded to the longer of the two; or cached features) and scores
``lam * loss(a's label) + (1 - lam) * loss(b's label)``, with one ``lam ~ Beta(alpha, alpha)`` per batch, drawn
from torch's global generator (``train.seed``; a resume continues it). It applies to every loss, since each takes
hard labels. With ``model.feature_norm=speaker`` a mixed clip is normalised with its first clip's speaker.
Validation and test clips are never mixed.
"""

from __future__ import annotations

import torch


def training_loss(model, criterion, batch: dict, alpha: float, inputs: dict) -> torch.Tensor:
    """The loss of one training batch: plain, or mixed up when ``alpha`` > 0; ``inputs``: further model inputs."""
    values, lengths, labels = batch["input_values"], batch["lengths"], batch["labels"]
    if alpha <= 0 or labels.shape[0] < 2:
        return criterion(model(values, lengths, **inputs).logits, labels)
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    order = torch.randperm(labels.shape[0]).to(labels.device)
    mixed = lam * values + (1.0 - lam) * values[order]
    logits = model(mixed, torch.maximum(lengths, lengths[order]), **inputs).logits
    return lam * criterion(logits, labels) + (1.0 - lam) * criterion(logits, labels[order])
