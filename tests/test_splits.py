"""Split protocols: speakers kept apart, folds covering every speaker once, determinism, clear errors."""

import collections

import pytest

from ser_dist.config import Data
from ser_dist.data.records import DataError, Record
from ser_dist.data.split_file import read_split, write_split
from ser_dist.data.split_groups import speaker_folds
from ser_dist.data.splits import num_folds, split_records
from ser_dist.errors import ConfigError

LABELS = ("anger", "happy", "neutral", "sad")


def make_records(num_speakers: int = 10, per_class: int = 5, sessions: int = 0, speaker_sizes=None) -> list[Record]:
    """``per_class`` clips of every class for each speaker (``speaker_sizes`` overrides it per speaker).

    With ``sessions``, speakers are paired into sessions like IEMOCAP (two actors a session).
    """
    records = []
    for s in range(num_speakers):
        count = speaker_sizes[s] if speaker_sizes else per_class
        for label in LABELS:
            for take in range(count):
                session = f"Session{s // 2 + 1}" if sessions else None
                records.append(Record(path=f"/corpus/spk{s}/{label}_{take}.wav", label=label, speaker=f"spk{s}", session=session))
    return records


def speakers_of(records, indices) -> set:
    return {records[i].speaker for i in indices}


def assert_partition(records, split):
    """Every record is in exactly one split, and each split's indices are sorted."""
    all_indices = split["train"] + split["val"] + split["test"]
    assert sorted(all_indices) == list(range(len(records)))
    for indices in split.values():
        assert indices == sorted(indices)


def assert_speakers_apart(records, split):
    train, val, test = (speakers_of(records, split[name]) for name in ("train", "val", "test"))
    assert not train & val and not train & test and not val & test


# --- stratified ------------------------------------------------------------------------------------


def test_stratified_fractions_per_class_and_determinism():
    records = make_records(num_speakers=5, per_class=20)  # 400 clips, 100 per class
    data = Data(split="stratified")
    split = split_records(records, data, seed=3)
    assert_partition(records, split)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (320, 40, 40)
    for name in ("val", "test"):
        assert collections.Counter(records[i].label for i in split[name]) == {label: 10 for label in LABELS}
    assert split_records(records, data, seed=3) == split
    assert split_records(records, data, seed=4) != split


def test_stratified_keeps_augmented_copies_together():
    records = []
    for n in range(60):
        label = LABELS[n % 4]
        original = f"/corpus/{label}/{n}.wav"
        records.append(Record(path=original, label=label))
        for copy in range(3):  # augmented copies point back at their original
            records.append(Record(path=f"/aug/{n}_{copy}.wav", label=label, source=original))
    split = split_records(records, Data(split="stratified", val_fraction=0.2, test_fraction=0.2), seed=0)
    assert_partition(records, split)
    where = collections.defaultdict(set)
    for name, indices in split.items():
        for i in indices:
            where[records[i].source].add(name)
    assert all(len(names) == 1 for names in where.values())
    assert len(split["test"]) == 48 and len(split["val"]) == 48


def test_small_corpus_still_gets_val_and_test_clips():
    records = make_records(num_speakers=1, per_class=2)  # 8 clips: 10 % rounds to 1
    split = split_records(records, Data(split="stratified"), seed=0)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (6, 1, 1)


def test_zero_test_fraction_is_an_error():
    with pytest.raises(DataError, match="test split is empty: data.test_fraction=0"):
        split_records(make_records(), Data(split="stratified", test_fraction=0.0), seed=0)


# --- speaker ---------------------------------------------------------------------------------------


def test_speaker_split_keeps_speakers_apart_with_every_class():
    records = make_records(num_speakers=10, per_class=3)
    data = Data(split="speaker")
    split = split_records(records, data, seed=1)
    assert_partition(records, split)
    assert_speakers_apart(records, split)
    # Ten equal speakers: 10 % each is exactly one speaker.
    assert [len(speakers_of(records, split[name])) for name in ("train", "val", "test")] == [8, 1, 1]
    for indices in split.values():
        assert {records[i].label for i in indices} == set(LABELS)
    assert split_records(records, data, seed=1) == split


def test_speaker_split_aims_at_the_fractions_by_clip_count():
    sizes = [30, 2, 2, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 8, 9, 10, 12]
    records = make_records(num_speakers=len(sizes), speaker_sizes=sizes)
    split = split_records(records, Data(split="speaker", val_fraction=0.15, test_fraction=0.15), seed=0)
    assert_partition(records, split)
    assert_speakers_apart(records, split)
    for name in ("val", "test"):
        assert abs(len(split[name]) / len(records) - 0.15) < 0.03


