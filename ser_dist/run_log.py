"""A run's log: console and ``train.log`` lines, and TensorBoard events (its report files: ``ser_dist.reports``).

Only the main process writes; the other ranks' calls are no-ops.
"""

from __future__ import annotations

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
        from .plots import confusion_matrix_figure

        for key in ("train_loss", "val_loss", "val_unweighted_accuracy", "val_weighted_accuracy", "val_macro_f1", "lr"):
            self.writer.add_scalar(f"epoch/{key}", row[key], epoch)
        self.writer.add_figure("val/confusion_matrix", confusion_matrix_figure(val["confusion_matrix"], label_names), epoch)
        self.writer.flush()

    def test(self, results: dict, test: dict, label_names: list[str]) -> None:
        """The test split's confusion matrix and headline metrics, to TensorBoard."""
        if self.writer is not None:
            from .plots import confusion_matrix_figure

            self.writer.add_figure("test/confusion_matrix", confusion_matrix_figure(test["confusion_matrix"], label_names), 0)
            for key in ("unweighted_accuracy", "weighted_accuracy", "macro_f1"):
                self.writer.add_scalar(f"test/{key}", results["test"][key], 0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.file is not None:
            self.file.close()
        sys.stdout.flush()
