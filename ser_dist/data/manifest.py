"""The ``manifest`` corpus: a CSV, TSV or JSONL file with one row per clip (path, label, speaker, session, source).

Every row is read or refused with one line naming the file and line: a missing column, a value of the wrong
type, a clip listed twice, a column or key given twice, text that is not UTF-8.
"""

from __future__ import annotations

import csv
import difflib
import json
import math
from pathlib import Path

from .dimensions import NO_CLASS, dimension_columns, labels_optional, missing_column, row_ratings
from .records import DataError, Record, Scan, apply_speaker_pattern, is_utf8, not_utf8_name, resolved

# The columns a manifest row may have; ``duration`` (SpeechBrain-style manifests) is known and not needed.
MANIFEST_COLUMNS = ("path", "label", "speaker", "session", "source")
IGNORED_COLUMNS = ("duration",)


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
                    raise DataError(
                        f"{path}:{reader.line_num + 1}: not valid {suffix[1:].upper()} ({err}); check the quoting on that line"
                    ) from None
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
        return (
            f"{path}: the manifest is UTF-16 text; re-save it as UTF-8 (e.g. 'CSV UTF-8' in Excel, or iconv -f utf-16 -t utf-8 FILE > NEW)"
        )
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


def _check_columns(path: Path, rows: list[tuple[int, object]], scan: Scan, data=None) -> None:
    """Required columns present (``label`` unless ``data.targets=dimensional``; the dimension columns unless it is
    ``categorical``); an unknown column that looks like a known one (``speker``) is an error, other unknown columns
    are a warning (they are not read)."""
    columns: list[str] = []
    for _, row in rows:
        if isinstance(row, dict):
            columns += [key for key in row if isinstance(key, str) and key not in columns]
    ratings = dimension_columns(data)
    unknown = [key for key in columns if key not in MANIFEST_COLUMNS and key not in IGNORED_COLUMNS and key not in ratings]
    for key in unknown:
        close = difflib.get_close_matches(key.strip().lower(), [c for c in MANIFEST_COLUMNS if c not in columns], n=1, cutoff=0.75)
        if close:
            raise DataError(
                f"{path}: column {key!r} is not a manifest column; did you mean {close[0]!r}? (columns: {', '.join(MANIFEST_COLUMNS)})"
            )
    for key in ("path",) if labels_optional(data) else ("path", "label"):
        if key not in columns:
            raise DataError(
                f"{path}: no {key!r} column (found: {', '.join(map(repr, columns)) or 'none'}); a manifest needs 'path' and 'label' "
                f"columns{' (a TSV file must end in .tsv)' if any(chr(9) in c for c in columns) else ''}"
            )
    for key in ratings:
        if key not in columns:
            raise missing_column(path, key, columns, data.targets)
    if unknown:
        scan.warnings.append(
            f"{path}: column(s) {', '.join(map(repr, unknown))} are not read (a manifest's columns: {', '.join(MANIFEST_COLUMNS)})"
        )


def _cell(value, column: str, where: str) -> str | None:
    """A manifest value as text (None when missing or blank). Strings and whole numbers only: a list,
    an object, a fraction or true/false is an error naming the row, never a silent str()."""
    if value is None:
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and column != "path":
        value = int(value)  # 3.0 from a JSON writer that turned an integer column into floats
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (column == "path" and not isinstance(value, str)):
        shown = json.dumps(value) if not isinstance(value, float) else repr(value)
        kind = {list: "a list", dict: "an object", bool: "true/false", float: "a fraction"}.get(type(value), type(value).__name__)
        raise DataError(
            f"{where}: {column!r} is {kind} ({shown[:60]}); give {'the file path as a string' if column == 'path' else 'a string'}"
        )
    text = str(value).strip()
    if column != "path" and not is_utf8(text):  # a JSON "\\udcff" escape: a lone surrogate, which no UTF-8 file can hold
        raise DataError(
            f"{where}: {column!r} holds a lone surrogate escape ({text.encode('utf-8', 'backslashreplace').decode()[:60]}); give valid Unicode text"
        )
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
            raise DataError(
                f'{path}:{line}: a row must be a JSON object such as {{"path": "a.wav", "label": "angry"}}, got {json.dumps(row)[:60]}'
            )
        if None in row:  # csv.DictReader puts fields past the header under None
            raise DataError(
                f"{path}:{line}: {len(row[None])} more field(s) than the header's {len(row) - 1} columns; quote values that contain the delimiter"
            )
    scan = Scan()
    _check_columns(path, rows, scan, data)
    ratings = dimension_columns(data)
    first_row: dict[str, tuple[int, str]] = {}  # resolved clip -> (line, label)
    for line, row in rows:
        where = f"{path}:{line}"
        values = {key: _cell(row.get(key), key, where) for key in MANIFEST_COLUMNS}
        if values["label"] is None and labels_optional(data):  # ratings alone: the clip has no class
            values["label"] = NO_CLASS
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
            raise DataError(
                f"{where}: {clip_path} is listed again (first on line {first_line}); list each clip once: remove the duplicate row"
            )
        first_row[clip_path] = (line, values["label"])
        bad_name = not_utf8_name(clip_path)
        if bad_name is not None:
            scan.problems.append((clip_path, bad_name))
            continue
        dimensions, unusable = row_ratings(row, ratings, data.dimension_range) if ratings else (None, None)
        if unusable is not None:  # set aside with the reason, never trained on as 0
            scan.problems.append((clip_path, f"{unusable} (line {line})"))
            continue
        scan.records.append(
            Record(
                path=clip_path,
                label=values["label"],
                speaker=values["speaker"],
                session=values["session"],
                source=values["source"],
                dimensions=dimensions,
            )
        )
    pattern = getattr(data, "speaker_pattern", None) if data is not None else None
    scan.records = apply_speaker_pattern(scan.records, pattern, scan.problems, path)
    return scan


def manifest(root: Path, data) -> Scan:
    return read_manifest(Path(data.manifest) if data.manifest else root, data)
