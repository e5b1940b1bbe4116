"""From a config's ``data`` section to decoded, split datasets and the run's data report.

Steps: scan the corpus with its adapter (manifest rows), or the Hugging Face dataset ``data.hf_dataset``
(``data/hf.py``: one record per row, ``hf://<name>/<split>/<row>``), keep the configured classes, decode every
clip once into the Arrow cache (unreadable, too short and silent clips are skipped and reported),
split (speaker-independent by default; ``data.split=fixed`` takes a dataset's own splits), and count
everything that was found, used, skipped or set aside (a dataset's rows by split and row index).
A clip kept from a truncated file (its header claims more audio than the file holds) is listed under
``truncated_files`` in the report, with one warning line counting them.

Data that would train to a meaningless number stops here with one line naming the fix: fewer than 2
classes, or a class with no clip in the train split (the model could never learn it). A class missing
from the validation or test split is a warning (that split's UA averages the classes it has): in the
report's ``warnings``, which the run log shows.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..registry import CORPORA
from .dimensions import add_hf_dimensions, dimension_columns, labels_optional, no_ratings_source
from .hf_audio import audio_location, is_hf_record
from .records import AUDIO_EXTENSIONS, DataError, Record, Scan

# The data keys that only a Hugging Face dataset reads, with their defaults.
HF_ONLY_KEYS = {
    "hf_config": None,
    "hf_revision": None,
    "audio_column": None,
    "label_column": "label",
    "speaker_column": None,
    "session_column": None,
}


@dataclass
class PreparedData:
    label_names: list[str]  # the classes the model learns ([] under data.targets=dimensional)
    records: list[Record]  # the decoded, usable clips, aligned with ``dataset``
    dataset: object  # datasets.Dataset with the decoded audio
    split_indices: dict[str, list[int]]  # train/val/test -> indices into ``records`` (data.split names the protocol)
    report: dict = field(default_factory=dict)
    hf: object = None  # the HFDataset the records are rows of (data.hf_dataset), else None
    dimension_names: list[str] = field(default_factory=list)  # data.dimension_columns under data.targets=dimensional|both

    def class_counts(self, split_name: str = "train") -> list[int]:
        label2id = {name: i for i, name in enumerate(self.label_names)}
        counts = [0] * len(self.label_names)
        if not self.label_names:  # data.targets=dimensional: no classes to count
            return counts
        for i in self.split_indices[split_name]:
            counts[label2id[self.records[i].label]] += 1
        return counts

    def durations(self, split_name: str) -> list[float]:
        column = self.dataset["duration"][:]  # one read: indexing the column row by row costs ~0.1 ms a row
        return [float(column[i]) for i in self.split_indices[split_name]]


def corpus_location(data) -> str | None:
    """What messages name as the corpus: ``data.hf_dataset``, ``data.manifest`` or ``data.root``."""
    return data.hf_dataset or data.manifest or data.root


def clip_name(path: str) -> str:
    """A clip as messages name it: a file by its name, a dataset's row by its record id."""
    return path if is_hf_record(path) else Path(path).name


def implicit_manifest(data, root: Path | None) -> Path | None:
    """Dimensional targets on a folder corpus whose root has a ``manifest.csv`` (the demo corpus writes one with its
    ratings): that manifest, as ``data.manifest`` would name it; None otherwise."""
    if data.manifest is not None or data.corpus != "folder" or not dimension_columns(data) or root is None:
        return None
    candidate = root / "manifest.csv"
    return candidate if candidate.is_file() else None


def unlisted_audio(root: Path, scan: Scan) -> list[str]:
    """Audio files under ``root`` that the adopted manifest does not list: set aside and reported, never dropped silently."""
    from .records import AUDIO_EXTENSIONS

    listed = {os.path.realpath(path) for path in [*(rec.path for rec in scan.records), *(path for path, _ in scan.problems)]}
    found = (path for path in sorted(root.rglob("*")) if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file())
    return [str(path) for path in found if os.path.realpath(path) not in listed]


