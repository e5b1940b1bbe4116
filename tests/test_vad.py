"""``ser-dist predict --segment vad`` and ``EmotionClassifier.predict(segment="vad")``: Silero VAD's speech regions of a
recording built from demo clips with pauses between them land on the clips, each region is predicted as its own audio
is, the recording's prediction is their duration-weighted mean; a recording without speech is reported; JSON / CSV /
table through the command line; a dataset's rows; a missing silero-vad is one line."""

import csv
import io
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from conftest import SPEAKER_PATTERN, assert_one_line_error, run_entry_point

pytest.importorskip("silero_vad")  # the [vad] extra, which launch/setup.sh installs

RATE = 16000
TOLERANCE = 0.4  # seconds: Silero pads a region by 30 ms and decides every 32 ms; a clip's quiet onset or ending may be missed
NOISE = 0.002  # the pauses: white noise at about -54 dBFS


def voiced(clip: np.ndarray, frame: int = 160) -> np.ndarray:
    """A demo clip without its leading and trailing silence: from its first to its last 10 ms frame over 3x the
    level of its first 50 ms (the synthesiser's lead-in: its background noise alone)."""
    rms = np.sqrt((clip[: len(clip) // frame * frame].reshape(-1, frame) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > 3 * np.median(rms[:5]))
    return clip[loud[0] * frame : (loud[-1] + 1) * frame]


def pause(rng: np.random.Generator, seconds: float) -> np.ndarray:
    return (rng.standard_normal(int(seconds * RATE)) * NOISE).astype(np.float32)


@pytest.fixture(scope="module")
def speech_recording(demo_corpus, tmp_path_factory):
    """(path, its samples as read back, the clips' [start, end) in seconds): the voiced parts of 10 demo clips (every
    7th, so every emotion) separated by 0.6-2 s pauses of low noise, 16-bit FLAC, about 30 s."""
    rng = np.random.default_rng(0)
    parts, spans, at = [], [], 0
    for path in sorted(demo_corpus.rglob("*.wav"))[::7]:
        parts.append(pause(rng, rng.uniform(0.6, 2.0)))
        at += len(parts[-1])
        parts.append(voiced(sf.read(str(path), dtype="float32")[0]))
        spans.append((at / RATE, (at + len(parts[-1])) / RATE))
        at += len(parts[-1])
    parts.append(pause(rng, 1.0))
    path = tmp_path_factory.mktemp("vad") / "speech.flac"
    sf.write(str(path), np.concatenate(parts), RATE, subtype="PCM_16")
    return path, sf.read(str(path), dtype="float32")[0], spans


@pytest.fixture(scope="module")
def noise_only(tmp_path_factory):
    path = tmp_path_factory.mktemp("vad_quiet") / "pause.wav"
    sf.write(str(path), pause(np.random.default_rng(1), 5.0), RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def classifier(deploy_run):
    from ser_dist import EmotionClassifier

    return EmotionClassifier.from_pretrained(deploy_run[0], device="cpu")


def in_process(capsys, *args) -> tuple[str, str]:
    from ser_dist.cli import main

    main(["predict", *args, "--no-progress"])
    captured = capsys.readouterr()
    return captured.out, captured.err


def vector(row: dict, labels) -> list[float]:
    return [row["probabilities"][name] for name in labels]


def assert_segments_cover(segments: list[dict], spans: list[tuple[float, float]]) -> None:
    """Each segment lies on one clip (within TOLERANCE); each clip's segments start and end within TOLERANCE of it (a
    clip with a long pause inside may be two segments)."""
    on = {k: [] for k in range(len(spans))}
    for seg in segments:
        clips = [k for k, (start, end) in enumerate(spans) if seg["start"] >= start - TOLERANCE and seg["end"] <= end + TOLERANCE]
        assert len(clips) == 1, (seg["start"], seg["end"], spans)
        on[clips[0]].append(seg)
    for k, (start, end) in enumerate(spans):
        assert on[k], f"no segment on clip {k} ({start:.2f}-{end:.2f} s)"
        assert abs(on[k][0]["start"] - start) < TOLERANCE and abs(on[k][-1]["end"] - end) < TOLERANCE, (on[k], start, end)


@pytest.mark.parametrize("window_seconds", [None, 1.0], ids=["model-window", "1s-windows"])
def test_segments_land_on_the_speech_and_each_is_its_own_audio_predicted(classifier, speech_recording, window_seconds):
    path, audio, spans = speech_recording
    (prediction,), failed = classifier.predict([path], segment="vad", window_seconds=window_seconds)
    assert not failed and prediction.windows is None
    segments = prediction.segments
    assert_segments_cover(segments, spans)
    assert all(a["end"] <= b["start"] for a, b in zip(segments, segments[1:]))

    # Each segment's prediction is that of its audio alone (windowed as a recording that long is).
    cut = [(f"segment {k}", audio[round(s["start"] * RATE) : round(s["end"] * RATE)]) for k, s in enumerate(segments)]
    direct, failed = classifier.predict_decoded(cut, window_seconds=window_seconds)
    assert not failed and len(direct) == len(segments)
    for seg, alone in zip(segments, direct):
        assert vector(seg, classifier.labels) == pytest.approx(vector(alone.to_dict(), classifier.labels), abs=1e-5)
        assert seg["label"] == alone.label and "extended_to" not in seg
        assert len(seg.get("windows", [])) == len(alone.windows or [])
        for window, own in zip(seg.get("windows", []), alone.windows or []):
            assert [window["start"], window["end"]] == pytest.approx([seg["start"] + own["start"], seg["start"] + own["end"]])
    if window_seconds == 1.0:  # a segment over window + hop (2 s) is windowed, its prediction the mean of its windows
        assert [("windows" in s) for s in segments] == [round(s["end"] * RATE) - round(s["start"] * RATE) > 2 * RATE for s in segments]
        assert any("windows" in s for s in segments)
        for seg in (s for s in segments if "windows" in s):
            mean = np.mean([vector(w, classifier.labels) for w in seg["windows"]], axis=0)
            assert vector(seg, classifier.labels) == pytest.approx(mean.tolist(), abs=1e-6)

    # The recording's prediction: the segments' probabilities weighted by their durations.
    weights = [s["end"] - s["start"] for s in segments]
    mean = np.average([vector(s, classifier.labels) for s in segments], axis=0, weights=weights)
    assert vector(prediction.to_dict(), classifier.labels) == pytest.approx(mean.tolist(), abs=1e-6)
    assert prediction.label == classifier.labels[int(mean.argmax())] and prediction.confidence == pytest.approx(mean.max())

    # The same waveform through predict_decoded: the same segments.
    (same,), _ = classifier.predict_decoded([("same", audio)], segment="vad", window_seconds=window_seconds)
    assert same.segments == segments


def test_both_engines_find_the_same_regions_and_other_rates_are_resampled_for_the_vad(speech_recording):
    from ser_dist.data.audio import resample
    from ser_dist.serving.segments import VadOptions, resolve_engine, speech_regions

    _, audio, spans = speech_recording
    torchscript = speech_regions(audio, RATE, VadOptions(), engine="torchscript")
    assert len(torchscript) >= len(spans)
    for rate in (8000, 44100):  # a model trained at another rate: its samples, resampled to 16 kHz for the VAD alone
        regions = speech_regions(resample(audio, RATE, rate), rate, VadOptions())
        assert len(regions) == len(torchscript)
        # within a few 32 ms frames: 8 kHz audio has lost the band above 4 kHz, where onsets are
        assert np.abs(np.array(regions) / rate - np.array(torchscript) / RATE).max() < 0.2, rate
    if resolve_engine() != "onnx":
        pytest.skip("onnxruntime is not installed: only Silero's TorchScript engine runs here (pip install 'ser-dist[onnx]')")
    # auto is Silero's ONNX sequence model, a block of frames a call: the same regions
    assert speech_regions(audio, RATE, VadOptions(), engine="onnx") == torchscript


def test_a_vad_error_on_one_recording_is_its_reason_and_the_others_are_predicted(classifier, speech_recording, monkeypatch):
    from ser_dist.serving import segments

    _, audio, _ = speech_recording
    real = segments.speech_regions

    def flaky(waveform, *args, **kwargs):
        if len(waveform) == 12345:
            raise RuntimeError("the VAD broke\non two lines")
        return real(waveform, *args, **kwargs)

    monkeypatch.setattr(segments, "speech_regions", flaky)
    bad = np.resize(audio, 12345)
    predictions, failed = classifier.predict_decoded([("good", audio), ("bad", bad), ("again", audio)], segment="vad")
    assert [p.file for p in predictions] == ["good", "again"] and predictions[0].segments == predictions[1].segments
    assert failed == [("bad", "VAD error: RuntimeError: the VAD broke")]


def test_a_region_shorter_than_the_model_minimum_is_scored_on_the_audio_around_it(classifier, demo_corpus, tmp_path):
    from ser_dist import EmotionClassifier
    from ser_dist.serving.prediction_output import write_predictions

    meta = json.loads(json.dumps(classifier.meta))
    meta["experiment"]["data"]["min_seconds"] = 1.0  # a model trained on clips of 1 s and more
    strict = EmotionClassifier(classifier.model, meta, "cpu")
    rng = np.random.default_rng(2)
    clip = voiced(sf.read(str(sorted((demo_corpus / "Anger").glob("*.wav"))[0]), dtype="float32")[0])
    audio = np.concatenate([pause(rng, 1.5), clip[: int(0.5 * RATE)], pause(rng, 1.5)])
    (prediction,), failed = strict.predict_decoded([("short burst", audio)], segment="vad")
    assert not failed
    (seg,) = prediction.segments
    assert abs(seg["start"] - 1.5) < TOLERANCE and abs(seg["end"] - 2.0) < TOLERANCE and seg["end"] - seg["start"] < 1.0
    start, end = seg["extended_to"]
    assert end - start == pytest.approx(1.0) and start < seg["start"] and end > seg["end"]  # centred on the region
    (alone,), _ = strict.predict_decoded([("around", audio[round(start * RATE) : round(end * RATE)])])
    assert vector(seg, strict.labels) == pytest.approx(vector(alone.to_dict(), strict.labels), abs=1e-5)
    table = io.StringIO()
    write_predictions([prediction], strict.labels, "table", out=table)
    assert f"shorter than the model's minimum input: scored on {start:.2f}-{end:.2f} s" in table.getvalue()


def test_json_csv_and_table_through_the_command_line_and_a_file_without_speech(deploy_run, speech_recording, noise_only, capsys):
    run, _ = deploy_run
    path, _, spans = speech_recording
    out, err = in_process(capsys, str(run), str(path), str(noise_only), "--segment", "vad", "--json")
    (row,) = json.loads(out)  # one object per file with speech
    assert set(row) == {"file", "label", "confidence", "probabilities", "segments"} and row["file"] == str(path)
    assert_segments_cover(row["segments"], spans)
    for seg in row["segments"]:
        assert {"start", "end", "label", "confidence", "probabilities"} <= set(seg) <= {*seg, "windows"}
    assert err.strip() == f"ser-dist: skipped {noise_only}: no speech found by the VAD (threshold 0.5, min speech 0.25 s, " + (
        "min silence 0.1 s; a lower --vad-threshold finds quieter speech)"
    )

    out, _ = in_process(capsys, str(run), str(path), "--segment", "vad", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["segment"] for r in rows] == ["all"] + ["speech"] * len(row["segments"])  # clips of 2-3 s: one window each
    for seg, line in zip(row["segments"], rows[1:]):
        assert float(line["start"]) == pytest.approx(seg["start"], abs=0.005) and line["label"] == seg["label"]
        assert float(line["confidence"]) == pytest.approx(seg["confidence"], abs=1e-6)
    assert rows[0]["label"] == row["label"] and float(rows[0]["confidence"]) == pytest.approx(row["confidence"], abs=1e-6)

    out, _ = in_process(capsys, str(run), str(path), "--segment", "vad")
    lines = out.splitlines()
    assert len(lines) == 2 + len(row["segments"]) and f"(duration-weighted mean of {len(row['segments'])} speech segments)" in lines[1]
    assert lines[2].split()[:3] == [f"{row['segments'][0]['start']:.1f}-", f"{row['segments'][0]['end']:.1f}", "s"]

    with pytest.raises(SystemExit) as stop:  # nothing predicted: exit 1, as when every file is unreadable
        in_process(capsys, str(run), str(noise_only), "--segment", "vad")
    assert stop.value.code == 1 and "no speech found by the VAD" in capsys.readouterr().err


def test_the_vad_options_reach_the_vad_and_bad_ones_are_one_line(deploy_run, speech_recording, capsys):
    from ser_dist.errors import UserError

    run, _ = deploy_run
    path, audio, spans = speech_recording
    # A pause must last 2.5 s to end a region: every pause here is shorter (the last one too), so the speech is one
    # segment from the first clip to the end of the recording.
    out, _ = in_process(capsys, str(run), str(path), "--segment", "vad", "--json", "--min-silence-seconds", "2.5")
    (seg,) = json.loads(out)[0]["segments"]
    assert abs(seg["start"] - spans[0][0]) < TOLERANCE and seg["end"] == len(audio) / RATE
    with pytest.raises(SystemExit):  # every clip is under 5 s: no region is long enough
        in_process(capsys, str(run), str(path), "--segment", "vad", "--min-speech-seconds", "5")
    assert "no speech found by the VAD (threshold 0.5, min speech 5 s" in capsys.readouterr().err
    for args, fragment in (
        (["--vad-threshold", "0.3"], "--vad-threshold: VAD settings, used with --segment vad only; add --segment vad or leave them out"),
        (["--segment", "vad", "--vad-threshold", "1"], "--vad-threshold 1: give a speech probability between 0 and 1"),
        (["--segment", "vad", "--min-silence-seconds", "-1"], "--min-silence-seconds -1: give a number of seconds >= 0"),
    ):
        with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            in_process(capsys, str(run), str(path), *args)


def test_a_datasets_rows_are_segmented_as_files_are(classifier, speech_recording, noise_only, tmp_path, hf_offline):
    from ser_dist.data.demo_hf import save_as_hf_dataset

    path, _, _ = speech_recording
    corpus = tmp_path / "corpus"
    for label, source, name in (("Speech", path, "spk01_speech.flac"), ("Quiet", noise_only, "spk02_pause.wav")):
        (corpus / label).mkdir(parents=True)
        shutil.copy(source, corpus / label / name)
    save_as_hf_dataset(corpus, tmp_path / "dd", speaker_pattern=SPEAKER_PATTERN)
    rows, failed = classifier.predict_dataset(tmp_path / "dd", segment="vad")
    (from_file,), _ = classifier.predict([path], segment="vad")
    assert len(rows) == 1 and rows[0].segments == from_file.segments
    assert len(failed) == 1 and failed[0][1].startswith("no speech found by the VAD")


def test_vad_keeps_torch_threads_and_a_missing_silero_vad_is_one_line(deploy_run, speech_recording):
    run, _ = deploy_run
    path = str(speech_recording[0])
    script = (
        "import torch\n"
        "torch.set_num_threads(2)\n"
        "from ser_dist.serving.segments import vad_model\n"
        "vad_model()\n"
        "print(torch.get_num_threads())\n"
    )
    threads = run_entry_point(["-c", script])
    assert threads.returncode == 0 and threads.stdout.split() == ["2"], threads.stderr  # silero_vad's import sets 1

    missing = (
        "import sys\n"
        "sys.modules['silero_vad'] = None  # what `import silero_vad` meets without the package\n"
        "from ser_dist.cli import main\n"
        f"main(['predict', {str(run)!r}, {path!r}, '--json'])  # fixed windows need no VAD\n"
        f"main(['predict', {str(run)!r}, {path!r}, '--segment', 'vad'])\n"
    )
    result = run_entry_point(["-c", missing])
    assert len(json.loads(result.stdout)) == 1
    assert_one_line_error(result, "ser-dist predict --segment vad needs silero-vad: pip install 'ser-dist[vad]'")


def test_the_benchmark_compares_segments_and_windows_end_to_end(deploy_run, demo_corpus, tmp_path):
    out = tmp_path / "vad.json"
    args = ["benchmarks/vad_segments.py", str(deploy_run[0]), "--corpus", str(demo_corpus), "--seconds", "20", "--repeats", "1"]
    result = run_entry_point([*args, "--out", str(out)], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    back_to_back, with_pauses = json.loads(out.read_text())
    for row in (back_to_back, with_pauses):
        assert row["seconds"] == 20.0 and row["windows"] == 10 and row["segments"] >= 1
        assert 0.0 <= row["label_agreement_on_speech"] <= 1.0 and row["engines_same_regions"]
        assert row["vad_engine"] in row["vad_alone_seconds"] and row["aggregate_agrees"] == (len(set(row["aggregate_labels"])) == 1)
    assert "clip_time_in_segments" not in back_to_back and with_pauses["segment_time_in_clips"] > 0.9
    assert with_pauses["speech_seconds"] < back_to_back["speech_seconds"]  # the pauses are not speech
    assert "| fixed windows (2 s) / speech segments | 10 / " in result.stdout
