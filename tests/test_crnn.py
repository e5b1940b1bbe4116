"""The CRNN backbone and SpecAugment: padding never reaches the prediction, masks only in training and within
each clip's valid frames, the recipe through its entry point, export and ``ser-dist predict``."""

import json

import pytest
import torch
from conftest import ROOT, SPEAKER_PATTERN, assert_predict_reproduces_test_predictions, run_recipe

from ser_dist.config import Data, Experiment, cli
from ser_dist.errors import ConfigError
from ser_dist.models import build_model
from ser_dist.models.crnn import CRNNSER
from ser_dist.models.features import SpecAugment
from ser_dist.recipe import load_recipe

TINY_CRNN = ["model.cnn_width=0.5", "model.hidden_size=16", "model.embedding_size=16", "train.batch_size=8", "data.max_seconds=2.0"]


def built(*overrides: str, num_classes: int = 4):
    return build_model(cli(Experiment(data=Data(root=".")), ["model.backbone=crnn", *overrides]), num_classes=num_classes)


def test_the_recipe_model_is_cpu_sized():
    config = load_recipe(ROOT / "recipes" / "crnn_logmel_ce.py").config
    model = build_model(config, num_classes=4)
    assert isinstance(model, CRNNSER) and model.head == "attentive_stats"
    assert 300_000 <= sum(p.numel() for p in model.parameters()) <= 1_000_000
    assert config.data.split == "speaker" and config.model.spec_augment


@pytest.mark.parametrize("head", ["attentive_stats", "mean", "last"])
@pytest.mark.parametrize("seconds", [0.5, 0.5005, 0.52])  # odd and even frame counts at each pooling
def test_prediction_does_not_depend_on_padding_or_batch_mates(head, seconds):
    torch.manual_seed(0)
    model = built(f"model.head={head}", "model.hidden_size=8", "model.embedding_size=8", "model.spec_augment=true").eval()
    samples = int(seconds * 16000)
    short = torch.randn(samples) * 0.1
    alone = model(short[None], torch.tensor([samples])).logits
    batch = torch.randn(2, 16000) * 0.1
    batch[0, :samples] = short
    batch[0, samples:] = 0.5  # the padding region holds anything
    together = model(batch, torch.tensor([samples, 16000])).logits[:1]
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-4)
    assert model(torch.randn(1, 3), torch.tensor([3])).logits.shape == (1, 4)  # shorter than one frame still runs


def test_spec_augment_changes_nothing_in_eval_mode():
    torch.manual_seed(0)
    plain = built("model.hidden_size=8").eval()
    augmented = built("model.hidden_size=8", "model.spec_augment=true", "model.freq_masks=4", "model.time_masks=4").eval()
    augmented.load_state_dict(plain.state_dict())
    wave = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 9000])
    torch.testing.assert_close(augmented(wave, lengths).logits, plain(wave, lengths).logits)
    for backbone in ("bilstm", "lstm"):  # the recurrent backbones take the same module
        assert built(f"model.backbone={backbone}", "model.hidden_size=8", "model.spec_augment=true").spec_augment.freq_masks == 2


@pytest.mark.parametrize("backbone", ["crnn", "bilstm"])
def test_spec_augment_masks_in_training_mode_only(backbone):
    torch.manual_seed(0)
    on = built(f"model.backbone={backbone}", "model.hidden_size=8", "model.dropout=0", "model.spec_augment=true", "model.freq_masks=4")
    off = built(f"model.backbone={backbone}", "model.hidden_size=8", "model.dropout=0")
    off.load_state_dict(on.state_dict())
    wave, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 9000])
    assert not torch.allclose(on.train()(wave, lengths).logits, off.train()(wave, lengths).logits)


