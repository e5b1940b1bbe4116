"""The quickstart's summary line: chance from the run's classes, unseen speakers from its split, and a baseline
compared only on the very clips the run was tested on."""

import json

import pytest

from ser_dist.comparison import main, same_clips_summary
from ser_dist.data.records import Record
from ser_dist.data.split_file import write_split
from ser_dist.errors import UserError

LABELS = ["Anger", "Happy", "Neutral", "Sad"]


def fake_run(folder, test_speakers=("spk01", "spk02"), train_speakers=("spk03", "spk04", "spk05"), ua=0.5, experiment="crnn"):
    """A finished run's three files: each speaker has one clip per class; the first speaker after the test ones validates."""
    speakers = (*test_speakers, *train_speakers)
    records = [Record(path=f"{label}/{s}_{label}_t{n}.wav", label=label, speaker=s) for n, s in enumerate(speakers) for label in LABELS]
    per = len(LABELS)
    split = {"test": list(range(per * len(test_speakers)))}
    split["val"] = list(range(len(split["test"]), len(split["test"]) + per))
    split["train"] = list(range(split["val"][-1] + 1, len(records)))
    folder.mkdir(parents=True)
    write_split(records, split, folder / "split.csv")
    (folder / "metrics.json").write_text(json.dumps({"experiment": experiment, "test": {"unweighted_accuracy": ua}}))
    (folder / "data_report.json").write_text(json.dumps({"labels": LABELS}))
    return folder


def test_summary_names_the_unseen_speakers_chance_and_the_baseline_on_the_same_clips(tmp_path):
    run = fake_run(tmp_path / "run", ua=0.583)
    baseline = fake_run(tmp_path / "baseline", ua=0.412, experiment="opensmile_egemaps_svm")
    assert same_clips_summary(run) == "crnn: test UA 58.3 on 2 unseen speakers (8 clips); chance 25.0"  # 100 / 4 classes
    assert same_clips_summary(run, baseline, name="CRNN", baseline_name="eGeMAPS + SVM") == (
        "CRNN: test UA 58.3 on 2 unseen speakers (8 clips); chance 25.0; eGeMAPS + SVM baseline 41.2 on the same clips"
    )
    assert same_clips_summary(run, baseline).endswith("; opensmile_egemaps_svm baseline 41.2 on the same clips")


def test_a_test_speaker_also_in_training_is_not_called_unseen(tmp_path):
    run = fake_run(tmp_path / "run", test_speakers=("spk01",), train_speakers=("spk02", "spk01"))  # as data.split=stratified does
    assert "on 1 speaker, some also in training (4 clips)" in same_clips_summary(run)


def test_a_baseline_tested_on_other_clips_is_refused(tmp_path):
    run = fake_run(tmp_path / "run")
    other = fake_run(tmp_path / "other", test_speakers=("spk01", "spk03"), train_speakers=("spk02", "spk04", "spk05"))
    with pytest.raises(UserError, match=r"not tested on the same clips \(4 test clip\(s\) only in the first, 4 only in the second"):
        same_clips_summary(run, other)
    with pytest.raises(UserError, match="no metrics.json; not a finished ser-dist run"):
        (tmp_path / "empty").mkdir()
        same_clips_summary(tmp_path / "empty")


def test_the_command_prints_the_line(tmp_path, capsys):
    run, baseline = fake_run(tmp_path / "run"), fake_run(tmp_path / "baseline", ua=0.25)
    main([str(run), "--baseline", str(baseline), "--baseline-name", "SVM"])
    assert (
        capsys.readouterr().out == "crnn: test UA 50.0 on 2 unseen speakers (8 clips); chance 25.0; SVM baseline 25.0 on the same clips\n"
    )
