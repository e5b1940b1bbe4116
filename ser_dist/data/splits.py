"""Train / validation / test splits of a corpus's records, chosen by ``data.split``.

Every protocol keeps all records with the same ``source`` in one split, so augmented copies of a clip
never leak across splits. ``split_records`` returns sorted indices into the record list for
``train``, ``val`` and ``test``; train and test are never empty, and val is empty only when
``data.val_fraction`` is 0.

Protocols:

* ``stratified``: clips (grouped by source) are shuffled with the seed and cut per class, so every
  split has ~``val_fraction`` / ``test_fraction`` of each class. Speakers mix across splits.
* ``speaker``: whole speakers go to each split, aiming at the fractions by clip count and keeping
  every class present in every split where the speakers allow it (the seed picks among the
  candidate assignments). Needs a speaker for every clip and at least 3 speakers.
* ``leave_one_speaker_out``: fold K (``data.fold``, 1-based) tests on the K-th speaker in natural
  sort order (``spk2`` before ``spk10``); validation takes the next speaker(s) in that order until it
  holds ~``val_fraction`` of the clips; the rest train. The seed is not used. Needs at least 3 speakers
  (2 with ``data.val_fraction=0``), as does ``speaker_kfold``.
* ``leave_one_session_out``: fold K tests on the K-th session (IEMOCAP: 5 folds); validation takes
  whole speakers of the training sessions, starting with the session after the test one, until it
  holds ~``val_fraction`` of the clips.
* ``speaker_kfold``: speakers are dealt into ``data.num_folds`` folds balanced by clip count (the
  seed breaks ties); fold K tests, validation takes speakers of the following folds up to
  ~``val_fraction``.
* ``fixed``: the split is given by the data: each record's ``session`` must be ``train``, ``val`` or
  ``test`` (a manifest with a ``session`` column holding the corpus's official split), or, for a Hugging
  Face dataset, the dataset's own splits (``train``, ``validation``/``valid``/``dev``, ``test``).

This module holds the protocols and the checks that explain a refusal; the counting behind them
(grouping, quotas, dealing speakers into folds) is :mod:`ser_dist.data.split_groups`, and the
``split.csv`` written beside a run is :mod:`ser_dist.data.split_file`.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Mapping

from ..errors import ConfigError
from .records import DataError, Record
from .split_groups import apportion, at_least_one, count_for_target, group_indices, natural_key, speaker_folds, take_validation

SPLIT_NAMES = ("train", "val", "test")
FOLD_PROTOCOLS = ("leave_one_speaker_out", "leave_one_session_out", "speaker_kfold")
# Candidate speaker assignments tried by the ``speaker`` protocol; the best one is kept.
SPEAKER_TRIALS = 200
SPEAKER_FIX = (
    "set data.speaker_pattern=REGEX (group 1 is the speaker id in the file name), add a 'speaker' "
    "column to the manifest, or use data.split=stratified (speakers then mix across splits)"
)

Split = dict[str, list[int]]


def split_records(records: list[Record], data, seed: int, own_splits: Mapping[str, str] | None = None) -> Split:
    """Indices into ``records`` for train, val and test under ``data.split`` (see the module docstring).

    ``own_splits``: record path -> train / val / test, the splits the data came with (a Hugging Face
    dataset's, ``HFScan.fixed_split``); ``data.split=fixed`` takes them instead of each record's session."""
    if not records:
        raise DataError("no clips to split; check data.root / data.manifest")
    protocols: dict[str, Callable[[list[Record], object, int], Split]] = {
        "stratified": _stratified,
        "speaker": _speaker,
        "leave_one_speaker_out": _leave_one_speaker_out,
        "leave_one_session_out": _leave_one_session_out,
        "speaker_kfold": _speaker_kfold,
        "fixed": _fixed,
    }
    if data.split not in protocols:
        raise ConfigError(f"data.split={data.split!r} is not one of {', '.join(protocols)}")
    if data.split not in FOLD_PROTOCOLS and data.fold not in (None, 1):
        raise ConfigError(f"data.fold={data.fold}: data.split={data.split} has a single fold; folds are for {', '.join(FOLD_PROTOCOLS)}")
    if data.split == "fixed" and own_splits is not None:
        split = _own_splits(records, own_splits)
    else:
        split = protocols[data.split](records, data, seed)
    split = {name: sorted(split.get(name, [])) for name in SPLIT_NAMES}
    _check_sources_together(records, split, data)
    _check_not_empty(records, split, data)
    return split


def num_folds(records: list[Record], data) -> int:
    """How many folds ``data.split`` has: speakers, sessions, ``data.num_folds``, or 1."""
    if data.split == "leave_one_speaker_out":
        return len(_speaker_groups(records, data))
    if data.split == "leave_one_session_out":
        return len(_session_groups(records, data))
    if data.split == "speaker_kfold":
        return data.num_folds
    return 1


# --- protocols -------------------------------------------------------------------------------------


def _stratified(records: list[Record], data, seed: int) -> Split:
    rng = random.Random(seed)
    sources = group_indices(records, lambda rec: rec.source)
    by_label: dict[str, list[str]] = collections.defaultdict(list)
    for source in sorted(sources):
        # Copies of one clip share its label; a mixed group goes with its most common one.
        label = collections.Counter(records[i].label for i in sources[source]).most_common(1)[0][0]
        by_label[label].append(source)
    labels = sorted(by_label)
    clips = {label: sum(len(sources[s]) for s in by_label[label]) for label in labels}
    total = len(records)
    test_quota = apportion(at_least_one(data.test_fraction * total), clips, labels)
    val_quota = apportion(at_least_one(data.val_fraction * total), clips, labels)
    split: Split = {name: [] for name in SPLIT_NAMES}
    for label in labels:
        order = list(by_label[label])
        rng.shuffle(order)
        sizes = [len(sources[s]) for s in order]
        n_test = count_for_target(sizes, test_quota[label], 0, len(order))
        n_val = count_for_target(sizes[n_test:], val_quota[label], 0, len(order) - n_test)
        for position, source in enumerate(order):
            name = "test" if position < n_test else "val" if position < n_test + n_val else "train"
            split[name].extend(sources[source])
    return split


def _speaker(records: list[Record], data, seed: int) -> Split:
    groups = _speaker_groups(records, data)
    needed = 3 if data.val_fraction > 0 else 2
    if len(groups) < needed:
        raise DataError(
            f"data.split=speaker needs at least {needed} speakers (each split gets whole speakers); found {len(groups)} "
            f"({', '.join(groups)}); {SPEAKER_FIX}"
        )
    speakers = list(groups)
    classes = {speaker: {records[i].label for i in groups[speaker]} for speaker in speakers}
    all_classes = set().union(*classes.values())
    total = len(records)
    rng = random.Random(seed)
    best: tuple[tuple, dict[str, list[str]]] | None = None
    for _ in range(SPEAKER_TRIALS):
        order = list(speakers)
        rng.shuffle(order)
        sizes = [len(groups[s]) for s in order]
        n_val_min = 1 if data.val_fraction > 0 else 0
        n_test = count_for_target(sizes, data.test_fraction * total, 1, len(order) - n_val_min - 1)
        rest = sizes[n_test:]
        n_val = count_for_target(rest, data.val_fraction * total, n_val_min, len(rest) - 1) if n_val_min else 0
        assignment = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
        missing = sum(len(all_classes - set().union(*(classes[s] for s in assignment[name]))) for name in SPLIT_NAMES if assignment[name])
        gap = sum(
            abs(sum(len(groups[s]) for s in assignment[name]) / total - fraction)
            for name, fraction in (("test", data.test_fraction), ("val", data.val_fraction))
        )
        score = (missing, round(gap, 12))
        if best is None or score < best[0]:
            best = (score, assignment)
    assert best is not None
    return {name: [i for s in best[1][name] for i in groups[s]] for name in SPLIT_NAMES}


def _leave_one_speaker_out(records: list[Record], data, seed: int) -> Split:
    groups = _speaker_groups(records, data)
    speakers = list(groups)
    _require_enough_speakers(data, speakers)
    fold = _require_fold(data, len(speakers), "speakers")
    _require_units_left(data, len(speakers) - 1, "speakers", len(speakers))
    test = speakers[fold - 1]
    # The next speakers in sorted order, wrapping around: a fixed choice, so folds are reproducible.
    candidates = speakers[fold:] + speakers[: fold - 1]
    return _hold_out(list(groups[test]), candidates, groups, data, len(records))


def _leave_one_session_out(records: list[Record], data, seed: int) -> Split:
    sessions = _session_groups(records, data)
    names = list(sessions)
    if len(names) < 2:  # before data.fold: "pass data.fold=1..1" would be no advice
        raise DataError(
            f"data.split=leave_one_session_out needs at least 2 sessions (one to test, the others to train); found 1 ({names[0]!r}); "
            "give the clips their sessions, or use data.split=speaker or stratified"
        )
    fold = _require_fold(data, len(names), "sessions")
    test_session = names[fold - 1]
    pool = [i for name in names if name != test_session for i in sessions[name]]
    if data.val_fraction <= 0:
        return {"test": list(sessions[test_session]), "val": [], "train": pool}
    pool_records = [records[i] for i in pool]
    _require_speakers(pool_records, data, "chooses validation speakers from the training sessions")
    # Validation speakers come from the session after the test one, then the next, wrapping around.
    speaker_clips: dict[str, list[int]] = {}
    for name in names[fold:] + names[: fold - 1]:
        for speaker in sorted({records[i].speaker for i in sessions[name]}, key=natural_key):
            speaker_clips.setdefault(speaker, [])
        for i in sessions[name]:
            speaker_clips[records[i].speaker].append(i)
    candidates = list(speaker_clips)
    if len(candidates) < 2:
        everyone = {rec.speaker for rec in records if rec.speaker is not None}
        other = "data.split=speaker" if len(everyone) >= 3 else "data.split=stratified"  # speaker needs 3 speakers
        raise DataError(
            f"data.split=leave_one_session_out fold {fold}: the training sessions have {len(candidates)} speaker, too few for "
            f"separate validation speakers; set data.val_fraction=0 to train without validation, or use {other}"
        )
    return _hold_out(list(sessions[test_session]), candidates, speaker_clips, data, len(records))


def _speaker_kfold(records: list[Record], data, seed: int) -> Split:
    groups = _speaker_groups(records, data)
    k = data.num_folds
    if k < 2:
        raise ConfigError(f"data.num_folds={k} must be at least 2 for data.split=speaker_kfold")
    _require_enough_speakers(data, list(groups))
    if len(groups) < k:
        raise DataError(
            f"data.split=speaker_kfold with data.num_folds={k} needs at least {k} speakers (one per fold); found {len(groups)} "
            f"({', '.join(groups)}); set data.num_folds={len(groups)} (one speaker per fold) or use data.split=leave_one_speaker_out"
        )
    fold = _require_fold(data, k, "folds (data.num_folds)")
    folds = speaker_folds(groups, k, seed)
    _require_units_left(data, len(groups) - len(folds[fold - 1]), "speakers", len(groups))
    candidates = [s for f in folds[fold:] + folds[: fold - 1] for s in f]
    return _hold_out([i for s in folds[fold - 1] for i in groups[s]], candidates, groups, data, len(records))


def _hold_out(test: list[int], candidates: list[str], groups: dict[str, list[int]], data, total: int) -> Split:
    """A fold's split: ``test`` as given, the leading ``candidates`` (speakers) validate, the rest train."""
    val = take_validation(candidates, {s: len(groups[s]) for s in candidates}, data.val_fraction, total)
    return {
        "test": test,
        "val": [i for s in val for i in groups[s]],
        "train": [i for s in candidates if s not in val for i in groups[s]],
    }


def _fixed(records: list[Record], data, seed: int) -> Split:
    split: Split = {name: [] for name in SPLIT_NAMES}
    for i, rec in enumerate(records):
        if rec.session not in SPLIT_NAMES:
            raise DataError(
                f"data.split=fixed reads each clip's split from its session, which must be train, val or test; "
                f"{rec.path} has session {rec.session!r}; fix the manifest's 'session' column or choose another data.split"
            )
        split[rec.session].append(i)
    return split


def _own_splits(records: list[Record], own_splits: Mapping[str, str]) -> Split:
    split: Split = {name: [] for name in SPLIT_NAMES}
    for i, rec in enumerate(records):
        role = own_splits.get(rec.path)
        if role not in SPLIT_NAMES:
            raise DataError(
                f"data.split=fixed: {rec.path} comes from split {role!r}, which is not train, validation or test; use another data.split"
            )
        split[role].append(i)
    return split


# --- what the data must have, and what a split must be ---------------------------------------------


def _require_speakers(records: list[Record], data, why: str = "keeps speakers apart") -> None:
    missing = [rec for rec in records if rec.speaker is None]
    if missing:
        raise DataError(
            f"data.split={data.split} {why}, but {len(missing)} of {len(records)} clips have no speaker "
            f"(e.g. {missing[0].path}); {SPEAKER_FIX}"
        )


def _speaker_groups(records: list[Record], data) -> dict[str, list[int]]:
    _require_speakers(records, data)
    return group_indices(records, lambda rec: rec.speaker)


def _session_groups(records: list[Record], data) -> dict[str, list[int]]:
    missing = [rec for rec in records if rec.session is None]
    if missing:
        raise DataError(
            f"data.split=leave_one_session_out needs a session for every clip, but {len(missing)} of {len(records)} have none "
            f"(e.g. {missing[0].path}); add a 'session' column to the manifest, use a corpus adapter that reads sessions "
            f"(data.corpus=iemocap), or use data.split=leave_one_speaker_out"
        )
    return group_indices(records, lambda rec: rec.session)


def _require_enough_speakers(data, speakers: list[str]) -> None:
    """A speaker-fold protocol needs one speaker to test, one to train and, with validation, one more;
    checked before ``data.fold``, whose range would otherwise be the only advice ("data.fold=1..1")."""
    needed = 3 if data.val_fraction > 0 else 2
    if len(speakers) >= needed:
        return
    roles = "test, validation and train" if needed == 3 else "test and train"
    if len(speakers) == 2:  # enough without validation
        fix = "too few for separate train and validation speakers; set data.val_fraction=0 to train without validation, add clips of other speakers,"
    else:
        fix = "add clips of other speakers (or check data.speaker_pattern / the 'speaker' column),"
    raise DataError(
        f"data.split={data.split} needs at least {needed} speakers (one each for {roles}); found {len(speakers)} "
        f"({', '.join(speakers)}): {fix} or use data.split=stratified (speakers then mix across splits)"
    )


def _require_fold(data, n: int, what: str) -> int:
    if data.fold is None:
        raise ConfigError(f"data.fold is required for data.split={data.split}: pass data.fold=1..{n} (this data has {n} {what})")
    if not 1 <= data.fold <= n:
        raise ConfigError(f"data.fold={data.fold} is out of range for data.split={data.split}: this data has {n} {what}, so folds 1..{n}")
    return data.fold


def _require_units_left(data, left: int, what: str, total: int) -> None:
    """Training needs one unit outside the test fold, validation one more (when it is wanted)."""
    needed = 2 if data.val_fraction > 0 else 1
    if left < needed:
        raise DataError(
            f"data.split={data.split} with {total} {what} leaves {left} outside the test fold, too few for "
            f"{'separate train and validation ' + what if needed == 2 else 'training'}; add {what}, set data.val_fraction=0, "
            f"or use data.split=stratified"
        )


def _check_sources_together(records: list[Record], split: Split, data) -> None:
    where: dict[str, str] = {}
    for name in SPLIT_NAMES:
        for i in split[name]:
            first = where.setdefault(records[i].source, name)
            if first != name:
                raise DataError(
                    f"data.split={data.split}: clips of source {records[i].source} fall in both {first} and {name}, because they "
                    f"have different speakers or sessions; give augmented copies the speaker and session of their original clip"
                )


def _check_not_empty(records: list[Record], split: Split, data) -> None:
    count = f"{len(records)} clips"
    if not split["train"]:
        raise DataError(
            f"data.split={data.split}: the train split is empty ({count}); lower data.val_fraction / data.test_fraction or add clips"
        )
    if not split["test"]:
        if data.split == "fixed":
            why = "no clip has session 'test'; add test rows to the manifest"
        elif data.split in ("stratified", "speaker") and data.test_fraction <= 0:
            why = "data.test_fraction=0; set it > 0 (every run is scored on held-out clips)"
        else:
            why = f"{count} are too few; add clips"
        raise DataError(f"data.split={data.split}: the test split is empty: {why}")
    if not split["val"] and data.val_fraction > 0:
        why = "no clip has session 'val'" if data.split == "fixed" else f"{count} are too few"
        raise DataError(
            f"data.split={data.split}: the validation split is empty ({why}); add clips, or set data.val_fraction=0 to train without one"
        )
