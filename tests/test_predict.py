"""``ser-dist predict`` and ``EmotionClassifier``: mixed formats, manifests, CSV/top-k, long recordings, Hub ids, safe loading."""

import csv
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import assert_one_line_error, run_entry_point


def cli(*args, env=None):
    return run_entry_point(["-m", "ser_dist.cli", *args], timeout=300, env=env)


def in_process(capsys, *args) -> tuple[str, str]:
    """``ser-dist ARGS`` in this process (no interpreter start-up): (stdout, stderr)."""
    from ser_dist.cli import main

    main(list(args))
    captured = capsys.readouterr()
    return captured.out, captured.err


@pytest.fixture(scope="module")
def mixed_folder(demo_corpus, tmp_path_factory):
    """One demo clip as WAV, FLAC, OGG, MP3 and 44.1 kHz stereo WAV, in nested folders, plus a broken file."""
    import torch
    from torchcodec.encoders import AudioEncoder

    from ser_dist.data.audio import resample

    root = tmp_path_factory.mktemp("mixed")
    (root / "nested" / "deeper").mkdir(parents=True)
    source = sorted((demo_corpus / "Sad").glob("*.wav"))[0]
    samples, rate = sf.read(str(source), dtype="float32")
    shutil.copy(source, root / "clip.wav")
    sf.write(str(root / "clip.flac"), samples, rate)
    sf.write(str(root / "nested" / "clip.ogg"), samples, rate)
    AudioEncoder(torch.from_numpy(samples)[None], sample_rate=rate).to_file(str(root / "nested" / "deeper" / "clip.mp3"))
    upsampled = resample(samples, rate, 44100)
    sf.write(str(root / "clip_44k_stereo.wav"), np.stack([upsampled, upsampled], axis=1), 44100)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return root


@pytest.fixture(scope="module")
def five_minute_recording(demo_corpus, tmp_path_factory) -> Path:
    clips = [sf.read(str(p), dtype="float32")[0] for p in sorted(demo_corpus.rglob("*.wav"))]
    audio = np.concatenate(clips * 2)[: 300 * 16000]
    assert len(audio) == 300 * 16000
    path = tmp_path_factory.mktemp("long") / "five_minutes.flac"
    sf.write(str(path), audio, 16000)
    return path


def test_predict_folder_of_mixed_formats(deploy_run, mixed_folder, capsys):
    run, _ = deploy_run
    out, err = in_process(capsys, "predict", str(run), str(mixed_folder), "--json")
    rows = {Path(r["file"]).relative_to(mixed_folder).as_posix(): r for r in json.loads(out)}
    assert set(rows) == {"clip.wav", "clip.flac", "clip_44k_stereo.wav", "nested/clip.ogg", "nested/deeper/clip.mp3"}
    reference = rows["clip.wav"]["probabilities"]
    for name, row in rows.items():
        assert set(row) == {"file", "label", "confidence", "probabilities"}
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        tolerance = 1e-6 if name == "clip.flac" else 0.05  # FLAC is lossless; resampling and lossy codecs move a little
        assert row["probabilities"] == pytest.approx(reference, abs=tolerance), name
    assert "ser-dist: skipped" in err and "broken.wav" in err and "truncated/corrupt" in err


