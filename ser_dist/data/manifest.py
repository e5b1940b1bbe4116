"""Corpus scanning into a manifest: one row per clip with path, label, speaker, session and source.

A corpus adapter is a function ``adapter(root: Path, data: Data) -> Scan`` registered in
``ser_dist.registry.CORPORA``. It reads the corpus's own file layout and naming convention and never
guesses: files it cannot interpret go to ``Scan.problems`` with the reason, and the run's data report
lists them.
"""
from __future__ import annotations

import csv
import difflib
import errno
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import ConfigError, UserError

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".aiff", ".aif", ".webm")
# The columns a manifest row may have; ``duration`` (SpeechBrain-style manifests) is known and not needed.
MANIFEST_COLUMNS = ("path", "label", "speaker", "session", "source")
IGNORED_COLUMNS = ("duration",)


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
    # One line each, for the data report and the run log: things that do not stop the run.
    warnings: list[str] = field(default_factory=list)


def resolved(path: str | os.PathLike) -> str:
    """The absolute path with links resolved, or as far as they resolve: a broken or looping link stays
    itself (``Path.resolve`` raises on a loop), so decoding reports it instead of the scan crashing."""
    return os.path.realpath(os.path.abspath(path))


@dataclass
class FolderScan:
    audio: list[Path] = field(default_factory=list)  # files with an audio extension, sorted
    # (path, reason) for entries that can't be used: hidden entries, broken or looping links, unreadable folders
    other: list[tuple[str, str]] = field(default_factory=list)
    # (path, reason) for regular files without an audio extension
    non_audio: list[tuple[str, str]] = field(default_factory=list)

    def not_used(self) -> list[tuple[str, str]]:
        return sorted(self.other + self.non_audio)


