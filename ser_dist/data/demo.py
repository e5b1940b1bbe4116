"""A synthetic acted-emotion speech corpus: the data ser-dist uses when no corpus is given.

``make_demo_corpus(out_dir)`` writes the seed's layout (one folder per class: ``Anger/``, ``Disgust/``,
``Fear/``, ``Happy/``, ``Neutral/``, ``Sad/``) with 16-bit WAV clips named
``spk03_s07_anger_t1.wav``, so ``data.speaker_pattern`` = :data:`SPEAKER_PATTERN` recovers the speaker
and speaker-independent splits work as on a real corpus. ``manifest.csv`` lists every clip with its class,
speaker and arousal / valence / dominance ratings (1-5, :mod:`ser_dist.data.demo_ratings`), for
``data.manifest=DIR/manifest.csv data.targets=dimensional|both data.dimension_range=[1,5]``.

This module writes the corpus to disk. Who speaks, what and in which emotion is
:mod:`ser_dist.data.demo_voices`; the audio is :mod:`ser_dist.data.demo_synthesis`.

Every clip's randomness comes from ``(seed, speaker, sentence, emotion, take)``, so the bytes depend
on the seed only, never on the number of worker processes.
"""

from __future__ import annotations

import csv
import os
import re
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from ..errors import ConfigError
from .demo_ratings import DIMENSIONS, RATERS, clip_ratings
from .demo_synthesis import MAX_CLIP_SECONDS, MIN_CLIP_SECONDS, synthesize_clip
from .demo_voices import EMOTION_CUES, EMOTIONS, STREAM_CLIP, Sentence, Speaker, make_sentence, make_speaker
from .records import DataError

# Group 1 is the speaker id; pass it as data.speaker_pattern.
SPEAKER_PATTERN = r"^(spk\d+)_"
CLIP_NAME = re.compile(r"^spk\d+_s\d+_[a-z]+_t\d+\.wav$")
# The first line of README.md: marks a folder this module may overwrite.
README_MARKER = "<!-- ser-dist demo corpus -->"
MANIFEST = "manifest.csv"  # every clip: path (relative), label, speaker, and its ratings


def clip_name(speaker: int, sentence: int, emotion: str, take: int) -> str:
    """``spk03_s07_anger_t1.wav`` for 0-based speaker 2, sentence 6, take 1."""
    return f"spk{speaker + 1:02d}_s{sentence + 1:02d}_{emotion.lower()}_t{take}.wav"


def _write_clip(job: tuple) -> tuple[str, int, dict]:
    out_dir, seed, sample_rate, speaker, sentence, emotion_index, take = job
    emotion = EMOTIONS[emotion_index]
    rng = np.random.default_rng([seed, STREAM_CLIP, speaker, sentence, emotion_index, take])
    audio = synthesize_clip(make_speaker(seed, speaker), make_sentence(seed, sentence), emotion, rng, sample_rate)
    name = clip_name(speaker, sentence, emotion, take)
    wavfile.write(Path(out_dir) / emotion / name, sample_rate, audio)
    row = {"path": f"{emotion}/{name}", "label": emotion, "speaker": make_speaker(seed, speaker).name}
    return emotion, len(audio), {**row, **clip_ratings(seed, speaker, sentence, emotion_index, take)}


def _require_integer(name: str, value, minimum: int, wanted: str) -> None:
    # bool is an int to Python, but workers=True is a mistake, not 1.
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"make_demo_corpus: {name}={value!r} must be {wanted}")


def _prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir``, or clear the clips of an earlier demo corpus there; refuse any other content."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder; choose another output folder for the demo corpus")
    out_dir.mkdir(parents=True, exist_ok=True)
    readme = out_dir / "README.md"
    earlier = readme.is_file() and readme.read_text(errors="replace").startswith(README_MARKER)
    stale = []
    for path in sorted(out_dir.rglob("*")):
        if path.is_dir():
            continue
        ours = path in (readme, out_dir / MANIFEST) or (
            path.parent.parent == out_dir and path.parent.name in EMOTIONS and CLIP_NAME.match(path.name)
        )
        if not (earlier and ours):
            raise DataError(
                f"{out_dir}: folder is not empty (found {path.relative_to(out_dir)}); write the demo corpus to an empty or new folder"
            )
        stale.append(path)
    for path in stale:  # an earlier demo corpus with other settings: never mix its clips with ours
        path.unlink()


