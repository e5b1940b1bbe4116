"""Hugging Face ``datasets`` corpora: a Hub id, a ``save_to_disk`` folder, or a local file or folder that
``datasets.load_dataset`` reads, as ser-dist records whose audio is read from the dataset itself.

``open_hf_dataset`` loads it (``trust_remote_code`` is never set) and settles the columns: the audio (the
``Audio`` feature, or a column of audio file paths in a CSV/JSONL file), the label (``ClassLabel`` or
text), and the optional speaker and session. ``scan_hf_dataset`` turns its rows into ``Record``s whose
``path`` is a stable id, ``hf://<name>/<split>/<row>``, with the split each row came from (``train``,
``validation``/``valid``/``dev`` -> ``val``, ``test``) for ``data.split=fixed``. ``HFDataset.fingerprint``
changes when the data does. Reading the records' audio back from the dataset (``iter_audio``,
``decode_hf_audio``) is ser_dist.data.hf_audio.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import first_line
from .dimensions import NO_CLASS, labels_optional
from .records import AUDIO_EXTENSIONS, DataError, Record, Scan

if TYPE_CHECKING:
    import datasets

RECORD_PREFIX = "hf://"
# A dataset's own split names, as ser-dist's; other names are kept as they are (data.split=fixed refuses them).
SPLIT_ALIASES = {"train": "train", "validation": "val", "valid": "val", "dev": "val", "val": "val", "test": "test"}
# The local data files read with a packaged ``datasets`` builder (a folder goes to load_dataset as it is).
FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv"}
# The protocols that need a speaker (or a session) for every clip: they fail before any audio is decoded.
SPEAKER_PROTOCOLS = ("speaker", "leave_one_speaker_out", "speaker_kfold", "leave_one_session_out")
SESSION_PROTOCOLS = ("leave_one_session_out",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TEXT_TYPES = ("string", "large_string")
_LOCAL_COPY = (
    "to use a local copy, save it where the Hub is reachable (datasets.load_dataset({id!r}).save_to_disk(DIR)) and set "
    "data.hf_dataset=DIR, or load it once online and rerun with HF_HUB_OFFLINE=1 (the same HF_HOME), or give a local "
    "parquet/arrow/jsonl/csv file or audiofolder"
)


@dataclass
class HFColumns:
    audio: str  # the Audio feature, or audio file paths (a CSV/JSONL file)
    label: str | None  # ClassLabel or text; None: no label is read (prediction)
    speaker: str | None  # None: the dataset has no speaker column
    session: str | None


@dataclass
class HFDataset:
    """A loaded dataset whose columns have been checked; its splits in the dataset's own order."""

    name: str  # in record ids: the Hub id, or the local folder's or file's name
    hub_id: str | None  # set when it came from the Hub (what a model card's ``datasets:`` may name)
    config: str | None
    revision: str | None
    splits: dict[str, datasets.Dataset]  # own split name -> its rows, as loaded
    split_roles: dict[str, str]  # own split name -> train / val / test (or the own name, when unknown)
    columns: HFColumns
    base_dir: str | None  # relative audio file paths are resolved here (a local file's or folder's place)
    fingerprint: str  # for the decode cache's key: the splits' fingerprints, revision, config, columns, referenced files
    audio_rows: dict[str, datasets.Dataset] = field(default_factory=dict, repr=False)  # the audio column, undecoded


@dataclass
class HFScan(Scan):
    dataset: HFDataset | None = None
    fixed_split: dict[str, str] = field(default_factory=dict)  # record path -> train / val / test from the dataset's splits


def record_id(name: str, split: str, row: int) -> str:
    return f"{RECORD_PREFIX}{name}/{split}/{row}"


