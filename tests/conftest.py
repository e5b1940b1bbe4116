import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EMODB = ROOT.parent / "shared" / "data" / "emodb"
SPEAKER_PATTERN = r"^(spk\d+)_"

# The comparative study: recipes/{backbone}_{loss}.py for each pair, rows and columns in the seed's order.
STUDY_BACKBONES = ("lstm", "vggish", "wav2vec2_base", "hubert_large")
STUDY_LOSSES = ("ce", "label_smoothing", "focal", "aam", "ccc")
STUDY_RECIPES = [f"recipes/{backbone}_{loss}.py" for backbone in STUDY_BACKBONES for loss in STUDY_LOSSES]

# Tiny, fast settings for smoke runs through the real entry points.
TINY_BILSTM = ["model.hidden_size=16", "model.embedding_size=16", "train.batch_size=8", "data.max_seconds=2.0"]
# A ~50 K-parameter random HuBERT (layer norm + attention mask, like hubert_large); append
# model.backbone=wav2vec2_tiny_random / wavlm_tiny_random for the other families.
TINY_SSL = ["model.backbone=hubert_tiny_random", "model.embedding_size=16", "train.batch_size=8", "data.max_seconds=1.0"]


def tiny_ssl_args(corpus, out, *extra: str) -> list[str]:
    """The HuBERT recipe as a tiny random model whose CNN feature encoder is frozen in epoch 1 of 2: a freeze,
    an unfreeze and three parameter groups in seconds. ``extra`` overrides come last (they win)."""
    return [
        "recipes/hubert_large_ce.py",
        f"data.root={corpus}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        f"train.output_dir={out}",
        *TINY_SSL,
        "model.pretrained=false",
        "train.epochs=2",
        "model.freeze_feature_encoder_epochs=1",
        "train.early_stopping_patience=null",
        *extra,
    ]


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Never write the decode cache into the user's home during tests. Session-scoped, so it is in
    place before the module and session fixtures that train (a function-scoped one starts after them)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SER_DIST_CACHE", str(tmp_path_factory.getbasetemp() / "audio-cache"))
        yield


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """72 generated clips: 4 speakers x 3 sentences x 6 emotions."""
    from ser_dist.data.demo import make_demo_corpus

    root = tmp_path_factory.mktemp("demo") / "corpus"
    make_demo_corpus(root, num_speakers=4, num_sentences=3, seed=1)
    return root


@pytest.fixture
def hf_offline(tmp_path, monkeypatch):
    """``datasets`` in this process: load_dataset's converted copies go under tmp_path, the Hub is never tried, and
    no progress bars are printed (tests read stderr)."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    datasets.disable_progress_bars()


def mlflow_env(folder: Path) -> dict:
    """``MLFLOW_TRACKING_URI`` for a run's MLflow store in ``folder``. A sqlite store keeps artifacts in ``./mlruns`` of
    the working folder (the repository here) unless the experiment says otherwise: ``ser-dist`` is created first, with
    its artifacts in ``folder`` too."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        return {"MLFLOW_TRACKING_URI": uri}
    MlflowClient(tracking_uri=uri).create_experiment("ser-dist", artifact_location=(folder / "mlflow-artifacts").as_uri())
    return {"MLFLOW_TRACKING_URI": uri}


def run_entry_point(args: list[str], timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=full_env)


def run_recipe(recipe: str, *overrides: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_entry_point([str(ROOT / "recipes" / recipe), *overrides], timeout=timeout, env=env)


def ser_dist_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return run_entry_point(["-m", "ser_dist.cli", *args], timeout=timeout)


# Multi-process runs on CPU: one thread per rank (2 shared cores), gloo, a free rendezvous port.
DIST_ENV = {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}


def run_torchrun(script: str, *args: str, nproc: int = 2, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node N script args`` from the repository root."""
    return run_entry_point(
        ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", script, *args],
        timeout=timeout,
        env={**DIST_ENV, **(env or {})},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(*options: str, num_processes: int = 2) -> list[str]:
    """``python -m accelerate.commands.launch OPTIONS`` for N processes on this machine, asking nothing
    (no config file is read: one machine, no mixed precision, no dynamo)."""
    return ["-m", "accelerate.commands.launch", *options, "--num_processes", str(num_processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip


def deepspeed_launch(config: str) -> list[str]:
    """``accelerate launch`` with DeepSpeed and ``launch/deepspeed/CONFIG``, 2 processes, on a free port."""
    return accelerate_launch("--use_deepspeed", "--deepspeed_config_file", str(ROOT / "launch" / "deepspeed" / config)) + [
        "--main_process_port",
        str(free_port()),
    ]


@pytest.fixture(scope="session")
def deploy_run(demo_corpus, tmp_path_factory):
    """One tiny BiLSTM run through the real recipe, shared by test_predict/test_evaluate/test_hub.

    It asks to push to the Hub at the end without a Hub login: the run must be complete on disk and
    the push must fail with one line (checked in test_hub.py). Returns (run_dir, CompletedProcess).
    """
    out = tmp_path_factory.mktemp("deploy") / "run"
    env = {"HF_HOME": str(tmp_path_factory.mktemp("hf_home")), "HF_TOKEN": "", "HF_HUB_OFFLINE": "1"}
    result = run_recipe(
        "bilstm_mfcc_ce.py",
        f"data.root={demo_corpus}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        f"train.output_dir={out}",
        "train.epochs=1",
        "train.seed=3",
        "train.push_to_hub=true",
        "hub.repo_id=alice/ser-demo",
        *TINY_BILSTM,
        env=env,
    )
    assert (out / "metrics.json").exists() and (out / "model" / "model.safetensors").exists(), result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """The process failed as bad input should: exit 2, one ``ser-dist: error:`` line holding each fragment, no traceback."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ser-dist: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_predict_reproduces_test_predictions(run_dir: Path, count: int = 4) -> None:
    """``ser-dist predict`` on a run's first test clips (a fresh process) gives the run's logged predictions."""
    import csv
    import json

    with open(run_dir / "test_predictions.csv") as f:
        logged = list(csv.DictReader(f))[:count]
    result = ser_dist_cli("predict", str(run_dir), *[r["path"] for r in logged], "--json")
    assert result.returncode == 0, result.stderr
    for row, pred in zip(logged, json.loads(result.stdout)):
        assert pred["label"] == row["predicted"]
        assert pred["confidence"] == pytest.approx(float(row["confidence"]), abs=1e-4)


# ---- small clips and one-line errors, for the bad-input tests ----------------------------------------------

CLIP_RATE = 16000


def write_clip(path: Path, seconds: float = 0.5, seed: int = 0, samples=None, subtype: str | None = None, rate: int = CLIP_RATE) -> Path:
    """A wav of uniform noise (or of ``samples``) at ``rate``; parent folders are made."""
    import numpy as np
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    if samples is None:
        samples = np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * rate)).astype(np.float32)
    sf.write(str(path), samples, rate, subtype=subtype)
    return path


def one_line(err: pytest.ExceptionInfo, *fragments: str) -> str:
    """The raised error is one line holding every fragment."""
    message = str(err.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message
