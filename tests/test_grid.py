"""The comparative study's commands: ``ser-dist grid``, ``ser-dist cv``, ``ser-dist report``.

The 20-cell grid runs every study recipe through its real entry point (its ``__main__`` block) on the
generated corpus with ``--smoke`` (tiny models, 1 epoch), in one command, and produces the table and
heatmap. One thread per process: the smoke models are tiny and the CI machine is shared.
"""

import csv
import dataclasses
import json
import os
import shutil
import statistics
import sys

import pytest
from conftest import SPEAKER_PATTERN, STUDY_BACKBONES, STUDY_LOSSES, STUDY_RECIPES, run_entry_point

from ser_dist import crossval
from ser_dist.cli import main
from ser_dist.crossval import CVPlan, check_comparable, plan_cv, plan_grid, run_cv
from ser_dist.errors import ConfigError, UserError
from ser_dist.recipe import load_recipe
from ser_dist.results import collect_results, write_results

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def cli(*args, timeout=900):
    return run_entry_point(["-m", "ser_dist.cli", *args], timeout=timeout, env=ONE_THREAD)


def demo_data(corpus, *extra):
    return ["--data", f"root={corpus}", "corpus=folder", f"speaker_pattern={SPEAKER_PATTERN}", "labels=Anger,Sad", *extra]


