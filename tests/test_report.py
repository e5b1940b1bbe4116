"""ser_dist.reports and ser_dist.plots: files that open, numbers that are right, study tables to the character."""

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread
from sklearn.metrics import classification_report

from ser_dist.errors import UserError
from ser_dist.metrics import compute_metrics
from ser_dist.plots import confusion_matrix_figure
from ser_dist.reports import (
    classification_report_text,
    plot_confusion_matrix,
    plot_results_heatmap,
    plot_training_curves,
    read_history_csv,
    results_table,
    study_order,
    write_history_csv,
)

LABELS = ["angry", "happy", "neutral", "sad"]


def history(epochs: int = 5) -> list[dict]:
    return [
        {
            "epoch": epoch,
            "train_loss": 1.4 / epoch,
            "val_loss": 1.5 / epoch + 0.01,
            "val_unweighted_accuracy": 0.30 + 0.05 * epoch,
            "val_weighted_accuracy": 0.33 + 0.04 * epoch,
            "val_macro_f1": 0.28 + 0.05 * epoch,
            "lr": 1e-3 * 0.5 ** (epoch - 1),
        }
        for epoch in range(1, epochs + 1)
    ]


def png_shape(path) -> tuple[int, int]:
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.std() > 0.01  # not a blank canvas
    return image.shape[0], image.shape[1]


def scored_predictions(seed: int = 0):
    rng = np.random.default_rng(seed)
    references = rng.choice(4, size=80, p=[0.4, 0.3, 0.2, 0.1])
    predictions = np.where(rng.random(80) < 0.6, references, rng.integers(0, 4, 80))
    return predictions, references


def test_history_csv_round_trips(tmp_path):
    rows = history(3)
    rows[0]["val_loss"] = None  # e.g. no validation at epoch 1
    rows[1]["note"] = "resumed"  # a key only some rows have
    rows[2]["is_best"] = True
    path = write_history_csv(rows, tmp_path / "run" / "history.csv")
    assert (
        path.read_text().splitlines()[0]
        == "epoch,train_loss,val_loss,val_unweighted_accuracy,val_weighted_accuracy,val_macro_f1,lr,note,is_best"
    )
    back = read_history_csv(path)
    expected = [{**{"note": None, "is_best": None}, **row} for row in rows]
    assert back == expected
    assert isinstance(back[0]["epoch"], int) and back[2]["is_best"] is True
    assert not list(tmp_path.glob("run/*.partial"))


def test_read_history_csv_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no history file"):
        read_history_csv(tmp_path / "nope.csv")


def test_training_curves_png(tmp_path):
    height, width = png_shape(plot_training_curves(history(), tmp_path / "curves.png"))
    assert height > 200 and width > 2.5 * height  # three panels side by side

    # From the CSV (as a finished run would be replotted), without lr: two panels.
    rows = [{key: value for key, value in row.items() if key != "lr"} for row in history()]
    write_history_csv(rows, tmp_path / "history.csv")
    height2, width2 = png_shape(plot_training_curves(read_history_csv(tmp_path / "history.csv"), tmp_path / "curves2.png"))
    assert width2 < width and height2 == height

    with pytest.raises(ValueError, match="no history rows"):
        plot_training_curves([], tmp_path / "empty.png")


def test_confusion_matrix_figure_annotates_counts_and_shares(tmp_path):
    cm = [[8, 2, 0, 0], [1, 5, 0, 4], [0, 0, 0, 0], [3, 0, 0, 7]]
    figure = confusion_matrix_figure(cm, LABELS)
    assert isinstance(figure, Figure)
    texts = [text.get_text() for text in figure.axes[0].texts]
    assert len(texts) == 16
    assert texts[0] == "8\n80%" and texts[7] == "4\n40%"
    assert texts[8] == "0"  # the row with no true clips has no share
    assert [label.get_text() for label in figure.axes[0].get_xticklabels()] == LABELS

    raw = confusion_matrix_figure(cm, LABELS, normalize=False)
    assert [text.get_text() for text in raw.axes[0].texts][:2] == ["8", "2"]

    height, width = png_shape(plot_confusion_matrix(cm, LABELS, tmp_path / "cm" / "test.png", title="test"))
    assert height > 300 and width > 300

    with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
        confusion_matrix_figure(cm, LABELS[:3])


def test_confusion_matrix_figure_goes_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    writer.add_figure("test/confusion_matrix", confusion_matrix_figure(np.eye(4, dtype=int), LABELS), global_step=1)
    writer.close()
    assert any(path.stat().st_size > 1000 for path in tmp_path.glob("events.out.tfevents.*"))


def test_classification_report_text_matches_sklearn_layout():
    predictions, references = scored_predictions()
    metrics = compute_metrics(predictions, references, num_classes=4, label_names=LABELS)
    text = classification_report_text(metrics, LABELS)
    assert text.startswith(classification_report(references, predictions, target_names=LABELS, zero_division=0))
    for label in LABELS:
        assert f"\n{label:>12s} " in text
    assert metrics["unweighted_accuracy"] != pytest.approx(metrics["weighted_accuracy"])
    assert f"unweighted accuracy (UA): {metrics['unweighted_accuracy']:.4f}\n" in text
    assert f"weighted accuracy (WA):   {metrics['weighted_accuracy']:.4f}\n" in text
    assert f"macro F1:                 {metrics['macro_f1']:.4f}\n" in text


