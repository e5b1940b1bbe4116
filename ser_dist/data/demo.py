"""A synthetic acted-emotion speech corpus: the data ser-dist uses when no corpus is given.

``make_demo_corpus(out_dir)`` writes the seed's layout (one folder per class: ``Anger/``, ``Disgust/``,
``Fear/``, ``Happy/``, ``Neutral/``, ``Sad/``) with 16-bit WAV clips named
``spk03_s07_anger_t1.wav``, so ``data.speaker_pattern`` = :data:`SPEAKER_PATTERN` recovers the speaker
and speaker-independent splits work as on a real corpus.

How a clip is made (source-filter synthesis, numpy/scipy only):

* A speaker is a base F0 (half "male" ~100-130 Hz, half "female" ~180-230 Hz), a vocal-tract length
  that scales every formant, a voice quality (jitter, shimmer, breathiness, open quotient, spectral
  tilt), a habitual speaking rate and pitch range, and a microphone colouring.
* A sentence is a fixed sequence of syllables (onset consonant + vowel), so the same "text" is spoken
  by every speaker in every emotion. Vowel formant targets come from Peterson & Barney (1952).
* The glottal source is a Rosenberg pulse train driven by phase accumulation over an F0 contour
  (declination, pitch accents on stressed syllables, final fall or rise), with per-period jitter and
  shimmer, pulsed aspiration noise and a one-pole spectral tilt. It runs through a cascade of Klatt
  formant resonators (``scipy.signal.lfilter``, 5 ms frames carrying the filter state, so formant
  transitions between syllables are smooth). Fricatives and stop bursts are band-passed noise.
* An emotion moves the cues the literature reports (pitch level and range, rate, loudness, voice
  quality), scaled by a per-clip intensity and a per-speaker expressiveness, with per-cue jitter, so
  classes overlap the way acted corpora do. Leading/trailing silence, background noise at a random
  SNR and a random output level finish the clip.

Every clip's randomness comes from ``(seed, speaker, sentence, emotion, take)``, so the bytes depend
on the seed only, never on the number of worker processes.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import Pool
from pathlib import Path
from typing import Optional

import numpy as np
from scipy.io import wavfile
from scipy.signal import butter, lfilter, sosfilt

from ..errors import ConfigError
from .manifest import DataError

EMOTIONS: tuple[str, ...] = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad")
# Group 1 is the speaker id; pass it as data.speaker_pattern.
SPEAKER_PATTERN = r"^(spk\d+)_"
CLIP_NAME = re.compile(r"^spk\d+_s\d+_[a-z]+_t\d+\.wav$")
# The first line of README.md: marks a folder this module may overwrite.
README_MARKER = "<!-- ser-dist demo corpus -->"

MIN_CLIP_SECONDS = 1.5
MAX_CLIP_SECONDS = 4.0
FRAME_SECONDS = 0.005  # formant filter update interval

# Independent random streams, so adding a cue to one never shifts another.
_STREAM_SPEAKER, _STREAM_SENTENCE, _STREAM_CLIP = 1, 2, 3


# --- phonetics ------------------------------------------------------------------------------------

# Average adult male F1-F3 in Hz (Peterson & Barney 1952); speakers scale them by vocal-tract length.
VOWEL_FORMANTS: dict[str, tuple[float, float, float]] = {
    "i": (270, 2290, 3010),
    "I": (390, 1990, 2550),
    "e": (530, 1840, 2480),
    "ae": (660, 1720, 2410),
    "a": (730, 1090, 2440),
    "o": (570, 840, 2410),
    "U": (440, 1020, 2240),
    "u": (300, 870, 2240),
    "A": (640, 1190, 2390),
    "er": (490, 1350, 1690),
}


@dataclass(frozen=True)
class Consonant:
    kind: str  # stop | fricative | aspirate | sonorant
    seconds: float
    voiced: bool
    # Formant locus (male Hz): where F1-F3 start before moving to the vowel.
    locus: tuple[float, float, float]
    noise_band: Optional[tuple[float, float]] = None  # frication / burst band in Hz
    amplitude: float = 1.0


CONSONANTS: dict[str, Consonant] = {
    "p": Consonant("stop", 0.075, False, (250, 900, 2200), (400, 1600), 0.5),
    "t": Consonant("stop", 0.075, False, (250, 1800, 2700), (3000, 7000), 0.6),
    "k": Consonant("stop", 0.080, False, (250, 1600, 2400), (1500, 3500), 0.6),
    "b": Consonant("stop", 0.060, True, (250, 900, 2200), (400, 1600), 0.25),
    "d": Consonant("stop", 0.060, True, (250, 1800, 2700), (3000, 7000), 0.3),
    "g": Consonant("stop", 0.065, True, (250, 1600, 2400), (1500, 3500), 0.3),
    "s": Consonant("fricative", 0.100, False, (300, 1800, 2700), (4000, 7800), 0.35),
    "sh": Consonant("fricative", 0.100, False, (300, 1900, 2500), (2000, 5500), 0.4),
    "f": Consonant("fricative", 0.090, False, (300, 1000, 2300), (1200, 7500), 0.12),
    "z": Consonant("fricative", 0.080, True, (300, 1800, 2700), (4000, 7800), 0.2),
    "v": Consonant("fricative", 0.070, True, (300, 1000, 2300), (1200, 7500), 0.08),
    "h": Consonant("aspirate", 0.070, False, (0, 0, 0), None, 0.35),
    "m": Consonant("sonorant", 0.070, True, (250, 1100, 2300), None, 0.35),
    "n": Consonant("sonorant", 0.070, True, (250, 1600, 2600), None, 0.35),
    "l": Consonant("sonorant", 0.060, True, (360, 1300, 2700), None, 0.6),
    "r": Consonant("sonorant", 0.060, True, (310, 1060, 1380), None, 0.6),
    "w": Consonant("sonorant", 0.055, True, (290, 610, 2150), None, 0.6),
    "y": Consonant("sonorant", 0.055, True, (260, 2070, 3020), None, 0.6),
}
_ONSETS = tuple(CONSONANTS) + ("",)  # "" is a vowel-initial syllable


@dataclass(frozen=True)
class Syllable:
    onset: str  # key of CONSONANTS, or "" for none
    vowel: str  # key of VOWEL_FORMANTS
    stressed: bool

    def text(self) -> str:
        s = self.onset + self.vowel
        return s.upper() if self.stressed else s.lower()


@dataclass(frozen=True)
class Sentence:
    syllables: tuple[Syllable, ...]
    question: bool  # final rise instead of the statement's final fall
    phrase_break: Optional[int]  # a pause before this syllable index

    def nominal_seconds(self) -> float:
        """Length at speaking rate 1 (an upper bound on the rate-scaled part, as consonants stretch less)."""
        last = len(self.syllables) - 1
        seconds = 0.2 if self.phrase_break is not None else 0.0
        for i, syl in enumerate(self.syllables):
            seconds += CONSONANTS[syl.onset].seconds if syl.onset else 0.0
            seconds += 0.13 * (1.35 if syl.stressed else 1.0) * (1.4 if i == last else 1.0)
        return seconds

    def text(self) -> str:
        words = []
        for i, syl in enumerate(self.syllables):
            if i == self.phrase_break:
                words.append(",")
            words.append(syl.text())
        return "-".join(words).replace("-,-", ", ") + ("?" if self.question else ".")


def make_sentence(seed: int, index: int) -> Sentence:
    rng = np.random.default_rng([seed, _STREAM_SENTENCE, index])
    count = int(rng.integers(6, 11))
    vowels = list(VOWEL_FORMANTS)
    syllables = []
    for i in range(count):
        onset = _ONSETS[int(rng.integers(len(_ONSETS)))] if rng.random() > 0.1 else ""
        stressed = bool(rng.random() < 0.35) or (i == count - 2 and not any(s.stressed for s in syllables))
        syllables.append(Syllable(onset, vowels[int(rng.integers(len(vowels)))], stressed))
    phrase_break = int(rng.integers(3, count - 2)) if count >= 8 and rng.random() < 0.6 else None
    return Sentence(tuple(syllables), question=bool(rng.random() < 0.25), phrase_break=phrase_break)


# --- speakers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Speaker:
    name: str
    sex: str
    f0_hz: float
    formant_scale: float  # vocal-tract length: shorter tract, higher formants
    pitch_range: float  # habitual F0 excursion, multiplies accents
    rate: float  # habitual duration multiplier (>1: slower)
    jitter: float  # multiplies the emotion's jitter
    shimmer: float
    breathiness: float  # added to the emotion's
    open_quotient: float  # added to the emotion's
    tilt: float  # added to the emotion's tilt coefficient
    expressiveness: float  # how strongly this speaker acts: scales every emotion cue
    loudness_db: float
    microphone: float  # first-order channel colouring, -: duller, +: brighter


def make_speaker(seed: int, index: int) -> Speaker:
    rng = np.random.default_rng([seed, _STREAM_SPEAKER, index])
    female = index % 2 == 1  # alternate so any split has both
    return Speaker(
        name=f"spk{index + 1:02d}",
        sex="female" if female else "male",
        f0_hz=float(rng.uniform(180, 230) if female else rng.uniform(100, 130)),
        formant_scale=float(rng.uniform(1.12, 1.22) if female else rng.uniform(0.94, 1.06)),
        pitch_range=float(rng.uniform(0.7, 1.3)),
        rate=float(rng.uniform(0.88, 1.15)),
        jitter=float(rng.uniform(0.7, 1.4)),
        shimmer=float(rng.uniform(0.7, 1.4)),
        breathiness=float(rng.uniform(-0.03, 0.08) + (0.03 if female else 0.0)),
        open_quotient=float(rng.uniform(-0.05, 0.05)),
        tilt=float(rng.uniform(-0.1, 0.1)),
        expressiveness=float(rng.uniform(0.7, 1.2)),
        loudness_db=float(rng.uniform(-2, 2)),
        microphone=float(rng.uniform(-0.3, 0.5)),
    )


# --- emotions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cues:
    f0_shift_st: float  # pitch level, semitones from the speaker's base
    f0_range: float  # multiplies accent and declination excursions
    duration: float  # multiplies syllable durations (>1: slower)
    pause: float  # multiplies pauses
    loudness_db: float  # vocal effort; shows as SNR against a fixed noise floor
    energy_variation_db: float  # spread of syllable loudness
    jitter: float  # per-period F0 perturbation (fraction)
    shimmer: float  # per-period amplitude perturbation (log-amplitude std)
    breathiness: float  # aspiration noise relative to voicing
    open_quotient: float  # glottal open phase: low = tense/pressed, high = lax/breathy
    tilt: float  # one-pole low-pass coefficient on the source: high = steep tilt (soft voice)
    creak: float  # fraction of creaky (vocal fry) syllables
    tremor_st: float  # 5-7 Hz F0 tremor depth
    f1_scale: float  # articulation: wider mouth opening raises F1
    f2_scale: float  # smiling shortens the tract, raises F2
    accent_peak: float  # where in the stressed vowel the pitch accent peaks (anger: early, sharp fall)


# Directions follow Scherer (2003) and Juslin & Laukka (2003): anger and happiness are high, wide
# and fast; fear high, narrow, fast, jittery and breathy; sadness low, narrow, slow, soft and breathy;
# disgust low, slow and creaky with flat energy.
EMOTION_CUES: dict[str, Cues] = {
    "Neutral": Cues(
        f0_shift_st=0.0, f0_range=1.0, duration=1.0, pause=1.0, loudness_db=0.0, energy_variation_db=2.0,
        jitter=0.006, shimmer=0.04, breathiness=0.08, open_quotient=0.55, tilt=0.55, creak=0.0,
        tremor_st=0.0, f1_scale=1.0, f2_scale=1.0, accent_peak=0.5,
    ),
    "Anger": Cues(
        f0_shift_st=4.0, f0_range=1.5, duration=0.85, pause=0.7, loudness_db=6.0, energy_variation_db=4.0,
        jitter=0.01, shimmer=0.05, breathiness=0.03, open_quotient=0.4, tilt=0.25, creak=0.0, tremor_st=0.0,
        f1_scale=1.08, f2_scale=1.0, accent_peak=0.3,
    ),
    "Happy": Cues(
        f0_shift_st=4.0, f0_range=1.8, duration=0.9, pause=0.8, loudness_db=3.0, energy_variation_db=3.0,
        jitter=0.008, shimmer=0.04, breathiness=0.06, open_quotient=0.5, tilt=0.45, creak=0.0, tremor_st=0.0,
        f1_scale=1.03, f2_scale=1.05, accent_peak=0.5,
    ),
    "Fear": Cues(
        f0_shift_st=5.0, f0_range=0.6, duration=0.82, pause=0.8, loudness_db=0.0, energy_variation_db=2.5,
        jitter=0.025, shimmer=0.08, breathiness=0.2, open_quotient=0.6, tilt=0.6, creak=0.0, tremor_st=0.6,
        f1_scale=1.0, f2_scale=1.02, accent_peak=0.5,
    ),
    "Sad": Cues(
        f0_shift_st=-2.0, f0_range=0.5, duration=1.25, pause=1.6, loudness_db=-5.0, energy_variation_db=1.5,
        jitter=0.01, shimmer=0.06, breathiness=0.2, open_quotient=0.7, tilt=0.85, creak=0.1, tremor_st=0.1,
        f1_scale=0.95, f2_scale=0.97, accent_peak=0.5,
    ),
    "Disgust": Cues(
        f0_shift_st=-2.0, f0_range=1.1, duration=1.2, pause=1.3, loudness_db=-2.0, energy_variation_db=1.0,
        jitter=0.015, shimmer=0.08, breathiness=0.08, open_quotient=0.55, tilt=0.65, creak=0.5,
        tremor_st=0.0, f1_scale=0.97, f2_scale=0.98, accent_peak=0.5,
    ),
}


def clip_cues(emotion: str, speaker: Speaker, rng: np.random.Generator) -> Cues:
    """The emotion's cues at this clip's intensity, moved from neutral, each with its own wobble."""
    neutral, target = EMOTION_CUES["Neutral"], EMOTION_CUES[emotion]
    intensity = rng.uniform(0.6, 1.2) * speaker.expressiveness
    values = {}
    for name in Cues.__dataclass_fields__:
        base, goal = getattr(neutral, name), getattr(target, name)
        value = base + intensity * (goal - base)
        values[name] = value * (1.0 + 0.12 * rng.standard_normal())
    return Cues(**values)


# --- synthesis ------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _band_filter(low: float, high: float, sample_rate: int) -> np.ndarray:
    nyquist = sample_rate / 2
    high = min(high, 0.95 * nyquist)
    low = min(low, 0.5 * high)
    return butter(2, [low / nyquist, high / nyquist], btype="bandpass", output="sos")


class _Keys:
    """Key points (time, value) of a control track, interpolated linearly to samples."""

    def __init__(self, start_value):
        self.times = [0.0]
        self.values = [start_value]

    def add(self, t: float, value) -> None:
        # np.interp needs increasing times; nudge coincident points forward.
        self.times.append(max(t, self.times[-1] + 1e-4))
        self.values.append(value)

    def render(self, n: int, sample_rate: int) -> np.ndarray:
        t = np.arange(n) / sample_rate
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim == 1:
            return np.interp(t, self.times, values)
        return np.stack([np.interp(t, self.times, values[:, k]) for k in range(values.shape[1])], axis=1)


def _resonator_cascade(x: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray, sample_rate: int) -> np.ndarray:
    """Klatt resonators in cascade, coefficients updated every frame with the filter state carried over."""
    hop = max(1, int(FRAME_SECONDS * sample_rate))
    centers = np.arange(0, len(x), hop)
    f = formants[centers]  # (frames, formants)
    c = -np.exp(-2 * np.pi * bandwidths / sample_rate)
    b = 2 * np.exp(-np.pi * bandwidths / sample_rate) * np.cos(2 * np.pi * f / sample_rate)
    a = 1 - b - c  # unity gain at DC
    above = f > 0.45 * sample_rate  # formants the sample rate cannot carry pass through
    a, b, c = np.where(above, 1.0, a), np.where(above, 0.0, b), np.broadcast_to(np.where(above, 0.0, c), f.shape)
    y = x
    for k in range(f.shape[1]):
        out = np.empty_like(y)
        zi = np.zeros(2)
        for i, start in enumerate(centers):
            out[start:start + hop], zi = lfilter([a[i, k]], [1.0, -b[i, k], -c[i, k]], y[start:start + hop], zi=zi)
        y = out
    return y


def _glottal_source(f0: np.ndarray, creak: np.ndarray, cues: Cues, speaker: Speaker, sample_rate: int, rng: np.random.Generator):
    """Rosenberg pulses by phase accumulation with per-period jitter/shimmer; returns (derivative, flow)."""
    phase = np.cumsum(f0 / sample_rate)
    period = np.floor(phase).astype(np.int64)
    n_periods = int(period[-1]) + 2
    jitter = cues.jitter * speaker.jitter + 0.08 * creak
    f0 = f0 * (1.0 + np.clip(jitter * rng.standard_normal(n_periods)[period], -0.3, 0.3))
    phase = np.cumsum(f0 / sample_rate)
    period = np.floor(phase).astype(np.int64)
    frac = phase - period
    oq = float(np.clip(cues.open_quotient + speaker.open_quotient, 0.3, 0.85))
    opening, closing = 0.66 * oq, 0.34 * oq
    flow = np.where(
        frac < opening,
        0.5 * (1 - np.cos(np.pi * frac / opening)),
        np.where(frac < oq, np.cos(0.5 * np.pi * (frac - opening) / closing), 0.0),
    )
    shimmer = np.exp(cues.shimmer * speaker.shimmer * rng.standard_normal(int(period[-1]) + 2))[period]
    # Vocal fry: alternate weak periods (diplophonia).
    shimmer = shimmer * (1.0 - 0.6 * creak * (period % 2))
    flow = flow * shimmer
    derivative = np.diff(flow, prepend=0.0) * (sample_rate / 200.0)
    return derivative, flow


@dataclass
class _Articulation:
    """Control tracks of one utterance, as key points in seconds."""

    voice: _Keys  # voicing amplitude
    aspiration: _Keys  # /h/ and stop aspiration through the vocal tract
    creak: _Keys  # 0..1 vocal fry
    formants: _Keys  # F1-F3 in Hz
    bursts: list[tuple[float, float, Consonant, float]]  # frication: (start s, seconds, consonant, gain)
    accents: list[tuple[float, float, float]]  # pitch accents: (centre s, width s, height st)
    seconds: float


def _articulate(sentence: Sentence, cues: Cues, speaker: Speaker, rate: float, formant_scale: np.ndarray, rng: np.random.Generator) -> _Articulation:
    """Lay the syllables out in time: voicing, noise, formant targets, pitch accents and creak."""
    first = VOWEL_FORMANTS[sentence.syllables[0].vowel]
    art = _Articulation(_Keys(0.0), _Keys(0.0), _Keys(0.0), _Keys(np.array(first) * formant_scale), [], [], 0.0)
    voice, aspiration, formant_keys = art.voice, art.aspiration, art.formants
    t = 0.02
    last = len(sentence.syllables) - 1
    for i, syl in enumerate(sentence.syllables):
        if i == sentence.phrase_break:
            pause = rng.uniform(0.08, 0.2) * max(0.5, cues.pause) * rate
            voice.add(t + 0.01, 0.0)
            t += pause
        gain = 10 ** ((cues.energy_variation_db * rng.standard_normal() + (3.0 if syl.stressed else 0.0)) / 20)
        target = np.array(VOWEL_FORMANTS[syl.vowel]) * formant_scale
        vowel_seconds = 0.13 * rate * (1.35 if syl.stressed else 1.0) * (1.4 if i == last else 1.0)
        vowel_seconds *= float(np.exp(0.1 * rng.standard_normal()))
        if syl.onset:
            cons = CONSONANTS[syl.onset]
            seconds = cons.seconds * rate ** 0.6  # consonants stretch less than vowels
            locus = np.array(cons.locus) * formant_scale if cons.kind != "aspirate" else target
            formant_keys.add(t, locus)
            if cons.kind == "stop":
                closure = 0.7 * seconds
                voice.add(t + 0.01, 0.1 if cons.voiced else 0.0)  # voice bar or silence
                voice.add(t + closure, 0.1 if cons.voiced else 0.0)
                voice.add(t + seconds, 0.0 if not cons.voiced else 0.2)
                art.bursts.append((t + closure, 0.012, cons, cons.amplitude * gain))
                if not cons.voiced:
                    aspiration.add(t + closure + 0.01, 0.0)
                    aspiration.add(t + closure + 0.015, 0.25 * gain)
                    aspiration.add(t + seconds, 0.0)
            elif cons.kind == "fricative":
                voiced_level = 0.3 if cons.voiced else 0.0
                voice.add(t + 0.02, voiced_level)
                voice.add(t + seconds - 0.01, voiced_level)
                art.bursts.append((t, seconds, cons, cons.amplitude * gain))
            elif cons.kind == "aspirate":
                voice.add(t + 0.01, 0.0)
                aspiration.add(t, 0.0)
                aspiration.add(t + 0.02, cons.amplitude * gain)
                aspiration.add(t + seconds, 0.1 * gain)
                aspiration.add(t + seconds + 0.02, 0.0)
            else:  # sonorant: voiced with its own formants
                voice.add(t + 0.02, cons.amplitude * gain)
                voice.add(t + seconds - 0.01, cons.amplitude * gain)
                formant_keys.add(t + seconds, locus)
            t += seconds
            formant_keys.add(t, 0.5 * (locus + target))
        formant_keys.add(t + min(0.04, 0.4 * vowel_seconds), target)
        formant_keys.add(t + vowel_seconds, target)
        voice.add(t + 0.02, gain)
        voice.add(t + 0.7 * vowel_seconds, 0.9 * gain)
        voice.add(t + vowel_seconds, 0.45 * gain)
        if syl.stressed:
            height = rng.uniform(2.0, 4.0) * cues.f0_range * speaker.pitch_range
            centre = t + float(np.clip(cues.accent_peak, 0.1, 0.9)) * vowel_seconds
            art.accents.append((centre, 0.6 * vowel_seconds, height))
        else:  # wide-range emotions move pitch on unstressed syllables too
            art.accents.append((t + 0.5 * vowel_seconds, 0.5 * vowel_seconds, 0.5 * (cues.f0_range - 1.0) * rng.uniform(0, 2)))
        creaky = cues.creak > 0.05 and (i == last or rng.random() < 0.5 * cues.creak)
        level = float(np.clip(cues.creak * 1.5, 0.0, 1.0)) if creaky else 0.0
        art.creak.add(t, 0.0)
        art.creak.add(t + 0.3 * vowel_seconds, level)
        art.creak.add(t + vowel_seconds, level)
        t += vowel_seconds
    art.creak.add(t + 0.02, 0.0)
    voice.add(t + 0.03, 0.0)
    art.seconds = t + 0.05
    return art


def _f0_contour(art: _Articulation, creak: np.ndarray, sentence: Sentence, cues: Cues, speaker: Speaker, rate: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """F0 in Hz per sample: declination, accents, final fall or rise, tremor, slow wander, fry."""
    times = np.arange(len(creak)) / sample_rate
    seconds = art.seconds
    contour = cues.f0_shift_st + 0.8 * rng.standard_normal()  # semitones from the speaker's base
    declination = 2.0 * max(0.3, cues.f0_range) * speaker.pitch_range
    contour = contour + declination * (0.5 - times / seconds)
    for centre, width, height in art.accents:
        contour = contour + height * np.exp(-0.5 * ((times - centre) / max(width, 1e-3)) ** 2)
    final_start = seconds - 0.35 * rate
    final = np.clip((times - final_start) / (seconds - final_start), 0.0, 1.0)
    contour = contour + (5.0 if sentence.question else -3.0) * max(0.3, cues.f0_range) * final
    if cues.tremor_st > 0:
        contour = contour + cues.tremor_st * np.sin(2 * np.pi * rng.uniform(5, 7) * times + rng.uniform(0, 2 * np.pi))
    wander = np.interp(times, np.arange(0, seconds + 0.1, 0.1), rng.standard_normal(int(seconds / 0.1) + 2))
    contour = contour + 0.3 * wander
    return np.clip(speaker.f0_hz * 2 ** (contour / 12) * (1.0 - 0.4 * creak), 45.0, 600.0)


def _record(speech: np.ndarray, speech_seconds: float, cues: Cues, speaker: Speaker, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Silence around the speech, background noise at a random SNR, a random level; int16 samples."""
    sr = sample_rate
    # Microphone/room colouring per speaker: another reason a model must generalise across speakers.
    speech = lfilter([1.0, -speaker.microphone], [1.0], speech)
    # Vocal effort shows as level against a fixed noise floor, since the output level is random.
    active = np.sqrt(np.mean(speech ** 2)) + 1e-9
    snr_db = float(np.clip(rng.uniform(10, 30) + cues.loudness_db + speaker.loudness_db, 3, 40))
    lead, trail = rng.uniform(0.1, 0.5), rng.uniform(0.1, 0.6)
    room = MAX_CLIP_SECONDS - speech_seconds
    if lead + trail > room:  # long sentences: shrink the silences, keep their ratio
        shrink = max(room, 0.0) / (lead + trail)
        lead, trail = lead * shrink, trail * shrink
    total = max(MIN_CLIP_SECONDS, min(MAX_CLIP_SECONDS, speech_seconds + lead + trail))
    clip = np.zeros(int(round(total * sr)))
    start = int(lead * sr)
    piece = speech[: len(clip) - start]
    clip[start:start + len(piece)] = piece
    floor = lfilter([1.0], [1.0, -rng.uniform(0.0, 0.97)], rng.standard_normal(len(clip)))
    floor *= active / (np.sqrt(np.mean(floor ** 2)) + 1e-9) / 10 ** (snr_db / 20)
    clip += floor

    level_db = rng.uniform(-32.0, -18.0)  # random recording level
    clip *= 10 ** (level_db / 20) / (np.sqrt(np.mean(clip ** 2)) + 1e-12)
    peak = np.max(np.abs(clip))
    if peak > 0.99:
        clip *= 0.99 / peak
    return np.round(clip * 32767).astype(np.int16)


