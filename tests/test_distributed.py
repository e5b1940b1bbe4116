"""Two real ranks over gloo on CPU: exact evaluation counts, 1 rank == 2 ranks for one global batch,
decisions taken on the same step everywhere, rank-0-only outputs, collective checkpoints, and faults
(non-finite losses, a dying rank, out of memory) that end in a clear message instead of a hang."""

import csv
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import DIST_ENV, SPEAKER_PATTERN, TINY_BILSTM, mlflow_env, run_entry_point, run_torchrun

RECIPE = "recipes/bilstm_mfcc_ce.py"
INJECT = "tests/dist/inject_fault.py"


def run_in_process(script: str, *args: str, monkeypatch) -> None:
    """Run a helper script as ``__main__`` in this process, on one rank (fresh Accelerate state before and after)."""
    import runpy
    import sys

    from accelerate.state import AcceleratorState
    from conftest import ROOT

    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(sys, "argv", [script, *args])
    AcceleratorState._reset_state(True)
    try:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    finally:
        AcceleratorState._reset_state(True)


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def odd_corpus(demo_corpus, tmp_path_factory) -> Path:
    """The demo corpus less one clip per speaker: 17 clips per speaker, so val and test have odd sizes."""
    root = tmp_path_factory.mktemp("odd") / "corpus"
    shutil.copytree(demo_corpus, root)
    for speaker in ("spk01", "spk02", "spk03", "spk04"):
        next(iter(sorted(root.glob(f"Anger/{speaker}_*.wav")))).unlink()
    return root


def recipe_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.root={corpus}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        f"train.output_dir={out}",
        "train.report_to=[tensorboard]",
        "train.batch_size=4",
        *TINY_BILSTM[:2],
        "data.max_seconds=2.0",
        *extra,
    ]


