"""Freezing is one mechanism on any number of processes: a freeze-then-unfreeze schedule on one global batch
gives the same weights on 1 process, 2 DDP processes (gloo) and 2 ZeRO-2 processes, and on each of them a
frozen part is bit-identical while frozen and trains after its unfreeze (tests/dist/freeze_schedule.py)."""

import importlib.util

import pytest
import torch
from conftest import DIST_ENV, deepspeed_launch, run_entry_point, run_torchrun

SCRIPT = "tests/dist/freeze_schedule.py"
CNN, ENCODER = "hubert.feature_extractor.", "hubert."


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("freezing")
    results = {
        "1 process": run_entry_point([SCRIPT, str(out / "one.pt")], env=DIST_ENV),
        "2 DDP": run_torchrun(SCRIPT, str(out / "ddp.pt")),
    }
    if importlib.util.find_spec("deepspeed") is not None:
        results["2 ZeRO-2"] = run_entry_point(
            [*deepspeed_launch("zero2.json"), SCRIPT, str(out / "zero2.pt")],
            env={"OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "false"},
        )
    for name, result in results.items():
        assert result.returncode == 0, name + "\n" + result.stdout[-2000:] + result.stderr[-3000:]
    saved = {name: torch.load(out / f"{file}.pt") for name, file in zip(results, ("one", "ddp", "zero2"))}
    assert [s["num_processes"] for s in saved.values()] == [1, 2, 2][: len(saved)]
    assert saved.get("2 ZeRO-2", {"deepspeed": True})["deepspeed"] and not saved["2 DDP"]["deepspeed"]
    return saved


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_one_process_and_two_ddp_processes_train_the_same_weights(runs):
    one, ddp = runs["1 process"]["snapshots"], runs["2 DDP"]["snapshots"]
    for epoch, (a, b) in enumerate(zip(one, ddp)):
        assert max_difference(a, b) <= 1e-5, f"after epoch {epoch}"


def test_zero2_trains_the_same_weights_as_ddp(runs):
    if "2 ZeRO-2" not in runs:
        pytest.skip("deepspeed is not installed")
    for epoch, (a, b) in enumerate(zip(runs["2 DDP"]["snapshots"], runs["2 ZeRO-2"]["snapshots"])):
        assert max_difference(a, b) <= 1e-4, f"after epoch {epoch}"


@pytest.mark.parametrize("launch", ["1 process", "2 DDP", "2 ZeRO-2"])
def test_a_frozen_part_is_bit_identical_while_frozen_and_trains_after(runs, launch):
    if launch not in runs:
        pytest.skip("deepspeed is not installed")
    run = runs[launch]
    assert run["frozen"] == [["encoder", "feature_encoder"], ["feature_encoder"], []]
    before, epoch1, epoch2, epoch3 = run["snapshots"]
    cnn = [k for k in before if k.startswith(CNN)]
    encoder = [k for k in before if k.startswith(ENCODER) and not k.startswith(CNN)]
    head = [k for k in before if not k.startswith(ENCODER)]
    assert cnn and encoder and head
    assert all(torch.equal(before[k], epoch1[k]) for k in encoder + cnn)  # epoch 1: the whole encoder frozen
    assert all(not torch.equal(before[k], epoch1[k]) for k in head if k.endswith("weight"))  # the head trains from the start
    assert all(torch.equal(epoch1[k], epoch2[k]) for k in cnn)  # epoch 2: the CNN still frozen ...
    assert all(not torch.equal(epoch1[k], epoch2[k]) for k in encoder)  # ... the rest of the encoder trains
    assert all(not torch.equal(epoch2[k], epoch3[k]) for k in cnn)  # epoch 3: everything trains


# ---- the unfreeze survives a resume: the optimizer state is reset once, at the epoch start -------------


def ssl_args(corpus, out, *extra: str) -> list[str]:
    from conftest import tiny_ssl_args

    return tiny_ssl_args(corpus, out, "train.batch_size=4", "train.save_every_steps=4", "train.keep_last=10", "train.report_to=[]", *extra)


@pytest.fixture(scope="module")
def ssl_straight(demo_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ssl_straight") / "run"
    result = run_entry_point(ssl_args(demo_corpus, out), env=DIST_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


# Checkpoints at steps 4, 8, 9 (epoch 1 end: the CNN unfreezes next), 12 (mid-epoch 2, after the unfreeze), 16, 18.
@pytest.mark.parametrize("checkpoint, name", [(3, "step-00000009-epoch-001-batch-00000"), (4, "step-00000012-epoch-001-batch-00003")])
def test_resume_at_and_after_the_unfreeze_equals_the_uninterrupted_run(checkpoint, name, ssl_straight, demo_corpus, tmp_path):
    out = tmp_path / "run"
    killed = run_entry_point(
        ["tests/dist/inject_fault.py", "kill_after_checkpoint", str(checkpoint), "all", "--", *ssl_args(demo_corpus, out)], env=DIST_ENV
    )
    assert killed.returncode != 0 and f"killed after checkpoint {name}" in killed.stdout, killed.stdout[-2000:] + killed.stderr[-2000:]
    result = run_entry_point(ssl_args(demo_corpus, out, "train.resume=auto"), env=DIST_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from {out / 'checkpoints' / name}" in result.stdout
    for file in ("training_history.csv", "metrics.json", "model/model.safetensors"):
        assert (out / file).read_bytes() == (ssl_straight / file).read_bytes(), file
