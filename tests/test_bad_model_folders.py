"""Bad model folders and bad options of ``predict`` / ``evaluate`` / ``report``: each is one ``ser-dist: error:``
line naming the file or option and the fix, never a traceback or a silently wrong result.

Each model folder is a copy of the shared tiny run's export (``deploy_run``) with one edit to ``ser_dist.json``;
everything runs in this process but the two checks of the one-line output of the real entry point.
"""

import json
import math
import os
import shutil
from pathlib import Path

import pytest
from conftest import assert_one_line_error, ser_dist_cli

from ser_dist.errors import UserError


def in_process(capsys, *args) -> tuple[str, str]:
    from ser_dist.cli import main

    main(list(args))
    captured = capsys.readouterr()
    return captured.out, captured.err


def one_line_user_error(call, *fragments: str) -> str:
    with pytest.raises(UserError) as err:
        call()
    message = str(err.value)
    assert len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def edited_export(deploy_run, target: Path, edit) -> Path:
    """A copy of the shared run's export with ``edit(meta)`` applied to its ``ser_dist.json``."""
    shutil.copytree(deploy_run[0] / "model", target)
    meta = json.loads((target / "ser_dist.json").read_text())
    edit(meta)
    (target / "ser_dist.json").write_text(json.dumps(meta))  # NaN is written as NaN, which json.loads reads
    return target


def _set(dotted: str, value):
    def edit(meta):
        *parents, key = dotted.split(".")
        node = meta
        for name in parents:
            node = node[name]
        node[key] = value

    return edit


@pytest.fixture
def clip(demo_corpus) -> str:
    return str(sorted((demo_corpus / "Sad").glob("*.wav"))[0])


# -- 1. every field of ser_dist.json is checked ----------------------------------------------------

STORED = [
    ("experiment.model.dropout", 5.0, "model.dropout=5.0 is out of range"),
    ("experiment.model.hidden_size", -5, "model.hidden_size=-5 is out of range"),
    ("experiment.model.n_mfcc", 100, "model.n_mfcc=100 is out of range"),
    ("experiment.data.min_seconds", math.nan, "data.min_seconds=nan must be a finite number"),
    ("experiment.data.sample_rate", "abc", "data.sample_rate='abc' must be an integer"),
    ("experiment.model.evil", 1, "unknown config key 'model.evil'"),
    ("experiment.model.head", "os:system", "model.head='os:system' is not one of"),
    ("experiment", [1, 2], "experiment=[1, 2] must be a mapping"),
    ("experiment", "x", "experiment='x' must be a mapping"),
    ("labels", None, "labels=None must be a non-empty list"),
    ("labels", [{"a": 1}] * 6, "labels holds {'a': 1}, not a class name"),
    ("labels", "ABCDEF", "labels='ABCDEF' must be a non-empty list"),
    ("labels", [], "labels=[] must be a non-empty list"),
    ("labels", ["A", "A", "B", "C", "D", "E"], "labels names 'A' more than once"),
    ("labels", ["Anger", "Disgust", "Fear", "Happy", "Sad", "Neutral"], "id2label="),  # reordered: id2label and label2id disagree
    ("id2label", "x", "id2label='x' does not match labels"),
    ("sample_rate", "abc", "sample_rate='abc' must be an integer"),
    ("sample_rate", -16000, "sample_rate=-16000 must be an integer"),
    ("sample_rate", 0, "sample_rate=0 must be an integer"),
    ("sample_rate", 16000.7, "sample_rate=16000.7 must be an integer"),
    ("sample_rate", 8000, "sample_rate=8000 but the experiment's data.sample_rate=16000"),
    ("max_seconds", "abc", "max_seconds='abc' must be null"),
    ("max_seconds", -1, "max_seconds=-1 must be null"),
    ("max_seconds", math.inf, "max_seconds=inf must be null"),
    ("ssl", [1], "ssl=[1] must be a mapping"),
]


