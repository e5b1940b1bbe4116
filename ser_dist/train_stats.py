"""What a training epoch cost, over every process: clips and audio-seconds per second, the padded share of
the batches, the share of the time spent waiting for the data loader, and peak memory.

Wall-clock figures: the trackers and ``timing.json`` get them, ``metrics.json`` never does (it depends on the
config and the data only). ``summary`` is collective (one small all-gather): every process calls it.
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
import torch


class EpochStats:
    """Counters of this process's training batches in one epoch (``start`` resets them)."""

    def __init__(self, durations: list[float]):
        self.durations = np.asarray(durations, dtype=np.float64)  # the training clips' seconds, by clip index
        self.start()

    def start(self) -> None:
        self.clips = 0
        self.audio_seconds = 0.0
        self.samples = 0  # real frames or samples in the batches
        self.padded = 0  # zeros the collate added
        self.waited = 0.0
        self.started = self.mark = time.perf_counter()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def got_batch(self, batch: dict) -> None:
        """A batch came from the loader: the time since the last step ended was spent waiting for it."""
        now = time.perf_counter()
        self.waited += now - self.mark
        lengths = batch["lengths"]
        total = int(lengths.numel()) * int(batch["input_values"].shape[1])
        real = int(lengths.sum())
        self.clips += int(lengths.numel())
        self.samples += real
        self.padded += total - real
        index = batch["index"].numpy() if isinstance(batch["index"], torch.Tensor) else np.asarray(batch["index"])
        self.audio_seconds += float(self.durations[index[index < len(self.durations)]].sum())

    def done_batch(self) -> None:
        self.mark = time.perf_counter()

    def clips_per_second(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.clips / elapsed if elapsed > 0 else 0.0

    def summary(self, accelerator) -> dict:
        """The epoch's figures over every process (sums of work, the slowest process's time, the largest peak)."""
        seconds = time.perf_counter() - self.started
        gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
        mine = [self.clips, self.audio_seconds, self.samples, self.padded, self.waited, seconds, peak_rss_mb(), gpu]
        every = torch.tensor([mine], dtype=torch.float64)
        if accelerator.num_processes > 1:
            every = accelerator.gather(every.to(accelerator.device)).cpu()
        clips, audio, samples, padded, waited = (float(every[:, j].sum()) for j in range(5))
        wall = float(every[:, 5].max())
        figures = {
            "clips_per_second": clips / wall if wall > 0 else 0.0,
            "audio_seconds_per_second": audio / wall if wall > 0 else 0.0,
            "padded_fraction": padded / (samples + padded) if samples + padded else 0.0,
            "loader_wait_fraction": waited / float(every[:, 5].sum()) if wall > 0 else 0.0,
            "train_seconds": wall,
            "peak_cpu_memory_mb": float(every[:, 6].max()),
        }
        if torch.cuda.is_available():
            figures["peak_gpu_memory_mb"] = float(every[:, 7].max())
        return figures


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