def test_predict_manifests_csv_output_and_top_k(deploy_run, demo_corpus, tmp_path, capsys):
    run, _ = deploy_run
    files = sorted((demo_corpus / "Anger").glob("*.wav"))[:3]
    shutil.copytree(demo_corpus / "Anger", tmp_path / "clips")
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\n" + "".join(f"clips/{f.name},whatever\n" for f in files[:2]))
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text(json.dumps({"path": str(files[2])}) + "\n")
    out, _ = in_process(capsys, "predict", str(run), str(manifest), str(jsonl), "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    labels = json.loads((run / "model" / "ser_dist.json").read_text())["labels"]
    assert list(rows[0]) == ["file", "segment", "start", "end", "label", "confidence", *[f"p_{n}" for n in labels]]
    assert [Path(r["file"]).name for r in rows] == [f.name for f in files] and {r["segment"] for r in rows} == {"all"}
    for row in rows:
        probs = {n: float(row[f"p_{n}"]) for n in labels}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert row["label"] == max(probs, key=probs.get) and float(row["confidence"]) == pytest.approx(max(probs.values()), abs=1e-6)

    # 1 s windows: a demo clip (2-4 s) is longer than window + hop, so it gets window rows after its own.
    out, _ = in_process(capsys, "predict", str(run), str(files[0]), "--csv", "--window-seconds", "1")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["segment"] == "all" and len(rows) >= 3 and {r["segment"] for r in rows[1:]} == {"window"}
    assert float(rows[1]["start"]) == 0.0 and float(rows[1]["end"]) == 1.0
    mean = np.mean([[float(r[f"p_{n}"]) for n in labels] for r in rows[1:]], axis=0)
    assert [float(rows[0][f"p_{n}"]) for n in labels] == pytest.approx(mean.tolist(), abs=2e-6)

    out, _ = in_process(capsys, "predict", str(run), str(files[0]), "--json", "--top-k", "3")
    row = json.loads(out)[0]
    assert [t["label"] for t in row["top_k"]] == sorted(row["probabilities"], key=row["probabilities"].get, reverse=True)[:3]
    assert row["top_k"][0]["label"] == row["label"]
    out, _ = in_process(capsys, "predict", str(run), str(files[0]), "--top-k", "2")
    assert "top 2" in out and row["top_k"][1]["label"] in out.splitlines()[1]


def test_five_minute_recording_is_windowed_with_bounded_batches(deploy_run, five_minute_recording):
    from ser_dist import EmotionClassifier

    classifier = EmotionClassifier.from_pretrained(deploy_run[0], device="cpu")
    assert classifier.max_seconds == 2.0
    seen = []
    forward = classifier.model.forward

    def spy(input_values, lengths):
        seen.append(tuple(input_values.shape))
        return forward(input_values, lengths)

    classifier.model.forward = spy
    predictions, failed = classifier.predict([five_minute_recording], batch_size=16)
    assert not failed and len(predictions) == 1
    prediction = predictions[0]
    # 2 s windows (the model's training crop), no overlap: 150 windows covering 0-300 s.
    assert len(prediction.windows) == 150
    assert prediction.windows[0]["start"] == 0.0 and prediction.windows[-1]["end"] == pytest.approx(300.0)
    assert all(w["end"] - w["start"] == pytest.approx(2.0) for w in prediction.windows)
    # Memory bound: the model never sees more than batch_size windows of 2 s at once.
    assert max(batch for batch, _ in seen) <= 16 and max(samples for _, samples in seen) == 32000
    mean = np.mean([[w["probabilities"][n] for n in classifier.labels] for w in prediction.windows], axis=0)
    assert [prediction.probabilities[n] for n in classifier.labels] == pytest.approx(mean.tolist(), abs=1e-6)
    assert prediction.label == classifier.labels[int(mean.argmax())]


def test_long_recording_window_option_on_the_command_line(deploy_run, five_minute_recording, capsys):
    run, _ = deploy_run
    out, _ = in_process(capsys, "predict", str(run), str(five_minute_recording), "--json", "--window-seconds", "10")
    row = json.loads(out)[0]
    assert [w["start"] for w in row["windows"]] == pytest.approx([10.0 * i for i in range(30)])
    assert {round(w["end"] - w["start"], 6) for w in row["windows"]} == {10.0}
    assert set(row) == {"file", "label", "confidence", "probabilities", "windows"}


def progress_lines(err: str, desc: str) -> list[str]:
    """What each ``ser_dist.progress`` log line of step ``desc`` says, up to its timing."""
    return [line.split(f"] {desc}: ")[1].split(";")[0] for line in err.splitlines() if f"] {desc}: " in line]


def test_predict_progress_log_lines_on_stderr_keep_stdout_json(deploy_run, demo_corpus, five_minute_recording, capsys):
    run, _ = deploy_run
    clips = [str(p) for p in sorted((demo_corpus / "Sad").glob("*.wav"))[:5]]
    args = ["predict", str(run), *clips, str(five_minute_recording), "--json", "--batch-size", "4", "--window-seconds", "10"]
    out, err = in_process(capsys, *args, "--progress", "log", "--progress-seconds", "0")
    assert [Path(row["file"]).name for row in json.loads(out)] == [Path(c).name for c in clips] + ["five_minutes.flac"]
    assert progress_lines(err, "predict") == [f"{n}/6 files ({100 * n / 6:.0f}%)" for n in range(1, 7)]
    # 30 windows of 10 s, 4 a batch (the first beside the 5th clip): advanced as each batch is scored, the last 2 before the file ends
    assert progress_lines(err, "windows of five_minutes.flac") == [f"{n}/30 windows ({100 * n / 30:.0f}%)" for n in (*range(3, 28, 4), 30)]
    assert "\r" not in err

    for quiet in (["--no-progress"], ["--progress", "off"]):
        out, err = in_process(capsys, *args, *quiet, "--progress-seconds", "0")
        assert len(json.loads(out)) == 6 and "predict" not in err and "windows of" not in err, quiet
    out, err = in_process(capsys, *args[:3], "--json", "--progress", "log", "--progress-seconds", "0")
    assert len(json.loads(out)) == 1 and "predict" not in err  # one batch of work: no progress

    out, err = in_process(capsys, *args, "--progress", "bar")
    assert len(json.loads(out)) == 6
    assert "predict:" in err and "/6 [" in err and "windows of five_minutes.flac:" in err and "\r" in err  # tqdm's bars, on stderr


def test_predict_progress_through_pipes_is_log_lines(deploy_run, demo_corpus):
    """``auto`` in a process whose stderr is a pipe: log lines, never a carriage return; stdout is the JSON alone."""
    run, _ = deploy_run
    clips = [str(p) for p in sorted((demo_corpus / "Anger").glob("*.wav"))[:3]]
    result = cli("predict", str(run), *clips, "--json", "--batch-size", "2", "--progress-seconds", "0")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3
    assert progress_lines(result.stderr, "predict") == ["1/3 files (33%)", "2/3 files (67%)", "3/3 files (100%)"]
    assert "\r" not in result.stderr


def test_an_empty_input_path_is_refused_rather_than_read_as_the_current_folder(tmp_path):
    from ser_dist.errors import UserError
    from ser_dist.serving.inference import expand_inputs

    (tmp_path / "a.wav").write_bytes(b"")
    assert expand_inputs([tmp_path]) == [tmp_path / "a.wav"]
    for empty in ("", " "):
        with pytest.raises(UserError, match="an input path is empty"):
            expand_inputs([str(tmp_path / "a.wav"), empty])


def test_window_spans():
    from ser_dist.serving.inference import window_spans

    assert window_spans(80, 40, 40) == [(0, 40)]  # up to window + hop: the first window, as in training
    assert window_spans(30, 40, 40) == [(0, 30)]
    assert window_spans(100, 40, 40) == [(0, 40), (40, 80), (60, 100)]
    assert window_spans(200, 40, 40) == [(0, 40), (40, 80), (80, 120), (120, 160), (160, 200)]
    assert window_spans(210, 40, 30) == [
        (0, 40),
        (30, 70),
        (60, 100),
        (90, 130),
        (120, 160),
        (150, 190),
        (170, 210),
    ]  # last one end-aligned


def test_python_api_and_mixin_from_pretrained_in_a_fresh_process(deploy_run, demo_corpus, tmp_path):
    run, _ = deploy_run
    clip = sorted((demo_corpus / "Happy").glob("*.wav"))[0]
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    script = (
        "import json, sys, warnings\n"
        "import ser_dist\n"
        "light = sorted(m for m in ('torch', 'transformers', 'huggingface_hub') if m in sys.modules)\n"
        "from ser_dist import EmotionClassifier, SERHubModel\n"
        f"classifier = EmotionClassifier.from_pretrained({str(run / 'model')!r})\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    out = classifier([{str(clip)!r}, {str(bad)!r}])\n"
        f"model = SERHubModel.from_pretrained({str(run / 'model')!r})\n"
        "same = all(bool((a == b).all()) for a, b in zip(model.state_dict().values(), classifier.model.state_dict().values()))\n"
        "print(json.dumps({'light': light, 'out': out, 'warnings': [str(w.message) for w in caught],\n"
        "                  'mixin': [type(model).__name__, model.training, same]}))\n"
    )
    result = run_entry_point(["-c", script])
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["light"] == []  # `import ser_dist` stays light; EmotionClassifier is a lazy export
    assert len(answer["out"]) == 1 and answer["out"][0]["file"] == str(clip)
    assert any("bad.wav" in w for w in answer["warnings"])
    assert answer["mixin"] == ["RecurrentSER", False, True]


def _fake_hub_cache(run: Path, cache: Path, repo_id: str) -> None:
    """The Hub cache layout snapshot_download reads offline: models--owner--name/{refs/main, snapshots/<commit>/}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(run / "model", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_predict_with_a_hub_id_from_the_cache_and_offline_errors(deploy_run, demo_corpus, tmp_path, capsys, monkeypatch):
    from ser_dist.errors import UserError

    run, _ = deploy_run
    _fake_hub_cache(run, tmp_path / "hub", "alice/ser-demo")
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    clip = sorted((demo_corpus / "Fear").glob("*.wav"))[0]
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", env["HF_HUB_CACHE"])  # what the two variables set at import
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    from_hub, _ = in_process(capsys, "predict", "alice/ser-demo", str(clip), "--json")
    local, _ = in_process(capsys, "predict", str(run), str(clip), "--json")
    assert json.loads(from_hub) == json.loads(local) and len(json.loads(local)) == 1
    assert_one_line_error(
        cli("predict", "alice/not-there", str(clip), env=env), "alice/not-there", "not in the Hub cache", "HF_HUB_OFFLINE"
    )
    with pytest.raises(UserError, match="no/such/dir: no such model directory"):
        in_process(capsys, "predict", "no/such/dir", str(clip))


@pytest.fixture
def export_copy(deploy_run, tmp_path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(deploy_run[0] / "model", target)
    return target


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['SER_DIST_PAYLOAD_MARKER']}",))


def test_corrupt_exports_fail_with_one_clear_error(export_copy, demo_corpus, tmp_path):
    from ser_dist.errors import UserError
    from ser_dist.serving.export import load_exported

    clip = str(sorted((demo_corpus / "Neutral").glob("*.wav"))[0])
    weights = export_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_exported(export_copy)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_exported(export_copy)
    weights.unlink()
    with pytest.raises(UserError, match="no model.safetensors"):
        load_exported(export_copy)
    (export_copy / "ser_dist.json").write_text('{"labels": ["a"')
    assert_one_line_error(cli("predict", str(export_copy), clip), "ser_dist.json", "corrupt model metadata")


def test_pickled_weights_are_never_executed(export_copy, tmp_path, monkeypatch):
    from ser_dist.errors import UserError
    from ser_dist.serving.export import load_exported

    marker = tmp_path / "payload-ran"
    monkeypatch.setenv("SER_DIST_PAYLOAD_MARKER", str(marker))
    (export_copy / "model.safetensors").unlink()
    with open(export_copy / "pytorch_model.bin", "wb") as f:
        pickle.dump({"weight": _Payload()}, f, protocol=2)
    with pytest.raises(UserError, match="only plain tensors are loaded"):
        load_exported(export_copy)
    assert not marker.exists()


def test_plain_tensor_bin_loads_with_weights_only(export_copy, deploy_run):
    """A legacy ``pytorch_model.bin`` of plain tensors loads (through torch.load(weights_only=True))."""
    import torch
    from safetensors.torch import load_file

    from ser_dist.serving.export import load_exported

    state = load_file(str(export_copy / "model.safetensors"))
    (export_copy / "model.safetensors").unlink()
    torch.save(state, export_copy / "pytorch_model.bin")
    model, _ = load_exported(export_copy)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name])
