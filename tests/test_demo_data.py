"""The synthetic demo corpus: layout, audio format, determinism, and that it is learnable but not trivial."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_dist.config import Data
from ser_dist.data.demo import EMOTIONS, MAX_CLIP_SECONDS, MIN_CLIP_SECONDS, SPEAKER_PATTERN, make_demo_corpus
from ser_dist.data.folder import folder
from ser_dist.data.records import DataError
from ser_dist.errors import ConfigError

SMALL = dict(num_speakers=3, num_sentences=2, seed=0)
SMALL_CLIPS = 3 * 2 * len(EMOTIONS)


def corpus_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "corpus"
    summary = make_demo_corpus(root, workers=2, **SMALL)
    return root, summary


def test_layout_names_counts_and_summary(small_corpus):
    root, summary = small_corpus
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(EMOTIONS)
    assert (root / "README.md").read_text().count("seed=0") == 1
    name = re.compile(r"^spk0[1-3]_s0[1-2]_([a-z]+)_t1\.wav$")
    for emotion in EMOTIONS:
        files = sorted((root / emotion).iterdir())
        assert len(files) == 3 * 2
        assert all(name.match(f.name).group(1) == emotion.lower() for f in files)
    assert summary["num_clips"] == SMALL_CLIPS
    assert summary["per_class"] == {emotion: 6 for emotion in EMOTIONS}
    assert summary["speakers"] == ["spk01", "spk02", "spk03"]
    durations = [sf.info(str(p)).duration for p in root.rglob("*.wav")]
    assert summary["audio_seconds"] == pytest.approx(sum(durations), abs=1e-3)
    assert summary["seconds"] > 0


def test_prints_nothing(tmp_path, capfd):
    make_demo_corpus(tmp_path / "quiet", num_speakers=1, num_sentences=1, workers=2)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_audio_is_16k_mono_int16_speech_length_and_not_silent(small_corpus):
    root, _ = small_corpus
    for path in sorted(root.rglob("*.wav")):
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path.name
        assert MIN_CLIP_SECONDS - 1e-3 <= info.duration <= MAX_CLIP_SECONDS + 1e-3, path.name
        audio, _ = sf.read(str(path), dtype="int16")
        rms_dbfs = 20 * np.log10(np.sqrt(np.mean(audio.astype(np.float64) ** 2)) / 32768)
        assert -40 < rms_dbfs < -10, path.name
        # Speech is much louder than the noise floor in the leading silence.
        frames = np.abs(audio[: len(audio) // 160 * 160].astype(np.float64)).reshape(-1, 160).mean(axis=1)
        assert frames.max() > 2 * np.percentile(frames, 5), path.name


def test_same_seed_same_bytes_whatever_the_worker_count(small_corpus, tmp_path):
    root, _ = small_corpus
    again = tmp_path / "again"
    make_demo_corpus(again, workers=1, **SMALL)
    assert corpus_bytes(again) == corpus_bytes(root)


def test_different_seed_different_audio(small_corpus, tmp_path):
    root, _ = small_corpus
    other = tmp_path / "other"
    make_demo_corpus(other, workers=1, **{**SMALL, "seed": 1})
    first, second = corpus_bytes(root), corpus_bytes(other)
    assert first.keys() == second.keys()
    differing = [name for name in first if name.endswith(".wav") and first[name] != second[name]]
    assert len(differing) == SMALL_CLIPS


def test_speaker_pattern_recovers_speakers_through_the_folder_adapter(small_corpus):
    root, _ = small_corpus
    scan = folder(root, Data(root=str(root), speaker_pattern=SPEAKER_PATTERN))
    assert scan.problems == []
    assert len(scan.records) == SMALL_CLIPS
    assert sorted({r.speaker for r in scan.records}) == ["spk01", "spk02", "spk03"]
    assert sorted({r.label for r in scan.records}) == sorted(EMOTIONS)


def test_rerun_replaces_an_earlier_demo_corpus(tmp_path):
    root = tmp_path / "corpus"
    make_demo_corpus(root, num_speakers=2, num_sentences=2, workers=1)
    summary = make_demo_corpus(root, num_speakers=1, num_sentences=1, workers=1)
    assert summary["num_clips"] == len(EMOTIONS)
    assert len(list(root.rglob("*.wav"))) == len(EMOTIONS)


def test_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        make_demo_corpus(tmp_path, num_speakers=1, num_sentences=1, workers=1)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("bad", [dict(num_speakers=0), dict(takes=-1), dict(workers=0), dict(seed=-3), dict(sample_rate=4000)])
def test_bad_arguments_are_config_errors(tmp_path, bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        make_demo_corpus(tmp_path / "x", **bad)


def test_learnable_but_not_trivial_across_speakers(tmp_path):
    """Utterance MFCC statistics + logistic regression, speakers held out: well above chance, below perfect."""
    torch = pytest.importorskip("torch")
    torchaudio = pytest.importorskip("torchaudio")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = tmp_path / "corpus"
    make_demo_corpus(root, num_speakers=10, num_sentences=4, seed=0, workers=2)
    mfcc = torchaudio.transforms.MFCC(sample_rate=16000, n_mfcc=40, melkwargs=dict(n_fft=400, hop_length=160, n_mels=64))
    features, labels, speakers = [], [], []
    for path in sorted(root.rglob("*.wav")):
        audio, _ = sf.read(str(path), dtype="float32")
        coefficients = mfcc(torch.from_numpy(audio))
        features.append(torch.cat([coefficients.mean(dim=1), coefficients.std(dim=1)]).numpy())
        labels.append(path.parent.name)
        speakers.append(re.match(SPEAKER_PATTERN, path.name).group(1))
    features, labels, speakers = np.stack(features), np.array(labels), np.array(speakers)

    correct = majority_correct = 0
    for train, test in GroupKFold(n_splits=5).split(features, labels, speakers):
        assert not set(speakers[train]) & set(speakers[test])
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
        model.fit(features[train], labels[train])
        correct += int((model.predict(features[test]) == labels[test]).sum())
        values, counts = np.unique(labels[train], return_counts=True)
        majority_correct += int((labels[test] == values[np.argmax(counts)]).sum())
    accuracy, majority = correct / len(labels), majority_correct / len(labels)
    chance = 1 / len(EMOTIONS)
    assert majority == pytest.approx(chance, abs=0.03)
    assert 2 * chance < accuracy < 0.95, accuracy
