"""Resume under faults: a SIGKILL right after each checkpoint of a short run, damaged or hostile checkpoint
files, a resume with other settings or data, and output folders shared by two runs.

The short run: 36 training clips in batches of 4 (9 steps an epoch), 3 epochs, a checkpoint every 8
steps and at each epoch end, early stopping on the validation loss. Its six checkpoints are, in order:
step 8 (mid-epoch), 9 (epoch 1 end, improving), 16 (mid-epoch), 18 (epoch 2 end, improving), 24
(mid-epoch), 27 (epoch 3 end, not improving), so the best model is epoch 2's.
"""

import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
from conftest import DIST_ENV, SPEAKER_PATTERN, assert_one_line_error, run_entry_point

from ser_dist.checkpoint import FILES_FILE, STATE_FILE, TrainerState, complete_checkpoints

RECIPE = "recipes/bilstm_mfcc_ce.py"
INJECT = "tests/dist/inject_fault.py"
CHECKPOINTS = ["step-00000008", "step-00000009", "step-00000016", "step-00000018", "step-00000024", "step-00000027"]
# What a run leaves that must not depend on whether it was interrupted.
SAME_FILES = [
    "metrics.json",
    "training_history.csv",
    "test_predictions.csv",
    "model/model.safetensors",
    "model/ser_dist.json",
    "model/config.json",
    "model/README.md",
]


def args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        RECIPE,
        f"data.root={corpus}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        f"train.output_dir={out}",
        "train.epochs=3",
        "train.batch_size=4",
        "train.save_every_steps=8",
        "train.keep_last=2",
        "train.metric=loss",
        "train.early_stopping_patience=null",
        "train.report_to=[]",
        "optim.lr=0.01",
        "model.hidden_size=16",
        "model.embedding_size=16",
        "data.max_seconds=1.0",
        *extra,
    ]


def run(*argv: str):
    return run_entry_point(list(argv), env=DIST_ENV)


def killed_after(checkpoint: int, corpus: Path, out: Path, *extra: str):
    result = run(INJECT, "kill_after_checkpoint", str(checkpoint), "all", "--", *args(corpus, out, *extra))
    assert result.returncode != 0 and "killed after checkpoint" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    assert not (out / "metrics.json").exists()
    return result


def assert_same_run(straight: Path, resumed: Path) -> None:
    for name in SAME_FILES:
        assert (resumed / name).read_bytes() == (straight / name).read_bytes(), name


