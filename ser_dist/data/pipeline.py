"""From a config's ``data`` section to decoded, split datasets and the run's data report.

Steps: scan the corpus with its adapter (manifest rows), keep the configured classes, decode every
clip once into the Arrow cache (unreadable clips are skipped and reported), split (speaker-independent
by default), and count everything that was found, used, skipped or set aside.
"""
from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..registry import CORPORA
from .manifest import DataError, Record, Scan


@dataclass
class PreparedData:
    label_names: list[str]
    records: list[Record]  # the decoded, usable clips, aligned with ``dataset``
    dataset: object  # datasets.Dataset with the decoded audio
    split: dict[str, list[int]]
    report: dict = field(default_factory=dict)

    def class_counts(self, split_name: str = "train") -> list[int]:
        label2id = {name: i for i, name in enumerate(self.label_names)}
        counts = [0] * len(self.label_names)
        for i in self.split[split_name]:
            counts[label2id[self.records[i].label]] += 1
        return counts

    def durations(self, split_name: str) -> list[float]:
        column = self.dataset["duration"]
        return [float(column[i]) for i in self.split[split_name]]


def scan_corpus(data) -> Scan:
    """Run the configured corpus adapter and apply ``data.labels``."""
    import ser_dist.data.corpora  # noqa: F401  registers the corpus adapters

    root = Path(data.root) if data.root else None
    if data.manifest is None:
        if root is None:
            raise DataError("data.root is required: pass data.root=DIR")
        if not root.is_dir():
            raise DataError(f"{root}: data folder not found; pass data.root=DIR with one subfolder per emotion (or data.manifest=FILE)")
    try:
        adapter = CORPORA.get("manifest" if data.manifest and data.corpus == "folder" else data.corpus)
    except KeyError as err:
        raise DataError(f"data.corpus: {err.args[0]}") from None
    scan = adapter(root, data)
    if data.labels:
        wanted = set(data.labels)
        kept = []
        for rec in scan.records:
            if rec.label in wanted:
                kept.append(rec)
            else:
                scan.problems.append((rec.path, f"label {rec.label!r} not in data.labels"))
        scan.records = kept
        scan.labels = list(data.labels)
    elif scan.labels is None:
        scan.labels = sorted({rec.label for rec in scan.records})
    if not scan.records:
        raise DataError(f"{data.manifest or root}: no usable audio clips found (supported: wav, flac, mp3, ogg, ...); check data.root / data.corpus")
    counts = collections.Counter(rec.label for rec in scan.records)
    empty = [label for label in scan.labels if counts[label] == 0]
    if empty:
        raise DataError(f"{data.manifest or root}: class {empty[0]!r} has no clips; add clips or leave it out with data.labels=...")
    return scan


def prepare_data(data, seed: int, num_proc: int = 1) -> PreparedData:
    """Scan, decode and split the corpus; the split is drawn with ``data.split_seed`` when set, else ``seed``
    (the training seed), so runs that differ only in ``train.seed`` can share one split."""
    from .dataset import build_audio_dataset
    from .splits import split_records

    scan = scan_corpus(data)
    dataset, skipped = build_audio_dataset(
        scan.records, sample_rate=data.sample_rate, max_seconds=data.max_seconds, cache_dir=data.cache_dir, num_proc=num_proc
    )
    skipped_paths = {path for path, _ in skipped}
    records = [rec for rec in scan.records if rec.path not in skipped_paths]
    counts = collections.Counter(rec.label for rec in records)
    unreadable = [label for label in scan.labels if counts[label] == 0]
    if unreadable:
        raise DataError(f"{data.manifest or data.root}: every clip of class {unreadable[0]!r} failed to decode (see the reasons in the data report); fix the files or leave the class out with data.labels=...")
    split = split_records(records, data, seed if data.split_seed is None else data.split_seed)
    report = data_report(data, scan, records, skipped, split, dataset)
    return PreparedData(label_names=list(scan.labels), records=records, dataset=dataset, split=split, report=report)


def data_report(data, scan: Scan, records: list[Record], skipped, split: dict, dataset) -> dict:
    durations = dataset["duration"]
    original = dataset["original_duration"]
    per_split = {}
    for name, indices in split.items():
        per_split[name] = {
            "num_clips": len(indices),
            "seconds": round(float(sum(durations[i] for i in indices)), 2),
            "per_class": dict(sorted(collections.Counter(records[i].label for i in indices).items())),
            "speakers": sorted({records[i].speaker for i in indices if records[i].speaker is not None}),
        }
    return {
        "corpus": data.corpus,
        "root": data.root,
        "manifest": data.manifest,
        "labels": list(scan.labels),
        "num_found": len(scan.records) + len(scan.problems),
        "num_used": len(records),
        "num_cropped": int(sum(1 for d, o in zip(durations, original) if o > d + 1e-6)),
        "skipped_files": [{"path": p, "reason": r} for p, r in skipped],
        "set_aside_files": [{"path": p, "reason": r} for p, r in scan.problems],
        "splits": per_split,
    }


def summary_line(report: dict) -> str:
    splits = " / ".join(f"{name} {info['num_clips']}" for name, info in report["splits"].items())
    return (
        f"data: {report['num_used']} clips used of {report['num_found']} found "
        f"({len(report['skipped_files'])} unreadable skipped, {len(report['set_aside_files'])} set aside, "
        f"{report['num_cropped']} cropped); {splits}"
    )


def write_report(report: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2))


def first_problems(report: dict, limit: int = 5) -> Optional[str]:
    rows = report["skipped_files"] + report["set_aside_files"]
    if not rows:
        return None
    shown = "; ".join(f"{Path(r['path']).name}: {r['reason']}" for r in rows[:limit])
    more = f" (+{len(rows) - limit} more)" if len(rows) > limit else ""
    return shown + more
