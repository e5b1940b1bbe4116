"""Full training state on disk: atomic writes, verified resume, retention.

A checkpoint folder holds what ``accelerator.save_state`` writes (model, optimizer, gradient scaler, the
RNG state of every rank), ``schedule.json`` (the lr schedule's state, as JSON: nothing in a checkpoint
is unpickled beyond torch's ``weights_only`` loader), ``run.json`` (the resolved config and a fingerprint
of the data of the run that wrote it), ``files.json`` (size and SHA-256 of every other file) and, last,
``trainer_state.json`` (epoch, batches consumed in the epoch, optimizer step, early-stopping and
non-finite counters, history rows, the best checkpoint's name). Every rank writes into a temporary
folder; only when all are done does rank 0 write the JSON files and rename the folder into place, so a
run killed mid-write never leaves a folder that resume would pick up. Progress comes from
``trainer_state.json``, never from folder names.

A checkpoint is *loadable* when its files match ``files.json`` (which must exist and list ``run.json`` and
``schedule.json``) and its state file holds fields of the right types. ``train.resume=auto`` takes the newest
loadable one and says in one line which newer ones it passed over and why (a truncated file, say).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ConfigError, UserError

STATE_FILE = "trainer_state.json"
SCHEDULE_FILE = "schedule.json"
RUN_FILE = "run.json"
FILES_FILE = "files.json"


class CheckpointError(UserError):
    pass


@dataclass
class TrainerState:
    epoch: int = 0  # the epoch in progress (0-based)
    batches_done: int = 0  # this rank's batches consumed in ``epoch``
    global_step: int = 0  # optimizer steps taken
    train_loss_sum: float = 0.0  # running sums of the epoch in progress
    train_loss_count: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    best_checkpoint: str | None = None
    epochs_without_improvement: int = 0
    nonfinite_steps: int = 0
    nonfinite_streak: int = 0
    stopped_early: bool = False
    history: list = field(default_factory=list)
    num_processes: int | None = None  # batches_done and the RNG files are per rank

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def read(cls, path: Path) -> TrainerState:
        """The state file, checked field by field (a TypeError or ValueError names what is wrong)."""
        tree = json.loads((Path(path) / STATE_FILE).read_text())
        if not isinstance(tree, dict):
            raise TypeError("not a mapping")
        unknown = sorted(set(tree) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}")
        state = cls(**tree)
        for name, kinds in _field_types().items():
            value = getattr(state, name)
            if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
                raise TypeError(f"{name}={value!r} is not {' or '.join(k.__name__ for k in kinds)}")
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"{name}={value} is negative")
        if not all(isinstance(row, dict) for row in state.history):
            raise TypeError("history holds a row that is not a mapping")
        return state


def _field_types() -> dict[str, tuple]:
    """TrainerState's field -> the types its JSON value may have, from the annotations (a float may be
    written as an int, ``Optional`` allows null)."""
    import typing

    types = {}
    for name, hint in typing.get_type_hints(TrainerState).items():
        kinds = tuple(typing.get_origin(arg) or arg for arg in (typing.get_args(hint) or (hint,)))
        types[name] = kinds + ((int,) if float in kinds else ())
    return types


def checkpoint_name(state: TrainerState) -> str:
    return f"step-{state.global_step:08d}-epoch-{state.epoch:03d}-batch-{state.batches_done:05d}"


def complete_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(global_step, path) of every complete checkpoint (a readable state file), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if path.is_dir() and not path.name.startswith(".") and (path / STATE_FILE).exists():
            try:
                found.append((TrainerState.read(path).global_step, path))
            except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError):
                continue  # unreadable state: treated as incomplete
    return sorted(found, key=lambda item: (item[0], item[1].name))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_table(folder: Path) -> dict[str, list]:
    return {
        str(path.relative_to(folder)): [path.stat().st_size, _sha256(path)]
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in (STATE_FILE, FILES_FILE)
    }


def verify(path: Path) -> str | None:
    """None if the checkpoint's files are whole (as ``files.json`` lists them), else what is wrong, in a few words."""
    path = Path(path)
    try:
        TrainerState.read(path)
        table = json.loads((path / FILES_FILE).read_text())
    except FileNotFoundError as err:
        return f"{Path(err.filename).name} is missing (damaged, or written by an older ser-dist)"
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as err:
        return f"its state or file list is unreadable ({str(err).splitlines()[0][:120]})"
    if not isinstance(table, dict) or RUN_FILE not in table or SCHEDULE_FILE not in table:
        return f"{FILES_FILE} does not list {RUN_FILE} and {SCHEDULE_FILE}"
    on_disk = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} - {STATE_FILE, FILES_FILE}
    foreign = sorted(on_disk - set(table))
    if foreign:  # accelerate would load (or refuse) a file ser-dist never wrote there
        return f"{foreign[0]} is not one of the files it was written with"
    for name, (size, digest) in table.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} is truncated or changed ({file.stat().st_size} of {size} bytes)"
        if _sha256(file) != digest:
            return f"{name} is corrupt (checksum differs)"
    return None


