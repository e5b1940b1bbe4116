"""Speech-emotion-recognition metrics: UA, WA, macro/weighted F1, per-class scores, confusion matrix; and for
dimensional emotion (arousal, valence, dominance) CCC, Pearson's r and MAE per dimension (``dimension_metrics``).

Two ways in, same numbers:

* ``from ser_dist.metrics import compute_metrics`` -- a plain numpy function (the trainer uses it on
  predictions gathered with ``accelerator.gather_for_metrics``);
* ``ser_dist.metrics.load_metric()`` or ``evaluate.load("path/to/ser_dist/metrics.py")`` -- the same
  computation as a local Hugging Face ``evaluate`` module, for code that speaks that API.

``evaluate`` copies this file into its module cache and imports it on its own, outside the
``ser_dist`` package, so it imports only numpy, datasets, evaluate and the standard library (no
``from ser_dist ...`` and no relative imports); datasets and evaluate only where the metric class is built.

Definitions, as in the SER literature (IEMOCAP et al.):

* ``weighted_accuracy`` (WA) = plain accuracy, correct / total. "Weighted" because each class counts
  in proportion to its number of clips.
* ``unweighted_accuracy`` (UA) = mean of the per-class recalls = scikit-learn's
  ``balanced_accuracy_score`` (a.k.a. UAR). Each class counts equally, whatever its size. Classes
  absent from the references have no recall and are left out of the mean (scikit-learn's convention;
  a class that is only predicted still lowers UA through the other classes' recalls).

The trap: some codebases swap the two names, calling the class-balanced score "weighted accuracy"
(each class is re-weighted by its inverse frequency) and plain accuracy "unweighted". Numbers copied
from such code into a UA/WA table end up in the wrong column. Here the names say what they are, and
``weighted_accuracy`` is always plain accuracy.

``macro_f1`` averages the per-class F1 over the classes present in the references or the predictions
(scikit-learn's ``f1_score(average="macro")`` without ``labels=``): a class the model never saw and
never predicted does not drag the average to 0. ``weighted_f1`` weights each class's F1 by its
support. Any 0/0 (precision of a never-predicted class, recall of an absent class) counts as 0, as
scikit-learn's ``zero_division=0``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# train.metric in the config uses the short names; the metric dicts use the full ones.
METRIC_BY_SHORT_NAME = {"ua": "unweighted_accuracy", "wa": "weighted_accuracy", "macro_f1": "macro_f1"}

_DESCRIPTION = """\
Speech-emotion-recognition classification metrics: unweighted accuracy (UA, mean per-class recall),
weighted accuracy (WA, plain accuracy), macro and weighted F1, per-class precision/recall/F1/support
and the confusion matrix (rows = true class, columns = predicted class).
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: predicted class indices (int), one per clip.
    references: true class indices (int), one per clip.
    num_classes: number of classes; default len(labels), else 1 + the largest index seen.
    labels: class names in index order (the keys of "per_class"); default "0", "1", ...
Returns:
    weighted_accuracy, unweighted_accuracy, macro_f1, weighted_f1 (floats in [0, 1]),
    per_class ({name: {precision, recall, f1, support}}), confusion_matrix (list of lists),
    num_examples (int).
