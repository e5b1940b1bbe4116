"""VGGish backbone: published architecture, patching and masking, checkpoint loading, freezing."""

import math

import pytest
import torch

from ser_dist.config import Experiment, Model
from ser_dist.errors import ConfigError
from ser_dist.models import build_model
from ser_dist.models.vggish import PATCH_FRAMES, VGGish, VGGishSER

TINY = dict(width=0.0625, hidden_size=32, embedding_size=16, dropout=0.0)


def tiny_model(**kwargs) -> VGGishSER:
    torch.manual_seed(0)
    return VGGishSER(4, **{**TINY, **kwargs}).eval()


def test_published_architecture_matches_torchvggish_layout():
    network = VGGish()
    shapes = {key: tuple(value.shape) for key, value in network.state_dict().items()}
    convs = {
        f"features.{i}.weight": (out, inp, 3, 3)
        for i, (out, inp) in zip((0, 3, 6, 8, 11, 13), ((64, 1), (128, 64), (256, 128), (256, 256), (512, 256), (512, 512)))
    }
    fcs = {"embeddings.0.weight": (4096, 512 * 6 * 4), "embeddings.2.weight": (4096, 4096), "embeddings.4.weight": (128, 4096)}
    assert {k: v for k, v in shapes.items() if k.endswith("weight")} == {**convs, **fcs}
    assert sum(v.numel() for v in network.parameters()) == 72_141_184  # VGGish as released
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in network.features) == 4
    assert network(torch.zeros(3, 1, 96, 64)).shape == (3, 128)


def test_patches_and_padding_never_change_a_clip_prediction():
    model = tiny_model()
    torch.manual_seed(1)
    short, long = torch.randn(8000), torch.randn(3 * 16000)  # 0.5 s (1 patch) and 3 s (4 patches)
    batch = torch.zeros(2, long.numel())
    batch[0, : short.numel()], batch[1] = short, long
    with torch.no_grad():
        together = model(batch, torch.tensor([short.numel(), long.numel()]))
        alone = model(short[None], torch.tensor([short.numel()]))
        padded_more = model(torch.nn.functional.pad(short[None], (0, 40000)), torch.tensor([short.numel()]))
    torch.testing.assert_close(together.logits[0], alone.logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded_more.embedding, alone.embedding, atol=1e-5, rtol=1e-5)


def test_utterance_embedding_is_the_mean_of_its_valid_patch_embeddings():
    model = tiny_model()
    wave = torch.randn(1, 2 * 16000)
    frames = (wave.shape[1] - 512) // 160 + 1  # 197 frames -> 3 patches (the last completed with silence)
    with torch.no_grad():
        log_mel, valid = model.frontend(wave, torch.tensor([wave.shape[1]]))
        assert int(valid) == frames == log_mel.shape[1]
        num_patches = math.ceil(frames / PATCH_FRAMES)
        padded = torch.nn.functional.pad(log_mel, (0, 0, 0, num_patches * PATCH_FRAMES - frames), value=math.log(0.01))
        per_patch = model.vggish(padded.reshape(num_patches, 1, PATCH_FRAMES, 64))
        out = model(wave, torch.tensor([wave.shape[1]]))
    assert num_patches == 3
    torch.testing.assert_close(out.embedding[0], per_patch.mean(0))


def _tiny_state(tmp_path, prefix="", extra=None, name="vggish.pt"):
    network = VGGish(TINY["width"], TINY["hidden_size"], TINY["embedding_size"])
    state = {prefix + k: v.clone() for k, v in network.state_dict().items()}
    state.update(extra or {})
    path = tmp_path / name
    if name.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return network, path


@pytest.mark.parametrize("prefix,name", [("", "vggish.pt"), ("vggish.", "vggish.pth"), ("", "vggish.safetensors")])
def test_checkpoint_loads_torchvggish_layout(tmp_path, prefix, name):
    extra = {"pproc._pca_matrix": torch.zeros(128, 128)} if name == "vggish.pth" else None
    network, path = _tiny_state(tmp_path, prefix, extra, name)
    model = tiny_model(checkpoint=str(path))
    for key, value in network.state_dict().items():
        assert torch.equal(model.vggish.state_dict()[key], value), key


def test_checkpoint_errors_name_the_key_and_the_fix(tmp_path):
    network, path = _tiny_state(tmp_path, extra={"classifier.weight": torch.zeros(2, 2)})
    with pytest.raises(ConfigError, match=r"1 unexpected; unexpected 'classifier.weight'.*features\.\{0,3,6,8,11,13\}"):
        tiny_model(checkpoint=str(path))
    state = network.state_dict()
    del state["embeddings.4.bias"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match=r"missing 'embeddings.4.bias'"):
        tiny_model(checkpoint=str(tmp_path / "missing.pt"))
    _, matching = _tiny_state(tmp_path, name="ok.pt")
    with pytest.raises(
        ConfigError, match=r"features.0.weight has shape \(4, 1, 3, 3\), the model expects \(8, 1, 3, 3\).*model.cnn_width=1"
    ):
        tiny_model(width=0.125, checkpoint=str(matching))
    with pytest.raises(ConfigError, match="file not found"):
        tiny_model(checkpoint=str(tmp_path / "nope.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read it as a state dict"):
        tiny_model(checkpoint=str(tmp_path / "junk.pt"))


def test_registered_builder_uses_config_and_groups_cover_every_parameter():
    exp = Experiment(model=Model(backbone="vggish", cnn_width=0.0625, hidden_size=32, embedding_size=16))
    model = build_model(exp, num_classes=3)
    assert isinstance(model, VGGishSER)
    groups = model.parameter_groups()
    assert set(groups) == {"feature_encoder", "encoder", "head"}
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    model.set_frozen(feature_encoder=True, encoder=False)
    assert not any(p.requires_grad for p in model.vggish.features.parameters())
    assert all(p.requires_grad for p in model.vggish.embeddings.parameters())
    model.set_frozen(feature_encoder=False, encoder=True)
    assert not any(p.requires_grad for p in model.vggish.parameters())
    model.set_frozen(feature_encoder=False, encoder=False)  # the unfreeze, on any number of processes
    assert all(p.requires_grad for p in model.parameters())


def test_export_round_trip_gives_the_same_predictions(tmp_path):
    from ser_dist.serving.export import export_model, load_exported

    exp = Experiment(model=Model(backbone="vggish", cnn_width=0.0625, hidden_size=32, embedding_size=16))
    exp.data.root = str(tmp_path)
    torch.manual_seed(0)
    model = build_model(exp, num_classes=3).eval()
    export_model(model, model.state_dict(), tmp_path / "model", exp=exp, label_names=["a", "b", "c"])
    loaded, meta = load_exported(tmp_path / "model")
    wave = torch.randn(2, 24000)
    lengths = torch.tensor([24000, 9000])
    with torch.no_grad():
        torch.testing.assert_close(loaded(wave, lengths).logits, model(wave, lengths).logits)
    assert meta["backbone"] == "vggish"
