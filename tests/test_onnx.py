"""``ser-dist export --format onnx`` and ``ser-dist predict --backend onnx``: every backbone's graph gives the torch
model's probabilities (and dimensions) to 1e-4 on clips of several lengths in one batch; bad input is one line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, assert_one_line_error, one_line, ser_dist_cli

pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'ser-dist[onnx]' (launch/setup.sh installs it)")

TOLERANCE = 1e-4
TINY = {
    "bilstm": ["model.hidden_size=16", "model.embedding_size=16"],
    "lstm": ["model.hidden_size=16", "model.embedding_size=16", "model.head=attentive_stats"],
    "bilstm_strided_speaker_norm": ["model.backbone=bilstm", "model.hidden_size=16", "model.frame_stride=3", "model.feature_norm=speaker"],
    "crnn": ["model.cnn_width=0.25", "model.hidden_size=16", "model.embedding_size=16"],
    "crnn_both_targets": ["model.backbone=crnn", "model.cnn_width=0.25", "model.hidden_size=16", "data.targets=both"],
    "vggish": ["model.cnn_width=0.0625", "model.hidden_size=32", "model.embedding_size=16"],
    "hubert_tiny_random": [],  # layer norm + attention mask (as HuBERT-large, WavLM)
    "wav2vec2_tiny_random": [],  # group norm: no mask, each clip alone
    "wavlm_tiny_random": [],
    "opensmile": ["model.cache_features=true", "model.freeze_backbone_epochs=-1"],
    "opensmile_compare": [
        "model.backbone=opensmile",
        "model.smile_set=compare",
        "model.cache_features=true",
        "model.freeze_backbone_epochs=-1",
    ],
}
# 2.6 s (three VGGish patches), odd lengths (frames cut mid-hop, odd pooled CRNN frames), and a clip shorter than an MFCC window
LENGTHS = (41611, 23999, 16000, 7177, 300)


def model_folder(name: str, out: Path) -> Path:
    """A randomly initialised model of ``name`` (a TINY key) as an export folder (random weights: the graph, not the training, is tested)."""
    import torch

    from ser_dist.config import Experiment, cli
    from ser_dist.models import build_model
    from ser_dist.serving.export import export_model

    overrides = TINY[name]
    backbone = [] if any(o.startswith("model.backbone=") for o in overrides) else [f"model.backbone={name}"]
    metric = ["train.metric=ccc_mean"] if "data.targets=dimensional" in overrides else []
    exp = cli(Experiment(), [*backbone, "model.pretrained=false", "data.root=unused", *overrides, *metric])
    torch.manual_seed(0)
    model = build_model(exp, 4).eval()
    if hasattr(model, "fit_standardisation"):  # openSMILE: non-trivial standardisation, as after training
        model.fit_standardisation(torch.randn(16, model.extractor.size) * 3 + 1)
    return export_model(model, model.state_dict(), out / "model", exp=exp, label_names=["angry", "happy", "neutral", "sad"])


def waveforms() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    t = [np.arange(n) / 16000 for n in LENGTHS]
    return [(0.3 * np.sin(2 * np.pi * (120 + 40 * i) * x) + rng.normal(0, 0.05, len(x))).astype(np.float32) for i, x in enumerate(t)]


@pytest.mark.parametrize("name", list(TINY))
def test_every_backbone_exports_and_onnx_runtime_matches_torch(name, tmp_path):
    from ser_dist.serving.inference import EmotionClassifier
    from ser_dist.serving.onnx_graph import export_onnx

    folder = model_folder(name, tmp_path)
    out = export_onnx(folder, tmp_path / "onnx")
    info = json.loads((out / "onnx.json").read_text())
    assert info["max_abs_difference"] <= TOLERANCE and info["preprocessing"] == ("opensmile" if "opensmile" in name else "waveform")
    assert info["source"] == "model"  # a local folder by its name, not this machine's path
    import onnx

    graph = onnx.load(str(out / "model.onnx")).graph
    if "opensmile" not in name:  # dynamic batch and length axes
        shape = graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_param for d in shape] == ["batch", "samples"], shape
    torch_model = EmotionClassifier.from_pretrained(folder, device="cpu")
    onnx_model = EmotionClassifier.from_pretrained(out, device="cpu", backend="onnx")
    assert onnx_model.labels == torch_model.labels and onnx_model.dimensions == torch_model.dimensions
    clips = waveforms()
    want, got = torch_model._probabilities(clips), onnx_model._probabilities(clips)  # all lengths in one batch
    assert got.shape == want.shape == (len(clips), len(torch_model.labels) + len(torch_model.dimensions))
    assert np.abs(want - got).max() <= TOLERANCE, np.abs(want - got).max(axis=1)
    alone = np.concatenate([onnx_model._probabilities([c]) for c in clips])  # and each clip alone, as padding must not matter
    assert np.abs(alone - want).max() <= TOLERANCE


def test_cli_export_and_predict_backend_onnx_match_torch_on_a_trained_run(deploy_run, demo_corpus, tmp_path):
    run, _ = deploy_run
    clips = sorted(demo_corpus.rglob("*.wav"))[:5]
    # several lengths, one batch: a long file (windows) and a clip cut short
    long = tmp_path / "long.wav"
    sf.write(str(long), np.concatenate([sf.read(str(c), dtype="float32")[0] for c in clips]), 16000)
    short = tmp_path / "short.wav"
    sf.write(str(short), sf.read(str(clips[0]), dtype="float32")[0][:4000], 16000)
    files = [str(c) for c in clips] + [str(long), str(short)]
    result = ser_dist_cli("export", str(run), str(tmp_path / "onnx"), "--format", "onnx")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "model.onnx" in result.stdout and (tmp_path / "onnx" / "model.onnx").is_file()
    assert (tmp_path / "onnx" / "README.md").is_file() and (tmp_path / "onnx" / "ser_dist.json").is_file()
    torch_out = ser_dist_cli("predict", str(run), *files, "--json", "--batch-size", "8")
    onnx_out = ser_dist_cli("predict", str(tmp_path / "onnx"), *files, "--json", "--batch-size", "8", "--backend", "onnx")
    assert torch_out.returncode == 0 and onnx_out.returncode == 0, onnx_out.stderr[-2000:]
    want, got = json.loads(torch_out.stdout), json.loads(onnx_out.stdout)
    assert [p["file"] for p in got] == [p["file"] for p in want] == files
    for a, b in zip(want, got):
        assert a["label"] == b["label"]
        assert b["probabilities"] == pytest.approx(a["probabilities"], abs=TOLERANCE)
        assert len(a.get("windows", [])) == len(b.get("windows", []))
    assert len(got[5]["windows"]) > 1  # the long file was windowed by both


def test_onnx_bad_input_is_one_line(deploy_run, tmp_path):
    run, _ = deploy_run
    # a run directory is not an ONNX export: the line says how to make one
    result = ser_dist_cli("predict", str(run), str(ROOT / "README.md"), "--backend", "onnx")
    assert_one_line_error(result, "not an ONNX export", "ser-dist export")
    # the rest in this process (the same code behind the same entry point, without five interpreter starts)
    from ser_dist.cli import main
    from ser_dist.errors import UserError

    def refused(*args: str, fragments: tuple[str, ...]) -> None:
        with pytest.raises(UserError) as err:
            main(list(args))
        one_line(err, *fragments)

    # an export over a folder of other files is refused
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    refused("export", str(run), str(tmp_path / "busy"), "--format", "onnx", fragments=("busy", "holds other files"))
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    refused("export", str(run), str(tmp_path / "busy" / "notes.txt"), "--format", "onnx", fragments=("notes.txt", "is not a folder"))
    # a damaged graph
    out = tmp_path / "onnx"
    main(["export", str(run), str(out), "--format", "onnx"])
    (out / "model.onnx").write_bytes(b"not a graph")
    clip = tmp_path / "clip.wav"
    sf.write(str(clip), np.random.default_rng(0).uniform(-0.3, 0.3, 16000).astype(np.float32), 16000)
    refused("predict", str(out), str(clip), "--backend", "onnx", fragments=("model.onnx", "ONNX Runtime cannot load it"))
    # a graph whose outputs do not match the labels beside it
    main(["export", str(run), str(tmp_path / "edited"), "--format", "onnx"])
    info = json.loads((tmp_path / "edited" / "onnx.json").read_text())
    (tmp_path / "edited" / "onnx.json").write_text(json.dumps({**info, "classes": info["classes"] + 1}))
    refused("predict", str(tmp_path / "edited"), str(clip), "--backend", "onnx", fragments=("onnx.json", "classes"))
    assert not list(tmp_path.glob(".tmp-*"))  # no export left a temporary folder behind
    # no format, or an unknown one
    assert_one_line_error(ser_dist_cli("export", str(run), str(tmp_path / "x")), "--format")


def test_missing_onnxruntime_is_one_line_naming_the_extra(deploy_run, tmp_path):
    run, _ = deploy_run
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"  # as if the package were not installed
        "from ser_dist.cli import main; main(sys.argv[1:])"
    )
    for args in (
        ["export", str(run), str(tmp_path / "o"), "--format", "onnx"],
        ["predict", str(tmp_path / "o"), "x.wav", "--backend", "onnx"],
    ):
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert_one_line_error(result, "onnxruntime", "pip install 'ser-dist[onnx]'")