@pytest.mark.parametrize("key, value, fragment", STORED, ids=[f"{k}={v!r}"[:40] for k, v, _ in STORED])
def test_stored_metadata_is_checked_before_a_model_is_built(deploy_run, tmp_path, key, value, fragment):
    from ser_dist.serving.export import load_exported

    folder = edited_export(deploy_run, tmp_path / "model", _set(key, value))
    one_line_user_error(lambda: load_exported(folder), str(folder / "ser_dist.json"), fragment, "re-export the model")


def test_metadata_that_is_a_folder_or_missing_keys_is_one_line(deploy_run, tmp_path):
    from ser_dist.serving.export import load_exported

    folder = edited_export(deploy_run, tmp_path / "model", lambda meta: None)
    (folder / "ser_dist.json").unlink()
    (folder / "ser_dist.json").mkdir()
    one_line_user_error(lambda: load_exported(folder), str(folder / "ser_dist.json"), "not a file", "re-export the model")
    (folder / "ser_dist.json").rmdir()
    (folder / "ser_dist.json").write_text("[1, 2, 3]")
    one_line_user_error(lambda: load_exported(folder), "incomplete model metadata", "re-export the model")


def test_a_label_count_the_weights_do_not_have_is_named_as_such(deploy_run, tmp_path):
    from ser_dist.serving.export import load_exported

    def three_labels(meta):
        meta.update(labels=["a", "b", "c"], id2label={"0": "a", "1": "b", "2": "c"}, label2id={"a": 0, "b": 1, "c": 2})

    folder = edited_export(deploy_run, tmp_path / "labels", three_labels)
    message = one_line_user_error(
        lambda: load_exported(folder), "labels names 3 classes", "classifier", "has 6 outputs", "re-export the model"
    )
    assert "corrupt" not in message
    # Settings in range that describe another model than the weights: named as such too, not as corrupt weights.
    folder = edited_export(deploy_run, tmp_path / "hidden", _set("experiment.model.hidden_size", 32))
    message = one_line_user_error(lambda: load_exported(folder), "has shape", "do not belong together", "re-export the model")
    assert "corrupt" not in message


def test_predict_and_push_refuse_a_bad_model_in_one_line(deploy_run, tmp_path, clip, monkeypatch):
    """Through the real entry point: the labels 'ABCDEF' once loaded and predicted 'A'..'F'; sample_rate 0 was
    blamed on the audio (a ZeroDivisionError per file)."""
    letters = edited_export(deploy_run, tmp_path / "letters", _set("labels", "ABCDEF"))
    assert_one_line_error(ser_dist_cli("predict", str(letters), clip, "--json"), "ser_dist.json", "labels='ABCDEF'", "re-export the model")
    no_rate = edited_export(deploy_run, tmp_path / "no_rate", _set("sample_rate", 0))
    result = ser_dist_cli("predict", str(no_rate), clip)
    assert_one_line_error(result, "ser_dist.json", "sample_rate=0", "re-export the model")
    assert "decoder error" not in result.stderr and not result.stdout.strip()

    from ser_dist.serving.hub import push_to_hub

    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    one_line_user_error(lambda: push_to_hub(no_rate, "alice/ser-demo"), "sample_rate=0", "re-export the model")  # before any upload


def test_evaluate_refuses_duplicate_model_labels_even_with_a_label_map(deploy_run, demo_corpus, tmp_path):
    from ser_dist.serving.evaluation import evaluate_model

    folder = edited_export(deploy_run, tmp_path / "model", _set("labels", ["A", "A", "B", "C", "D", "E"]))
    label_map = {"Anger": "A", "Disgust": "A", "Fear": "B", "Happy": "C", "Neutral": "D", "Sad": "E"}
    one_line_user_error(
        lambda: evaluate_model(str(folder), [f"root={demo_corpus}"], label_map=label_map, out=tmp_path / "eval"),
        "ser_dist.json",
        "more than once",
    )
    assert not (tmp_path / "eval").exists()


