"""Training batch order: deterministic per (seed, epoch), sharded across ranks, resumable mid-epoch.

Two ways to form batches:
- ``batch_size``: a fixed number of clips per batch, clips in random order;
- ``batch_seconds``: a padded-audio budget per batch (``len(batch) * longest clip <= batch_seconds``).
  Clips are sorted by duration so each batch holds clips of similar length (little padding), and the
  batch order is shuffled each epoch.

Under data parallelism every rank gets distinct batches, and consecutive batches of similar cost are
dealt out together so no rank waits long for another. Every clip is used at least once per epoch; when
the batch count doesn't divide by the number of ranks, the first batches are repeated to fill the last
round (as ``DistributedSampler`` does), so every rank runs the same number of steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class TrainBatchSampler:
    def __init__(
        self,
        durations: Sequence[float],
        *,
        batch_size: int,
        batch_seconds: float | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        steps_multiple: int = 1,
    ):
        if batch_seconds is not None and batch_seconds <= 0:
            raise ValueError("batch_seconds must be > 0")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        # Each rank's batch count is a multiple of this (the gradient accumulation steps), so an
        # optimizer step never straddles two epochs and every checkpoint falls on a step boundary.
        self.steps_multiple = steps_multiple
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.start_batch = 0

    def set_start(self, batch_index: int) -> None:
        """Resume: skip this rank's first ``batch_index`` batches of the current epoch."""
        self.start_batch = batch_index

    def global_batches(self) -> list[list[int]]:
        """All batches of the epoch, in the order they are dealt to ranks (round-robin)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.durations)
        if self.batch_seconds is None:
            order = rng.permutation(n)
            batches = [order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
            rng.shuffle(batches)
        else:
            # Sort by duration with a random tie-break, then fill budgets greedily from shortest to longest.
            order = np.lexsort((rng.random(n), self.durations))
            batches, current = [], []
            for index in order:
                longest = self.durations[index]  # sorted ascending: the new clip is the longest so far
                if current and (len(current) + 1) * longest > self.batch_seconds:
                    batches.append(current)
                    current = []
                current.append(int(index))
            if current:
                batches.append(current)
            # Deal neighbours (similar cost) to different ranks in the same round, shuffle the rounds.
            rounds = [batches[i : i + self.num_replicas] for i in range(0, len(batches), self.num_replicas)]
            rng.shuffle(rounds)
            batches = [b for r in rounds for b in r]
        multiple = self.num_replicas * self.steps_multiple
        while len(batches) % multiple:
            batches += batches[: multiple - len(batches) % multiple]
        return batches

    def local_batches(self) -> list[list[int]]:
        return self.global_batches()[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.local_batches()[self.start_batch :]

    def __len__(self) -> int:
        return len(self.local_batches()) - self.start_batch
