"""Waveform augmentation: online on training batches, and offline into an augmented copy of a corpus.

Ops are listed in ``ser_dist.registry.AUGMENTATIONS`` as ``op(waveform [T] float32 tensor,
sample_rate, rng: numpy Generator) -> waveform`` (the length may change: ``speed``). The seed's ops are
``bandpass``, ``pitch_shift`` and ``time_mask``; ``noise`` (white noise at a random SNR), ``gain`` and
``speed`` (Kaldi-style speed perturbation, which also shifts pitch) are added. Each op's random ranges
are its keyword defaults below.

Online (``data.augment=bandpass,noise data.augment_prob=0.5``): the trainer's *training* loader reads
clips through :class:`AugmentedClips` (in its workers, ``data.num_workers``); each op is applied to each
clip with probability ``augment_prob``, drawn from a generator seeded by (train.seed, epoch, clip index),
so a run (and a resumed run) sees the same augmentations on any number of processes and workers.
Validation and test clips are never augmented.

Offline (``ser-dist augment SRC DST --ops bandpass``): :func:`augment_corpus` writes DST with the
original clips plus one augmented copy per op, and ``DST/sources.csv`` naming each file's original
clip; the folder adapter reads it, so the splits keep a clip and its copies in the same split.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..registry import AUGMENTATIONS


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def bandpass(
    waveform: torch.Tensor,
    sample_rate: int,
    rng: np.random.Generator,
    low_hz: tuple[float, float] = (100.0, 400.0),
    high_hz: tuple[float, float] = (3000.0, 6000.0),
) -> torch.Tensor:
    """Band-limit to [low, high] Hz (telephone-like): a 4th-order Butterworth band-pass, zero-phase."""
    from scipy.signal import butter, sosfiltfilt

    low = _uniform(rng, low_hz)
    high = min(_uniform(rng, high_hz), 0.45 * sample_rate)
    if waveform.numel() < 64:  # too short for the zero-phase filter's padding
        return waveform
    sos = butter(4, [low, high], btype="bandpass", fs=sample_rate, output="sos")
    return torch.from_numpy(np.ascontiguousarray(sosfiltfilt(sos, waveform.numpy().astype(np.float64)), dtype=np.float32))


def pitch_shift(
    waveform: torch.Tensor, sample_rate: int, rng: np.random.Generator, semitones: tuple[float, float] = (-2.0, 2.0)
) -> torch.Tensor:
    """Shift the pitch by a random amount in ``semitones``, keeping the duration: a phase-vocoder time
    stretch, then resampling back. The resampling ratio is rounded to 100 Hz steps (~0.1 semitone at 16 kHz), since
    a ratio of coprime rates (what ``torchaudio.functional.pitch_shift`` uses) costs seconds per clip."""
    import torchaudio.functional as AF

    length = waveform.numel()
    stretched_rate = int(round(sample_rate * 2.0 ** (_uniform(rng, semitones) / 12.0) / 100.0)) * 100
    if stretched_rate == sample_rate or length < 1024:
        return waveform
    rate = sample_rate / stretched_rate  # < 1 stretches (longer) for an upward shift
    n_fft, hop = 512, 128
    window = torch.hann_window(n_fft)
    spec = torch.stft(waveform, n_fft, hop, window=window, return_complex=True)
    phase_advance = torch.linspace(0, torch.pi * hop, n_fft // 2 + 1)[:, None]
    stretched = torch.istft(AF.phase_vocoder(spec, rate, phase_advance), n_fft, hop, window=window, length=int(round(length / rate)))
    out = AF.resample(stretched, stretched_rate, sample_rate)
    out = out[:length] if out.numel() >= length else torch.nn.functional.pad(out, (0, length - out.numel()))
    return out.clamp(-1.0, 1.0).contiguous()


def time_mask(
    waveform: torch.Tensor, sample_rate: int, rng: np.random.Generator, max_masks: int = 2, max_fraction: float = 0.1
) -> torch.Tensor:
    """Silence 1..max_masks random spans, each up to ``max_fraction`` of the clip."""
    out = waveform.clone()
    length = out.numel()
    for _ in range(int(rng.integers(1, max_masks + 1))):
        width = int(rng.integers(0, max(1, int(max_fraction * length)) + 1))
        start = int(rng.integers(0, max(1, length - width + 1)))
        out[start : start + width] = 0.0
    return out


def noise(waveform: torch.Tensor, sample_rate: int, rng: np.random.Generator, snr_db: tuple[float, float] = (10.0, 30.0)) -> torch.Tensor:
    """Add white noise at a random signal-to-noise ratio (dB) in ``snr_db``."""
    power = float(waveform.pow(2).mean()) if waveform.numel() else 0.0
    if power <= 0.0:
        return waveform
    noise_power = power / (10.0 ** (_uniform(rng, snr_db) / 10.0))
    added = rng.standard_normal(waveform.numel()).astype(np.float32) * np.float32(np.sqrt(noise_power))
    return (waveform + torch.from_numpy(added)).clamp(-1.0, 1.0)


def gain(waveform: torch.Tensor, sample_rate: int, rng: np.random.Generator, gain_db: tuple[float, float] = (-6.0, 6.0)) -> torch.Tensor:
    """Scale by a random gain in ``gain_db`` (clipped to [-1, 1])."""
    return (waveform * 10.0 ** (_uniform(rng, gain_db) / 20.0)).clamp(-1.0, 1.0)


def speed(waveform: torch.Tensor, sample_rate: int, rng: np.random.Generator, factors: tuple[float, ...] = (0.9, 1.0, 1.1)) -> torch.Tensor:
    """Speed perturbation (Ko et al., 2015): resample by a factor, so the clip plays faster or slower."""
    import torchaudio.functional as AF

    factor = float(factors[int(rng.integers(0, len(factors)))])
    if factor == 1.0:
        return waveform
    # Read at ``sample_rate * factor`` and played at ``sample_rate``: fewer samples when faster.
    return AF.resample(waveform[None], int(round(sample_rate * factor)), sample_rate)[0].contiguous()


def resolve_ops(names: list[str], key: str = "data.augment") -> list[tuple[str, Callable]]:
    """``[(name, op)]``; an unknown name is a ConfigError listing the known ones."""
    for name in names:
        AUGMENTATIONS.require(name, key)
    return [(name, AUGMENTATIONS.get(name)) for name in names]


class Augmenter:
    """Each op applied to a clip with probability ``prob``, drawn from ``rng``."""

    def __init__(self, names: list[str], prob: float, sample_rate: int, seed: int):
        self.ops = resolve_ops(names)
        self.prob = float(prob)
        self.sample_rate = int(sample_rate)
        self.seed = int(seed)

    def clip(self, waveform: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        for _, op in self.ops:
            if rng.random() < self.prob:
                waveform = op(waveform, self.sample_rate, rng)
        return waveform


class AugmentedClips(torch.utils.data.Dataset):
    """Training clips, augmented where they are loaded (in the DataLoader's workers when it has some).

    Items are asked for as ``(epoch, index)`` (see :class:`EpochTaggedBatches`), and each clip's draws
    come from a generator seeded by (seed, epoch, index): the same on any number of workers or processes,
    and again after a resume.
    """

    def __init__(self, clips, augmenter: Augmenter):
        self.clips = clips
        self.augmenter = augmenter

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key) -> dict:
        epoch, index = key
        item = self.clips[index]
        rng = np.random.default_rng([self.augmenter.seed, int(epoch), int(index)])
        return {**item, "waveform": self.augmenter.clip(item["waveform"], rng)}


class EpochTaggedBatches:
    """Wraps the training batch sampler so each index carries the epoch: ``[(epoch, index), ...]``."""

    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self):
        epoch = self.sampler.epoch
        for batch in self.sampler:
            yield [(epoch, index) for index in batch]

    def __len__(self) -> int:
        return len(self.sampler)


def build_augmenter(data, seed: int) -> Augmenter | None:
    """The online augmenter for ``data.augment`` (None when empty)."""
    if not data.augment:
        return None
    return Augmenter(list(data.augment), data.augment_prob, data.sample_rate, seed)


def augmented_training_data(clips, batch_sampler, data, seed: int):
    """``(dataset, batch_sampler)`` for the training DataLoader: unchanged without ``data.augment``."""
    augmenter = build_augmenter(data, seed)
    if augmenter is None:
        return clips, batch_sampler
    return AugmentedClips(clips, augmenter), EpochTaggedBatches(batch_sampler)


def augment_corpus(
    src: Path, dst: Path, ops: list[str], *, copies: int = 1, sample_rate: int = 16000, seed: int = 0, keep_originals: bool = True
) -> dict:
    """Write DST: SRC's folder-per-class clips (copied as they are) plus ``copies`` augmented copies per op,
    ``<stem>_<op>[<k>].wav``, and ``DST/sources.csv`` (path relative to DST, source = the original's path
    relative to SRC). File names keep their stems, so ``data.speaker_pattern`` still finds the speaker.
    Returns counts. Unreadable clips are skipped and counted."""
    import soundfile as sf

    from .audio import AudioError, load_audio
    from .records import AUDIO_EXTENSIONS, DataError

    src, dst = Path(src), Path(dst)
    resolved = resolve_ops(ops, key="--ops")
    if not src.is_dir():
        raise DataError(f"{src}: not a folder; pass a folder with one subfolder per emotion")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise DataError(f"{dst}: the augmented copy must be written outside {src}")
    if dst.exists() and any(dst.iterdir()):
        raise DataError(f"{dst}: already exists and is not empty; choose a new folder or remove it")
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and p.parent != src)
    if not files:
        raise DataError(f"{src}: no audio files in class folders (expected {src}/Anger/*.wav, ...)")
    rows, skipped = [], []
    for number, path in enumerate(files):
        relative = path.relative_to(src)
        source = relative.as_posix()
        target_dir = dst / relative.parent
        target_dir.mkdir(parents=True, exist_ok=True)
        try:
            waveform = torch.from_numpy(load_audio(path, sample_rate))
        except AudioError as err:
            skipped.append((str(path), err.reason))
            continue
        if keep_originals:
            shutil.copy2(path, target_dir / path.name)
            rows.append(((relative.parent / path.name).as_posix(), source))
        for op_number, (name, op) in enumerate(resolved):
            for k in range(copies):
                rng = np.random.default_rng([seed, number, op_number, k])
                name_k = f"{path.stem}_{name}{k + 1 if copies > 1 else ''}.wav"
                out = op(waveform, sample_rate, rng).numpy()
                sf.write(str(target_dir / name_k), np.clip(out, -1.0, 1.0), sample_rate, subtype="PCM_16")
                rows.append(((relative.parent / name_k).as_posix(), source))
    with open(dst / "sources.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "source"])
        writer.writerows(rows)
    return {"originals": len(files) - len(skipped), "written": len(rows), "skipped": skipped}
