"""Checkpoint and resume: atomic writes, keep-last-K plus best, and a run killed with SIGKILL in the
middle of an epoch that, resumed with ``train.resume=auto``, ends exactly where an uninterrupted run
ends (same final weights, same ``training_history.csv``), on 1 rank and on 2 ranks."""

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import DIST_ENV, SPEAKER_PATTERN, TINY_BILSTM, run_entry_point, run_torchrun

from ser_dist.checkpoint import STATE_FILE, TrainerState, complete_checkpoints, resolve_resume, save_checkpoint
from ser_dist.errors import ConfigError

RECIPE = "recipes/bilstm_mfcc_ce.py"
INJECT = "tests/dist/inject_fault.py"


# ---- checkpoint folder rules, in process -------------------------------------------------------------


@pytest.fixture
def accelerator():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield Accelerator(cpu=True)
    AcceleratorState._reset_state(True)


def fake_checkpoint(directory: Path, step: int, state_text: str | None = None) -> Path:
    """A checkpoint folder as save_checkpoint lays it out (weights, schedule, run identity, file list), with
    ``state_text`` as its state file (None: killed before the state file was written)."""
    from ser_dist.checkpoint import FILES_FILE, RUN_FILE, SCHEDULE_FILE, _file_table

    path = directory / f"step-{step:08d}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    (path / SCHEDULE_FILE).write_text("{}")
    (path / RUN_FILE).write_text("{}")
    (path / FILES_FILE).write_text(json.dumps(_file_table(path)))
    if state_text is not None:
        (path / STATE_FILE).write_text(state_text)
    return path


def test_resume_auto_skips_half_written_checkpoints(tmp_path):
    complete = fake_checkpoint(tmp_path, 10, TrainerState(global_step=10).to_json())
    fake_checkpoint(tmp_path, 20)  # killed before its state file: incomplete
    fake_checkpoint(tmp_path, 30, '{"global_step": 3')  # killed while writing the state file
    (tmp_path / ".tmp-step-00000040").mkdir()  # killed while the ranks were still saving
    assert [p for _, p in complete_checkpoints(tmp_path)] == [complete]
    assert resolve_resume("auto", tmp_path) == complete
    assert resolve_resume("auto", tmp_path / "missing") is None  # a fresh run
    assert resolve_resume(None, tmp_path) is None
    with pytest.raises(ConfigError, match="not a complete checkpoint"):
        resolve_resume(str(tmp_path / "step-00000020"), tmp_path)


def test_keep_last_k_plus_best_and_progress_from_state(accelerator, tmp_path):
    model = accelerator.prepare(torch.nn.Linear(3, 2))
    state = TrainerState()
    saved = []
    for step in range(1, 6):
        state.global_step, state.batches_done = step, step
        path = save_checkpoint(accelerator, tmp_path, state, keep_last=2)
        saved.append(path)
        if step == 2:
            state.best_checkpoint = path.name
    kept = [p for _, p in complete_checkpoints(tmp_path)]
    assert kept == [saved[1], saved[3], saved[4]]  # the best (step 2) and the last two
    assert not list(tmp_path.glob(".tmp-*"))
    assert TrainerState.read(saved[4]).global_step == 5 and TrainerState.read(saved[4]).best_checkpoint == saved[1].name
    assert (saved[4] / "model.safetensors").exists() or (saved[4] / "pytorch_model.bin").exists()
    assert model.weight.shape == (2, 3)


def test_resume_with_another_number_of_processes_fails_clearly(accelerator, tmp_path):
    from ser_dist.checkpoint import load_checkpoint

    accelerator.prepare(torch.nn.Linear(3, 2))
    path = save_checkpoint(accelerator, tmp_path, TrainerState(global_step=3, num_processes=1), keep_last=2)
    assert load_checkpoint(accelerator, path).global_step == 3
    (path / STATE_FILE).write_text(TrainerState(global_step=3, num_processes=2).to_json())
    with pytest.raises(ConfigError, match="saved by 2 process\\(es\\) but this run has 1; resume with 2 processes"):
        load_checkpoint(accelerator, path)


# ---- SIGKILL mid-epoch, then resume: same result as never stopping ----------------------------------


def run_args(corpus: Path, out: Path, save_every: int, *extra: str) -> list[str]:
    return [
        RECIPE,
        f"data.root={corpus}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        f"train.output_dir={out}",
        "train.epochs=2",
        "train.batch_size=4",
        f"train.save_every_steps={save_every}",
        "train.keep_last=2",
        "train.early_stopping_patience=null",
        "train.report_to=[]",
        "model.dropout=0.3",
        *TINY_BILSTM[:2],
        "data.max_seconds=2.0",
        *extra,
    ]


def launch(nproc: int, args: list[str]):
    if nproc == 1:
        return run_entry_point(args, env=DIST_ENV)
    return run_torchrun(*args, nproc=nproc)


def load_weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


# 36 training clips in batches of 4. The kill comes in the loss of batch ``kill_at``, before its update.
# 1 rank: 9 batches/epoch, checkpoints at steps 4, 8, 9 (epoch end), 12; killed at batch 15 -> resumes at epoch 2, batch 3.
# 2 ranks: 5 batches/epoch each, checkpoints at steps 2, 4, 5 (epoch end), 6, 8; killed at batch 8 -> resumes at epoch 2, batch 1.
# The third case: per-speaker statistics (refitted from the data at the restart) and mixup (torch's RNG, restored);
# mixup calls the loss twice a batch, so the injector's 29th call is batch 15's.
@pytest.mark.parametrize(
    "nproc, save_every, kill_at, resumed_at, extra",
    [
        (1, 4, 15, "epoch 2, batch 3, step 12", ()),
        (2, 2, 8, "epoch 2, batch 1, step 6", ()),
        (1, 4, 29, "epoch 2, batch 3, step 12", ("model.feature_norm=speaker", "train.mixup_alpha=0.4")),
    ],
)
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(nproc, save_every, kill_at, resumed_at, extra, demo_corpus, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    result = launch(nproc, run_args(demo_corpus, straight, save_every, *extra))
    assert result.returncode == 0, result.stderr[-3000:]

    result = launch(nproc, [INJECT, "kill", str(kill_at), "all", "--", *run_args(demo_corpus, killed, save_every, *extra)])
    assert result.returncode != 0
    assert not (killed / "metrics.json").exists() and not (killed / "training_history.csv").exists()
    (killed / "checkpoints" / ".tmp-step-99999999-half-written").mkdir()  # as a kill during a save leaves it

    result = launch(nproc, run_args(demo_corpus, killed, save_every, *extra, "train.resume=auto"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(rf"resumed from \S+ \({resumed_at}\)", result.stdout), result.stdout

    assert (killed / "training_history.csv").read_text() == (straight / "training_history.csv").read_text()
    expected, got = load_weights(straight / "model" / "model.safetensors"), load_weights(killed / "model" / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    last = lambda out: json.loads((complete_checkpoints(out / "checkpoints")[-1][1] / STATE_FILE).read_text())  # noqa: E731
    assert last(killed)["global_step"] == last(straight)["global_step"]
    metrics = [json.loads((out / "metrics.json").read_text()) for out in (straight, killed)]
    assert metrics[0]["test"] == metrics[1]["test"]
