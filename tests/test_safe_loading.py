"""A model folder never runs code it names: loading (``load_exported``, ``EmotionClassifier.from_pretrained``,
``SERHubModel``, ``ser-dist predict``, ``ser-dist evaluate``) refuses a ``ser_dist.json`` naming an import
path or an unregistered component, and an SSL export asking transformers for its own code, with one line,
before anything is imported. The user's own import paths (recipe, command line) keep working.

Each hostile folder is a real export with one edit; its payload is a module whose import writes a marker.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, assert_one_line_error, ser_dist_cli

from ser_dist.data.demo import EMOTIONS

LABELS = list(EMOTIONS)  # the demo corpus's classes, so ``ser-dist evaluate --data root=DEMO`` gets to scoring
TINY = {"model.hidden_size": 16, "model.embedding_size": 16, "data.max_seconds": 2.0}


def _export(directory: Path, backbone: str, **overrides) -> Path:
    from ser_dist.config import Experiment, apply_overrides
    from ser_dist.models import build_model
    from ser_dist.serving.export import export_model

    exp = apply_overrides(Experiment(), {"data.root": "unused", "model.backbone": backbone, **overrides}).validate()
    torch.manual_seed(0)
    model = build_model(exp, len(LABELS)).eval()
    return export_model(model, model.state_dict(), directory, exp=exp, label_names=LABELS)


@pytest.fixture(scope="module")
def bilstm_export(tmp_path_factory) -> Path:
    return _export(tmp_path_factory.mktemp("clean") / "bilstm", "bilstm", **TINY)


@pytest.fixture(scope="module")
def ssl_export(tmp_path_factory) -> Path:
    """An SSL export (``backbone_in_export``: rebuilt from its own config.json)."""
    return _export(tmp_path_factory.mktemp("clean") / "hubert", "hubert_tiny_random", **{"model.embedding_size": 16})


def hostile_copy(export: Path, target: Path, **experiment) -> Path:
    """A copy of ``export`` whose ``ser_dist.json`` experiment has ``{"section.key": value}`` set."""
    shutil.copytree(export, target)
    meta = json.loads((target / "ser_dist.json").read_text())
    for dotted, value in experiment.items():
        section, key = dotted.split(".")
        meta["experiment"][section][key] = value
    (target / "ser_dist.json").write_text(json.dumps(meta))
    return target


def _forget_modules(prefix: str) -> None:
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


def _package(root: Path, name: str, modules: dict[str, str], monkeypatch) -> None:
    """A package ``name`` with ``modules`` ({module name: source}) under ``root``, importable here and in subprocesses."""
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text("")
    for module, text in modules.items():
        (root / name / f"{module}.py").write_text(text)
    monkeypatch.syspath_prepend(str(root))  # also invalidates the import caches
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))


@pytest.fixture
def payload(tmp_path, monkeypatch):
    """``evil_model.payload:{build,loss,op,corpus}``; importing the module writes the returned marker file."""
    marker = tmp_path / "payload-ran"
    code = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n\ndef build(*args, **kwargs):\n    raise SystemExit('payload called')\n\nloss = op = corpus = build\n"
    _package(tmp_path / "site", "evil_model", {"payload": code}, monkeypatch)
    yield marker
    _forget_modules("evil_model")


def _clip(demo_corpus) -> str:
    return str(sorted((demo_corpus / "Sad").glob("*.wav"))[0])


def cli_answering_yes(*args: str) -> subprocess.CompletedProcess:
    """``ser-dist ARGS`` in a fresh process with ``y`` on stdin (what ``yes |`` or a pipeline's stdin gives):
    transformers asks on stdin before it runs a model's own code, so this shows nobody is asked."""
    return subprocess.run(
        [sys.executable, "-m", "ser_dist.cli", *args],
        input="y\n" * 8,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"},
    )


def assert_refused(load, *fragments: str) -> None:
    """``load()`` fails with one line, an ``UntrustedComponentError`` (a ``UserError``) holding each fragment."""
    from ser_dist.errors import UserError

    with pytest.raises(UserError) as err:
        load()
    from ser_dist.registry import UntrustedComponentError

    message = str(err.value)
    assert isinstance(err.value, UntrustedComponentError) and len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, message


# -- the mechanism ---------------------------------------------------------------------------------


def test_registry_lookup_from_a_model_file_never_imports(payload):
    from ser_dist.registry import CORPORA, LOSSES, UntrustedComponentError, untrusted

    with untrusted("/models/m/ser_dist.json"):
        with pytest.raises(
            UntrustedComponentError,
            match=r"^/models/m/ser_dist.json: loss.name='evil_model.payload:loss' is an import path; a model folder may name only built-in components \(known: .*ce",
        ):
            LOSSES.get("evil_model.payload:loss")
        with pytest.raises(UntrustedComponentError, match="data.corpus='shutil:rmtree'"):
            CORPORA.get("shutil:rmtree")
        assert LOSSES.get("ce")  # registered names resolve as always
    assert not payload.exists()
    assert LOSSES.get("evil_model.payload:loss")  # the same name from the user (outside the block) is imported
    assert payload.exists()


# -- hostile ser_dist.json: backbone, corpus, loss, augmentation, attention ----------------------------


def test_predict_refuses_an_import_path_backbone_before_importing_it(bilstm_export, payload, demo_corpus, tmp_path):
    hostile = hostile_copy(bilstm_export, tmp_path / "hostile", **{"model.backbone": "evil_model.payload:build"})
    result = ser_dist_cli("predict", str(hostile), _clip(demo_corpus))
    assert_one_line_error(
        result,
        f"{hostile / 'ser_dist.json'}: model.backbone='evil_model.payload:build' is an import path",
        "a model folder may name only built-in components",
        "bilstm",
        "rebuild the model from your own recipe",
    )
    assert not payload.exists()


@pytest.mark.parametrize("loader", ["EmotionClassifier.from_pretrained", "SERHubModel.from_pretrained", "load_exported"])
def test_python_api_refuses_an_import_path_backbone(bilstm_export, payload, tmp_path, loader):
    from ser_dist import EmotionClassifier, SERHubModel
    from ser_dist.serving.export import load_exported

    load = {
        "EmotionClassifier.from_pretrained": EmotionClassifier.from_pretrained,
        "SERHubModel.from_pretrained": SERHubModel.from_pretrained,
        "load_exported": load_exported,
    }[loader]
    hostile = hostile_copy(bilstm_export, tmp_path / "hostile", **{"model.backbone": "evil_model.payload:build"})
    assert_refused(lambda: load(str(hostile)), f"{hostile / 'ser_dist.json'}: model.backbone='evil_model.payload:build' is an import path")
    assert not payload.exists()


def test_unregistered_backbone_is_refused_unless_the_export_carries_it(bilstm_export, tmp_path):
    """A Hub id or a path is a backbone only the user may name; an SSL export rebuilds from its own folder."""
    from ser_dist.serving.export import load_exported

    for backbone in ("someone/remote-encoder", str(tmp_path)):
        hostile = hostile_copy(bilstm_export, tmp_path / f"hostile{len(backbone)}", **{"model.backbone": backbone})
        assert_refused(lambda hostile=hostile: load_exported(hostile), f"model.backbone={backbone!r} is not a registered name")


def test_evaluate_cannot_be_steered_by_the_model_corpus(bilstm_export, tmp_path):
    """``data.corpus=shutil:rmtree`` with ``data.root`` a folder: without --data, evaluate re-derives the corpus
    from the model's config (no split.csv beside it); the folder survives and the error is one line."""
    victim = tmp_path / "victim"
    (victim / "Sad").mkdir(parents=True)
    (victim / "Sad" / "keep.txt").write_text("precious")
    hostile = hostile_copy(bilstm_export, tmp_path / "hostile", **{"data.corpus": "shutil:rmtree", "data.root": str(victim)})
    result = ser_dist_cli("evaluate", str(hostile), "--out", str(tmp_path / "eval"))
    assert_one_line_error(
        result,
        f"{hostile / 'ser_dist.json'}: data.corpus='shutil:rmtree' is an import path",
        "emodb",
        "a model folder may name only built-in components",
    )
    assert (victim / "Sad" / "keep.txt").read_text() == "precious"


def test_evaluate_refuses_an_import_path_loss(bilstm_export, payload, demo_corpus, tmp_path):
    hostile = hostile_copy(bilstm_export, tmp_path / "hostile", **{"loss.name": "evil_model.payload:loss"})
    result = ser_dist_cli("evaluate", str(hostile), "--data", f"root={demo_corpus}", "--out", str(tmp_path / "eval"))
    assert_one_line_error(result, f"{hostile / 'ser_dist.json'}: loss.name='evil_model.payload:loss' is an import path", "focal")
    assert not payload.exists()


def test_an_import_path_augmentation_is_refused(bilstm_export, payload, tmp_path):
    from ser_dist.serving.export import load_exported

    hostile = hostile_copy(bilstm_export, tmp_path / "hostile", **{"data.augment": ["bandpass", "evil_model.payload:op"]})
    assert_refused(
        lambda: load_exported(hostile), "ser_dist.json: data.augment='evil_model.payload:op' is an import path", "bandpass, gain"
    )
    assert not payload.exists()


def test_a_hub_kernel_as_attention_is_refused(ssl_export, tmp_path):
    """transformers downloads and runs an ``attn_implementation`` that names a Hub repository."""
    from ser_dist.serving.export import load_exported

    hostile = hostile_copy(ssl_export, tmp_path / "hostile", **{"model.attention": "kernels-community/evil-attention"})
    assert_refused(
        lambda: load_exported(hostile), "ser_dist.json: model.attention='kernels-community/evil-attention' names code to download"
    )


# -- an SSL export's transformers files ---------------------------------------------------------------


CUSTOM_MODELING = """import pathlib
pathlib.Path({marker!r}).write_text("imported")
from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

class EvilConfig(HubertConfig):
    model_type = "evil_hubert"

class EvilModel(HubertModel):
    config_class = EvilConfig

class EvilExtractor(Wav2Vec2FeatureExtractor):
    pass
"""


@pytest.mark.parametrize("file", ["config.json", "preprocessor_config.json"])
def test_ssl_export_with_custom_code_runs_none_of_it(ssl_export, demo_corpus, tmp_path, file):
    """``auto_map`` plus a modeling .py beside config.json: transformers would import it after a ``y`` on stdin."""
    hostile = hostile_copy(ssl_export, tmp_path / "hostile")
    marker = tmp_path / "custom-code-ran"
    (hostile / "evil_modeling.py").write_text(CUSTOM_MODELING.format(marker=str(marker)))
    tree = json.loads((hostile / file).read_text())
    if file == "config.json":
        tree.update(model_type="evil_hubert", auto_map={"AutoConfig": "evil_modeling.EvilConfig", "AutoModel": "evil_modeling.EvilModel"})
    else:
        tree.pop("feature_extractor_type", None)
        tree["auto_map"] = {"AutoFeatureExtractor": "evil_modeling.EvilExtractor"}
    (hostile / file).write_text(json.dumps(tree))
    result = cli_answering_yes("predict", str(hostile), _clip(demo_corpus))
    assert_one_line_error(
        result, f"{hostile / file}: auto_map asks transformers to run the model's own Python code", "rebuild the model from your own recipe"
    )
    assert not marker.exists()


# -- the user's own import paths ---------------------------------------------------------------------


USER_COMPONENTS = """import pathlib
pathlib.Path({marker!r}).write_text("imported")
from torch import nn


def my_loss(cfg, num_classes, class_counts):
    return nn.CrossEntropyLoss()


def my_backbone(model_cfg, num_classes, sample_rate, classifier="linear", classifier_scale=30.0):
    from ser_dist.registry import BACKBONES
    return BACKBONES.get("bilstm")(model_cfg, num_classes, sample_rate, classifier, classifier_scale)


def my_op(waveform, sample_rate, rng):
    return waveform


def my_corpus(root, data):
    from ser_dist.registry import CORPORA
    return CORPORA.get("folder")(root, data)
"""


def test_refusing_a_model_folder_leaves_the_users_import_paths_working(bilstm_export, payload, demo_corpus, tmp_path, monkeypatch):
    from ser_dist.config import Experiment, cli
    from ser_dist.losses import build_loss
    from ser_dist.models import build_model
    from ser_dist.serving.evaluation import evaluate_model
    from ser_dist.serving.export import load_exported

    hostile = hostile_copy(bilstm_export, tmp_path / "hostile", **{"loss.name": "evil_model.payload:loss"})
    assert_refused(lambda: load_exported(hostile), "loss.name='evil_model.payload:loss'")
    marker = tmp_path / "user-code-ran"
    _package(tmp_path / "user_site", "user_pkg", {"components": USER_COMPONENTS.format(marker=str(marker))}, monkeypatch)
    try:
        exp = cli(
            Experiment(),
            [
                "data.root=unused",
                "loss.name=user_pkg.components:my_loss",
                "model.backbone=user_pkg.components:my_backbone",
                "data.augment=user_pkg.components:my_op",
                *(f"{k}={v}" for k, v in TINY.items()),
            ],
        )
        assert marker.exists()  # validate() resolved the augmentation op: the user's module was imported
        assert isinstance(build_loss(exp.loss, 6), torch.nn.CrossEntropyLoss)
        model = build_model(exp, 6).eval()  # the user's backbone builder
        assert model(torch.zeros(1, 16000), torch.tensor([16000])).logits.shape == (1, 6)
        # evaluate: the corpus the user names with --data may be an import path (the model's own may not)
        results, _ = evaluate_model(
            str(bilstm_export), ["corpus=user_pkg.components:my_corpus", f"root={demo_corpus}"], out=tmp_path / "eval"
        )
        assert results["data"]["corpus"] == "user_pkg.components:my_corpus" and results["test"]["num_examples"] == 72
    finally:
        _forget_modules("user_pkg")
    assert not payload.exists()