def test_speaker_split_prefers_assignments_with_every_class():
    # spk0..spk3 have only anger and happy; every split can still hold all four classes.
    records = [
        r
        for r in make_records(num_speakers=10, per_class=2)
        if not (r.speaker in {"spk0", "spk1", "spk2", "spk3"} and r.label in ("neutral", "sad"))
    ]
    for seed in range(5):
        split = split_records(records, Data(split="speaker", val_fraction=0.2, test_fraction=0.2), seed=seed)
        for indices in split.values():
            assert {records[i].label for i in indices} == set(LABELS)


def test_speaker_split_needs_three_speakers_and_speaker_ids():
    with pytest.raises(DataError, match=r"at least 3 speakers.*data.speaker_pattern.*speaker' column.*data.split=stratified"):
        split_records(make_records(num_speakers=2), Data(split="speaker"), seed=0)
    # Without a validation split, two speakers are enough.
    split = split_records(make_records(num_speakers=2), Data(split="speaker", val_fraction=0.0), seed=0)
    assert split["val"] == [] and split["train"] and split["test"]
    records = make_records(num_speakers=4)
    records[5].speaker = None
    with pytest.raises(DataError, match=r"1 of 80 clips have no speaker.*data.speaker_pattern.*data.split=stratified"):
        split_records(records, Data(split="speaker"), seed=0)


def test_source_spanning_speakers_is_an_error():
    records = make_records(num_speakers=4)
    records[1].source = records[0].source
    records[1].speaker = "spk3"
    with pytest.raises(DataError, match="fall in both"):
        split_records(records, Data(split="speaker"), seed=0)


# --- leave one speaker / session out ---------------------------------------------------------------


def test_leave_one_speaker_out_tests_each_speaker_once():
    records = make_records(num_speakers=10, per_class=2)
    data = Data(split="leave_one_speaker_out")
    assert num_folds(records, data) == 10
    tested = []
    for fold in range(1, 11):
        data.fold = fold
        split = split_records(records, data, seed=0)
        assert_partition(records, split)
        assert_speakers_apart(records, split)
        (test,) = speakers_of(records, split["test"])
        tested.append(test)
        assert speakers_of(records, split["val"]) == {f"spk{fold % 10}"}  # the next speaker in sorted order
    # Natural order: spk2 comes before spk10-style ids; fold K is the K-th speaker.
    assert tested == [f"spk{s}" for s in range(10)]


def test_leave_one_speaker_out_fold_errors():
    records = make_records(num_speakers=4)
    with pytest.raises(ConfigError, match=r"data.fold is required.*data.fold=1..4"):
        split_records(records, Data(split="leave_one_speaker_out"), seed=0)
    with pytest.raises(ConfigError, match="data.fold=5 is out of range"):
        split_records(records, Data(split="leave_one_speaker_out", fold=5), seed=0)
    with pytest.raises(DataError, match="too few for separate train and validation speakers"):
        split_records(make_records(num_speakers=2), Data(split="leave_one_speaker_out", fold=1), seed=0)


def test_leave_one_session_out_iemocap_like():
    records = make_records(num_speakers=10, per_class=2, sessions=5)
    data = Data(split="leave_one_session_out")
    assert num_folds(records, data) == 5
    for fold in range(1, 6):
        data.fold = fold
        split = split_records(records, data, seed=0)
        assert_partition(records, split)
        assert_speakers_apart(records, split)
        assert {records[i].session for i in split["test"]} == {f"Session{fold}"}
        # One speaker of the next session is 10 % of the clips.
        next_session = f"Session{fold % 5 + 1}"
        assert {records[i].session for i in split["val"]} == {next_session}
        assert len(speakers_of(records, split["val"])) == 1


def test_leave_one_session_out_needs_sessions():
    records = make_records(num_speakers=4)
    with pytest.raises(DataError, match=r"needs a session for every clip.*'session' column"):
        split_records(records, Data(split="leave_one_session_out", fold=1), seed=0)


# --- speaker k-fold --------------------------------------------------------------------------------


def test_speaker_kfold_folds_are_disjoint_balanced_and_cover_everyone():
    sizes = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    records = make_records(num_speakers=12, speaker_sizes=sizes)
    data = Data(split="speaker_kfold", num_folds=4)
    assert num_folds(records, data) == 4
    tested = []
    test_sizes = []
    for fold in range(1, 5):
        data.fold = fold
        split = split_records(records, data, seed=7)
        assert_partition(records, split)
        assert_speakers_apart(records, split)
        tested.extend(speakers_of(records, split["test"]))
        test_sizes.append(len(split["test"]))
        assert split_records(records, data, seed=7) == split
    assert sorted(tested) == sorted({r.speaker for r in records})
    # 312 clips over 4 folds: each within a few clips of 78.
    assert max(test_sizes) - min(test_sizes) <= 8


