"""The ``folder`` corpus: one folder per class, and the walk every folder-reading adapter uses.

``scan_folder`` lists every entry under a folder: the audio files, and why each other entry is not used (hidden
files, broken or looping links, empty folders, names that are not UTF-8), so nothing is skipped silently.
"""

from __future__ import annotations

import csv
import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .records import AUDIO_EXTENSIONS, DataError, Record, Scan, apply_speaker_pattern, not_utf8_name, resolved


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
            found.other.append(
                (str(folder), "a folder, not a file (named like an audio file, and empty)" if named_like_audio else "empty folder")
            )
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
                found.non_audio.append(
                    (str(path), f"not an audio file ({kind}; audio files end in {', '.join(AUDIO_EXTENSIONS[:4])}, ...)")
                )

    walk(Path(root))
    found.audio.sort()
    return found


def _entry_problem(entry: os.DirEntry) -> str | None:
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
        raise DataError(
            f"{root}: no class folders found; expected one folder per emotion (e.g. {root}/Anger/*.wav) or pass a manifest with data.manifest=FILE"
        )
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
    scan.records = apply_speaker_pattern(scan.records, data.speaker_pattern, scan.problems, root)
    return scan
