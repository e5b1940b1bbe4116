"""openSMILE functionals + linear models: features, the disk feature cache, training-only standardisation, the
SVM's hinge loss, export and prediction, the missing package, and every opensmile recipe through its entry point."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import (
    ROOT,
    SPEAKER_PATTERN,
    assert_one_line_error,
    assert_predict_reproduces_test_predictions,
    run_entry_point,
    run_recipe,
    ser_dist_cli,
)

from ser_dist.config import ConfigError, Data, Experiment, apply_overrides, cli
from ser_dist.data.feature_cache import FeatureStore, cache_encoder_features, feature_store
from ser_dist.losses import build_loss
from ser_dist.models import build_model
from ser_dist.recipe import load_recipe

pytest.importorskip("opensmile")

RATE = 16000
RECIPES = ["opensmile_egemaps_svm.py", "opensmile_egemaps_logreg.py", "opensmile_egemaps_mlp.py", "opensmile_compare_svm.py"]


def demo_args(corpus, out, *extra):
    """A recipe on the generated corpus: its folder layout and speakers, a speaker split, a couple of epochs."""
    return [f"data.root={corpus}", "data.corpus=folder", f"data.speaker_pattern={SPEAKER_PATTERN}", "data.split=speaker",
            f"train.output_dir={out}", "train.epochs=3", "train.report_to=[]", *extra]  # fmt: skip


def opensmile_model(smile_set="egemaps", num_classes=3, **overrides):
    settings = {"model.backbone": "opensmile", "model.smile_set": smile_set, "model.cache_features": True}
    return build_model(apply_overrides(Experiment(), {**settings, "model.freeze_backbone_epochs": -1, **overrides}), num_classes)


def noise(seconds=1.0, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * RATE)).astype(np.float32))


# --- the model ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smile_set, size", [("egemaps", 88), ("compare", 6373)])
def test_functionals_have_the_sets_dimensions_and_the_model_classifies_waveforms(smile_set, size):
    model = opensmile_model(smile_set).eval()
    waveforms = torch.stack([noise(1.0, 0), noise(1.0, 1)])
    waveforms[1, 8000:] = 0.0  # padding: only the first 0.5 s is the clip
    features, frames = model.encode(waveforms, torch.tensor([RATE, 8000]))
    assert features.shape == (2, 1, size) and frames.tolist() == [1, 1] and torch.isfinite(features).all()
    alone, _ = model.encode(waveforms[1:, :8000], torch.tensor([8000]))
    torch.testing.assert_close(features[1], alone[0])  # padding never reaches the functionals
    out = model(waveforms, torch.tensor([RATE, 8000]))
    assert out.logits.shape == (2, 3) and out.embedding.shape == (2, size)
    torch.testing.assert_close(model(features, torch.ones(2, dtype=torch.long)).logits, out.logits)  # cached path = waveform path
    assert model.feature_cache_id == f"opensmile-2.6.0-{'eGeMAPSv02' if smile_set == 'egemaps' else 'ComParE_2016'}-functionals-16000hz-v1"
    assert [name for name, _ in model.named_parameters()] == ["classifier.weight", "classifier.bias"]


def test_the_mlp_head_and_the_settings_opensmile_refuses():
    model = opensmile_model(**{"model.mlp_layers": 2, "model.hidden_size": 16, "model.dropout": 0.0})
    assert [type(m).__name__ for m in model.hidden] == ["Linear", "ReLU", "Dropout"] * 2
    assert model.classifier.in_features == 16
    assert model(noise()[None], torch.tensor([RATE])).embedding.shape == (1, 16)
    base = Experiment(data=Data(root="."))
    with pytest.raises(ConfigError, match="model.cache_features=true and model.freeze_backbone_epochs=-1"):
        cli(base, ["model.backbone=opensmile"])
    with pytest.raises(ConfigError, match="model.mlp_layers is for the opensmile backbone, not bilstm"):
        cli(base, ["model.mlp_layers=1"])
    with pytest.raises(ConfigError, match="model.smile_set='gemaps' is not one of egemaps, compare"):
        cli(base, ["model.smile_set=gemaps"])
    with pytest.raises(ConfigError, match="model.head='mean' does not apply to opensmile"):
        opensmile_model(**{"model.head": "mean"})


def test_standardisation_is_the_given_features_statistics():
    model = opensmile_model()
    features = torch.randn(50, 1, 88, dtype=torch.float64) * 3 + 5
    features[:, 0, 7] = 2.0  # a constant functional: scale 1, standardised to 0
    features[3, 0, 9] = float("nan")  # left out of the statistics
    model.fit_standardisation(features[:, 0])
    flat = features[:, 0]
    torch.testing.assert_close(model.feature_mean[:7].double(), flat[:, :7].mean(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model.feature_std[:7].double(), flat[:, :7].std(0, unbiased=False), rtol=1e-6, atol=1e-6)
    assert model.feature_std[7] == 1.0 and model.feature_mean[7] == 2.0
    torch.testing.assert_close(model.feature_mean[9].double(), torch.cat([flat[:3, 9], flat[4:, 9]]).mean(), rtol=1e-6, atol=1e-6)
    assert set(model.state_dict()) == {"feature_mean", "feature_std", "classifier.weight", "classifier.bias"}  # exported with the weights


# --- the SVM's loss ----------------------------------------------------------------------------------------------


def test_the_svm_loss_is_the_multiclass_hinge_on_a_toy_example():
    exp = apply_overrides(Experiment(), {"loss.name": "svm"})
    loss = build_loss(exp.loss, 3)
    logits = torch.tensor([[2.0, 1.0, -1.0], [0.0, 0.0, 0.0], [0.5, 0.2, 0.0]])
    labels = torch.tensor([0, 2, 1])
    # Per clip, sum over the other classes of max(0, 1 - (s_y - s_k)), divided by the 3 classes:
    # [0 + 0] / 3, [1 + 1] / 3, [max(0, 1 - (0.2 - 0.5)) + max(0, 1 - 0.2)] / 3 = (1.3 + 0.8) / 3.
    expected = (0.0 + 2.0 / 3 + 2.1 / 3) / 3
    assert float(loss(logits, labels)) == pytest.approx(expected)
    assert float(loss(logits, labels)) == pytest.approx(float(torch.nn.MultiMarginLoss()(logits, labels)))
    weighted = build_loss(apply_overrides(exp, {"loss.class_weights": True}).loss, 3, [2, 1, 1])  # weights 0.5, 1, 1 (/ mean)
    assert float(weighted(logits, labels)) == pytest.approx((0.5 * 0.0 + 2.0 / 3 + 2.1 / 3) / 2.5)
    # A linear SVM on a separable toy problem: trained with the hinge loss (+ L2), every margin reaches 1.
    torch.manual_seed(0)
    points = torch.tensor([[2.0, 0.0], [3.0, 1.0], [-2.0, 0.0], [-3.0, -1.0], [0.0, 3.0], [1.0, 4.0]])
    classes = torch.tensor([0, 0, 1, 1, 2, 2])
    layer = torch.nn.Linear(2, 3)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    for _ in range(300):
        optimizer.zero_grad()
        loss(layer(points), classes).backward()
        optimizer.step()
    scores = layer(points).detach()
    assert (scores.argmax(1) == classes).all() and float(loss(scores, classes)) == 0.0


# --- the feature cache on disk -----------------------------------------------------------------------------------


class CountingExtractor(torch.nn.Module):
    """A fixed extractor with a cache id, counting its calls: what cache_encoder_features needs of a model."""

    feature_cache_id = "counting-v1"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def encode(self, waveform, lengths):
        self.calls += 1
        return torch.stack([waveform.mean(1), waveform.std(1)], dim=-1)[:, None, :], torch.ones(1, dtype=torch.long)


class Clips:
    def __init__(self, waveforms):
        self.waveforms, self.labels = waveforms, [0] * len(waveforms)

    def __len__(self):
        return len(self.waveforms)

    def __getitem__(self, index):
        return {"waveform": self.waveforms[index], "label": 0, "index": index}


def test_the_second_run_reads_every_clip_back_and_recomputes_only_a_damaged_file(tmp_path):
    model, clips = CountingExtractor(), Clips([noise(0.2, seed) for seed in range(5)])
    store = feature_store(model, tmp_path)
    assert isinstance(store, FeatureStore) and store.folder == tmp_path / "features" / "counting-v1"
    first = cache_encoder_features(model, clips, torch.device("cpu"), store)
    assert model.calls == 5 and first.from_store == 0 and len(list(store.folder.rglob("*.npy"))) == 5
    second = cache_encoder_features(model, clips, torch.device("cpu"), store)
    assert model.calls == 5 and second.from_store == 5  # nothing computed again
    for a, b in zip(first.features, second.features):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    store.path(clips[2]["waveform"]).write_bytes(b"not an array")
    third = cache_encoder_features(model, clips, torch.device("cpu"), store)
    assert model.calls == 6 and third.from_store == 4
    torch.testing.assert_close(third.features[2], first.features[2])
    assert feature_store(torch.nn.Linear(1, 1), tmp_path) is None  # a learned encoder: in memory only


# --- end to end: training, the cache across runs, export, predict -------------------------------------------------


@pytest.fixture(scope="module")
def svm_run(demo_corpus, tmp_path_factory):
    cache = tmp_path_factory.mktemp("smile-cache")
    out = tmp_path_factory.mktemp("smile") / "svm"
    result = run_recipe("opensmile_egemaps_svm.py", *demo_args(demo_corpus, out, f"data.cache_dir={cache}"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, cache, result


def test_the_svm_recipe_trains_standardising_with_the_training_clips_alone(svm_run):
    out, cache, result = svm_run
    assert "features: cached the frozen encoder's output for 72 clips (0 of them read back" in result.stdout
    split = (out / "split.csv").read_text().splitlines()
    header = split[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in split[1:]]
    train = [row["path"] for row in rows if row["split"] == "train"]
    assert f"standardised with the mean and standard deviation of the {len(train)} training clips alone" in result.stdout
    from safetensors.torch import load_file

    from ser_dist.data.audio import load_audio
    from ser_dist.models.smile import OpenSmileFunctionals

    extractor = OpenSmileFunctionals("egemaps", RATE)

    def functionals(paths):
        # decoded as the cache decodes (16-bit samples), so these are the features the run trained on
        decoded = [np.rint(load_audio(path, RATE) * 32767).astype(np.float32) / 32767 for path in paths]
        return np.stack([extractor(samples) for samples in decoded]).astype(np.float64)

    weights = load_file(str(out / "model" / "model.safetensors"))
    train_features = functionals(train)
    np.testing.assert_allclose(weights["feature_mean"].numpy(), train_features.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(weights["feature_std"].numpy(), train_features.std(0), rtol=1e-4, atol=1e-4)
    others = functionals([row["path"] for row in rows if row["split"] != "train"])
    pooled = np.concatenate([train_features, others])
    assert not np.allclose(weights["feature_mean"].numpy(), pooled.mean(0), rtol=1e-3, atol=1e-3)  # validation / test never enter


def test_a_second_run_reads_the_features_back_and_the_export_predicts_and_evaluates(svm_run, demo_corpus, tmp_path):
    out, cache, _ = svm_run
    again = run_recipe("opensmile_egemaps_logreg.py", *demo_args(demo_corpus, tmp_path / "logreg", f"data.cache_dir={cache}"))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "features: cached the frozen encoder's output for 72 clips (72 of them read back" in again.stdout
    # ser-dist predict on wav files (a fresh process: openSMILE on the fly, the exported statistics) = the run's own predictions
    assert_predict_reproduces_test_predictions(out)
    evaluated = ser_dist_cli("evaluate", str(out), "--out", str(tmp_path / "evaluated"))
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    scored = json.loads((tmp_path / "evaluated" / "metrics.json").read_text())["test"]
    assert scored["unweighted_accuracy"] == pytest.approx(json.loads((out / "metrics.json").read_text())["test"]["unweighted_accuracy"])
    card = (out / "model" / "README.md").read_text()
    assert "`model.smile_set=egemaps`" in card and "audEERING Research License Agreement" in card


def test_a_missing_opensmile_package_is_one_line_before_anything_is_read(svm_run, tmp_path):
    out, _, _ = svm_run
    hide = "import sys; sys.modules['opensmile'] = None; "
    recipe = ROOT / "recipes" / "opensmile_egemaps_svm.py"
    train = run_entry_point(
        ["-c", hide + f"import runpy; sys.argv = ['x', 'data.root={tmp_path}']; runpy.run_path({str(recipe)!r}, run_name='__main__')"]
    )
    assert_one_line_error(train, "model.backbone=opensmile: the opensmile package is not installed; pip install 'ser-dist[opensmile]'")
    predict = run_entry_point(["-c", hide + "from ser_dist.cli import main; main()", "predict", str(out), str(tmp_path / "a.wav")])
    assert_one_line_error(predict, "the opensmile package is not installed")
    assert subprocess.run([sys.executable, "-c", "import opensmile"], capture_output=True).returncode == 0  # only hidden above


@pytest.mark.parametrize("recipe", RECIPES[2:])
def test_the_other_opensmile_recipes_run_through_their_entry_points(recipe, demo_corpus, tmp_path):
    """The SVM and logistic-regression recipes run above; the MLP and the ComParE SVM here."""
    out = tmp_path / "run"
    result = run_recipe(recipe, *demo_args(demo_corpus, out, "train.epochs=2"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["test"]["num_examples"] > 0
    config = load_recipe(ROOT / "recipes" / recipe).config
    assert config.model.backbone == "opensmile" and config.data.split == "leave_one_speaker_out"


def test_the_benchmark_script_chooses_each_folds_setting_on_validation(demo_corpus, tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "opensmile_baseline.sh"), str(out), "data.corpus=folder", f"data.root={demo_corpus}",
         f"data.speaker_pattern={SPEAKER_PATTERN}", "train.epochs=1", "data.labels=Anger,Sad,Happy"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "PYTHON": sys.executable, "SWEEP": "optim.weight_decay=0.0,0.1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    folders = sorted(p.name for p in (out / "opensmile_egemaps_svm").iterdir() if p.is_dir())
    assert folders == ["optim.weight_decay-0.0", "optim.weight_decay-0.1"]
    selected = (out / "opensmile_egemaps_svm" / "selected.md").read_text()
    rows = [line for line in selected.splitlines() if line.startswith("| ") and line.split(" | ")[0][2:].isdigit()]
    assert len(rows) == 4  # one per speaker (leave-one-speaker-out)
    for row in rows:
        fold, chosen, val_ua = row.split(" | ")[0][2:], row.split(" | ")[2], float(row.split(" | ")[3])
        scores = {
            name: json.loads((out / "opensmile_egemaps_svm" / name / f"fold_{fold}" / "metrics.json").read_text()) for name in folders
        }
        best = max(scores.values(), key=lambda m: m["best_val_unweighted_accuracy"])["best_val_unweighted_accuracy"]
        assert val_ua == pytest.approx(100 * best, abs=0.006) and chosen.startswith("optim.weight_decay=")
    assert "mean ± sd (4 folds)" in selected
