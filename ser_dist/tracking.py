"""A run's experiment trackers, through Accelerate's tracker API (``Accelerator(log_with=...)``,
``init_trackers``, ``accelerator.log``, ``end_training``): ``train.report_to`` names them.

- ``tensorboard`` (the default) writes ``OUTPUT_DIR/tensorboard``: ``tensorboard --logdir OUTPUT_DIR/tensorboard``.
- ``mlflow``, ``wandb``, ``aim``, ``comet_ml``, ``clearml`` take their usual configuration (``MLFLOW_TRACKING_URI``,
  ``WANDB_MODE=offline``, API keys, ...); their project is ``train.project`` and the run's name is its output folder's (``run_name``).
  A tracker whose package is missing is one line before anything runs (Accelerate would drop it silently).

What is logged (``ser_dist.trainer`` calls these on every process; only the main process writes):
per optimizer step every ``train.log_every_steps``: ``train/loss``, ``train/lr/GROUP``, ``train/grad_norm``
(before clipping), ``train/clipped``, ``train/skipped_steps``; per epoch, at its last step: ``epoch/*`` (its
number ``epoch/epoch``, losses, validation UA/WA/macro-F1 and recall per class, with dimensional targets the validation
CCC per dimension and their mean (``epoch/val_ccc_NAME``), lr per group, throughput, padding, loader
wait, peak memory, frozen parts) and the validation confusion matrix as an image; at the end ``test/*`` (CCC, Pearson
and MAE per dimension too) and the test confusion matrix. Every figure's x axis is the optimizer step (as in Accelerate's and transformers'
examples; W&B refuses a step lower than one it has seen). The resolved config is the run's hyperparameters: TensorBoard's HPARAMS view has them with
the test UA/WA/macro-F1 as its metrics; MLflow gets them as params and the run's report files as artifacts.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

from .errors import ConfigError, TrainingError

# tracker -> (package to import, ser-dist's pip extra)
PACKAGES = {
    "tensorboard": ("tensorboard", None),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
    "aim": ("aim", "aim"),
    "comet_ml": ("comet_ml", "comet"),
    "clearml": ("clearml", "clearml"),
}
TEST_METRICS = ("unweighted_accuracy", "weighted_accuracy", "macro_f1")
STATE_FILE = "trackers.json"
# the run's report files (ser_dist.reports) MLflow keeps as the run's artifacts
REPORT_FILES = (
    "metrics.json",
    "confusion_matrix.png",
    "classification_report.txt",
    "training_curves.png",
    "config.yaml",
    "dimensions_scatter.png",  # data.targets=dimensional|both; a file a run does not write is skipped
)  # the MLflow run a resumed run continues


def check_trackers(report_to: list[str]) -> None:
    """Each tracker's package importable, as Accelerate checks it, else one line naming the install."""
    from accelerate.utils import imports

    for name in report_to:
        if name not in PACKAGES:
            raise ConfigError(f"train.report_to: unknown tracker {name!r}; choose from {', '.join(PACKAGES)}")
        available = getattr(imports, f"is_{name}_available")
        if not available():
            package, extra = PACKAGES[name]
            install = f"pip install 'ser-dist[{extra}]' (or pip install {package})" if extra else f"pip install {package}"
            raise ConfigError(
                f"train.report_to={name}: the {package} package is not installed; {install}, or leave {name} out of train.report_to"
            )


def log_with(exp) -> list:
    """``Accelerator(log_with=...)`` for ``train.report_to``: TensorBoard and MLflow as trackers built here
    (their folder and names), the others by name (``init_trackers`` builds them)."""
    check_trackers(exp.train.report_to)
    out = Path(exp.train.output_dir)
    trackers = []
    for name in exp.train.report_to:
        if name == "tensorboard":
            from accelerate.tracking import TensorBoardTracker

            trackers.append(TensorBoardTracker("tensorboard", str(out)))
        elif name == "mlflow":
            from accelerate.tracking import MLflowTracker

            trackers.append(MLflowTracker(experiment_name=exp.train.project, run_name=run_name(exp), tags={"ser_dist.recipe": exp.name}))
        else:
            trackers.append(name)
    return trackers


def run_name(exp) -> str:
    """The output folder's name; a ``ser-dist cv`` fold's (``OUT/fold_K``) with its cv folder's, ``OUT/fold_K``: every
    cv run and grid cell has folds ``fold_1`` ... ``fold_K``, which alone would not say whose fold a run is."""
    out = Path(exp.train.output_dir).resolve()
    return f"{out.parent.name}/{out.name}" if re.fullmatch(r"fold_\d+", out.name) and out.parent.name else out.name


