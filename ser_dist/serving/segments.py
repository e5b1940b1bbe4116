"""Speech segments of long recordings (``ser-dist predict --segment vad``): Silero VAD's speech regions, each predicted.

``speech_regions`` runs Silero VAD (the ``silero-vad`` package, ``pip install 'ser-dist[vad]'``; it ships its weights, so
it works offline) on a waveform: its model, loaded once per process, scores 32 ms frames at 16 kHz (a model of another
rate is resampled for the VAD alone; the regions are mapped back to the model's samples). With onnxruntime installed
(``ser-dist[onnx]``) that is Silero's ONNX "sequence" model, a block of 512 frames a call, else its TorchScript model, a
frame a call, on one thread (a frame's work is too small to share): 0.4 s and 1.8 s for 5 minutes of audio here
(docs/benchmarks.md), the same regions (Silero computes the same per-frame probabilities; tests/test_vad.py compares the
regions). ``plan_regions``
says what of each region the classifier scores: a region longer than window + hop is windowed as a whole recording is;
one shorter than the model's minimum input is scored on that minimum, centred on it and taken from the audio around it
(``extended_to`` in its segment: never dropped). ``segment_fields`` turns the regions' window scores into the segments
(start, end, label, confidence, probabilities, dimensions, windows) and the recording's aggregate: the mean of the
regions' probabilities (and dimensions) weighted by each region's duration. A recording without speech has no
prediction: its reason is ``no_speech_reason``.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import UserError, first_line

SEGMENT_MODES = ("windows", "vad")
VAD_RATE = 16000  # what Silero VAD runs at here (its sequence model's only rate): audio at another rate is resampled
ENGINES = ("auto", "onnx", "torchscript")  # auto: onnx when onnxruntime is installed
MISSING = "ser-dist predict --segment vad needs silero-vad: pip install 'ser-dist[vad]'"


def window_spans(num_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """[start, end) sample spans: one window for a recording up to ``window + hop`` samples (its first
    ``window``), else windows every ``hop`` with the last one aligned to the end, all ``window`` long."""
    if num_samples <= window + hop:
        return [(0, min(num_samples, window))]
    spans = [(start, start + window) for start in range(0, num_samples - window + 1, hop)]
    if spans[-1][1] < num_samples:
        spans.append((num_samples - window, num_samples))
    return spans


@dataclass(frozen=True)
class VadOptions:
    """Silero VAD's settings (``get_speech_timestamps``): a frame is speech from ``threshold`` (speech probability);
    a region shorter than ``min_speech_seconds`` is dropped; a pause ends a region once it lasts ``min_silence_seconds``.
    The package's own defaults; each region is padded by its 30 ms (``speech_pad_ms``) on both sides."""

    threshold: float = 0.5
    min_speech_seconds: float = 0.25
    min_silence_seconds: float = 0.1

    def __post_init__(self):
        checks = (
            ("--vad-threshold", self.threshold, 0 < self.threshold < 1, "a speech probability between 0 and 1 (exclusive)"),
            ("--min-speech-seconds", self.min_speech_seconds, self.min_speech_seconds >= 0, "a number of seconds >= 0"),
            ("--min-silence-seconds", self.min_silence_seconds, self.min_silence_seconds >= 0, "a number of seconds >= 0"),
        )
        for option, value, fine, want in checks:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and fine):
                raise UserError(f"{option} {f'{value:g}' if number else repr(value)}: give {want}")

    def describe(self) -> str:
        return f"threshold {self.threshold:g}, min speech {self.min_speech_seconds:g} s, min silence {self.min_silence_seconds:g} s"


def no_speech_reason(options: VadOptions) -> str:
    return f"no speech found by the VAD ({options.describe()}; a lower --vad-threshold finds quieter speech)"


def check_segment(segment: str) -> None:
    if segment not in SEGMENT_MODES:
        raise UserError(f"--segment {segment!r}: give one of {', '.join(SEGMENT_MODES)}")


def _import_silero():
    """The silero_vad package (one line naming the extra when it is missing), torch's thread count kept as it was."""
    import torch

    threads = torch.get_num_threads()
    try:
        import silero_vad
    except ImportError:
        raise UserError(MISSING) from None
    finally:
        torch.set_num_threads(threads)  # importing silero_vad sets torch to one thread for the whole process
    return silero_vad


