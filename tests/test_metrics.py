"""ser_dist.metrics against scikit-learn, directly and through evaluate.load."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

import ser_dist.metrics
from ser_dist.metrics import compute_metrics, load_metric


def random_predictions(seed: int, num_classes: int, size: int, class_weights=None, never_predicted=None):
    rng = np.random.default_rng(seed)
    references = rng.choice(num_classes, size=size, p=class_weights)
    # Right about 60% of the time, otherwise a uniform guess: scores well away from 0 and 1.
    predictions = np.where(rng.random(size) < 0.6, references, rng.integers(0, num_classes, size))
    if never_predicted is not None:
        predictions[predictions == never_predicted] = (never_predicted + 1) % num_classes
    return predictions, references


CASES = {
    "balanced_4": dict(seed=0, num_classes=4, size=200),
    "binary": dict(seed=1, num_classes=2, size=37),
    "imbalanced_5": dict(seed=2, num_classes=5, size=300, class_weights=[0.5, 0.25, 0.15, 0.07, 0.03]),
    "class_never_predicted": dict(seed=3, num_classes=4, size=120, never_predicted=2),
    "tiny": dict(seed=4, num_classes=3, size=5),
}


def assert_matches_sklearn(result: dict, predictions, references, num_classes: int) -> None:
    classes = list(range(num_classes))
    assert result["weighted_accuracy"] == pytest.approx(accuracy_score(references, predictions))
    assert result["unweighted_accuracy"] == pytest.approx(balanced_accuracy_score(references, predictions))
    assert result["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro", zero_division=0))
    assert result["weighted_f1"] == pytest.approx(f1_score(references, predictions, average="weighted", zero_division=0))
    precision, recall, f1, support = precision_recall_fscore_support(references, predictions, labels=classes, zero_division=0)
    per_class = list(result["per_class"].values())
    assert [row["precision"] for row in per_class] == pytest.approx(precision)
    assert [row["recall"] for row in per_class] == pytest.approx(recall)
    assert [row["f1"] for row in per_class] == pytest.approx(f1)
    assert [row["support"] for row in per_class] == support.tolist()
    assert result["confusion_matrix"] == confusion_matrix(references, predictions, labels=classes).tolist()
    assert result["num_examples"] == len(references)


# In "tiny" a class is predicted but never true: sklearn warns (UA leaves it out; see the module docstring).
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_matches_sklearn(case):
    predictions, references = random_predictions(**case)
    num_classes = case["num_classes"]
    result = compute_metrics(predictions, references, num_classes=num_classes)
    assert_matches_sklearn(result, predictions, references, num_classes)
    assert list(result["per_class"]) == [str(index) for index in range(num_classes)]


def test_class_never_predicted_scores_zero_precision_and_f1():
    predictions, references = random_predictions(**CASES["class_never_predicted"])
    assert 2 not in predictions and 2 in references
    never_predicted = compute_metrics(predictions, references, num_classes=4)["per_class"]["2"]
    assert never_predicted["precision"] == 0.0 and never_predicted["recall"] == 0.0 and never_predicted["f1"] == 0.0
    assert never_predicted["support"] > 0


def test_imbalanced_unweighted_and_weighted_accuracy_differ():
    predictions, references = random_predictions(**CASES["imbalanced_5"])
    result = compute_metrics(predictions, references, num_classes=5)
    assert abs(result["unweighted_accuracy"] - result["weighted_accuracy"]) > 0.02
    assert result["weighted_accuracy"] == pytest.approx(accuracy_score(references, predictions))
    assert result["unweighted_accuracy"] == pytest.approx(balanced_accuracy_score(references, predictions))


def test_hand_example_and_label_names():
    # 4 neutral clips all right; of 2 angry clips one is called neutral.
    result = compute_metrics([0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 1], num_classes=2, label_names=["neutral", "angry"])
    assert result["weighted_accuracy"] == pytest.approx(5 / 6)
    assert result["unweighted_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert result["per_class"]["angry"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert result["per_class"]["neutral"]["precision"] == pytest.approx(0.8)
    assert result["confusion_matrix"] == [[4, 0], [1, 1]]


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_class_absent_from_references_is_left_out_of_unweighted_accuracy():
    # Class 2 is only ever predicted: it has no recall, so UA averages classes 0 and 1 (sklearn's convention).
    references = [0, 0, 1, 1, 1, 0]
    predictions = [0, 2, 1, 1, 0, 0]
    result = compute_metrics(predictions, references, num_classes=4)
    assert result["unweighted_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert result["per_class"]["2"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # Class 3 is neither true nor predicted anywhere: not counted in macro-F1; class 2 is.
    assert_matches_sklearn(result, predictions, references, num_classes=4)


@pytest.mark.parametrize(
    "predictions, references, num_classes, label_names, message",
    [
        ([0, 1], [0], 2, None, "same length"),
        ([0, 3], [0, 1], 3, None, "outside \\[0, 3\\)"),
        ([0, 1], [-1, 1], 2, None, "outside"),
        ([[0.1, 0.9]], [1], 2, None, "argmax"),
        ([0.5, 1.0], [0, 1], 2, None, "integer class indices"),
        ([], [], 2, None, "no examples"),
        ([0, 1], [0, 1], 2, ["a", "b", "c"], "3 names but num_classes=2"),
        ([0, 1], [0, 1], 2, ["a", "a"], "distinct"),
    ],
)
def test_bad_input_raises_clear_error(predictions, references, num_classes, label_names, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(predictions, references, num_classes=num_classes, label_names=label_names)


def test_evaluate_load_gives_the_same_numbers(tmp_path):
    import evaluate

    names = ["angry", "happy", "neutral", "sad", "surprised"]
    predictions, references = random_predictions(**CASES["imbalanced_5"])
    expected = compute_metrics(predictions, references, num_classes=5, label_names=names)

    metric = evaluate.load(str(Path(ser_dist.metrics.__file__)), cache_dir=str(tmp_path))
    assert isinstance(metric, evaluate.Metric) and type(metric).__name__ == "SERMetrics"
    assert "unweighted accuracy" in metric.description.lower() and "Schuller" in metric.citation
    assert metric.compute(predictions=predictions, references=references, labels=names) == expected

    # Batched accumulation, num_classes given instead of names.
    metric = load_metric(keep_in_memory=True)
    for start in range(0, len(references), 64):
        metric.add_batch(predictions=predictions[start : start + 64], references=references[start : start + 64])
    by_batches = metric.compute(num_classes=5)
    assert by_batches["unweighted_accuracy"] == expected["unweighted_accuracy"]
    assert by_batches["confusion_matrix"] == expected["confusion_matrix"]
    assert list(by_batches["per_class"]) == ["0", "1", "2", "3", "4"]
