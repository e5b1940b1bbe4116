"""Accelerate's experiment trackers (ser_dist.tracking) read back: TensorBoard's event files and MLflow's local
store hold every figure the trainer logs, at the right steps, with the hyperparameters and the confusion matrix."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
from conftest import DIST_ENV, SPEAKER_PATTERN, assert_one_line_error, mlflow_env, run_entry_point, run_recipe, tiny_ssl_args

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

LABELS = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad")


def tracked_args(corpus, out, *extra: str) -> list[str]:
    """A tiny HuBERT whose CNN feature encoder is frozen in epoch 1: three parameter groups and a frozen part to log."""
    return tiny_ssl_args(
        corpus,
        out,
        "train.log_every_steps=2",
        "train.max_grad_norm=0.001",  # every step is clipped
        "train.report_to=[tensorboard,mlflow]",
        "train.progress=log",
        "train.progress_seconds=0",
        *extra,
    )


@pytest.fixture(scope="module")
def tracked_run(demo_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("tracked")
    env = {**DIST_ENV, **mlflow_env(root)}
    out = root / "run"
    result = run_entry_point(tracked_args(demo_corpus, out), env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result, env["MLFLOW_TRACKING_URI"]


def events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def steps(accumulator, tag: str) -> list[int]:
    return [event.step for event in accumulator.Scalars(tag)]


def test_tensorboard_has_every_figure_at_its_steps(tracked_run):
    out, _, _ = tracked_run
    history = [line for line in (out / "training_history.csv").read_text().splitlines()[1:]]
    metrics = json.loads((out / "metrics.json").read_text())
    tb = events(out / "tensorboard")
    scalars = set(tb.Tags()["scalars"])
    logged = steps(tb, "train/loss")
    assert logged and all(step % 2 == 0 for step in logged)  # every train.log_every_steps=2 optimizer steps
    last_step = max(steps(tb, "test/unweighted_accuracy"))
    assert logged == list(range(2, last_step + 1, 2))
    for tag in ("train/lr/head", "train/lr/encoder", "train/lr/feature_encoder", "train/grad_norm", "train/clipped", "train/skipped_steps"):
        assert steps(tb, tag) == logged, tag
    assert all(event.value == 1.0 for event in tb.Scalars("train/clipped"))  # max_grad_norm=0.001
    assert all(event.value > 0.001 for event in tb.Scalars("train/grad_norm"))  # the norm before clipping
    assert all(event.value == 0.0 for event in tb.Scalars("train/skipped_steps"))
    per_epoch = [
        "epoch/train_loss",
        "epoch/val_loss",
        "epoch/val_unweighted_accuracy",
        "epoch/val_weighted_accuracy",
        "epoch/val_macro_f1",
        *(f"epoch/val_recall/{name}" for name in LABELS),
        "epoch/lr/head",
        "epoch/clips_per_second",
        "epoch/audio_seconds_per_second",
        "epoch/padded_fraction",
        "epoch/loader_wait_fraction",
        "epoch/peak_cpu_memory_mb",
        "epoch/frozen/feature_encoder",
        "epoch/frozen/encoder",
    ]
    epoch_ends = steps(tb, "epoch/epoch")  # figures are logged against optimizer steps; epoch/epoch names the epoch
    assert [e.value for e in tb.Scalars("epoch/epoch")] == [1.0, 2.0] and epoch_ends[1] == last_step and 0 < epoch_ends[0] < last_step
    for tag in per_epoch:
        assert steps(tb, tag) == epoch_ends, tag
    assert [e.value for e in tb.Scalars("epoch/frozen/feature_encoder")] == [1.0, 0.0]  # frozen in epoch 1 only
    assert [e.value for e in tb.Scalars("epoch/frozen/encoder")] == [0.0, 0.0]
    assert all(0.0 <= e.value < 1.0 for e in tb.Scalars("epoch/loader_wait_fraction"))
    assert all(0.0 <= e.value < 1.0 for e in tb.Scalars("epoch/padded_fraction"))
    assert all(e.value > 0 for e in tb.Scalars("epoch/clips_per_second") + tb.Scalars("epoch/audio_seconds_per_second"))
    assert len(history) == 2
    for key in ("unweighted_accuracy", "weighted_accuracy", "macro_f1"):
        (event,) = tb.Scalars(f"test/{key}")
        assert math.isclose(event.value, metrics["test"][key], rel_tol=1e-6)
    assert {f"test/recall/{name}" for name in LABELS} <= scalars
    assert steps(tb, "test/unweighted_accuracy") == [last_step]
    images = tb.Tags()["images"]
    assert "val/confusion_matrix" in images and "test/confusion_matrix" in images
    assert [image.step for image in tb.Images("val/confusion_matrix")] == epoch_ends


def test_tensorboard_hparams_view_has_the_config_and_the_test_metrics(tracked_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    out, _, _ = tracked_run
    tb = events(out / "tensorboard")
    content = tb.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(content)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {info.name.tag for info in experiment.metric_infos} == {"test/unweighted_accuracy", "test/weighted_accuracy", "test/macro_f1"}
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model.backbone"].string_value == "hubert_tiny_random"
    assert start.hparams["train.batch_size"].number_value == 8
    assert start.hparams["model.freeze_feature_encoder_epochs"].number_value == 1
    assert start.hparams["run.num_processes"].number_value == 1


def test_mlflow_run_has_params_metrics_and_report_files(tracked_run):
    out, _, uri = tracked_run
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "ser-dist"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == out.name
    assert json.loads((out / "trackers.json").read_text()) == {"mlflow_run_id": run.info.run_id}
    assert run.data.params["optim.lr"] and run.data.params["model.backbone"] == "hubert_tiny_random"
    history = {m.step for m in client.get_metric_history(run.info.run_id, "train/loss")}
    tb = events(out / "tensorboard")
    assert history == set(steps(tb, "train/loss"))
    assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch/val_unweighted_accuracy")] == steps(tb, "epoch/epoch")
    metrics = json.loads((out / "metrics.json").read_text())
    assert math.isclose(run.data.metrics["test/macro_f1"], metrics["test"]["macro_f1"], rel_tol=1e-6)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_matrix.png", "metrics.json", "training_curves.png", "classification_report.txt", "config.yaml"} <= artifacts


def test_a_pipe_gets_progress_log_lines_not_bars(tracked_run):
    """stderr is a pipe here: train.progress=log lines (progress_seconds=0: one per update), no carriage return."""
    _, result, _ = tracked_run
    assert "\r" not in result.stderr and "\r" not in result.stdout
    lines = result.stderr.splitlines()
    assert any("epoch 1/2: 1/" in line and "batches" in line and "loss" in line and "clips/s" in line for line in lines)
    assert any("epoch 2/2: " in line and "(100%)" in line for line in lines)  # the last batch's line
    assert any("validate: " in line for line in lines) and any("test: " in line for line in lines)
    assert not any("epoch 1/2: 1/" in line for line in result.stdout.splitlines())  # the run log (stdout) stays as it was


def test_a_resumed_run_continues_its_mlflow_run(demo_corpus, tmp_path):
    env = {**DIST_ENV, **mlflow_env(tmp_path)}
    out = tmp_path / "run"
    first = run_entry_point(tracked_args(demo_corpus, out, "train.epochs=1", "optim.scheduler=none", "train.progress=off"), env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_entry_point(
        tracked_args(demo_corpus, out, "train.epochs=2", "optim.scheduler=none", "train.resume=auto", "train.progress=off"), env=env
    )
    assert again.returncode == 0, again.stderr[-3000:]
    client = mlflow.tracking.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [m.value for m in client.get_metric_history(run.info.run_id, "epoch/epoch")] == [1, 2]  # both epochs in one run
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 2  # one per process that ran: TensorBoard joins them


FAILING_RUNS = """
import sys
sys.path.insert(0, "recipes")
from ser_dist import trainer
from ser_dist.config import cli
import bilstm_mfcc_ce as recipe

