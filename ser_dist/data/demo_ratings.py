"""Arousal, valence and dominance ratings of the demo corpus's clips, on a 1-5 scale, as three raters would give them.

Each clip's ratings come from what its synthesis did (``demo_synthesis.clip_delivery``: the same draws of the
clip's own random stream, so the ratings describe the audio as it was made):

* **arousal** from pitch level (semitones above the speaker's base), pitch range (the emotion's and the speaker's
  habitual excursion), speaking rate and vocal effort (loudness, heard as level against the noise floor);
* **valence** from the emotion's pleasantness at the clip's intensity, raised by smiling (F2) and lowered by a
  harsh, creaky voice;
* **dominance** from vocal effort and a tense voice (a low open quotient), lowered by a raised pitch.

A clip's "true" value is ``3 + 1.2 * z`` for its cue score ``z``; each of ``RATERS`` raters hears it with their
own noise (standard deviation ``RATER_NOISE``) and gives a whole number from 1 to 5, and the clip's rating is
their mean, as in MSP-Podcast or IEMOCAP. The rater noise comes from its own stream (``STREAM_RATING``), so the
audio is the same bytes with or without ratings. The noise and the speakers' habits keep the ratings from being
trivial; the cues they come from are in the audio, so a model can learn them (docs/benchmarks.md).
"""

from __future__ import annotations

import math

import numpy as np

from .demo_synthesis import clip_delivery
from .demo_voices import EMOTIONS, STREAM_CLIP, make_sentence, make_speaker

DIMENSIONS = ("arousal", "valence", "dominance")
SCALE = (1.0, 5.0)  # pass as data.dimension_range=[1,5]
RATERS = 3
RATER_NOISE = 0.6
STREAM_RATING = 4  # beside demo_voices' STREAM_SPEAKER, STREAM_SENTENCE, STREAM_CLIP
# How pleasant each emotion is at full intensity (the circumplex's valence axis, Russell 1980).
PLEASANTNESS = {"Anger": -0.8, "Disgust": -0.9, "Fear": -0.7, "Happy": 1.1, "Neutral": 0.0, "Sad": -0.8}


def cue_scores(seed: int, speaker_index: int, sentence_index: int, emotion_index: int, take: int) -> dict[str, float]:
    """The clip's cue score ``z`` per dimension (0: a neutral delivery), from its synthesis parameters."""
    emotion = EMOTIONS[emotion_index]
    speaker = make_speaker(seed, speaker_index)
    stream = [seed, STREAM_CLIP, speaker_index, sentence_index, emotion_index, take]
    cues, rate = clip_delivery(speaker, make_sentence(seed, sentence_index), emotion, np.random.default_rng(stream))
    intensity = np.random.default_rng(stream).uniform(0.6, 1.2) * speaker.expressiveness  # clip_cues' first draw
    effort = (cues.loudness_db + speaker.loudness_db) / 5.0
    pitch = cues.f0_shift_st / 4.0
    pitch_range = math.log(max(cues.f0_range * speaker.pitch_range, 0.1)) / math.log(1.6)
    speed = -math.log(rate / speaker.rate) / math.log(1.2)  # faster than the speaker's habit: positive
    tense = (0.55 - cues.open_quotient) / 0.15
    return {
        "arousal": 0.35 * pitch + 0.25 * pitch_range + 0.25 * speed + 0.35 * effort,
        "valence": PLEASANTNESS[emotion] * intensity + 2.0 * (cues.f2_scale - 1.0) - 0.6 * cues.creak,
        "dominance": 0.5 * effort + 0.4 * tense - 0.25 * pitch,
    }


def clip_ratings(seed: int, speaker_index: int, sentence_index: int, emotion_index: int, take: int) -> dict[str, float]:
    """The clip's ratings (1-5, the mean of ``RATERS`` whole-number ratings), in ``DIMENSIONS`` order."""
    scores = cue_scores(seed, speaker_index, sentence_index, emotion_index, take)
    rng = np.random.default_rng([seed, STREAM_RATING, speaker_index, sentence_index, emotion_index, take])
    low, high = SCALE
    ratings = {}
    for name in DIMENSIONS:
        true = 3.0 + 1.2 * scores[name]
        heard = np.clip(np.rint(true + RATER_NOISE * rng.standard_normal(RATERS)), low, high)
        ratings[name] = round(float(heard.mean()), 4)
    return ratings
