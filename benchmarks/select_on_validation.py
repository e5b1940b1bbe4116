"""Settings chosen per fold on the validation split only: which of several `ser-dist cv` runs each fold reports.

    python benchmarks/select_on_validation.py CV_DIR [CV_DIR ...] [--out selected.md]

Each CV_DIR is one `ser-dist cv` of the same recipe and folds with other settings (e.g. optim.weight_decay; the
sweep of benchmarks/opensmile_baseline.sh). For every fold, the run with the best validation score of its
``train.metric`` (``best_val_unweighted_accuracy`` in its metrics.json: the fold's validation speaker(s), which
are training speakers of that fold, never its test speaker) is chosen, ties going to the CV_DIR given first; its
test UA / WA / macro-F1 are that fold's result. This is nested selection: no fold's test clips choose anything.
Prints (and with --out writes) a markdown table: per fold, the chosen settings and scores, then mean +- sample sd
over the folds, and each setting's mean validation score over the folds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from ser_dist.config import load, result_settings, setting_differences
from ser_dist.scoring import METRIC_KEYS

METRICS = ("unweighted_accuracy", "weighted_accuracy", "macro_f1")


def fold_runs(cv_dir: Path) -> dict[int, Path]:
    """fold number -> finished fold folder of one cv."""
    runs = {}
    for folder in sorted(cv_dir.glob("fold_*")):
        if (folder / "metrics.json").is_file() and folder.name.removeprefix("fold_").isdigit():
            runs[int(folder.name.removeprefix("fold_"))] = folder
    if not runs:
        raise SystemExit(f"select_on_validation.py: {cv_dir}: no finished fold (fold_K/metrics.json); run ser-dist cv first")
    return runs


def setting_labels(cv_dirs: list[Path]) -> list[str]:
    """What tells each cv's settings apart from the others' (fold 1's config.yaml), as key=value words."""
    configs = [load(next(iter(fold_runs(d).values())) / "config.yaml", check_values=False) for d in cv_dirs]
    keys = sorted({key for other in configs[1:] for key, _, _ in setting_differences(configs[0], other, ignore=("data.fold",))})
    if not keys:
        return [str(d) for d in cv_dirs]
    labels = []
    for config in configs:
        flat = result_settings(config)
        labels.append(" ".join(f"{key}={flat[key]}" for key in keys))
    return labels


def select(cv_dirs: list[Path]) -> str:
    runs = [fold_runs(d) for d in cv_dirs]
    folds = sorted(set.intersection(*(set(r) for r in runs)))
    labels = setting_labels(cv_dirs)
    metric = load(runs[0][folds[0]] / "config.yaml", check_values=False).train.metric
    val_key = "best_val_" + METRIC_KEYS[metric]
    metrics = [{fold: json.loads((r[fold] / "metrics.json").read_text()) for fold in folds} for r in runs]
    lines = [
        f"Per fold, the setting with the best validation {metric} ({val_key}); ties to the first given.",
        "",
        "| fold | test speaker(s) | chosen | val " + metric + " | test UA | test WA | test macro-F1 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    chosen_scores = {key: [] for key in METRICS}
    for fold in folds:
        values = [m[fold][val_key] for m in metrics]
        best = max(range(len(values)), key=lambda i: (values[i], -i))
        test = metrics[best][fold]["test"]
        speakers = " ".join(metrics[best][fold]["data"]["split"]["test"].get("speakers") or []) or "-"
        for key in METRICS:
            chosen_scores[key].append(100 * test[key])
        lines.append(
            f"| {fold} | {speakers} | {labels[best]} | {100 * values[best]:.2f} | "
            + " | ".join(f"{100 * test[key]:.2f}" for key in METRICS)
            + " |"
        )

    def mean_sd(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.2f} ± {sd:.2f}"

    lines += [
        f"| mean ± sd ({len(folds)} folds) | | | | " + " | ".join(mean_sd(chosen_scores[key]) for key in METRICS) + " |",
        "",
        f"Mean validation {metric} of each setting over the folds (what the choice above saw, fold by fold):",
        "",
        "| setting | mean val " + metric + " | chosen in folds |",
        "| --- | --- | --- |",
    ]
    for i, label in enumerate(labels):
        picks = [
            str(fold)
            for fold in folds
            if max(range(len(metrics)), key=lambda j: (metrics[j][fold][val_key], -j)) == i  # noqa: B023
        ]
        lines.append(f"| {label} | {mean_sd([100 * metrics[i][fold][val_key] for fold in folds])} | {', '.join(picks) or '-'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv_dirs", nargs="+", type=Path, help="ser-dist cv output folders (fold_K/ inside), one per setting")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    table = select(args.cv_dirs)
    print(table, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