@pytest.fixture(scope="module")
def grid_run(demo_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "study"
    result = cli("grid", *STUDY_RECIPES, "--smoke", *demo_data(demo_corpus, "split=speaker"), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_grid_of_20_cells_writes_table_csv_and_heatmap(grid_run):
    out, result = grid_run
    table = (out / "results.md").read_text()
    assert result.stdout.count("training ->") == 20
    assert table.splitlines()[0] == "| backbone | ce | label_smoothing | focal | aam | ccc |"
    rows = [line.split(" | ")[0].strip("| ") for line in table.splitlines()[2:6]]
    assert rows == ["lstm", "vggish", "wav2vec2_base", "hubert_large"]  # the seed's row order
    cells_text = "\n".join(table.splitlines()[2:6])
    assert "—" not in cells_text and cells_text.count("UA ") == 20 and cells_text.count("WA ") == 20
    with open(out / "results.csv") as handle:
        cells = list(csv.DictReader(handle))
    assert [(c["backbone"], c["loss"]) for c in cells] == [(b, loss) for b in STUDY_BACKBONES for loss in STUDY_LOSSES]
    for cell in cells:
        fold = json.loads((out / f"{cell['backbone']}_{cell['loss']}" / "fold_1" / "metrics.json").read_text())
        assert float(cell["unweighted_accuracy_mean"]) == pytest.approx(fold["test"]["unweighted_accuracy"])
        assert cell["num_folds"] == "1"
    assert (out / "results_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grid_rows_name_the_recipe_backbone_while_smoke_swaps_in_tiny_models(grid_run):
    out, _ = grid_run
    summary = json.loads((out / "hubert_large_focal" / "cv_summary.json").read_text())
    assert (summary["backbone"], summary["loss"]) == ("hubert_large", "focal")
    run_config = (out / "hubert_large_focal" / "fold_1" / "config.yaml").read_text()
    assert "backbone: hubert_tiny_random" in run_config and "pretrained: false" in run_config
    assert "backbone: vggish" in (out / "vggish_aam" / "fold_1" / "config.yaml").read_text()


def test_report_rebuilds_the_grid_table_from_the_cell_folders(grid_run, tmp_path):
    out, _ = grid_run
    cells = sorted(p for p in out.iterdir() if p.is_dir())
    result = cli("report", *map(str, cells), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "results.md").read_text() == (out / "results.md").read_text()
    assert (tmp_path / "results_heatmap.png").exists()


def test_print_jobs_gives_one_cv_command_per_cell(demo_corpus, tmp_path, capsys):
    out = tmp_path / "jobs"
    main(
        [
            "grid",
            *STUDY_RECIPES,
            "--smoke",
            *demo_data(demo_corpus, "split=speaker"),
            "--out",
            str(out),
            "--print-jobs",
            "--launcher",
            "accelerate launch --num_processes 4",
        ]
    )
    jobs = capsys.readouterr().out.splitlines()
    assert len(jobs) == 20
    assert jobs[0].startswith("ser-dist cv recipes/lstm_ce.py train.epochs=1 ")
    assert jobs[0].endswith(f"--out {out / 'lstm_ce'} --launcher 'accelerate launch --num_processes 4'")
    assert not out.exists()  # nothing ran


def test_rerun_skips_finished_cells_and_resumes_an_interrupted_fold(grid_run, demo_corpus, tmp_path):
    out = tmp_path / "study"
    shutil.copytree(grid_run[0], out)
    broken = out / "lstm_focal" / "fold_1"
    before = json.loads((broken / "metrics.json").read_text())["test"]
    (broken / "metrics.json").unlink()  # as if the run died after its last checkpoint
    recipes = ["recipes/lstm_ce.py", "recipes/lstm_focal.py", "recipes/hubert_large_aam.py"]
    result = cli("grid", *recipes, "--smoke", *demo_data(demo_corpus, "split=speaker"), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("finished earlier") == 2
    assert "lstm_focal fold 1/1: training" in result.stdout
    assert "resumed from" in (broken / "train.log").read_text()
    after = json.loads((broken / "metrics.json").read_text())["test"]
    assert after["confusion_matrix"] == before["confusion_matrix"]  # the same best model, re-tested


def check_cv_folder(out, result):
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "cv_summary.json").read_text())
    assert summary["num_folds"] == 2 and (summary["backbone"], summary["loss"]) == ("lstm", "ccc")
    test_speakers = []
    for fold in (1, 2):
        metrics = json.loads((out / f"fold_{fold}" / "metrics.json").read_text())
        assert summary["folds"][fold - 1]["unweighted_accuracy"] == metrics["test"]["unweighted_accuracy"]
        with open(out / f"fold_{fold}" / "split.csv") as handle:
            test_speakers.append({row["speaker"] for row in csv.DictReader(handle) if row["split"] == "test"})
    assert not test_speakers[0] & test_speakers[1] and len(test_speakers[0] | test_speakers[1]) == 4
    for key in ("unweighted_accuracy", "weighted_accuracy", "macro_f1"):
        values = [fold[key] for fold in summary["folds"]]
        assert summary[key]["mean"] == pytest.approx(statistics.fmean(values))
        assert summary[key]["std"] == pytest.approx(statistics.stdev(values))
    assert "| **mean ± std** |" in (out / "cv_summary.md").read_text()
    assert "mean ± std" in result.stdout


CV_ARGS = ["cv", "recipes/lstm_ccc.py", "--smoke"]


def test_cv_runs_every_fold_and_reports_mean_and_std(demo_corpus, tmp_path):
    out = tmp_path / "cv"
    result = cli(*CV_ARGS, *demo_data(demo_corpus, "split=speaker_kfold", "num_folds=2"), "--out", str(out))
    check_cv_folder(out, result)


@pytest.mark.slow
def test_cv_runs_each_fold_as_a_launcher_command(demo_corpus, tmp_path):
    out = tmp_path / "cv"
    result = cli(*CV_ARGS, *demo_data(demo_corpus, "split=speaker_kfold", "num_folds=2"), "--out", str(out), "--launcher", sys.executable)
    check_cv_folder(out, result)


def test_launcher_command_of_a_fold(demo_corpus, tmp_path):
    data = [f"data.root={demo_corpus}", "data.corpus=folder", f"data.speaker_pattern={SPEAKER_PATTERN}", "data.split=leave_one_speaker_out"]
    plan = plan_cv("recipes/lstm_ce.py", data, out_dir=str(tmp_path))
    assert plan.folds == [1, 2, 3, 4]
    command = plan.command(3, "accelerate launch --num_processes 2")
    assert command[:5] == ["accelerate", "launch", "--num_processes", "2", "recipes/lstm_ce.py"]
    assert command[5:] == data + ["data.fold=3", f"train.output_dir={tmp_path / 'fold_3'}", "train.resume=auto"]


def test_bad_config_fails_before_any_fold(demo_corpus, tmp_path):
    with pytest.raises(ConfigError, match=r"^unknown config key 'train.epoch'; did you mean train.epochs\?$"):
        main(
            [
                "grid",
                "recipes/lstm_ce.py",
                "recipes/vggish_ce.py",
                *demo_data(demo_corpus),
                "train.epoch=3",
                "--out",
                str(tmp_path / "grid"),
            ]
        )
    with pytest.raises(UserError, match=r"--data 'corpus': give key=value pairs"):
        main(["cv", "recipes/lstm_ce.py", "--data", "corpus", "--out", str(tmp_path / "grid")])
    assert not (tmp_path / "grid").exists()


def test_argument_errors_are_user_errors(demo_corpus, tmp_path, monkeypatch):
    data = [
        f"data.root={demo_corpus}",
        "data.corpus=folder",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        "data.split=speaker_kfold",
        "data.num_folds=2",
    ]
    with pytest.raises(UserError, match="recipe not found"):
        plan_cv("recipes/no_such_recipe.py", data)
    with pytest.raises(UserError, match="given twice"):
        plan_grid(["recipes/lstm_ce.py", "recipes/lstm_ce.py"], data, str(tmp_path))
    plans = [
        CVPlan(recipe, recipe.config, tmp_path, [], [1])
        for recipe in map(load_recipe, ("recipes/hubert_large_focal.py", "recipes/hubert_large_ce.py"))
    ]
    with pytest.raises(
        UserError,
        match=r"recipes/hubert_large_ce.py has data.corpus='folder' but recipes/hubert_large_focal.py has 'iemocap'; "
        r"the cells of a grid share one data protocol: pass data.corpus=VALUE",
    ):
        check_comparable(plans)
    bandpass = load_recipe("recipes/wav2vec2_base_bandpass_ce.py")
    with pytest.raises(UserError, match=r"are both the wav2vec2_base x ce cell; a grid has one recipe per cell"):
        check_comparable(
            [
                CVPlan(load_recipe("recipes/wav2vec2_base_ce.py"), bandpass.config, tmp_path, [], [1]),
                CVPlan(bandpass, bandpass.config, tmp_path, [], [1]),
            ]
        )
    faster = dataclasses.replace(plans[0].experiment, optim=dataclasses.replace(plans[0].experiment.optim, lr=0.5))
    with pytest.raises(
        UserError, match=r"has optim.lr=0.5 but recipes/hubert_large_focal.py has 2e-05; the cells of the hubert_large row share"
    ):
        check_comparable([plans[0], CVPlan(load_recipe("recipes/hubert_large_aam.py"), faster, tmp_path, [], [1])])
    plan = plan_cv("recipes/lstm_ce.py", data, out_dir=str(tmp_path / "cv"))
    assert plan.folds == [1, 2]
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="--launcher"):
        run_cv(plan)
    with pytest.raises(UserError, match="not a finished run"):
        collect_results([tmp_path])


def test_report_pools_folds_and_single_runs(tmp_path):
    """``report`` on hand-made run folders: ± is the sample std across folds, rows in the seed's order."""
    cv_dir = tmp_path / "hubert_focal"
    cv_dir.mkdir()
    folds = [
        {"fold": k, "unweighted_accuracy": ua, "weighted_accuracy": wa, "macro_f1": 0.5, "num_examples": 10}
        for k, ua, wa in ((1, 0.8, 0.9), (2, 0.6, 0.7))
    ]
    (cv_dir / "cv_summary.json").write_text(json.dumps({"backbone": "hubert_large", "loss": "focal", "folds": folds}))
    single = tmp_path / "single"
    single.mkdir()
    (single / "metrics.json").write_text(json.dumps({"test": {"unweighted_accuracy": 0.5, "weighted_accuracy": 0.25, "macro_f1": 0.4}}))
    (single / "config.yaml").write_text("model:\n  backbone: lstm\nloss:\n  name: ccc\n")
    paths = write_results(collect_results([cv_dir, single]), tmp_path / "report")
    lines = paths["markdown"].read_text().splitlines()
    assert lines[0] == "| backbone | focal | ccc |"
    assert lines[2] == "| lstm | — | UA 50.0 / WA 25.0 |"
    assert lines[3] == "| hubert_large | UA 70.0 ± 14.1 / WA 80.0 ± 14.1 | — |"
    assert os.path.getsize(paths["heatmap"]) > 0


# ---- a study never reports stale runs: reuse only a fold of the same settings ----------------------------


def test_a_fold_of_other_settings_stops_the_command_and_rerun_retrains_only_it(grid_run, demo_corpus, tmp_path):
    from ser_dist.config import fingerprint, load

    out = tmp_path / "study"
    shutil.copytree(grid_run[0], out)
    cell = out / "lstm_focal" / "fold_1"
    untouched = {path: path.read_bytes() for path in (out / "lstm_ce" / "fold_1" / "metrics.json", cell / "metrics.json")}
    recipes, data = ["recipes/lstm_ce.py", "recipes/lstm_focal.py"], demo_data(demo_corpus, "split=speaker")

    def one_line_error(result, *fragments):
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and "training ->" not in result.stdout and len(lines) == 1, result.stderr[-2000:]
        assert all(fragment in lines[0] for fragment in fragments), lines[0]

    changed = cli("grid", *recipes, "--smoke", *data, "--out", str(out), "optim.lr=0.5")
    one_line_error(
        changed, "ser-dist: error: lstm_ce fold 1: ", "holds a run of other settings (optim.lr=0.001 then, 0.5 now)", "pass --rerun"
    )
    assert all(path.read_bytes() == data_ for path, data_ in untouched.items())  # nothing trained, nothing cleared

    one_line_error(
        cli("cv", "recipes/lstm_focal.py", "--smoke", *data, "--out", str(out / "lstm_focal"), "loss.gamma=0"),
        "loss.gamma=2.0 then, 0.0 now",
    )
    retrained = cli("cv", "recipes/lstm_focal.py", "--smoke", *data, "--out", str(out / "lstm_focal"), "loss.gamma=0", "--rerun")
    assert retrained.returncode == 0 and "lstm_focal fold 1/1: retraining (settings changed)" in retrained.stdout, retrained.stderr[-2000:]
    metrics = json.loads((cell / "metrics.json").read_text())
    assert load(cell / "config.yaml").loss.gamma == 0.0 and metrics["config_fingerprint"] == fingerprint(load(cell / "config.yaml"))
    assert (cell / "train.log").read_text().count("process(es) on") == 1  # the old run was cleared, not appended to

    # Back to the recipes' own settings: only the focal cell is stale now, and only it retrains.
    one_line_error(cli("grid", *recipes, "--smoke", *data, "--out", str(out)), "lstm_focal fold 1: ", "loss.gamma=0.0 then, 2.0 now")
    rerun = cli("grid", *recipes, "--smoke", *data, "--out", str(out), "--rerun")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "lstm_ce fold 1/1: finished earlier with the same settings" in rerun.stdout
    assert "lstm_focal fold 1/1: retraining (settings changed)" in rerun.stdout and rerun.stdout.count("training") == 1
    assert (
        json.loads((cell / "metrics.json").read_text())["test"] == json.loads(untouched[cell / "metrics.json"])["test"]
    )  # the same run again


def test_report_refuses_one_cell_of_runs_with_other_settings(grid_run, tmp_path):
    out = tmp_path / "study"
    shutil.copytree(grid_run[0], out)
    other = out / "lstm_ce_again"
    shutil.copytree(out / "lstm_ce", other)
    metrics_file = other / "fold_1" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics["config_fingerprint_without_fold"] = "0123456789abcdef"  # as a run with another lr would record
    metrics_file.write_text(json.dumps(metrics))
    assert collect_results([out / "lstm_ce" / "fold_1", out / "lstm_focal" / "fold_1"])  # one run per cell: fine
    with pytest.raises(UserError, match=r"are both the lstm x ce cell but ran other settings"):
        collect_results([out / "lstm_ce" / "fold_1", other / "fold_1"])


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--launcher", "no-such-launcher --num_processes 2"], "no-such-launcher is not a program on PATH"),
        (["--launcher", 'accelerate "launch'], "No closing quotation"),
    ],
)
def test_a_bad_launcher_stops_cv_before_any_fold_trains(demo_corpus, tmp_path, extra, fragment):
    result = cli(*CV_ARGS, *demo_data(demo_corpus, "split=speaker_kfold", "num_folds=2"), "--out", str(tmp_path / "cv"), *extra)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and fragment in lines[0], result.stderr[-2000:]
    assert not (tmp_path / "cv").exists()


