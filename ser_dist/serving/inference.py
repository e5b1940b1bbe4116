"""Prediction on recordings: ``EmotionClassifier.from_pretrained(DIR or "owner/repo")(["a.wav", "b.flac"])``.

Inputs are files, folders (searched recursively) or CSV/TSV/JSONL manifests with a ``path`` column,
or the rows of a Hugging Face dataset (``predict_dataset``; ser_dist.serving.hf_inputs reads them).
A recording is scored as the model was trained: on its first ``window_seconds`` (default: the model's
training crop ``max_seconds``). A recording longer than ``window_seconds + hop_seconds`` is split into
windows instead, each scored on its own, and its prediction is the mean of the windows' probabilities;
windows go through the model ``batch_size`` at a time, so a recording of any length fits in memory
(its decoded audio, 4 bytes a sample, is the only thing held whole: 19 MB for 5 minutes at 16 kHz).
A model trained with ``data.targets=dimensional|both`` also predicts each dimension (``Prediction.dimensions``,
on the scale it was trained on: [0, 1] with ``data.dimension_range``), and without classes no label.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError, first_line
from .export import load_exported
from .hub import resolve_model_dir
from .segments import window_spans

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl")
# Window length for models trained on whole clips (data.max_seconds=null).
DEFAULT_WINDOW_SECONDS = 30.0


def manifest_paths(path: Path) -> list[Path]:
    """The ``path`` column of a CSV/TSV/JSONL manifest (other columns are ignored), relative to the manifest."""
    from ..data.manifest import read_manifest_rows

    rows = read_manifest_rows(path)
    out = []
    for number, row in enumerate(rows, 1):
        value = row.get("path") if isinstance(row, dict) else None
        if not value:
            raise UserError(f"{path}: row {number} has no 'path'; a prediction manifest needs a 'path' column (other columns are ignored)")
        clip = Path(value)
        out.append(clip if clip.is_absolute() else path.parent / clip)
    return out


def gather_inputs(inputs: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """(files to predict, (path, reason) for each entry of a given folder that is not one): files as given,
    folders searched recursively for audio (``data.folder.scan_folder``, the walker training uses, so a
    broken or looping link, a pipe, a non-audio file, an empty or hidden folder is set aside with its reason),
    manifests read for their ``path`` column."""
    from ..data.folder import scan_folder

    files: list[Path] = []
    set_aside: list[tuple[str, str]] = []
    for item in inputs:
        if not str(item).strip():  # Path("") is the current folder: predict would search all of it
            raise UserError("an input path is empty (an unset shell variable?); pass audio files, folders or a CSV/JSONL manifest")
        path = Path(item)
        if path.is_dir():
            found = scan_folder(path)
            files.extend(found.audio)
            set_aside.extend(found.not_used())
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            files.extend(manifest_paths(path))
        else:
            files.append(path)  # a missing or unreadable file is reported by predict() with its reason
    return files, set_aside


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """The files ``gather_inputs`` finds (without the entries it sets aside)."""
    return gather_inputs(inputs)[0]


def resolve_device(device: str | None) -> torch.device:
    """``device`` (default: cuda when there is one, else cpu) as a torch device that exists here; anything
    else is one line naming --device and what this machine has."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device is None or not str(device).strip():
        return torch.device("cuda" if count else "cpu")
    have = "cpu" + (f", cuda with {count} device(s) (cuda:0 to cuda:{count - 1})" if count else "; no CUDA device")
    try:
        resolved = torch.device(str(device).strip())
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"--device {device!r} is not a device name; available here: {have}") from None
    if resolved.type == "meta":
        raise UserError(f"--device {device}: the meta device holds no data and cannot predict; available here: {have}")
    if resolved.type == "cuda":
        if not count:
            raise UserError(f"--device {device}: no CUDA device here (torch sees none); available here: {have}")
        if resolved.index is not None and resolved.index >= count:
            raise UserError(f"--device {device}: there is no CUDA device {resolved.index}; available here: {have}")
    elif resolved.type != "cpu":
        try:
            torch.zeros(1, device=resolved)
        except Exception as err:  # mps/xpu/... not built in or not present: torch's reasons vary by backend
            reason = first_line(err)
            raise UserError(f"--device {device}: not usable here ({reason}); available here: {have}") from None
    return resolved


