"""Data that would train to a meaningless number stops with one line naming the row and the fix; every
file, folder entry and manifest row is either used or reported with its reason, never dropped silently."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line, write_clip

import ser_dist.data.corpora  # noqa: F401  registers the adapters
from ser_dist.config import Data
from ser_dist.data.dataset import build_audio_dataset
from ser_dist.data.folder import folder, scan_folder
from ser_dist.data.manifest import read_manifest
from ser_dist.data.pipeline import prepare_data, scan_corpus, summary_line
from ser_dist.data.records import DataError, Record
from ser_dist.errors import ConfigError

RATE = 16000


def manifest_data(path: Path, **keys) -> Data:
    return Data(manifest=str(path), split="fixed", val_fraction=0.0, **keys)


@pytest.fixture
def clips(tmp_path) -> Path:
    """Six good clips a.wav ... f.wav in tmp_path/clips."""
    for i, name in enumerate("abcdef"):
        write_clip(tmp_path / "clips" / f"{name}.wav", seed=i)
    return tmp_path / "clips"


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


# --- B1, B2: a clip listed twice, or with two labels --------------------------------------------------


def test_a_manifest_row_given_twice_is_an_error_naming_both_lines(clips, tmp_path):
    manifest = write_csv(tmp_path / "m.csv", "path,label", ["clips/a.wav,angry", "clips/b.wav,sad", "clips/a.wav,angry"])
    with pytest.raises(DataError) as err:
        read_manifest(manifest)
    one_line(err, f"{manifest}:4:", "first on line 2", str(clips / "a.wav"), "remove the duplicate row")
    # Another spelling of the same file is the same clip.
    manifest = write_csv(tmp_path / "m2.csv", "path,label", ["clips/a.wav,angry", "./clips/../clips/a.wav,angry"])
    with pytest.raises(DataError) as err:
        read_manifest(manifest)
    one_line(err, f"{manifest}:3:", "first on line 2")


def test_one_path_with_two_labels_is_an_error_naming_the_path_both_labels_and_lines(clips, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "\n".join(
            json.dumps(row)
            for row in [
                {"path": "clips/a.wav", "label": "angry"},
                {"path": "clips/b.wav", "label": "sad"},
                {"path": "clips/a.wav", "label": "happy"},
            ]
        )
        + "\n"
    )
    with pytest.raises(DataError) as err:
        read_manifest(manifest)
    one_line(err, f"{manifest}:3:", str(clips / "a.wav"), "'happy' here and 'angry' on line 1", "needs one label")


def test_a_clip_linked_into_two_class_folders_is_an_error_and_a_second_link_in_one_is_set_aside(tmp_path):
    root = tmp_path / "corpus"
    write_clip(root / "Anger" / "a.wav")
    write_clip(root / "Sad" / "b.wav", seed=1)
    os.symlink(root / "Anger" / "a.wav", root / "Anger" / "a_again.wav")
    scan = folder(root, Data(root=str(root)))
    assert [Path(r.path).name for r in scan.records] == ["a.wav", "b.wav"]
    assert {Path(p).name: r for p, r in scan.problems} == {"a_again.wav": f"same clip as {root / 'Anger' / 'a.wav'} (a link); used once"}
    os.symlink(root / "Anger" / "a.wav", root / "Sad" / "a_sad.wav")
    with pytest.raises(DataError) as err:
        folder(root, Data(root=str(root)))
    one_line(err, "two class folders, 'Anger' and 'Sad'", "needs one label")


# --- B3: one class ------------------------------------------------------------------------------------


def test_a_corpus_with_one_class_is_an_error_before_decoding(tmp_path):
    root = tmp_path / "corpus"
    for i in range(4):
        write_clip(root / "Anger" / f"spk{i}_a.wav", seed=i)
    with pytest.raises(DataError) as err:
        prepare_data(Data(root=str(root), split="stratified", cache_dir=str(tmp_path / "cache")), seed=0)
    one_line(err, "only one class ('Anger', 4 clips)", "at least 2 classes")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    # data.labels naming a single class is the same mistake.
    write_clip(root / "Sad" / "spk0_s.wav", seed=9)
    with pytest.raises(DataError, match="only one class"):
        prepare_data(Data(root=str(root), labels=["Sad"], split="stratified", cache_dir=str(tmp_path / "cache")), seed=0)


# --- B4: class coverage per split ---------------------------------------------------------------------


def fixed_manifest(tmp_path: Path, clips: Path, rows: list[tuple[str, str, str]]) -> Path:
    return write_csv(tmp_path / "fixed.csv", "path,label,session", [f"{clips / name},{label},{split}" for name, label, split in rows])


def test_a_class_missing_from_the_test_split_is_a_warning_in_the_report_and_the_summary(clips, tmp_path):
    manifest = fixed_manifest(
        tmp_path,
        clips,
        [
            ("a.wav", "angry", "train"),
            ("b.wav", "sad", "train"),
            ("c.wav", "happy", "train"),
            ("d.wav", "angry", "test"),
            ("e.wav", "sad", "test"),
        ],
    )
    prepared = prepare_data(manifest_data(manifest, cache_dir=str(tmp_path / "cache")), seed=0)
    warning = "class 'happy' has no clips in the test split; test UA averages the other 2 classes"
    assert prepared.report["warnings"] == [warning]
    assert warning in summary_line(prepared.report)


def test_a_class_missing_from_the_train_split_is_an_error(clips, tmp_path):
    manifest = fixed_manifest(
        tmp_path,
        clips,
        [("a.wav", "angry", "train"), ("b.wav", "sad", "train"), ("c.wav", "angry", "test"), ("d.wav", "happy", "test")],
    )
    with pytest.raises(DataError) as err:
        prepare_data(manifest_data(manifest, cache_dir=str(tmp_path / "cache")), seed=0)
    one_line(err, "class 'happy' has no clips in the train split (0 in val, 1 in test; data.split=fixed)", "can't learn it")
    # Scoring a saved model on a split needs no training coverage.
    prepared = prepare_data(manifest_data(manifest, cache_dir=str(tmp_path / "cache")), seed=0, for_training=False)
    assert prepared.report["warnings"] == ["class 'sad' has no clips in the test split; test UA averages the other 2 classes"]


# --- B5: a speaker pattern that matches nothing ------------------------------------------------------


def test_a_speaker_pattern_matching_no_file_names_the_pattern_the_count_and_an_example(tmp_path):
    root = tmp_path / "corpus"
    for label in ("Anger", "Sad"):
        for i in range(3):
            write_clip(root / label / f"speaker{i}-{label.lower()}.wav", seed=i)
    data = Data(root=str(root), speaker_pattern=r"^(spk\d+)_")
    with pytest.raises(DataError) as err:
        scan_corpus(data)
    one_line(err, "data.speaker_pattern='^(spk\\\\d+)_' matched none of the 6 file names (e.g. 'speaker0-anger')", "group 1")
    # Through a manifest, too; an invalid regex is a config error, not a traceback.
    manifest = write_csv(
        tmp_path / "m.csv", "path,label", [f"{root / 'Anger' / 'speaker0-anger.wav'},a", f"{root / 'Sad' / 'speaker0-sad.wav'},b"]
    )
    with pytest.raises(DataError, match="matched none of the 2 file names"):
        read_manifest(manifest, data)
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        scan_corpus(Data(root=str(root), speaker_pattern="(spk"))


def test_data_labels_matching_nothing_says_so(tmp_path):
    root = tmp_path / "corpus"
    write_clip(root / "Anger" / "a.wav")
    write_clip(root / "Sad" / "b.wav")
    with pytest.raises(DataError) as err:
        scan_corpus(Data(root=str(root), labels=["angry"]))
    one_line(err, "data.labels=['angry'] matches none of the labels found (Anger, Sad)")


# --- every manifest row shape and value type ----------------------------------------------------------

JSONL_ERRORS = [
    ({"path": "a.wav"}, "no 'label' column"),  # the only row has no label column at all
    ({"path": "a.wav", "label": ""}, ":1: no label on this row"),
    ({"path": "a.wav", "label": "   "}, ":1: no label on this row"),
    ({"path": "a.wav", "label": None}, ":1: no label on this row"),
    ({"path": "a.wav", "label": ["angry"]}, ":1: 'label' is a list ([\"angry\"])"),
    ({"path": "a.wav", "label": {"name": "angry"}}, ":1: 'label' is an object"),
    ({"path": "a.wav", "label": True}, ":1: 'label' is true/false"),
    ({"path": "a.wav", "label": 1.5}, ":1: 'label' is a fraction (1.5)"),
    ({"path": "a.wav", "label": "angry", "speaker": [1, 2]}, ":1: 'speaker' is a list"),
    ({"path": 7, "label": "angry"}, ":1: 'path' is int (7); give the file path as a string"),
    ({"path": "a\u0000b.wav", "label": "angry"}, ":1: path 'a\\x00b.wav' is not a valid file name"),
    ({"path": "a.wav", "label": "angry", "speker": "s1"}, "column 'speker' is not a manifest column; did you mean 'speaker'?"),
    (["a.wav", "angry"], ":1: a row must be a JSON object"),
    ("a.wav", ":1: a row must be a JSON object"),
]


@pytest.mark.parametrize("row, fragment", JSONL_ERRORS, ids=[str(i) for i in range(len(JSONL_ERRORS))])
def test_every_bad_jsonl_row_is_one_line_naming_it(clips, tmp_path, row, fragment):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError) as err:
        read_manifest(manifest)
    one_line(err, str(manifest), fragment)


CSV_ERRORS = [
    ("file,emotion", ["a.wav,angry"], "no 'path' column (found: 'file', 'emotion')"),
    ("path\tlabel", ["a.wav\tangry"], "(a TSV file must end in .tsv)"),
    ("path,label", ["a.wav,angry", "b.wav"], ":3: no label on this row"),
    ("path,label", ["a.wav,angry", "b.wav,happy,extra"], ":3: 1 more field(s) than the header's 2 columns"),
    ("path,label", [",angry"], ":2: no path on this row"),
    ("path,label", [], "the manifest has no rows"),
]


@pytest.mark.parametrize("header, rows, fragment", CSV_ERRORS, ids=[str(i) for i in range(len(CSV_ERRORS))])
def test_every_bad_csv_row_is_one_line_naming_it(clips, tmp_path, header, rows, fragment):
    manifest = write_csv(tmp_path / "m.csv", header, rows)
    with pytest.raises(DataError) as err:
        read_manifest(manifest)
    one_line(err, str(manifest), fragment)


def test_manifest_values_are_trimmed_integers_accepted_bom_read_and_unknown_columns_warned(clips, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("\ufeffpath,label,speaker,duration,transcript\nclips/a.wav, angry ,s1,0.5,hello\nclips/b.wav,sad,s2,0.5,hi\n")
    scan = read_manifest(manifest)
    assert [(Path(r.path).name, r.label, r.speaker) for r in scan.records] == [("a.wav", "angry", "s1"), ("b.wav", "sad", "s2")]
    assert scan.warnings == [
        f"{manifest}: column(s) 'transcript' are not read (a manifest's columns: path, label, speaker, session, source)"
    ]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(
        json.dumps({"path": "clips/a.wav", "label": 0, "speaker": 3.0}) + "\n\n" + json.dumps({"path": "clips/b.wav", "label": 1}) + "\n"
    )
    assert [(r.label, r.speaker) for r in read_manifest(jsonl).records] == [("0", "3"), ("1", None)]


def test_manifest_paths_to_a_folder_a_missing_file_or_a_link_loop_are_skipped_with_the_reason(clips, tmp_path):
    os.symlink(tmp_path / "loop.wav", tmp_path / "loop.wav")
    manifest = write_csv(
        tmp_path / "m.csv",
        "path,label,session",
        [
            "clips/a.wav,angry,train",
            "clips/b.wav,sad,train",
            "clips/c.wav,angry,test",
            "clips/d.wav,sad,test",
            "clips,angry,train",
            "clips/missing.wav,sad,train",
            "loop.wav,sad,train",
        ],
    )
    prepared = prepare_data(manifest_data(manifest, cache_dir=str(tmp_path / "cache")), seed=0)
    skipped = {Path(r["path"]).name: r["reason"] for r in prepared.report["skipped_files"]}
    assert skipped == {
        "clips": "a folder, not an audio file",
        "missing.wav": "file not found",
        "loop.wav": "link loop (the link points back to itself)",
    }
    assert prepared.report["num_used"] == 4
    assert "3 unreadable skipped" in summary_line(prepared.report)


# --- every decoded content that is suspect ------------------------------------------------------------


def test_suspect_audio_content_is_skipped_with_the_reason(tmp_path):
    rng = np.random.default_rng(0)
    good = rng.uniform(-0.3, 0.3, RATE // 2).astype(np.float32)
    nan = good.copy()
    nan[100] = np.nan
    inf = good.copy()
    inf[5] = np.inf
    silent_start = np.concatenate([np.zeros(RATE, dtype=np.float32), good])
    files = {
        "good.wav": dict(samples=good),
        "nan.wav": dict(samples=nan, subtype="FLOAT"),
        "inf.wav": dict(samples=inf, subtype="FLOAT"),
        "zeros.wav": dict(samples=np.zeros(RATE // 2, dtype=np.float32)),
        "dc.wav": dict(samples=np.full(RATE // 4, 0.25, dtype=np.float32)),
        "no_frames.wav": dict(samples=np.zeros(0, dtype=np.float32)),  # a header declaring 0 samples
        "short.wav": dict(samples=good[:100]),
        "silent_start.wav": dict(samples=silent_start),
    }
    records = [Record(path=str(write_clip(tmp_path / name, **options)), label="x") for name, options in files.items()]
    dataset, skipped = build_audio_dataset(records, sample_rate=RATE, max_seconds=0.5, cache_dir=tmp_path / "cache")
    reasons = {Path(p).name: r for p, r in skipped}
    assert dataset["path"][:] == [str(tmp_path / "good.wav")]
    assert reasons == {
        "nan.wav": "1 of 8000 samples are NaN/Inf",
        "inf.wav": "1 of 8000 samples are NaN/Inf",
        "zeros.wav": "silent: every sample is 0 at 16-bit precision",
        "dc.wav": "silent: every sample is 0.25 (DC only) at 16-bit precision",
        "no_frames.wav": "empty (0 samples)",
        "short.wav": "too short (0.00625 s < 0.1 s minimum; 100 samples at 16000 Hz; lower data.min_seconds to keep it)",
        "silent_start.wav": "silent in its first 0.5 s (the data.max_seconds crop): every sample is 0 at 16-bit precision",
    }


def test_min_seconds_is_configurable_and_checked(tmp_path):
    record = Record(path=str(write_clip(tmp_path / "short.wav", samples=np.linspace(-0.2, 0.2, 100, dtype=np.float32))), label="x")
    dataset, skipped = build_audio_dataset([record], sample_rate=RATE, max_seconds=2.0, cache_dir=tmp_path / "cache", min_seconds=0)
    assert dataset["num_samples"][:] == [100] and skipped == []
    with pytest.raises(ConfigError, match="data.min_seconds=3.0 is longer than data.max_seconds=2.0"):
        build_audio_dataset([record], sample_rate=RATE, max_seconds=2.0, cache_dir=tmp_path / "cache", min_seconds=3.0)
    with pytest.raises(ConfigError, match="data.min_seconds=-1 must be >= 0"):
        build_audio_dataset([record], sample_rate=RATE, max_seconds=2.0, cache_dir=tmp_path / "cache", min_seconds=-1)


# --- every entry of a data folder ---------------------------------------------------------------------


def test_every_entry_of_a_data_folder_is_used_or_set_aside_with_a_reason(tmp_path):
    root = tmp_path / "corpus"
    for i in range(2):
        write_clip(root / "Anger" / f"a{i}.wav", seed=i)
        write_clip(root / "Sad" / "nested" / "deeper" / f"s{i}.flac", seed=10 + i)
    write_clip(root / "Anger" / ".hidden.wav")
    write_clip(root / "Anger" / "._a0.wav")
    (root / "Anger" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "Anger" / "notes.txt").write_text("take 2 was better")
    (root / "Anger" / "README").write_text("no extension")
    write_clip(root / "Sad" / ".ipynb_checkpoints" / "s0-checkpoint.wav")
    os.symlink(root / "Sad" / "gone.wav", root / "Sad" / "broken.wav")
    os.symlink(root / "Sad" / "self.wav", root / "Sad" / "self.wav")
    os.symlink(root / "Sad", root / "Sad" / "nested" / "up")  # a folder loop
    os.mkfifo(root / "Sad" / "pipe.wav")
    write_clip(root / "stray.wav")  # top level: not in a class folder
    (root / "README.md").write_text("the corpus's notes: not reported")
    (root / ".cache").mkdir()

    scan = folder(root, Data(root=str(root)))
    used = {Path(r.path).relative_to(root).as_posix() for r in scan.records}
    assert used == {"Anger/a0.wav", "Anger/a1.wav", "Sad/nested/deeper/s0.flac", "Sad/nested/deeper/s1.flac"}
    reasons = {Path(p).relative_to(root).as_posix(): r for p, r in scan.problems}
    assert reasons == {
        ".cache": "hidden folder (name starts with '.'); not used",
        "stray.wav": "audio file outside any class folder",
        "Anger/.DS_Store": "hidden file (name starts with '.'); not used",
        "Anger/.hidden.wav": "hidden file (name starts with '.'); not used",
        "Anger/._a0.wav": "macOS metadata file (._*), not audio",
        "Anger/README": "not an audio file (no file extension; audio files end in .wav, .flac, .mp3, .ogg, ...)",
        "Anger/notes.txt": "not an audio file (extension '.txt'; audio files end in .wav, .flac, .mp3, .ogg, ...)",
        "Sad/.ipynb_checkpoints": "hidden folder (name starts with '.'); not used",
        "Sad/broken.wav": f"broken link (its target {root / 'Sad' / 'gone.wav'} does not exist)",
        "Sad/self.wav": "link loop (the link points back to itself)",
        "Sad/nested/up": f"link to a folder already searched ({root / 'Sad'}); not searched twice",
        "Sad/pipe.wav": "not a regular file (a device, pipe or socket)",
    }
    # Nothing under the root is unaccounted for, except the top level's notes and what hidden/looping folders hold.
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = Path(dirpath, name).relative_to(root).as_posix()
            inside_hidden = any(part.startswith(".") for part in Path(rel).parts[:-1])
            assert rel in used or rel in reasons or rel == "README.md" or inside_hidden, rel


def test_a_named_corpus_reports_broken_links_and_hidden_clips(tmp_path):
    write_clip(tmp_path / "wav" / "03a01Fa.wav")
    write_clip(tmp_path / "wav" / "03a02Wb.wav")
    write_clip(tmp_path / "wav" / "._03a01Fa.wav")
    os.symlink(tmp_path / "wav" / "gone.wav", tmp_path / "wav" / "03a01Wa.wav")
    (tmp_path / "README.txt").write_text("docs are the corpus's own, not reported")
    scan = scan_corpus(Data(corpus="emodb", root=str(tmp_path), labels=["happiness", "anger"]))
    assert [Path(r.path).name for r in scan.records] == ["03a01Fa.wav", "03a02Wb.wav"]
    reasons = {Path(p).name: r for p, r in scan.problems}
    assert reasons == {
        "._03a01Fa.wav": "macOS metadata file (._*), not audio",
        "03a01Wa.wav": f"broken link (its target {tmp_path / 'wav' / 'gone.wav'} does not exist)",
    }


def test_scan_folder_follows_links_to_folders_once(tmp_path):
    write_clip(tmp_path / "real" / "a.wav")
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "data" / "linked")
    os.symlink(tmp_path / "real", tmp_path / "data" / "linked_again")
    found = scan_folder(tmp_path / "data")
    assert found.audio == [tmp_path / "data" / "linked" / "a.wav"]
    assert found.other == [
        (str(tmp_path / "data" / "linked_again"), f"link to a folder already searched ({tmp_path / 'real'}); not searched twice")
    ]