class Trackers:
    """The run's trackers, started by ``start`` once the run knows whether it resumes."""

    def __init__(self, accelerator, exp):
        self.accelerator, self.exp = accelerator, exp
        self.out = Path(exp.train.output_dir)
        self.active = bool(exp.train.report_to)

    def start(self, hparams: dict, resumed: bool) -> None:
        if not self.active:
            return
        accelerator = self.accelerator
        state = self._saved_state() if resumed else {}
        for tracker in accelerator.log_with:
            if getattr(tracker, "name", None) == "mlflow" and state.get("mlflow_run_id"):
                tracker.run_id = state["mlflow_run_id"]  # continue the interrupted run's MLflow run
        name = run_name(self.exp)
        init_kwargs = {
            "wandb": {"name": name, "dir": str(self.out)},
            "aim": {"experiment": self.exp.train.project},
            "clearml": {"task_name": name},
        }
        try:
            accelerator.init_trackers(self.exp.train.project, config=None, init_kwargs=init_kwargs)
        except Exception as err:  # a tracker's own setup (its URI, login, server): one line, before training starts
            self.abort(err)  # the trackers that did start (an MLflow run) end here, not RUNNING
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TrainingError(
                f"train.report_to={','.join(self.exp.train.report_to)}: a tracker failed to start: {reason}; fix its setup "
                "(e.g. MLFLOW_TRACKING_URI=sqlite:///mlflow.db, WANDB_MODE=offline) or leave it out of train.report_to"
            ) from None
        with self.closed_on_error():
            self._write_start(hparams, resumed, state)

    def _write_start(self, hparams: dict, resumed: bool, state: dict) -> None:
        accelerator = self.accelerator
        if not accelerator.is_main_process:
            return
        values = hparam_values(hparams)
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                if not resumed:  # the interrupted run's events already hold the session's start
                    _write_hparams(tracker.writer, values, end=False, metrics=hparam_metrics(self.exp))
            elif not (tracker.name == "mlflow" and state.get("mlflow_run_id")):  # MLflow params can't change in a run
                tracker.store_init_configuration(values)
            if tracker.name == "mlflow":
                (self.out / STATE_FILE).write_text(json.dumps({"mlflow_run_id": tracker.active_run.info.run_id}))

    @contextlib.contextmanager
    def closed_on_error(self):
        """A run that raises (or is interrupted) ends its trackers on the way out (``abort``)."""
        try:
            yield
        except BaseException as err:
            self.abort(err)
            raise

    def abort(self, err: BaseException) -> None:
        """End the trackers of a run that failed: its MLflow run FAILED (KILLED on Ctrl-C) rather than left
        RUNNING, which MLflow marks FINISHED at exit and which makes the next run in this process (the next
        ``ser-dist cv`` fold, a notebook's next ``train``) fail to start; TensorBoard's events written out."""
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        for tracker in list(self.accelerator.trackers):
            try:
                if tracker.name == "mlflow":
                    import mlflow

                    mlflow.end_run(status=status)
                else:
                    tracker.finish()
            except Exception:  # noqa: BLE001  a tracker that never started, or whose own end fails: the run's error matters
                pass
        self.accelerator.trackers.clear()

    def _saved_state(self) -> dict:
        try:
            return json.loads((self.out / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def log(self, values: dict, step: int) -> None:
        if self.active:
            self.accelerator.log(values, step=step)

    def confusion(self, tag: str, confusion: list, label_names: list[str], step: int) -> None:
        """A confusion matrix as an image: in TensorBoard (and W&B / Aim); MLflow gets the test one as a file."""
        if not (self.active and self.accelerator.is_main_process):
            return
        import matplotlib.pyplot as plt

        from .plots import confusion_matrix_figure

        figure = confusion_matrix_figure(confusion, label_names)
        try:
            for tracker in self.accelerator.trackers:
                if tracker.name == "tensorboard":
                    tracker.writer.add_figure(tag, figure, step, close=False)
                elif tracker.name in ("wandb", "aim"):
                    tracker.log_images({tag: [_rgb(figure)]}, step=step)
        finally:
            plt.close(figure)

    def finish(self, test: dict, label_names: list[str], step: int) -> None:
        """The test metrics and confusion matrix, the hyperparameters' end (TensorBoard) and the report
        files (MLflow). ``accelerator.end_training`` closes the trackers."""
        if not self.active:
            return
        self.log(test_values(test, label_names), step)
        if label_names:
            self.confusion("test/confusion_matrix", test["confusion_matrix"], label_names, step)
        artifacts = [self.out / name for name in REPORT_FILES]
        if self.accelerator.is_main_process:
            for tracker in self.accelerator.trackers:
                if tracker.name == "tensorboard":
                    _write_hparams(tracker.writer, {}, end=True)
                    tracker.writer.flush()
                elif tracker.name == "mlflow":
                    for path in artifacts:
                        if path.exists():
                            tracker.log_artifact(str(path))


def run_hparams(exp, accelerator, num_parameters: int, report: dict) -> dict:
    """The trackers' hyperparameters: the resolved config, and what the run found (processes, parameters, clips)."""
    from .config import to_dict
    from .overrides import flatten

    found = {
        f"run.{name}_clips": split["num_clips"]
        for name, split in report["splits"].items()
        if isinstance(split, dict) and "num_clips" in split
    }
    return {**flatten(to_dict(exp)), "run.num_processes": accelerator.num_processes, "run.num_parameters": num_parameters, **found}


def hparam_values(hparams: dict) -> dict:
    """Flat ``section.key`` values as trackers take them: lists as text, None left out."""
    values = {}
    for key, value in hparams.items():
        if value is None:
            continue
        values[key] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    return values


def hparam_metrics(exp) -> tuple[str, ...]:
    """The test metrics TensorBoard's HPARAMS view lists for the run: UA / WA / macro-F1 with classes, the CCC of each
    dimension and their mean with dimensional targets."""
    targets = exp.data.targets
    dimensions = tuple(f"ccc_{name}" for name in [*exp.data.dimension_columns, "mean"]) if targets != "categorical" else ()
    return (TEST_METRICS if targets != "dimensional" else ()) + dimensions


def _write_hparams(writer, values: dict, end: bool, metrics: tuple[str, ...] = TEST_METRICS) -> None:
    """TensorBoard's HPARAMS view: the session's start (its hyperparameters, and the test metrics it will
    report), or its end. The metrics' values are the ``test/*`` scalars of the same run folder."""
    from torch.utils.tensorboard.summary import hparams

    experiment, start, finished = hparams(values or {"name": ""}, {f"test/{metric_name(key)}": 0.0 for key in metrics})
    if end:
        writer.file_writer.add_summary(finished)
    else:
        writer.file_writer.add_summary(experiment)
        writer.file_writer.add_summary(start)


def metric_name(name: str) -> str:
    """A class name as a metric key part: what MLflow accepts (letters, digits, _ - . space /)."""
    return re.sub(r"[^\w.\- ]", "_", str(name)) or "_"


def _rgb(figure):
    import numpy as np

    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def lr_values(prefix: str, optimizer) -> dict:
    """The lr of each parameter group (``head``, ``encoder``, ...): ``PREFIX/lr/NAME``."""
    return {f"{prefix}/lr/{group.get('name', i)}": float(group["lr"]) for i, group in enumerate(optimizer.param_groups)}


def step_values(loss: float, optimizer, grad_norm, max_grad_norm: float | None, skipped_steps: int) -> dict:
    """An optimizer step's figures: loss, lr per group, gradient norm before clipping, clipped or not."""
    values = {"train/loss": loss, **lr_values("train", optimizer), "train/skipped_steps": skipped_steps}
    if grad_norm is not None:  # DeepSpeed reports it after its step only
        norm = float(grad_norm)
        values["train/grad_norm"] = norm
        values["train/clipped"] = float(bool(max_grad_norm) and norm > max_grad_norm)
    return values


def epoch_values(row: dict, val: dict, figures: dict, optimizer, frozen: set[str], label_names: list[str]) -> dict:
    """An epoch's figures: losses, validation scores and recall per class, lr per group, cost, frozen parts."""
    keys = ("train_loss", "val_loss", "val_unweighted_accuracy", "val_weighted_accuracy", "val_macro_f1")
    values = {f"epoch/{key}": row[key] for key in keys if key in row}
    values.update({f"epoch/{metric_name(key)}": value for key, value in row.items() if key.startswith("val_ccc_")})
    values["epoch/epoch"] = row["epoch"]
    values["epoch/nonfinite_steps"] = row["nonfinite_steps"]
    values.update({f"epoch/val_recall/{metric_name(name)}": val["per_class"][name]["recall"] for name in label_names})
    values.update(lr_values("epoch", optimizer))
    values.update({f"epoch/{key}": value for key, value in figures.items()})
    parts = {group.get("part") for group in optimizer.param_groups} & {"encoder", "feature_encoder"}
    values.update({f"epoch/frozen/{part}": float(part in frozen) for part in sorted(parts)})
    return values


def test_values(test: dict, label_names: list[str]) -> dict:
    values = {f"test/{key}": test[key] for key in TEST_METRICS if key in test}
    values["test/loss"] = test["loss"]
    names = [*test.get("dimensions", []), "mean"] if test.get("dimensions") else []
    values.update({f"test/{metric_name(f'{kind}_{name}')}": test[f"{kind}_{name}"] for name in names for kind in ("ccc", "pearson", "mae")})
    values.update({f"test/recall/{metric_name(name)}": test["per_class"][name]["recall"] for name in label_names})
    return values
