"""Adapters for public SER corpora: each reads one corpus's documented layout and naming convention.

Every adapter has the ``folder`` adapter's signature, ``adapter(root: Path, data: Data) -> Scan``, and
is listed in ``ser_dist.registry.CORPORA`` under the corpus's name (``data.corpus=emodb``). It
returns one :class:`Record` per clip (absolute path, label, speaker, session) and the corpus's usual
class set in a fixed order as ``Scan.labels``. Nothing is guessed: a file whose name breaks the
convention, or whose emotion is outside the class set, goes to ``Scan.problems`` with the reason, so
the run's data report shows every file that was found and not used.

``data.labels`` replaces the usual class set (any of the corpus's own emotions, in the given order);
clips of other emotions go to the problems. Speakers come from the naming convention, so
``data.speaker_pattern`` is an error with these adapters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from .folder import scan_folder
from .records import DataError, Record, Scan, resolved


def _check_root(corpus: str, root: Path | None, data) -> Path:
    if root is None or not Path(root).is_dir():
        raise DataError(f"{root}: data folder not found; pass data.root=DIR, the folder holding the {corpus} files")
    if getattr(data, "speaker_pattern", None):
        raise ConfigError(
            f"data.speaker_pattern is for the folder and manifest corpora; data.corpus={corpus} reads speakers from its file names, so leave data.speaker_pattern unset"
        )
    return Path(root)


def _wanted_labels(corpus: str, usual: list[str], known: list[str], data) -> tuple[list[str], str]:
    """The classes to keep, in order, and how a clip of another class is reported."""
    if not data.labels:
        return list(usual), f"not in the {len(usual)}-class set"
    unknown = [label for label in data.labels if label not in known]
    if unknown:
        raise DataError(f"data.labels: {unknown[0]!r} is not a {corpus} emotion; {corpus} has {', '.join(known)}")
    return list(data.labels), "not in data.labels"


def _select(records: list[Record], problems: list[tuple[str, str]], wanted: list[str], reason: str) -> Scan:
    keep = set(wanted)
    scan = Scan(problems=problems, labels=list(wanted))
    for rec in records:
        if rec.label in keep:
            scan.records.append(rec)
        else:
            scan.problems.append((rec.path, f"label {rec.label!r} {reason}"))
    return scan


def _require_some(corpus: str, root: Path, records: list, problems: list, example: str) -> None:
    """A tree where nothing follows the convention is the wrong corpus or folder, not a corpus with problems."""
    if records:
        return
    if problems:
        path, reason = problems[0]
        raise DataError(
            f"{root}: none of the {len(problems)} audio files follows the {corpus} naming (e.g. {example}); first: {Path(path).name}: {reason}; check data.corpus and data.root"
        )
    raise DataError(f"{root}: no audio files found for {corpus} (expected names like {example}); check data.root")


def _scan_names(
    corpus: str,
    root: Path,
    data,
    usual: list[str],
    parse: Callable[[Path], tuple[Record | None, str | None]],
    example: str,
) -> Scan:
    """Shared walk for corpora whose labels live in the file names: ``parse`` gives a record or a reason."""
    wanted, reason = _wanted_labels(corpus, usual, usual, data)
    records, problems = [], []
    found = scan_folder(root)
    for path in found.audio:
        record, problem = parse(path)
        if record is None:
            problems.append((resolved(path), problem))
        else:
            records.append(record)
    _require_some(corpus, root, records, problems, example)
    # Hidden entries and broken links are reported too; other files (label files, docs) are the corpus's own.
    return _select(records, problems + found.other, wanted, reason)


# --- IEMOCAP ---------------------------------------------------------------------------------------

# Four classes as most papers use them: excited is merged into happy (Busso et al. 2008 protocol).
IEMOCAP_LABELS = ["angry", "happy", "sad", "neutral"]
IEMOCAP_CODES = {
    "ang": "angry",
    "hap": "happy",
    "exc": "happy",  # "excited" instead when data.labels names it
    "sad": "sad",
    "neu": "neutral",
    "fru": "frustrated",
    "sur": "surprised",
    "fea": "fearful",
    "dis": "disgusted",
    "oth": "other",
    "xxx": "xxx",  # the annotators did not agree on a majority label
}
IEMOCAP_KNOWN = ["angry", "happy", "excited", "sad", "neutral", "frustrated", "surprised", "fearful", "disgusted", "other"]
# Ses01F_impro01_F000, Ses01F_script01_1b_M012: session, marker-wearing actor, dialog, speaking actor, turn.
IEMOCAP_UTTERANCE = re.compile(r"^Ses(\d{2})([FM])_([A-Za-z0-9_]+)_([FM])(\d{3})$")
# [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]
IEMOCAP_LABEL_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(Ses\S+)\s+(\S+)\s+\[")


def _iemocap_evaluations(session_dir: Path) -> dict[str, str]:
    """Utterance id -> emotion code from ``SessionN/dialog/EmoEvaluation/*.txt`` (not its subfolders)."""
    folder = session_dir / "dialog" / "EmoEvaluation"
    if not folder.is_dir():
        raise DataError(
            f"{folder}: IEMOCAP label folder not found; data.root must be the IEMOCAP_full_release folder with SessionN/dialog/EmoEvaluation/"
        )
    codes: dict[str, str] = {}
    for txt in sorted(folder.glob("*.txt")):
        if txt.name.startswith("."):  # macOS AppleDouble files (._Ses01...) carry no labels
            continue
        for line in txt.read_text(errors="replace").splitlines():
            match = IEMOCAP_LABEL_LINE.match(line)
            if match:
                codes[match.group(1)] = match.group(2)
    return codes


def iemocap(root: Path, data) -> Scan:
    """IEMOCAP_full_release: ``SessionN/sentences/wav/<dialog>/<utterance>.wav``, labels from EmoEvaluation.

    session = ``SessionN``; speaker = ``SesNN`` + the gender letter of the utterance's last part (the
    actor speaking that turn; the dialog name's letter is the actor who wore the motion markers).
    """
    root = _check_root("iemocap", root, data)
    if not any(root.glob("Session*")) and (root / "IEMOCAP_full_release").is_dir():
        root = root / "IEMOCAP_full_release"
    sessions = sorted((p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"Session\d+", p.name)), key=lambda p: int(p.name[7:]))
    if not sessions:
        raise DataError(f"{root}: no Session1..Session5 folders; data.root must be the IEMOCAP_full_release folder")
    known = IEMOCAP_KNOWN
    wanted, reason = _wanted_labels("iemocap", IEMOCAP_LABELS, known, data)
    names = dict(IEMOCAP_CODES)
    if "excited" in wanted:
        names["exc"] = "excited"
    records, problems = [], []
    for session_dir in sessions:
        codes = _iemocap_evaluations(session_dir)
        wav_dir = session_dir / "sentences" / "wav"
        if not wav_dir.is_dir():
            raise DataError(
                f"{wav_dir}: IEMOCAP utterance folder not found; data.root must be the IEMOCAP_full_release folder with SessionN/sentences/wav/"
            )
        number = int(session_dir.name[7:])
        found = scan_folder(wav_dir)
        problems += found.other  # macOS ._* files, other hidden entries, broken links
        for path in found.audio:
            clip = resolved(path)
            match = IEMOCAP_UTTERANCE.match(path.stem)
            if match is None:
                problems.append((clip, "name does not follow IEMOCAP's SesNN<F|M>_<dialog>_<F|M>NNN utterance convention"))
                continue
            if int(match.group(1)) != number:
                problems.append((clip, f"utterance of Session{int(match.group(1))} found in {session_dir.name}"))
                continue
            code = codes.get(path.stem)
            if code is None:
                problems.append((clip, f"no label for {path.stem} in {session_dir.name}/dialog/EmoEvaluation"))
                continue
            if code not in names:
                problems.append((clip, f"unknown IEMOCAP emotion code {code!r}"))
                continue
            speaker = f"Ses{match.group(1)}{match.group(4)}"
            records.append(Record(path=clip, label=names[code], speaker=speaker, session=session_dir.name))
    _require_some("iemocap", root, records, problems, "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav")
    return _select(records, problems, wanted, reason)


# --- CREMA-D ---------------------------------------------------------------------------------------

CREMA_D_EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
CREMA_D_LABELS = list(CREMA_D_EMOTIONS.values())
# ActorID_Sentence_Emotion_Level: 1001_DFA_ANG_XX
CREMA_D_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_(LO|MD|HI|XX)$")


def _crema_d_clip(path: Path) -> tuple[Record | None, str | None]:
    match = CREMA_D_NAME.match(path.stem)
    if match is None:
        return None, "name does not follow CREMA-D's ActorID_Sentence_Emotion_Level convention (1001_DFA_ANG_XX)"
    actor, _, emotion, _ = match.groups()
    if emotion not in CREMA_D_EMOTIONS:
        return None, f"unknown CREMA-D emotion code {emotion!r}"
    return Record(path=resolved(path), label=CREMA_D_EMOTIONS[emotion], speaker=actor), None


def crema_d(root: Path, data) -> Scan:
    """CREMA-D: ``AudioWAV/1001_DFA_ANG_XX.wav`` (root may be AudioWAV or its parent); speaker = actor id."""
    root = _check_root("crema_d", root, data)
    return _scan_names("crema_d", root, data, CREMA_D_LABELS, _crema_d_clip, "AudioWAV/1001_DFA_ANG_XX.wav")


# --- RAVDESS ---------------------------------------------------------------------------------------

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
RAVDESS_LABELS = list(RAVDESS_EMOTIONS.values())
# modality-vocalchannel-emotion-intensity-statement-repetition-actor: 03-01-05-01-02-01-12
RAVDESS_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


def _ravdess_clip(path: Path) -> tuple[Record | None, str | None]:
    match = RAVDESS_NAME.match(path.stem)
    if match is None:
        return (
            None,
            "name does not follow RAVDESS's modality-channel-emotion-intensity-statement-repetition-actor convention (03-01-05-01-02-01-12)",
        )
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    if modality != "03":
        return None, f"modality {modality} is not audio-only (03)"
    if channel == "02":
        return None, "song (vocal channel 02); only speech (01) is used"
    if channel != "01":
        return None, f"unknown RAVDESS vocal channel {channel}"
    if emotion not in RAVDESS_EMOTIONS:
        return None, f"unknown RAVDESS emotion code {emotion}"
    if intensity not in ("01", "02") or statement not in ("01", "02") or repetition not in ("01", "02"):
        return None, "intensity, statement and repetition must each be 01 or 02"
    folder = re.fullmatch(r"Actor_(\d{2})", path.parent.name)
    if folder is not None and folder.group(1) != actor:
        return None, f"actor {actor} in the name but the file is in {path.parent.name}"
    return Record(path=resolved(path), label=RAVDESS_EMOTIONS[emotion], speaker=actor), None


def ravdess(root: Path, data) -> Scan:
    """RAVDESS audio-only speech: ``Actor_01/03-01-05-01-02-01-12.wav``; speaker = actor (last field), 8 classes."""
    root = _check_root("ravdess", root, data)
    return _scan_names("ravdess", root, data, RAVDESS_LABELS, _ravdess_clip, "Actor_12/03-01-05-01-02-01-12.wav")


# --- TESS ------------------------------------------------------------------------------------------

TESS_EMOTIONS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "surprised",
    "sad": "sad",
}
TESS_LABELS = list(TESS_EMOTIONS.values())
# OAF_back_angry: speaker (older / younger adult female), target word, emotion ("ps": pleasant surprise).
TESS_NAME = re.compile(r"^(OAF|YAF)_([A-Za-z]+)_([A-Za-z]+)$", re.IGNORECASE)


def _tess_clip(path: Path) -> tuple[Record | None, str | None]:
    match = TESS_NAME.match(path.stem)
    if match is None:
        return None, "name does not follow TESS's <OAF|YAF>_<word>_<emotion> convention (OAF_back_angry)"
    speaker, _, emotion = match.groups()
    if emotion.lower() not in TESS_EMOTIONS:
        return None, f"unknown TESS emotion {emotion!r}"
    return Record(path=resolved(path), label=TESS_EMOTIONS[emotion.lower()], speaker=speaker.upper()), None


def tess(root: Path, data) -> Scan:
    """TESS: ``OAF_angry/OAF_back_angry.wav``; speaker OAF or YAF (only two, so no speaker split), 7 classes."""
    root = _check_root("tess", root, data)
    return _scan_names("tess", root, data, TESS_LABELS, _tess_clip, "OAF_angry/OAF_back_angry.wav")


# --- EmoDB -----------------------------------------------------------------------------------------

EMODB_EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness", "N": "neutral"}
EMODB_LABELS = list(EMODB_EMOTIONS.values())
# SSTTTEV: speaker, text id, emotion letter, version letter: 03a01Fa
EMODB_NAME = re.compile(r"^(\d{2})([a-z]\d{2})([A-Z])([a-z])$")


def _emodb_clip(path: Path) -> tuple[Record | None, str | None]:
    match = EMODB_NAME.match(path.stem)
    if match is None:
        return None, "name does not follow EmoDB's <speaker 2 digits><text 3 chars><emotion letter><version> convention (03a01Fa)"
    speaker, _, emotion, _ = match.groups()
    if emotion not in EMODB_EMOTIONS:
        return None, f"unknown EmoDB emotion letter {emotion!r}"
    return Record(path=resolved(path), label=EMODB_EMOTIONS[emotion], speaker=speaker), None


def emodb(root: Path, data) -> Scan:
    """EmoDB: ``wav/03a01Fa.wav`` or the clips directly in root; speaker = the 2-digit id, 7 classes."""
    root = _check_root("emodb", root, data)
    return _scan_names("emodb", root, data, EMODB_LABELS, _emodb_clip, "wav/03a01Fa.wav")


# --- SAVEE -----------------------------------------------------------------------------------------

SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")
SAVEE_EMOTIONS = {"a": "anger", "d": "disgust", "f": "fear", "h": "happiness", "n": "neutral", "sa": "sadness", "su": "surprise"}
SAVEE_LABELS = list(SAVEE_EMOTIONS.values())
# AudioData/DC/a01.wav, or the flat Kaggle naming DC_a01.wav
SAVEE_NAME = re.compile(r"^(?:([A-Z]{2})_)?(sa|su|a|d|f|h|n)(\d{2})$")


def _savee_clip(path: Path) -> tuple[Record | None, str | None]:
    match = SAVEE_NAME.match(path.stem)
    if match is None:
        return None, "name does not follow SAVEE's <emotion prefix><NN> convention (AudioData/DC/a01.wav or DC_a01.wav)"
    named, prefix, _ = match.groups()
    folder = path.parent.name if path.parent.name in SAVEE_SPEAKERS else None
    if named is not None and named not in SAVEE_SPEAKERS:
        return None, f"unknown SAVEE speaker {named!r} (expected one of {', '.join(SAVEE_SPEAKERS)})"
    if named is not None and folder is not None and named != folder:
        return None, f"speaker {named} in the name but the file is in {folder}/"
    speaker = named or folder
    if speaker is None:
        return None, f"no SAVEE speaker: the file is not in a {'/'.join(SAVEE_SPEAKERS)} folder and its name has no speaker prefix"
    return Record(path=resolved(path), label=SAVEE_EMOTIONS[prefix], speaker=speaker), None


def savee(root: Path, data) -> Scan:
    """SAVEE: ``AudioData/DC/a01.wav`` or flat ``DC_a01.wav``; speakers DC JE JK KL, 7 classes."""
    root = _check_root("savee", root, data)
    return _scan_names("savee", root, data, SAVEE_LABELS, _savee_clip, "AudioData/DC/a01.wav")
