import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EMODB = ROOT.parent / "shared" / "data" / "emodb"
SPEAKER_PATTERN = r"^(spk\d+)_"

# Tiny, fast settings for smoke runs through the real entry points.
TINY_BILSTM = ["model.hidden_size=16", "model.embedding_size=16", "train.batch_size=8", "data.max_seconds=2.0"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never write the decode cache into the user's home during tests."""
    monkeypatch.setenv("SER_DIST_CACHE", str(tmp_path_factory.getbasetemp() / "audio-cache"))


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """72 generated clips: 4 speakers x 3 sentences x 6 emotions."""
    from ser_dist.data.demo import make_demo_corpus

    root = tmp_path_factory.mktemp("demo") / "corpus"
    make_demo_corpus(root, num_speakers=4, num_sentences=3, seed=1)
    return root


def run_entry_point(args: list[str], timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=full_env)


def run_recipe(recipe: str, *overrides: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_entry_point([str(ROOT / "recipes" / recipe), *overrides], timeout=timeout, env=env)


def ser_dist_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return run_entry_point(["-m", "ser_dist.cli", *args], timeout=timeout)