def scan_corpus(data) -> Scan:
    """Run the configured corpus adapter (or read the rows of ``data.hf_dataset``) and apply ``data.labels``."""
    if data.labels:
        repeated = [label for label, count in collections.Counter(data.labels).items() if count > 1]
        if repeated:
            raise ConfigError(
                f"data.labels={','.join(data.labels)} lists {repeated[0]!r} {data.labels.count(repeated[0])} times; "
                f"name each class once, e.g. data.labels={','.join(dict.fromkeys(data.labels))}"
            )

    root = Path(data.root) if data.root else None
    check_corpus_keys(data)
    if data.hf_dataset is not None:
        from .cache_entry import progress_bars_off
        from .hf import scan_data

        with progress_bars_off():  # load_dataset's conversion bars: the run log and one-line errors stay clean
            scan = scan_data(data)
        add_hf_dimensions(scan, data)
    else:
        implicit = implicit_manifest(data, root)
        if implicit is not None:
            data = dataclasses.replace(data, manifest=str(implicit))
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
        if implicit is not None:
            scan.warnings.append(f"data.targets={data.targets}: read the clips and their ratings from {implicit} (data.manifest)")
            scan.problems.extend((path, f"not listed in {implicit.name}, which holds the ratings") for path in unlisted_audio(root, scan))
        _set_aside_unrated(scan, data)
    found = sorted({rec.label for rec in scan.records})
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
        raise DataError(_nothing_usable(data, root, scan, found))
    counts = collections.Counter(rec.label for rec in scan.records)
    empty = [label for label in scan.labels if counts[label] == 0]
    if empty:
        raise DataError(f"{corpus_location(data)}: class {empty[0]!r} has no clips; add clips or leave it out with data.labels=...")
    return scan


def _set_aside_unrated(scan: Scan, data) -> None:
    """Dimensional targets from an adapter: one that gives no clip ratings is one line; a clip without them is set aside."""
    if not dimension_columns(data) or not scan.records:
        return
    if all(rec.dimensions is None for rec in scan.records):
        raise no_ratings_source(data, corpus_location(data))
    scan.problems.extend((rec.path, "no ratings (data.dimension_columns) for this clip") for rec in scan.records if rec.dimensions is None)
    scan.records = [rec for rec in scan.records if rec.dimensions is not None]


def check_corpus_keys(data) -> None:
    """``data.hf_dataset`` is the corpus: a folder's or manifest's keys beside it, or a dataset's keys without
    it, are one line before anything is read."""
    if data.hf_dataset is None:
        for key, default in HF_ONLY_KEYS.items():
            if getattr(data, key) != default:
                raise ConfigError(
                    f"data.{key}={getattr(data, key)} is for a Hugging Face dataset: set data.hf_dataset=ID_OR_DIR, or leave it out"
                )
        return
    for key, value, fix in (
        ("root", data.root, "they name two corpora: give one (data.root=null)"),
        ("manifest", data.manifest, "they name two corpora: give one (data.manifest=null)"),
        (
            "corpus",
            None if data.corpus == "folder" else data.corpus,
            "a corpus adapter reads a folder, not a dataset: set data.corpus=folder",
        ),
        (
            "speaker_pattern",
            data.speaker_pattern,
            "speakers come from a column of the dataset: set data.speaker_pattern=null (and data.speaker_column=COLUMN)",
        ),
    ):
        if value is not None:
            raise ConfigError(f"data.hf_dataset={data.hf_dataset} and data.{key}={value}: {fix}")


def _nothing_usable(data, root, scan: Scan, labels_found: list[str]) -> str:
    """The one line for a scan that kept no clip: what was found and why none of it is used."""
    where = corpus_location(data)
    if data.labels and labels_found:
        return f"{where}: data.labels={list(data.labels)} matches none of the labels found ({', '.join(labels_found)}); fix data.labels or leave it unset"
    if scan.problems:
        path, reason = scan.problems[0]
        check = "data.hf_dataset / data.label_column" if data.hf_dataset else "data.root / data.corpus"
        return f"{where}: none of the {len(scan.problems)} files found can be used (first: {clip_name(path)}: {reason}); check {check}"
    return f"{where}: no usable audio clips found (supported: {', '.join(e[1:] for e in AUDIO_EXTENSIONS[:4])}, ...); check data.root / data.corpus"


