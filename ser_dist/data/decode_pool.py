"""A corpus's clips decoded in record order, in a pool of processes fed a bounded window at a time.

``ProcessPoolExecutor.map`` submits every job before it yields the first result, which with a Hugging Face
dataset's encoded audio (bytes in each job) would hold the whole corpus in memory. ``decode_all`` keeps
``IN_FLIGHT_PER_PROCESS`` chunks per process submitted and reads its jobs only as results are taken, so
memory holds a few hundred clips whatever the corpus's size. ``data/dataset.py`` decodes one clip.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch

# Chunks submitted per decoding process and not yet taken: enough to keep each process busy.
IN_FLIGHT_PER_PROCESS = 4
# A spawned process takes ~1-3 s to start (it imports torch); a clip decodes in a few ms. So each process
# gets at least this many clips, and a small corpus is decoded in this process.
MIN_CLIPS_PER_PROCESS = 500


def decode_all(decode: Callable, jobs: Iterable[tuple], count: int, num_proc: int) -> Iterator:
    """``decode(*job)`` for each of the ``count`` jobs, in order; in a pool of up to ``num_proc`` spawned
    processes when there are enough jobs (``decode`` is then pickled by name: a module-level function)."""
    workers = max(1, min(int(num_proc), count // MIN_CLIPS_PER_PROCESS))
    if workers == 1:
        with _one_torch_thread():
            for job in jobs:
                yield decode(*job)
        return
    # spawn, not fork: the parent may hold torch/OpenMP threads (or CUDA), which fork does not copy safely.
    # ProcessPoolExecutor rather than multiprocessing.Pool: a worker killed by a crashing decoder
    # breaks the pool with an error instead of leaving imap waiting forever.
    context = multiprocessing.get_context("spawn")
    chunksize = max(1, min(32, count // (workers * 8)))
    jobs = iter(jobs)
    pending: collections.deque = collections.deque()
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        try:
            while chunk := list(itertools.islice(jobs, chunksize)):
                pending.append(pool.submit(_decode_chunk, decode, chunk))
                if len(pending) >= workers * IN_FLIGHT_PER_PROCESS:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        except BrokenProcessPool:
            raise RuntimeError(
                "an audio decoding process died (a decoder crash or out of memory); rerun with one "
                "process (num_proc=1) to see which file causes it"
            ) from None


def _init_worker() -> None:
    torch.set_num_threads(1)  # one decode per core; intra-op threads would oversubscribe


@contextlib.contextmanager
def _one_torch_thread():
    # Resampling one clip is too small a job to split across threads: thread wake-ups cost more than
    # they save (10-20x slower with 2 threads on a busy 2-core machine). Restored for training.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _decode_chunk(decode: Callable, jobs: list[tuple]) -> list:
    return [decode(*job) for job in jobs]
