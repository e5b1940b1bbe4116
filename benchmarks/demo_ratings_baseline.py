"""How learnable the demo corpus's arousal / valence / dominance ratings are, without a neural model.

    ser-dist make-demo-data demo_data
    python benchmarks/demo_ratings_baseline.py demo_data [--folds 5] [--alpha 30]

Speaker-independent cross-validation (``GroupKFold`` over the speakers in ``manifest.csv``), three predictors, each
scored with ser_dist's own ``dimension_metrics`` over every clip (CCC, Pearson's r, MAE, on the 1-5 scale):

* ``ridge``: ridge regression on utterance MFCC statistics (the mean and standard deviation over frames of 40 MFCCs),
  standardised on the training speakers: what a linear model hears;
* ``class_means``: each clip predicted as the training speakers' mean rating of its emotion (a perfect classifier's
  ceiling for a model that only knows the category);
* ``noiseless``: the ratings' own "true" values before the raters' noise (``demo_ratings.cue_scores``), the ceiling
  any model can reach against the noisy ratings.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np


def mfcc_statistics(paths: list[Path]) -> np.ndarray:
    import soundfile as sf
    import torch
    import torchaudio

    mfcc = torchaudio.transforms.MFCC(sample_rate=16000, n_mfcc=40, melkwargs=dict(n_fft=400, hop_length=160, n_mels=64))
    rows = []
    for path in paths:
        coefficients = mfcc(torch.from_numpy(sf.read(str(path), dtype="float32")[0]))
        rows.append(torch.cat([coefficients.mean(dim=1), coefficients.std(dim=1)]).numpy())
    return np.stack(rows)


def noiseless_ratings(rows: list[dict], seed: int) -> np.ndarray:
    """Each clip's value before the raters' noise, from its file name (``spk03_s07_anger_t1.wav``)."""
    from ser_dist.data.demo_ratings import DIMENSIONS, cue_scores
    from ser_dist.data.demo_voices import EMOTIONS

    values = []
    for row in rows:
        speaker, sentence, emotion, take = re.match(r"spk(\d+)_s(\d+)_([a-z]+)_t(\d+)", Path(row["path"]).stem).groups()
        index = [e.lower() for e in EMOTIONS].index(emotion)
        scores = cue_scores(seed, int(speaker) - 1, int(sentence) - 1, index, int(take))
        values.append([np.clip(3.0 + 1.2 * scores[name], 1.0, 5.0) for name in DIMENSIONS])
    return np.array(values)


def main(argv: list[str] | None = None) -> dict:
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ser_dist.data.demo_ratings import DIMENSIONS
    from ser_dist.metrics import dimension_metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="a demo corpus folder (ser-dist make-demo-data DIR)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=30.0, help="the ridge penalty")
    parser.add_argument("--seed", type=int, default=0, help="the seed the corpus was made with (for the noiseless values)")
    args = parser.parse_args(argv)
    with open(args.corpus / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ratings = np.array([[float(row[name]) for name in DIMENSIONS] for row in rows])
    speakers, labels = np.array([row["speaker"] for row in rows]), np.array([row["label"] for row in rows])
    features = mfcc_statistics([args.corpus / row["path"] for row in rows])
    predicted = {"ridge": np.zeros_like(ratings), "class_means": np.zeros_like(ratings)}
    for train, test in GroupKFold(n_splits=args.folds).split(features, ratings, speakers):
        model = make_pipeline(StandardScaler(), Ridge(alpha=args.alpha)).fit(features[train], ratings[train])
        predicted["ridge"][test] = model.predict(features[test])
        for label in np.unique(labels[test]):
            predicted["class_means"][test[labels[test] == label]] = ratings[train][labels[train] == label].mean(0)
    predicted["noiseless"] = noiseless_ratings(rows, args.seed)
    results = {name: dimension_metrics(values, ratings, list(DIMENSIONS)) for name, values in predicted.items()}
    print(f"{len(rows)} clips, {len(set(speakers))} speakers, {args.folds} speaker-independent folds")
    print(f"{'predictor':<12} " + " ".join(f"{'CCC ' + name:>14}" for name in [*DIMENSIONS, "mean"]))
    for name, scores in results.items():
        print(f"{name:<12} " + " ".join(f"{scores[f'ccc_{d}']:>14.3f}" for d in [*DIMENSIONS, "mean"]))
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