def prepare_data(data, seed: int, num_proc: int = 1, *, for_training: bool = True) -> PreparedData:
    """Scan, decode and split the corpus; the split is drawn with ``data.split_seed`` when set, else ``seed``
    (the training seed), so runs that differ only in ``train.seed`` can share one split.

    ``for_training``: fewer than 2 classes, or a class absent from the train split, is a ``DataError``
    (scoring a saved model on a split, as ``ser-dist evaluate`` does, needs neither).
    """
    from .dataset import build_audio_dataset
    from .splits import split_records

    scan = scan_corpus(data)
    where = corpus_location(data)
    hf = getattr(scan, "dataset", None)
    classes = not labels_optional(data)  # data.targets=dimensional: the clips' classes (if any) are not learned
    if for_training and classes and len(scan.labels) < 2:
        raise DataError(
            f"{where}: only one class ({scan.labels[0]!r}, {len(scan.records)} clips); a classifier needs at least 2 classes: "
            "add clips of another emotion (another class folder or manifest label), or widen data.labels"
        )
    if hf is not None:  # what the protocol needs of the dataset, before any audio is decoded
        from .hf import check_own_splits, check_split_columns

        check_split_columns(hf, data.split)
        if data.split == "fixed":
            check_own_splits(hf, needs_validation=data.val_fraction > 0)
    dataset, skipped = build_audio_dataset(
        scan.records,
        sample_rate=data.sample_rate,
        max_seconds=data.max_seconds,
        cache_dir=data.cache_dir,
        num_proc=num_proc,
        min_seconds=data.min_seconds,
        hf=hf,
    )
    skipped_paths = {path for path, _ in skipped}
    records = [rec for rec in scan.records if rec.path not in skipped_paths]
    counts = collections.Counter(rec.label for rec in records)
    unreadable = [label for label in scan.labels if counts[label] == 0]
    if unreadable and classes:
        reasons = dict(skipped)
        first = next(rec.path for rec in scan.records if rec.label == unreadable[0])
        raise DataError(
            f"{where}: every clip of class {unreadable[0]!r} was skipped (e.g. {clip_name(first)}: {reasons.get(first, 'unreadable')}); "
            "fix the files or leave the class out with data.labels=..."
        )
    own_splits = scan.fixed_split if hf is not None else None
    split_indices = split_records(records, data, seed if data.split_seed is None else data.split_seed, own_splits)
    coverage = class_coverage(records, split_indices, scan.labels) if classes else {}
    if for_training and coverage.get("train"):
        label = coverage["train"][0]
        elsewhere = ", ".join(f"{sum(1 for i in split_indices[name] if records[i].label == label)} in {name}" for name in ("val", "test"))
        raise DataError(
            f"{where}: class {label!r} has no clips in the train split ({elsewhere}; data.split={data.split}), so the model can't learn it; "
            "add clips of it from other speakers, leave it out with data.labels=..., or use another data.split"
        )
    warnings = list(scan.warnings) + [
        f"class {label!r} has no clips in the {name} split; {name} UA averages the other {len(scan.labels) - len(missing)} classes"
        for name, missing in coverage.items()
        if name != "train" and split_indices[name]
        for label in missing
    ]
    truncated = truncated_files(dataset)
    if truncated:
        path, reason = truncated[0]
        warnings.append(
            f"{len(truncated)} clip(s) come from truncated files, kept with the audio they hold "
            f"(e.g. {clip_name(path)}: {reason.removeprefix('truncated: ')}); "
            "re-export or remove them (all listed under truncated_files in data_report.json)"
        )
    report = data_report(data, scan, records, skipped, split_indices, dataset, warnings)
    return PreparedData(
        label_names=list(scan.labels) if classes else [],
        records=records,
        dataset=dataset,
        split_indices=split_indices,
        report=report,
        hf=hf,
        dimension_names=dimension_columns(data),
    )


def class_coverage(records: list[Record], split_indices: dict, labels: list[str]) -> dict[str, list[str]]:
    """For each split, the classes (in ``labels`` order) with no clip in it."""
    return {
        name: [label for label in labels if label not in {records[i].label for i in indices}] for name, indices in split_indices.items()
    }


def truncated_files(dataset) -> list[tuple[str, str]]:
    """(path, reason) for each decoded clip that comes from a truncated file."""
    columns = dataset.select_columns(["path", "truncated"]).with_format("arrow")[:]
    return [(path, note) for path, note in zip(columns.column("path").to_pylist(), columns.column("truncated").to_pylist()) if note]


def skip_kind(reason: str) -> str:
    """How the summary counts a skipped clip: too short, silent, or unreadable (everything else)."""
    return "too short" if reason.startswith("too short") else "silent" if reason.startswith("silent") else "unreadable"