def _readme(seed: int, speakers: list[Speaker], sentences: list[Sentence], takes: int, sample_rate: int, per_class: dict[str, int]) -> str:
    lines = [
        README_MARKER,
        "# ser-dist demo corpus (synthetic acted emotional speech)",
        "",
        "Made by `ser_dist.data.demo.make_demo_corpus` with "
        f"seed={seed}, {len(speakers)} speakers x {len(sentences)} sentences x {len(EMOTIONS)} emotions x {takes} take(s) "
        f"= {sum(per_class.values())} clips, 16-bit mono WAV at {sample_rate} Hz, {MIN_CLIP_SECONDS}-{MAX_CLIP_SECONDS} s each.",
        "The same call with the same seed writes the same bytes. No real voices are involved.",
        "",
        "## Layout",
        "",
        "One folder per class (" + ", ".join(f"`{e}/`" for e in EMOTIONS) + "), files named "
        "`spk03_s07_anger_t1.wav` (speaker, sentence, emotion, take).",
        f"Recover the speaker with `data.speaker_pattern='{SPEAKER_PATTERN}'` and keep speakers apart in splits.",
        "",
        f"`{MANIFEST}` lists every clip (`path`, `label`, `speaker`) with its {', '.join(DIMENSIONS)} ratings: the mean of",
        f"{RATERS} raters' whole-number ratings on a 1-5 scale, derived from the clip's pitch level and range, speaking rate,",
        "vocal effort and voice quality plus each rater's noise (`ser_dist/data/demo_ratings.py`). Train on them with",
        f"`data.manifest=DIR/{MANIFEST} data.targets=dimensional data.dimension_range=[1,5]` (or `data.targets=both`).",
        "",
        "## How a clip is made",
        "",
        "Source-filter synthesis: a Rosenberg glottal pulse train (phase accumulation over an F0 contour with",
        "declination, pitch accents on stressed syllables and a final fall or rise) with jitter, shimmer,",
        "pulsed aspiration and spectral tilt, through a cascade of formant resonators whose targets come",
        "from Peterson & Barney (1952) vowel formants scaled by each speaker's vocal-tract length; fricatives",
        "and stop bursts are band-passed noise. Each clip has a random emotion intensity (scaled by the",
        "speaker's expressiveness), per-cue variation, leading/trailing silence, background noise at a random",
        "SNR (10-30 dB, shifted by vocal effort) and a random output level (-32 to -18 dBFS RMS).",
        "",
        "## Emotion cues (full intensity)",
        "",
        "| emotion | F0 shift (st) | F0 range | duration | loudness (dB) | jitter | breathiness | open quotient | tilt | creak | tremor (st) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for emotion in EMOTIONS:
        c = EMOTION_CUES[emotion]
        lines.append(
            f"| {emotion} | {c.f0_shift_st:+.1f} | x{c.f0_range:.2f} | x{c.duration:.2f} | {c.loudness_db:+.0f} | "
            f"{100 * c.jitter:.1f}% | {c.breathiness:.2f} | {c.open_quotient:.2f} | {c.tilt:.2f} | {c.creak:.1f} | {c.tremor_st:.1f} |"
        )
    lines += ["", "## Speakers", "", "| speaker | sex | base F0 (Hz) | formant scale |", "|---|---|---|---|"]
    lines += [f"| {s.name} | {s.sex} | {s.f0_hz:.0f} | {s.formant_scale:.2f} |" for s in speakers]
    lines += ["", "## Sentences (syllables; upper case is stressed)", ""]
    lines += [f"- s{i + 1:02d}: {s.text()}" for i, s in enumerate(sentences)]
    lines += ["", "## Clips per class", ""]
    lines += [f"- {emotion}: {count}" for emotion, count in per_class.items()]
    return "\n".join(lines) + "\n"


def make_demo_corpus(
    out_dir,
    *,
    num_speakers: int = 10,
    num_sentences: int = 10,
    takes: int = 1,
    seed: int = 0,
    sample_rate: int = 16000,
    workers: int | None = None,
) -> dict:
    """Write the synthetic corpus to ``out_dir``; returns a summary.

    The summary has ``out_dir``, ``num_clips``, ``per_class`` (clips per emotion), ``speakers`` (ids),
    ``seconds`` (time taken) and ``audio_seconds`` (total audio). ``workers`` processes synthesise in
    parallel (default ``min(2, os.cpu_count())``); the output does not depend on it.
    """
    for name, value in (("num_speakers", num_speakers), ("num_sentences", num_sentences), ("takes", takes)):
        _require_integer(name, value, 1, "a positive integer")
    _require_integer("seed", seed, 0, "a non-negative integer")
    _require_integer("sample_rate", sample_rate, 8000, "an integer of at least 8000 Hz")
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    _require_integer("workers", workers, 1, "a positive integer")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    for emotion in EMOTIONS:
        (out_dir / emotion).mkdir(exist_ok=True)

    jobs = [
        (str(out_dir), int(seed), int(sample_rate), spk, sent, e, take)
        for spk in range(num_speakers)
        for sent in range(num_sentences)
        for e in range(len(EMOTIONS))
        for take in range(1, takes + 1)
    ]
    if workers == 1:
        results = [_write_clip(job) for job in jobs]
    else:
        with Pool(min(workers, len(jobs))) as pool:
            results = list(pool.imap_unordered(_write_clip, jobs, chunksize=max(1, len(jobs) // (8 * workers))))

    per_class = {emotion: 0 for emotion in EMOTIONS}
    samples = 0
    for emotion, length, _ in results:
        per_class[emotion] += 1
        samples += length
    rows = sorted((row for _, _, row in results), key=lambda row: row["path"])
    with open(out_dir / MANIFEST, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    speakers = [make_speaker(int(seed), i) for i in range(num_speakers)]
    sentences = [make_sentence(int(seed), i) for i in range(num_sentences)]
    (out_dir / "README.md").write_text(_readme(int(seed), speakers, sentences, takes, int(sample_rate), per_class))
    return {
        "out_dir": str(out_dir),
        "num_clips": len(results),
        "per_class": per_class,
        "speakers": [s.name for s in speakers],
        "seconds": time.perf_counter() - started,
        "audio_seconds": samples / sample_rate,
    }
