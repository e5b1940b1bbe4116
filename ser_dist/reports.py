"""Every report file ser-dist writes, and the text tables in them. Only the main process calls these.

- a training run (``write_training_reports``): metrics.json, confusion_matrix.png, classification_report.txt,
  test_predictions.csv, training_history.csv, training_curves.png and timing.json (with dimensional targets,
  dimensions_scatter.png, and no confusion matrix or classification report without classes);
- ``ser-dist evaluate`` (``write_evaluation_reports``): the same test reports and its data_report.json;
- an export's model card image (``plot_confusion_matrix``) and the study's results heatmap.

The figures are built in ``ser_dist.plots``. Written elsewhere, as they are not reports: the run's inputs
(config.yaml by ``config.save``, split.csv and data_report.json by the data layer, which reads them back),
checkpoints (``checkpoint``), train.log and TensorBoard events (``run_log``), the export (``serving.export``).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import UserError
from .plots import MISSING_CELL, confusion_matrix_figure, dimension_scatter_figure, study_heatmap_figure, training_curves_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PathLike = str | os.PathLike

# The comparative study's order; names not listed (or not matching a "prefix*") follow, alphabetically.
BACKBONE_ORDER = ("lstm", "bilstm", "vggish", "wav2vec2*", "hubert*")
LOSS_ORDER = ("ce", "label_smoothing", "focal", "aam", "ccc")
STUDY_METRICS = ("unweighted_accuracy", "weighted_accuracy")
_SHORT_METRIC_NAME = {"unweighted_accuracy": "UA", "weighted_accuracy": "WA"}


# --- a run's and an evaluation's reports -------------------------------------------------------


def write_training_reports(
    out: PathLike, results: dict, test: dict, *, history: Sequence[dict], label_names: list[str], test_records: list, timing: dict
) -> None:
    """A finished training run's reports: its test reports, its per-epoch history and curves, and its wall times."""
    out = Path(out)
    write_test_reports(out, results, test, label_names, test_records)
    write_history_csv(history, out / "training_history.csv")
    plot_training_curves(history, out / "training_curves.png")
    write_json(out / "timing.json", timing)  # apart: metrics.json depends only on config and data


def write_evaluation_reports(out: PathLike, results: dict, test: dict, scored_records: list, skipped: list[tuple[str, str]]) -> None:
    """``ser-dist evaluate``'s reports: the test reports of the clips scored, and data_report.json listing
    the clips that could not be decoded (path, reason)."""
    from .data.pipeline import clip_entry

    out = Path(out)
    write_test_reports(out, results, test, results["data"]["labels"], scored_records)
    write_json(
        out / "data_report.json",
        {
            "evaluated_on": results["evaluated_on"],
            "num_used": len(scored_records),
            "skipped_files": [clip_entry(p, r) for p, r in skipped],  # a dataset's rows also by split and row
        },
    )


