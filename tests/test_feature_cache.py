"""Frozen-backbone feature caching: the cached path trains exactly like the uncached one, and runs end to end."""

import json

import pytest
import torch
from conftest import SPEAKER_PATTERN, TINY_SSL, run_recipe

from ser_dist.config import ConfigError, Data, Experiment, Model, Train, cli
from ser_dist.data.dataset import collate_waveforms
from ser_dist.data.feature_cache import FeatureClips, cache_encoder_features, freeze_encoder_for_good
from ser_dist.models import build_model


class _Clips:
    """The AudioClips interface cache_encoder_features reads: items and labels."""

    def __init__(self, waveforms, labels):
        self.waveforms, self.labels = waveforms, labels

    def __len__(self):
        return len(self.waveforms)

    def __getitem__(self, index):
        return {"waveform": self.waveforms[index], "label": self.labels[index], "index": index}


@pytest.mark.parametrize("head", ["mean", "weighted_layers", "attentive_stats"])
def test_cached_features_give_the_same_loss_and_update_as_the_encoder(head):
    torch.manual_seed(0)
    exp = Experiment(
        data=Data(root="."), model=Model(backbone="hubert_tiny_random", pretrained=False, head=head, dropout=0.0, embedding_size=16)
    )
    model = build_model(exp, 4).eval()  # eval: the frozen encoder runs without dropout on both paths
    freeze_encoder_for_good(model)
    waveforms = [torch.randn(n) * 0.1 for n in (16000, 9000, 12345)]
    labels = [0, 3, 1]
    clips = _Clips(waveforms, labels)
    audio = collate_waveforms([clips[i] for i in range(3)])
    cached = cache_encoder_features(model, clips, torch.device("cpu"))
    assert isinstance(cached, FeatureClips) and len(cached) == 3
    features = collate_waveforms([cached[i] for i in range(3)])

    def one_step(batch):
        trial = build_model(exp, 4).eval()
        trial.load_state_dict(model.state_dict())
        freeze_encoder_for_good(trial)
        optimizer = torch.optim.SGD([p for p in trial.parameters() if p.requires_grad], lr=0.1)
        loss = torch.nn.functional.cross_entropy(trial(batch["input_values"], batch["lengths"]).logits, batch["labels"])
        loss.backward()
        optimizer.step()
        return loss.detach(), {k: v for k, v in trial.state_dict().items() if not k.startswith("hubert.")}

    loss_audio, head_audio = one_step(audio)
    loss_cached, head_cached = one_step(features)
    torch.testing.assert_close(loss_cached, loss_audio, atol=1e-5, rtol=1e-5)
    for key in head_audio:
        torch.testing.assert_close(head_cached[key], head_audio[key], atol=1e-5, rtol=1e-4)


def test_cache_features_needs_a_frozen_backbone_and_no_augmentation():
    base = Experiment(data=Data(root="."), model=Model(backbone="hubert_tiny_random", cache_features=True), train=Train())
    with pytest.raises(ConfigError, match="freeze_backbone_epochs=-1"):
        cli(base, [])
    with pytest.raises(ConfigError, match="augment"):
        cli(base, ["model.freeze_backbone_epochs=-1", "data.augment=gain"])


def test_recipe_trains_the_head_on_cached_features(demo_corpus, tmp_path):
    out = tmp_path / "cached"
    result = run_recipe(
        "bilstm_mfcc_ce.py",
        f"data.root={demo_corpus}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        f"train.output_dir={out}",
        *TINY_SSL,
        "model.pretrained=false",
        "model.freeze_backbone_epochs=-1",
        "model.cache_features=true",
        "train.epochs=2",
        "optim.lr=1e-3",
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "features: cached the frozen encoder's output for 72 clips" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["test"]["num_examples"]
        == sum(1 for _ in (out / "split.csv").open())
        - 1
        - metrics["data"]["split"]["train"]["num_clips"]
        - metrics["data"]["split"]["val"]["num_clips"]
    )
    assert metrics["epochs_run"] == 2