def synthesize_clip(speaker: Speaker, sentence: Sentence, emotion: str, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """One utterance of ``sentence`` by ``speaker`` in ``emotion``, as int16 samples."""
    sr = sample_rate
    cues = clip_cues(emotion, speaker, rng)
    rate = speaker.rate * max(0.6, cues.duration) * float(np.exp(0.05 * rng.standard_normal()))
    # A long sentence spoken slowly would not fit in a clip: cap the slowing instead of cutting words off.
    rate = min(rate, (MAX_CLIP_SECONDS - 0.4) / sentence.nominal_seconds())
    scale = speaker.formant_scale * float(np.exp(0.01 * rng.standard_normal()))
    formant_scale = np.array([cues.f1_scale, cues.f2_scale, 1.0]) * scale
    breath = float(np.clip(cues.breathiness + speaker.breathiness, 0.0, 0.6))

    art = _articulate(sentence, cues, speaker, rate, formant_scale, rng)
    n = int(art.seconds * sr)
    creak = art.creak.render(n, sr)
    f0 = _f0_contour(art, creak, sentence, cues, speaker, rate, sr, rng)

    derivative, flow = _glottal_source(f0, creak, cues, speaker, sr, rng)
    tilt = float(np.clip(cues.tilt + speaker.tilt, 0.0, 0.95))
    derivative = lfilter([1 - tilt], [1, -tilt], derivative)
    derivative = derivative / (np.sqrt(np.mean(derivative ** 2)) + 1e-9)
    voice_env = art.voice.render(n, sr)
    noise = rng.standard_normal(n)
    excitation = voice_env * (derivative + 3.0 * breath * (0.4 + 0.6 * flow) * noise)
    excitation = excitation + 1.5 * art.aspiration.render(n, sr) * rng.standard_normal(n)

    formants = art.formants.render(n, sr)
    f4 = np.full((n, 1), 3500.0 * scale)
    bandwidths = np.array([60.0 + 150.0 * breath, 90.0, 150.0, 250.0])  # breathy voices damp F1
    speech = _resonator_cascade(excitation, np.concatenate([formants, f4], axis=1), bandwidths, sr)

    # Frication is set relative to the vowels (an /s/ sits ~10 dB below them), whatever the resonators' gain.
    vowel_level = np.sqrt(np.mean(speech[voice_env > 0.5 * voice_env.max()] ** 2)) + 1e-9
    for start, seconds, cons, gain in art.bursts:
        i0, length = int(start * sr), max(8, int(seconds * sr))
        if i0 >= n:
            continue
        length = min(length, n - i0)
        burst = sosfilt(_band_filter(*cons.noise_band, sr), rng.standard_normal(length))
        burst *= vowel_level / (np.sqrt(np.mean(burst ** 2)) + 1e-9)
        if cons.kind == "stop":
            envelope = np.exp(-np.arange(length) / (0.004 * sr))
        else:
            envelope = np.sin(np.pi * np.arange(length) / length) ** 0.5
        speech[i0:i0 + length] += gain * envelope * burst
    return _record(speech, art.seconds, cues, speaker, sr, rng)


# --- corpus ---------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _speaker(seed: int, index: int) -> Speaker:
    return make_speaker(seed, index)


@lru_cache(maxsize=None)
def _sentence(seed: int, index: int) -> Sentence:
    return make_sentence(seed, index)


def clip_name(speaker: int, sentence: int, emotion: str, take: int) -> str:
    """``spk03_s07_anger_t1.wav`` for 0-based speaker 2, sentence 6, take 1."""
    return f"spk{speaker + 1:02d}_s{sentence + 1:02d}_{emotion.lower()}_t{take}.wav"


def _write_clip(job: tuple) -> tuple[str, int]:
    out_dir, seed, sample_rate, speaker, sentence, emotion_index, take = job
    emotion = EMOTIONS[emotion_index]
    rng = np.random.default_rng([seed, _STREAM_CLIP, speaker, sentence, emotion_index, take])
    audio = synthesize_clip(_speaker(seed, speaker), _sentence(seed, sentence), emotion, rng, sample_rate)
    wavfile.write(Path(out_dir) / emotion / clip_name(speaker, sentence, emotion, take), sample_rate, audio)
    return emotion, len(audio)


def _check_positive(name: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"make_demo_corpus: {name}={value!r} must be a positive integer")


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
        ours = path == readme or (path.parent.parent == out_dir and path.parent.name in EMOTIONS and CLIP_NAME.match(path.name))
        if not (earlier and ours):
            raise DataError(f"{out_dir}: folder is not empty (found {path.relative_to(out_dir)}); write the demo corpus to an empty or new folder")
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
    workers: Optional[int] = None,
) -> dict:
    """Write the synthetic corpus to ``out_dir``; returns a summary.

    The summary has ``out_dir``, ``num_clips``, ``per_class`` (clips per emotion), ``speakers`` (ids),
    ``seconds`` (time taken) and ``audio_seconds`` (total audio). ``workers`` processes synthesise in
    parallel (default ``min(2, os.cpu_count())``); the output does not depend on it.
    """
    for name, value in (("num_speakers", num_speakers), ("num_sentences", num_sentences), ("takes", takes)):
        _check_positive(name, value)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"make_demo_corpus: seed={seed!r} must be a non-negative integer")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate < 8000:
        raise ConfigError(f"make_demo_corpus: sample_rate={sample_rate!r} must be an integer of at least 8000 Hz")
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    _check_positive("workers", workers)
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
    for emotion, length in results:
        per_class[emotion] += 1
        samples += length
    speakers = [_speaker(int(seed), i) for i in range(num_speakers)]
    sentences = [_sentence(int(seed), i) for i in range(num_sentences)]
    (out_dir / "README.md").write_text(_readme(int(seed), speakers, sentences, takes, int(sample_rate), per_class))
    return {
        "out_dir": str(out_dir),
        "num_clips": len(results),
        "per_class": per_class,
        "speakers": [s.name for s in speakers],
        "seconds": time.perf_counter() - started,
        "audio_seconds": samples / sample_rate,
    }
