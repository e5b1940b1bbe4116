"""The figures in a run's and a study's reports: training curves, confusion matrix, predicted vs true dimensions,
the study's heatmap.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas rather than through
``pyplot``: no global backend is switched at import or call time (safe on headless nodes and in
notebooks), and figures are freed when dropped instead of piling up in pyplot's registry over a long
run. Each function returns such a Figure, which TensorBoard's ``add_figure`` accepts; the files are
written by ``ser_dist.reports``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MISSING_CELL = "—"  # a backbone x loss cell with no run, in the study's table and heatmap


def new_figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)  # Agg for this figure only; pyplot's global backend is left alone
    return figure


# --- training curves ---------------------------------------------------------------------------

_CURVE_PANELS = (
    ("loss", (("train_loss", "train"), ("val_loss", "validation"))),
    (
        "validation score (%)",
        (
            ("val_unweighted_accuracy", "UA"),
            ("val_weighted_accuracy", "WA"),
            ("val_macro_f1", "macro-F1"),
        ),
    ),
    ("learning rate", (("lr", "lr"),)),
)


def training_curves_figure(rows: Sequence[dict]) -> Figure:
    """Loss, validation UA/WA/macro-F1 and learning rate against epoch, one panel each.

    Series missing from the rows are left out, and so is a panel with none of its series.
    """
    if not rows:
        raise ValueError("no history rows to plot")
    epochs = np.array([_as_float(row.get("epoch", index + 1)) for index, row in enumerate(rows)])
    panels = [
        (title, [(label, np.array([_as_float(row.get(key)) for row in rows])) for key, label in series if any(key in row for row in rows)])
        for title, series in _CURVE_PANELS
    ]
    ccc_keys = [key for key in dict.fromkeys(k for row in rows for k in row) if key.startswith("val_ccc_")]
    if ccc_keys:  # dimensional targets: the validation CCC of each dimension and their mean, before the lr
        ccc = [(key.removeprefix("val_ccc_"), np.array([_as_float(row.get(key)) for row in rows])) for key in ccc_keys]
        panels.insert(len(panels) - 1, ("validation CCC", ccc))
    panels = [(title, series) for title, series in panels if series]
    if not panels:
        raise ValueError("history rows have none of train_loss, val_loss, val_unweighted_accuracy, val_weighted_accuracy, val_macro_f1, lr")

    from matplotlib.ticker import MaxNLocator

    figure = new_figure(figsize=(4.6 * len(panels), 3.6))
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
    return figure


def _as_float(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    return float(value)


# --- confusion matrix --------------------------------------------------------------------------


def confusion_matrix_figure(
    cm: Sequence[Sequence[int]] | np.ndarray,
    label_names: Sequence[str],
    normalize: bool = True,
    title: str | None = None,
) -> Figure:
    """Confusion matrix (rows = true, columns = predicted), each cell annotated with its count.

    With ``normalize`` the colour is the row-normalised share (per-class recall on the diagonal) and the
    share is printed under the count, so small classes are as readable as large ones.
    """
    counts = np.asarray(cm)
    num_classes = len(label_names)
    if counts.shape != (num_classes, num_classes):
        raise ValueError(
            f"confusion matrix has shape {counts.shape}, expected ({num_classes}, {num_classes}) for {num_classes} label names"
        )
    row_totals = counts.sum(axis=1, keepdims=True)
    if normalize:
        shade = np.divide(counts, row_totals, out=np.zeros(counts.shape, dtype=float), where=row_totals > 0)
        vmax = 1.0
    else:
        shade = counts.astype(float)
        vmax = max(float(shade.max()), 1.0)

    side = max(4.0, 1.2 + 0.75 * num_classes)
    figure = new_figure(figsize=(side + 1.2, side))
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


# --- dimensions ------------------------------------------------------------------------------


def dimension_scatter_figure(predicted: np.ndarray, true: np.ndarray, names: Sequence[str], scores: dict | None = None) -> Figure:
    """Predicted against true value of each dimension (one panel each, one point per clip), with the identity
    line; a panel's title has its CCC, Pearson's r and MAE when ``scores`` (``metrics.dimension_metrics``) has them."""
    predicted, true = np.asarray(predicted, dtype=float), np.asarray(true, dtype=float)
    figure = new_figure(figsize=(3.8 * len(names), 3.8))
    axes = figure.subplots(1, len(names), squeeze=False)[0]
    for k, (axis, name) in enumerate(zip(axes, names)):
        axis.scatter(true[:, k], predicted[:, k], s=10, alpha=0.6)
        values = np.concatenate([true[:, k], predicted[:, k]])
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        axis.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--")
        title = name
        if scores and f"ccc_{name}" in scores:
            title += f"\nCCC {scores[f'ccc_{name}']:.3f}, r {scores[f'pearson_{name}']:.3f}, MAE {scores[f'mae_{name}']:.3f}"
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("true")
        axis.set_ylabel("predicted")
        axis.grid(alpha=0.3)
    return figure


# --- the study's heatmap -----------------------------------------------------------------------


def study_heatmap_figure(means: np.ndarray, stds: np.ndarray, backbones: Sequence[str], losses: Sequence[str], metric_name: str) -> Figure:
    """Backbones x losses heatmap of a metric in percent (``means``; NaN where no run exists, shown grey
    with ``MISSING_CELL``), each cell annotated with its mean and ± ``stds`` (NaN for a single fold)."""
    from matplotlib import colormaps

    colour_map = colormaps["viridis"].with_extremes(bad="lightgrey")
    figure = new_figure(figsize=(max(4.5, 1.8 + 1.5 * len(losses)), max(3.0, 1.2 + 0.7 * len(backbones))))
    axis = figure.add_subplot()
    image = axis.imshow(np.ma.masked_invalid(means), cmap=colour_map, aspect="auto")
    low, high = image.get_clim()
    for row_index in range(len(backbones)):
        for column_index in range(len(losses)):
            mean, std = means[row_index, column_index], stds[row_index, column_index]
            if np.isnan(mean):
                axis.text(column_index, row_index, MISSING_CELL, ha="center", va="center", color="black")
                continue
            text = f"{mean:.1f}" + ("" if np.isnan(std) else f"\n± {std:.1f}")
            bright = high > low and (mean - low) / (high - low) > 0.6
            axis.text(column_index, row_index, text, ha="center", va="center", fontsize=9, color="black" if bright else "white")
    axis.set_xticks(range(len(losses)), labels=list(losses), rotation=30, ha="right")
    axis.set_yticks(range(len(backbones)), labels=list(backbones))
    axis.set_xlabel("loss")
    axis.set_ylabel("backbone")
    axis.set_title(f"{metric_name} (%), mean over folds")
    figure.colorbar(image, ax=axis, label=f"{metric_name} (%)")
    return figure
