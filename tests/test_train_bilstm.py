"""The foundation end to end: the seed's BiLSTM recipe through its real entry point on generated data."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SPEAKER_PATTERN, TINY_BILSTM, assert_predict_reproduces_test_predictions, run_recipe, ser_dist_cli

RUN_FILES = [
    "config.yaml",
    "split.csv",
    "data_report.json",
    "training_history.csv",
    "training_curves.png",
    "confusion_matrix.png",
    "classification_report.txt",
    "metrics.json",
    "train.log",
    "test_predictions.csv",
    "model/ser_dist.json",
    "model/model.safetensors",
    "model/config.json",
]


@pytest.fixture(scope="module")
def corpus_with_bad_files(demo_corpus, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad") / "corpus"
    shutil.copytree(demo_corpus, root)
    (root / "Anger" / "spk01_s99_anger_t1.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")  # corrupt
    (root / "Sad" / "spk02_s98_sad_t1.wav").write_bytes(b"")  # empty
    (root / "Happy" / "spk03_s97_happy_t1.mp3").write_text("not audio at all")  # not audio
    return root


@pytest.fixture(scope="module")
def trained_run(corpus_with_bad_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "bilstm"
    result = run_recipe(
        "bilstm_mfcc_ce.py",
        f"data.root={corpus_with_bad_files}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        f"train.output_dir={out}",
        "train.epochs=3",
        "train.seed=3",
        *TINY_BILSTM,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


def test_run_writes_every_output(trained_run):
    out, result = trained_run
    for name in RUN_FILES:
        assert (out / name).exists(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert "test (" in result.stdout and "UA" in result.stdout and "WA" in result.stdout


def test_metrics_json_counts_and_keys(trained_run):
    out, _ = trained_run
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    for key in ("unweighted_accuracy", "weighted_accuracy", "macro_f1", "num_examples", "confusion_matrix"):
        assert key in test
    with open(out / "split.csv") as f:
        split_rows = list(csv.DictReader(f))
    test_rows = [r for r in split_rows if r["split"] == "test"]
    assert test["num_examples"] == len(test_rows) == int(np.sum(test["confusion_matrix"]))
    assert 1 <= metrics["best_epoch"] <= 3
    assert metrics["data"]["skipped_files"] == 3
    with open(out / "training_history.csv") as f:
        history = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in history] == [1, 2, 3]


def test_split_is_speaker_independent_and_saved(trained_run):
    out, _ = trained_run
    with open(out / "split.csv") as f:
        rows = list(csv.DictReader(f))
    speakers = {name: {r["speaker"] for r in rows if r["split"] == name} for name in ("train", "val", "test")}
    assert speakers["train"] and speakers["val"] and speakers["test"]
    assert (
        not (speakers["train"] & speakers["test"])
        and not (speakers["train"] & speakers["val"])
        and not (speakers["val"] & speakers["test"])
    )


def test_bad_clips_are_skipped_and_reported(trained_run):
    out, result = trained_run
    report = json.loads((out / "data_report.json").read_text())
    skipped = {Path(r["path"]).name: r["reason"] for r in report["skipped_files"]}
    assert set(skipped) == {"spk01_s99_anger_t1.wav", "spk02_s98_sad_t1.wav", "spk03_s97_happy_t1.mp3"}
    assert all(reason for reason in skipped.values())
    assert "3 unreadable skipped" in result.stdout


def test_predict_cli_table_and_json(trained_run, demo_corpus):
    out, _ = trained_run
    files = sorted((demo_corpus / "Sad").glob("*.wav"))[:2]
    table = ser_dist_cli("predict", str(out), *map(str, files))
    assert table.returncode == 0, table.stderr
    assert all(f.name in table.stdout for f in files)
    as_json = ser_dist_cli("predict", str(out), *map(str, files), "--json")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert [Path(r["file"]).name for r in rows] == [f.name for f in files]
    labels = json.loads((out / "model" / "ser_dist.json").read_text())["labels"]
    for row in rows:
        assert set(row) == {"file", "label", "confidence", "probabilities"}
        assert set(row["probabilities"]) == set(labels) == {"Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad"}
        assert row["label"] in labels
        assert row["confidence"] == pytest.approx(max(row["probabilities"].values()))
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_predict_matches_training_test_predictions(trained_run):
    """The export reproduces the trained model: predicting the test clips gives the logged probabilities."""
    out, _ = trained_run
    assert_predict_reproduces_test_predictions(out)


def test_predict_skips_unreadable_inputs(trained_run, tmp_path, demo_corpus):
    out, _ = trained_run
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"garbage")
    good = sorted((demo_corpus / "Anger").glob("*.wav"))[0]
    result = ser_dist_cli("predict", str(out), str(bad), str(good), "--json")
    assert result.returncode == 0
    assert len(json.loads(result.stdout)) == 1
    assert "skipped" in result.stderr and "broken.wav" in result.stderr


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.root=/nonexistent/corpus"], "/nonexistent/corpus: data folder not found"),
        (["data.root={empty_class}"], "class 'Fear' has no audio clips"),
        (["data.root={corpus}"], "speaker"),  # speaker split without speaker ids
    ],
)
def test_bad_data_fails_before_training_in_one_line(overrides, message, demo_corpus, tmp_path):
    empty_class = tmp_path / "empty_class"
    shutil.copytree(demo_corpus, empty_class)
    for f in (empty_class / "Fear").iterdir():
        f.unlink()
    overrides = [o.format(empty_class=empty_class, corpus=demo_corpus) for o in overrides]
    result = run_recipe("bilstm_mfcc_ce.py", *overrides, f"train.output_dir={tmp_path / 'out'}", *TINY_BILSTM)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ser-dist: error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "out" / "checkpoints").exists()