def test_classification_report_macro_avg_skips_a_class_never_seen():
    # "sad" is neither true nor predicted: listed with zeros, but not in the macro average (as macro_f1).
    metrics = compute_metrics([0, 1, 2, 1, 0, 2], [0, 1, 2, 2, 0, 1], num_classes=4, label_names=LABELS)
    text = classification_report_text(metrics, LABELS, digits=3)
    assert "         sad      0.000     0.000     0.000         0\n" in text
    macro_line = next(line for line in text.splitlines() if line.strip().startswith("macro avg"))
    assert macro_line.split()[-2] == f"{metrics['macro_f1']:.3f}"


STUDY_ROWS = [
    {"backbone": "hubert_large", "loss": "focal", "unweighted_accuracy": [0.60, 0.62, 0.58], "weighted_accuracy": [0.61, 0.60, 0.63]},
    {"backbone": "lstm", "loss": "ce", "unweighted_accuracy": [0.50], "weighted_accuracy": [0.52]},
    # One row per fold is pooled into the same cell.
    {"backbone": "lstm", "loss": "focal", "unweighted_accuracy": 0.51, "weighted_accuracy": 0.52},
    {"backbone": "lstm", "loss": "focal", "unweighted_accuracy": 0.53, "weighted_accuracy": 0.50},
    {"backbone": "wav2vec2_base", "loss": "ce", "unweighted_accuracy": [0.55, 0.57], "weighted_accuracy": [0.56, 0.58]},
]


def test_results_table_exact_strings():
    markdown, csv_rows = results_table(STUDY_ROWS)
    assert markdown == (
        "| backbone | ce | focal |\n"
        "| --- | --- | --- |\n"
        "| lstm | UA 50.0 / WA 52.0 | UA 52.0 ± 1.4 / WA 51.0 ± 1.4 |\n"
        "| wav2vec2_base | UA 56.0 ± 1.4 / WA 57.0 ± 1.4 | — |\n"
        "| hubert_large | — | UA 60.0 ± 2.0 / WA 61.3 ± 1.5 |\n"
    )
    assert [(row["backbone"], row["loss"], row["num_folds"]) for row in csv_rows] == [
        ("lstm", "ce", 1),
        ("lstm", "focal", 2),
        ("wav2vec2_base", "ce", 2),
        ("hubert_large", "focal", 3),
    ]
    assert csv_rows[0]["unweighted_accuracy_std"] is None
    assert csv_rows[3]["weighted_accuracy_mean"] == pytest.approx(0.61333333)
    assert csv_rows[3]["unweighted_accuracy_std"] == pytest.approx(0.02)


def test_study_order():
    backbones = ["cnn_custom", "hubert_large", "wav2vec2_large", "hubert_base", "vggish", "bilstm", "lstm", "wav2vec2_base", "acme"]
    assert study_order(backbones, ("lstm", "bilstm", "vggish", "wav2vec2*", "hubert*")) == [
        "lstm",
        "bilstm",
        "vggish",
        "wav2vec2_base",
        "wav2vec2_large",
        "hubert_base",
        "hubert_large",
        "acme",
        "cnn_custom",
    ]
    rows = [
        {"backbone": "lstm", "loss": loss, "unweighted_accuracy": 0.5, "weighted_accuracy": 0.5}
        for loss in ("poly", "ccc", "aam", "focal", "label_smoothing", "ce")
    ]
    header = results_table(rows)[0].splitlines()[0]
    assert header == "| backbone | ce | label_smoothing | focal | aam | ccc | poly |"


@pytest.mark.parametrize(
    "row, message",
    [
        ({"backbone": "lstm", "unweighted_accuracy": 0.5, "weighted_accuracy": 0.5}, "no 'loss'"),
        ({"backbone": "lstm", "loss": "ce", "unweighted_accuracy": 56.1, "weighted_accuracy": 0.5}, "not percent"),
        ({"backbone": "lstm", "loss": "ce", "unweighted_accuracy": [0.5, 0.6], "weighted_accuracy": [0.5]}, "2 UA but 1 WA"),
        ({"backbone": "lstm", "loss": "ce", "unweighted_accuracy": [], "weighted_accuracy": []}, "empty"),
    ],
)
def test_results_table_rejects_bad_rows(row, message):
    with pytest.raises(UserError, match=message):
        results_table([row])


def test_results_heatmap_png(tmp_path):
    height, width = png_shape(plot_results_heatmap(STUDY_ROWS, tmp_path / "ua.png"))
    assert height > 200 and width > 300
    png_shape(plot_results_heatmap(STUDY_ROWS, tmp_path / "wa.png", metric="weighted_accuracy"))
    with pytest.raises(ValueError, match="choose one of"):
        plot_results_heatmap(STUDY_ROWS, tmp_path / "x.png", metric="ua")
