"""Waveform augmentation: each op does what it says, online augmentation touches training clips only and
is reproducible, and ``ser-dist augment`` writes a copy whose clips stay in their original's split."""

import csv
import shutil

import numpy as np
import pytest
import torch
from conftest import SPEAKER_PATTERN, TINY_BILSTM, ser_dist_cli

from ser_dist.data.augment import Augmenter, resolve_ops
from ser_dist.errors import ConfigError
from ser_dist.registry import AUGMENTATIONS

SR = 16000


def sine(freq: float, seconds: float = 1.0, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    return (amplitude * torch.sin(2 * np.pi * freq * t)).float()


def peak_hz(x: torch.Tensor) -> float:
    spectrum = np.abs(np.fft.rfft(x.numpy()))
    return float(np.argmax(spectrum) * SR / x.numel())


class Fixed:
    """A stand-in generator whose uniform draws return one value (to pin an op's random parameter)."""

    def __init__(self, value):
        self.value = value

    def uniform(self, low, high):
        return self.value

    def integers(self, low, high):
        return min(max(int(self.value), low), high - 1)

    def standard_normal(self, size):
        return np.random.default_rng(0).standard_normal(size)


@pytest.mark.parametrize("name", ["bandpass", "pitch_shift", "time_mask", "noise", "gain", "speed"])
def test_every_op_is_registered_deterministic_and_finite(name):
    x = sine(220.0) + 0.05 * torch.randn(SR, generator=torch.Generator().manual_seed(0))
    op = AUGMENTATIONS.get(name)
    outs = [op(x, SR, np.random.default_rng(7)) for _ in range(2)]
    assert torch.equal(outs[0], outs[1])  # same seed, same result
    assert outs[0].dtype == torch.float32 and outs[0].ndim == 1 and torch.isfinite(outs[0]).all()
    assert outs[0].abs().max() <= 1.0


def test_bandpass_keeps_the_band_and_removes_what_is_outside():
    low, mid, high = sine(50.0, amplitude=0.3), sine(1000.0, amplitude=0.3), sine(7500.0, amplitude=0.3)
    out = AUGMENTATIONS.get("bandpass")(low + mid + high, SR, np.random.default_rng(0))

    def gain(f):
        return np.abs(np.fft.rfft(out.numpy()))[int(f)] / np.abs(np.fft.rfft((low + mid + high).numpy()))[int(f)]

    assert gain(1000) > 0.9 and gain(50) < 0.1 and gain(7500) < 0.1


@pytest.mark.parametrize("semitones", [2.0, -2.0])
def test_pitch_shift_moves_the_pitch_and_keeps_the_duration(semitones):
    out = AUGMENTATIONS.get("pitch_shift")(sine(200.0), SR, Fixed(semitones))
    assert out.numel() == SR
    assert abs(peak_hz(out) - 200.0 * 2 ** (semitones / 12)) < 3.0


def test_noise_is_added_at_the_requested_snr():
    x = sine(300.0)
    out = AUGMENTATIONS.get("noise")(x, SR, Fixed(20.0))
    snr = 10 * np.log10(float(x.pow(2).mean()) / float((out - x).pow(2).mean()))
    assert abs(snr - 20.0) < 0.5


def test_gain_speed_and_time_mask():
    x = sine(300.0, amplitude=0.2)
    assert torch.allclose(AUGMENTATIONS.get("gain")(x, SR, Fixed(6.0)), x * 10 ** (6 / 20), atol=1e-6)
    faster = AUGMENTATIONS.get("speed")(x, SR, Fixed(2))  # factors (0.9, 1.0, 1.1): index 2 is 1.1x faster
    assert abs(faster.numel() - SR / 1.1) <= 2 and abs(peak_hz(faster) - 330.0) < 3.0
    masked = AUGMENTATIONS.get("time_mask")(x, SR, np.random.default_rng(3))
    assert masked.numel() == SR and 0 < int((masked == 0).sum()) - int((x == 0).sum()) <= 2 * SR // 10 + 2


def test_unknown_op_is_a_config_error_before_any_data_is_read():
    from ser_dist.config import Experiment, apply_overrides

    with pytest.raises(ConfigError, match="data.augment: unknown augmentation 'bandpas'; known: bandpass"):
        apply_overrides(Experiment(), {"data.root": "/nowhere", "data.augment": "bandpas"}).validate()
    with pytest.raises(ConfigError, match="--ops"):
        resolve_ops(["loud"], key="--ops")


class TwoBatches:
    """The trainer's batch sampler, as the loader sees it: an ``epoch`` and batches of indices."""

    epoch = 0

    def __iter__(self):
        return iter([[0, 1], [2, 3]])

    def __len__(self):
        return 2


def test_online_augmentation_is_reproducible_per_clip_epoch_and_any_worker_count():
    from torch.utils.data import DataLoader

    from ser_dist.data.augment import AugmentedClips, EpochTaggedBatches
    from ser_dist.data.dataset import collate_waveforms

    clips = [{"waveform": sine(200.0 + 50 * i, seconds=0.5 + 0.1 * i), "label": i % 2, "index": i} for i in range(4)]
    sampler = TwoBatches()

    def batches(workers: int, prob: float = 1.0) -> list[dict]:
        dataset = AugmentedClips(clips, Augmenter(["speed", "noise"], prob=prob, sample_rate=SR, seed=5))
        return list(DataLoader(dataset, batch_sampler=EpochTaggedBatches(sampler), collate_fn=collate_waveforms, num_workers=workers))

    first, in_workers = batches(0), batches(2)
    for a, b in zip(first, in_workers):
        # The same draws; DataLoader workers run torch on 1 thread and this process on several, which
        # changes the resampler's summation order by float rounding (~2e-7), nothing more.
        torch.testing.assert_close(a["input_values"], b["input_values"], atol=1e-6, rtol=0)
        assert torch.equal(a["lengths"], b["lengths"])
    assert first[0]["labels"].tolist() == [0, 1] and first[1]["index"].tolist() == [2, 3]
    untouched = batches(0, prob=0.0)
    assert torch.equal(untouched[0]["input_values"], collate_waveforms(clips[:2])["input_values"])
    assert not torch.equal(first[0]["input_values"][0, :100], untouched[0]["input_values"][0, :100])
    sampler.epoch = 1  # new draws each epoch
    assert not torch.equal(batches(0)[0]["input_values"][0, :100], first[0]["input_values"][0, :100])


def test_online_augmentation_touches_training_clips_only(demo_corpus, tmp_path):
    """Through the real trainer: the op sees exactly the training clips, once per epoch, never val/test."""
    from ser_dist.config import Experiment, cli
    from ser_dist.trainer import train

    seen = []

    def spy_op(waveform, sample_rate, rng):
        seen.append(round(float(waveform.abs().sum()), 3))
        return waveform

    if "test_spy" not in AUGMENTATIONS:
        AUGMENTATIONS.register("test_spy")(spy_op)
    else:
        AUGMENTATIONS._entries["test_spy"] = spy_op
    exp = cli(
        Experiment(name="augment_spy"),
        [
            f"data.root={demo_corpus}",
            f"data.speaker_pattern={SPEAKER_PATTERN}",
            "data.labels=[Anger,Neutral,Sad]",
            *TINY_BILSTM,
            "data.max_seconds=1.0",
            "data.augment=[test_spy]",
            "data.augment_prob=1.0",
            "train.epochs=2",
            "train.report_to=[]",
            f"train.output_dir={tmp_path / 'run'}",
        ],
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = train(exp)
    finally:
        torch.set_num_threads(threads)
    train_clips = results["data"]["split"]["train"]["num_clips"]
    assert len(seen) == 2 * train_clips
    with open(tmp_path / "run" / "split.csv") as f:
        rows = list(csv.DictReader(f))
    assert sum(row["split"] == "train" for row in rows) == train_clips


def test_offline_augment_writes_a_copy_and_splits_keep_copies_with_their_source(demo_corpus, tmp_path):
    from ser_dist.config import Data
    from ser_dist.data.pipeline import scan_corpus
    from ser_dist.data.splits import split_records

    src = tmp_path / "src"
    for label in ("Anger", "Sad"):
        shutil.copytree(demo_corpus / label, src / label)
    dst = tmp_path / "augmented"
    result = ser_dist_cli("augment", str(src), str(dst), "--ops", "bandpass,gain", "--seed", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    originals = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.wav"))
    with open(dst / "sources.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * len(originals) and {row["source"] for row in rows} == set(originals)
    assert all((dst / row["path"]).exists() for row in rows)
    assert (dst / "Anger" / "spk01_s01_anger_t1_bandpass.wav").exists()
    again = ser_dist_cli("augment", str(src), str(dst), "--ops", "bandpass")
    assert again.returncode == 2 and "ser-dist: error:" in again.stderr and "not empty" in again.stderr
    # The leakage test: every protocol keeps a clip and its copies in one split, even the speaker-mixing one.
    for split, extra in (("stratified", {}), ("speaker", {"speaker_pattern": SPEAKER_PATTERN})):
        data = Data(root=str(dst), split=split, **extra)
        records = scan_corpus(data).records
        assert len(records) == len(rows)
        where = {}
        for name, indices in split_records(records, data, seed=0).items():
            for i in indices:
                assert where.setdefault(records[i].source, name) == name, f"{records[i].source} in two splits ({split})"
        assert len(where) == len(originals)
