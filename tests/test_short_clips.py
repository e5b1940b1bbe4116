"""Clips shorter than a model's receptive field: skipped with the reason at the data stage (training,
evaluation, prediction), tolerated by every model's forward, and never costing other files their results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SPEAKER_PATTERN, TINY_BILSTM, run_recipe, ser_dist_cli

from ser_dist.config import Experiment, apply_overrides
from ser_dist.models import build_model

RATE = 16000

# backbone -> (tiny overrides, receptive field in samples)
BACKBONES = {
    "bilstm": ({"model.hidden_size": 16, "model.embedding_size": 16}, 257),  # n_fft 512, centred: > 256 to reflect-pad
    "lstm": ({"model.hidden_size": 16, "model.embedding_size": 16}, 257),
    "vggish": ({"model.cnn_width": 0.125, "model.hidden_size": 32, "model.embedding_size": 16}, 512),  # one uncentred frame
    "hubert_tiny_random": ({"model.embedding_size": 16}, 400),  # conv kernels 10,3,3,3,3,2,2 and strides 5,2,2,2,2,2,2
    "wav2vec2_tiny_random": ({"model.embedding_size": 16}, 400),
    "wavlm_tiny_random": ({"model.embedding_size": 16}, 400),
    "opensmile": ({"model.mlp_layers": 1, "model.hidden_size": 16}, 960),  # openSMILE's 60 ms analysis window
}


def tiny_model(backbone: str, num_classes: int = 3):
    overrides, _ = BACKBONES[backbone]
    torch.manual_seed(0)
    return build_model(apply_overrides(Experiment(), {"model.backbone": backbone, **overrides}), num_classes)


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_every_backbone_runs_on_any_input_of_at_least_one_sample(backbone):
    model = tiny_model(backbone).eval()
    minimum = BACKBONES[backbone][1]
    assert model.min_input_samples == minimum
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for n in sorted({1, 2, 100, minimum - 1, minimum, minimum + 1}):
            alone = model(torch.from_numpy(rng.uniform(-0.3, 0.3, (2, n)).astype(np.float32)), torch.tensor([n, n]))
            assert alone.logits.shape == (2, 3) and torch.isfinite(alone.logits).all(), n
            # Beside a 1 s clip, the short one is just a padded row.
            batch = torch.zeros(2, RATE)
            batch[0] = torch.from_numpy(rng.uniform(-0.3, 0.3, RATE).astype(np.float32))
            batch[1, :n] = torch.from_numpy(rng.uniform(-0.3, 0.3, n).astype(np.float32))
            mixed = model(batch, torch.tensor([RATE, n]))
            assert torch.isfinite(mixed.logits).all(), n
    # Training mode (dropout, running statistics) and a backward pass on the shortest input.
    model.train()
    out = model(torch.full((2, 1), 0.1), torch.tensor([1, 1]))
    out.logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_the_data_stage_skips_clips_under_min_seconds_and_counts_them(tmp_path):
    from ser_dist.config import Data
    from ser_dist.data.pipeline import prepare_data, summary_line

    rng = np.random.default_rng(0)
    rows = []
    for i, (label, split) in enumerate([("a", "train"), ("b", "train"), ("a", "test"), ("b", "test")]):
        sf.write(tmp_path / f"{i}.wav", rng.uniform(-0.3, 0.3, RATE // 2).astype(np.float32), RATE)
        rows.append(f"{i}.wav,{label},{split}")
    sf.write(tmp_path / "tiny.wav", rng.uniform(-0.3, 0.3, 100).astype(np.float32), RATE)
    rows.append("tiny.wav,a,train")
    (tmp_path / "m.csv").write_text("path,label,session\n" + "\n".join(rows) + "\n")
    data = Data(manifest=str(tmp_path / "m.csv"), split="fixed", val_fraction=0.0, cache_dir=str(tmp_path / "cache"))
    prepared = prepare_data(data, seed=0)
    assert prepared.report["skipped_files"] == [
        {
            "path": str(tmp_path / "tiny.wav"),
            "reason": "too short (0.00625 s < 0.1 s minimum; 100 samples at 16000 Hz; lower data.min_seconds to keep it)",
        }
    ]
    assert prepared.report["num_used"] == 4
    assert "(0 unreadable skipped, 1 too short skipped," in summary_line(prepared.report)


def classifier_for(model, min_seconds=None):
    from ser_dist.serving.inference import EmotionClassifier

    meta = {"labels": ["a", "b", "c"], "sample_rate": RATE, "max_seconds": 2.0, "experiment": {"data": {}}}
    if min_seconds is not None:
        meta["experiment"]["data"]["min_seconds"] = min_seconds
    return EmotionClassifier(model, meta, device="cpu")


def write(path: Path, num_samples: int, seed: int = 0) -> str:
    sf.write(path, np.random.default_rng(seed).uniform(-0.3, 0.3, num_samples).astype(np.float32), RATE)
    return str(path)


def test_a_batch_that_raises_is_retried_clip_by_clip_and_only_the_bad_clip_fails(tmp_path):
    model = tiny_model("bilstm").eval()
    forward = model.forward
    poison, nan = 5000, 6000

    def flaky(input_values, lengths):
        if (lengths == poison).any():
            raise RuntimeError("boom on this clip\nsecond line")
        out = forward(input_values, lengths)
        return out._replace(logits=torch.where((lengths == nan)[:, None], torch.full_like(out.logits, float("nan")), out.logits))

    model.forward = flaky
    classifier = classifier_for(model)
    files = [
        write(tmp_path / "good1.wav", 8000),
        write(tmp_path / "poison.wav", poison),
        write(tmp_path / "nan.wav", nan),
        write(tmp_path / "good2.wav", 9000),
    ]
    predictions, failed = classifier.predict(files, batch_size=8)
    assert [Path(p.file).name for p in predictions] == ["good1.wav", "good2.wav"]
    assert failed == [
        (files[1], "model error: RuntimeError: boom on this clip"),
        (files[2], "model output is not finite (NaN/Inf probabilities)"),
    ]
    json.dumps([p.to_dict() for p in predictions], allow_nan=False)  # strict JSON


def test_prediction_uses_the_training_minimum_and_models_tolerate_shorter_input(tmp_path):
    files = [write(tmp_path / "good.wav", 8000), write(tmp_path / "tiny.wav", 100), write(tmp_path / "two.wav", 2)]
    sf.write(tmp_path / "silent.wav", np.zeros(8000, dtype=np.float32), RATE)
    files.append(str(tmp_path / "silent.wav"))
    predictions, failed = classifier_for(tiny_model("bilstm").eval()).predict(files)
    assert [Path(p.file).name for p in predictions] == ["good.wav"]
    assert dict(failed) == {
        files[1]: "too short (0.00625 s < 0.1 s minimum; 100 samples at 16000 Hz; the model was trained on longer clips)",
        files[2]: "too short (0.000125 s < 0.1 s minimum; 2 samples at 16000 Hz; the model was trained on longer clips)",
        files[3]: "silent: every sample is the same value at 16-bit precision",
    }
    # A model trained with data.min_seconds=0 predicts them: its forward zero-pads to its receptive field.
    for backbone in ("bilstm", "hubert_tiny_random", "opensmile"):
        predictions, failed = classifier_for(tiny_model(backbone).eval(), min_seconds=0).predict(files[:3])
        assert not failed and len(predictions) == 3, failed


# --- end to end ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_with_short_and_nan_clips(demo_corpus, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("short") / "corpus"
    shutil.copytree(demo_corpus, root)
    rng = np.random.default_rng(0)
    sf.write(root / "Anger" / "spk01_s99_anger_t1.wav", rng.uniform(-0.3, 0.3, 100).astype(np.float32), RATE)  # 6 ms
    nan = rng.uniform(-0.3, 0.3, RATE).astype(np.float32)
    nan[::100] = np.nan
    sf.write(root / "Sad" / "spk02_s98_sad_t1.wav", nan, RATE, subtype="FLOAT")
    return root


def test_recipe_trains_through_a_100_sample_clip_and_a_nan_clip(corpus_with_short_and_nan_clips, tmp_path):
    out = tmp_path / "run"
    result = run_recipe(
        "bilstm_mfcc_ce.py",
        f"data.root={corpus_with_short_and_nan_clips}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        f"train.output_dir={out}",
        "train.epochs=1",
        "train.seed=3",
        *TINY_BILSTM,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "data_report.json").read_text())
    skipped = {Path(r["path"]).name: r["reason"] for r in report["skipped_files"]}
    assert skipped == {
        "spk01_s99_anger_t1.wav": "too short (0.00625 s < 0.1 s minimum; 100 samples at 16000 Hz; lower data.min_seconds to keep it)",
        "spk02_s98_sad_t1.wav": "160 of 16000 samples are NaN/Inf",
    }
    assert report["num_used"] == 72 and report["warnings"] == []
    assert "1 unreadable skipped, 1 too short skipped" in result.stdout
    assert (out / "metrics.json").exists() and (out / "model" / "model.safetensors").exists()


def test_evaluate_skips_the_short_clip_with_its_reason(deploy_run, corpus_with_short_and_nan_clips, tmp_path):
    from ser_dist.serving.evaluation import evaluate_model

    run, _ = deploy_run
    results, out = evaluate_model(str(run), [f"root={corpus_with_short_and_nan_clips}"], out=tmp_path / "evaluation")
    assert results["data"]["skipped_files"] == 2 and results["test"]["num_examples"] == 72
    report = json.loads((out / "data_report.json").read_text())
    assert {Path(r["path"]).name: r["reason"].split(" (")[0] for r in report["skipped_files"]} == {
        "spk01_s99_anger_t1.wav": "too short",
        "spk02_s98_sad_t1.wav": "160 of 16000 samples are NaN/Inf",
    }


def test_predict_cli_keeps_the_good_file_and_reports_each_bad_one(deploy_run, demo_corpus, tmp_path):
    run, _ = deploy_run
    good = sorted((demo_corpus / "Sad").glob("*.wav"))[0]
    short = write(tmp_path / "short.wav", 100)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.wav"
    result = ser_dist_cli("predict", str(run), str(good), short, str(empty), str(missing), "--json")
    assert result.returncode == 0, result.stderr  # partial failure: the good file's result, the others on stderr

    def no_constants(token):
        raise AssertionError(f"not strict JSON: {token}")

    rows = json.loads(result.stdout, parse_constant=no_constants)
    assert [r["file"] for r in rows] == [str(good)]
    assert set(rows[0]) == {"file", "label", "confidence", "probabilities"}
    skipped = [line for line in result.stderr.splitlines() if line.startswith("ser-dist: skipped ")]
    assert skipped == [
        f"ser-dist: skipped {short}: too short (0.00625 s < 0.1 s minimum; 100 samples at 16000 Hz; the model was trained on longer clips)",
        f"ser-dist: skipped {empty}: empty file (0 bytes)",
        f"ser-dist: skipped {missing}: file not found",
    ]
    assert "Traceback" not in result.stderr
