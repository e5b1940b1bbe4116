"""What a corpus adapter returns, and the rules every adapter shares.

An adapter is a function ``adapter(root: Path, data: Data) -> Scan``, listed in ``ser_dist.registry.CORPORA``:
``folder`` (``data/folder.py``), ``manifest`` (``data/manifest.py``) and the public corpora (``data/corpora.py``).
It reads its corpus's own file layout and naming convention and never guesses: files it cannot interpret go to
``Scan.problems`` with the reason, and the run's data report lists them. A clip's path is absolute with its links
resolved (``resolved``); one that is not valid UTF-8 is set aside (``not_utf8_name``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, UserError

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".aiff", ".aif", ".webm")


class DataError(UserError, ValueError):
    """Bad data input; the message is one line that names the file and the fix."""


@dataclass
class Record:
    path: str
    label: str
    speaker: str | None = None
    session: str | None = None
    # Clips derived from the same original recording share a source (augmented copies), so splits
    # keep them together. Defaults to the path itself.
    source: str | None = None
    # data.targets=dimensional|both: the clip's ratings, in data.dimension_columns order (ser_dist.data.dimensions)
    dimensions: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.source is None:
            self.source = self.path


@dataclass
class Scan:
    records: list[Record] = field(default_factory=list)
    # (path, reason) for files found but not used: unknown names, unwanted labels, ...
    problems: list[tuple[str, str]] = field(default_factory=list)
    # The corpus's usual label set, in a fixed order (None: the sorted labels found).
    labels: list[str] | None = None
    # One line each, for the data report and the run log: things that do not stop the run.
    warnings: list[str] = field(default_factory=list)


def resolved(path: str | os.PathLike) -> str:
    """The absolute path with links resolved, or as far as they resolve: a broken or looping link stays
    itself (``Path.resolve`` raises on a loop), so decoding reports it instead of the scan crashing."""
    return os.path.realpath(os.path.abspath(path))


def not_utf8_name(path: str) -> str | None:
    """Why a path can't be a clip's path, when a part of it is not valid UTF-8 (Python holds such bytes as
    surrogate escapes), else None. The clip itself may be fine, but a run writes every clip's path into
    UTF-8 text (``split.csv``, ``test_predictions.csv``, the Arrow cache), which can't hold those bytes."""
    if is_utf8(path):
        return None
    part = next((part for part in Path(path).parts if not is_utf8(part)), path)
    return f"file name is not valid UTF-8 ({os.fsencode(part)!r}); rename it (e.g. convmv -f latin1 -t utf8 --notest FILE)"


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def speaker_from_name(path: Path, pattern: str | None) -> str | None:
    """The first group of ``pattern`` searched in the file's name (without extension)."""
    if not pattern:
        return None
    match = re.search(pattern, path.stem)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def apply_speaker_pattern(records: list[Record], pattern: str | None, problems: list, where) -> list[Record]:
    """Speakers from the file names for the records without one; a pattern that matches none of them is
    an error (the pattern, not the data, is wrong), one that misses some sets those aside."""
    if not pattern:
        return list(records)
    try:
        re.compile(pattern)
    except re.error as err:
        raise ConfigError(
            f"data.speaker_pattern={pattern!r} is not a valid regular expression ({err}); e.g. data.speaker_pattern='^(spk\\d+)_'"
        ) from None
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