"""

# UA as unweighted average recall for emotion recognition was popularised by the INTERSPEECH 2009
# Emotion Challenge; this is its summary paper.
_CITATION = r"""
@article{schuller2011recognising,
  title={Recognising realistic emotions and affect in speech: State of the art and lessons learnt from the first challenge},
  author={Schuller, Bj{\"o}rn and Batliner, Anton and Steidl, Stefan and Seppi, Dino},
  journal={Speech Communication},
  volume={53},
  number={9--10},
  pages={1062--1087},
  year={2011}
}
"""


def compute_metrics(
    predictions: Sequence[int],
    references: Sequence[int],
    num_classes: int,
    label_names: Sequence[str] | None = None,
) -> dict:
    """Score predicted class indices against the true ones; see the module docstring for definitions."""
    predicted = _as_class_indices(predictions, "predictions")
    true = _as_class_indices(references, "references")
    if predicted.shape != true.shape:
        raise ValueError(f"predictions ({predicted.size}) and references ({true.size}) must have the same length")
    if true.size == 0:
        raise ValueError("no examples to score: predictions and references are empty")
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be at least 1")
    for name, values in (("predictions", predicted), ("references", true)):
        if values.min() < 0 or values.max() >= num_classes:
            raise ValueError(
                f"{name} hold class index {values.min() if values.min() < 0 else values.max()}, "
                f"outside [0, {num_classes}) for num_classes={num_classes}"
            )
    if label_names is None:
        label_names = [str(index) for index in range(num_classes)]
    label_names = [str(name) for name in label_names]
    if len(label_names) != num_classes:
        raise ValueError(f"label_names has {len(label_names)} names but num_classes={num_classes}")
    if len(set(label_names)) != len(label_names):
        raise ValueError(f"label_names must be distinct, got {label_names}")

    confusion = np.bincount(true * num_classes + predicted, minlength=num_classes * num_classes)
    confusion = confusion.reshape(num_classes, num_classes)
    true_positives = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)  # clips per true class
    predicted_count = confusion.sum(axis=0)  # clips per predicted class
    precision = _divide_or_zero(true_positives, predicted_count)
    recall = _divide_or_zero(true_positives, support)
    # 2TP / (2TP + FP + FN) equals 2PR / (P + R) where both exist and is 0 where scikit-learn's is 0.
    f1 = _divide_or_zero(2 * true_positives, support + predicted_count)

    in_references = support > 0
    in_either = in_references | (predicted_count > 0)
    num_examples = int(true.size)
    return {
        "weighted_accuracy": float(true_positives.sum() / num_examples),
        "unweighted_accuracy": float(recall[in_references].mean()),
        "macro_f1": float(f1[in_either].mean()),
        "weighted_f1": float((f1 * support).sum() / num_examples),
        "per_class": {
            name: {
                "precision": float(precision[index]),
                "recall": float(recall[index]),
                "f1": float(f1[index]),
                "support": int(support[index]),
            }
            for index, name in enumerate(label_names)
        },
        "confusion_matrix": confusion.tolist(),
        "num_examples": num_examples,
    }


def load_metric(**load_kwargs):
    """This file as an ``evaluate`` metric (works offline: it is a local script, nothing is downloaded).

    ``load_kwargs`` go to ``evaluate.load`` (e.g. ``cache_dir=``, ``keep_in_memory=True``).
    """
    import evaluate

    return evaluate.load(str(Path(__file__).resolve()), **load_kwargs)


def _metric_class(evaluate):
    """``compute_metrics`` behind the ``evaluate`` API: ``metric.compute(predictions=..., references=..., labels=[...])``."""
    import datasets

    class SERMetrics(evaluate.Metric):
        __doc__ = _metric_class.__doc__

        def _info(self) -> evaluate.MetricInfo:
            return evaluate.MetricInfo(
                description=_DESCRIPTION,
                citation=_CITATION,
                inputs_description=_KWARGS_DESCRIPTION,
                features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            )

        def _compute(self, predictions, references, num_classes: int | None = None, labels: Sequence[str] | None = None) -> dict:
            if num_classes is None:
                if labels is not None:
                    num_classes = len(labels)
                else:
                    num_classes = 1 + max(max(predictions, default=-1), max(references, default=-1))
            return compute_metrics(predictions, references, num_classes=num_classes, label_names=labels)

    return SERMetrics


# ``import evaluate`` costs ~6 s (it imports transformers' pipelines), which every training process
# would pay for nothing. So the class exists at import time only when ``evaluate`` is already loaded,
# as it is when ``evaluate.load`` imports this file; otherwise ``ser_dist.metrics.SERMetrics`` builds
# it on first access.
if "evaluate" in sys.modules:
    SERMetrics = _metric_class(sys.modules["evaluate"])


def __getattr__(name: str):
    if name == "SERMetrics":
        import evaluate

        globals()["SERMetrics"] = _metric_class(evaluate)
        return globals()["SERMetrics"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def concordance(predictions, targets) -> float:
    """Lin's (1989) concordance correlation coefficient of two 1-D arrays, with population moments:
    ``2 cov / (var_p + var_y + (mean_p - mean_y)^2)``; 1 when both are the same constant, 0 when only one is."""
    p, y = np.asarray(predictions, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    denominator = p.var() + y.var() + (p.mean() - y.mean()) ** 2
    if denominator == 0:
        return 1.0
    return float(2 * np.mean((p - p.mean()) * (y - y.mean())) / denominator)


def pearson(predictions, targets) -> float:
    """Pearson's r of two 1-D arrays; 0 when either is constant (undefined there)."""
    p, y = np.asarray(predictions, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    spread = p.std() * y.std()
    return float(np.mean((p - p.mean()) * (y - y.mean())) / spread) if spread > 0 else 0.0


def dimension_metrics(predictions, targets, names: Sequence[str]) -> dict:
    """Dimensional emotion scores over every clip: ``ccc_<name>``, ``pearson_<name>``, ``mae_<name>`` for each column
    of ``predictions`` / ``targets`` [N, K] (in ``names`` order), and their means ``ccc_mean``, ``pearson_mean``,
    ``mae_mean``. The CCC is over the whole set, as the dimensional challenges score it (not a mean of batch CCCs)."""
    p, y = np.asarray(predictions, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 2 or p.shape[1] != len(names):
        raise ValueError(f"predictions {p.shape} and targets {y.shape} must both be [N, {len(names)}] (one column per dimension)")
    scores = {}
    for kind, score in (("ccc", concordance), ("pearson", pearson), ("mae", lambda a, b: float(np.mean(np.abs(a - b))))):
        values = [score(p[:, k], y[:, k]) for k in range(len(names))]
        scores.update({f"{kind}_{name}": value for name, value in zip(names, values)})
        scores[f"{kind}_mean"] = float(np.mean(values))
    return scores


def _as_class_indices(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of class indices, got shape {array.shape} (take argmax of logits first)")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not (np.issubdtype(array.dtype, np.floating) and np.all(np.mod(array, 1) == 0)):
            raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    return array.astype(np.int64)


def _divide_or_zero(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    result = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=result, where=denominator > 0)
    return result
