"""The demo corpus's signal: one utterance of a sentence by a speaker in an emotion, as int16 samples.

Source-filter synthesis, numpy/scipy only. The glottal source is a Rosenberg pulse train driven by phase
accumulation over an F0 contour (declination, pitch accents on stressed syllables, final fall or rise),
with per-period jitter and shimmer, pulsed aspiration noise and a one-pole spectral tilt. It runs
through a cascade of Klatt formant resonators (``scipy.signal.lfilter``, 5 ms frames carrying the filter
state, so formant transitions between syllables are smooth). Fricatives and stop bursts are band-passed
noise. Leading/trailing silence, background noise at a random SNR and a random output level finish
the clip. All randomness comes from the ``rng`` the caller passes in.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from .demo_voices import CONSONANTS, VOWEL_FORMANTS, Consonant, Cues, Sentence, Speaker, clip_cues

MIN_CLIP_SECONDS = 1.5
MAX_CLIP_SECONDS = 4.0
FRAME_SECONDS = 0.005  # formant filter update interval


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
            out[start : start + hop], zi = lfilter([a[i, k]], [1.0, -b[i, k], -c[i, k]], y[start : start + hop], zi=zi)
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


def _articulate(
    sentence: Sentence, cues: Cues, speaker: Speaker, rate: float, formant_scale: np.ndarray, rng: np.random.Generator
) -> _Articulation:
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
            seconds = cons.seconds * rate**0.6  # consonants stretch less than vowels
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


def _f0_contour(
    art: _Articulation,
    creak: np.ndarray,
    sentence: Sentence,
    cues: Cues,
    speaker: Speaker,
    rate: float,
    sample_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
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


def _record(
    speech: np.ndarray, speech_seconds: float, cues: Cues, speaker: Speaker, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Silence around the speech, background noise at a random SNR, a random level; int16 samples."""
    sr = sample_rate
    # Microphone/room colouring per speaker: another reason a model must generalise across speakers.
    speech = lfilter([1.0, -speaker.microphone], [1.0], speech)
    # Vocal effort shows as level against a fixed noise floor, since the output level is random.
    active = np.sqrt(np.mean(speech**2)) + 1e-9
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
    clip[start : start + len(piece)] = piece
    floor = lfilter([1.0], [1.0, -rng.uniform(0.0, 0.97)], rng.standard_normal(len(clip)))
    floor *= active / (np.sqrt(np.mean(floor**2)) + 1e-9) / 10 ** (snr_db / 20)
    clip += floor

    level_db = rng.uniform(-32.0, -18.0)  # random recording level
    clip *= 10 ** (level_db / 20) / (np.sqrt(np.mean(clip**2)) + 1e-12)
    peak = np.max(np.abs(clip))
    if peak > 0.99:
        clip *= 0.99 / peak
    return np.round(clip * 32767).astype(np.int16)


def clip_delivery(speaker: Speaker, sentence: Sentence, emotion: str, rng: np.random.Generator) -> tuple[Cues, float]:
    """The clip's cues and its speaking rate (a duration multiplier, >1: slower): the first draws of its random
    stream, which the demo corpus's ratings (``demo_ratings``) read again from a generator seeded the same way."""
    cues = clip_cues(emotion, speaker, rng)
    rate = speaker.rate * max(0.6, cues.duration) * float(np.exp(0.05 * rng.standard_normal()))
    # A long sentence spoken slowly would not fit in a clip: cap the slowing instead of cutting words off.
    return cues, min(rate, (MAX_CLIP_SECONDS - 0.4) / sentence.nominal_seconds())


def synthesize_clip(speaker: Speaker, sentence: Sentence, emotion: str, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """One utterance of ``sentence`` by ``speaker`` in ``emotion``, as int16 samples."""
    sr = sample_rate
    cues, rate = clip_delivery(speaker, sentence, emotion, rng)
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
    derivative = derivative / (np.sqrt(np.mean(derivative**2)) + 1e-9)
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
        burst *= vowel_level / (np.sqrt(np.mean(burst**2)) + 1e-9)
        if cons.kind == "stop":
            envelope = np.exp(-np.arange(length) / (0.004 * sr))
        else:
            envelope = np.sin(np.pi * np.arange(length) / length) ** 0.5
        speech[i0 : i0 + length] += gain * envelope * burst
    return _record(speech, art.seconds, cues, speaker, sr, rng)
