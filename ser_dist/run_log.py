"""A run's log lines: on the console and in ``OUTPUT_DIR/train.log`` (its figures go to the trackers,
``ser_dist.tracking``; its report files are ``ser_dist.reports``).

Only the main process writes; the other ranks' calls are no-ops. A line printed while a progress bar is
drawn goes above it (``ser_dist.progress.write``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from . import progress


class RunLog:
    def __init__(self, accelerator, output_dir: Path):
        self.enabled = accelerator.is_main_process
        self.out = Path(output_dir)
        self.file = None
        if self.enabled:
            self.out.mkdir(parents=True, exist_ok=True)
            self.file = open(self.out / "train.log", "a")

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        progress.write(line)
        self.file.write(line + "\n")
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        sys.stdout.flush()
