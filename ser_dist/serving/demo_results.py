"""What ``ser-dist demo`` shows for one clip, without gradio: the page header, the duration check, the prediction
(``EmotionClassifier.predict``, the same call ``ser-dist predict`` makes), its timeline figure and segment table.

``ser_dist.serving.demo`` lays these out on the page; everything here is plain Python, so it is tested directly.
A clip is refused before it is decoded when its header says it is longer than ``max_seconds`` (soundfile's
header, else FFmpeg's metadata through torchcodec); a file neither can read goes to ``predict``, whose reason
("truncated/corrupt: ...", "not an audio file ...") is what the page shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .inference import EmotionClassifier, Prediction

DEFAULT_MAX_SECONDS = 600.0


def header_markdown(
    classifier: EmotionClassifier,
    source: str,
    max_seconds: float,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    segment: str = "windows",
) -> str:
    """The page's header: the model's name, what it predicts, what it was trained on and scored, the limits."""
    from .model_card import corpus_description, speaker_independent

    meta = classifier.meta
    exp = meta.get("experiment") or {}
    data = exp.get("data") or {}
    name = exp.get("name") or Path(str(source)).name
    lines = [f"# Speech emotion recognition: {name}", f"Model `{source}` ({meta.get('backbone', 'unknown')} backbone)."]
    if classifier.labels:
        lines.append(f"**Classes** ({len(classifier.labels)}): {', '.join(classifier.labels)}.")
    if classifier.dimensions:
        lines.append(f"**Dimensions**: {', '.join(classifier.dimensions)}.")
    trained = corpus_description(data, meta)[1]
    used = (meta.get("data") or {}).get("num_used")
    lines.append(f"**Trained on** {trained}" + (f", {used} clips" if used else "") + ".")
    test = meta.get("test_metrics") or {}
    if test.get("unweighted_accuracy") is not None:
        who = "unseen speakers" if speaker_independent(data, meta) else "held-out clips (speakers may overlap with training)"
        lines.append(
            f"**Test**: UA {100 * test['unweighted_accuracy']:.2f} %, WA {100 * test['weighted_accuracy']:.2f} % "
            f"on {test.get('num_examples', '?')} clips of {who}."
        )
    window, hop = (n / classifier.sample_rate for n in classifier._window_samples(window_seconds, hop_seconds))
    crop = " (the model's training crop)" if window_seconds is None and classifier.max_seconds else ""
    if segment == "vad":
        lines.append(
            f"Upload or record a clip of up to {max_seconds:g} s. Silero VAD finds its speech regions; each is scored on its own "
            f"(one longer than {window + hop:g} s in {window:g} s windows every {hop:g} s), shown on a timeline, and the clip's "
            "emotion is their duration-weighted mean."
        )
        return "\n\n".join(lines)
    lines.append(
        f"Upload or record a clip of up to {max_seconds:g} s. Up to {window + hop:g} s, its first {window:g} s are scored "
        f"{crop}; a longer one is scored in {window:g} s windows every {hop:g} s, shown on a timeline."
    )
    return "\n\n".join(lines)


def header_seconds(path: str | Path) -> float | None:
    """The duration a file's header declares (no audio is decoded), or None when neither decoder reads it."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
        if info.samplerate > 0:
            return info.frames / info.samplerate
    except Exception:  # not a libsndfile format: FFmpeg's metadata below
        pass
    try:
        from torchcodec.decoders import AudioDecoder

        seconds = AudioDecoder(str(path)).metadata.duration_seconds
    except Exception:  # unreadable: predict() says why
        return None
    return float(seconds) if seconds and math.isfinite(seconds) else None


def too_long(name: str, seconds: float, max_seconds: float) -> str:
    return (
        f"`{name}` is {seconds:.1f} s long; this demo takes clips up to {max_seconds:g} s (ser-dist demo --max-seconds). "
        "For a longer recording use `ser-dist predict MODEL FILE`."
    )


