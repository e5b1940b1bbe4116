"""Run a recipe with a fault injected at a given training batch (for the fault and resume tests).

    python tests/dist/inject_fault.py FAULT AT_BATCH RANK [COUNT] -- recipes/x.py key=value ...
    torchrun --nproc_per_node 2 tests/dist/inject_fault.py kill 7 all -- recipes/x.py ...

FAULT: ``kill`` (SIGKILL itself), ``raise`` (a RuntimeError), ``oom`` (torch.OutOfMemoryError), ``nan``
(the loss becomes NaN for COUNT batches, 0: for ever), ``kill_after_checkpoint`` (SIGKILL right after
the AT_BATCH-th checkpoint is complete on disk). AT_BATCH counts this process's training batches
from 1; RANK is a rank number or ``all``. The fault comes from wrapping the loss (or the checkpoint
writer) the trainer uses, so the library holds no test hooks.
"""
import os
import runpy
import signal
import sys

import torch

import ser_dist.trainer as trainer

fault, at_batch, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
count = int(sys.argv[4]) if sys.argv[4] != "--" else 1
recipe_args = sys.argv[sys.argv.index("--") + 1 :]
rank = int(os.environ.get("RANK", "0"))
build_loss = trainer.build_loss


def build_faulty_loss(*args, **kwargs):
    criterion = build_loss(*args, **kwargs)
    batches = 0

    def faulty(logits, labels):
        nonlocal batches
        loss = criterion(logits, labels)
        if not torch.is_grad_enabled():  # evaluation
            return loss
        batches += 1
        if target not in ("all", str(rank)) or batches < at_batch:
            return loss
        if fault == "kill" and batches == at_batch:
            os.kill(os.getpid(), signal.SIGKILL)
        if fault == "raise" and batches == at_batch:
            raise RuntimeError(f"injected failure on rank {rank} at batch {batches}")
        if fault == "oom" and batches == at_batch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
        if fault == "nan" and (count == 0 or batches < at_batch + count):
            return loss * float("nan")
        return loss

    return faulty


save_checkpoint = trainer.save_checkpoint
checkpoints_written = 0


def save_then_die(*args, **kwargs):
    global checkpoints_written
    path = save_checkpoint(*args, **kwargs)
    checkpoints_written += 1
    if fault == "kill_after_checkpoint" and checkpoints_written == at_batch and target in ("all", str(rank)):
        print(f"killed after checkpoint {path.name}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return path


trainer.build_loss = build_faulty_loss
trainer.save_checkpoint = save_then_die
sys.argv = recipe_args
runpy.run_path(recipe_args[0], run_name="__main__")
