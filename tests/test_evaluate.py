"""``ser-dist evaluate``: reproduces the training run's test metrics exactly; any corpus; label sets and --label-map."""

import json
import shutil

import pytest
from conftest import SPEAKER_PATTERN, ser_dist_cli

EXACT_KEYS = ("unweighted_accuracy", "weighted_accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix", "num_examples")


def in_process(capsys, *args) -> tuple[str, str]:
    from ser_dist.cli import main

    main(list(args))
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_evaluate_reproduces_the_run_test_metrics_exactly(deploy_run, tmp_path):
    run, _ = deploy_run
    out = tmp_path / "eval"
    result = ser_dist_cli("evaluate", str(run), "--out", str(out))  # the real entry point, in a fresh process
    assert result.returncode == 0, result.stderr
    assert "split.csv (test rows)" in result.stdout and "UA" in result.stdout
    trained = json.loads((run / "metrics.json").read_text())["test"]
    evaluated = json.loads((out / "metrics.json").read_text())["test"]
    for key in EXACT_KEYS:
        assert evaluated[key] == trained[key], key
    assert evaluated["loss"] == pytest.approx(trained["loss"], rel=1e-5)
    for name in ("confusion_matrix.png", "classification_report.txt", "data_report.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "classification_report.txt").read_text() == (run / "classification_report.txt").read_text()
    assert (out / "test_predictions.csv").read_text() == (run / "test_predictions.csv").read_text()


def test_evaluate_a_corpus_through_the_data_keys(deploy_run, demo_corpus, tmp_path, capsys):
    """The same corpus and protocol given as data keys (any adapter/folder works the same way) gives the same test split."""
    run, _ = deploy_run
    out_dir = tmp_path / "eval"
    out, _ = in_process(
        capsys,
        "evaluate",
        str(run),
        "--data",
        f"root={demo_corpus}",
        f"speaker_pattern={SPEAKER_PATTERN}",
        "split=speaker",
        "--split",
        "test",
        "--out",
        str(out_dir),
    )
    assert "test split of data.split=speaker" in out
    trained = json.loads((run / "metrics.json").read_text())["test"]
    evaluated = json.loads((out_dir / "metrics.json").read_text())
    for key in EXACT_KEYS:
        assert evaluated["test"][key] == trained[key], key


@pytest.fixture
def renamed_corpus(demo_corpus, tmp_path):
    """Three of the six classes, named the way another corpus might name them."""
    root = tmp_path / "other"
    for source, target in (("Anger", "angry"), ("Sad", "sad"), ("Happy", "happy")):
        shutil.copytree(demo_corpus / source, root / target)
    return root


def test_label_sets_that_differ_fail_clearly_and_label_map_reconciles(deploy_run, renamed_corpus, tmp_path, capsys):
    from ser_dist.errors import UserError

    run, _ = deploy_run
    result = ser_dist_cli("evaluate", str(run), "--data", f"root={renamed_corpus}", "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ser-dist: error: ")
    assert "differ from the model's" in lines[0] and "reconcile them: --label-map angry=Anger,happy=Happy,sad=Sad" in lines[0]
    assert not (tmp_path / "x" / "metrics.json").exists()

    out_dir = tmp_path / "mapped"
    _, err = in_process(
        capsys,
        "evaluate",
        str(run),
        "--data",
        f"root={renamed_corpus}",
        "--label-map",
        "angry=Anger,happy=Happy,sad=Sad",
        "--out",
        str(out_dir),
    )
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["test"]["num_examples"] == 36
    assert metrics["data"]["per_class"] == {"Anger": 12, "Disgust": 0, "Fear": 0, "Happy": 12, "Neutral": 0, "Sad": 12}
    assert metrics["data"]["classes_missing_from_corpus"] == ["Disgust", "Fear", "Neutral"] and "UA averages the classes present" in err
    with pytest.raises(UserError, match="maps to \\['Angr'\\]"):
        in_process(capsys, "evaluate", str(run), "--data", f"root={renamed_corpus}", "--label-map", "angry=Angr")
    with pytest.raises(UserError, match="give corpus=model pairs"):
        in_process(capsys, "evaluate", str(run), "--data", f"root={renamed_corpus}", "--label-map", "angry")


@pytest.mark.slow
@pytest.mark.emodb
def test_evaluate_on_real_emodb_following_the_error_advice(deploy_run, tmp_path, capsys):
    """Real German acted speech (22.05 kHz): the label-mismatch error's advice, pasted back, evaluates."""
    from conftest import EMODB

    from ser_dist.errors import UserError

    if not EMODB.is_dir():
        pytest.skip(f"{EMODB} not present")
    run, _ = deploy_run
    data = ["--data", "corpus=emodb", f"root={EMODB}"]
    with pytest.raises(UserError) as caught:
        in_process(capsys, "evaluate", str(run), *data)
    advice = str(caught.value).split("reconcile them: ")[1]
    label_map = advice.split("--label-map ")[1].split(";")[0]
    labels = advice.split("--data ")[1]
    in_process(capsys, "evaluate", str(run), *data, labels, "--label-map", label_map, "--out", str(tmp_path / "emodb"))
    metrics = json.loads((tmp_path / "emodb" / "metrics.json").read_text())
    assert metrics["test"]["num_examples"] == 535 - 81  # every clip but boredom's
    assert metrics["data"]["skipped_files"] == 0
