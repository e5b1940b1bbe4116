"""``model.feature_norm=speaker``: per-speaker feature normalisation, a transductive protocol.

Before the first step, every clip of every split (training, validation and test) runs once through the model's
feature extractor (``unnormalised_features``: the MFCC or log-mel front end, or the cached openSMILE functionals),
and each speaker's valid frames give that speaker's mean and standard deviation (``SpeakerNormalize.fit``). From
then on each clip is standardised with its own speaker's statistics. The test speakers' statistics come from their
unlabelled audio, so the test scores are those of a protocol that has heard every test speaker before testing
(Schuller et al.'s speaker normalisation): metrics.json says so under ``protocol``. The statistics are refitted at
every start (a resume too) from the same clips, on every process alike; only the training speakers' pooled
statistics are saved with the model, and they are what a clip of no known speaker gets (``ser-dist predict``).

Batches name their clips by ``index`` (the clip's position in its split), so the speaker rows of a batch are
``lookup[split][batch["index"]]`` (``speaker_inputs``): datasets and collation stay as they are.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from .data.dataset import collate_waveforms
from .data.records import DataError
from .errors import ConfigError

TRANSDUCTIVE_NOTE = (
    "model.feature_norm=speaker: every clip is standardised with its own speaker's feature statistics, the test "
    "speakers' taken from their unlabelled test audio (transductive: not a strictly speaker-independent protocol)"
)


def speaker_lookup(data) -> tuple[list[str], dict[str, torch.Tensor]]:
    """The speakers of every split, sorted, and per split the row of each clip's speaker (int64 [clips])."""
    speakers = {name: [data.records[i].speaker for i in idx] for name, idx in data.split_indices.items()}
    missing = [data.records[i].path for idx in data.split_indices.values() for i in idx if not data.records[i].speaker]
    if missing:
        raise DataError(
            f"model.feature_norm=speaker needs every clip's speaker, and {len(missing)} have none (e.g. {missing[0]}); "
            "set data.speaker_pattern=REGEX or a speaker column, or use model.feature_norm=global"
        )
    names = sorted({s for values in speakers.values() for s in values})
    row = {name: i for i, name in enumerate(names)}
    return names, {split: torch.tensor([row[s] for s in values], dtype=torch.long) for split, values in speakers.items()}


@torch.no_grad()
def fit_speaker_norm(model, data, clips: dict, exp, device, log) -> dict[str, torch.Tensor] | None:
    """With ``model.feature_norm=speaker``: fit the model's ``SpeakerNormalize`` on every split's clips and return
    the per-split speaker rows (None otherwise). A backbone without one fails here, before any training."""
    if exp.model.feature_norm != "speaker":
        return None
    from .models.features import speaker_moments

    norm = model.speaker_normaliser()
    if norm is None:
        raise ConfigError(
            f"model.feature_norm=speaker applies to the crnn, bilstm, lstm and opensmile backbones, not {exp.model.backbone}; "
            "leave model.feature_norm=utterance (its default) or use one of those backbones"
        )
    names, lookup = speaker_lookup(data)
    was_training = model.training
    model.eval().to(device)
    moments = None
    for split, split_clips in clips.items():
        loader = DataLoader(split_clips, batch_size=exp.train.batch_size, shuffle=False, collate_fn=collate_waveforms)
        for batch in loader:
            features, frames = model.unnormalised_features(batch["input_values"].to(device), batch["lengths"].to(device))
            batch_moments = speaker_moments(features, frames, lookup[split][batch["index"]].to(device), len(names))
            moments = batch_moments if moments is None else moments + batch_moments
    train_rows = torch.unique(lookup["train"]).to(device)
    norm.fit(moments, train_rows)
    model.train(was_training)
    counts = ", ".join(f"{split} {len(torch.unique(rows))}" for split, rows in lookup.items())
    log(f"features: per-speaker normalisation over {len(names)} speakers ({counts}); {TRANSDUCTIVE_NOTE}")
    return {split: rows.to(device) for split, rows in lookup.items()}  # on the batches' device: no copy per step


def speaker_inputs(lookup: dict[str, torch.Tensor] | None, split: str, batch: dict) -> dict:
    """The model's keyword inputs beyond the waveforms: ``speakers`` for this batch's clips, when normalising per speaker."""
    if lookup is None:
        return {}
    return {"speakers": lookup[split].to(batch["index"].device)[batch["index"]]}
