"""The classical baseline benchmark runs on a finished run's own split and reports it beside the run's model."""
import json

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
