"""Long recordings: ``ser-dist predict --segment vad`` (Silero VAD's speech segments) against fixed windows.

    python benchmarks/vad_segments.py RUN_DIR [--corpus DEMO_DIR] [--seconds 300] [--repeats 3] [--out results.json]

Builds two recordings of ``--seconds`` from a demo corpus's clips (sorted by path; default: the test suite's 72-clip
corpus, ``make_demo_corpus(num_speakers=4, num_sentences=3, seed=1)``, written to a temporary folder): ``back_to_back``,
the clips concatenated with nothing between them, repeated as needed (the test suite's ``five_minute_recording``), and
``with_pauses``, the clips
separated by pauses of 0.5-3 s of low-level noise (white, about -54 dBFS). Each is predicted by RUN_DIR's model with
fixed windows (the model's training crop, no overlap) and with ``segment="vad"`` (each region windowed the same way),
``--repeats`` times (the median wall time is reported; the first call, which loads the VAD, is a warm-up). Reported:
windows vs segments (and the windows scored inside them), wall times, the VAD's own time (and that of Silero's ONNX
sequence model and of its TorchScript model, when the first, onnxruntime's, is the one used), the agreement of the two (the fraction of the
segments' time whose segment label is the label of the fixed window covering it, at 10 ms; whether the files'
aggregate labels agree), the fraction of the segments' time whose label (window's, segment's) is the emotion of the
clip there, and for ``with_pauses``, how the segments match the clips (the fraction of the clips' time inside segments,
and of the segments' time inside clips).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
FRAME = 0.01  # seconds: the resolution of the agreement and overlap measures


def recordings(corpus: Path, seconds: float, folder: Path) -> dict[str, tuple[Path, list[tuple[float, float]]]]:
    """{name: (FLAC file, each clip's {start, end (seconds), label (its folder)})} for the two recordings."""
    paths = sorted(corpus.rglob("*.wav"))
    clips = [sf.read(str(p), dtype="float32")[0] for p in paths]
    total = int(seconds * RATE)
    rng = np.random.default_rng(0)
    out = {}
    for name in ("back_to_back", "with_pauses"):
        parts, spans, at, k = [], [], 0, 0
        while at < total:
            if name == "with_pauses":
                parts.append((rng.standard_normal(int(rng.uniform(0.5, 3.0) * RATE)) * 0.002).astype(np.float32))
                at += len(parts[-1])
            clip = clips[k % len(clips)]
            parts.append(clip)
            spans.append({"start": at / RATE, "end": min(at + len(clip), total) / RATE, "label": paths[k % len(clips)].parent.name})
            at, k = at + len(clip), k + 1
        path = folder / f"{name}.flac"
        sf.write(str(path), np.concatenate(parts)[:total], RATE, subtype="PCM_16")
        out[name] = (path, [span for span in spans if span["start"] < seconds])
    return out


def timed(call, repeats: int):
    """(the last result, the median seconds of ``repeats`` calls)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return result, statistics.median(times)


def frames(spans, seconds: float) -> np.ndarray:
    """A boolean mask over the recording's 10 ms frames: inside one of ``spans``."""
    mask = np.zeros(int(round(seconds / FRAME)), dtype=bool)
    for start, end in spans:
        mask[int(round(start / FRAME)) : int(round(end / FRAME))] = True
    return mask


def label_track(rows, seconds: float) -> np.ndarray:
    """Each 10 ms frame's label from ``rows`` ({start, end, label}), the earliest row covering it; '' where none."""
    track = np.full(int(round(seconds / FRAME)), "", dtype=object)
    for row in reversed(rows):  # the earliest row written last: it wins where the end-aligned last window overlaps
        track[int(round(row["start"] / FRAME)) : int(round(row["end"] / FRAME))] = row["label"]
    return track


def measure(classifier, path: Path, clips, repeats: int) -> dict:
    from ser_dist.serving.segments import VadOptions, resolve_engine, speech_regions

    waveform = sf.read(str(path), dtype="float32")[0]
    seconds = len(waveform) / RATE
    (fixed,), fixed_time = timed(lambda: classifier.predict([path])[0], repeats)
    (vad,), vad_time = timed(lambda: classifier.predict([path], segment="vad")[0], repeats)
    vad_alone = {}  # engine -> (its regions, median seconds)
    for engine in dict.fromkeys([resolve_engine(), "torchscript"]):
        vad_alone[engine] = timed(lambda engine=engine: speech_regions(waveform, RATE, VadOptions(), engine=engine), repeats)
    segments = vad.segments
    speech = frames([(s["start"], s["end"]) for s in segments], seconds)
    same = label_track(segments, seconds) == label_track(fixed.windows, seconds)
    result = {
        "file": path.name,
        "seconds": seconds,
        "windows": len(fixed.windows),
        "segments": len(segments),
        "segment_windows": sum(len(s.get("windows", [])) or 1 for s in segments),
        "extended_segments": sum("extended_to" in s for s in segments),
        "speech_seconds": float(speech.sum() * FRAME),
        "windows_seconds": fixed_time,
        "vad_seconds": vad_time,
        "vad_engine": resolve_engine(),
        "vad_alone_seconds": {engine: seconds for engine, (_, seconds) in vad_alone.items()},
        "engines_same_regions": len({str(regions) for regions, _ in vad_alone.values()}) == 1,
        "label_agreement_on_speech": float(same[speech].mean()),
        "aggregate_labels": [fixed.label, vad.label],
        "aggregate_agrees": fixed.label == vad.label,
        "aggregate_probability_l1": float(sum(abs(fixed.probabilities[n] - vad.probabilities[n]) for n in classifier.labels)),
    }
    truth = label_track(clips, seconds)
    result["accuracy_on_speech"] = {  # against the clips' emotions, on the segments' time
        "windows": float((label_track(fixed.windows, seconds) == truth)[speech].mean()),
        "vad": float((label_track(segments, seconds) == truth)[speech].mean()),
    }
    inside = frames([(c["start"], c["end"]) for c in clips], seconds)
    if not inside.all():  # clips with pauses between them: how the segments match them
        result["clip_time_in_segments"] = float(speech[inside].mean())
        result["segment_time_in_clips"] = float(inside[speech].mean())
    return result


def table(results: list[dict]) -> str:
    rows = [
        ("fixed windows (2 s) / speech segments", lambda r: f"{r['windows']} / {r['segments']} ({r['segment_windows']} windows scored)"),
        ("speech time found by the VAD", lambda r: f"{r['speech_seconds']:.1f} of {r['seconds']:.0f} s"),
        ("wall time: fixed windows", lambda r: f"{r['windows_seconds']:.2f} s"),
        ("wall time: --segment vad (VAD alone)", lambda r: f"{r['vad_seconds']:.2f} s ({r['vad_alone_seconds'][r['vad_engine']]:.2f} s)"),
        ("speech time where segment label = window label", lambda r: f"{100 * r['label_agreement_on_speech']:.1f} %"),
        ("whole-file label: windows / vad", lambda r: f"{r['aggregate_labels'][0]} / {r['aggregate_labels'][1]}"),
        ("L1 distance of the files' probabilities", lambda r: f"{r['aggregate_probability_l1']:.3f}"),
        ("clips' time inside segments / segments' time inside clips", lambda r: _clip_match(r)),
        (
            "speech time whose label is the clip's emotion: windows / vad",
            lambda r: f"{100 * r['accuracy_on_speech']['windows']:.1f} % / {100 * r['accuracy_on_speech']['vad']:.1f} %",
        ),
        ("VAD alone by engine (the same regions)", _engines),
    ]
    lines = ["| | " + " | ".join(r["file"].removesuffix(".flac") for r in results) + " |", "| --- |" + " --- |" * len(results)]
    lines += [f"| {name} | " + " | ".join(cell(r) for r in results) + " |" for name, cell in rows]
    return "\n".join(lines)


def _clip_match(r: dict) -> str:
    if "clip_time_in_segments" not in r:
        return "(no pauses)"
    return f"{100 * r['clip_time_in_segments']:.1f} % / {100 * r['segment_time_in_clips']:.1f} %"


def _engines(r: dict) -> str:
    times = ", ".join(f"{engine} {seconds:.2f} s" for engine, seconds in r["vad_alone_seconds"].items())
    return f"{times} ({'yes' if r['engines_same_regions'] else 'no'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a trained run (train.output_dir) or an exported model folder")
    parser.add_argument("--corpus", default=None, help="a demo corpus (ser-dist make-demo-data DIR); default: the test suite's")
    parser.add_argument("--seconds", type=float, default=300.0, help="each recording's length (default 300: 5 minutes)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each mode, after a warm-up (median reported)")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    import torch

    from ser_dist import EmotionClassifier

    classifier = EmotionClassifier.from_pretrained(args.run_dir, device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(args.corpus) if args.corpus else Path(folder) / "corpus"
        if not args.corpus:
            from ser_dist.data.demo import make_demo_corpus

            make_demo_corpus(corpus, num_speakers=4, num_sentences=3, seed=1)  # tests/conftest.py's demo_corpus
        made = recordings(corpus, args.seconds, Path(folder))
        warm = next(iter(made.values()))[0]
        classifier.predict([warm], segment="vad")  # loads the VAD model and warms both paths up
        results = [measure(classifier, path, clips, args.repeats) for path, clips in made.values()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.run_dir}, corpus {args.corpus or 'the tests'}")
    print(table(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
