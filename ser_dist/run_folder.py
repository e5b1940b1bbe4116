"""One folder holds one run: ``train.output_dir`` is claimed before anything is written into it.

- A fresh run (no ``train.resume``) into a folder that holds another run's outputs is refused with one
  line, unless ``train.overwrite=true`` clears those outputs first (only the files a run writes: any
  other file in the folder is left alone).
- ``train.resume=auto`` continues the run in the folder; with no checkpoint to continue from (the run was
  killed before its first one), the folder's outputs are cleared and the run starts from scratch.
- A lock (``.ser-dist.lock``, an ``flock`` the kernel drops when the process ends, even on SIGKILL) keeps
  a second live run out of the folder.
- With several processes, every one must see the same folder (``check_shared``): checkpoints hold every
  rank's RNG state and are resumed by every rank, so nodes need a file system they all share.
- An ``--out`` folder (``ser-dist evaluate``, the study's results tables) is checked before any work is
  done (``check_output_folder``), and never one that holds a training run.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

from .errors import ConfigError, UserError

LOCK_FILE = ".ser-dist.lock"
# Everything a training run writes into its folder (the cv/grid runners write their own files beside).
RUN_OUTPUTS = (
    "config.yaml",
    "split.csv",
    "data_report.json",
    "train.log",
    "metrics.json",
    "timing.json",
    "training_history.csv",
    "training_curves.png",
    "confusion_matrix.png",
    "classification_report.txt",
    "test_predictions.csv",
    "model",
    "tensorboard",
    "trackers.json",
    "checkpoints",
    "evaluation",
)

_held_locks: dict[str, object] = {}  # output folder -> open lock file, for the life of the process


def file_in_the_way(folder: Path) -> Path | None:
    """``folder`` itself or the folder above it that is a file, so ``folder`` can't be created; else None."""
    return next((p for p in [Path(folder), *Path(folder).parents] if p.exists() and not p.is_dir()), None)


def check_output_folder(out: Path, option: str = "--out") -> None:
    """Fail before any work when ``out`` cannot become a folder: it (or a folder above it) is a file, or the
    nearest existing folder above it is not writable."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out}: is a file, not a folder; pass a folder (it is created if needed)")
    if (out / "metrics.json").exists() and any((out / name).exists() for name in ("config.yaml", "checkpoints", "model")):
        raise UserError(
            f"{option} {out}: holds a training run, whose metrics.json and reports the evaluation would replace; pass another folder (default: RUN/evaluation)"
        )
    blocked = file_in_the_way(out)
    if blocked is not None:
        raise UserError(f"{option} {out}: {blocked} is a file, so no folder can be made under it; pass another folder")
    parent = next((p for p in [out, *out.parents] if p.exists()), out)
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {out}: {parent} is not writable; pass a folder you can write to")


def make_output_folder(out: Path, option: str = "--out") -> Path:
    """``check_output_folder``, then the folder (and its parents) made; an OS refusal is one line too."""
    check_output_folder(out, option)
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{option} {out}: cannot create this folder ({err.strerror or err}); pass another folder") from None
    return Path(out)


def run_outputs(out: Path) -> list[str]:
    return [name for name in RUN_OUTPUTS if (Path(out) / name).exists()]


def clear_outputs(out: Path) -> None:
    for name in run_outputs(out):
        path = Path(out) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def lock(out: Path) -> None:
    """Hold ``out``'s lock until the process ends; one line naming the other run if it is taken."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the other checks still hold
        return
    out = Path(out)
    key = str(out.resolve())
    if key in _held_locks:
        return
    try:
        handle = open(out / LOCK_FILE, "a+")
    except OSError as err:
        raise ConfigError(
            f"train.output_dir={out}: cannot create or write this folder ({err.strerror or err}); pass a writable folder"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"train.output_dir={out} is in use by a live run ({holder}); wait for it to end, or train into another folder"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    _held_locks[key] = handle


def release(out: Path) -> None:
    handle = _held_locks.pop(str(Path(out).resolve()), None)
    if handle is not None:
        handle.close()


def claim(out: Path, train_cfg, has_checkpoint: bool) -> None:
    """Main process only, before the run writes anything: lock the folder, then refuse, clear or continue."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"train.output_dir={out}: cannot create or write this folder ({err.strerror or err}); pass a writable folder"
        ) from None
    found = run_outputs(out)
    if found and not (out / LOCK_FILE).exists():  # every folder ser-dist has trained into holds its lock file
        raise ConfigError(
            f"train.output_dir={out} holds files a run would write ({', '.join(found[:4])}) that ser-dist did not write there; "
            "train into another folder, or move them away (train.overwrite clears only ser-dist's own runs)"
        )
    lock(out)  # before anything is cleared; refused above without leaving a lock file behind
    if not found:
        return
    checkpoints = out / "checkpoints"
    if checkpoints.exists() and not checkpoints.is_dir():
        raise ConfigError(
            f"{checkpoints} is a file, not the run's checkpoint folder; move it away, or clear the run with train.overwrite=true"
        )
    finished = [name for name in ("metrics.json", "model") if (out / name).exists()]
    if train_cfg.resume == "auto" and not has_checkpoint and finished and not train_cfg.overwrite:
        # Nothing to continue from, yet a finished run: never clear it on a resume.
        unreadable = [p.name for p in checkpoints.iterdir() if not p.name.startswith(".")] if checkpoints.is_dir() else []
        why = (
            f"its checkpoints/ holds {len(unreadable)} folder(s) without a readable trainer_state.json"
            if unreadable
            else "no checkpoint to resume from"
        )
        raise ConfigError(
            f"train.output_dir={out} holds a finished run ({', '.join(finished)}) but {why}; "
            "keep it and train into another folder, or clear it with train.overwrite=true"
        )
    if train_cfg.overwrite or (train_cfg.resume == "auto" and not has_checkpoint):
        clear_outputs(out)
    elif train_cfg.resume is None:
        raise ConfigError(
            f"train.output_dir={out} holds another run ({', '.join(found[:4])}{', ...' if len(found) > 4 else ''}); "
            "continue it with train.resume=auto, clear it with train.overwrite=true, or train into another folder"
        )


def check_shared(accelerator, out: Path) -> None:
    """Collective: every process must see a file rank 0 wrote into ``out``, else one line saying so."""
    if accelerator.num_processes == 1:
        return
    import uuid

    from accelerate.utils import broadcast_object_list

    token = broadcast_object_list([uuid.uuid4().hex if accelerator.is_main_process else None])[0]
    probe = Path(out) / f".ser-dist-shared-{token}"
    if accelerator.is_main_process:
        probe.write_text(socket.gethostname())
    accelerator.wait_for_everyone()
    seen = probe.exists() and probe.read_text() != ""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        probe.unlink()
    if not seen:
        raise ConfigError(
            f"train.output_dir={out} is not one folder for every process: rank {accelerator.process_index} on {socket.gethostname()} "
            "does not see what rank 0 wrote there; checkpoints, resume and the export need a file system shared by all nodes (NFS, Lustre, ...)"
        )
