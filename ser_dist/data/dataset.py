"""Decode-once audio cache (an Arrow ``datasets.Dataset``), the torch view of it, and batch padding.

``datasets``' own Audio feature decodes every clip through torchcodec on every access (~160 WAV clips/s
per core, against ~2,900 for soundfile), so each clip is decoded exactly once, resampled, cropped and
stored as int16 in an Arrow table that later runs and epochs memory-map.

Cache layout, under ``cache_dir`` (default ``$SER_DIST_CACHE``, else ``~/.cache/ser_dist/audio``)::

    <key>/dataset/       the ``save_to_disk`` folder (columns: see ``cache_entry.features``)
    <key>/skipped.json   [[path, reason], ...] for clips that could not be decoded
    <key>/meta.json      what the entry was built from; written last
    <key>.lock           serialises builders of the same key (flock; absent where unsupported)
    .tmp-<key>-<random>/ an entry being built; renamed to <key> when complete

``key`` hashes the record list (paths, labels, speakers, sessions, sources, ratings when the records have them
(``data.targets=dimensional|both``: a ``dimensions`` column), file sizes and mtimes; for the
rows of a Hugging Face dataset, the dataset's fingerprint instead of file stats), the sample rate, the crop
length, the minimum length and ``FORMAT_VERSION``: rewriting a clip, relabelling, or changing the rate or
crop makes a new entry; old entries are never modified (delete the folder to reclaim space).
Build once for the whole corpus and take splits with ``Dataset.select`` so folds share one entry.

A clip is skipped, with its reason, when it can't be decoded (``decode_audio``: missing, empty, corrupt,
an implausible native rate, NaN/Inf samples, a path that is not UTF-8), when it is shorter than
``min_seconds`` (no model hears an emotion in a few milliseconds, and the MFCC and SSL front ends need
257 / 400 samples for one frame), or when what would be stored is silent (every sample the same value
after the crop and 16-bit rounding: a silent clip carries no emotion, so its label can only teach
noise). A clip from a truncated file (its header claims more audio than the file holds) is kept with
what is there, and the ``truncated`` column says so, for the data report.

A corpus is decoded in a pool of processes fed a bounded window at a time (``data/decode_pool.py``). Only
the crop is decoded and resampled (``decode_audio`` reads at most ``max_seconds`` at the clip's own rate), so a long
or mislabelled clip costs no more memory than a clip of ``max_seconds``. Its progress (clips decoded, and
skipped so far) is a ``ser_dist.progress`` bar or log line named ``decode``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..progress import progress
from .audio import decode_audio, decoded_or_reason
from .cache_entry import build_lock, features, is_complete, load_entry, progress_bars_off, record_batch, remove_stale_builds
from .decode_pool import decode_all
from .hf_audio import decode_hf_audio, is_hf_record, iter_audio
from .records import DataError, Record
from .resample import RESAMPLING

if TYPE_CHECKING:
    import datasets

    from .hf import HFDataset

logger = logging.getLogger(__name__)

# Bump when the stored columns or decoding change meaning, so old cache entries are not reused.
# 2: too-short and silent clips are skipped. 3: decoded from the crop alone; rate checks; the truncated column.
FORMAT_VERSION = 3
# Clips shorter than this are skipped (data.min_seconds); 0.1 s is far above every model's receptive
# field at any common rate (MFCC: 257 samples, wav2vec2/HuBERT/WavLM: 400 at 16 kHz).
DEFAULT_MIN_SECONDS = 0.1
INT16_SCALE = 32767.0
# Rows are written in record batches of about this many samples (32 MB of int16) to bound memory.
_BATCH_SAMPLES = 16_000_000


def default_cache_dir() -> Path:
    return Path(os.environ.get("SER_DIST_CACHE") or Path.home() / ".cache" / "ser_dist" / "audio")


def build_audio_dataset(
    records: Sequence[Record],
    *,
    sample_rate: int,
    max_seconds: float | None,
    cache_dir: str | os.PathLike | None,
    num_proc: int = 1,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    hf: HFDataset | None = None,
) -> tuple[datasets.Dataset, list[tuple[str, str]]]:
    """Decode every record once into a memory-mapped Arrow dataset; reuse it while nothing changed.

    Clips longer than ``max_seconds`` keep their first ``max_seconds`` (a fixed, reproducible view that
    matches the stored ``duration``; random crops are augmentation's job). ``None`` keeps whole clips.

    Clips shorter than ``min_seconds`` (before the crop) and clips whose stored samples are silent are
    skipped (see the module docstring); a clip from a truncated file is kept, with the reason in its
    ``truncated`` column (null for a whole file).

    ``hf``: the records are rows of this Hugging Face dataset (``hf://`` ids), decoded from its audio column
    (``hf_audio.iter_audio``) without writing audio files; its fingerprint is part of the cache key.

    Returns ``(dataset, skipped)``: the usable clips in record order, and ``(path, reason)`` for
    every record that could not be decoded or used. Both come from the cache on an unchanged second call.
    Safe to call from several processes at once: one decodes, the others wait and load its result.
    """
    from ..errors import ConfigError

    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ConfigError(f"data.sample_rate={sample_rate} must be a positive integer (e.g. 16000)")
    if max_seconds is not None and max_seconds <= 0:
        raise ConfigError(f"data.max_seconds={max_seconds} must be > 0 (or null to keep whole clips)")
    if min_seconds is None or not min_seconds >= 0:
        raise ConfigError(f"data.min_seconds={min_seconds} must be >= 0 (0 keeps clips of any length)")
    if max_seconds is not None and min_seconds > max_seconds:
        raise ConfigError(f"data.min_seconds={min_seconds} is longer than data.max_seconds={max_seconds}; lower data.min_seconds")
    if hf is not None and not all(is_hf_record(rec.path) for rec in records):
        raise ValueError("build_audio_dataset: with hf=, every record must be a row of that dataset (an hf:// id)")
    sample_rate = int(sample_rate)
    max_samples = None if max_seconds is None else max(1, int(round(max_seconds * sample_rate)))
    min_samples = max(1, int(round(min_seconds * sample_rate)))
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key(
        records, sample_rate=sample_rate, max_samples=max_samples, min_samples=min_samples, hf_fingerprint=hf.fingerprint if hf else None
    )
    entry = root / key

    if not is_complete(entry):
        with build_lock(root / f"{key}.lock") as locked:
            if not is_complete(entry):  # another process may have built it while we waited
                if locked:
                    remove_stale_builds(root, key)
                if entry.exists():  # a folder without meta.json was not written by this module
                    logger.warning("audio cache %s is incomplete; rebuilding it", entry)
                    shutil.rmtree(entry, ignore_errors=True)
                _build_entry(records, entry, key, sample_rate, max_samples, min_samples, num_proc, hf)
    else:
        logger.info("audio cache hit: %s", entry)
    return load_entry(entry)


def cache_key(
    records: Sequence[Record], *, sample_rate: int, max_samples: int | None, min_samples: int = 1, hf_fingerprint: str | None = None
) -> str:
    """The entry's name; ``hf_fingerprint`` (``HFDataset.fingerprint``) stands for the files of a dataset's rows."""
    digest = hashlib.sha256()
    header = {
        "format": FORMAT_VERSION,
        "sample_rate": sample_rate,
        "max_samples": max_samples,
        "min_samples": min_samples,
        "resampling": RESAMPLING,
    }
    if hf_fingerprint is not None:
        header["hf_fingerprint"] = hf_fingerprint
    digest.update(json.dumps(header, sort_keys=True).encode())
    for rec in records:
        resolved = size = mtime_ns = None
        if hf_fingerprint is None:
            resolved = os.path.realpath(rec.path)
            try:
                stat = os.stat(resolved)
                size, mtime_ns = stat.st_size, stat.st_mtime_ns
            except OSError:
                pass  # decoding will skip it as "file not found"
        row = [rec.path, resolved, size, mtime_ns, rec.label, rec.speaker, rec.session, rec.source]
        if rec.dimensions is not None:  # ratings are stored in the entry (categorical records hash as they always did)
            row.append(list(rec.dimensions))
        digest.update(json.dumps(row).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:32]


def decode_clip(
    source: str | dict, sample_rate: int, max_samples: int | None, min_samples: int = 1, name: str | None = None
) -> tuple[np.ndarray | None, int, str | None, str | None]:
    """(int16 samples or None, samples before the crop, reason when it is skipped, truncation note when it
    is kept from a truncated file). ``source``: a file path, or a dataset row's encoded audio
    (``hf_audio.iter_audio``), ``name`` its record id. Runs in pool workers."""
    if isinstance(source, dict):
        decoded = decoded_or_reason(decode_hf_audio, source, name or "", sample_rate, max_samples)
    else:
        decoded = decoded_or_reason(decode_audio, source, sample_rate, max_samples)
    if isinstance(decoded, str):  # the reason it can't be used: skipped, not the corpus
        return None, 0, decoded, None
    original = decoded.num_samples
    if original < min_samples:
        return None, original, too_short_reason(original, sample_rate, min_samples), None
    # decode_audio already clips to [-1, 1]; rounding keeps the int16 error within half a step.
    samples = np.rint(decoded.samples * INT16_SCALE).astype(np.int16)
    silent = silent_reason(samples)
    if silent is not None:
        if original > samples.shape[0]:
            silent = silent.replace("silent:", f"silent in its first {max_samples / sample_rate:g} s (the data.max_seconds crop):")
        return None, original, silent, None
    return samples, original, None, decoded.truncated


def too_short_reason(num_samples: int, sample_rate: int, min_samples: int, fix: str = "lower data.min_seconds to keep it") -> str:
    """The skip reason for a clip under the minimum length, e.g. 'too short (0.00625 s < 0.1 s minimum; ...)'."""
    return f"too short ({num_samples / sample_rate:.3g} s < {min_samples / sample_rate:g} s minimum; {num_samples} samples at {sample_rate} Hz; {fix})"


def silent_reason(samples: np.ndarray) -> str | None:
    """Why int16 ``samples`` are silent (every sample the same value), or None when they are not."""
    if samples.min() != samples.max():
        return None
    value = "0" if not samples[0] else f"{samples[0] / INT16_SCALE:.4g} (DC only)"
    return f"silent: every sample is {value} at 16-bit precision"


def _jobs(records: Sequence[Record], hf: HFDataset | None, sample_rate: int, max_samples: int | None, min_samples: int) -> Iterator[tuple]:
    """``decode_clip`` arguments per record, in order: its file, or its row's encoded audio (read a few rows at a time)."""
    sources = iter_audio(hf, records) if hf is not None else (rec.path for rec in records)
    for rec, source in zip(records, sources):
        yield source, sample_rate, max_samples, min_samples, rec.path


def _build_entry(
    records, entry: Path, key: str, sample_rate: int, max_samples: int | None, min_samples: int, num_proc: int, hf: HFDataset | None = None
) -> None:
    import datasets
    import pyarrow as pa

    started = time.monotonic()
    building = entry.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    building.mkdir()
    try:
        schema = features(dimensions=any(rec.dimensions is not None for rec in records)).arrow_schema
        staging = building / "decoded.arrow"
        skipped: list[tuple[str, str]] = []
        kept = 0
        rows: list[tuple[Record, np.ndarray, int, str | None]] = []
        pending_samples = 0
        bar = progress(total=len(records), desc="decode", unit="clip")
        with bar, pa.OSFile(str(staging), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            decoded = decode_all(decode_clip, _jobs(records, hf, sample_rate, max_samples, min_samples), len(records), num_proc)
            for rec, (audio, original, reason, truncated) in zip(records, decoded):
                if audio is None:
                    skipped.append((rec.path, reason))
                else:
                    rows.append((rec, audio, original, truncated))
                    pending_samples += audio.shape[0]
                    kept += 1
                if pending_samples >= _BATCH_SAMPLES:
                    writer.write_batch(record_batch(rows, schema, sample_rate))
                    rows, pending_samples = [], 0
                bar.update(1, skipped=len(skipped))
            writer.write_batch(record_batch(rows, schema, sample_rate))
        with progress_bars_off():
            # An empty dataset saved with the default sharding has no data file and can't be loaded back.
            datasets.Dataset.from_file(str(staging)).save_to_disk(str(building / "dataset"), num_shards=None if kept else 1)
        staging.unlink()
        (building / "skipped.json").write_text(json.dumps(skipped, indent=0))
        meta = {
            "format": FORMAT_VERSION,
            "sample_rate": sample_rate,
            "max_samples": max_samples,
            "min_samples": min_samples,
            "num_records": len(records),
            "num_clips": kept,
            "num_skipped": len(skipped),
        }
        (building / "meta.json").write_text(json.dumps(meta, indent=2))  # last: marks the entry complete
        _publish(building, entry)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    logger.info("decoded %d clips into %s in %.1fs (%d skipped)", kept, entry, time.monotonic() - started, len(skipped))


def _publish(building: Path, entry: Path) -> None:
    """Atomically move a complete build into place; if another process got there first, keep theirs."""
    try:
        os.rename(building, entry)
    except OSError:
        if not is_complete(entry):
            raise
        logger.info("audio cache %s was built by another process; using it", entry)


class AudioClips(torch.utils.data.Dataset):
    """A torch view of a decoded dataset: ``{"waveform": float32 [T], "label": int, "index": i}``, plus
    ``"dimensions"`` (float32 [K]) when the entry holds ratings. Without classes (``label2id`` empty,
    data.targets=dimensional) every label is 0.

    Reads int16 samples zero-copy from the memory-mapped Arrow table (no per-sample Python objects).
    Pickles by file reference, so DataLoader workers map the same files instead of copying audio.
    """

    def __init__(self, dataset, label2id: dict[str, int]):
        # One Arrow read for the small columns (iterating dataset["label"] costs ~8 us a row).
        columns = dataset.select_columns(["label", "num_samples"]).with_format("arrow")[:]
        names = columns.column("label").to_pylist()
        unknown = sorted(set(names) - set(label2id)) if label2id else []
        if unknown:
            raise DataError(
                f"label {unknown[0]!r} of the decoded clips is not among the model's labels {sorted(label2id)}; check data.labels"
            )
        self.dataset = dataset
        self.label2id = dict(label2id)
        self.labels = np.array([label2id[name] for name in names] if label2id else [0] * len(names), dtype=np.int64)
        self.dimensions = None
        if "dimensions" in dataset.column_names:
            ratings = dataset.select_columns(["dimensions"]).with_format("arrow")[:].column("dimensions").to_pylist()
            self.dimensions = np.array(ratings, dtype=np.float32).reshape(len(names), -1)
        self.num_samples = columns.column("num_samples").to_numpy().astype(np.int64)
        self._audio = dataset.select_columns(["audio"]).with_format("arrow")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        index = int(index)  # samplers may hand numpy integers
        samples = self._audio[index].column("audio")[0].values.to_numpy(zero_copy_only=True)
        # numpy, not torch: a torch elementwise op on one clip pays intra-op thread start-up in the
        # main process (num_workers=0), which can cost more than the arithmetic.
        waveform = samples.astype(np.float32) * np.float32(1.0 / INT16_SCALE)
        item = {"waveform": torch.from_numpy(waveform), "label": int(self.labels[index]), "index": index}
        if self.dimensions is not None:
            item["dimensions"] = self.dimensions[index]
        return item


def collate_waveforms(batch: Iterable[dict]) -> dict:
    """Zero-pad a list of ``AudioClips`` items to the longest waveform in the batch.

    Returns ``input_values`` float32 [B, T] (items with more dimensions, such as cached encoder
    features [frames, H], are padded along the first: [B, T, H]), ``lengths`` int64 [B] in samples (the
    models build their own masks from it, at their own frame rate), ``labels`` int64 [B] and ``index`` int64 [B];
    ``dimensions`` float32 [B, K] when the items have ratings.
    """
    batch = list(batch)
    if not batch:
        raise ValueError("collate_waveforms: empty batch")
    # Built in numpy for the same reason as AudioClips.__getitem__, then wrapped without a copy.
    lengths = np.array([item["waveform"].shape[0] for item in batch], dtype=np.int64)
    longest = int(lengths.max())
    input_values = np.zeros((len(batch), longest, *batch[0]["waveform"].shape[1:]), dtype=np.float32)
    for row, item in enumerate(batch):
        waveform = item["waveform"]
        input_values[row, : lengths[row]] = waveform.numpy() if isinstance(waveform, torch.Tensor) else waveform
    collated = {
        "input_values": torch.from_numpy(input_values),
        "lengths": torch.from_numpy(lengths),
        "labels": torch.tensor([int(item["label"]) for item in batch], dtype=torch.int64),
        "index": torch.tensor([int(item["index"]) for item in batch], dtype=torch.int64),
    }
    if "dimensions" in batch[0]:
        collated["dimensions"] = torch.from_numpy(np.stack([np.asarray(item["dimensions"], dtype=np.float32) for item in batch]))
    return collated
