"""A classical baseline on exactly the clips of a finished run: logistic regression on utterance-level MFCC statistics.

    python benchmarks/mfcc_logreg_baseline.py RUN_DIR [--out RUN_DIR/logreg_baseline.json]
    python benchmarks/mfcc_logreg_baseline.py CV_DIR/fold_*/     # every fold of a `ser-dist cv` run: per fold, and mean +- sd

Reads ``RUN_DIR/split.csv`` (which clip went to train/val/test in the run) and ``RUN_DIR/config.yaml`` (sample
rate, crop), so the baseline sees the same speakers in the same splits as the neural model. Features: the
mean and standard deviation over frames of the 40 MFCCs and their deltas and delta-deltas (240-D), from the
same torchaudio front end the BiLSTM uses, without the per-utterance normalisation (which would erase the
means). Classifier: scikit-learn's multinomial logistic regression on standardised features, with C chosen
on the validation split by UA. Scored with ser_dist's own metrics (UA = mean per-class recall). Writes
``RUN_DIR/logreg_baseline.json`` for each run, with the run's own test metrics beside the baseline's.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np
import torch


@functools.cache
def _frontend(sample_rate: int):
    from ser_dist.models.features import MFCCFrontend

    return MFCCFrontend(sample_rate=sample_rate)


@functools.cache
def clip_statistics(path: str, sample_rate: int, max_seconds: float | None) -> np.ndarray:
    """One clip's 240-D statistics; cached, so the folds of a cross-validation decode each clip once."""
    import torchaudio

    from ser_dist.data.audio import load_audio

    waveform = load_audio(path, sample_rate)
    if max_seconds:
        waveform = waveform[: int(max_seconds * sample_rate)]
    with torch.inference_mode():
        mfcc = _frontend(sample_rate).mfcc(torch.from_numpy(waveform)[None])  # [1, 40, T]
        delta = torchaudio.functional.compute_deltas(mfcc)
        delta2 = torchaudio.functional.compute_deltas(delta)
        features = torch.cat([mfcc, delta, delta2], dim=1)[0]  # [120, T]
        return torch.cat([features.mean(1), features.std(1)]).numpy()


def utterance_statistics(paths: list[str], sample_rate: int, max_seconds: float | None) -> np.ndarray:
    return np.stack([clip_statistics(path, sample_rate, max_seconds) for path in paths])


def logreg_baseline(run_dir: Path) -> dict:
    """Fit and score the baseline on ``run_dir``'s split; the result also holds the run's own test metrics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ser_dist import config
    from ser_dist.data.split_file import read_split
    from ser_dist.metrics import compute_metrics

    exp = config.load(run_dir / "config.yaml")
    records, split = read_split(run_dir / "split.csv")
    labels = sorted({r.label for r in records}) if not exp.data.labels else list(exp.data.labels)
    label2id = {name: i for i, name in enumerate(labels)}
    features = utterance_statistics([r.path for r in records], exp.data.sample_rate, exp.data.max_seconds)
    targets = np.array([label2id[r.label] for r in records])

    def fit(c: float, indices: list[int]):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        return model.fit(features[indices], targets[indices])

    def score(model, indices: list[int]) -> dict:
        return compute_metrics(model.predict(features[indices]), targets[indices], len(labels), labels)

    grid = [0.001, 0.01, 0.1, 1.0, 10.0]
    val_ua = {c: score(fit(c, split["train"]), split["val"])["unweighted_accuracy"] for c in grid}
    best_c = max(grid, key=lambda c: (val_ua[c], -c))
    test = score(fit(best_c, split["train"]), split["test"])
    metrics = run_dir / "metrics.json"
    return {
        "baseline": "logistic regression on MFCC+delta+delta-delta mean/std (240-D)",
        "run_dir": str(run_dir),
        "C": best_c,
        "val_unweighted_accuracy_by_C": val_ua,
        "test": {k: test[k] for k in ("unweighted_accuracy", "weighted_accuracy", "macro_f1", "num_examples")},
        "neural_test": json.loads(metrics.read_text())["test"] if metrics.exists() else None,
    }


def _scores(test: dict) -> str:
    return f"UA {100 * test['unweighted_accuracy']:.2f}  WA {100 * test['weighted_accuracy']:.2f}  macro-F1 {100 * test['macro_f1']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    parser.add_argument(
        "--out", type=Path, default=None, help="with one RUN_DIR: where to write the JSON (default RUN_DIR/logreg_baseline.json)"
    )
    args = parser.parse_args()
    if args.out and len(args.run_dirs) > 1:
        parser.error("--out takes one RUN_DIR; with several, each run's result goes to RUN_DIR/logreg_baseline.json")

    for run_dir in args.run_dirs:
        if not (run_dir / "split.csv").is_file() or not (run_dir / "config.yaml").is_file():
            parser.error(
                f"{run_dir}: not a finished run (no split.csv and config.yaml); pass train.output_dir folders, e.g. CV_DIR/fold_*/"
            )
    results = []
    for run_dir in args.run_dirs:
        result = logreg_baseline(run_dir)
        out = args.out or run_dir / "logreg_baseline.json"
        out.write_text(json.dumps(result, indent=2))
        results.append(result)
        t = result["test"]
        print(f"{run_dir}: logistic regression (C={result['C']}) on {t['num_examples']} test clips: {_scores(t)}")
        if result["neural_test"]:
            print(f"{run_dir}: the run's model on the same clips:           {_scores(result['neural_test'])}")
        print(f"-> {out}")
    if len(results) > 1:
        for name, key in (("logistic regression", "test"), ("the runs' models", "neural_test")):
            ua = [100 * r[key]["unweighted_accuracy"] for r in results if r[key]]
            wa = [100 * r[key]["weighted_accuracy"] for r in results if r[key]]
            if ua:
                print(
                    f"{name}, {len(ua)} runs: UA {np.mean(ua):.2f} +- {np.std(ua, ddof=1) if len(ua) > 1 else 0.0:.2f}  "
                    f"WA {np.mean(wa):.2f} +- {np.std(wa, ddof=1) if len(wa) > 1 else 0.0:.2f} (mean +- sample sd)"
                )


if __name__ == "__main__":
    main()