@dataclass
class Prediction:
    file: str
    label: str | None  # None for a model of dimensions alone (data.targets=dimensional)
    confidence: float | None
    probabilities: dict[str, float]
    # Long recordings: [{"start", "end" (seconds), "label", "confidence", "probabilities"}] per window.
    windows: list[dict] | None = field(default=None)
    dimensions: dict[str, float] | None = None  # data.targets=dimensional|both: {name: predicted value}
    segments: list[dict] | None = None  # segment="vad": [{"start", "end", label..., "windows"?}] per speech region

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]

    def to_dict(self, top_k: int | None = None) -> dict:
        out = {"file": self.file}
        if self.label is not None:
            out.update(label=self.label, confidence=self.confidence, probabilities=self.probabilities)
        if top_k and self.label is not None:
            out["top_k"] = [{"label": label, "probability": p} for label, p in self.top(top_k)]
        if self.dimensions is not None:
            out["dimensions"] = self.dimensions
        if self.windows is not None:
            out["windows"] = self.windows
        if self.segments is not None:
            out["segments"] = self.segments
        return out


def _progress(show: bool, total: int | None, desc: str, unit: str):
    """A ``ser_dist.progress`` step in this process's mode when ``show``, else one that shows nothing."""
    from ..progress import Progress, progress

    return progress(total=total, desc=desc, unit=unit) if show else Progress(total, desc, unit, mode="off", seconds=0)