@dataclass
class ClipResult:
    status: str  # one Markdown line: what was predicted, or why nothing was
    prediction: Prediction | None = None

    @property
    def segments(self) -> list[dict]:
        """The timeline's rows: the prediction's segments when it has them (VAD), else its windows; [] for one clip."""
        if self.prediction is None:
            return []
        return list(self.prediction.segments or self.prediction.windows or [])

    def as_json(self) -> dict | None:
        """``ser-dist predict --json``'s object for the clip, named by its file name."""
        if self.prediction is None:
            return None
        return {**self.prediction.to_dict(), "file": Path(self.prediction.file).name}


def analyse_clip(classifier: EmotionClassifier, path: str | Path | None, max_seconds: float, **predict_options) -> ClipResult:
    """The prediction for one uploaded or recorded file, or the reason there is none (never an exception for bad
    input: a file too long, unreadable, too short or silent, or a model error is the result's ``status``)."""
    if path is None:
        return ClipResult("Upload or record a clip.")
    name = Path(path).name
    seconds = header_seconds(path)
    if seconds is not None and seconds > max_seconds:
        return ClipResult(too_long(name, seconds, max_seconds))
    from ..data.audio import decoded_or_reason, load_audio

    waveform = decoded_or_reason(load_audio, str(path), classifier.sample_rate)  # predict's decoding, and its reasons
    if not isinstance(waveform, str) and len(waveform) > max_seconds * classifier.sample_rate:  # a header that said less
        return ClipResult(too_long(name, len(waveform) / classifier.sample_rate, max_seconds))  # refused before it is scored
    try:
        predictions, failures = classifier.predict_decoded([(str(path), waveform)], 1, **predict_options)
    except UserError as err:  # a bad window or option: the same line ser-dist predict prints
        return ClipResult(f"Could not predict `{name}`: {err}")
    if failures:
        return ClipResult(f"Could not use `{name}`: {failures[0][1]}.")
    return ClipResult(summary(name, predictions[0], seconds), predictions[0])


def summary(name: str, prediction: Prediction, seconds: float | None) -> str:
    """The status line of a clip predicted: its label and confidence, its length, how many windows were averaged."""
    length = f" ({seconds:.1f} s)" if seconds is not None else ""
    if prediction.label is not None:
        what = f"**{prediction.label}** ({prediction.confidence:.3f})"
    else:
        what = ", ".join(f"{key} {value:.3f}" for key, value in (prediction.dimensions or {}).items())
    windows = prediction.windows or []
    segments = prediction.segments
    if segments:
        extra = f"; {len(segments)} segments on the timeline"
    elif windows:
        extra = f"; the mean of {len(windows)} windows of {windows[0]['end'] - windows[0]['start']:g} s, on the timeline"
    else:
        extra = ""
    return f"`{name}`{length}: {what}{extra}."


def segment_rows(segments: Sequence[dict]) -> list[list]:
    """The segment table: start, end (s), label, confidence per segment (a model of dimensions alone: no label)."""
    return [
        [
            round(s["start"], 2),
            round(s["end"], 2),
            s.get("label", ""),
            round(s["confidence"], 4) if s.get("confidence") is not None else None,
        ]
        for s in segments
    ]


def dimension_rows(prediction: Prediction | None) -> list[list]:
    return [[name, round(value, 4)] for name, value in ((prediction.dimensions or {}) if prediction else {}).items()]


def timeline_figure(segments: Sequence[dict], labels: Sequence[str]):
    """Per-segment emotions over time: one row per class, a bar over each segment predicted as that class,
    as opaque as its confidence. ``segments``: any dicts with start, end (s), label and confidence."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: a figure of its own, drawn without a display

    names = list(labels) or sorted({s["label"] for s in segments})
    colours = matplotlib.colormaps["tab10"]
    figure = Figure(figsize=(9, 0.45 * len(names) + 1.2), layout="constrained")
    ax = figure.add_subplot()
    for s in segments:
        row = names.index(s["label"])
        alpha = 0.25 + 0.75 * float(s.get("confidence") or 0.0)
        ax.broken_barh([(s["start"], s["end"] - s["start"])], (row - 0.4, 0.8), color=colours(row % 10), alpha=min(1.0, alpha))
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.invert_yaxis()
    ax.set_xlim(0, max(s["end"] for s in segments))
    ax.set_xlabel("time (s)")
    ax.set_title("predicted emotion per segment (opacity: confidence)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return figure