def scan_folder(root: Path) -> FolderScan:
    """Every entry under ``root``: the audio files, and the reason each other entry is not used.

    Links to files and folders are followed; a link to a folder already searched (a loop, or a second
    way into the same folder) is reported rather than searched twice. Hidden entries (``.name``, e.g.
    ``.DS_Store``, ``.ipynb_checkpoints/``, macOS ``._clip.wav``) are reported, never searched or used;
    so are empty subfolders (a folder named ``clip.wav`` is one) and audio files whose path is not valid
    UTF-8 (``not_utf8_name``).
    """
    found = FolderScan()
    seen: set[tuple[int, int]] = set()

    def walk(folder: Path) -> None:
        try:
            info = os.stat(folder)
            seen.add((info.st_dev, info.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            found.other.append((str(folder), f"folder not readable ({err.strerror or err})"))
            return
        if not entries and folder != Path(root):  # e.g. a folder named clip.wav: an entry, so it is reported
            named_like_audio = folder.suffix.lower() in AUDIO_EXTENSIONS
            found.other.append((str(folder), "a folder, not a file (named like an audio file, and empty)" if named_like_audio else "empty folder"))
            return
        for entry in entries:
            path = Path(entry.path)
            reason = _entry_problem(entry)
            if reason is not None:
                found.other.append((str(path), reason))
                continue
            if entry.is_dir():  # follows links
                info = os.stat(path)
                if (info.st_dev, info.st_ino) in seen:
                    found.other.append((str(path), f"link to a folder already searched ({resolved(path)}); not searched twice"))
                else:
                    walk(path)
            elif path.suffix.lower() in AUDIO_EXTENSIONS:
                bad_name = not_utf8_name(resolved(path))
                if bad_name is not None:
                    found.other.append((str(path), bad_name))
                else:
                    found.audio.append(path)
            else:
                kind = f"extension {path.suffix!r}" if path.suffix else "no file extension"
                found.non_audio.append((str(path), f"not an audio file ({kind}; audio files end in {', '.join(AUDIO_EXTENSIONS[:4])}, ...)"))

    walk(Path(root))
    found.audio.sort()
    return found


def not_utf8_name(path: str) -> Optional[str]:
    """Why a path can't be a clip's path, when a part of it is not valid UTF-8 (Python holds such bytes as
    surrogate escapes), else None. The clip itself may be fine, but a run writes every clip's path into
    UTF-8 text (``split.csv``, ``test_predictions.csv``, the Arrow cache), which can't hold those bytes."""
    if _is_utf8(path):
        return None
    part = next((part for part in Path(path).parts if not _is_utf8(part)), path)
    return f"file name is not valid UTF-8 ({os.fsencode(part)!r}); rename it (e.g. convmv -f latin1 -t utf8 --notest FILE)"


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _entry_problem(entry: os.DirEntry) -> Optional[str]:
    """Why a folder entry can't be used, or None for a folder or a regular file (directly or by a link)."""
    if entry.name.startswith("._"):
        return "macOS metadata file (._*), not audio"
    if entry.name.startswith("."):
        return f"hidden {'folder' if entry.is_dir() else 'file'} (name starts with '.'); not used"
    try:
        mode = os.stat(entry.path).st_mode  # follows links
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "link loop (the link points back to itself)"
        if entry.is_symlink():
            return f"broken link (its target {os.readlink(entry.path)} does not exist)"
        return f"not readable ({err.strerror or err})"
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        return "not a regular file (a device, pipe or socket)"
    return None


def speaker_from_name(path: Path, pattern: Optional[str]) -> Optional[str]:
    """The first group of ``pattern`` searched in the file's name (without extension)."""
    if not pattern:
        return None
    match = re.search(pattern, path.stem)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def _apply_speaker_pattern(records: list[Record], pattern: Optional[str], problems: list, where) -> list[Record]:
    """Speakers from the file names for the records without one; a pattern that matches none of them is
    an error (the pattern, not the data, is wrong), one that misses some sets those aside."""
    if not pattern:
        return list(records)
    try:
        re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"data.speaker_pattern={pattern!r} is not a valid regular expression ({err}); e.g. data.speaker_pattern='^(spk\\d+)_'") from None
    out, missed = [], []
    for rec in records:
        if rec.speaker is None:
            rec.speaker = speaker_from_name(Path(rec.path), pattern) or None  # an empty match is no speaker
            if rec.speaker is None:
                missed.append(rec)
                continue
        out.append(rec)
    if missed and not out:
        example = Path(missed[0].path).stem
        raise DataError(
            f"{where}: data.speaker_pattern={pattern!r} matched none of the {len(missed)} file names (e.g. {example!r}); "
            "the pattern is searched in the name without its extension and group 1 is the speaker id: fix it, or leave it unset"
        )
    problems.extend((rec.path, f"file name does not match data.speaker_pattern={pattern!r}") for rec in missed)
    return out


def _read_sources(root: Path) -> dict[str, str]:
    """``sources.csv`` (written by ``ser-dist augment``) maps augmented files to their original clip."""
    index = root / "sources.csv"
    if not index.exists():
        return {}
    with open(index, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"path", "source"} <= set(rows[0]):
        raise DataError(f"{index}: expected the 'path' and 'source' columns ser-dist augment writes; rename or remove the file")
    return {resolved(root / row["path"]): row["source"] for row in rows if row["path"] and row["source"]}


def folder(root: Path, data) -> Scan:
    """The seed's layout: one folder per class (``Anger/``, ``Sad/``...), nested subfolders allowed.

    Every entry inside a class folder is used or set aside with its reason (non-audio and hidden files,
    broken or looping links, a second link to the same clip). At the top level, audio files and hidden
    folders are set aside; other files there (README, sources.csv, a manifest) are the corpus's notes.
    """
    scan = Scan()
    sources = _read_sources(root)
    class_dirs = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        path = Path(entry.path)
        problem = _entry_problem(entry)
        if problem is not None:
            scan.problems.append((str(path), problem))
        elif entry.is_dir():
            class_dirs.append(path)
        elif path.suffix.lower() in AUDIO_EXTENSIONS:
            scan.problems.append((str(path), "audio file outside any class folder"))
    if not class_dirs:
        raise DataError(f"{root}: no class folders found; expected one folder per emotion (e.g. {root}/Anger/*.wav) or pass a manifest with data.manifest=FILE")
    first_use: dict[str, tuple[Path, str]] = {}  # resolved clip -> (the entry that used it, its class)
    for class_dir in class_dirs:
        found = scan_folder(class_dir)
        not_used = found.not_used()
        scan.problems.extend(not_used)
        if not found.audio:
            example = f" ({len(not_used)} other entries, e.g. {Path(not_used[0][0]).name}: {not_used[0][1]})" if not_used else ""
            raise DataError(f"{class_dir}: class '{class_dir.name}' has no audio clips{example}; add clips or remove the folder")
        for path in found.audio:
            clip = resolved(path)
            if clip in first_use:
                first, first_label = first_use[clip]
                if first_label != class_dir.name:
                    raise DataError(
                        f"{first} and {path} are the same clip ({clip}) in two class folders, {first_label!r} and {class_dir.name!r}; "
                        "a clip needs one label: remove one of them"
                    )
                scan.problems.append((str(path), f"same clip as {first} (a link); used once"))
                continue
            first_use[clip] = (path, class_dir.name)
            scan.records.append(Record(path=clip, label=class_dir.name, source=sources.get(clip)))
    scan.records = _apply_speaker_pattern(scan.records, data.speaker_pattern, scan.problems, root)
    return scan


def read_manifest_rows(path: Path) -> list[dict]:
    """The rows of a CSV, TSV or JSONL (one object per line) file, as dicts (a JSONL line may hold
    another JSON value; ``read_manifest`` reports it)."""
    return [row for _, row in manifest_lines(path)]


def manifest_lines(path: Path) -> list[tuple[int, object]]:
    """(line number, row) for each row of a CSV, TSV or JSONL manifest; blank JSONL lines are skipped.

    ``utf-8-sig``: a byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name. A
    column named twice in the header, or a key given twice in a JSONL row, is an error (the readers would
    keep only the last one, silently); so is text that is not UTF-8, named by line and byte.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            rows = []
            with open(path, encoding="utf-8-sig") as f:
                for number, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rows.append((number, json.loads(line, object_pairs_hook=_unique_keys)))
                        except json.JSONDecodeError as err:
                            raise DataError(f"{path}:{number}: not valid JSON ({err.msg}); write one JSON object per line") from None
                        except _DuplicateKey as err:
                            raise DataError(
                                f"{path}:{number}: key {err.key!r} appears twice in this row, and JSON keeps only the last value; "
                                "give each key once"
                            ) from None
            return rows
        if suffix in (".csv", ".tsv"):
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
                rows = []
                try:
                    _check_header(path, reader)
                    for row in reader:
                        rows.append((reader.line_num, row))
                except csv.Error as err:
                    raise DataError(f"{path}:{reader.line_num + 1}: not valid {suffix[1:].upper()} ({err}); check the quoting on that line") from None
                return rows
    except UnicodeDecodeError:
        raise DataError(_not_utf8_text(path)) from None
    raise DataError(f"{path}: unknown manifest format; use .csv, .tsv or .jsonl")


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """``json.loads`` hook: a key given twice is an error (``json.loads`` alone keeps the last silently)."""
    row = {}
    for key, value in pairs:
        if key in row:
            raise _DuplicateKey(key)
        row[key] = value
    return row


def _check_header(path: Path, reader: csv.DictReader) -> None:
    """A column named twice is an error: ``csv.DictReader`` would keep the last one's values silently."""
    names = reader.fieldnames or []
    for name in dict.fromkeys(names):
        positions = [i + 1 for i, other in enumerate(names) if other == name]
        if name and len(positions) > 1:
            raise DataError(
                f"{path}:{reader.line_num}: column {name!r} appears {len(positions)} times in the header (columns "
                f"{', '.join(map(str, positions))}), and only the last would be read; rename or remove the others"
            )


def _not_utf8_text(path: Path) -> str:
    """The one line for a manifest that does not decode as UTF-8: where, and how to convert it."""
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return f"{path}: the manifest is UTF-16 text; re-save it as UTF-8 (e.g. 'CSV UTF-8' in Excel, or iconv -f utf-16 -t utf-8 FILE > NEW)"
    if b"\0" in raw[:8192]:
        return f"{path}: a binary file, not a text manifest; a manifest is a UTF-8 CSV/TSV/JSONL file with 'path' and 'label' columns"
    try:
        raw.decode("utf-8")
        return f"{path}: not valid UTF-8 text; re-save the manifest as UTF-8"
    except UnicodeDecodeError as err:
        offset = err.start
    line = raw.count(b"\n", 0, offset) + 1
    column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
    return (
        f"{path}:{line}: not UTF-8 text (byte 0x{raw[offset]:02x} at byte {column} of the line; Latin-1 or a Windows code page?); "
        "re-save the manifest as UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE > NEW, or 'CSV UTF-8' in Excel)"
    )


def _check_columns(path: Path, rows: list[tuple[int, object]], scan: Scan) -> None:
    """Required columns present; an unknown column that looks like a known one (``speker``) is an error,
    other unknown columns are a warning (they are not read)."""
    columns: list[str] = []
    for _, row in rows:
        if isinstance(row, dict):
            columns += [key for key in row if isinstance(key, str) and key not in columns]
    unknown = [key for key in columns if key not in MANIFEST_COLUMNS and key not in IGNORED_COLUMNS]
    for key in unknown:
        close = difflib.get_close_matches(key.strip().lower(), [c for c in MANIFEST_COLUMNS if c not in columns], n=1, cutoff=0.75)
        if close:
            raise DataError(f"{path}: column {key!r} is not a manifest column; did you mean {close[0]!r}? (columns: {', '.join(MANIFEST_COLUMNS)})")
    for key in ("path", "label"):
        if key not in columns:
            raise DataError(
                f"{path}: no {key!r} column (found: {', '.join(map(repr, columns)) or 'none'}); a manifest needs 'path' and 'label' "
                f"columns{' (a TSV file must end in .tsv)' if any(chr(9) in c for c in columns) else ''}"
            )
    if unknown:
        scan.warnings.append(f"{path}: column(s) {', '.join(map(repr, unknown))} are not read (a manifest's columns: {', '.join(MANIFEST_COLUMNS)})")


def _cell(value, column: str, where: str) -> Optional[str]:
    """A manifest value as text (None when missing or blank). Strings and whole numbers only: a list,
    an object, a fraction or true/false is an error naming the row, never a silent str()."""
    if value is None:
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and column != "path":
        value = int(value)  # 3.0 from a JSON writer that turned an integer column into floats
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (column == "path" and not isinstance(value, str)):
        shown = json.dumps(value) if not isinstance(value, float) else repr(value)
        kind = {list: "a list", dict: "an object", bool: "true/false", float: "a fraction"}.get(type(value), type(value).__name__)
        raise DataError(f"{where}: {column!r} is {kind} ({shown[:60]}); give {'the file path as a string' if column == 'path' else 'a string'}")
    text = str(value).strip()
    if column != "path" and not _is_utf8(text):  # a JSON "\\udcff" escape: a lone surrogate, which no UTF-8 file can hold
        raise DataError(f"{where}: {column!r} holds a lone surrogate escape ({text.encode('utf-8', 'backslashreplace').decode()[:60]}); give valid Unicode text")
    return text or None


def read_manifest(path: Path, data=None) -> Scan:
    """A CSV or JSONL manifest with ``path`` and ``label`` columns and optional ``speaker``, ``session``, ``source``.

    Relative paths are taken relative to the manifest's folder. Any row that can't be read as a clip
    (no path or label, a value of the wrong type, more fields than the header) is an error naming its
    line; so is a clip listed twice (with the same or another label): each clip is used once. A row whose
    path is not valid UTF-8 (see ``not_utf8_name``) is set aside with that reason.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: data.manifest is a folder; give the manifest file (CSV/TSV/JSONL), or use the folder as data.root")
    if not path.exists():
        raise DataError(f"{path}: manifest not found; check data.manifest")
    rows = manifest_lines(path)
    if not rows:
        raise DataError(f"{path}: the manifest has no rows; write one row per clip with its 'path' and 'label'")
    for line, row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{path}:{line}: a row must be a JSON object such as {{\"path\": \"a.wav\", \"label\": \"angry\"}}, got {json.dumps(row)[:60]}")
        if None in row:  # csv.DictReader puts fields past the header under None
            raise DataError(f"{path}:{line}: {len(row[None])} more field(s) than the header's {len(row) - 1} columns; quote values that contain the delimiter")
    scan = Scan()
    _check_columns(path, rows, scan)
    first_row: dict[str, tuple[int, str]] = {}  # resolved clip -> (line, label)
    for line, row in rows:
        where = f"{path}:{line}"
        values = {key: _cell(row.get(key), key, where) for key in MANIFEST_COLUMNS}
        missing = [key for key in ("path", "label") if values[key] is None]
        if missing:
            raise DataError(f"{where}: no {' or '.join(missing)} on this row; every row needs 'path' and 'label'")
        clip = Path(values["path"]).expanduser()
        if not clip.is_absolute():
            clip = path.parent / clip
        try:
            clip_path = resolved(clip)
        except ValueError as err:  # an embedded NUL
            raise DataError(f"{where}: path {values['path']!r} is not a valid file name ({err})") from None
        if clip_path in first_row:
            first_line, first_label = first_row[clip_path]
            if first_label != values["label"]:
                raise DataError(
                    f"{where}: {clip_path} is labelled {values['label']!r} here and {first_label!r} on line {first_line}; "
                    "a clip needs one label: keep one of the rows"
                )
            raise DataError(f"{where}: {clip_path} is listed again (first on line {first_line}); list each clip once: remove the duplicate row")
        first_row[clip_path] = (line, values["label"])
        bad_name = not_utf8_name(clip_path)
        if bad_name is not None:
            scan.problems.append((clip_path, bad_name))
            continue
        scan.records.append(
            Record(path=clip_path, label=values["label"], speaker=values["speaker"], session=values["session"], source=values["source"])
        )
    pattern = getattr(data, "speaker_pattern", None) if data is not None else None
    scan.records = _apply_speaker_pattern(scan.records, pattern, scan.problems, path)
    return scan


def manifest(root: Path, data) -> Scan:
    return read_manifest(Path(data.manifest) if data.manifest else root, data)

