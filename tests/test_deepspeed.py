"""DeepSpeed ZeRO-2 and ZeRO-3 through Accelerate on 2 CPU ranks (gloo), with a tiny random wav2vec2
(weight-norm positional conv, group norm) and the launch/deepspeed JSON files and their "auto" values:
the frozen-then-unfrozen encoder trains under ZeRO, and the ZeRO-3 export holds the full gathered
weights and loads in a fresh process."""

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT, SPEAKER_PATTERN, assert_predict_reproduces_test_predictions, deepspeed_launch, run_entry_point

pytest.importorskip("deepspeed")

RECIPE = "recipes/wav2vec2_base_ce.py"


def deepspeed_run(config: str, corpus: Path, out: Path, *extra: str, fault: tuple = ()):
    launch = deepspeed_launch(config)
    script = ["tests/dist/inject_fault.py", *fault, "--", RECIPE] if fault else [RECIPE]
    args = [
        *script,
        "model.backbone=wav2vec2_tiny_random",
        "model.pretrained=false",
        "data.corpus=folder",
        "data.split=speaker",
        f"data.root={corpus}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        f"train.output_dir={out}",
        "train.epochs=2",
        "train.batch_size=4",
        "train.grad_accum_steps=1",
        "data.batch_seconds=null",
        "data.max_seconds=2.0",
        "train.report_to=[]",
        "model.freeze_feature_encoder_epochs=-1",
        "model.freeze_backbone_epochs=1",
        "train.max_grad_norm=0.5",
        *extra,
    ]
    # No ACCELERATE_USE_CPU: it makes Accelerate drop DeepSpeed; without CUDA the trainer picks gloo itself.
    result = run_entry_point([*launch, *args], timeout=420, env={"OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "false"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def zero2_run(demo_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("zero2") / "run"
    # Rank 1's loss is NaN at its batches 2 and 3: both ranks must skip those steps (ZeRO steps inside backward).
    return out, deepspeed_run(
        "zero2.json", demo_corpus, out, "train.save_every_steps=2", "train.keep_last=100", fault=("nan", "2", "1", "2")
    )


@pytest.fixture(scope="module")
def zero3_run(demo_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("zero3") / "run"
    return out, deepspeed_run("zero3.json", demo_corpus, out)


def module_weights(checkpoint: Path) -> dict:
    """The full model of a ZeRO-2 checkpoint (ZeRO-2 partitions optimizer state, not parameters)."""
    return torch.load(checkpoint / "pytorch_model" / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)["module"]


def test_deepspeed_json_values_come_from_the_recipe(zero2_run):
    for name in ("zero2.json", "zero3.json"):
        config = json.loads((ROOT / "launch" / "deepspeed" / name).read_text())
        for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
            assert config[key] == "auto", (name, key)
        assert config["bf16"]["enabled"] == config["fp16"]["enabled"] == "auto"
        assert "optimizer" not in config and "scheduler" not in config  # lr and schedule come from the recipe
    _, result = zero2_run
    assert "DeepSpeed ZeRO-2: micro batch 4, gradient clipping 0.5, bf16 False, fp16 False" in result.stdout


def test_zero2_trains_frozen_then_unfrozen_encoder(zero2_run):
    out, _ = zero2_run
    checkpoints = sorted((out / "checkpoints").iterdir(), key=lambda p: json.loads((p / "trainer_state.json").read_text())["global_step"])
    assert (checkpoints[0] / "pytorch_model" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").exists()  # a real ZeRO run, 2 ranks
    states = [json.loads((p / "trainer_state.json").read_text()) for p in checkpoints]
    first = module_weights(next(p for p, s in zip(checkpoints, states) if s["epoch"] == 0))  # mid-epoch 1: encoder frozen
    end_of_epoch_1 = module_weights(next(p for p, s in zip(checkpoints, states) if s["epoch"] == 1 and s["batches_done"] == 0))
    last = module_weights(checkpoints[-1])
    encoder = "wav2vec2.encoder.layers.0.attention.k_proj.weight"
    cnn = "wav2vec2.feature_extractor.conv_layers.0.conv.weight"
    head = next(k for k in first if not k.startswith("wav2vec2.") and k.endswith("weight"))
    assert torch.equal(first[encoder], end_of_epoch_1[encoder])  # frozen in epoch 1 (lr 0, still in the optimizer)
    assert not torch.equal(end_of_epoch_1[encoder], last[encoder])  # unfrozen in epoch 2: ZeRO updates it
    assert torch.equal(first[cnn], last[cnn])  # the CNN stays frozen throughout
    assert not torch.equal(first[head], end_of_epoch_1[head])  # the head trains from the start
    with open(out / "training_history.csv") as f:
        assert [r["frozen"] for r in csv.DictReader(f)] == ["encoder+feature_encoder", "feature_encoder"]


def test_zero2_skips_nonfinite_steps_on_every_rank(zero2_run):
    from safetensors.torch import load_file

    out, result = zero2_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["nonfinite_steps"] == 2 and "step skipped (2 so far)" in result.stdout
    assert all(torch.isfinite(v).all() for v in load_file(str(out / "model" / "model.safetensors")).values())
    assert all(
        torch.isfinite(v).all() for v in module_weights(sorted((out / "checkpoints").iterdir())[-1]).values() if v.is_floating_point()
    )
    assert metrics["test"]["loss"] == metrics["test"]["loss"]  # not NaN


def test_zero3_export_holds_full_weights_and_loads_in_a_fresh_process(zero3_run):
    from safetensors.torch import load_file

    from ser_dist.config import from_dict
    from ser_dist.models import build_model

    out, result = zero3_run
    assert "DeepSpeed ZeRO-3" in result.stdout
    exported = load_file(str(out / "model" / "model.safetensors"))
    meta = json.loads((out / "model" / "ser_dist.json").read_text())
    exp = from_dict(meta["experiment"])
    exp.model.pretrained = False
    reference = build_model(exp, len(meta["labels"])).state_dict()
    exported_params = {k: v for k, v in exported.items() if k.startswith("wav2vec2.")}
    assert exported_params and all(exported[k].shape == reference[k].shape for k in exported_params)  # no empty ZeRO-3 shards
    assert all(v.numel() > 0 for v in exported.values())
    assert_predict_reproduces_test_predictions(out)


def test_deepspeed_with_cpu_flag_fails_instead_of_silently_dropping_deepspeed(monkeypatch):
    from ser_dist.config import Experiment
    from ser_dist.trainer import TrainingError, make_accelerator

    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(TrainingError, match="DeepSpeed was asked for, but ACCELERATE_USE_CPU=true"):
        make_accelerator(Experiment())
