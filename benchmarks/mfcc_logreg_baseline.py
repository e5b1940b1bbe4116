"""A classical baseline on exactly the clips of a finished run: logistic regression on utterance-level MFCC statistics.

    python benchmarks/mfcc_logreg_baseline.py RUN_DIR [--out RUN_DIR/logreg_baseline.json]

Reads ``RUN_DIR/split.csv`` (which clip went to train/val/test in the run) and ``RUN_DIR/config.yaml`` (sample
rate, crop), so the baseline sees the same speakers in the same splits as the neural model. Features: the
mean and standard deviation over frames of the 40 MFCCs and their deltas and delta-deltas (240-D), from the
same torchaudio front end the BiLSTM uses, without the per-utterance normalisation (which would erase the
means). Classifier: scikit-learn's multinomial logistic regression on standardised features, with C chosen
on the validation split by UA. Scored with ser_dist's own metrics (UA = mean per-class recall).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def utterance_statistics(paths: list[str], sample_rate: int, max_seconds: float | None) -> np.ndarray:
    import torchaudio

    from ser_dist.data.audio import load_audio
    from ser_dist.models.features import MFCCFrontend

    frontend = MFCCFrontend(sample_rate=sample_rate)
    rows = []
    with torch.inference_mode():
        for path in paths:
            waveform = load_audio(path, sample_rate)
            if max_seconds:
                waveform = waveform[: int(max_seconds * sample_rate)]
            mfcc = frontend.mfcc(torch.from_numpy(waveform)[None])  # [1, 40, T]
            delta = torchaudio.functional.compute_deltas(mfcc)
            delta2 = torchaudio.functional.compute_deltas(delta)
            features = torch.cat([mfcc, delta, delta2], dim=1)[0]  # [120, T]
            rows.append(torch.cat([features.mean(1), features.std(1)]).numpy())
    return np.stack(rows)


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ser_dist import config
    from ser_dist.data.splits import read_split
    from ser_dist.metrics import compute_metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    exp = config.load(args.run_dir / "config.yaml")
    records, split = read_split(args.run_dir / "split.csv")
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
    result = {
        "baseline": "logistic regression on MFCC+delta+delta-delta mean/std (240-D)",
        "run_dir": str(args.run_dir),
        "C": best_c,
        "val_unweighted_accuracy_by_C": val_ua,
        "test": {k: test[k] for k in ("unweighted_accuracy", "weighted_accuracy", "macro_f1", "num_examples")},
        "neural_test": json.loads((args.run_dir / "metrics.json").read_text())["test"] if (args.run_dir / "metrics.json").exists() else None,
    }
    out = args.out or args.run_dir / "logreg_baseline.json"
    out.write_text(json.dumps(result, indent=2))
    t = result["test"]
    print(f"logistic regression (C={best_c}) on {t['num_examples']} test clips: UA {100 * t['unweighted_accuracy']:.2f}  WA {100 * t['weighted_accuracy']:.2f}  macro-F1 {100 * t['macro_f1']:.2f}")
    if result["neural_test"]:
        n = result["neural_test"]
        print(f"the run's model on the same clips:         UA {100 * n['unweighted_accuracy']:.2f}  WA {100 * n['weighted_accuracy']:.2f}  macro-F1 {100 * n['macro_f1']:.2f}")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
