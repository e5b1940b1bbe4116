"""Corpus scanning into a manifest: one row per clip with path, label, speaker, session and source.

A corpus adapter is a function ``adapter(root: Path, data: Data) -> Scan`` registered in
``ser_dist.registry.CORPORA``. It reads the corpus's own file layout and naming convention and never
guesses: files it cannot interpret go to ``Scan.problems`` with the reason, and the run's data report
lists them.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from ..errors import UserError
from ..registry import CORPORA

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".aiff", ".aif", ".webm")


class DataError(UserError, ValueError):
    """Bad data input; the message is one line that names the file and the fix."""


@dataclass
class Record:
    path: str
    label: str
    speaker: Optional[str] = None
    session: Optional[str] = None
    # Clips derived from the same original recording share a source (augmented copies), so splits
    # keep them together. Defaults to the path itself.
    source: Optional[str] = None

    def __post_init__(self):
        if self.source is None:
            self.source = self.path


@dataclass
class Scan:
    records: list[Record] = field(default_factory=list)
    # (path, reason) for files found but not used: unknown names, unwanted labels, ...
    problems: list[tuple[str, str]] = field(default_factory=list)
    # The corpus's usual label set, in a fixed order (None: the sorted labels found).
    labels: Optional[list[str]] = None


def audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def speaker_from_name(path: Path, pattern: Optional[str]) -> Optional[str]:
    """The first group of ``pattern`` searched in the file's name (without extension)."""
    if not pattern:
        return None
    match = re.search(pattern, path.stem)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def _apply_speaker_pattern(records: Iterable[Record], pattern: Optional[str], problems: list) -> list[Record]:
    out = []
    for rec in records:
        if rec.speaker is None and pattern:
            rec.speaker = speaker_from_name(Path(rec.path), pattern)
            if rec.speaker is None:
                problems.append((rec.path, f"file name does not match data.speaker_pattern={pattern!r}"))
                continue
        out.append(rec)
    return out


def _read_sources(root: Path) -> dict[str, str]:
    """``sources.csv`` (written by ``ser-dist augment``) maps augmented files to their original clip."""
    index = root / "sources.csv"
    if not index.exists():
        return {}
    with open(index, newline="") as f:
        return {str((root / row["path"]).resolve()): row["source"] for row in csv.DictReader(f)}


@CORPORA.register("folder")
def folder(root: Path, data) -> Scan:
    """The seed's layout: one folder per class (``Anger/``, ``Sad/``...), nested subfolders allowed."""
    scan = Scan()
    sources = _read_sources(root)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class folders found; expected one folder per emotion (e.g. {root}/Anger/*.wav) or pass a manifest with data.manifest=FILE")
    for class_dir in class_dirs:
        files = audio_files(class_dir)
        if not files:
            raise DataError(f"{class_dir}: class '{class_dir.name}' has no audio clips; add clips or remove the folder")
        for path in files:
            resolved = str(path.resolve())
            scan.records.append(Record(path=resolved, label=class_dir.name, source=sources.get(resolved)))
    for path in sorted(root.iterdir()):
        if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
            scan.problems.append((str(path), "audio file outside any class folder"))
    scan.records = _apply_speaker_pattern(scan.records, data.speaker_pattern, scan.problems)
    return scan


def read_manifest_rows(path: Path) -> list[dict]:
    """The rows of a CSV, TSV or JSONL (one object per line) file, as dicts."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            rows = []
            with open(path) as f:
                for number, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as err:
                            raise DataError(f"{path}:{number}: not valid JSON ({err.msg}); write one JSON object per line") from None
            return rows
        if suffix in (".csv", ".tsv"):
            with open(path, newline="") as f:
                return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text manifest; a manifest is a CSV/TSV/JSONL file with a 'path' column") from None
    raise DataError(f"{path}: unknown manifest format; use .csv, .tsv or .jsonl")


def read_manifest(path: Path, data=None) -> Scan:
    """A CSV or JSONL manifest with ``path`` and ``label`` columns and optional ``speaker``, ``session``, ``source``.

    Relative paths are taken relative to the manifest's folder.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: manifest not found; check data.manifest")
    rows = read_manifest_rows(path)
    scan = Scan()
    for number, row in enumerate(rows, 1):
        missing = [key for key in ("path", "label") if not row.get(key)]
        if missing:
            raise DataError(f"{path}: row {number} has no {' or '.join(missing)}; every row needs 'path' and 'label'")
        clip = Path(row["path"])
        if not clip.is_absolute():
            clip = path.parent / clip
        scan.records.append(
            Record(
                path=str(clip.resolve()),
                label=str(row["label"]),
                speaker=str(row["speaker"]) if row.get("speaker") not in (None, "") else None,
                session=str(row["session"]) if row.get("session") not in (None, "") else None,
                source=str(row["source"]) if row.get("source") not in (None, "") else None,
            )
        )
    pattern = getattr(data, "speaker_pattern", None) if data is not None else None
    scan.records = _apply_speaker_pattern(scan.records, pattern, scan.problems)
    return scan


@CORPORA.register("manifest")
def manifest(root: Path, data) -> Scan:
    return read_manifest(Path(data.manifest) if data.manifest else root, data)


def write_manifest(records: Iterable[Record], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) for r in records]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "speaker", "session", "source"])
        writer.writeheader()
        writer.writerows(rows)
