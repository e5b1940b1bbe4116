"""``ser-dist demo`` without a browser: what a clip gives (``serving.demo_results``), the page's prediction function
called directly, and the command's one-line errors (gradio missing, a bad or busy port, bad limits).
The page in a real browser: tests/test_demo_browser.py."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import soundfile as sf
from conftest import assert_one_line_error, run_entry_point, write_clip

from ser_dist.serving.demo_results import ClipResult, analyse_clip, dimension_rows, segment_rows, summary, timeline_figure
from ser_dist.serving.inference import EmotionClassifier, Prediction


@pytest.fixture(scope="module")
def classifier(deploy_run) -> EmotionClassifier:
    return EmotionClassifier.from_pretrained(deploy_run[0])


@pytest.fixture(scope="module")
def recording(demo_corpus, tmp_path_factory):
    """Seconds -> a FLAC of that many seconds of demo clips in a row."""
    audio = np.concatenate([sf.read(str(p), dtype="float32")[0] for p in sorted(demo_corpus.rglob("*.wav"))])
    folder = tmp_path_factory.mktemp("demo_recordings")

    def make(seconds: int):
        path = folder / f"recording_{seconds}s.flac"
        sf.write(str(path), audio[: seconds * 16000], 16000)
        return path

    return make


def test_a_clip_gives_predicts_prediction_named_by_its_file(classifier, demo_corpus):
    clip = sorted((demo_corpus / "Fear").glob("*.wav"))[0]
    result = analyse_clip(classifier, clip, 600)
    (expected,), failures = classifier.predict([clip])
    assert not failures and result.prediction == expected
    assert result.as_json() == {**expected.to_dict(), "file": clip.name}
    seconds = sf.info(str(clip)).duration
    assert result.status == f"`{clip.name}` ({seconds:.1f} s): **{expected.label}** ({expected.confidence:.3f})."
    assert result.segments == []  # one window: no timeline


def test_a_long_recording_has_its_windows_as_segments_and_a_timeline(classifier, recording):
    path = recording(12)
    result = analyse_clip(classifier, path, 600)
    windows = result.prediction.windows
    assert len(windows) == 6 and result.segments == windows  # the model's 2 s windows
    assert "the mean of 6 windows of 2 s" in result.status
    assert segment_rows(result.segments)[0] == [0.0, 2.0, windows[0]["label"], round(windows[0]["confidence"], 4)]
    ax = timeline_figure(result.segments, classifier.labels).axes[0]
    bars = [bar for collection in ax.collections for bar in collection.get_paths()]
    assert len(bars) == 6
    rows = [classifier.labels.index(w["label"]) for w in windows]
    assert [round(float(np.mean(bar.vertices[:, 1]))) for bar in bars] == rows  # each on its class's row
    assert ax.get_xlim() == (0.0, 12.0)


def test_segments_from_vad_go_on_the_timeline_before_windows():
    """A prediction with ``segments`` (the VAD option) shows those; any {start, end, label, confidence} dicts draw."""
    prediction = Prediction(
        "a.wav", "Sad", 0.6, {"Sad": 0.6, "Happy": 0.4}, windows=[{"start": 0.0, "end": 9.0, "label": "Happy", "confidence": 0.5}]
    )
    prediction.segments = [
        {"start": 0.5, "end": 2.0, "label": "Sad", "confidence": 0.9},
        {"start": 3.0, "end": 4.5, "label": "Happy", "confidence": 0.3},
    ]
    result = ClipResult("ok", prediction)
    assert result.segments == prediction.segments
    assert "2 segments on the timeline" in summary("a.wav", prediction, 5.0)
    ax = timeline_figure(result.segments, ["Happy", "Sad"]).axes[0]
    assert len(ax.collections) == 2 and ax.get_xlim() == (0.0, 4.5)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Happy", "Sad"]


def test_ser_dist_demo_segment_vad_puts_the_vads_speech_regions_on_the_page(classifier, demo_corpus, tmp_path):
    """``ser-dist demo --segment vad``: the page's result is ``predict(segment="vad")``'s, its regions on the timeline."""
    pytest.importorskip("silero_vad", reason="the vad extra: pip install 'ser-dist[vad]'")
    from ser_dist.serving.demo_results import header_markdown
    from ser_dist.serving.segments import VadOptions

    clips = [sf.read(str(p), dtype="float32")[0] for p in sorted(demo_corpus.rglob("*.wav"))[:3]]
    pause = np.random.default_rng(0).normal(0, 1e-4, 24000).astype(np.float32)  # 1.5 s of near silence
    path = tmp_path / "pauses.wav"
    sf.write(str(path), np.concatenate([pause, clips[0], pause, clips[1], pause, clips[2], pause]), 16000)
    options = {"segment": "vad", "vad": VadOptions()}
    result = analyse_clip(classifier, path, 600, **options)
    (expected,), failures = classifier.predict([path], **options)
    assert not failures and result.prediction == expected and expected.segments
    assert result.segments == expected.segments and len(expected.segments) >= 3  # one region or more per clip
    assert all(s["start"] >= 1.0 for s in expected.segments[:1])  # the leading pause is not speech
    assert len(timeline_figure(result.segments, classifier.labels).axes[0].collections) >= 1
    assert "Silero VAD finds its speech regions" in header_markdown(classifier, "m", 600, segment="vad")


def test_a_model_of_dimensions_alone_has_no_label_and_its_values_shown():
    prediction = Prediction("a.wav", None, None, {}, dimensions={"arousal": 0.71234567, "valence": 0.25})
    assert summary("a.wav", prediction, 2.0) == "`a.wav` (2.0 s): arousal 0.712, valence 0.250."
    assert dimension_rows(prediction) == [["arousal", 0.7123], ["valence", 0.25]]
    assert dimension_rows(None) == []


def test_a_long_clip_for_a_model_of_dimensions_alone_shows_its_values_and_no_timeline(recording, tmp_path):
    """No class, so no label per window: the page shows the dimensions (and the windows in its numbers), no timeline."""
    import torch

    from ser_dist.config import Experiment, cli
    from ser_dist.models import build_model
    from ser_dist.serving.demo import build_demo
    from ser_dist.serving.export import export_model

    overrides = ["model.backbone=bilstm", "model.hidden_size=8", "model.embedding_size=8", "data.targets=dimensional"]
    exp = cli(Experiment(), ["data.root=unused", "train.metric=ccc_mean", "data.max_seconds=2.0", *overrides])
    torch.manual_seed(0)
    model = build_model(exp, 0).eval()
    folder = export_model(model, model.state_dict(), tmp_path / "model", exp=exp, label_names=[])
    status, bars, dims, timeline, table, numbers = build_demo(EmotionClassifier.from_pretrained(folder), 30).fns[0].fn(str(recording(8)))
    assert "arousal" in status and [row[0] for row in dims["value"]] == ["arousal", "valence", "dominance"]
    assert timeline["visible"] is False and numbers["dimensions"] and len(numbers["windows"]) == 4


def test_a_clip_over_max_seconds_is_refused_from_its_header_before_decoding(classifier, recording, monkeypatch):
    path = recording(40)
    import ser_dist.data.audio

    monkeypatch.setattr(ser_dist.data.audio, "decoded_or_reason", lambda *a, **k: pytest.fail("decoded a clip its header says is too long"))
    result = analyse_clip(classifier, path, 30)
    assert result.prediction is None and result.status.startswith(f"`{path.name}` is 40.0 s long; this demo takes clips up to 30 s")
    assert "--max-seconds" in result.status


def test_a_clip_whose_header_gives_no_length_is_refused_once_decoded(classifier, recording, monkeypatch):
    """Where neither decoder's header gives a duration, the decoded audio's length does, before anything is scored."""
    import ser_dist.serving.demo_results as demo_results

    monkeypatch.setattr(demo_results, "header_seconds", lambda path: None)
    path = recording(40)
    with monkeypatch.context() as patch:
        patch.setattr(classifier, "predict_decoded", lambda *a, **k: pytest.fail("scored a clip longer than --max-seconds"))
        result = analyse_clip(classifier, path, 30)
    assert result.prediction is None and result.status.startswith(f"`{path.name}` is 40.0 s long; this demo takes clips up to 30 s")
    assert analyse_clip(classifier, path, 60).prediction is not None


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk"), "truncated/corrupt: "),
        (lambda p: p.write_text("not audio at all\n" * 50), "not an audio file (format not recognised)"),
        (lambda p: write_clip(p, seconds=0.02), "too short"),
        (lambda p: write_clip(p, samples=np.zeros(16000, np.float32)), "silent"),
    ],
    ids=["corrupt", "text", "too-short", "silent"],
)
def test_an_unusable_file_is_its_reason(classifier, tmp_path, make, reason):
    path = tmp_path / "upload.wav"
    make(path)
    result = analyse_clip(classifier, path, 600)
    assert result.prediction is None and result.as_json() is None
    assert result.status.startswith("Could not use `upload.wav`: ") and reason in result.status, result.status


def test_the_pages_prediction_function_fills_every_output(classifier, recording, tmp_path):
    pytest.importorskip("gradio")
    from ser_dist.serving.demo import build_demo

    demo = build_demo(classifier, 30, source="tiny-run")
    predict = demo.fns[0].fn
    status, bars, dims, timeline, table, numbers = predict(str(recording(8)))
    assert "the mean of 4 windows" in status and numbers["file"] == "recording_8s.flac"
    assert bars["value"] == numbers["probabilities"] and dims["value"] == []
    assert timeline["visible"] and timeline["value"].axes and table["visible"] and len(table["value"]) == 4
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.warns(UserWarning, match="Could not use `bad.wav`"):  # gr.Warning outside a request: a warning
        status, bars, _, timeline, table, numbers = predict(str(bad))
    assert status.startswith("Could not use `bad.wav`") and numbers is None and bars["value"] is None
    assert not timeline["visible"] and not table["visible"]


def test_the_page_reports_a_model_failure_instead_of_raising(classifier, demo_corpus, monkeypatch):
    pytest.importorskip("gradio")
    from ser_dist.serving.demo import build_demo

    predict = build_demo(classifier, 30).fns[0].fn
    monkeypatch.setattr(classifier, "predict_decoded", lambda *a, **k: (_ for _ in ()).throw(MemoryError("out of memory\nmore lines")))
    with pytest.warns(UserWarning):
        status = predict(str(sorted(demo_corpus.rglob("*.wav"))[0]))[0]
    assert status.endswith(": MemoryError: out of memory")


def test_build_demo_refuses_a_bad_limit_or_window(classifier):
    pytest.importorskip("gradio")
    from ser_dist.errors import UserError
    from ser_dist.serving.demo import build_demo

    with pytest.raises(UserError, match="--max-seconds 0"):
        build_demo(classifier, 0)
    with pytest.raises(UserError, match="--window-seconds 0.001: shorter than the model's minimum input"):
        build_demo(classifier, 30, window_seconds=0.001)


def test_without_gradio_demo_is_one_line_naming_the_extra_before_the_model_loads(tmp_path):
    code = "import sys; sys.modules['gradio'] = None; from ser_dist.cli import main; main(sys.argv[1:])"
    result = run_entry_point(["-c", code, "demo", str(tmp_path / "no_such_model")], timeout=120)
    assert_one_line_error(result, "ser-dist demo needs gradio: pip install 'ser-dist[demo]'")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--port", "70000"], "argument --port: '70000' is not a port number from 1 to 65535"),
        (["--port", "http"], "argument --port: 'http' is not a port number"),
        (["--max-seconds", "0"], "argument --max-seconds: 0 must be a finite number of seconds > 0"),
        (["--max-file-mb", "nan"], "argument --max-file-mb: nan must be a finite number >= 0.01"),
    ],
)
def test_bad_options_are_one_line(args, fragment):
    result = run_entry_point(["-m", "ser_dist.cli", "demo", "some/run", *args], timeout=120)
    assert_one_line_error(result, fragment)


def test_a_busy_port_or_a_bad_host_is_one_line_before_the_model_loads(tmp_path):
    model = str(tmp_path / "no_such_model")  # never read: the address is checked first
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_entry_point(["-m", "ser_dist.cli", "demo", model, "--port", str(port)], timeout=180)
    assert_one_line_error(result, f"--host 127.0.0.1 --port {port}: cannot serve there (Address already in use); give a free --port")
    result = run_entry_point(["-m", "ser_dist.cli", "demo", model, "--host", "no-such-host.invalid"], timeout=180)
    assert_one_line_error(result, "--host no-such-host.invalid: not a name or address of this machine")


def test_the_demo_module_is_not_imported_by_predict():
    """The default install has no gradio: ser-dist predict must not need it."""
    code = "import sys, json; from ser_dist.cli import main; import ser_dist.serving.inference; print(json.dumps('gradio' in sys.modules))"
    result = run_entry_point(["-c", code], timeout=120)
    assert result.returncode == 0 and json.loads(result.stdout) is False, result.stderr