def save_checkpoint(
    accelerator, directory: Path, state: TrainerState, keep_last: int, *, best: bool = False, schedule=None, run_info: dict | None = None
) -> Path:
    """Collective: every rank must call it at the same point. ``best``: this checkpoint becomes the best one
    (recorded in its own state file, so a resume from it knows, and kept by pruning)."""
    directory = Path(directory)
    name = checkpoint_name(state)
    if best:
        state.best_checkpoint = name
    final = directory / name
    tmp = directory / f".tmp-{name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / SCHEDULE_FILE).write_text(json.dumps(schedule.state_dict() if schedule is not None else {}))
        (tmp / RUN_FILE).write_text(json.dumps(run_info or {}, indent=2, sort_keys=True))
        (tmp / FILES_FILE).write_text(json.dumps(_file_table(tmp), indent=2))
        (tmp / STATE_FILE).write_text(state.to_json())  # last: its presence marks the folder complete
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


def load_checkpoint(accelerator, path: Path, schedule=None) -> TrainerState:
    """Load a checkpoint into the prepared objects. Its files are checked against ``files.json`` where it is
    chosen (``resolve_resume``, once, on the main process), not here on every rank."""
    path = Path(path)
    state = TrainerState.read(path)
    if state.num_processes is not None and state.num_processes != accelerator.num_processes:
        raise ConfigError(
            f"train.resume: {path} was saved by {state.num_processes} process(es) but this run has {accelerator.num_processes}; "
            f"resume with {state.num_processes} processes (the sampler position and RNG states are per process)"
        )
    _check_pickles(path, accelerator.process_index)
    try:
        accelerator.load_state(str(path))
        if schedule is not None and (path / SCHEDULE_FILE).exists():
            schedule.load_state_dict(json.loads((path / SCHEDULE_FILE).read_text()))
    except Exception as err:  # a file without a files.json entry (older layout) that fails to load
        raise CheckpointError(
            f"{path}: cannot resume, a file failed to load ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from None
    return state


def _check_pickles(path: Path, process_index: int) -> None:
    """Refuse what accelerate would unpickle with ``weights_only=False`` (custom objects) or drop silently when
    it fails to load (the RNG states): a checkpoint resumed from must not run code nor lose its RNG state."""
    from accelerate.utils.other import load

    custom = sorted(path.glob("custom_checkpoint_*.pkl"))
    if custom:
        raise CheckpointError(
            f"{custom[0]}: ser-dist writes no pickled custom state, so this file is not its own; refused unread, resume from another checkpoint"
        )
    rng = path / f"random_states_{process_index}.pkl"
    if rng.exists():
        try:
            with warnings.catch_warnings():  # torch warns about the pickle protocol of a file it then refuses
                warnings.simplefilter("ignore")
                load(rng)  # weights_only=True with numpy's array types allowed: plain data or an error, never code
        except Exception as err:
            raise CheckpointError(
                f"{rng}: the RNG state does not load as plain data ({type(err).__name__}); resume from another checkpoint"
            ) from None


def resolve_resume(resume: str | None, directory: Path, log=None) -> Path | None:
    """``auto``: the newest loadable checkpoint in ``directory`` (None if there is none), setting damaged newer
    ones aside (``.damaged-NAME``) with one line each through ``log``; a path: that one, if it is whole.
    Main process only: it hashes every file once and renames folders."""
    if resume is None:
        return None
    if resume == "auto":
        complete = complete_checkpoints(directory)
        whole = {path for _, path in complete}
        # Folders are renamed into place only after their state file is written: one without a readable state is damaged.
        for path in sorted(Path(directory).iterdir()) if Path(directory).is_dir() else []:
            if path.is_dir() and not path.name.startswith(".") and path not in whole:
                _set_aside(path, f"{STATE_FILE} is missing or unreadable", log)
        for _, path in reversed(complete):
            problem = verify(path)
            if problem is None:
                return path
            _set_aside(path, problem, log)
        return None
    path = Path(resume)
    if not (path / STATE_FILE).exists():
        raise ConfigError(
            f"train.resume={resume}: not a complete checkpoint (no {STATE_FILE}); use train.resume=auto or a checkpoint folder"
        )
    problem = verify(path)
    if problem:
        raise CheckpointError(
            f"{path}: cannot resume, {problem}; resume from another checkpoint (train.resume=auto takes the newest whole one)"
        )
    return path


def _set_aside(path: Path, problem: str, log) -> None:
    aside = path.parent / f".damaged-{path.name}"  # kept for a look, out of resume's and pruning's way
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(path, aside)
    if log is not None:
        log(f"resume: passing over {path.name}: {problem}; set aside as {aside.name}, trying the previous checkpoint")


def check_same_run(path: Path, run_info: dict, safe_keys: tuple) -> None:
    """A resumed run must have the checkpoint's resolved config (but for ``safe_keys``) and data."""
    saved = json.loads((Path(path) / RUN_FILE).read_text())  # verified whole by load_checkpoint's files.json check
    if saved.get("data") != run_info.get("data"):
        raise ConfigError(
            f"train.resume: {path} was trained on other data (the clips, labels, speakers or split differ: "
            f"{saved.get('data_summary')} then, {run_info.get('data_summary')} now); resume on the same data, or start a new run in another train.output_dir"
        )
    old, new = saved.get("config", {}), run_info.get("config", {})
    differ = [key for key in sorted(set(old) | set(new)) if key not in safe_keys and old.get(key) != new.get(key)]
    if differ:
        shown = ", ".join(f"{key}={old.get(key)!r} then, {new.get(key)!r} now" for key in differ[:3])
        more = f" (+{len(differ) - 3} more)" if len(differ) > 3 else ""
        raise ConfigError(
            f"train.resume: {path} was written with other settings: {shown}{more}; resume with the same settings "
            f"(safe to change: {', '.join(safe_keys)}), or start a new run in another train.output_dir"
        )


# ---- resuming a run ------------------------------------------------------------------------------------


def resume_training(accelerator, exp, log, *, ckpt_dir: Path, identity: dict, schedule, batches_per_epoch: int) -> TrainerState:
    """The state to start from: fresh, or the checkpoint ``train.resume`` names, loaded after checking it is
    whole, of this run (settings and data), at a position this run has, with its best checkpoint present."""
    resume_from = choose_checkpoint(exp, ckpt_dir, log) if accelerator.is_main_process else None
    if accelerator.num_processes > 1:  # rank 0 chose (and set damaged checkpoints aside): every rank loads that one
        from accelerate.utils import broadcast_object_list

        resume_from = broadcast_object_list([resume_from])[0]
    if resume_from is None:
        finished = [name for name in ("metrics.json", "model") if (Path(ckpt_dir).parent / name).exists()]
        if exp.train.resume == "auto" and finished:  # every checkpoint was set aside: never retrain over a finished run
            raise CheckpointError(
                f"{ckpt_dir}: no whole checkpoint to resume from (the damaged ones are set aside as .damaged-*), and "
                f"{Path(ckpt_dir).parent} holds a finished run ({', '.join(finished)}); keep it and train into another folder, or clear it with train.overwrite=true"
            )
        if exp.train.resume == "auto":
            log("resume: no checkpoint to continue from, starting from scratch")
        return TrainerState(num_processes=accelerator.num_processes)
    state = load_checkpoint(accelerator, resume_from, schedule)
    check_same_run(resume_from, identity, resume_safe_keys(exp))
    if state.batches_done > batches_per_epoch:
        raise CheckpointError(
            f"{resume_from}: its state says {state.batches_done} batches into the epoch, but an epoch has {batches_per_epoch}; resume from another checkpoint"
        )
    log(f"resumed from {resume_from} (epoch {state.epoch + 1}, batch {state.batches_done}, step {state.global_step})")
    return state


def choose_checkpoint(exp, ckpt_dir: Path, log) -> Path | None:
    """Main process: the whole checkpoint to resume from (``resolve_resume``), whose best checkpoint, needed
    for the export, is whole too; None for a fresh start."""
    path = resolve_resume(exp.train.resume, ckpt_dir, log)
    best = TrainerState.read(path).best_checkpoint if path is not None else None
    if best is not None:
        problem = verify(ckpt_dir / best) if (ckpt_dir / best).is_dir() else "it is missing"
        if problem:  # the export must be the best model: stop now, not after training to the end
            raise CheckpointError(
                f"{ckpt_dir / best}, the best checkpoint so far, is needed for the export but {problem}; restore it, or start the run over with train.overwrite=true"
            )
    return path


def run_identity(exp, data) -> dict:
    """What a resumed run must share with the run that wrote its checkpoint: the resolved config (less how
    it is launched) and the data: every clip's path, label, speaker, session, split and decoded duration."""
    from . import config as config_module

    flat = config_module.flatten(config_module.to_dict(exp))
    settings = {key: value for key, value in flat.items() if key not in config_module.RUN_CONTROL_KEYS}
    split_of = {i: name for name, indices in data.split_indices.items() for i in indices}
    durations = data.dataset["duration"][:]  # one read: row by row costs ~0.1 ms a row (10 s at 100,000 clips)
    rows = [[r.path, r.label, r.speaker, r.session, split_of.get(i), round(float(durations[i]), 6)] for i, r in enumerate(data.records)]
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    summary = f"{len(rows)} clips, " + ", ".join(f"{name} {len(idx)}" for name, idx in data.split_indices.items())
    return {"config": settings, "data": digest, "data_summary": summary}


def resume_safe_keys(exp) -> tuple:
    """``RESUME_SAFE_KEYS``, less ``train.epochs`` when the lr schedule spans the run's length."""
    from . import config as config_module

    spans_run = exp.optim.scheduler in ("linear_warmup", "cosine_warmup")
    return tuple(key for key in config_module.RESUME_SAFE_KEYS if not (spans_run and key == "train.epochs"))
