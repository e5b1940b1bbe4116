"""One leave-one-speaker-out table of several `ser-dist cv` runs, each paired fold by fold with a baseline.

    python benchmarks/paired_table.py --baseline NAME NAME=CV_DIR [NAME=CV_DIR ...] [--out table.md]
    python benchmarks/paired_table.py ... "MFCC logreg=CV_DIR#logreg"   # fold_K/logreg_baseline.json of each fold

Each CV_DIR is a finished `ser-dist cv` (its cv_summary.json and fold_K/metrics.json) over the same folds (the same
test speaker in each fold number: checked). Per model: the mean and sample sd over the folds of the test UA, its
mean validation UA (the only figure any setting was chosen by), the protocol (speaker-independent, or transductive
with ``model.feature_norm=speaker``), and against the baseline the paired per-fold difference (mean +- sd), the
paired t statistic (mean / (sd / sqrt(n))) and on how many folds it is better. Then the per-fold test UA of all.
``CV_DIR#logreg`` is the logistic regression on MFCC statistics that ``benchmarks/mfcc_logreg_baseline.py
CV_DIR/fold_*/`` fitted on each fold's own split (its C chosen on that fold's validation UA).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path


def load_logreg(cv_dir: Path) -> dict[int, dict]:
    """fold number -> the same for the MFCC-statistics logistic regression fitted on each fold's split."""
    folds = {}
    for fold, run in load_cv(cv_dir).items():
        result_file = cv_dir / f"fold_{fold}" / "logreg_baseline.json"
        if not result_file.is_file():
            raise SystemExit(f"paired_table.py: {result_file} is missing; run python benchmarks/mfcc_logreg_baseline.py {cv_dir}/fold_*/")
        result = json.loads(result_file.read_text())
        best_val = 100 * max(result["val_unweighted_accuracy_by_C"].values())
        folds[fold] = {**run, "ua": 100 * result["test"]["unweighted_accuracy"], "val_ua": best_val, "transductive": False}
    return folds


def load_cv(cv_dir: Path) -> dict[int, dict]:
    """fold number -> {"ua", "val_ua", "speakers", "transductive"} of one finished cv."""
    summary_file = cv_dir / "cv_summary.json"
    if not summary_file.is_file():
        raise SystemExit(f"paired_table.py: {summary_file} is missing; run ser-dist cv on {cv_dir} first")
    folds = {}
    for row in json.loads(summary_file.read_text())["folds"]:
        metrics = json.loads((cv_dir / f"fold_{row['fold']}" / "metrics.json").read_text())
        folds[int(row["fold"])] = {
            "ua": 100 * row["unweighted_accuracy"],
            "val_ua": 100 * metrics["best_val_unweighted_accuracy"] if "best_val_unweighted_accuracy" in metrics else float("nan"),
            "speakers": tuple(metrics["data"]["split"]["test"].get("speakers") or ()),
            "transductive": "transductive" in str(metrics.get("protocol", "")),
        }
    return folds


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(runs: dict[str, dict[int, dict]], baseline: str) -> str:
    if baseline not in runs:
        raise SystemExit(f"paired_table.py: --baseline {baseline} is not one of the given names ({', '.join(runs)})")
    folds = sorted(runs[baseline])
    for name, run in runs.items():
        if sorted(run) != folds:
            raise SystemExit(f"paired_table.py: {name} has folds {sorted(run)}, the baseline {folds}; compare runs over the same folds")
        for fold in folds:
            if run[fold]["speakers"] != runs[baseline][fold]["speakers"]:
                raise SystemExit(f"paired_table.py: fold {fold} of {name} tests other speakers than the baseline's; not the same folds")
    lines = [
        f"| model | protocol | test UA (mean ± sd, {len(folds)} folds) | mean val UA | paired difference to {baseline} | paired t | folds better |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    base = [runs[baseline][fold]["ua"] for fold in folds]
    for name, run in runs.items():
        ua = [run[fold]["ua"] for fold in folds]
        mean, sd = mean_sd(ua)
        val = statistics.mean(run[fold]["val_ua"] for fold in folds)
        protocol = "transductive (speaker norm)" if any(run[f]["transductive"] for f in folds) else "speaker-independent"
        if name == baseline:
            lines.append(f"| {name} | {protocol} | {mean:.2f} ± {sd:.2f} | {val:.2f} | (baseline) | | |")
            continue
        diff = [a - b for a, b in zip(ua, base)]
        d_mean, d_sd = mean_sd(diff)
        t = d_mean / (d_sd / math.sqrt(len(diff))) if d_sd > 0 else float("inf") * (1 if d_mean > 0 else -1 if d_mean < 0 else 0)
        better = sum(d > 0 for d in diff)
        lines.append(
            f"| {name} | {protocol} | {mean:.2f} ± {sd:.2f} | {val:.2f} | {d_mean:+.2f} ± {d_sd:.2f} | {t:.2f} | {better} of {len(folds)} |"
        )
    lines += ["", "| fold | test speaker(s) | " + " | ".join(runs) + " |", "| --- | --- | " + " | ".join("---" for _ in runs) + " |"]
    for fold in folds:
        speakers = " ".join(runs[baseline][fold]["speakers"]) or "-"
        lines.append(f"| {fold} | {speakers} | " + " | ".join(f"{run[fold]['ua']:.2f}" for run in runs.values()) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=CV_DIR, one per model (a ser-dist cv output folder)")
    parser.add_argument("--baseline", required=True, help="the NAME every other run is paired with")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    runs = {}
    for item in args.runs:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise SystemExit(f"paired_table.py: {item!r} is not NAME=CV_DIR")
        folder, _, kind = folder.partition("#")
        if kind not in ("", "logreg"):
            raise SystemExit(f"paired_table.py: {item!r}: #{kind} is not known (CV_DIR or CV_DIR#logreg)")
        runs[name] = load_logreg(Path(folder)) if kind == "logreg" else load_cv(Path(folder))
    text = table(runs, args.baseline)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
