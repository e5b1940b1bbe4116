"""Results across runs: the backbone x loss table, its CSV and heatmap, from cv folders or single runs.

``collect_results`` reads finished runs (``cv_summary.json`` of a cv folder, or a run's ``metrics.json`` and
``config.yaml``) into one row per fold, refusing damaged files, a run given twice and a cell that pools
runs of different settings; ``write_results`` writes ``results.md``, ``results.csv`` and ``results_heatmap.png``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

from .errors import UserError

CV_METRICS = ("unweighted_accuracy", "weighted_accuracy", "macro_f1")
CV_SUMMARY = "cv_summary.json"


def _read_results_json(path: Path) -> dict:
    """A run's ``metrics.json`` or a cv folder's ``cv_summary.json``; a damaged one is one line naming it."""
    try:
        tree = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        reason = getattr(err, "msg", None) or getattr(err, "strerror", None) or getattr(err, "reason", None) or str(err)
        raise UserError(
            f"{path}: not valid JSON ({reason}); it was cut short or edited: rerun the run (train.resume=auto) or leave it out of the report"
        ) from None
    if not isinstance(tree, dict):
        raise UserError(
            f"{path}: holds a {type(tree).__name__}, not a mapping; not a ser-dist results file: rerun the run or leave it out of the report"
        )
    return tree


def _metric_values(source: dict, path: Path, where: str) -> dict:
    """CV_METRICS from ``source`` (the ``where`` part of ``path``), each a fraction in [0, 1]."""
    values = {}
    for key in CV_METRICS:
        value = source.get(key) if isinstance(source, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):  # NaN fails too
            what = f"no {where}{key} (a fraction in [0, 1])" if value is None else f"{where}{key}={value!r} is not a fraction in [0, 1]"
            raise UserError(f"{path}: {what}; not a finished ser-dist run's results: rerun it or leave it out of the report")
        values[key] = value
    return values


def _run_folders(run_dir: Path, summary: dict | None) -> list[str]:
    """The real paths of the runs a report argument stands for: a cv folder's fold folders, else the run itself."""
    if summary is None:
        return [os.path.realpath(run_dir)]
    return [os.path.realpath(run_dir / f"fold_{fold.get('fold')}") for fold in summary["folds"]]


def collect_results(run_dirs: Sequence[str | os.PathLike]) -> list[dict]:
    """One row per fold for ``report.results_table``: from cv folders (``cv_summary.json``) or single runs.

    A single run's row and column come from its saved ``config.yaml`` (model.backbone, loss.name). A run
    given twice (the same folder, through a link, or a cv folder and one of its folds) is refused: it
    would count as two folds.
    """
    from . import config as config_module

    rows = []
    given: dict[str, Path] = {}  # real path of a run folder -> the argument that named it
    for run_dir in map(Path, run_dirs):
        summary_path = run_dir / CV_SUMMARY
        if summary_path.is_file():
            summary = _read_results_json(summary_path)
            for key in ("backbone", "loss"):
                if not isinstance(summary.get(key), str) or not summary[key]:
                    raise UserError(f"{summary_path}: no {key}; not a ser-dist cv summary: rerun ser-dist cv or leave it out of the report")
            folds = summary.get("folds")
            if not isinstance(folds, list) or not folds or not all(isinstance(fold, dict) for fold in folds):
                raise UserError(
                    f"{summary_path}: no folds list; not a ser-dist cv summary: rerun ser-dist cv or leave it out of the report"
                )
            fold_rows = [
                {
                    "backbone": summary["backbone"],
                    "loss": summary["loss"],
                    "run": f"{run_dir} fold {fold.get('fold')}",
                    "fingerprint": fold.get("config_fingerprint_without_fold"),
                    **_metric_values(fold, summary_path, f"folds[{i}]."),
                }
                for i, fold in enumerate(folds)
            ]
        else:
            summary = None
            metrics_path, config_path = run_dir / "metrics.json", run_dir / "config.yaml"
            if not (metrics_path.is_file() and config_path.is_file()):
                raise UserError(
                    f"{run_dir}: not a finished run (no {CV_SUMMARY}, or no metrics.json and config.yaml); pass run or cv folders"
                )
            exp = config_module.load(config_path)
            metrics = _read_results_json(metrics_path)
            fold_rows = [
                {
                    "backbone": exp.model.backbone,
                    "loss": exp.loss.name,
                    "run": str(run_dir),
                    "fingerprint": metrics.get("config_fingerprint_without_fold"),
                    **_metric_values(metrics.get("test"), metrics_path, "test."),
                }
            ]
        for folder in _run_folders(run_dir, summary):
            if folder in given:
                raise UserError(
                    f"{run_dir}: run {folder} is given twice (also through {given[folder]}), so it would count as two folds; "
                    "give each run once (a cv folder brings all its folds)"
                )
            given[folder] = run_dir
        rows.extend(fold_rows)
    if not rows:
        raise UserError("no runs given; pass finished run folders (train.output_dir) or cv folders")
    check_one_setting_per_cell(rows)
    return rows


def check_one_setting_per_cell(rows: list[dict]) -> None:
    """A table cell pools folds of one setting: runs whose settings (but the fold) differ are refused."""
    cells: dict[tuple[str, str], dict] = {}
    for row in rows:
        first = cells.setdefault((row["backbone"], row["loss"]), row)
        if row.get("fingerprint") != first.get("fingerprint"):
            raise UserError(
                f"{first['run']} and {row['run']} are both the {row['backbone']} x {row['loss']} cell but ran other settings "
                f"(fingerprints {first.get('fingerprint') or 'none recorded'} and {row.get('fingerprint') or 'none recorded'}; "
                "compare their config.yaml); report runs of one setting per cell"
            )


def write_results(rows: list[dict], out_dir: str | os.PathLike) -> dict[str, Path]:
    """``results.md`` (backbone x loss, UA / WA ± across folds), ``results.csv`` and ``results_heatmap.png``."""
    from .reports import plot_results_heatmap, results_table
    from .run_folder import make_output_folder

    out = make_output_folder(Path(out_dir))
    markdown, csv_rows = results_table(rows)
    num_folds = sorted({row["num_folds"] for row in csv_rows})
    note = (
        f"\nUA = unweighted accuracy (mean per-class recall), WA = weighted (plain) accuracy, in percent; "
        f"± = sample standard deviation across {'/'.join(map(str, num_folds))} fold(s). Runs: {len({row['run'] for row in rows})}.\n"
    )
    paths = {"markdown": out / "results.md", "csv": out / "results.csv", "heatmap": out / "results_heatmap.png"}
    paths["markdown"].write_text(markdown + note)
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(csv_rows[0]))
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in csv_rows)
    plot_results_heatmap(rows, paths["heatmap"])
    return paths