# -- 2. --device -----------------------------------------------------------------------------------


def test_a_device_that_is_not_here_is_one_line_naming_what_is(deploy_run, clip, monkeypatch):
    import torch

    from ser_dist.cli import main

    run = str(deploy_run[0])
    one_line_user_error(lambda: main(["predict", run, clip, "--device", "banana"]), "--device 'banana'", "available here: cpu")
    one_line_user_error(lambda: main(["predict", run, clip, "--device", "meta"]), "--device meta", "available here: cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    one_line_user_error(lambda: main(["predict", run, clip, "--device", "cuda:7"]), "--device cuda:7", "no CUDA device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    one_line_user_error(
        lambda: main(["predict", run, clip, "--device", "cuda:7"]), "--device cuda:7", "no CUDA device 7", "cuda with 2 device(s)"
    )


# -- 3. windows shorter than the model's minimum ---------------------------------------------------


def test_windows_and_hops_shorter_than_the_model_minimum_fail_before_any_audio_is_read(deploy_run, tmp_path, clip, capsys):
    from ser_dist.cli import main
    from ser_dist.serving.inference import EmotionClassifier

    run = str(deploy_run[0])
    missing = str(tmp_path / "never-read.wav")  # an error before reading: a missing file would be a skip otherwise
    one_line_user_error(
        lambda: main(["predict", run, missing, "--window-seconds", "0.00001"]), "--window-seconds 1e-05", "0.1 s", "1600 samples"
    )
    one_line_user_error(
        lambda: main(["predict", run, missing, "--hop-seconds", "0.001"]), "--hop-seconds 0.001", "give --hop-seconds 0.1 or more"
    )
    # data.min_seconds=0 keeps any clip, but a window is still at least the MFCC front end's 257 samples.
    folder = edited_export(deploy_run, tmp_path / "model", _set("experiment.data.min_seconds", 0.0))
    classifier = EmotionClassifier.from_pretrained(folder, device="cpu")
    one_line_user_error(lambda: classifier.predict([missing], window_seconds=0.01), "--window-seconds 0.01", "257 samples")
    predictions, failed = classifier.predict([clip], window_seconds=257 / 16000)
    assert len(predictions) == 1 and not failed and len(predictions[0].windows) > 10


# -- 4. every entry of a folder is predicted or reported --------------------------------------------


def test_predict_on_a_folder_reports_every_entry_it_does_not_predict(deploy_run, tmp_path, clip, capsys):
    from ser_dist.serving.inference import EmotionClassifier

    folder = tmp_path / "clips"
    (folder / "nested").mkdir(parents=True)
    shutil.copy(clip, folder / "good.wav")
    shutil.copy(clip, folder / "nested" / "good2.wav")
    os.symlink(tmp_path / "gone.wav", folder / "broken.wav")
    os.symlink(folder / "loop.wav", folder / "loop.wav")
    os.mkfifo(folder / "fifo.wav")
    (folder / "dir.wav").mkdir()
    (folder / "clip.wav.gz").write_bytes(b"\x1f\x8b\x08")
    (folder / ".hidden.wav").write_bytes(b"RIFF")
    out, err = in_process(capsys, "predict", str(deploy_run[0]), str(folder), "--json", "--no-progress")
    assert sorted(Path(p["file"]).name for p in json.loads(out)) == ["good.wav", "good2.wav"]
    reasons = {line.split(": ", 2)[1].removeprefix("skipped "): line.split(": ", 2)[2] for line in err.strip().splitlines()}
    assert "folder" in reasons.pop(str(folder / "dir.wav"))  # an empty folder named like a clip
    assert reasons == {
        str(folder / ".hidden.wav"): "hidden file (name starts with '.'); not used",
        str(folder / "broken.wav"): f"broken link (its target {tmp_path / 'gone.wav'} does not exist)",
        str(folder / "clip.wav.gz"): "not an audio file (extension '.gz'; audio files end in .wav, .flac, .mp3, .ogg, ...)",
        str(folder / "fifo.wav"): "not a regular file (a device, pipe or socket)",
        str(folder / "loop.wav"): "link loop (the link points back to itself)",
    }
    with pytest.warns(UserWarning, match="6 input"):  # the Python API says so too
        assert len(EmotionClassifier.from_pretrained(deploy_run[0], device="cpu")(folder)) == 2
    (folder / "good.wav").unlink()
    shutil.rmtree(folder / "nested")
    one_line_user_error(lambda: in_process(capsys, "predict", str(deploy_run[0]), str(folder)), "no input audio files (6 entries set aside")


# -- 5. evaluate: --out, and the run's own split checked against the run -------------------------------


def test_evaluate_out_that_is_a_file_fails_before_scoring(deploy_run, tmp_path):
    from ser_dist.serving.evaluation import evaluate_model

    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder")
    one_line_user_error(lambda: evaluate_model(str(deploy_run[0]), out=a_file), "--out", "is a file")
    one_line_user_error(lambda: evaluate_model(str(deploy_run[0]), out=a_file / "sub"), "--out", f"{a_file} is a file")


def test_evaluate_refuses_a_split_csv_that_disagrees_with_the_run(deploy_run, tmp_path):
    from ser_dist.serving.evaluation import evaluate_model

    run = tmp_path / "run"
    shutil.copytree(deploy_run[0], run, ignore=shutil.ignore_patterns("evaluation", "checkpoints", "tensorboard"))
    recorded = json.loads((run / "metrics.json").read_text())["test"]["num_examples"]
    lines = (run / "split.csv").read_text().splitlines(keepends=True)
    test_rows = [i for i, line in enumerate(lines) if line.rstrip("\r\n").endswith(",test")]
    assert len(test_rows) == recorded
    (run / "split.csv").write_text("".join(lines[: test_rows[-3]]))  # cut at a row boundary: three test clips gone
    one_line_user_error(
        lambda: evaluate_model(str(run), out=tmp_path / "eval"), "split.csv", f"{recorded - 3} test clips", f"recorded {recorded}"
    )

    # Same count, one clip's label edited: the per-class counts differ.
    edited = list(lines)
    row = edited[test_rows[0]].split(",")
    row[1] = "Sad" if row[1] != "Sad" else "Anger"
    edited[test_rows[0]] = ",".join(row)
    (run / "split.csv").write_text("".join(edited))
    one_line_user_error(lambda: evaluate_model(str(run), out=tmp_path / "eval"), "split.csv", "clips per class differ")

    (run / "split.csv").write_bytes(b"path,label\xff\xfe\n")  # not UTF-8 (or, in another locale, no split column)
    one_line_user_error(lambda: evaluate_model(str(run), out=tmp_path / "eval"), "split.csv")
    (run / "split.csv").unlink()
    (run / "split.csv").mkdir()
    one_line_user_error(lambda: evaluate_model(str(run), out=tmp_path / "eval"), "split.csv", "not a readable split file")
    assert not (tmp_path / "eval").exists()


# -- 6. report: damaged results files, --out a file, a run given twice -------------------------------


def _finished_run(folder: Path, ua: float = 0.5) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"test": {"unweighted_accuracy": ua, "weighted_accuracy": 0.25, "macro_f1": 0.4}}))
    (folder / "config.yaml").write_text("model:\n  backbone: lstm\nloss:\n  name: ccc\n")
    return folder