def broken(run, epoch, *rest):
    raise RuntimeError("broken epoch")

fit = trainer.end_epoch
trainer.end_epoch = broken
try:
    trainer.train(cli(recipe.CONFIG, [*sys.argv[2:], f"train.output_dir={sys.argv[1]}-failed"]))
except RuntimeError:
    pass
trainer.end_epoch = fit
trainer.train(cli(recipe.CONFIG, [*sys.argv[2:], f"train.output_dir={sys.argv[1]}-next"]))
"""


def test_a_failed_run_ends_its_mlflow_run_failed_and_the_next_run_in_the_process_starts(demo_corpus, tmp_path):
    """A run that raises ends its MLflow run FAILED (not left RUNNING, then FINISHED at exit), and the next run in the
    same process (a ``ser-dist cv`` fold, a notebook's next ``train``) gets its own run instead of "already active"."""
    env = {**DIST_ENV, **mlflow_env(tmp_path)}
    script = tmp_path / "two_runs.py"
    script.write_text(FAILING_RUNS)
    args = [str(tmp_path / "run"), f"data.root={demo_corpus}", f"data.speaker_pattern={SPEAKER_PATTERN}", "train.epochs=1"]
    args += ["model.hidden_size=16", "model.embedding_size=16", "data.max_seconds=1.0", "train.report_to=[tensorboard,mlflow]"]
    result = run_entry_point([str(script), *args], env={**env, "PYTHONPATH": "."})
    assert result.returncode == 0, result.stderr[-3000:]
    client = mlflow.tracking.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted((run.info.run_name, run.info.status) for run in runs) == [("run-failed", "FAILED"), ("run-next", "FINISHED")]


@pytest.mark.parametrize("tracker, package", [("wandb", "wandb"), ("aim", "aim"), ("comet_ml", "comet_ml"), ("clearml", "clearml")])
def test_a_tracker_without_its_package_is_one_line_before_training(tracker, package, demo_corpus, tmp_path):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    out = tmp_path / "run"
    result = run_recipe(
        "bilstm_mfcc_ce.py",
        f"data.root={demo_corpus}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        f"train.output_dir={out}",
        f"train.report_to=[{tracker}]",
    )
    assert_one_line_error(result, f"train.report_to={tracker}: the {package} package is not installed", "pip install 'ser-dist[")
    assert not (out / "train.log").exists()  # before the run folder is written or any data read


def test_step_figures_and_hyperparameter_values():
    from ser_dist.tracking import hparam_values, metric_name, step_values

    assert hparam_values({"a": None, "b": [1, 2], "c": "x", "d": 0.5}) == {"b": "1,2", "c": "x", "d": 0.5}
    assert metric_name("happy/joy") == "happy_joy" and metric_name("Anger") == "Anger"

    class Optimizer:
        param_groups = [{"name": "head", "lr": 0.1}, {"name": "encoder", "lr": 0.0}]

    values = step_values(1.5, Optimizer(), 2.0, 1.0, 3)
    assert values == {
        "train/loss": 1.5,
        "train/lr/head": 0.1,
        "train/lr/encoder": 0.0,
        "train/skipped_steps": 3,
        "train/grad_norm": 2.0,
        "train/clipped": 1.0,
    }
    assert step_values(1.5, Optimizer(), 0.5, 1.0, 0)["train/clipped"] == 0.0
    assert step_values(1.5, Optimizer(), 5.0, None, 0)["train/clipped"] == 0.0  # no clipping configured
    assert "train/grad_norm" not in step_values(1.5, Optimizer(), None, 1.0, 0)


def test_a_cv_fold_run_is_named_with_its_cv_folder(tmp_path):
    """Every ``ser-dist cv`` (and grid cell) has folds fold_1 ... fold_K: the trackers' run name says whose fold it is."""
    from types import SimpleNamespace

    from ser_dist.tracking import run_name

    def named(out):
        return run_name(SimpleNamespace(train=SimpleNamespace(output_dir=str(out))))

    assert named(tmp_path / "bilstm_ce" / "fold_3") == "bilstm_ce/fold_3"
    assert named(tmp_path / "runs" / "bilstm_ce") == "bilstm_ce"
    assert named(tmp_path / "fold_notes") == "fold_notes"