def resolve_engine(engine: str = "auto") -> str:
    """``onnx`` (Silero's sequence model through onnxruntime) or ``torchscript``; ``auto``: onnx when it can run here."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: give one of {', '.join(ENGINES)}")
    silero = _import_silero()
    if engine != "auto":
        return engine
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torchscript"
    return "onnx" if hasattr(silero, "get_speech_timestamps_sequence") else "torchscript"  # silero-vad >= 6.2


@functools.lru_cache(maxsize=2)
def vad_model(engine: str = "auto"):
    """(engine, Silero VAD's model), loaded once per process and engine; a missing package is one line naming the extra."""
    engine = resolve_engine(engine)
    silero = _import_silero()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's and importlib.resources.path's deprecation
        warnings.simplefilter("ignore", DeprecationWarning)  # notices, which silero_vad meets, not the user's concern
        return engine, silero.load_silero_vad(sequence=engine == "onnx")


def speech_regions(waveform: np.ndarray, sample_rate: int, options: VadOptions, engine: str = "auto") -> list[tuple[int, int]]:
    """[start, end) sample spans (at ``sample_rate``) of the speech Silero VAD finds in a 1-D float waveform."""
    import torch

    from ..data.audio import resample

    engine, model = vad_model(engine)
    silero = _import_silero()
    audio = np.ascontiguousarray(waveform if sample_rate == VAD_RATE else resample(waveform, sample_rate, VAD_RATE), dtype=np.float32)
    settings = dict(
        threshold=options.threshold,
        sampling_rate=VAD_RATE,
        min_speech_duration_ms=int(round(options.min_speech_seconds * 1000)),
        min_silence_duration_ms=int(round(options.min_silence_seconds * 1000)),
    )
    if engine == "onnx":
        found = silero.get_speech_timestamps_sequence(audio, model, **settings)
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a frame (32 ms) a call: more threads only add overhead (several times slower on two here)
        try:
            found = silero.get_speech_timestamps(torch.from_numpy(audio), model, **settings)
        finally:
            torch.set_num_threads(threads)
    scale = sample_rate / VAD_RATE
    spans = [(min(len(waveform), round(r["start"] * scale)), min(len(waveform), round(r["end"] * scale))) for r in found]
    return [(start, end) for start, end in spans if end > start]


@dataclass
class Region:
    start: int  # the VAD's region, in samples
    end: int
    scored: tuple[int, int]  # the audio the classifier scores: the region, or the model's minimum around it
    windows: list[tuple[int, int]]  # the spans scored, in the recording's samples


def plan_regions(
    regions: Sequence[tuple[int, int]], num_samples: int, spans: Callable[[int], list[tuple[int, int]]], minimum: int
) -> list[Region]:
    """What is scored of each region: ``spans(length)`` (the classifier's ``window_spans``) of the region, or of the
    ``minimum`` samples centred on a shorter region (within the recording)."""
    plan = []
    for start, end in regions:
        lo, hi = start, end
        if end - start < minimum:
            lo = max(0, min(start - (minimum - (end - start)) // 2, num_samples - minimum))
            hi = min(num_samples, lo + minimum)
        plan.append(Region(start, end, (lo, hi), [(lo + a, lo + b) for a, b in spans(hi - lo)]))
    return plan


def segment_fields(
    plan: Sequence[Region], window_scores: Sequence[np.ndarray], sample_rate: int, as_prediction: Callable[[np.ndarray], dict]
) -> tuple[np.ndarray, list[dict]]:
    """(the recording's scores: the regions' duration-weighted mean, the segments), from each window's scores in order.
    ``as_prediction``: one score row -> label, confidence, probabilities, dimensions (None fields are left out)."""

    def fields(scores: np.ndarray, start: int, end: int) -> dict:
        return {"start": start / sample_rate, "end": end / sample_rate, **{k: v for k, v in as_prediction(scores).items() if v is not None}}

    segments, means, offset = [], [], 0
    for region in plan:
        scores = window_scores[offset : offset + len(region.windows)]
        offset += len(region.windows)
        means.append(np.mean(scores, axis=0))
        segment = fields(means[-1], region.start, region.end)
        if region.scored != (region.start, region.end):
            segment["extended_to"] = [region.scored[0] / sample_rate, region.scored[1] / sample_rate]
        if len(region.windows) > 1:
            segment["windows"] = [fields(s, a, b) for s, (a, b) in zip(scores, region.windows)]
        segments.append(segment)
    weights = np.array([region.end - region.start for region in plan], dtype=np.float64)
    return np.average(np.stack(means), axis=0, weights=weights), segments


class Segmenter:
    """``segment="vad"`` for one ``predict`` call: each recording's regions and the spans to score of them (``windows``),
    then, once they are scored, its prediction's fields (``fields``). ``spans(length)``: the classifier's windows of a
    region that long; ``minimum``: the model's shortest input, in samples. The VAD model is loaded (or its missing
    package reported) here, before any audio is read."""

    def __init__(self, options: VadOptions, sample_rate: int, spans: Callable[[int], list[tuple[int, int]]], minimum: int):
        vad_model()
        self.options, self.sample_rate, self.spans, self.minimum = options, sample_rate, spans, minimum
        self.no_speech = no_speech_reason(options)
        self.plans: dict[object, list[Region]] = {}  # a recording's key (predict's input number) -> its regions
        self.errors: dict[object, str] = {}  # a recording's key -> the VAD's error on it

    def windows(self, key, waveform: np.ndarray) -> list[tuple[int, int]]:
        """The spans to score of ``waveform``'s speech regions, in order ([] when it has none, or when the VAD failed
        on it: ``why_none`` then says which)."""
        try:
            regions = speech_regions(waveform, self.sample_rate, self.options)
        except Exception as err:  # the VAD failing on one recording must not take the others down
            self.errors[key] = f"VAD error: {type(err).__name__}: {first_line(err, default='')}"
            return []
        self.plans[key] = plan_regions(regions, len(waveform), self.spans, self.minimum)
        return [span for region in self.plans[key] for span in region.windows]

    def why_none(self, key) -> str:
        """Why the recording ``key`` has no spans: the VAD's error on it, or no speech found."""
        self.plans.pop(key, None)
        return self.errors.pop(key, self.no_speech)

    def fields(self, key, window_scores: Sequence[np.ndarray], as_prediction: Callable[[np.ndarray], dict]) -> dict:
        """``Prediction``'s fields of the recording ``key`` from its windows' scores: the aggregate's and ``segments``."""
        scores, segments = segment_fields(self.plans.pop(key), window_scores, self.sample_rate, as_prediction)
        return {**as_prediction(scores), "segments": segments}


def make_segmenter(segment: str, vad: VadOptions | None, sample_rate: int, spans, minimum: int) -> Segmenter | None:
    """None for ``segment="windows"`` (a recording is windowed as a whole), a ``Segmenter`` for ``"vad"``."""
    check_segment(segment)
    if vad is not None and segment != "vad":
        raise UserError(f"VAD options ({vad}) apply to segment='vad', not {segment!r}")
    if vad is not None and not isinstance(vad, VadOptions):
        raise UserError(f"vad={vad!r}: give ser_dist.serving.segments.VadOptions(threshold=..., min_speech_seconds=..., ...)")
    return Segmenter(vad or VadOptions(), sample_rate, spans, minimum) if segment == "vad" else None


def predict_options(args) -> dict:
    """``ser-dist predict``'s ``--segment`` and VAD options as ``EmotionClassifier.predict`` keywords; the VAD options
    without ``--segment vad`` are refused, and a missing silero-vad fails here, before the model or any audio is read."""
    fields = {"--vad-threshold": "threshold", "--min-speech-seconds": "min_speech_seconds", "--min-silence-seconds": "min_silence_seconds"}
    given = {option: getattr(args, option[2:].replace("-", "_")) for option in fields}
    given = {option: value for option, value in given.items() if value is not None}
    check_segment(args.segment)
    if args.segment != "vad":
        if given:
            raise UserError(f"{', '.join(given)}: VAD settings, used with --segment vad only; add --segment vad or leave them out")
        return {}
    vad = VadOptions(**{fields[option]: value for option, value in given.items()})
    vad_model()
    return {"segment": "vad", "vad": vad}
