"""What the demo corpus says, who says it and how an emotion changes the saying (no signal here).

* A speaker is a base F0 (half "male" ~100-130 Hz, half "female" ~180-230 Hz), a vocal-tract length
  that scales every formant, a voice quality (jitter, shimmer, breathiness, open quotient, spectral
  tilt), a habitual speaking rate and pitch range, and a microphone colouring.
* A sentence is a fixed sequence of syllables (onset consonant + vowel), so the same "text" is spoken
  by every speaker in every emotion. Vowel formant targets come from Peterson & Barney (1952).
* An emotion moves the cues the literature reports (pitch level and range, rate, loudness, voice
  quality), scaled by a per-clip intensity and a per-speaker expressiveness, with per-cue jitter, so
  classes overlap the way acted corpora do.

Speakers and sentences are drawn from ``(seed, index)`` alone and cached: every clip of a worker
process reuses them. :mod:`ser_dist.data.demo_synthesis` turns them into audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

EMOTIONS: tuple[str, ...] = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad")

# Independent random streams, so adding a cue to one never shifts another.
STREAM_SPEAKER, STREAM_SENTENCE, STREAM_CLIP = 1, 2, 3


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
    noise_band: tuple[float, float] | None = None  # frication / burst band in Hz
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
    phrase_break: int | None  # a pause before this syllable index

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


@cache
def make_sentence(seed: int, index: int) -> Sentence:
    rng = np.random.default_rng([seed, STREAM_SENTENCE, index])
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


@cache
def make_speaker(seed: int, index: int) -> Speaker:
    rng = np.random.default_rng([seed, STREAM_SPEAKER, index])
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
# A table: one emotion's cues together, the way the formatter would not lay them out.
# fmt: off
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
# fmt: on


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
