"""``model.feature_norm=speaker`` (per-speaker statistics, transductive) and ``train.mixup_alpha`` (mixup): the
statistics against numpy, the fallback for a clip of no known speaker, the losses mixup adds up, one-line errors,
and a run through a recipe's entry point that says its protocol is transductive and exports a model that predicts."""

import json

import numpy as np
import pytest
import torch
from conftest import SPEAKER_PATTERN, assert_one_line_error, run_recipe, ser_dist_cli

from ser_dist.config import Data, Experiment, cli
from ser_dist.errors import ConfigError
from ser_dist.mixup import training_loss
from ser_dist.models import build_model
from ser_dist.models.features import SpeakerNormalize, speaker_moments


def test_each_clip_gets_its_own_speakers_statistics_and_unknown_speakers_the_training_pool():
    torch.manual_seed(0)
    features = torch.randn(5, 30, 4) * torch.tensor([1.0, 2.0, 3.0, 4.0]) + torch.tensor([5.0, -1.0, 0.0, 2.0])
    frames = torch.tensor([30, 12, 20, 7, 25])
    speakers = torch.tensor([0, 0, 1, 2, 1])
    features[1, 12:] = 1e6  # padding never enters the statistics
    norm = SpeakerNormalize(4)
    norm.fit(speaker_moments(features, frames, speakers, 3), train_rows=torch.tensor([0, 1]))
    out = norm(features, frames, speakers)
    valid = [features[i, : frames[i]].double().numpy() for i in range(5)]
    for speaker in range(3):
        rows = np.concatenate([valid[i] for i in range(5) if speakers[i] == speaker])
        got = torch.cat([out[i, : frames[i]] for i in range(5) if speakers[i] == speaker]).double().numpy()
        expected = (rows - rows.mean(0)) / np.sqrt(rows.var(0) + 1e-5)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert (out[1, 12:] == 0).all()
    pooled = np.concatenate([valid[i] for i in range(5) if speakers[i] in (0, 1)])  # speaker 2 is not a training speaker
    fallback = norm(features[3:4], frames[3:4])  # no speaker given: the training speakers' pooled statistics
    expected = (valid[3] - pooled.mean(0)) / np.sqrt(pooled.var(0) + 1e-5)
    np.testing.assert_allclose(fallback[0, :7].double().numpy(), expected, rtol=1e-4, atol=1e-4)
    state = norm.state_dict()
    assert set(state) == {"mean", "scale"}  # the per-speaker rows are refitted from the data, never saved


@pytest.mark.parametrize("backbone", ["bilstm", "crnn"])
def test_the_front_end_models_take_speakers_and_give_the_pooled_result_without_them(backbone):
    exp = cli(Experiment(data=Data(root=".")), [f"model.backbone={backbone}", "model.feature_norm=speaker", "model.hidden_size=8"])
    model = build_model(exp, num_classes=3).eval()
    wave, lengths = torch.randn(3, 8000) * 0.1, torch.tensor([8000, 6000, 4000])
    features, frames = model.unnormalised_features(wave, lengths)
    model.speaker_normaliser().fit(speaker_moments(features, frames, torch.tensor([0, 1, 1]), 2), torch.tensor([0]))
    by_speaker = model(wave, lengths, speakers=torch.tensor([0, 1, 1])).logits
    pooled = model(wave, lengths).logits
    torch.testing.assert_close(by_speaker[0], pooled[0])  # speaker 0 is the whole training pool
    assert not torch.allclose(by_speaker[1:], pooled[1:])


def test_mixup_is_the_lam_weighted_loss_of_both_labels_on_the_mixed_clips():
    class Recorder(torch.nn.Module):
        def forward(self, values, lengths):
            self.seen = (values, lengths)
            return type("Out", (), {"logits": values[:, :3]})()

    model, criterion = Recorder(), torch.nn.CrossEntropyLoss()
    batch = {"input_values": torch.randn(4, 10), "lengths": torch.tensor([10, 4, 7, 9]), "labels": torch.tensor([0, 1, 2, 1])}
    torch.testing.assert_close(training_loss(model, criterion, batch, 0.0, {}), criterion(batch["input_values"][:, :3], batch["labels"]))
    torch.manual_seed(3)
    loss = training_loss(model, criterion, batch, 0.4, {})
    torch.manual_seed(3)
    lam = float(torch.distributions.Beta(0.4, 0.4).sample())
    order = torch.randperm(4)
    mixed = lam * batch["input_values"] + (1 - lam) * batch["input_values"][order]
    torch.testing.assert_close(model.seen[0], mixed)
    torch.testing.assert_close(model.seen[1], torch.maximum(batch["lengths"], batch["lengths"][order]))
    expected = lam * criterion(mixed[:, :3], batch["labels"]) + (1 - lam) * criterion(mixed[:, :3], batch["labels"][order])
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ConfigError, match=r"train.mixup_alpha=-0.1 is out of range"):
        cli(Experiment(data=Data(root=".")), ["train.mixup_alpha=-0.1"])


def tiny(corpus, out, *extra):
    return [f"data.root={corpus}", "data.corpus=folder", f"data.speaker_pattern={SPEAKER_PATTERN}", f"train.output_dir={out}", "train.epochs=2",
            "train.report_to=[]", "train.progress=off", "model.hidden_size=16", "model.cnn_width=0.25", *extra]  # fmt: skip


def test_a_speaker_normalised_mixup_run_says_it_is_transductive_and_its_export_predicts(demo_corpus, tmp_path):
    out = tmp_path / "run"
    result = run_recipe("crnn_logmel_ce.py", *tiny(demo_corpus, out, "model.feature_norm=speaker", "train.mixup_alpha=0.4"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "features: per-speaker normalisation over" in result.stdout and "transductive" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert "transductive" in metrics["protocol"]
    card = (out / "model" / "README.md").read_text()  # the card does not call these scores speaker-independent
    assert "(transductive: model.feature_norm=speaker" in card and "speaker_independent: false" in card
    # a file of no known speaker gets the training speakers' pooled statistics: predict runs and gives a distribution
    clip = next(iter(sorted(demo_corpus.rglob("*.wav"))))
    predicted = ser_dist_cli("predict", str(out), str(clip), "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert sum(json.loads(predicted.stdout)[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_speaker_normalisation_needs_a_backbone_that_has_it_and_every_clips_speaker(demo_corpus, tmp_path):
    refused = run_recipe(
        "vggish_ce.py", *tiny(demo_corpus, tmp_path / "vggish", "model.feature_norm=speaker", "data.split=speaker", "data.fold=null")
    )
    assert_one_line_error(refused, "model.feature_norm=speaker applies to the crnn, bilstm, lstm and opensmile backbones, not vggish")
    assert not (tmp_path / "vggish").exists()  # refused with the config, before the run folder or any clip
    no_speakers = run_recipe(
        "bilstm_mfcc_ce.py",
        f"data.root={demo_corpus}",
        "data.corpus=folder",
        "data.split=stratified",
        f"train.output_dir={tmp_path / 'stratified'}",
        "model.feature_norm=speaker",
        "train.report_to=[]",
    )
    assert_one_line_error(no_speakers, "model.feature_norm=speaker needs every clip's speaker", "data.speaker_pattern")