def scan_data(data) -> HFScan:
    """``scan_hf_dataset`` of ``open_hf_dataset`` with the config's keys (data.hf_dataset, hf_config, ...)."""
    hf = open_hf_dataset(
        data.hf_dataset,
        config=getattr(data, "hf_config", None),
        revision=getattr(data, "hf_revision", None),
        audio_column=getattr(data, "audio_column", None),
        label_column=getattr(data, "label_column", None) or "label",
        speaker_column=getattr(data, "speaker_column", None),
        session_column=getattr(data, "session_column", None),
        label_optional=labels_optional(data),  # data.targets=dimensional: a dataset of ratings alone has no label column
    )
    return scan_hf_dataset(hf)


def open_hf_dataset(
    source: str,
    *,
    config: str | None = None,
    revision: str | None = None,
    audio_column: str | None = None,
    label_column: str | None = "label",
    speaker_column: str | None = None,
    session_column: str | None = None,
    splits: Mapping[str, str] | None = None,
    label_optional: bool = False,
) -> HFDataset:
    """Load ``source`` and check its columns; ``splits`` ({own split name: train/val/test}) keeps only those splits;
    ``label_optional``: a missing ``label_column`` is no error (the rows have no class)."""
    loaded, name, hub_id, base_dir = _load(str(source), config, revision)
    if not isinstance(loaded, dict):  # a Dataset: one split, named as it was saved
        loaded = {str(loaded.split or "train"): loaded}
    roles = {split: SPLIT_ALIASES.get(split.lower(), split) for split in loaded}
    if splits is not None:
        missing = [split for split in splits if split not in loaded]
        wrong = [role for role in splits.values() if role not in ("train", "val", "test")]
        if missing or wrong:
            problem = (
                f"split {missing[0]!r}, which the dataset does not have" if missing else f"{wrong[0]!r}, which is not train, val or test"
            )
            raise DataError(
                f"{source}: the split mapping names {problem} (its splits: {', '.join(loaded)}); map each split you want to train, val or test"
            )
        loaded, roles = {split: loaded[split] for split in splits}, dict(splits)
    columns = _columns(source, loaded, audio_column, label_column, speaker_column, session_column, label_optional)
    audio_rows = {split: _undecoded_audio(ds, columns.audio) for split, ds in loaded.items()}
    fingerprint = _fingerprint(name, hub_id, config, revision, columns, roles, loaded, audio_rows, base_dir)
    return HFDataset(name, hub_id, config, revision, dict(loaded), roles, columns, base_dir, fingerprint, audio_rows)


def _undecoded_audio(ds, column: str):
    """The audio column alone, as ``{"bytes", "path"}`` rows (``Audio(decode=False)``; a path column is cast to it)."""
    import datasets

    audio = ds.select_columns([column])
    if _kind(audio.features[column]) == "text" and audio.features[column].dtype != "string":
        audio = audio.cast_column(column, datasets.Value("string"))  # Audio casts string paths, not large_string (CSV)
    return audio.cast_column(column, datasets.Audio(decode=False))


def _load(source: str, config: str | None, revision: str | None):
    """(Dataset or DatasetDict, name for record ids, Hub id or None, folder relative audio paths are under)."""
    import datasets

    path = Path(source).expanduser()
    if path.exists():
        if revision is not None:
            raise DataError(
                f"{source}: data.hf_revision={revision!r} is for a Hub dataset, and this is a local path; leave data.hf_revision unset"
            )
        path = path.resolve()
        base_dir = str(path.parent if path.is_file() else path)
        return _local(source, lambda: _load_local(path, config)), _printable(path.name), None, base_dir
    if not _HUB_ID.match(source) or path.suffix.lower() in FILE_BUILDERS:
        raise DataError(
            f"{source}: data.hf_dataset not found (neither a local file or folder nor a Hub id such as 'user/dataset'); check the path"
        )
    try:
        return datasets.load_dataset(source, name=config, revision=revision), source, source, None
    except ConnectionError:  # datasets 5.x: "Couldn't reach '<id>' on the Hub (OfflineModeIsEnabled | LocalEntryNotFoundError)"
        raise DataError(
            f"data.hf_dataset={source!r}: {_not_local(path)}can't reach the Hugging Face Hub and the dataset is not in the local cache; "
            + _LOCAL_COPY.format(id=source)
        ) from None
    except datasets.exceptions.DatasetNotFoundError as err:
        raise DataError(
            f"data.hf_dataset={source!r}: {_not_local(path)}{_first_line(err)}; check the id and data.hf_revision (a gated or private dataset needs `hf auth login`)"
        ) from None
    except ValueError as err:  # "Config name is missing ...", "BuilderConfig 'x' not found. Available: [...]"
        if "config" not in str(err).lower():
            raise
        raise DataError(f"data.hf_dataset={source!r}: {_first_line(err)}; set data.hf_config=NAME") from None


