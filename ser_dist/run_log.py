"""What a run writes: console and ``train.log`` lines, TensorBoard events and the final reports.

Only the main process writes; the other ranks' calls are no-ops.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


class RunLog:
    def __init__(self, accelerator, output_dir: Path, tensorboard: bool = True):
        self.enabled = accelerator.is_main_process
        self.out = Path(output_dir)
        self.writer = None
        self.file = None
        if self.enabled:
            self.out.mkdir(parents=True, exist_ok=True)
            self.file = open(self.out / "train.log", "a")
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.out / "tensorboard"))

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()

    def scalars(self, step: int, values: dict) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def epoch(self, epoch: int, row: dict, val: dict, label_names: list[str]) -> None:
        if self.writer is None:
            return
        from .report import confusion_matrix_figure

        for key in ("train_loss", "val_loss", "val_unweighted_accuracy", "val_weighted_accuracy", "val_macro_f1", "lr"):
            self.writer.add_scalar(f"epoch/{key}", row[key], epoch)
        self.writer.add_figure("val/confusion_matrix", confusion_matrix_figure(val["confusion_matrix"], label_names), epoch)
        self.writer.flush()

    def final(self, results: dict, test: dict, history: list[dict], data) -> None:
        from .report import plot_training_curves, write_history_csv

        write_test_reports(self.out, results, test, data.label_names, [data.records[i] for i in data.split_indices["test"]])
        write_history_csv(history, self.out / "training_history.csv")
        plot_training_curves(history, self.out / "training_curves.png")
        if self.writer is not None:
            from .report import confusion_matrix_figure

            self.writer.add_figure("test/confusion_matrix", confusion_matrix_figure(test["confusion_matrix"], data.label_names), 0)
            for key in ("unweighted_accuracy", "weighted_accuracy", "macro_f1"):
                self.writer.add_scalar(f"test/{key}", results["test"][key], 0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.file is not None:
            self.file.close()
        sys.stdout.flush()


def write_test_reports(out: Path, results: dict, test: dict, label_names: list[str], test_records: list) -> None:
    """metrics.json, confusion_matrix.png, classification_report.txt and test_predictions.csv for one scored set.

    ``test`` is ``trainer.evaluate``'s output (``index`` numbers ``test_records``); training and
    ``ser-dist evaluate`` both write their reports through here.
    """
    import csv

    from .report import classification_report_text, plot_confusion_matrix

    out = Path(out)
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    plot_confusion_matrix(test["confusion_matrix"], label_names, out / "confusion_matrix.png")
    (out / "classification_report.txt").write_text(classification_report_text(results["test"], label_names))
    with open(out / "test_predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "predicted", "confidence", *[f"p_{name}" for name in label_names]])
        for index, probs in sorted(zip(test["index"].tolist(), test["probabilities"]), key=lambda item: item[0]):
            rec = test_records[index]
            best = int(probs.argmax())
            writer.writerow([rec.path, rec.label, label_names[best], f"{probs[best]:.6f}", *[f"{p:.6f}" for p in probs]])
