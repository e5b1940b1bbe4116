"""Full training state on disk: atomic writes, resume from the last complete checkpoint, retention.

A checkpoint folder holds what ``accelerator.save_state`` writes (model, optimizer, schedulers,
gradient scaler, the RNG state of every rank) plus ``trainer_state.json`` (epoch, batches consumed in
the epoch, optimizer step, early-stopping and non-finite counters, history rows). Every rank writes
into a temporary folder; only when all are done does rank 0 write ``trainer_state.json`` and rename
the folder into place, so a run killed mid-write never leaves a folder that resume would pick up.
Progress comes from ``trainer_state.json``, never from folder names.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

STATE_FILE = "trainer_state.json"


@dataclass
class TrainerState:
    epoch: int = 0  # the epoch in progress (0-based)
    batches_done: int = 0  # this rank's batches consumed in ``epoch``
    global_step: int = 0  # optimizer steps taken
    train_loss_sum: float = 0.0  # running sums of the epoch in progress
    train_loss_count: int = 0
    best_metric: Optional[float] = None
    best_epoch: Optional[int] = None
    best_checkpoint: Optional[str] = None
    epochs_without_improvement: int = 0
    nonfinite_steps: int = 0
    nonfinite_streak: int = 0
    stopped_early: bool = False
    history: list = field(default_factory=list)
    num_processes: Optional[int] = None  # batches_done and the RNG files are per rank

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def read(cls, path: Path) -> "TrainerState":
        return cls(**json.loads((Path(path) / STATE_FILE).read_text()))


def complete_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(global_step, path) of every complete checkpoint, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if path.is_dir() and not path.name.startswith(".") and (path / STATE_FILE).exists():
            try:
                found.append((TrainerState.read(path).global_step, path))
            except (json.JSONDecodeError, TypeError):
                continue  # unreadable state: treated as incomplete
    return sorted(found, key=lambda item: (item[0], item[1].name))


def resolve_resume(resume: Optional[str], directory: Path) -> Optional[Path]:
    """``auto``: the latest complete checkpoint in ``directory`` (None if there is none); a path: that one."""
    if resume is None:
        return None
    if resume == "auto":
        found = complete_checkpoints(directory)
        return found[-1][1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).exists():
        from .errors import ConfigError

        raise ConfigError(f"train.resume={resume}: not a complete checkpoint (no {STATE_FILE}); use train.resume=auto or a checkpoint folder")
    return path


def save_checkpoint(accelerator, directory: Path, state: TrainerState, keep_last: int) -> Path:
    """Collective: every rank must call it at the same point."""
    directory = Path(directory)
    name = f"step-{state.global_step:08d}-epoch-{state.epoch:03d}-batch-{state.batches_done:05d}"
    final = directory / name
    tmp = directory / f".tmp-{name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(state.to_json())
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _prune(directory, keep_last, keep={state.best_checkpoint, name})
    accelerator.wait_for_everyone()
    return final


def _prune(directory: Path, keep_last: int, keep: set) -> None:
    found = complete_checkpoints(directory)
    for _, path in found[: max(0, len(found) - keep_last)]:
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
    for path in directory.glob(".tmp-*"):  # leftovers of a killed write
        shutil.rmtree(path, ignore_errors=True)


def load_checkpoint(accelerator, path: Path) -> TrainerState:
    state = TrainerState.read(path)
    if state.num_processes is not None and state.num_processes != accelerator.num_processes:
        from .errors import ConfigError

        raise ConfigError(
            f"train.resume: {path} was saved by {state.num_processes} process(es) but this run has {accelerator.num_processes}; "
            f"resume with {state.num_processes} processes (the sampler position and RNG states are per process)"
        )
    accelerator.load_state(str(path))
    return state
