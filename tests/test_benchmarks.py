"""The benchmark scripts run end to end on tiny inputs: the classical baseline on a finished run's own split, the
best from-scratch setting over every fold, the MFU and data-preparation measurements."""

import json
import os

import pytest
from conftest import run_entry_point


def test_logreg_baseline_scores_the_runs_test_clips_and_summarises_several_runs(deploy_run, tmp_path):
    run_dir, _ = deploy_run
    result = run_entry_point(["benchmarks/mfcc_logreg_baseline.py", str(run_dir), str(run_dir)], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    baseline = json.loads((run_dir / "logreg_baseline.json").read_text())
    neural = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert baseline["test"]["num_examples"] == neural["num_examples"] > 0  # the same test clips as the run
    assert baseline["neural_test"] == neural
    assert baseline["C"] in baseline["val_unweighted_accuracy_by_C"] or str(baseline["C"]) in baseline["val_unweighted_accuracy_by_C"]
    assert 0.0 <= baseline["test"]["unweighted_accuracy"] <= 1.0
    assert "logistic regression, 2 runs: UA" in result.stdout and "the runs' models, 2 runs: UA" in result.stdout

    refused = run_entry_point(["benchmarks/mfcc_logreg_baseline.py", str(run_dir), str(run_dir), "--out", str(tmp_path / "x.json")])
    assert refused.returncode == 2 and "--out takes one RUN_DIR" in refused.stderr
    log = tmp_path / "fold_1.log"  # what a shell glob like CV_DIR/fold_* also picks up
    log.write_text("")
    refused = run_entry_point(["benchmarks/mfcc_logreg_baseline.py", str(run_dir), str(log)])
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"{log}: not a finished run (no split.csv and config.yaml)" in refused.stderr


def _mfu_module():
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("mfu_benchmark", ROOT / "benchmarks" / "mfu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mfu_flop_count_matches_torch_on_the_encoder_and_the_published_sizes():
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModel

    mfu = _mfu_module()
    config = mfu.encoder_config("tiny")
    encoder = AutoModel.from_config(config, attn_implementation="eager").eval()  # eager: FlopCounterMode sees its matmuls
    samples = 3 * 16000
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(torch.randn(1, samples))
    cnn, rest = mfu.forward_flops(config, samples)
    # What torch counts (convolutions, linear layers, attention matmuls) is what the formula counts; norms and
    # activations are left out by both.
    assert abs((cnn + rest) / counter.get_total_flops() - 1) < 0.02
    per_second = {size: sum(mfu.forward_flops(mfu.encoder_config(size), 4 * 16000)) / 4 / 1e9 for size in ("hubert_large", "wav2vec2_base")}
    assert 34 < per_second["hubert_large"] < 40 and 13 < per_second["wav2vec2_base"] < 16  # ~36 and ~14 GFLOP per audio second
    assert mfu.training_flops(config, samples, frozen_cnn=True) == cnn + 3 * rest


def test_mfu_benchmark_runs_end_to_end_on_cpu(tmp_path):
    result = run_entry_point(
        [
            "benchmarks/mfu.py",
            "--size",
            "tiny",
            "--device",
            "cpu",
            "--warmup",
            "1",
            "--steps",
            "2",
            "--clips",
            "100",
            "--batch-seconds",
            "30",
            "--peak-tflops",
            "1",
            "--out",
            str(tmp_path / "mfu.json"),
        ],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "mfu.json").read_text())
    assert report["timed_steps"] == 2 and report["clips_per_second"] > 0 and report["padding_fraction"] < 0.2
    assert 0 < report["mfu"] == report["model_tflops_per_second"] / 1.0
    assert "MFU" in result.stdout and "audio-s/s" in result.stdout


def test_the_documented_emodb_bilstm_settings_train_through_the_recipe(demo_corpus, tmp_path):
    """docs/benchmarks.md's EmoDB command (`--config benchmarks/best_from_scratch.yaml`), on the demo corpus for 2 epochs:
    the file's settings reach the run, and the saved model (30 ms frames) predicts what the run logged."""
    import yaml
    from conftest import ROOT, SPEAKER_PATTERN, assert_predict_reproduces_test_predictions, run_recipe

    out = tmp_path / "run"
    result = run_recipe(
        "bilstm_mfcc_ce.py",
        "--config",
        str(ROOT / "benchmarks" / "best_from_scratch.yaml"),
        "data.corpus=folder",
        f"data.root={demo_corpus}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        "data.max_seconds=2.0",
        "train.epochs=2",
        f"train.output_dir={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["model"]["frame_stride"] == 3 and resolved["model"]["num_layers"] == 2 and resolved["model"]["head"] == "mean"
    assert resolved["data"]["augment"] == ["speed"] and resolved["optim"]["scheduler"] == "none"
    assert json.loads((out / "metrics.json").read_text())["test"]["num_examples"] > 0
    assert_predict_reproduces_test_predictions(out)


def test_prepare_scale_benchmark_runs_on_a_tiny_corpus(tmp_path):
    """benchmarks/prepare_scale.py end to end on 40 clips: both corpus forms are built and every form prepares them all."""
    result = run_entry_point(
        [
            "benchmarks/prepare_scale.py",
            "--clips",
            "40",
            "--num-proc",
            "1",
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(tmp_path / "out"),
        ],
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "prepare_scale.json").read_text())
    forms = {row["form"]: row for row in report["results"]}
    assert set(forms) == ({"manifest", "hf", "hf_core"} if report["hf_dataset_supported"] else {"manifest", "hf_core"})
    assert all(row["clips_used"] == 40 and row["peak_rss_mb"] > 0 for row in forms.values())
    assert "| manifest | 40 |" in result.stdout


def test_best_from_scratch_script_trains_every_fold_of_any_corpus_and_writes_metrics(demo_corpus, tmp_path):
    """benchmarks/best_from_scratch.sh on the demo corpus (its overrides replace the EmoDB defaults), a tiny BiLSTM,
    2 speaker folds of 1 epoch: the settings file reaches every fold, and metrics.json holds each fold's test speakers
    and scores and the mean and sd over the folds."""
    import subprocess
    import sys

    import yaml
    from conftest import ROOT, SPEAKER_PATTERN

    script = ROOT / "benchmarks" / "best_from_scratch.sh"
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=ROOT)
    assert usage.returncode == 2 and "bash benchmarks/best_from_scratch.sh OUT_DIR" in usage.stdout

    out = tmp_path / "best"
    overrides = [
        "data.corpus=folder",
        f"data.root={demo_corpus}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        "data.split=speaker_kfold",
        "data.num_folds=2",
        "data.max_seconds=2.0",
        "train.epochs=1",
        "train.batch_size=8",
        "model.hidden_size=8",
        "model.embedding_size=8",
    ]
    result = subprocess.run(
        ["bash", str(script), str(out), *overrides],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "PYTHON": sys.executable, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"recipe", "config", "config_settings", "overrides", "num_folds", "folds", "test"}
    assert metrics["recipe"] == "recipes/bilstm_mfcc_ce.py" and metrics["config"] == "benchmarks/best_from_scratch.yaml"
    assert metrics["config_settings"] == yaml.safe_load((ROOT / "benchmarks" / "best_from_scratch.yaml").read_text())
    assert metrics["overrides"][0] == "data.split=leave_one_speaker_out" and metrics["overrides"][-len(overrides) :] == overrides
    assert metrics["num_folds"] == len(metrics["folds"]) == 2
    tested = [speaker for fold in metrics["folds"] for speaker in fold["test_speakers"]]
    assert sorted(tested) == ["spk01", "spk02", "spk03", "spk04"]  # each speaker tested once, in one fold
    for fold in metrics["folds"]:
        scores = [fold["test"][key] for key in ("unweighted_accuracy", "weighted_accuracy", "macro_f1")]
        assert all(0.0 <= score <= 1.0 for score in [*scores, fold["best_val_unweighted_accuracy"]])
        assert fold["test"]["num_examples"] > 0
        resolved = yaml.safe_load((out / f"fold_{fold['fold']}" / "config.yaml").read_text())
        assert resolved["model"]["backbone"] == "bilstm" and resolved["model"]["feature_norm"] == "global"
        assert resolved["data"]["augment"] == ["speed"] and resolved["model"]["frame_stride"] == 3
    ua = metrics["test"]["unweighted_accuracy"]
    folds_ua = [fold["test"]["unweighted_accuracy"] for fold in metrics["folds"]]
    assert ua["mean"] == pytest.approx(sum(folds_ua) / 2) and ua["sd"] >= 0.0
    assert "best from-scratch setting, 2 fold(s): test UA" in result.stdout


