"""Self-supervised backbones: input handling per family, heads, freezing through the real trainer,
HF-format export, the missing-model error, and the three SSL recipes through their entry points."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SPEAKER_PATTERN, TINY_SSL, run_recipe, run_torchrun

from ser_dist.config import Experiment, apply_overrides
from ser_dist.errors import ConfigError, UserError
from ser_dist.models import build_model

LABELS = ["Anger", "Happy", "Neutral", "Sad"]


def build(backbone="hubert_tiny_random", num_classes=4, **overrides):
    exp = apply_overrides(Experiment(), {"data.root": "unused", "model.backbone": backbone, "model.embedding_size": 16, **overrides})
    torch.manual_seed(0)
    return build_model(exp.validate(), num_classes), exp


def batch_of(*lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    x = torch.zeros(len(lengths), longest)
    for i, n in enumerate(lengths):
        x[i, :n] = 0.3 * torch.randn(n, generator=gen)
    return x, torch.tensor(lengths)


def test_registry_names_hub_ids_and_tiny_families():
    from ser_dist.models.ssl_presets import HUB_IDS

    assert HUB_IDS["hubert_large"] == "facebook/hubert-large-ll60k"
    assert HUB_IDS["wav2vec2_base"] == "facebook/wav2vec2-base"
    assert HUB_IDS["wavlm_base_plus"] == "microsoft/wavlm-base-plus"
    expected = {
        "hubert_tiny_random": ("hubert", "layer", True),
        "wav2vec2_tiny_random": ("wav2vec2", "group", False),
        "wavlm_tiny_random": ("wavlm", "group", True),
    }
    for name, (model_type, norm, mask) in expected.items():
        model, _ = build(name)
        config = model.encoder.config
        assert (config.model_type, config.feat_extract_norm, model.use_attention_mask) == (model_type, norm, mask)
        assert config.layerdrop == 0.0 and config.mask_time_prob == 0.0  # every parameter gets a gradient (DDP)
        assert 20_000 < sum(p.numel() for p in model.parameters()) < 500_000


def test_normalisation_matches_the_feature_extractor_over_valid_samples_only():
    from transformers import Wav2Vec2FeatureExtractor

    from ser_dist.models.heads import frame_mask
    from ser_dist.models.ssl import zero_mean_unit_var

    x, lengths = batch_of(4000, 2500, 1000)
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    reference = extractor([x[i, : lengths[i]].numpy() for i in range(3)], sampling_rate=16000, padding=True, return_tensors="pt")
    ours = zero_mean_unit_var(x, frame_mask(lengths, x.shape[1]))
    assert torch.allclose(ours, reference["input_values"], atol=1e-5)
    assert torch.all(ours[1, 2500:] == 0) and torch.all(ours[2, 1000:] == 0)


@pytest.mark.parametrize(
    "backbone,head", [("hubert_tiny_random", "mean"), ("hubert_tiny_random", "attentive_stats"), ("hubert_tiny_random", "weighted_layers")]
)
def test_masked_models_ignore_padding(backbone, head):
    """Layer-norm models with the mask: a clip's prediction is the same alone or padded in a batch (pooling
    skips padded frames). Group-norm CNNs normalise over time, padding included, so only these can be exact."""
    model, _ = build(backbone, **{"model.head": head})
    model.eval()
    x, lengths = batch_of(8000, 3000)
    with torch.no_grad():
        batched = model(x, lengths)
        alone = model(x[1:, :3000], lengths[1:])
    assert torch.allclose(batched.logits[1], alone.logits[0], atol=1e-4)
    assert torch.allclose(batched.embedding[1], alone.embedding[0], atol=1e-4)


def test_group_norm_models_get_zero_padding_and_no_mask():
    model, _ = build("wav2vec2_tiny_random")
    seen = {}
    original = model.encoder.forward

    def spy(input_values, attention_mask=None, **kwargs):
        seen["mask"], seen["input"] = attention_mask, input_values
        return original(input_values, attention_mask=attention_mask, **kwargs)

    model.encoder.forward = spy
    x, lengths = batch_of(6000, 2000)
    x[1, 2000:] = 0.7  # garbage past the clip's length must not reach the encoder
    model(x, lengths)
    assert seen["mask"] is None
    assert torch.all(seen["input"][1, 2000:] == 0)
    masked, _ = build("hubert_tiny_random")
    masked.encoder.forward = lambda input_values, attention_mask=None, **kw: (
        seen.update(mask=attention_mask) or original(input_values, **kw)
    )
    masked(x, lengths)
    assert seen["mask"].tolist() == (torch.arange(6000)[None] < lengths[:, None]).long().tolist()


def test_classifier_predicts_group_norm_clips_alone_whatever_the_batch():
    """No mask means padding reaches the encoder: EmotionClassifier runs such clips one at a time."""
    from ser_dist.serving.inference import EmotionClassifier

    model, _ = build("wav2vec2_tiny_random")
    assert model.padding_changes_output and not build("hubert_tiny_random")[0].padding_changes_output
    # WavLM-base-plus takes a mask, but its group norm still averages over the padding
    assert build("wavlm_tiny_random")[0].padding_changes_output
    classifier = EmotionClassifier(model, {"labels": LABELS, "sample_rate": 16000, "max_seconds": None}, device="cpu")
    x, lengths = batch_of(3000, 9000)
    short, long = x[0, :3000].numpy(), x[1].numpy()
    together = classifier.predict_waveforms([short, long])
    np.testing.assert_allclose(together[0], classifier.predict_waveforms([short])[0], atol=1e-6)
    np.testing.assert_allclose(together[1], classifier.predict_waveforms([long])[0], atol=1e-6)


@pytest.mark.parametrize("head", ["mean", "attentive_stats", "weighted_layers"])
def test_parameter_groups_cover_every_parameter_and_all_get_gradients(head):
    model, _ = build("hubert_tiny_random", **{"model.head": head})
    groups = model.parameter_groups()
    assert set(groups) == {"head", "encoder", "feature_encoder"}
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert all(
        n.startswith("hubert.feature_extractor.")
        for n, p in model.named_parameters()
        if id(p) in {id(q) for q in groups["feature_encoder"]}
    )
    x, lengths = batch_of(6000, 4000)
    model.train()
    model(x, lengths).logits.sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []  # DDP: no unused parameter
    model.zero_grad(set_to_none=True)
    model.set_frozen(feature_encoder=True, encoder=False)
    model(x, lengths).logits.sum().backward()
    assert all(p.grad is None for p in groups["feature_encoder"]) and all(p.grad is not None for p in groups["encoder"])


def test_sample_rate_mismatch_is_a_config_error():
    with pytest.raises(ConfigError, match="data.sample_rate=16000"):
        build("hubert_tiny_random", **{"data.sample_rate": 8000})


def test_attention_implementation_is_configurable():
    model, _ = build("hubert_tiny_random", **{"model.attention": "eager"})
    assert model.encoder.config._attn_implementation == "eager"
    with pytest.raises(ConfigError, match="model.attention=sdpa"):  # WavLM has no SDPA attention
        build("wavlm_tiny_random", **{"model.attention": "sdpa"})


def test_missing_local_model_and_unreachable_hub_give_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="is not a directory"):
        build(str(tmp_path / "no_such_model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="cannot load a transformers speech encoder"):
        build(str(tmp_path / "empty"))
    # No network here either way; offline mode only skips huggingface_hub's retries (read at its import).
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match=r"pass model.backbone=/path/to/DIR") as err:
        build("hubert_large")
    assert "facebook/hubert-large-ll60k" in str(err.value) and "\n" not in str(err.value)


def save_tiny_hubert(directory: Path) -> Path:
    """A 'pretrained' tiny HuBERT folder, as save_pretrained writes it (config, weights, feature extractor)."""
    from transformers import HubertModel

    from ser_dist.models.ssl import default_feature_extractor
    from ser_dist.models.ssl_presets import tiny_config

    torch.manual_seed(3)
    model = HubertModel(tiny_config("hubert", layer_norm=True))
    model.save_pretrained(directory)
    default_feature_extractor(model.config, 16000).save_pretrained(directory)
    return directory


def test_local_directory_loads_pretrained_weights(tmp_path):
    from safetensors.torch import load_file

    directory = save_tiny_hubert(tmp_path / "tiny_hubert")
    model, _ = build(str(directory), **{"model.pretrained": True})
    saved = load_file(str(directory / "model.safetensors"))
    state = model.encoder.state_dict()
    assert set(state) <= set(saved)  # the folder also has masked_spec_embed, unused with SpecAugment off
    assert all(torch.equal(saved[k], state[k]) for k in state)
    assert model.use_attention_mask  # from the folder's preprocessor_config.json


# -- the real trainer: freezing, export ----------------------------------------------------------------


# Three classes of the demo corpus, 1 s crops: the same decoded cache entry for every run below.
SMALL = ["data.labels=[Anger,Neutral,Sad]", f"data.speaker_pattern={SPEAKER_PATTERN}"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # tiny tensors on shared cores: one thread is several times faster


@pytest.fixture(scope="module")
def frozen_run(demo_corpus, tmp_path_factory):
    """recipes/hubert_large_ce.py through its entry point, from a tiny 'pretrained' local folder, 3 epochs:
    the whole encoder frozen in epoch 1, the CNN feature encoder in epochs 1-2."""
    work = tmp_path_factory.mktemp("ssl_frozen")
    pretrained = save_tiny_hubert(work / "pretrained")
    result = run_recipe(
        "hubert_large_ce.py",
        f"data.root={demo_corpus}",
        *SMALL,
        *TINY_SSL,
        f"model.backbone={pretrained}",
        "model.pretrained=true",
        "model.freeze_backbone_epochs=1",
        "model.freeze_feature_encoder_epochs=2",
        "optim.lr=1e-3",
        "train.epochs=3",
        "train.keep_last=5",
        "train.early_stopping_patience=null",
        f"train.output_dir={work / 'run'}",
        env=ONE_THREAD,
    )
    return {"dir": work / "run", "pretrained": pretrained, "result": result}


def test_hubert_large_ce_recipe_runs_with_a_tiny_local_backbone(frozen_run):
    metrics = _check_run(frozen_run["result"], frozen_run["dir"])
    assert metrics["epochs_run"] == 3 and metrics["test"]["num_examples"] == 9


def test_freeze_then_unfreeze_through_the_trainer(frozen_run):
    from safetensors.torch import load_file

    from ser_dist.checkpoint import TrainerState

    by_epoch = {}
    for ckpt in (frozen_run["dir"] / "checkpoints").iterdir():
        by_epoch[TrainerState.read(ckpt).epoch] = load_file(str(ckpt / "model.safetensors"))
    saved = load_file(str(frozen_run["pretrained"] / "model.safetensors"))
    initial = {"hubert." + k: v for k, v in saved.items() if "hubert." + k in by_epoch[1]}  # not masked_spec_embed (SpecAugment off)
    assert sorted(by_epoch) == [1, 2, 3]
    cnn = [k for k in initial if k.startswith("hubert.feature_extractor.")]
    encoder = [k for k in initial if k not in cnn]
    head = [k for k in by_epoch[1] if not k.startswith("hubert.")]

    def same(a, b, keys):
        return all(torch.equal(a[k], b[k]) for k in keys)

    assert same(by_epoch[1], initial, cnn + encoder)  # epoch 1: everything pretrained bit-identical
    assert not same(by_epoch[1], by_epoch[2], head)
    assert same(by_epoch[2], initial, cnn)  # epoch 2: the CNN still bit-identical...
    assert not any(
        torch.equal(by_epoch[2][k], initial[k]) for k in encoder if k.endswith("attention.q_proj.weight")
    )  # ...the transformer trains
    assert not same(by_epoch[3], initial, cnn)  # epoch 3: the CNN trains too
    history = (frozen_run["dir"] / "training_history.csv").read_text()
    assert "encoder+feature_encoder" in history and "none" in history


def predict_json(capsys, model_dir, audio_file) -> list[dict]:
    """``ser-dist predict MODEL FILE --json``, in process."""
    from ser_dist.cli import main

    capsys.readouterr()
    main(["predict", str(model_dir), str(audio_file), "--json", "--no-progress"])
    return json.loads(capsys.readouterr().out)


def test_standard_head_exports_a_stock_transformers_model(frozen_run, demo_corpus, capsys):
    from transformers import pipeline

    from ser_dist.data.audio import load_audio
    from ser_dist.serving.inference import EmotionClassifier

    model_dir = frozen_run["dir"] / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["HubertForSequenceClassification"]
    assert sorted(config["id2label"].values()) == ["Anger", "Neutral", "Sad"]
    assert (model_dir / "preprocessor_config.json").exists()
    clip = next((demo_corpus / "Sad").glob("*.wav"))
    audio = load_audio(clip, 16000)[:16000]  # the model's training crop (data.max_seconds=1.0)
    classifier = pipeline("audio-classification", model=str(model_dir), top_k=None)
    stock = {row["label"]: row["score"] for row in classifier({"raw": audio, "sampling_rate": 16000})}
    ours = EmotionClassifier.from_pretrained(frozen_run["dir"])
    probabilities = ours.predict_waveforms([audio])[0]
    assert np.allclose([stock[label] for label in ours.labels], probabilities, atol=1e-5)
    assert predict_json(capsys, frozen_run["dir"], clip)[0]["label"] in stock


def test_weighted_layers_head_of_a_group_norm_model_exports_a_stock_model_too(tmp_path):
    from transformers import pipeline

    from ser_dist.serving.export import export_model
    from ser_dist.serving.inference import EmotionClassifier

    model, exp = build("wav2vec2_tiny_random", **{"model.head": "weighted_layers", "data.max_seconds": 2.0})
    with torch.no_grad():
        model.layer_weights.copy_(torch.tensor([0.5, -1.0, 2.0]))  # not the uniform init: the weights must travel
    directory = export_model(model.eval(), model.state_dict(), tmp_path / "model", exp=exp, label_names=LABELS)
    config = json.loads((directory / "config.json").read_text())
    assert config["architectures"] == ["Wav2Vec2ForSequenceClassification"] and config["use_weighted_layer_sum"] is True
    audio = (0.2 * torch.randn(12000, generator=torch.Generator().manual_seed(1))).numpy()
    stock = {
        row["label"]: row["score"]
        for row in pipeline("audio-classification", model=str(directory), top_k=None)({"raw": audio, "sampling_rate": 16000})
    }
    ours = EmotionClassifier.from_pretrained(directory)
    assert np.allclose([stock[label] for label in ours.labels], ours.predict_waveforms([audio])[0], atol=1e-5)


@pytest.mark.parametrize("head,classifier", [("attentive_stats", "linear"), ("weighted_layers", "cosine")])
def test_other_heads_export_and_reload_with_ser_dist(tmp_path, head, classifier, demo_corpus, capsys):
    from ser_dist.serving.export import export_model, load_exported

    model, exp = build("wavlm_tiny_random", **{"model.head": head, "model.classifier": classifier})
    model.eval()
    directory = export_model(model, model.state_dict(), tmp_path / "model", exp=exp, label_names=LABELS)
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "ser_dist.json"} <= {p.name for p in directory.iterdir()}
    reloaded, meta = load_exported(directory)
    x, lengths = batch_of(6000, 3000)
    with torch.no_grad():
        assert torch.allclose(model(x, lengths).logits, reloaded(x, lengths).logits, atol=1e-5)
    assert meta["ssl"]["standard_head"] is False
    assert predict_json(capsys, directory, next((demo_corpus / "Sad").glob("*.wav")))[0]["label"] in LABELS


# -- the recipes through their entry points ----------------------------------------------------------


def _check_run(result, out: Path):
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["unweighted_accuracy"] <= 1.0 and metrics["test"]["num_examples"] > 0
    assert (out / "model" / "preprocessor_config.json").exists()
    return metrics


def test_wavlm_base_plus_ce_recipe_runs_with_the_tiny_backbone(demo_corpus, tmp_path):
    out = tmp_path / "run"
    result = run_recipe(
        "wavlm_base_plus_ce.py",
        f"data.root={demo_corpus}",
        *SMALL,
        *TINY_SSL,
        "model.backbone=wavlm_tiny_random",
        "model.head=weighted_layers",
        "train.epochs=1",
        f"train.output_dir={out}",
        env=ONE_THREAD,
    )
    _check_run(result, out)


def test_wav2vec2_base_bandpass_recipe_on_an_augmented_copy(demo_corpus, tmp_path):
    """The seed's pipeline: an augmented copy (``ser-dist augment --ops bandpass``, whose CLI test_augment.py
    covers), then the recipe on it; two classes keep it quick."""
    import shutil

    from ser_dist.data.augment import augment_corpus

    src = tmp_path / "corpus"
    for label in ("Anger", "Sad"):
        shutil.copytree(demo_corpus / label, src / label)
    augmented = tmp_path / "aug_bandpass_audio"
    augment_corpus(src, augmented, ["bandpass"])
    out = tmp_path / "run"
    result = run_recipe(
        "wav2vec2_base_bandpass_ce.py",
        f"data.root={augmented}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        *TINY_SSL,
        "model.backbone=wav2vec2_tiny_random",
        "train.epochs=1",
        f"train.output_dir={out}",
        env=ONE_THREAD,
    )
    metrics = _check_run(result, out)
    assert metrics["data"]["num_used"] == 2 * 24  # each clip and its band-passed copy


@pytest.mark.slow
@pytest.mark.parametrize(
    "backbone,head", [("hubert_tiny_random", "weighted_layers"), ("wav2vec2_tiny_random", "attentive_stats"), ("wavlm_tiny_random", "mean")]
)
def test_two_ranks_train_every_head_through_freeze_and_unfreeze(demo_corpus, tmp_path, backbone, head):
    """DDP over gloo: no unused parameter in any head or family (layerdrop 0, the final norm kept in the
    graph), with the encoder frozen (by lr 0) in epoch 1 and trained in epoch 2."""
    out = tmp_path / "run"
    result = run_torchrun(
        "recipes/hubert_large_ce.py",
        f"data.root={demo_corpus}",
        *SMALL,
        *TINY_SSL,
        f"model.backbone={backbone}",
        f"model.head={head}",
        "model.freeze_backbone_epochs=1",
        "model.freeze_feature_encoder_epochs=1",
        "train.batch_size=4",
        "train.epochs=2",
        "optim.lr=1e-3",
        f"train.output_dir={out}",
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["epochs_run"] == 2