def write_test_reports(out: PathLike, results: dict, test: dict, label_names: list[str], test_records: list) -> None:
    """metrics.json, confusion_matrix.png, classification_report.txt and test_predictions.csv for one scored set.

    ``test`` is ``scoring.evaluate``'s output (``index`` numbers ``test_records``); training and
    ``ser-dist evaluate`` both write their reports through here.
    """
    out = Path(out)
    write_json(out / "metrics.json", results)
    dimensions = test.get("dimensions") or []
    if dimensions:
        save_figure(dimension_scatter_figure(test["predicted_dimensions"], test["true_dimensions"], dimensions, test), out / DIMENSION_PLOT)
    if not label_names:  # dimensional targets alone: no classes to confuse
        write_dimension_predictions(out / "test_predictions.csv", test, test_records)
        return
    plot_confusion_matrix(test["confusion_matrix"], label_names, out / "confusion_matrix.png")
    (out / "classification_report.txt").write_text(classification_report_text(results["test"], label_names))
    rated = [f"{kind}_{name}" for name in dimensions for kind in ("true", "pred")]
    ratings = _dimension_cells(test)
    with open(out / "test_predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "predicted", "confidence", *[f"p_{name}" for name in label_names], *rated])
        for index, probs in sorted(zip(test["index"].tolist(), test["probabilities"]), key=lambda item: item[0]):
            rec = test_records[index]
            best = int(probs.argmax())
            cells = [rec.path, rec.label, label_names[best], f"{probs[best]:.6f}", *[f"{p:.6f}" for p in probs]]
            writer.writerow(cells + ratings.get(index, []))


DIMENSION_PLOT = "dimensions_scatter.png"


def _dimension_cells(test: dict) -> dict[int, list[str]]:
    """Per clip (``index``), its true and predicted value of each dimension, as test_predictions.csv writes them."""
    if not test.get("dimensions"):
        return {}
    pairs = zip(test["index"].tolist(), test["true_dimensions"], test["predicted_dimensions"])
    return {index: [f"{v:.6f}" for pair in zip(true, predicted) for v in pair] for index, true, predicted in pairs}


def write_dimension_predictions(path: Path, test: dict, test_records: list) -> None:
    """test_predictions.csv of a dimensional run: each clip's path, label (its class, if the data has one), and the
    true and predicted value of each dimension (on the model's scale: [0, 1] with data.dimension_range)."""
    ratings = _dimension_cells(test)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", *[f"{kind}_{name}" for name in test["dimensions"] for kind in ("true", "pred")]])
        for index in sorted(ratings):
            writer.writerow([test_records[index].path, test_records[index].label, *ratings[index]])


def write_json(path: PathLike, value) -> None:
    Path(path).write_text(json.dumps(value, indent=2))


# --- history CSV -------------------------------------------------------------------------------


def write_history_csv(rows: Sequence[dict], path: PathLike) -> Path:
    """Write one row per epoch (any keys; columns in first-seen order, gaps left empty).

    The file is replaced atomically, so a run killed mid-write keeps the previous complete history.
    """
    path = Path(path)
    columns: list[str] = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise TypeError(f"history row {index} is a {type(row).__name__}, expected a dict")
        columns.extend(key for key in row if key not in columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as handle:
        if columns:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows({key: ("" if value is None else value) for key, value in row.items()} for row in rows)
    os.replace(partial, path)
    return path


def read_history_csv(path: PathLike) -> list[dict]:
    """Read a history CSV back: numbers become int/float, True/False become bool, empty cells None."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no history file there; pass the history.csv inside a run's output_dir")
    with open(path, newline="") as handle:
        return [{key: _parse_cell(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def _parse_cell(text: str | None) -> Any:
    if text is None or text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


# --- figures -----------------------------------------------------------------------------------


def plot_training_curves(rows: Sequence[dict], path: PathLike) -> Path:
    """``plots.training_curves_figure`` (loss, validation UA/WA/macro-F1, learning rate) saved to ``path``."""
    return save_figure(training_curves_figure(rows), path)


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]] | np.ndarray,
    label_names: Sequence[str],
    path: PathLike,
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """``confusion_matrix_figure`` saved to ``path`` (format from the suffix, e.g. .png)."""
    return save_figure(confusion_matrix_figure(cm, label_names, normalize=normalize, title=title), path)


def save_figure(figure: Figure, path: PathLike, dpi: int = 120) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path


# --- classification report ---------------------------------------------------------------------


def classification_report_text(metrics: dict, label_names: Sequence[str], digits: int = 2) -> str:
    """scikit-learn's ``classification_report`` layout from a ``compute_metrics`` dict, plus UA/WA/macro-F1.

    Every label gets a row. As in scikit-learn, the macro avg row averages the classes present in the
    references or the predictions; the summary lines below the table give the headline numbers with
    four decimals.
    """
    per_class = metrics["per_class"]
    missing = [name for name in label_names if name not in per_class]
    if missing:
        raise ValueError(f"labels {missing} are not in the metrics' per_class (has {list(per_class)})")
    confusion = np.asarray(metrics["confusion_matrix"])
    present = (confusion.sum(axis=0) + confusion.sum(axis=1)) > 0
    if present.shape != (len(label_names),):
        raise ValueError(f"metrics are for {present.shape[0]} classes but {len(label_names)} label names were given")

    scores = np.array([[per_class[name][key] for key in ("precision", "recall", "f1")] for name in label_names])
    support = np.array([per_class[name]["support"] for name in label_names])
    total = int(support.sum())

    headers = ("precision", "recall", "f1-score", "support")
    width = max(max(len(name) for name in label_names), len("weighted avg"), digits)
    row_format = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    text = ("{:>{width}s} " + " {:>9}" * len(headers)).format("", *headers, width=width) + "\n\n"
    for name, (precision, recall, f1), count in zip(label_names, scores, support):
        text += row_format.format(name, precision, recall, f1, int(count), width=width, digits=digits)
    text += "\n"
    accuracy_format = "{:>{width}s} " + " {:>9}" * 2 + " {:>9.{digits}f}" + " {:>9}\n"
    text += accuracy_format.format("accuracy", "", "", metrics["weighted_accuracy"], total, width=width, digits=digits)
    text += row_format.format("macro avg", *scores[present].mean(axis=0), total, width=width, digits=digits)
    text += row_format.format("weighted avg", *(scores * support[:, None]).sum(axis=0) / max(total, 1), total, width=width, digits=digits)
    text += "\n"
    text += f"unweighted accuracy (UA): {metrics['unweighted_accuracy']:.4f}\n"
    text += f"weighted accuracy (WA):   {metrics['weighted_accuracy']:.4f}\n"
    text += f"macro F1:                 {metrics['macro_f1']:.4f}\n"
    return text


# --- comparative study -------------------------------------------------------------------------


def results_table(rows: Sequence[dict]) -> tuple[str, list[dict]]:
    """Backbone x loss table of UA and WA across folds.

    Each row has ``backbone``, ``loss`` and per-fold ``unweighted_accuracy`` and ``weighted_accuracy``
    (lists, or single numbers, of fractions in [0, 1]); rows with the same backbone and loss are
    pooled, so one row per fold works too. Returns

    * markdown: rows = backbones, columns = losses, cells ``UA 56.1 ± 1.2 / WA 57.3 ± 0.9`` (percent,
      ± = sample standard deviation across folds, left out for a single fold), ``—`` where no run exists;
    * csv_rows: one dict per (backbone, loss) run, in table order, with ``num_folds`` and the mean and
      sample std (fractions; std None for one fold) of each metric.
    """
    cells = _collect_study_cells(rows)
    backbones, losses = _study_axes(cells)
    lines = [
        "| backbone | " + " | ".join(losses) + " |",
        "|" + " --- |" * (len(losses) + 1),
    ]
    for backbone in backbones:
        texts = [_format_cell(cells[(backbone, loss)]) if (backbone, loss) in cells else MISSING_CELL for loss in losses]
        lines.append(f"| {backbone} | " + " | ".join(texts) + " |")

    csv_rows = []
    for backbone in backbones:
        for loss in losses:
            if (backbone, loss) not in cells:
                continue
            folds = cells[(backbone, loss)]
            row = {"backbone": backbone, "loss": loss, "num_folds": len(folds["unweighted_accuracy"])}
            for metric in STUDY_METRICS:
                mean, std = mean_and_std(folds[metric])
                row[f"{metric}_mean"] = mean
                row[f"{metric}_std"] = std
            csv_rows.append(row)
    return "\n".join(lines) + "\n", csv_rows


def plot_results_heatmap(rows: Sequence[dict], path: PathLike, metric: str = "unweighted_accuracy") -> Path:
    """Backbones x losses heatmap of the mean ``metric`` in percent, annotated with mean ± std; gaps grey."""
    if metric not in STUDY_METRICS:
        raise ValueError(f"metric={metric!r}: choose one of {STUDY_METRICS}")
    cells = _collect_study_cells(rows)
    backbones, losses = _study_axes(cells)
    means = np.full((len(backbones), len(losses)), np.nan)
    stds = np.full((len(backbones), len(losses)), np.nan)
    for (backbone, loss), folds in cells.items():
        mean, std = mean_and_std(folds[metric])
        means[backbones.index(backbone), losses.index(loss)] = 100 * mean
        if std is not None:
            stds[backbones.index(backbone), losses.index(loss)] = 100 * std
    figure = study_heatmap_figure(means, stds, backbones, losses, _SHORT_METRIC_NAME[metric])
    return save_figure(figure, path)


def study_order(names: Iterable[str], order: Sequence[str]) -> list[str]:
    """Sort names by their place in ``order`` (an entry ending in ``*`` matches a prefix); others after, A-Z."""

    def rank(name: str) -> tuple[int, str]:
        for position, pattern in enumerate(order):
            if name == pattern or (pattern.endswith("*") and name.startswith(pattern[:-1])):
                return position, name
        return len(order), name

    return sorted(set(names), key=rank)


def _collect_study_cells(rows: Sequence[dict]) -> dict[tuple[str, str], dict[str, list[float]]]:
    cells: dict[tuple[str, str], dict[str, list[float]]] = {}
    for index, row in enumerate(rows):
        for key in ("backbone", "loss") + STUDY_METRICS:
            if key not in row:
                raise UserError(
                    f"results row {index} has no {key!r}; each row needs backbone, loss, unweighted_accuracy, weighted_accuracy"
                )
        folds = {metric: _fold_values(row[metric], index, metric) for metric in STUDY_METRICS}
        if len(folds["unweighted_accuracy"]) != len(folds["weighted_accuracy"]):
            raise UserError(
                f"results row {index} ({row['backbone']}, {row['loss']}) has {len(folds['unweighted_accuracy'])} UA "
                f"but {len(folds['weighted_accuracy'])} WA values; give one of each per fold"
            )
        cell = cells.setdefault((str(row["backbone"]), str(row["loss"])), {metric: [] for metric in STUDY_METRICS})
        for metric in STUDY_METRICS:
            cell[metric].extend(folds[metric])
    if not cells:
        raise UserError("no results rows to tabulate")
    return cells


def _fold_values(value: Any, index: int, metric: str) -> list[float]:
    values = [float(item) for item in (value if isinstance(value, (list, tuple, np.ndarray)) else [value])]
    if not values:
        raise UserError(f"results row {index} has an empty {metric!r} list")
    for item in values:
        if not 0.0 <= item <= 1.0:
            raise UserError(f"results row {index}: {metric}={item} is outside [0, 1]; give fractions, not percent")
    return values


def _study_axes(cells: dict) -> tuple[list[str], list[str]]:
    return (
        study_order((backbone for backbone, _ in cells), BACKBONE_ORDER),
        study_order((loss for _, loss in cells), LOSS_ORDER),
    )


def mean_and_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1; None for a single value) of per-fold numbers."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), (float(array.std(ddof=1)) if array.size > 1 else None)


def _format_cell(folds: dict[str, list[float]]) -> str:
    parts = []
    for metric in STUDY_METRICS:
        mean, std = mean_and_std(folds[metric])
        parts.append(f"{_SHORT_METRIC_NAME[metric]} {100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}"))
    return " / ".join(parts)
