"""``split.csv``: the records of a run and the split each one went to, beside every run.

``ser-dist evaluate`` reads it back to score a run on the clips of one of its own splits.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .records import DataError, Record
from .splits import SPLIT_NAMES, Split

SPLIT_COLUMNS = ("path", "label", "speaker", "session", "source", "split")


def write_split(records: list[Record], split: Split, path: str | Path) -> None:
    """One CSV row per record (path,label,speaker,session,source,split); ``split`` is empty for an unused record."""
    assigned: dict[int, str] = {}
    for name, indices in split.items():
        for i in indices:
            if i in assigned:
                raise ValueError(f"record {i} is in both the {assigned[i]} and {name} splits")
            assigned[i] = name
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SPLIT_COLUMNS)
        for i, rec in enumerate(records):
            writer.writerow([rec.path, rec.label, rec.speaker or "", rec.session or "", rec.source or "", assigned.get(i, "")])


def read_split(path: str | Path) -> tuple[list[Record], Split]:
    """The records and split written by :func:`write_split` (empty speaker/session read as None)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: split file not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [column for column in SPLIT_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"{path}: split file has no {', '.join(missing)} column; expected {','.join(SPLIT_COLUMNS)} (as write_split writes)"
            )
        rows = list(reader)
    records: list[Record] = []
    split: Split = {name: [] for name in SPLIT_NAMES}
    for number, row in enumerate(rows, 2):
        if row["split"] not in (*SPLIT_NAMES, ""):
            raise DataError(f"{path}:{number}: split {row['split']!r} is not train, val or test")
        if not row["path"] or not row["label"]:
            raise DataError(f"{path}:{number}: every row needs a path and a label")
        records.append(
            Record(
                path=row["path"],
                label=row["label"],
                speaker=row["speaker"] or None,
                session=row["session"] or None,
                source=row["source"] or None,
            )
        )
        if row["split"]:
            split[row["split"]].append(len(records) - 1)
    return records, split