def _short_name(name: str) -> str:
    """A file's name without its folders for a progress line; a dataset row's record id as it is."""
    return name if name.startswith("hf://") else Path(name).name


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class EmotionClassifier:
    def __init__(self, model: torch.nn.Module, meta: dict, device: str | None = None):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.meta = meta
        self.labels: list[str] = list(meta["labels"])
        self.dimensions: list[str] = list(meta.get("dimensions") or [])  # regression outputs, after the classes
        self.sample_rate: int = int(meta["sample_rate"])
        self.max_seconds: float | None = meta.get("max_seconds")

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | None = None, revision: str | None = None, backend: str = "torch"
    ) -> EmotionClassifier:
        """``path``: a run directory, an export folder or a Hub id (``revision``: a branch, tag or commit);
        ``backend="onnx"``: an ONNX export (``ser-dist export --format onnx``) run by ONNX Runtime."""
        if backend not in ("torch", "onnx"):
            raise UserError(f"backend={backend!r}: give torch or onnx (an export of ser-dist export --format onnx)")
        device = resolve_device(device)  # a device this machine lacks fails before the model is read
        if backend == "onnx":
            from .onnx_backend import load_onnx

            return cls(*load_onnx(path, device, revision), device)
        model, meta = load_exported(resolve_model_dir(path, revision=revision))
        return cls(model, meta, device)

    @torch.no_grad()
    def predict_waveforms(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities [N, C] for 1-D float waveforms at ``self.sample_rate``, each cut to ``max_seconds``
        (then the K predicted dimensions, [N, C + K], for a model with ``self.dimensions``)."""
        if self.max_seconds:
            limit = int(self.max_seconds * self.sample_rate)
            waveforms = [w[:limit] for w in waveforms]
        return self._probabilities(waveforms)

    @torch.no_grad()
    def _probabilities(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        if any(len(w) == 0 for w in waveforms):
            raise ValueError("a waveform is empty (0 samples); give each clip at least one sample")
        if len(waveforms) > 1 and getattr(self.model, "padding_changes_output", False):
            # Group-norm encoders (wav2vec2-base, HuBERT-base) take no attention mask, so zero padding
            # would shift a clip's prediction with its batch mates: each clip goes alone, as in pipeline().
            return np.concatenate([self._probabilities([w]) for w in waveforms])
        lengths = torch.tensor([len(w) for w in waveforms], dtype=torch.long)
        batch = torch.zeros(len(waveforms), int(lengths.max()))
        for i, w in enumerate(waveforms):
            batch[i, : len(w)] = torch.as_tensor(w, dtype=torch.float32)
        output = self.model(batch.to(self.device), lengths.to(self.device))
        scores = torch.softmax(output.logits.float(), dim=-1)
        if self.dimensions:  # after the probabilities, so windows average both alike
            scores = torch.cat([scores, output.dimensions.float()], dim=-1)
        return scores.cpu().numpy()

    def _scored(self, waveforms: Sequence[np.ndarray]) -> list:
        """Per waveform, its probabilities or the reason it has none. A batch that raises is retried one
        clip at a time, so only the clip that fails loses its result."""
        try:
            probs = self._probabilities(waveforms)
        except Exception as err:  # an unforeseen model failure on one input must not take the others down
            if len(waveforms) > 1:
                return [result for w in waveforms for result in self._scored([w])]
            message = first_line(err, default="")
            return [f"model error: {type(err).__name__}: {message}"]
        return [p if np.isfinite(p).all() else "model output is not finite (NaN/Inf probabilities)" for p in probs]

    def _min_samples(self) -> int:
        """The shortest recording predicted: the training minimum (data.min_seconds) of the model."""
        from ..data.dataset import DEFAULT_MIN_SECONDS

        data = (self.meta.get("experiment") or {}).get("data") or {}
        seconds = data.get("min_seconds", DEFAULT_MIN_SECONDS)
        return max(1, int(round(float(seconds if seconds is not None else DEFAULT_MIN_SECONDS) * self.sample_rate)))

    def _min_window_samples(self) -> int:
        """The shortest window or hop: the training minimum, and at least the model's receptive field."""
        return max(self._min_samples(), int(getattr(self.model, "min_input_samples", 1) or 1))

    def _window_samples(self, window_seconds: float | None, hop_seconds: float | None) -> tuple[int, int]:
        """(window, hop) in samples. A window or hop given shorter than the model's minimum input is refused
        before any audio is read: one-sample windows would score a recording's every sample on its own."""
        for option, value in (("--window-seconds", window_seconds), ("--hop-seconds", hop_seconds)):
            if value is not None and not (_is_number(value) and math.isfinite(value) and value > 0):  # NaN fails every comparison
                raise UserError(f"{option} {value}: give a finite number of seconds > 0")
        window = window_seconds if window_seconds is not None else (self.max_seconds or DEFAULT_WINDOW_SECONDS)
        hop = hop_seconds if hop_seconds is not None else window
        minimum = self._min_window_samples()
        for option, value in (("--window-seconds", window_seconds), ("--hop-seconds", hop_seconds)):
            if value is not None and round(value * self.sample_rate) < minimum:
                raise UserError(
                    f"{option} {value:g}: shorter than the model's minimum input, {minimum / self.sample_rate:g} s "
                    f"({minimum} samples at {self.sample_rate} Hz: its data.min_seconds and its front end's receptive field); "
                    f"give {option} {minimum / self.sample_rate:g} or more"
                )
        return max(1, int(round(window * self.sample_rate))), max(1, int(round(hop * self.sample_rate)))

    def _as_prediction(self, scores: np.ndarray) -> dict:
        """``Prediction``'s fields (label, confidence, probabilities, dimensions) of one ``_probabilities`` row."""
        probs, values = scores[: len(self.labels)], scores[len(self.labels) :]
        best = int(probs.argmax()) if len(probs) else None
        return {
            "label": self.labels[best] if best is not None else None,
            "confidence": float(probs[best]) if best is not None else None,
            "probabilities": {label: float(v) for label, v in zip(self.labels, probs)},
            "dimensions": {name: float(v) for name, v in zip(self.dimensions, values)} if self.dimensions else None,
        }

    def predict(
        self,
        files: Iterable[str | Path],
        batch_size: int = 8,
        *,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        progress: bool = False,
        segment: str = "windows",
        vad=None,
    ) -> tuple[list[Prediction], list[tuple[str, str]]]:
        """Predictions for the usable files, and (file, reason) for the others, each in input order.

        A file fails on its own, with its reason: unreadable, shorter than the model's training minimum
        (``data.min_seconds``, default 0.1 s), silent, a model error on it, or a non-finite model output.
        ``segment="vad"``: each speech region is predicted on its own (``vad``: ``serving.segments.VadOptions``).
        """
        from ..data.audio import decoded_or_reason, load_audio

        files = [str(f) for f in files]
        # read one at a time, as the batches need them; a file that fails is its reason
        decoded = ((file, decoded_or_reason(load_audio, file, self.sample_rate)) for file in files)
        options = dict(window_seconds=window_seconds, hop_seconds=hop_seconds, progress=progress, segment=segment, vad=vad)
        return self.predict_decoded(decoded, len(files), batch_size, **options)

    def predict_dataset(
        self, dataset: str | Path, split: str | None = None, batch_size: int = 8, *, columns: Mapping[str, str] | None = None, **options
    ) -> tuple[list[Prediction], list[tuple[str, str]]]:
        """``predict`` for every row of a Hugging Face dataset (any form ``data.hf_dataset`` takes), or of its
        split ``split``, each named by its record id ``hf://<name>/<split>/<row>``. ``columns``: the other dataset
        keys, e.g. {"audio_column": "speech", "hf_config": "en"} (``serving.hf_inputs.DATASET_KEYS``);
        ``options``: ``predict``'s (``window_seconds``, ``hop_seconds``, ``progress``)."""
        from .hf_inputs import dataset_rows

        self._window_samples(options.get("window_seconds"), options.get("hop_seconds"))  # a bad window fails before the dataset opens
        rows, count = dataset_rows({"hf_dataset": str(dataset), **(columns or {})}, split, self.sample_rate)
        return self.predict_decoded(rows, count, batch_size, **options)

    def predict_decoded(
        self,
        decoded: Iterable[tuple[str, np.ndarray | str]],
        total: int | None = None,
        batch_size: int = 8,
        *,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        progress: bool = False,
        segment: str = "windows",
        vad=None,
    ) -> tuple[list[Prediction], list[tuple[str, str]]]:
        """``predict`` on (name, waveform at ``self.sample_rate``, or the reason it could not be decoded) pairs,
        taken one at a time: a long one is windowed, a short or silent one fails with its reason. ``progress``:
        show it (``ser_dist.progress``, on stderr) when the ``total`` inputs are more than one batch, and for a
        recording whose windows are more than one batch, its windows as they are scored."""
        from ..data.dataset import INT16_SCALE, too_short_reason
        from .segments import make_segmenter

        window, hop = self._window_samples(window_seconds, hop_seconds)  # before any audio is read
        segmenter = make_segmenter(segment, vad, self.sample_rate, lambda n: window_spans(n, window, hop), self._min_window_samples())
        min_samples = self._min_samples()
        names: list[str] = []
        failures: dict[int, str] = {}  # input number -> reason
        window_probs: dict[int, list[np.ndarray]] = {}
        spans_of: dict[int, list[tuple[int, int]]] = {}
        pending: list[tuple[int, np.ndarray]] = []  # (input number, window samples)

        def flush():
            if pending:
                for (number, _), result in zip(pending, self._scored([w for _, w in pending])):
                    if isinstance(result, str):
                        failures.setdefault(number, result)
                    else:
                        window_probs[number].append(result)
                pending.clear()

        def unusable(waveform: np.ndarray) -> str | None:
            if len(waveform) < min_samples:
                return too_short_reason(len(waveform), self.sample_rate, min_samples, "the model was trained on longer clips")
            if np.rint(waveform.min() * INT16_SCALE) == np.rint(waveform.max() * INT16_SCALE):
                return "silent: every sample is the same value at 16-bit precision"
            return None

        def queue_windows(number: int, name: str, waveform: np.ndarray) -> None:
            spans = spans_of[number]
            long = progress and len(spans) > batch_size
            with _progress(long, len(spans), f"windows of {_short_name(name)}", "window") as windows:
                for start, end in spans:
                    pending.append((number, waveform[start:end]))  # views: no copy until the batch is built
                    if len(pending) >= batch_size:
                        scored = sum(n == number for n, _ in pending)
                        flush()
                        windows.update(scored)
                if long:  # its last windows now, so that its progress ends before the next file's starts
                    scored = sum(n == number for n, _ in pending)
                    flush()
                    windows.update(scored)

        with _progress(progress and (total is None or total > batch_size), total, "predict", "file") as files:
            for number, (name, waveform) in enumerate(decoded):
                names.append(name)
                reason = waveform if isinstance(waveform, str) else unusable(waveform)
                spans = None if reason else segmenter.windows(number, waveform) if segmenter else window_spans(len(waveform), window, hop)
                reason = reason or (None if spans else segmenter.why_none(number))  # segment="vad": no speech, or a VAD error
                if reason is None:
                    spans_of[number] = spans
                    window_probs[number] = []
                    queue_windows(number, name, waveform)
                else:
                    failures[number] = reason
                files.update(1)
            flush()

        predictions = []
        for number, probs in window_probs.items():
            if number in failures:
                continue
            if segmenter is not None:  # segment="vad": its speech segments and their duration-weighted mean
                predictions.append(Prediction(names[number], **segmenter.fields(number, probs, self._as_prediction)))
                continue
            windows = None
            if len(probs) > 1:
                windows = []
                for (start, end), p in zip(spans_of[number], probs):
                    fields = {key: value for key, value in self._as_prediction(p).items() if value is not None}
                    windows.append({"start": start / self.sample_rate, "end": end / self.sample_rate, **fields})
            predictions.append(Prediction(names[number], **self._as_prediction(np.mean(probs, axis=0)), windows=windows))
        return predictions, [(names[number], failures[number]) for number in sorted(failures)]

    def __call__(self, files: str | Path | Iterable[str | Path], batch_size: int = 8, **options) -> list[dict]:
        """One dict per readable file (``file, label, confidence, probabilities``, plus ``windows`` for long
        recordings). Files, folders and manifests are accepted; unreadable files are left out with a warning."""
        if isinstance(files, (str, Path)):
            files = [files]
        found, set_aside = gather_inputs(files)
        predictions, failed = self.predict(found, batch_size, **options)
        failed = set_aside + failed
        if failed:
            shown = "; ".join(f"{f}: {reason}" for f, reason in failed[:5])
            warnings.warn(f"{len(failed)} input(s) could not be read or are not audio, and were skipped: {shown}", stacklevel=2)
        return [p.to_dict() for p in predictions]