@pytest.fixture(scope="module")
def two_rank_run(odd_corpus, tmp_path_factory):
    """2 ranks; rank 1's loss is NaN at its batches 2 and 3. A tiny lr keeps predictions (and UA) fixed,
    so UA never improves: the plateau halves the lr after epoch 2 and early stopping (patience 1) ends
    the run after epoch 2 of 4. Per-speaker normalisation and mixup on: each rank fits the same statistics
    and looks up its own clips' speakers."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    result = run_torchrun(
        INJECT,
        "nan",
        "2",
        "1",
        "2",
        "--",
        RECIPE,
        *recipe_args(
            odd_corpus,
            out,
            "train.epochs=4",
            "optim.lr=1e-7",
            "train.metric=ua",
            "train.early_stopping_patience=1",
            "optim.scheduler=plateau",
            "optim.plateau_patience=0",
            "optim.plateau_factor=0.5",
            "model.feature_norm=speaker",
            "train.mixup_alpha=0.2",
            *TRACKED,
        ),
        env=mlflow_env(out.parent),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


# MLflow beside TensorBoard when it is installed; progress as log lines, one per update
TRACKED = (["train.report_to=[tensorboard,mlflow]"] if importlib.util.find_spec("mlflow") else []) + [
    "train.progress=log",
    "train.progress_seconds=0",
    "train.log_every_steps=1",
]


def test_evaluation_counts_every_clip_once(two_rank_run):
    out, _ = two_rank_run
    metrics = json.loads((out / "metrics.json").read_text())
    split = read_csv(out / "split.csv")
    test_paths = sorted(r["path"] for r in split if r["split"] == "test")
    assert metrics["num_processes"] == 2 and "transductive" in metrics["protocol"]
    assert len(test_paths) % 2 == 1  # odd: the last batch is padded on one rank and must be dropped
    assert metrics["test"]["num_examples"] == len(test_paths) == sum(map(sum, metrics["test"]["confusion_matrix"]))
    predicted = sorted(r["path"] for r in read_csv(out / "test_predictions.csv"))
    assert predicted == test_paths  # each test clip exactly once


def test_decisions_are_taken_on_the_same_step_on_every_rank(two_rank_run):
    """The trainer all-gathers (epoch, step, stop, lr, freeze) each epoch and fails on any difference;
    the run got through with early stopping and a plateau lr cut, and the NaN batches seen by rank 1
    alone were skipped by both ranks (the step counts, compared every epoch, stayed equal)."""
    out, result = two_rank_run
    metrics = json.loads((out / "metrics.json").read_text())
    history = read_csv(out / "training_history.csv")
    assert [int(r["epoch"]) for r in history] == [1, 2]
    assert metrics["stopped_early"] is True and metrics["best_epoch"] == 1
    assert float(history[1]["lr"]) == pytest.approx(float(history[0]["lr"]) / 2)
    assert metrics["nonfinite_steps"] == 2
    assert [int(r["nonfinite_steps"]) for r in history] == [2, 2]
    assert "non-finite loss or gradients, step skipped (2 so far)" in result.stdout
    assert "early stopping" in result.stdout


def test_only_rank_zero_writes_and_checkpoints_hold_every_rank(two_rank_run):
    out, result = two_rank_run
    log = (out / "train.log").read_text()
    assert log.count("epoch 1/4:") == 1 and log.count("test (") == 1
    assert result.stdout.count("epoch 1/4:") == 1
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    progress_lines = [line for line in result.stderr.splitlines() if "epoch 1/4: " in line and "batches" in line]
    assert progress_lines and sum("(100%)" in line for line in progress_lines) == 1  # rank 0's bar alone
    counts = [re.search(r"epoch 1/4: (\d+)/\d+ batches", line).group(1) for line in progress_lines]
    assert len(counts) == len(set(counts))  # each batch count once: one process prints
    if "train.report_to=[tensorboard,mlflow]" in TRACKED:
        import mlflow

        client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{out.parent / 'mlflow.db'}")
        (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])  # one run, from rank 0
        skipped = client.get_metric_history(run.info.run_id, "train/skipped_steps")
        assert max(m.value for m in skipped) == 2  # the two NaN steps rank 1 saw, skipped on both ranks
        assert len({m.step for m in client.get_metric_history(run.info.run_id, "train/loss")}) == len(
            client.get_metric_history(run.info.run_id, "train/loss")
        )  # each step logged once
    assert {"config.json", "model.safetensors", "ser_dist.json"} <= {p.name for p in (out / "model").iterdir()}
    assert not list(out.glob(".old-*"))
    assert not list(out.glob(".tmp-*")) and not list((out / "checkpoints").glob(".tmp-*"))
    checkpoints = sorted((out / "checkpoints").iterdir())
    assert checkpoints
    for checkpoint in checkpoints:  # written collectively: the RNG state of each rank
        assert (checkpoint / "random_states_0.pkl").exists() and (checkpoint / "random_states_1.pkl").exists()
        assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] > 0


def test_one_global_batch_same_loss_and_weights_on_1_and_2_ranks(tmp_path, monkeypatch):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    run_in_process("tests/dist/one_global_batch.py", str(one), monkeypatch=monkeypatch)  # 1 rank: no process start-up to pay
    result = run_torchrun("tests/dist/one_global_batch.py", str(two))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("divergence caught") == 2  # check_ranks_agree fails on both ranks, not just one
    a, b = torch.load(one), torch.load(two)
    assert (a["num_processes"], b["num_processes"]) == (1, 2)
    assert b["loss"] == pytest.approx(a["loss"], abs=1e-6)
    for name, weight in a["weights"].items():
        update = (weight - a["initial"][name]).abs().max()
        if weight.is_floating_point() and update > 0:
            assert update > 1e-4, name  # the step moved this tensor by far more than the tolerance
        torch.testing.assert_close(b["weights"][name], weight, atol=5e-5, rtol=1e-4)


def test_a_dying_rank_ends_the_job_with_its_error_and_oom_names_the_batch(odd_corpus, tmp_path):
    """Rank 1 runs out of memory at its 2nd batch while rank 0 waits in the gradient all-reduce: the job
    exits non-zero within the timeout (no hang) and the rank's one-line error reaches the console
    (torch.distributed's excepthook would otherwise swallow it)."""
    out = tmp_path / "run"
    result = run_torchrun(INJECT, "oom", "2", "1", "--", RECIPE, *recipe_args(odd_corpus, out, "train.epochs=2"), timeout=180)
    assert result.returncode != 0
    assert not (out / "metrics.json").exists()
    lines = [line for line in result.stderr.splitlines() if line.startswith("ser-dist: error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert re.match(
        r"ser-dist: error: out of memory on cpu(:0)? in a training batch of 4 clips \(train.batch_size=4\), the longest 2\.0 s; lower",
        lines[0],
    ), lines[0]
    assert "[rank1]: Traceback" not in result.stderr


def test_persistent_nonfinite_loss_stops_with_a_clear_message(odd_corpus, tmp_path):
    out = tmp_path / "run"
    args = recipe_args(odd_corpus, out, "train.epochs=2", "train.max_nonfinite_steps=3")
    result = run_entry_point([INJECT, "nan", "1", "all", "0", "--", RECIPE, *args], env=DIST_ENV)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "ser-dist: error: 3 optimizer steps in a row had non-finite loss or gradients" in result.stderr
    assert result.stdout.count("step skipped") == 3


def test_launch_files_parse():
    """The GPU and SLURM helpers cannot run here (no GPU, no SLURM): their config must load and their shell must parse."""
    import subprocess

    from accelerate.commands.config.config_args import load_config_from_file
    from conftest import ROOT

    config = load_config_from_file(str(ROOT / "accelerate_config.yaml"))
    assert (config.distributed_type, config.mixed_precision, config.num_machines, config.gpu_ids) == ("MULTI_GPU", "bf16", 1, "all")
    for script in ("multi_gpu.sh", "slurm_multinode.sbatch", "cpu_multiprocess.sh"):
        assert subprocess.run(["bash", "-n", str(ROOT / "launch" / script)]).returncode == 0, script
    slurm = (ROOT / "launch" / "slurm_multinode.sbatch").read_text()
    for flag in ("--num_machines", "--machine_rank", "--main_process_ip", "--rdzv_backend c10d", '--config_file "$CONFIG_FILE"'):
        assert flag in slurm