def test_report_refuses_damaged_results_and_an_out_that_is_a_file(tmp_path, capsys):
    from ser_dist.cli import main

    run = _finished_run(tmp_path / "run")
    text = (run / "metrics.json").read_text()
    (run / "metrics.json").write_text(text[: len(text) // 2])
    one_line_user_error(lambda: main(["report", str(run)]), str(run / "metrics.json"), "not valid JSON")
    (run / "metrics.json").write_text(json.dumps({"test": {"unweighted_accuracy": 0.5, "macro_f1": 0.4}}))
    one_line_user_error(lambda: main(["report", str(run)]), str(run / "metrics.json"), "no test.weighted_accuracy")
    (run / "metrics.json").write_text(json.dumps({"test": {"unweighted_accuracy": math.nan, "weighted_accuracy": 0.2, "macro_f1": 0.4}}))
    one_line_user_error(lambda: main(["report", str(run)]), "test.unweighted_accuracy=nan is not a fraction")
    cv = tmp_path / "cv"
    cv.mkdir()
    (cv / "cv_summary.json").write_text('{"backbone": "lstm", "loss": "ce", "folds": [{"fold": 1, "unweighted')
    one_line_user_error(lambda: main(["report", str(cv)]), str(cv / "cv_summary.json"), "not valid JSON")
    (cv / "cv_summary.json").write_text(json.dumps({"backbone": "lstm", "loss": "ce", "folds": [{"fold": 1, "unweighted_accuracy": 0.5}]}))
    one_line_user_error(lambda: main(["report", str(cv)]), str(cv / "cv_summary.json"), "no folds[0].weighted_accuracy")

    good = _finished_run(tmp_path / "good")
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("")
    one_line_user_error(lambda: main(["report", str(good), "--out", str(a_file)]), f"--out {a_file}", "is a file")
    out, _ = in_process(capsys, "report", str(good), "--out", str(tmp_path / "report"))
    assert "| lstm | UA 50.0 / WA 25.0 |" in out


def test_report_refuses_a_run_given_twice(tmp_path, capsys):
    from ser_dist.cli import main

    run = _finished_run(tmp_path / "runs" / "a")
    os.symlink(run, tmp_path / "link")
    for second in (str(run), str(tmp_path / "runs" / ".." / "runs" / "a") + "/", str(tmp_path / "link")):
        one_line_user_error(
            lambda second=second: main(["report", str(run), second, "--out", str(tmp_path / "r")]), "given twice", "give each run once"
        )
    # A cv folder and one of its folds: the fold folders are what is compared.
    cv = tmp_path / "cv"
    fold = _finished_run(cv / "fold_1", ua=0.6)
    folds = [{"fold": 1, "unweighted_accuracy": 0.6, "weighted_accuracy": 0.25, "macro_f1": 0.4}]
    (cv / "cv_summary.json").write_text(json.dumps({"backbone": "lstm", "loss": "ccc", "folds": folds}))
    one_line_user_error(lambda: main(["report", str(cv), str(fold), "--out", str(tmp_path / "r")]), str(fold), "given twice")
    one_line_user_error(lambda: main(["report", str(cv), str(cv), "--out", str(tmp_path / "r")]), "given twice")
    assert not (tmp_path / "r").exists()
    out, _ = in_process(capsys, "report", str(cv), str(run), "--out", str(tmp_path / "r"))  # two runs of one cell: two folds
    assert "across 2 fold(s)" in out


def test_evaluate_never_writes_over_a_training_run_and_refuses_a_data_key_twice(deploy_run, demo_corpus, tmp_path):
    import shutil

    from conftest import assert_one_line_error, ser_dist_cli

    run_dir = tmp_path / "run"
    shutil.copytree(deploy_run[0], run_dir)
    before = (run_dir / "metrics.json").read_bytes()
    assert_one_line_error(
        ser_dist_cli("evaluate", str(run_dir), "--data", f"root={demo_corpus}", "--out", str(run_dir)), "holds a training run"
    )
    assert (run_dir / "metrics.json").read_bytes() == before
    assert_one_line_error(
        ser_dist_cli("evaluate", str(run_dir), "--data", f"root={demo_corpus}", f"root={tmp_path}"), "--data root= is given twice"
    )
    assert_one_line_error(
        ser_dist_cli("evaluate", str(run_dir), "--data", f"root={demo_corpus}", "split=banana"), "--data split='banana' is not one of"
    )