@pytest.fixture(scope="module")
def straight(demo_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    result = run(*args(demo_corpus, out))
    assert result.returncode == 0, result.stderr[-3000:]
    history = [json.loads(json.dumps(row)) for row in TrainerState.read(complete_checkpoints(out / "checkpoints")[-1][1]).history]
    improving = [row["val_loss"] < min([r["val_loss"] for r in history[:i]] or [float("inf")]) for i, row in enumerate(history)]
    assert improving == [True, True, False], history  # the schedule of checkpoints the module docstring describes
    assert json.loads((out / "metrics.json").read_text())["best_epoch"] == 2
    return out


@pytest.mark.parametrize("checkpoint", range(1, 7), ids=lambda k: CHECKPOINTS[k - 1])
def test_sigkill_after_each_checkpoint_then_resume_equals_the_uninterrupted_run(checkpoint, straight, demo_corpus, tmp_path):
    out = tmp_path / "run"
    killed_after(checkpoint, demo_corpus, out)
    latest = complete_checkpoints(out / "checkpoints")[-1][1]
    assert latest.name.startswith(CHECKPOINTS[checkpoint - 1])
    if checkpoint in (2, 4):  # an improving epoch end names itself the best, in its own state file
        assert TrainerState.read(latest).best_checkpoint == latest.name
    result = run(*args(demo_corpus, out, "train.resume=auto"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from {latest}" in result.stdout
    assert_same_run(straight, out)


def test_resume_from_a_path_to_an_improving_checkpoint_with_a_checkpoint_every_step(demo_corpus, tmp_path):
    """Once failed with 'Tried to find step-...' and every later resume with it: the best was pruned."""
    straight, out = tmp_path / "straight", tmp_path / "killed"
    assert run(*args(demo_corpus, straight, "train.save_every_steps=1")).returncode == 0
    killed_after(18, demo_corpus, out, "train.save_every_steps=1")  # the 18th is epoch 2's end, improving
    improving = [p for _, p in complete_checkpoints(out / "checkpoints")][-1]
    assert improving.name == "step-00000018-epoch-002-batch-00000"
    result = run(*args(demo_corpus, out, "train.save_every_steps=1", f"train.resume={improving}"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(straight, out)


class Payload:
    """Unpickling this writes a marker file: what a crafted checkpoint file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_damaged_checkpoints_fall_back_to_the_newest_whole_one_and_hostile_pickles_never_run(straight, demo_corpus, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "pwned"
    killed_after(5, demo_corpus, out, "train.keep_last=5")
    found = [p for _, p in complete_checkpoints(out / "checkpoints")]
    assert [p.name[:13] for p in found] == CHECKPOINTS[:5]
    (found[4] / "model.safetensors").write_bytes((found[4] / "model.safetensors").read_bytes()[:100])  # truncated
    (found[3] / "optimizer.bin").write_bytes((found[3] / "optimizer.bin").read_bytes()[:-7])
    (found[2] / "random_states_0.pkl").write_bytes(pickle.dumps(Payload(marker)))  # crafted
    (found[1] / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Payload(marker)))  # the old, pickled schedule file
    (found[0] / "schedule.json").write_text((found[0] / "schedule.json").read_text())  # rewritten, same bytes: still whole

    with_path = run(*args(demo_corpus, out, f"train.resume={found[4]}"))
    assert_one_line_error(with_path, str(found[4]), "model.safetensors is truncated")

    result = run(*args(demo_corpus, out, "train.resume=auto", "train.keep_last=2"))
    assert result.returncode == 0, result.stderr[-3000:]
    passed_over = re.findall(r"resume: passing over (\S+): (\S+) is (truncated|not one of the files)", result.stdout)
    assert passed_over == [
        (found[4].name, "model.safetensors", "truncated"),
        (found[3].name, "optimizer.bin", "truncated"),
        (found[2].name, "random_states_0.pkl", "truncated"),
        (found[1].name, "custom_checkpoint_0.pkl", "not one of the files"),
    ], result.stdout
    assert f"resumed from {found[0]}" in result.stdout
    assert not marker.exists()
    assert_same_run(straight, out)
    assert sorted(p.name for p in (out / "checkpoints").glob(".damaged-*")) == sorted(f".damaged-{p.name}" for p in found[1:5])


def test_resume_with_other_settings_or_other_data_stops_in_one_line(demo_corpus, tmp_path):
    out = tmp_path / "run"
    killed_after(2, demo_corpus, out)
    assert_one_line_error(
        run(*args(demo_corpus, out, "train.resume=auto", "optim.lr=0.02")), "optim.lr=0.01 then, 0.02 now", "safe to change: "
    )
    assert_one_line_error(run(*args(demo_corpus, out, "train.resume=auto", "model.dropout=0.1")), "model.dropout=0.3 then, 0.1 now")
    fewer = tmp_path / "fewer"
    shutil.copytree(demo_corpus, fewer)
    next(fewer.rglob("*.wav")).unlink()
    assert_one_line_error(run(*args(fewer, out, "train.resume=auto")), "was trained on other data", "72 clips", "71 clips")
    # a safe change (more epochs, with the per-epoch plateau schedule) continues the run
    result = run(*args(demo_corpus, out, "train.resume=auto", "train.epochs=4"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 4


def test_one_folder_holds_one_run(demo_corpus, tmp_path):
    from ser_dist import run_folder

    out = tmp_path / "run"
    assert run(*args(demo_corpus, out, "train.epochs=1")).returncode == 0
    (out / "notes.txt").write_text("mine")
    assert_one_line_error(
        run(*args(demo_corpus, out, "train.epochs=1")),
        f"train.output_dir={out} holds another run",
        "train.resume=auto",
        "train.overwrite=true",
    )
    result = run(*args(demo_corpus, out, "train.epochs=1", "train.overwrite=true", "train.report_to=[tensorboard]"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "train.log").read_text().count("process(es) on") == 1  # the old run's log is gone, not appended to
    assert len(list((out / "tensorboard").glob("events.*"))) == 1
    assert (out / "notes.txt").read_text() == "mine"  # only what a run writes is cleared
    assert_one_line_error(run(*args(demo_corpus, out, "train.overwrite=true", "train.resume=auto")), "contradict")

    mine = tmp_path / "mine"  # files named like a run's, that no ser-dist run wrote: never cleared
    mine.mkdir()
    (mine / "config.yaml").write_text("my own settings")
    for extra in ([], ["train.overwrite=true"]):
        assert_one_line_error(run(*args(demo_corpus, mine, "train.epochs=1", *extra)), "that ser-dist did not write there")
    assert (mine / "config.yaml").read_text() == "my own settings"

    run_folder.lock(out)  # a live run holds the folder
    try:
        assert_one_line_error(run(*args(demo_corpus, out, "train.resume=auto")), f"train.output_dir={out} is in use by a live run", "pid ")
    finally:
        run_folder.release(out)


def test_resume_auto_in_a_folder_whose_run_died_before_its_first_checkpoint_starts_clean(straight, demo_corpus, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "train.log").write_text("[00:00:00] an earlier run that died in data preparation\n")
    (out / ".ser-dist.lock").write_text("")  # as every run leaves it
    (out / "checkpoints" / ".tmp-step-00000003-epoch-000-batch-00003").mkdir(parents=True)
    result = run(*args(demo_corpus, out, "train.resume=auto"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no checkpoint to continue from" in result.stdout
    assert "an earlier run" not in (out / "train.log").read_text()
    assert_same_run(straight, out)


def test_files_json_lists_every_checkpoint_file(straight):
    for _, path in complete_checkpoints(straight / "checkpoints"):
        table = json.loads((path / FILES_FILE).read_text())
        on_disk = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} - {STATE_FILE, FILES_FILE}
        assert set(table) == on_disk and {"model.safetensors", "optimizer.bin", "schedule.json", "run.json"} <= on_disk
        assert not (path / "custom_checkpoint_0.pkl").exists()  # the schedule is JSON, not a pickle


# ---- non-finite runs never end as a success ------------------------------------------------------------


def test_a_run_whose_every_step_was_non_finite_writes_no_metrics(demo_corpus, tmp_path):
    out = tmp_path / "run"
    result = run(INJECT, "nan", "1", "all", "0", "--", *args(demo_corpus, out, "train.epochs=1", "train.max_nonfinite_steps=1000"))
    assert_one_line_error(result, "every one of the run's 9 optimizer steps had a non-finite loss", "no model or metrics are written")
    assert not (out / "metrics.json").exists() and not (out / "model").exists()


def test_non_finite_model_outputs_fail_evaluation_instead_of_counting_as_the_first_class():
    import torch
    from accelerate import Accelerator

    from ser_dist.models.base import SEROutput
    from ser_dist.trainer import TrainingError, evaluate

    class Broken(torch.nn.Module):
        def forward(self, x, lengths):
            logits = torch.zeros(len(x), 3)
            logits[0] = float("nan")
            return SEROutput(logits=logits, embedding=logits)

    batch = {
        "input_values": torch.zeros(4, 10),
        "lengths": torch.full((4,), 10),
        "labels": torch.tensor([0, 1, 2, 0]),
        "index": torch.arange(4),
    }
    with pytest.raises(TrainingError, match=r"non-finite \(NaN/inf\) for 1 of 4 clips"):
        evaluate(Broken(), [batch], torch.nn.CrossEntropyLoss(), Accelerator(cpu=True), ["a", "b", "c"])


def test_resume_auto_sets_aside_a_checkpoint_whose_state_file_is_truncated(tmp_path):
    from test_resume import fake_checkpoint

    from ser_dist.checkpoint import resolve_resume

    whole = fake_checkpoint(tmp_path, 10, TrainerState(global_step=10).to_json())
    damaged = fake_checkpoint(tmp_path, 20, TrainerState(global_step=20).to_json()[:40])
    said = []
    assert resolve_resume("auto", tmp_path, said.append) == whole
    assert said == [
        f"resume: passing over {damaged.name}: {STATE_FILE} is missing or unreadable; set aside as .damaged-{damaged.name}, trying the previous checkpoint"
    ]
    assert (tmp_path / f".damaged-{damaged.name}").is_dir() and not damaged.exists()


def test_hostile_pickles_in_a_consistent_checkpoint_are_refused_unread(demo_corpus, tmp_path):
    """The strongest attacker rewrites files.json too. accelerate would unpickle a custom_checkpoint_*.pkl with
    weights_only=False (ser-dist once stored its lr schedule so), and drops an RNG file it cannot load in silence."""
    from ser_dist.checkpoint import _file_table

    out, marker = tmp_path / "run", tmp_path / "pwned"
    killed_after(2, demo_corpus, out)
    latest = complete_checkpoints(out / "checkpoints")[-1][1]
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl"):
        original = (latest / name).read_bytes() if (latest / name).exists() else None
        (latest / name).write_bytes(pickle.dumps(Payload(marker)))
        (latest / FILES_FILE).write_text(json.dumps(_file_table(latest)))
        assert_one_line_error(run(*args(demo_corpus, out, "train.resume=auto")), str(latest / name))
        assert not marker.exists()
        if original is None:
            (latest / name).unlink()
        else:
            (latest / name).write_bytes(original)


# ---- runs and checkpoints tampered with or half gone -----------------------------------------------------


def test_resume_auto_never_clears_a_finished_run_whose_checkpoints_are_gone(straight, demo_corpus, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(straight, out)
    shutil.rmtree(out / "checkpoints")
    assert_one_line_error(
        run(*args(demo_corpus, out, "train.resume=auto")), "holds a finished run (metrics.json, model) but no checkpoint to resume from"
    )
    (out / "checkpoints").write_text("junk")
    assert_one_line_error(run(*args(demo_corpus, out, "train.resume=auto")), f"{out / 'checkpoints'} is a file")
    assert (out / "metrics.json").read_bytes() == (straight / "metrics.json").read_bytes()


def test_a_checkpoint_without_its_run_identity_or_with_a_tampered_state_is_not_resumed(demo_corpus, tmp_path):
    from ser_dist.checkpoint import RUN_FILE, _file_table

    out = tmp_path / "run"
    killed_after(4, demo_corpus, out, "train.keep_last=5")
    found = [p for _, p in complete_checkpoints(out / "checkpoints")]
    latest = found[-1]
    (latest / RUN_FILE).unlink()  # a resume with other settings must not slip through
    (latest / FILES_FILE).write_text(json.dumps(_file_table(latest)))
    assert_one_line_error(run(*args(demo_corpus, out, f"train.resume={latest}", "optim.lr=0.002")), str(latest), "does not list run.json")
    (latest / FILES_FILE).unlink()
    assert_one_line_error(run(*args(demo_corpus, out, f"train.resume={latest}")), "files.json is missing")

    state = json.loads((found[2] / STATE_FILE).read_text())
    for field, value in (("epoch", "abc"), ("history", 5)):
        (found[2] / STATE_FILE).write_text(json.dumps({**state, field: value}))
        assert_one_line_error(run(*args(demo_corpus, out, f"train.resume={found[2]}")), "state or file list is unreadable", field)
    (found[2] / STATE_FILE).write_text(json.dumps({**state, "batches_done": 100000}))
    assert_one_line_error(run(*args(demo_corpus, out, f"train.resume={found[2]}")), "100000 batches into the epoch, but an epoch has 9")


def test_a_resume_whose_best_checkpoint_is_gone_stops_before_training(demo_corpus, tmp_path):
    out = tmp_path / "run"
    killed_after(5, demo_corpus, out, "train.keep_last=1")  # kept: step 18 (the best) and step 24
    best = TrainerState.read(complete_checkpoints(out / "checkpoints")[-1][1]).best_checkpoint
    shutil.rmtree(out / "checkpoints" / best)
    result = run(*args(demo_corpus, out, "train.resume=auto", "train.keep_last=1"))
    assert_one_line_error(result, f"{best}, the best checkpoint so far, is needed for the export but it is missing")
    assert "epoch 3/3" not in result.stdout


def test_bad_run_settings_stop_before_training(demo_corpus, tmp_path):
    assert_one_line_error(
        run(*args(demo_corpus, tmp_path / "a", "train.grad_accum_steps=1000")),
        "train.grad_accum_steps=1000 x 1 process(es) takes 1000 batches per optimizer step, but an epoch has 9",
    )
    assert_one_line_error(run(*args(demo_corpus, tmp_path / "b", "train.output_dir=")), "train.output_dir needs a value")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(
        run(*args(demo_corpus, tmp_path / "file")), f"train.output_dir={tmp_path / 'file'}: {tmp_path / 'file'} is a file"
    )
    assert_one_line_error(run(*args(demo_corpus, tmp_path / "file" / "sub")), f"{tmp_path / 'file'} is a file")
    assert_one_line_error(
        run(*args(demo_corpus, tmp_path / "c", f"data.cache_dir={tmp_path / 'file'}")), f"data.cache_dir={tmp_path / 'file'}"
    )
    assert_one_line_error(run(*args(demo_corpus, Path("/proc/ser-dist-test"))), "cannot create or write this folder")
    assert not (ROOT_DIR / "None").exists()


ROOT_DIR = Path(__file__).resolve().parents[1]


def test_resume_auto_with_every_checkpoint_damaged_never_retrains_over_a_finished_run(straight, demo_corpus, tmp_path):
    from ser_dist.checkpoint import RUN_FILE

    out = tmp_path / "run"
    shutil.copytree(straight, out)
    for _, path in complete_checkpoints(out / "checkpoints"):
        (path / RUN_FILE).unlink()
    result = run(*args(demo_corpus, out, "train.resume=auto"))
    assert_one_line_error(result, "no whole checkpoint to resume from", "holds a finished run (metrics.json, model)")
    assert (out / "model" / "model.safetensors").read_bytes() == (straight / "model" / "model.safetensors").read_bytes()
