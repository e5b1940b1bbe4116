"""The audio of a Hugging Face dataset's records (ser_dist.data.hf opens and scans the dataset), read back from it.

A record id ``hf://<name>/<split>/<row>`` names its row (``audio_location``). ``iter_audio`` yields each
record's encoded audio (``{"bytes", "path"}``) in record order, a few rows at a time, so a corpus of 100,000
clips never sits in memory, and ``decode_hf_audio`` decodes one with ``decode_audio``'s semantics.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from .audio import AudioError, Decoded, decode_audio, decode_audio_bytes
from .hf import RECORD_PREFIX, HFDataset, resolve_audio_path
from .records import Record

# Rows of encoded audio read at a time: ~1-6 MB for clips of a few seconds, whatever the corpus's size.
READ_BATCH_ROWS = 32


class AudioLocation(NamedTuple):
    split: str  # the dataset's own split name, e.g. "validation"
    row: int  # the row in that split


def is_hf_record(path: str) -> bool:
    return str(path).startswith(RECORD_PREFIX)


def audio_location(path: str) -> AudioLocation:
    """The split and row of a record id ``hf://<name>/<split>/<row>`` (a Hub name may hold a '/', splits never do)."""
    _, split, row = str(path)[len(RECORD_PREFIX) :].rsplit("/", 2)
    return AudioLocation(split, int(row))


def iter_audio(hf: HFDataset, records: Iterable[Record], batch_rows: int = READ_BATCH_ROWS) -> Iterator[dict]:
    """``{"bytes": ..., "path": ...}`` (the encoded clip, or the file it names, made absolute) for each record, in
    order; ``batch_rows`` rows are read at a time, so memory holds one batch's encoded audio, not the corpus's."""
    batch: list[AudioLocation] = []
    for rec in records:
        batch.append(audio_location(rec.path))
        if len(batch) >= batch_rows:
            yield from _read(hf, batch)
            batch = []
    yield from _read(hf, batch)


def _read(hf: HFDataset, locations: list[AudioLocation]) -> Iterator[dict]:
    by_split: dict[str, list[int]] = {}
    for loc in locations:
        by_split.setdefault(loc.split, []).append(loc.row)
    values = {split: iter(hf.audio_rows[split][rows][hf.columns.audio]) for split, rows in by_split.items()}
    for loc in locations:
        value = next(values[loc.split]) or {}
        data = value.get("bytes")
        yield {"bytes": data, "path": value.get("path") if data else resolve_audio_path(value.get("path"), hf.base_dir)}


def decode_hf_audio(value: dict | None, name: str, sample_rate: int = 16000, max_samples: int | None = None) -> Decoded:
    """``decode_audio`` of one ``iter_audio`` value: its bytes, else the file its path names; ``AudioError``
    (named ``name``, the record id) with the reason, for empty, undecodable or missing audio."""
    value = value or {}
    if value.get("bytes") is not None:
        return decode_audio_bytes(value["bytes"], name, sample_rate, max_samples)
    if not value.get("path"):
        raise AudioError(name, "no audio on this row (the audio column is empty)")
    try:
        return decode_audio(value["path"], sample_rate, max_samples)
    except AudioError as err:
        raise AudioError(name, f"{err.reason} ({value['path']})") from None