def fake_cv(folder, uas, val_uas, speakers, protocol="speaker-independent features"):
    """A finished ser-dist cv as benchmarks/paired_table.py reads it: cv_summary.json and each fold's metrics.json."""
    folds = []
    for fold, (ua, val, speaker) in enumerate(zip(uas, val_uas, speakers), start=1):
        (folder / f"fold_{fold}").mkdir(parents=True)
        metrics = {"best_val_unweighted_accuracy": val, "protocol": protocol, "data": {"split": {"test": {"speakers": [speaker]}}}}
        (folder / f"fold_{fold}" / "metrics.json").write_text(json.dumps(metrics))
        folds.append({"fold": fold, "unweighted_accuracy": ua})
    (folder / "cv_summary.json").write_text(json.dumps({"folds": folds}))
    return folder


def test_paired_table_pairs_each_fold_with_the_baselines_and_refuses_other_folds(tmp_path, capsys):
    import math
    import statistics

    from conftest import ROOT

    sys_path = str(ROOT / "benchmarks")
    import sys

    sys.path.insert(0, sys_path)
    try:
        import paired_table
    finally:
        sys.path.remove(sys_path)
    base = fake_cv(tmp_path / "base", [0.5, 0.6, 0.7], [0.4, 0.5, 0.6], ["a", "b", "c"])
    model = fake_cv(tmp_path / "model", [0.55, 0.58, 0.9], [0.5, 0.5, 0.5], ["a", "b", "c"], protocol="... transductive ...")
    assert paired_table.main(["--baseline", "base", f"base={base}", f"model={model}", "--out", str(tmp_path / "t.md")]) == 0
    text = (tmp_path / "t.md").read_text()
    diffs = [5.0, -2.0, 20.0]
    d_mean, d_sd = statistics.mean(diffs), statistics.stdev(diffs)
    row = next(line for line in text.splitlines() if line.startswith("| model | transductive"))
    assert "transductive (speaker norm)" in row and "67.67 ±" in row and "| 50.00 |" in row
    assert f"{d_mean:+.2f} ± {d_sd:.2f}" in row and f"{d_mean / (d_sd / math.sqrt(3)):.2f}" in row and "2 of 3" in row
    assert "| 3 | c | 70.00 | 90.00 |" in text and text == capsys.readouterr().out
    for fold, ua in enumerate([0.4, 0.5, 0.45], start=1):  # benchmarks/mfcc_logreg_baseline.py's file on each fold
        result = {"test": {"unweighted_accuracy": ua}, "val_unweighted_accuracy_by_C": {"0.1": 0.3, "1.0": 0.35}}
        (model / f"fold_{fold}" / "logreg_baseline.json").write_text(json.dumps(result))
    paired_table.main(["--baseline", "base", f"base={base}", f"logreg={model}#logreg"])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| logreg |"))
    assert "speaker-independent | 45.00 ± 5.00 | 35.00 | -15.00 ± 8.66 | -3.00 | 0 of 3 |" in row  # -10, -10, -25
    other = fake_cv(tmp_path / "other", [0.5, 0.6, 0.7], [0.4, 0.5, 0.6], ["a", "b", "z"])
    with pytest.raises(SystemExit, match="fold 3 of other tests other speakers"):
        paired_table.main(["--baseline", "base", f"base={base}", f"other={other}"])