def test_speaker_folds_are_deterministic_per_seed():
    groups = {f"spk{s}": list(range(4)) for s in range(9)}
    assert speaker_folds(groups, 3, seed=1) == speaker_folds(groups, 3, seed=1)
    assert speaker_folds(groups, 3, seed=1) != speaker_folds(groups, 3, seed=2)


def test_speaker_kfold_errors():
    with pytest.raises(DataError, match="needs at least 5 speakers"):
        split_records(make_records(num_speakers=3), Data(split="speaker_kfold", fold=1), seed=0)
    with pytest.raises(ConfigError, match="data.fold is required"):
        split_records(make_records(num_speakers=6), Data(split="speaker_kfold"), seed=0)


# --- fixed -----------------------------------------------------------------------------------------


def test_fixed_split_reads_the_session_column():
    records = make_records(num_speakers=3, per_class=1)
    for record, name in zip(records, ["train"] * 8 + ["val"] * 2 + ["test"] * 2):
        record.session = name
    split = split_records(records, Data(split="fixed"), seed=0)
    assert split == {"train": list(range(8)), "val": [8, 9], "test": [10, 11]}


def test_fixed_split_errors():
    records = make_records(num_speakers=3, per_class=1)
    for record in records:
        record.session = "dev"
    with pytest.raises(DataError, match="must be train, val or test.*session 'dev'"):
        split_records(records, Data(split="fixed"), seed=0)
    for i, record in enumerate(records):
        record.session = "test" if i < 2 else "train"
    with pytest.raises(DataError, match=r"validation split is empty \(no clip has session 'val'\).*data.val_fraction=0"):
        split_records(records, Data(split="fixed"), seed=0)
    assert split_records(records, Data(split="fixed", val_fraction=0.0), seed=0)["val"] == []
    for record in records:
        record.session = "test"
    with pytest.raises(DataError, match="train split is empty"):
        split_records(records, Data(split="fixed", val_fraction=0.0), seed=0)


def test_fold_on_a_single_fold_protocol_is_an_error():
    with pytest.raises(ConfigError, match="data.fold=2: data.split=stratified has a single fold"):
        split_records(make_records(), Data(split="stratified", fold=2), seed=0)
    assert num_folds(make_records(), Data(split="speaker")) == 1


# --- split files -----------------------------------------------------------------------------------


def test_write_and_read_split_round_trip(tmp_path):
    records = make_records(num_speakers=4, per_class=2, sessions=2)
    split = split_records(records, Data(split="speaker"), seed=0)
    path = tmp_path / "run" / "split.csv"
    write_split(records, split, path)
    assert path.read_text().splitlines()[0] == "path,label,speaker,session,source,split"
    read_records, read = read_split(path)
    assert read == split
    assert read_records == records


def test_read_split_errors(tmp_path):
    with pytest.raises(DataError, match="split file not found"):
        read_split(tmp_path / "missing.csv")
    path = tmp_path / "split.csv"
    path.write_text("path,label\n/a.wav,anger\n")
    with pytest.raises(DataError, match="no speaker, session, source, split column"):
        read_split(path)
    path.write_text("path,label,speaker,session,source,split\n/a.wav,anger,s1,,/a.wav,dev\n")
    with pytest.raises(DataError, match=r"split.csv:2: split 'dev' is not train, val or test"):
        read_split(path)


def test_split_seed_keeps_one_split_while_the_training_seed_varies(demo_corpus):
    from conftest import SPEAKER_PATTERN

    from ser_dist.data.pipeline import prepare_data

    def split(seed: int, split_seed=None):
        data = Data(root=str(demo_corpus), speaker_pattern=SPEAKER_PATTERN, val_fraction=0.25, test_fraction=0.25, split_seed=split_seed)
        return prepare_data(data, seed).split_indices

    assert split(1) != split(2)  # by default the training seed draws the split
    assert split(1, split_seed=7) == split(2, split_seed=7) == split(7)


def test_split_seed_on_a_protocol_without_a_seed_is_a_config_error():
    from ser_dist.config import Experiment, cli

    assert cli(Experiment(data=Data(root=".")), ["data.split=speaker_kfold", "data.fold=1", "data.split_seed=3"]).data.split_seed == 3
    with pytest.raises(
        ConfigError, match=r"data.split_seed has no effect with data.split=leave_one_speaker_out .*stratified\|speaker\|speaker_kfold"
    ):
        cli(Experiment(data=Data(root=".")), ["data.split=leave_one_speaker_out", "data.fold=1", "data.split_seed=3"])