def data_report(data, scan: Scan, records: list[Record], skipped, split_indices: dict, dataset, warnings: list[str] | None = None) -> dict:
    durations = dataset["duration"][:]  # lists, read at once: indexing the columns row by row costs ~0.1 ms a row
    original = dataset["original_duration"][:]
    per_split = {}
    for name, indices in split_indices.items():
        per_split[name] = {
            "num_clips": len(indices),
            "seconds": round(float(sum(durations[i] for i in indices)), 2),
            "per_class": dict(sorted(collections.Counter(records[i].label for i in indices).items())),
            "speakers": sorted({records[i].speaker for i in indices if records[i].speaker is not None}),
        }
    hf = getattr(scan, "dataset", None)
    return {
        "corpus": data.corpus,
        "root": data.root,
        "manifest": data.manifest,
        "hf_dataset": data.hf_dataset,
        **({"hf": hf_summary(hf)} if hf is not None else {}),
        "labels": list(scan.labels),
        "num_found": len(scan.records) + len(scan.problems),
        "num_used": len(records),
        "num_cropped": int(sum(1 for d, o in zip(durations, original) if o > d + 1e-6)),
        "skipped_files": [clip_entry(p, r) for p, r in skipped],
        "set_aside_files": [clip_entry(p, r) for p, r in scan.problems],
        "truncated_files": [clip_entry(p, r) for p, r in truncated_files(dataset)],
        "warnings": list(warnings or []),
        "splits": per_split,
        **({"dimensions": dimensions_summary(data, records, split_indices)} if dimension_columns(data) else {}),
    }


def dimensions_summary(data, records: list[Record], split_indices: dict) -> dict:
    """The ratings each split trains or is scored on (after data.dimension_range): mean and standard deviation per column."""
    import numpy as np

    summary = {"columns": dimension_columns(data), "range": data.dimension_range, "splits": {}}
    for name, indices in split_indices.items():
        values = np.array([records[i].dimensions for i in indices], dtype=np.float64).reshape(len(indices), -1)
        summary["splits"][name] = {
            column: {"mean": round(float(values[:, k].mean()), 4), "std": round(float(values[:, k].std()), 4)} if len(indices) else None
            for k, column in enumerate(summary["columns"])
        }
    return summary


def clip_entry(path: str, reason: str) -> dict:
    """A data report row: the clip and the reason; a dataset's row also by its own split and row index."""
    if not is_hf_record(path):
        return {"path": path, "reason": reason}
    split, row = audio_location(path)
    return {"path": path, "split": split, "row": row, "reason": reason}


def hf_summary(hf) -> dict:
    """Where a Hugging Face dataset came from (the model card's ``datasets:`` and ``license`` read it) and how it was read."""
    from dataclasses import asdict

    declared = next(iter(hf.splits.values())).info.license  # DatasetInfo.license, if the dataset declares one
    return {
        "name": hf.name,
        "hub_id": hf.hub_id,
        "config": hf.config,
        "revision": hf.revision,
        "license": str(declared).strip() or None if declared else None,
        "fingerprint": hf.fingerprint,
        "splits": dict(hf.split_roles),
        "columns": asdict(hf.columns),
    }


def summary_line(report: dict) -> str:
    splits = " / ".join(f"{name} {info['num_clips']}" for name, info in report["splits"].items())
    kinds = collections.Counter(skip_kind(r["reason"]) for r in report["skipped_files"])
    unusable = "".join(f", {kinds[kind]} {kind} skipped" for kind in ("too short", "silent") if kinds[kind])
    warnings = report.get("warnings") or []
    warned = (
        f"; {len(warnings)} warning(s): {warnings[0]}" + (" (+ more in data_report.json)" if len(warnings) > 1 else "") if warnings else ""
    )
    truncated = len(report.get("truncated_files") or [])
    return (
        f"data: {report['num_used']} clips used of {report['num_found']} found "
        f"({kinds['unreadable']} unreadable skipped{unusable}, {len(report['set_aside_files'])} set aside, "
        f"{report['num_cropped']} cropped{f', {truncated} truncated kept' if truncated else ''}); {splits}{warned}"
    )


def write_report(report: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2))


def first_problems(report: dict, limit: int = 5) -> str | None:
    rows = report["skipped_files"] + report["set_aside_files"]
    if not rows:
        return None
    shown = "; ".join(f"{clip_name(r['path'])}: {r['reason']}" for r in rows[:limit])
    more = f" (+{len(rows) - limit} more)" if len(rows) > limit else ""
    return shown + more
