"""``ser-dist predict MODEL --data hf_dataset=...`` and ``EmotionClassifier.predict_dataset``: a dataset's rows are
predicted as the same clips' files are, each named hf://<name>/<split>/<row>; --split picks one of its splits;
a bad key or split is one line, an undecodable row is reported as an unreadable file is."""

import csv
import io
import json

import numpy as np
import pytest
import soundfile as sf
from conftest import SPEAKER_PATTERN, one_line

from ser_dist.config import Data
from ser_dist.data.demo_hf import save_as_hf_dataset
from ser_dist.data.pipeline import scan_corpus
from ser_dist.errors import UserError

datasets = pytest.importorskip("datasets")
pytestmark = pytest.mark.usefixtures("hf_offline")

HELD_OUT = {"test": ["spk04"], "validation": ["spk03"]}


@pytest.fixture(scope="module")
def demo_dd(demo_corpus, tmp_path_factory):
    """The demo corpus as a DatasetDict (train / validation / test by speaker), and each split's files in row order."""
    out = tmp_path_factory.mktemp("hf") / "dd"
    save_as_hf_dataset(demo_corpus, out, test_speakers=HELD_OUT["test"], val_speakers=HELD_OUT["validation"])
    records = scan_corpus(Data(root=str(demo_corpus), speaker_pattern=SPEAKER_PATTERN)).records
    held_out = {speaker for speakers in HELD_OUT.values() for speaker in speakers}
    files = {
        "train": [rec.path for rec in records if rec.speaker not in held_out],
        **{split: [rec.path for rec in records if rec.speaker in speakers] for split, speakers in HELD_OUT.items()},
    }
    return out, files


@pytest.fixture(scope="module")
def classifier(deploy_run):
    from ser_dist import EmotionClassifier

    return EmotionClassifier.from_pretrained(deploy_run[0], device="cpu")


def predict_cli(capsys, *args) -> tuple[str, str]:
    from ser_dist.cli import main

    main(["predict", *args, "--no-progress"])
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_every_row_is_predicted_as_its_file_is(deploy_run, demo_dd, classifier, capsys):
    run, _ = deploy_run
    dd, files = demo_dd
    extra = files["test"][0]  # a file given beside --data comes first
    out, err = predict_cli(capsys, str(run), extra, "--data", f"hf_dataset={dd}", "--json")
    rows = json.loads(out)
    order = ["train", "validation", "test"]  # the dataset's own order
    assert [r["file"] for r in rows] == [extra] + [f"hf://dd/{split}/{i}" for split in order for i in range(len(files[split]))]
    assert err == ""
    in_row_order = [file for split in order for file in files[split]]
    by_file, failed = classifier.predict(in_row_order)  # the same clips in the same batches
    assert not failed
    for row, file_prediction in zip(rows[1:], by_file):
        assert row["probabilities"] == pytest.approx(file_prediction.probabilities, abs=1e-6), row["file"]
        assert row["label"] == file_prediction.label
    out, _ = predict_cli(capsys, str(run), "--data", f"hf_dataset={dd}", "--csv", "--split", "test")
    table = list(csv.DictReader(io.StringIO(out)))
    assert [r["file"] for r in table] == [f"hf://dd/test/{i}" for i in range(len(files["test"]))]
    assert {r["segment"] for r in table} == {"all"} and float(table[0][f"p_{classifier.labels[0]}"]) == pytest.approx(
        rows[1 + len(files["train"]) + len(files["validation"])]["probabilities"][classifier.labels[0]], abs=1e-6
    )
    out, _ = predict_cli(capsys, str(run), "--data", f"hf_dataset={dd}", "audio_column=audio", "--split", "validation", "--top-k", "2")
    assert out.splitlines()[1].startswith("hf://dd/validation/0 ") and len(out.splitlines()) == 1 + len(files["validation"])


def test_predict_dataset_picks_one_split_and_windows_a_long_unlabelled_row(classifier, demo_dd, demo_corpus, tmp_path):
    dd, files = demo_dd
    predictions, failed = classifier.predict_dataset(dd, split="validation", batch_size=4, columns={"audio_column": "audio"})
    assert not failed and [p.file for p in predictions] == [f"hf://dd/validation/{i}" for i in range(len(files["validation"]))]
    clips = [sf.read(str(p), dtype="float32")[0] for p in sorted(demo_corpus.rglob("*.wav"))[:12]]
    long_file = tmp_path / "long.wav"
    sf.write(str(long_file), np.concatenate(clips), 16000)  # much longer than the 2 s window + hop: windowed
    datasets.Dataset.from_dict({"clip": [str(long_file)]}, features=datasets.Features({"clip": datasets.Audio()})).save_to_disk(
        str(tmp_path / "long_ds")
    )
    (by_row,), _ = classifier.predict_dataset(tmp_path / "long_ds", hop_seconds=1.5)  # no label column: predicted all the same
    (by_file,), _ = classifier.predict([long_file], hop_seconds=1.5)
    assert by_row.file == "hf://long_ds/train/0" and len(by_row.windows) == len(by_file.windows) > 2
    assert [(w["start"], w["end"]) for w in by_row.windows] == [(w["start"], w["end"]) for w in by_file.windows]
    assert by_row.probabilities == pytest.approx(by_file.probabilities, abs=1e-6)


def test_an_undecodable_row_is_reported_and_the_others_predicted(deploy_run, demo_dd, tmp_path, capsys):
    dd, files = demo_dd
    test_split = datasets.load_from_disk(str(dd))["test"].cast_column("audio", datasets.Audio(decode=False))
    test_split = test_split.map(
        lambda row, i: {"audio": {"bytes": b"not audio" * 8, "path": None} if i == 2 else row["audio"]}, with_indices=True
    )
    test_split.cast_column("audio", datasets.Audio()).save_to_disk(str(tmp_path / "bad"))
    out, err = predict_cli(capsys, str(deploy_run[0]), "--data", f"hf_dataset={tmp_path / 'bad'}", "--json")
    assert [r["file"] for r in json.loads(out)] == [f"hf://bad/train/{i}" for i in range(len(files["test"])) if i != 2]
    assert err.strip() == "ser-dist: skipped hf://bad/train/2: not an audio file (format not recognised)"


def test_bad_keys_splits_and_inputs_are_one_line(deploy_run, demo_dd, capsys):
    run, dd = str(deploy_run[0]), f"hf_dataset={demo_dd[0]}"
    cases = [
        (["--data", dd, "split=speaker"], ["--data split=", "takes only hf_dataset, hf_config, hf_revision, audio_column, label_column"]),
        (["--data", "root=/data/x"], ["--data root=", "takes only hf_dataset"]),
        (["--data", "audio_column=audio"], ["--data needs hf_dataset=ID_OR_DIR"]),
        (["--data", dd, dd], ["--data hf_dataset= is given twice"]),
        (["--data", dd, "--split", "dev"], ["dd: --split dev: the dataset has no such split (its splits: train, validation, test)"]),
        (["--data", dd, "label_column=emotion"], ["no column 'emotion' for data.label_column"]),
        (["a.wav", "--split", "test"], ["--split test picks a split of a dataset: give --data hf_dataset=ID_OR_DIR too"]),
        ([], ["no input audio files; pass files", "or a dataset's rows: --data hf_dataset=ID_OR_DIR"]),
    ]
    for args, fragments in cases:
        with pytest.raises(UserError) as err:
            predict_cli(capsys, run, *args)
        one_line(err, *fragments)