def _not_local(path: Path) -> str:
    """For an id whose first part is a local folder (``data/corpus`` mistyped, or run from another folder)."""
    if len(path.parts) < 2 or not path.parent.is_dir():
        return ""
    return (
        f"no such file or folder in {path.parent.resolve()} (a local path is read from the current folder, {Path.cwd()}), and as a Hub id: "
    )


def _load_local(path: Path, config: str | None):
    import datasets

    saved = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
    if config is not None and (saved or path.is_file()):  # load_from_disk and a data file have no configurations
        kind = "save_to_disk folder" if saved else "data file"
        raise DataError(f"{path}: data.hf_config={config!r} picks a configuration, and a {kind} has none; leave data.hf_config unset")
    if saved:
        return datasets.load_from_disk(str(path))
    if path.is_dir():  # an audiofolder, or a folder of parquet/arrow/jsonl/csv files
        return datasets.load_dataset(str(path), **({"name": config} if config else {}))
    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise DataError(
            f"{path}: data.hf_dataset is a {path.suffix or 'extensionless'} file; give a parquet, arrow, jsonl or csv file, a save_to_disk folder, an audiofolder or a Hub id"
        )
    return datasets.load_dataset(builder, data_files=str(path), **({"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}))


def _local(source: str, load):
    import datasets

    try:
        return load()
    except DataError:
        raise
    except (FileNotFoundError, datasets.exceptions.DatasetsError, ValueError) as err:
        raise DataError(
            f"{source}: datasets can't read it ({_first_line(err)}); give a save_to_disk folder, a parquet/arrow/jsonl/csv file, "
            "or an audiofolder (audio files with a metadata.csv whose file_name column names them)"
        ) from None


def _columns(source: str, splits: dict, audio, label, speaker, session, label_optional: bool = False) -> HFColumns:
    """The columns to read, checked in every split; each refusal names the key to set and the columns there are."""
    first = next(iter(splits.values()))
    features = first.features
    if label_optional and label == "label" and any(label not in ds.features for ds in splits.values()):
        label = None  # the default column, absent: rows of ratings alone (a column named by the user must be there)
    for key, column in (("audio_column", audio), ("label_column", label), ("speaker_column", speaker), ("session_column", session)):
        for other_split, ds in splits.items():
            if column is not None and column not in ds.features:
                close = difflib.get_close_matches(column, list(ds.features), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise DataError(
                    f"{source}: no column {column!r} for data.{key} in split {other_split!r}{hint}; set data.{key}=COLUMN "
                    f"(columns: {_describe(ds.features)})"
                )
    if audio is None:
        audio = _find_audio_column(source, first)
    elif _kind(features[audio]) not in ("Audio", "text"):
        raise DataError(
            f"{source}: data.audio_column={audio!r} holds {_kind(features[audio])} values, not audio or audio file paths (columns: {_describe(features)})"
        )
    if label is not None and _kind(features[label]) not in ("ClassLabel", "text", "integer"):
        raise DataError(
            f"{source}: data.label_column={label!r} holds {_kind(features[label])} values; a class needs a ClassLabel or text column "
            f"(columns: {_describe(features)})"
        )
    speaker = speaker if speaker is not None else ("speaker" if "speaker" in features else None)
    session = session if session is not None else ("session" if "session" in features else None)
    return HFColumns(audio=audio, label=label, speaker=speaker, session=session)


def _find_audio_column(source: str, ds) -> str:
    """The column with the ``Audio`` feature, else the one text column whose first value names an audio file."""
    audio = [name for name, feature in ds.features.items() if _kind(feature) == "Audio"]
    text = [name for name, feature in ds.features.items() if _kind(feature) == "text"]
    if not audio and text and len(ds):
        first = ds.select_columns(text).with_format("arrow")[:1].to_pylist()[0]
        audio = [name for name, value in first.items() if isinstance(value, str) and value.lower().endswith(AUDIO_EXTENSIONS)]
    if len(audio) == 1:
        return audio[0]
    if audio:
        raise DataError(f"{source}: several audio columns ({', '.join(audio)}); set data.audio_column to one of them")
    raise DataError(
        f"{source}: no audio column (no column has the Audio feature or holds audio file paths); set data.audio_column=COLUMN "
        f"(columns: {_describe(ds.features)})"
    )


def scan_hf_dataset(hf: HFDataset) -> HFScan:
    """One ``Record`` per usable row, in split then row order; a row without a label is set aside with the reason.

    Labels follow the ClassLabel's order (the names with rows; unused names are a warning), else the text's
    (sorted by the pipeline). Only the label, speaker and session columns are read, never the audio.
    """
    cols = hf.columns
    scan = HFScan(dataset=hf)
    names: list[str] | None = None
    for split, ds in hf.splits.items():
        feature = ds.features[cols.label] if cols.label is not None else None
        if _kind(feature) == "ClassLabel":
            if names is not None and feature.names != names:
                raise DataError(
                    f"{hf.name}: split {split!r} names its classes {feature.names}, another split {names}; the splits need one ClassLabel"
                )
            names = list(feature.names)
        wanted = [c for c in (cols.label, cols.speaker, cols.session) if c is not None]
        table = ds.select_columns(list(dict.fromkeys(wanted))).with_format("arrow")[:]
        labels = table.column(cols.label).to_pylist() if cols.label is not None else [NO_CLASS] * len(ds)
        speakers = _text_column(table, cols.speaker, len(labels))
        sessions = _text_column(table, cols.session, len(labels))
        for row, value in enumerate(labels):
            path = record_id(hf.name, split, row)
            label = _label(value, feature)
            if label is None:
                scan.problems.append((path, f"no label (column {cols.label!r} is {json.dumps(value)} on this row)"))
                continue
            scan.records.append(Record(path=path, label=label, speaker=speakers[row], session=sessions[row]))
            scan.fixed_split[path] = hf.split_roles[split]
    if names is not None:
        used = {rec.label for rec in scan.records}
        scan.labels = [name for name in names if name in used]
        unused = [name for name in names if name not in used]
        if unused:
            scan.warnings.append(f"{hf.name}: ClassLabel name(s) {', '.join(map(repr, unused))} have no rows; left out of the classes")
    if cols.speaker is None:
        hints = [c for c in next(iter(hf.splits.values())).features if "speaker" in c.lower() or "spk" in c.lower()]
        if hints:
            scan.warnings.append(f"{hf.name}: no 'speaker' column; set data.speaker_column={hints[0]} to keep speakers apart by it")
    return scan


def check_split_columns(hf: HFDataset, protocol: str) -> None:
    """A protocol that needs speakers (sessions) with no such column is one line, before any audio is decoded."""
    for needed, key, protocols in (("speaker", "speaker_column", SPEAKER_PROTOCOLS), ("session", "session_column", SESSION_PROTOCOLS)):
        if protocol in protocols and getattr(hf.columns, needed) is None:
            raise DataError(
                f"{hf.name}: data.split={protocol} needs each clip's {needed}, and the dataset has no {needed!r} column; set "
                f"data.{key}=COLUMN (columns: {_describe(next(iter(hf.splits.values())).features)}), or use data.split=stratified or fixed"
            )


def check_own_splits(hf: HFDataset, needs_validation: bool) -> None:
    """``data.split=fixed`` takes the dataset's own splits: a train and a test split (and a validation split when
    ``needs_validation``), none of another name; else one line, before any audio is decoded."""
    own = ", ".join(hf.split_roles)
    other = "use data.split=speaker or stratified, which pool the rows of every split and draw their own split"
    unknown = [split for split, role in hf.split_roles.items() if role not in ("train", "val", "test")]
    if unknown:
        raise DataError(
            f"{hf.name}: data.split=fixed uses the dataset's own splits, and {unknown[0]!r} is not train, validation (valid, dev) "
            f"or test (its splits: {own}); {other}"
        )
    roles = set(hf.split_roles.values())
    for role, name in (("train", "train"), ("test", "test"), ("val", "validation")):
        if role not in roles and (role != "val" or needs_validation):
            raise DataError(
                f"{hf.name}: data.split=fixed uses the dataset's own splits, and it has no {name} split (its splits: {own}); {other}"
            )


def _fingerprint(name, hub_id, config, revision, columns, roles, splits, audio_rows, base_dir) -> str:
    digest = hashlib.sha256()
    header = {"name": name, "hub_id": hub_id, "config": config, "revision": revision, "columns": asdict(columns), "splits": roles}
    header["fingerprints"] = {split: ds._fingerprint for split, ds in splits.items()}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for split, ds in audio_rows.items():  # audio held as files: their sizes and times count, as for a manifest's clips
        for path in _file_paths(ds, columns.audio):
            try:
                stat = os.stat(resolve_audio_path(path, base_dir)) if path else None
            except OSError:
                stat = None
            digest.update(json.dumps([split, path, stat and stat.st_size, stat and stat.st_mtime_ns]).encode())
    return digest.hexdigest()[:32]


def _file_paths(ds, column: str) -> Iterator[str | None]:
    """The path of each row whose audio is a file rather than bytes, a thousand rows at a time (slices of the
    memory-mapped table: no audio is copied)."""
    for batch in ds.with_format("arrow").iter(batch_size=1000):
        for audio in batch.column(column).chunks:
            yield from audio.field("path").filter(audio.field("bytes").is_null()).to_pylist()


def resolve_audio_path(path: str | None, base_dir: str | None) -> str | None:
    """An audio file path of the dataset, relative ones taken from ``base_dir`` (``HFDataset.base_dir``)."""
    return os.path.join(base_dir, path) if path and base_dir and not os.path.isabs(path) else path


def _label(value, feature) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if _kind(feature) == "ClassLabel":
        return feature.names[value] if 0 <= value < len(feature.names) else None  # -1: ClassLabel's "no label"
    text = str(value).strip()
    return text or None


def _text_column(table, column: str | None, rows: int) -> list[str | None]:
    if column is None:
        return [None] * rows
    return [None if value is None or str(value).strip() == "" else str(value).strip() for value in table.column(column).to_pylist()]


def _kind(feature) -> str:
    """'Audio', 'ClassLabel', 'text', 'integer', or the feature's own type or dtype (for messages)."""
    if type(feature).__name__ != "Value":
        return type(feature).__name__
    return "text" if feature.dtype in _TEXT_TYPES else "integer" if re.fullmatch(r"u?int\d+", feature.dtype) else feature.dtype


def _describe(features) -> str:
    return ", ".join(f"{name} ({type(f).__name__ if type(f).__name__ != 'Value' else f.dtype})" for name, f in features.items())


def _first_line(err: Exception) -> str:
    return first_line(err, 300).rstrip(".")


def _printable(name: str) -> str:
    return name.encode("utf-8", "backslashreplace").decode("utf-8")  # a non-UTF-8 folder name as \\x.. escapes
