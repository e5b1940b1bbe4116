"""A Hugging Face dataset's rows as prediction inputs: ``ser-dist predict MODEL --data hf_dataset=ID_OR_DIR``.

``--data`` is parsed as ``ser-dist evaluate`` parses it (``overrides.data_overrides``), and takes the keys
that name a dataset and its columns (``DATASET_KEYS``): a split protocol or a corpus folder means nothing
to prediction. Every row of every split (or of the one split asked for) is an input named by its record
id ``hf://<name>/<split>/<row>``, whether it has a label or not. The rows' audio is read a few rows at a
time (``hf_audio.iter_audio``) and decoded one row at a time as the model's batches need it, so a dataset
of any size streams through ``EmotionClassifier.predict_decoded``; an undecodable row is the reason it
can't be used, as an unreadable file is.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from ..data.records import DataError
from ..errors import UserError

DATASET_KEYS = ("hf_dataset", "hf_config", "hf_revision", "audio_column", "label_column", "speaker_column", "session_column")


def dataset_keys(items: list[str]) -> dict[str, str]:
    """``--data key=value ...`` as {key: value} for ``predict_dataset``; any key but ``DATASET_KEYS`` is one line."""
    from ..overrides import data_overrides

    keys = {dotted.removeprefix("data."): value for dotted, value in data_overrides(items).items()}
    check_keys(keys)
    return keys


def check_keys(keys: Mapping[str, str | None]) -> None:
    """A dataset is named (``hf_dataset``), with no key but ``DATASET_KEYS`` and none of them empty."""
    for key, value in keys.items():
        if key not in DATASET_KEYS:
            raise UserError(f"--data {key}=: predict reads the rows of a Hugging Face dataset and takes only {', '.join(DATASET_KEYS)}")
        if value is None or not str(value).strip():
            raise UserError(f"--data {key}= needs a value (it was given empty)")
    if "hf_dataset" not in keys:
        raise UserError("--data needs hf_dataset=ID_OR_DIR (a Hub id, a save_to_disk folder, or a file or folder load_dataset reads)")


def dataset_rows(keys: Mapping[str, str], split: str | None, sample_rate: int) -> tuple[Iterator[tuple[str, np.ndarray | str]], int]:
    """(each row's record id and its waveform at ``sample_rate`` or the reason it has none, lazily; the number
    of rows): every split's rows in the dataset's order, or ``split``'s (one of the dataset's own split names)."""
    from ..data.hf import open_hf_dataset, record_id
    from ..data.records import Record

    check_keys(keys)
    hf = open_hf_dataset(
        keys["hf_dataset"],
        config=keys.get("hf_config"),
        revision=keys.get("hf_revision"),
        audio_column=keys.get("audio_column"),
        label_column=keys.get("label_column"),  # None: no label is read, so a dataset without labels is predicted too
        speaker_column=keys.get("speaker_column"),
        session_column=keys.get("session_column"),
    )
    if split is not None and split not in hf.splits:
        raise DataError(
            f"{hf.name}: --split {split}: the dataset has no such split (its splits: {', '.join(hf.splits)}); "
            "give one of them, or leave --split out to predict every row"
        )
    chosen = [split] if split is not None else list(hf.splits)
    records = [Record(record_id(hf.name, name, row), label="") for name in chosen for row in range(len(hf.splits[name]))]
    if not records:
        raise DataError(f"{hf.name}: no rows to predict in {'split ' + repr(split) if split else 'any split'}")
    return _decoded(hf, records, sample_rate), len(records)


def _decoded(hf, records: list, sample_rate: int) -> Iterator[tuple[str, np.ndarray | str]]:
    from ..data.audio import decoded_or_reason
    from ..data.hf_audio import decode_hf_audio, iter_audio

    for rec, value in zip(records, iter_audio(hf, records)):
        decoded = decoded_or_reason(decode_hf_audio, value, rec.path, sample_rate)  # a row that fails is its reason, as a file
        yield rec.path, decoded if isinstance(decoded, str) else decoded.samples
