"""One entry of the decode-once audio cache on disk (see ``data/dataset.py`` for the layout).

Its Arrow columns, the record batches the decoded clips are written in, reading a complete entry back
(memory-mapped), and the lock that makes concurrent builders of one entry decode it once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def features(dimensions: bool = False):
    """The entry's columns; ``audio`` holds int16 samples (``dataset.INT16_SCALE``), read back zero-copy.
    ``dimensions``: also each clip's ratings (``Record.dimensions``), for data.targets=dimensional|both."""
    from datasets import Features, List, Value

    columns = {
        "audio": List(Value("int16")),  # waveform * 32767, clipped; mono at the cache's sample rate
        "num_samples": Value("int64"),  # after the crop
        "duration": Value("float64"),  # seconds, after the crop
        "original_duration": Value("float64"),  # seconds, before the crop
        "path": Value("string"),
        "label": Value("string"),
        "speaker": Value("string"),
        "session": Value("string"),
        "source": Value("string"),
        "truncated": Value("string"),  # why the file is truncated (its header claims more audio); null when whole
    }
    if dimensions:
        columns["dimensions"] = List(Value("float64"))  # the ratings, in data.dimension_columns order
    return Features(columns)


def record_batch(rows, schema, sample_rate: int):
    """One Arrow record batch of ``(record, int16 samples, samples before the crop, truncation note)`` rows."""
    import pyarrow as pa

    lengths = np.array([audio.shape[0] for _, audio, _, _ in rows], dtype=np.int64)
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])  # int32 offsets: < 2**31 samples per batch, see dataset._BATCH_SAMPLES
    samples = np.concatenate([audio for _, audio, _, _ in rows]) if rows else np.zeros(0, dtype=np.int16)
    columns = {
        "audio": pa.ListArray.from_arrays(pa.array(offsets), pa.array(samples, type=pa.int16())),
        "num_samples": pa.array(lengths, type=pa.int64()),
        "duration": pa.array(lengths / sample_rate, type=pa.float64()),
        "original_duration": pa.array([original / sample_rate for _, _, original, _ in rows], type=pa.float64()),
        "path": pa.array([rec.path for rec, _, _, _ in rows], type=pa.string()),
        "label": pa.array([rec.label for rec, _, _, _ in rows], type=pa.string()),
        "speaker": pa.array([rec.speaker for rec, _, _, _ in rows], type=pa.string()),
        "session": pa.array([rec.session for rec, _, _, _ in rows], type=pa.string()),
        "source": pa.array([rec.source for rec, _, _, _ in rows], type=pa.string()),
        "truncated": pa.array([truncated for _, _, _, truncated in rows], type=pa.string()),
    }
    if "dimensions" in schema.names:
        columns["dimensions"] = pa.array([list(rec.dimensions) for rec, _, _, _ in rows], type=pa.list_(pa.float64()))
    return pa.record_batch([columns[name] for name in schema.names], schema=schema)


def is_complete(entry: Path) -> bool:
    return (entry / "meta.json").is_file()


def load_entry(entry: Path):
    import datasets

    dataset = datasets.load_from_disk(str(entry / "dataset"))  # memory-mapped, not read into RAM
    skipped = [(str(path), str(reason)) for path, reason in json.loads((entry / "skipped.json").read_text())]
    return dataset, skipped


@contextlib.contextmanager
def build_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive flock so concurrent builders of one key decode once; yields whether it is held.

    The OS releases it if the holder dies. Where flock is unavailable (some network filesystems)
    builders race instead, and ``dataset._publish`` keeps the first complete entry.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield False
        return
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            logger.info("waiting for another process to finish building %s", path.with_suffix(""))
            fcntl.flock(handle, fcntl.LOCK_EX)
            locked = True
        except OSError:  # ENOLCK and friends: no locking on this filesystem
            locked = False
        try:
            yield locked
        finally:
            if locked:
                fcntl.flock(handle, fcntl.LOCK_UN)


def remove_stale_builds(root: Path, key: str) -> None:
    """Delete leftovers of killed builds of ``key``; only called while holding its lock, so none is live."""
    for leftover in root.glob(f".tmp-{key}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def progress_bars_off():
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
