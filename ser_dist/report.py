"""What a run leaves for people to read: history CSV, training curves, confusion matrix, reports, study tables.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas rather than through
``pyplot``: no global backend is switched at import or call time (safe on headless nodes and in
notebooks), and figures are freed when dropped instead of piling up in pyplot's registry over a long
run. ``confusion_matrix_figure`` returns such a Figure, which TensorBoard's ``add_figure`` accepts.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence, Union

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PathLike = Union[str, os.PathLike]

# The comparative study's order; names not listed (or not matching a "prefix*") follow, alphabetically.
BACKBONE_ORDER = ("lstm", "bilstm", "vggish", "wav2vec2*", "hubert*")
LOSS_ORDER = ("ce", "label_smoothing", "focal", "aam", "ccc")
STUDY_METRICS = ("unweighted_accuracy", "weighted_accuracy")
_SHORT_METRIC_NAME = {"unweighted_accuracy": "UA", "weighted_accuracy": "WA"}
MISSING_CELL = "—"


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


def _parse_cell(text: Optional[str]) -> Any:
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


# --- training curves ---------------------------------------------------------------------------

_CURVE_PANELS = (
    ("loss", (("train_loss", "train"), ("val_loss", "validation"))),
    ("validation score (%)", (
        ("val_unweighted_accuracy", "UA"),
        ("val_weighted_accuracy", "WA"),
        ("val_macro_f1", "macro-F1"),
    )),
    ("learning rate", (("lr", "lr"),)),
)


def plot_training_curves(rows: Sequence[dict], path: PathLike) -> Path:
    """Loss, validation UA/WA/macro-F1 and learning rate against epoch, one panel each, saved to ``path``.

    Series missing from the rows are left out, and so is a panel with none of its series.
    """
    if not rows:
        raise ValueError("no history rows to plot")
    epochs = np.array([_as_float(row.get("epoch", index + 1)) for index, row in enumerate(rows)])
    panels = [
        (title, [(label, np.array([_as_float(row.get(key)) for row in rows])) for key, label in series if any(key in row for row in rows)])
        for title, series in _CURVE_PANELS
    ]
    panels = [(title, series) for title, series in panels if series]
    if not panels:
        raise ValueError("history rows have none of train_loss, val_loss, val_unweighted_accuracy, val_weighted_accuracy, val_macro_f1, lr")

    from matplotlib.ticker import MaxNLocator

    figure = _new_figure(figsize=(4.6 * len(panels), 3.6))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (title, series) in zip(axes, panels):
        for label, values in series:
            if title.endswith("(%)"):
                values = 100 * values
            axis.plot(epochs, values, marker="o", markersize=3, label=label)
        if title == "learning rate":
            positive = np.concatenate([values[np.isfinite(values)] for _, values in series])
            if positive.size and np.all(positive > 0):
                axis.set_yscale("log")
        else:
            axis.legend()
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    return _save(figure, path)


def _as_float(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    return float(value)


# --- confusion matrix --------------------------------------------------------------------------

def confusion_matrix_figure(
    cm: Union[Sequence[Sequence[int]], np.ndarray],
    label_names: Sequence[str],
    normalize: bool = True,
    title: Optional[str] = None,
) -> "Figure":
    """Confusion matrix (rows = true, columns = predicted), each cell annotated with its count.

    With ``normalize`` the colour is the row-normalised share (per-class recall on the diagonal) and the
    share is printed under the count, so small classes are as readable as large ones.
    """
    counts = np.asarray(cm)
    num_classes = len(label_names)
    if counts.shape != (num_classes, num_classes):
        raise ValueError(f"confusion matrix has shape {counts.shape}, expected ({num_classes}, {num_classes}) for {num_classes} label names")
    row_totals = counts.sum(axis=1, keepdims=True)
    if normalize:
        shade = np.divide(counts, row_totals, out=np.zeros(counts.shape, dtype=float), where=row_totals > 0)
        vmax = 1.0
    else:
        shade = counts.astype(float)
        vmax = max(float(shade.max()), 1.0)

    side = max(4.0, 1.2 + 0.75 * num_classes)
    figure = _new_figure(figsize=(side + 1.2, side))
    axis = figure.add_subplot()
    image = axis.imshow(shade, cmap="Blues", vmin=0.0, vmax=vmax)
    for true_index in range(num_classes):
        for predicted_index in range(num_classes):
            count = int(counts[true_index, predicted_index])
            text = str(count)
            if normalize and row_totals[true_index, 0] > 0:
                text += f"\n{100 * shade[true_index, predicted_index]:.0f}%"
            dark = shade[true_index, predicted_index] > 0.5 * vmax
            axis.text(predicted_index, true_index, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    axis.set_xticks(range(num_classes), labels=list(label_names), rotation=45, ha="right")
    axis.set_yticks(range(num_classes), labels=list(label_names))
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if title:
        axis.set_title(title)
    figure.colorbar(image, ax=axis, label="share of the true class" if normalize else "clips")
    return figure


def plot_confusion_matrix(
    cm: Union[Sequence[Sequence[int]], np.ndarray],
    label_names: Sequence[str],
    path: PathLike,
    normalize: bool = True,
    title: Optional[str] = None,
) -> Path:
    """``confusion_matrix_figure`` saved to ``path`` (format from the suffix, e.g. .png)."""
    return _save(confusion_matrix_figure(cm, label_names, normalize=normalize, title=title), path)


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
    for (backbone, loss), folds in cells.items():
        means[backbones.index(backbone), losses.index(loss)] = 100 * mean_and_std(folds[metric])[0]

    from matplotlib import colormaps

    colour_map = colormaps["viridis"].with_extremes(bad="lightgrey")
    figure = _new_figure(figsize=(max(4.5, 1.8 + 1.5 * len(losses)), max(3.0, 1.2 + 0.7 * len(backbones))))
    axis = figure.add_subplot()
    image = axis.imshow(np.ma.masked_invalid(means), cmap=colour_map, aspect="auto")
    low, high = image.get_clim()
    for row_index, backbone in enumerate(backbones):
        for column_index, loss in enumerate(losses):
            if (backbone, loss) not in cells:
                axis.text(column_index, row_index, MISSING_CELL, ha="center", va="center", color="black")
                continue
            mean, std = mean_and_std(cells[(backbone, loss)][metric])
            text = f"{100 * mean:.1f}" + ("" if std is None else f"\n± {100 * std:.1f}")
            bright = high > low and (100 * mean - low) / (high - low) > 0.6
            axis.text(column_index, row_index, text, ha="center", va="center", fontsize=9, color="black" if bright else "white")
    axis.set_xticks(range(len(losses)), labels=losses, rotation=30, ha="right")
    axis.set_yticks(range(len(backbones)), labels=backbones)
    axis.set_xlabel("loss")
    axis.set_ylabel("backbone")
    short = _SHORT_METRIC_NAME[metric]
    axis.set_title(f"{short} (%), mean over folds")
    figure.colorbar(image, ax=axis, label=f"{short} (%)")
    return _save(figure, path)


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
                raise UserError(f"results row {index} has no {key!r}; each row needs backbone, loss, unweighted_accuracy, weighted_accuracy")
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


def mean_and_std(values: Sequence[float]) -> tuple[float, Optional[float]]:
    """Mean and sample standard deviation (ddof=1; None for a single value) of per-fold numbers."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), (float(array.std(ddof=1)) if array.size > 1 else None)


def _format_cell(folds: dict[str, list[float]]) -> str:
    parts = []
    for metric in STUDY_METRICS:
        mean, std = mean_and_std(folds[metric])
        parts.append(f"{_SHORT_METRIC_NAME[metric]} {100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}"))
    return " / ".join(parts)


# --- figures -----------------------------------------------------------------------------------

def _new_figure(figsize: tuple[float, float]) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)  # Agg for this figure only; pyplot's global backend is left alone
    return figure


def _save(figure: "Figure", path: PathLike, dpi: int = 120) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path