def test_cv_out_that_is_a_file_is_one_line(demo_corpus, tmp_path):
    (tmp_path / "file").write_text("x")
    result = cli(*CV_ARGS, *demo_data(demo_corpus, "split=speaker_kfold", "num_folds=2"), "--out", str(tmp_path / "file" / "cv"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and f"{tmp_path / 'file'} is a file" in lines[0], result.stderr[-2000:]


# --- progress of cv and grid: folds and cells on stderr, the fold lines on stdout -----------------------


@pytest.fixture
def fake_training(monkeypatch):
    """Folds "train" in no time: the recipe's ``__main__`` is replaced by writing the finished run's config.yaml
    and metrics.json (what cv checks and summarises). Returns the folds trained, in order."""
    from pathlib import Path

    from ser_dist import config as config_module
    from ser_dist.config import apply_overrides, parse_args

    trained = []

    def finish_fold(path, overrides):
        exp = apply_overrides(load_recipe(path).config, parse_args(list(overrides)))
        out = Path(exp.train.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        config_module.save(exp, out / "config.yaml")
        metrics = {
            "config_fingerprint": config_module.fingerprint(exp),
            "config_fingerprint_without_fold": config_module.fingerprint(exp, ignore=("data.fold",)),
            "test": {"unweighted_accuracy": 0.5, "weighted_accuracy": 0.6, "macro_f1": 0.4, "num_examples": 12},
        }
        (out / "metrics.json").write_text(json.dumps(metrics))
        trained.append((path.stem, exp.data.fold))

    monkeypatch.setattr("ser_dist.crossval.run_recipe_main", finish_fold)
    return trained


def progress_lines(err: str, desc: str) -> list[str]:
    """What each ``ser_dist.progress`` log line of step ``desc`` says, up to its timing."""
    return [line.split(f"] {desc}: ")[1].split(";")[0] for line in err.splitlines() if f"] {desc}: " in line]


def test_cv_progress_counts_folds_finished_earlier_as_done(demo_corpus, tmp_path, fake_training, capsys):
    out = tmp_path / "cv"
    data = demo_data(demo_corpus, "split=speaker_kfold", "num_folds=2")
    command = ["cv", "recipes/lstm_ce.py", *data, "--out", str(out)]
    plan = plan_cv("recipes/lstm_ce.py", [f"data.{item}" for item in data[1:]], out_dir=str(out))
    crossval.run_recipe_main(plan.recipe.path, plan.fold_overrides(1))  # fold 1 finished earlier
    main([*command, "train.progress=log", "train.progress_seconds=0"])
    captured = capsys.readouterr()
    assert fake_training == [("lstm_ce", 1), ("lstm_ce", 2)]  # fold 2 only, after fold 1 above
    assert "lstm_ce fold 1/2: finished earlier" in captured.out and f"lstm_ce fold 2/2: training -> {out / 'fold_2'}" in captured.out
    assert progress_lines(captured.err, "lstm_ce folds") == ["1/2 folds (50%)", "2/2 folds (100%)"]
    assert "\r" not in captured.err and "folds:" not in captured.out and "mean ± std" in captured.out

    main([*command, 'train.progress="off"'])  # quoted: a bare off reads as YAML's false
    captured = capsys.readouterr()
    assert captured.out.count("finished earlier") == 2 and "folds" not in captured.err
    main([*command, "train.progress=bar"])
    err = capsys.readouterr().err
    assert "lstm_ce folds: 100%" in err and "2/2" in err and "\r" in err  # tqdm's bar, left on screen (leave=True)


def test_grid_progress_counts_cells_and_each_cells_folds(demo_corpus, tmp_path, fake_training, capsys):
    out = tmp_path / "grid"
    recipes = ["recipes/lstm_ce.py", "recipes/lstm_focal.py"]
    main(["grid", *recipes, *demo_data(demo_corpus, "split=speaker"), "--out", str(out), "train.progress=log", "train.progress_seconds=0"])
    captured = capsys.readouterr()
    assert fake_training == [("lstm_ce", 1), ("lstm_focal", 1)]  # the recipes' data.fold (a single-split protocol ignores it)
    assert progress_lines(captured.err, "grid cells") == ["1/2 cells (50%), cell lstm_ce", "2/2 cells (100%), cell lstm_focal"]
    assert progress_lines(captured.err, "lstm_ce folds") == progress_lines(captured.err, "lstm_focal folds") == ["1/1 folds (100%)"]
    assert "grid cell 1/2: lstm_ce" in captured.out and "lstm_focal fold 1/1: training" in captured.out and "\r" not in captured.err
    assert (out / "results.md").exists()
