"""A training batch's loss, with ``train.mixup_alpha`` > 0 mixup (Zhang et al., 2018).

Mixup pairs each clip of a batch with another clip of the same batch (a random permutation), hears
``lam * a + (1 - lam) * b`` (waveforms, zero-padded to the longer of the two; or cached features) and scores
``lam * loss(a's label) + (1 - lam) * loss(b's label)``, with one ``lam ~ Beta(alpha, alpha)`` per batch, drawn
from torch's global generator (``train.seed``; a resume continues it). It applies to every loss, since each takes
hard labels. Ratings (``data.targets=dimensional|both``) are mixed as the clips are, ``lam * a + (1 - lam) * b``,
and the dimensional loss scores the mixed clips against them. With ``model.feature_norm=speaker`` a mixed clip is normalised with its first clip's speaker.
Validation and test clips are never mixed.
"""

from __future__ import annotations

import torch

from .losses import objective_loss


def training_loss(model, criterion, batch: dict, alpha: float, inputs: dict) -> torch.Tensor:
    """The loss of one training batch: plain, or mixed up when ``alpha`` > 0; ``inputs``: further model inputs.
    ``criterion``: the run's ``losses.TargetLoss``, or a plain categorical loss (``losses.objective_loss``)."""
    values, lengths, labels, ratings = batch["input_values"], batch["lengths"], batch["labels"], batch.get("dimensions")
    if alpha <= 0 or labels.shape[0] < 2:
        return objective_loss(criterion, model(values, lengths, **inputs), labels, ratings)
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    order = torch.randperm(labels.shape[0]).to(labels.device)
    mixed = lam * values + (1.0 - lam) * values[order]
    output = model(mixed, torch.maximum(lengths, lengths[order]), **inputs)
    if ratings is not None:
        ratings = lam * ratings + (1.0 - lam) * ratings[order]
    # with ratings, the dimensional part is lam * D + (1 - lam) * D = D on the mixed ratings
    return lam * objective_loss(criterion, output, labels, ratings) + (1.0 - lam) * objective_loss(
        criterion, output, labels[order], ratings
    )
