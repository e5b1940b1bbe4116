"""A cross-check of the opensmile recipes' linear models: scikit-learn's exact solvers on the same functionals and splits.

    python benchmarks/opensmile_sklearn_check.py CV_DIR [--C 1e-4,1e-3,...]

CV_DIR is a finished `ser-dist cv` of an opensmile recipe (fold_K/split.csv and config.yaml). For each fold, the
clips of its split.csv are decoded as the decode cache decodes them (16-bit samples, the run's rate and crop), their
functionals computed by the same extractor (ser_dist.models.smile), standardised with the training clips' statistics
(scikit-learn's StandardScaler on the train split), and LinearSVC (liblinear, one-vs-rest, ``loss="hinge"``) and
multinomial LogisticRegression (L2) fitted for each C; the C with the
best validation UA is chosen per fold (the test clips choose nothing) and its test UA / WA / macro-F1 reported, as
mean +- sample sd over the folds. A ser-dist model far below these would mean its optimisation, not the features,
limits it.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import numpy as np

from ser_dist.config import load
from ser_dist.data.audio import load_audio
from ser_dist.metrics import compute_metrics
from ser_dist.models.smile import OpenSmileFunctionals

METRICS = ("unweighted_accuracy", "weighted_accuracy", "macro_f1")


def fold_data(folder: Path, extractor: OpenSmileFunctionals, exp, cache: dict) -> tuple[dict, list[str]]:
    """({split name: (functionals [N, D], label indices [N])}, class names) for one fold's split.csv."""
    with open(folder / "split.csv") as handle:
        rows = list(csv.DictReader(handle))
    labels = sorted({row["label"] for row in rows})
    out = {}
    for split in ("train", "val", "test"):
        chosen = [row for row in rows if row["split"] == split]
        for row in chosen:
            if row["path"] not in cache:
                samples = load_audio(row["path"], exp.data.sample_rate)
                if exp.data.max_seconds:
                    samples = samples[: int(round(exp.data.max_seconds * exp.data.sample_rate))]
                cache[row["path"]] = extractor(np.rint(np.clip(samples, -1, 1) * 32767).astype(np.float32) / 32767)
        out[split] = (np.stack([cache[row["path"]] for row in chosen]), np.array([labels.index(row["label"]) for row in chosen]))
    return out, labels


def main(argv: list[str] | None = None) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv_dir", type=Path)
    parser.add_argument("--C", default="1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,0.1,0.3,1", help="the values of C to choose from, per fold")
    args = parser.parse_args(argv)
    folds = sorted((p for p in args.cv_dir.glob("fold_*") if (p / "split.csv").is_file()), key=lambda p: int(p.name[5:]))
    exp = load(folds[0] / "config.yaml", check_values=False)
    extractor = OpenSmileFunctionals(exp.model.smile_set, exp.data.sample_rate)
    models = {
        "LinearSVC (hinge)": lambda c: LinearSVC(C=c, loss="hinge", max_iter=50_000),
        "LogisticRegression": lambda c: LogisticRegression(C=c, max_iter=5_000),
    }
    scores = {name: {key: [] for key in METRICS} for name in models}
    cache: dict = {}
    for folder in folds:
        data, labels = fold_data(folder, extractor, exp, cache)
        scaler = StandardScaler().fit(data["train"][0])
        x = {split: scaler.transform(features) for split, (features, _) in data.items()}
        y = {split: targets for split, (_, targets) in data.items()}
        for name, make in models.items():
            best = None
            for c in (float(value) for value in args.C.split(",")):
                model = make(c).fit(x["train"], y["train"])
                val = compute_metrics(model.predict(x["val"]), y["val"], len(labels), labels)["unweighted_accuracy"]
                if best is None or val > best[0]:
                    best = (val, c, model)
            test = compute_metrics(best[2].predict(x["test"]), y["test"], len(labels), labels)
            for key in METRICS:
                scores[name][key].append(100 * test[key])
            print(f"{folder.name}: {name} C={best[1]:g} (val UA {100 * best[0]:.2f}) test UA {100 * test['unweighted_accuracy']:.2f}")
    for name, values in scores.items():
        shown = ", ".join(f"{key} {statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" for key, v in values.items())
        print(f"{name}, {len(folds)} folds, C per fold on validation UA: {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