def runs(mask_row: torch.Tensor) -> list[tuple[int, int]]:
    """(start, width) of each run of True in a 1-D bool tensor."""
    found, start = [], None
    for i, value in enumerate([*mask_row.tolist(), False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            found.append((start, i - start))
            start = None
    return found


def test_spec_augment_masks_bands_and_spans_within_each_clips_valid_frames():
    torch.manual_seed(0)
    augment = SpecAugment(freq_masks=2, freq_mask_width=8, time_masks=2, time_mask_ratio=0.1).train()
    frames = torch.tensor([200, 60, 1])
    features = torch.ones(3, 200, 64)
    masked_any = False
    for _ in range(50):
        out = augment(features, frames)
        for row, valid in enumerate(frames.tolist()):
            dropped_bands = (out[row, :valid] == 0).all(0)  # a band zeroed over every valid frame
            bands = runs(dropped_bands)
            assert len(bands) <= 2 and all(width <= 2 * 8 for _, width in bands)  # two masks may touch: one run
            assert dropped_bands.sum() <= 16
            kept = out[row][:, ~dropped_bands]
            dropped_frames = (kept == 0).all(1) if kept.shape[1] else torch.zeros(200, dtype=torch.bool)
            spans = runs(dropped_frames[:valid])
            assert len(spans) <= 2 and dropped_frames[:valid].sum() <= 2 * int(0.1 * valid)
            assert not dropped_frames[valid:].any()  # padded frames are left as they are
            masked_any |= bool(bands) or bool(spans)
    assert masked_any
    assert augment.eval()(features, frames) is features


def test_spec_augment_follows_torchs_rng():
    augment = SpecAugment(freq_masks=2, freq_mask_width=8, time_masks=2, time_mask_ratio=0.2).train()
    features, frames = torch.randn(4, 100, 64), torch.tensor([100, 80, 50, 10])
    torch.manual_seed(5)
    first = augment(features, frames)
    torch.manual_seed(5)
    torch.testing.assert_close(augment(features, frames), first)
    assert not torch.equal(augment(features, frames), first)  # the next draw differs


def test_spec_augment_settings_are_checked():
    with pytest.raises(ConfigError, match="model.spec_augment is for the crnn, bilstm, lstm backbones, not vggish"):
        cli(Experiment(data=Data(root=".")), ["model.backbone=vggish", "model.spec_augment=true"])
    with pytest.raises(ConfigError, match=r"model.time_mask_ratio=1.5 is out of range"):
        cli(Experiment(data=Data(root=".")), ["model.backbone=crnn", "model.time_mask_ratio=1.5"])
    with pytest.raises(ConfigError, match="model.num_layers is for the bilstm and lstm backbones, not crnn"):
        built("model.num_layers=2")
    with pytest.raises(ConfigError, match="model.head='weighted_layers' does not apply to the crnn backbone"):
        built("model.head=weighted_layers")


def test_export_round_trip_gives_the_same_predictions(tmp_path):
    from ser_dist.serving.export import export_model, load_exported

    exp = cli(Experiment(data=Data(root=str(tmp_path))), ["model.backbone=crnn", "model.hidden_size=8", "model.feature_norm=global"])
    torch.manual_seed(0)
    model = build_model(exp, num_classes=3)
    model.train()(torch.randn(2, 16000), torch.tensor([16000, 8000]))  # global statistics and batch norm's running ones
    model.eval()
    export_model(model, model.state_dict(), tmp_path / "model", exp=exp, label_names=["a", "b", "c"])
    loaded, meta = load_exported(tmp_path / "model")
    wave, lengths = torch.randn(2, 24000), torch.tensor([24000, 9000])
    with torch.no_grad():
        torch.testing.assert_close(loaded(wave, lengths).logits, model(wave, lengths).logits)
    assert meta["backbone"] == "crnn"


def test_the_recipe_trains_through_its_entry_point_and_predict_reproduces_it(demo_corpus, tmp_path):
    out = tmp_path / "run"
    result = run_recipe(
        "crnn_logmel_ce.py",
        f"data.root={demo_corpus}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        f"train.output_dir={out}",
        "train.epochs=2",
        "train.seed=3",
        *TINY_CRNN,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["test"]["num_examples"] > 0
    assert "model: crnn" in result.stdout
    assert_predict_reproduces_test_predictions(out)
