"""More bad input, each found by an adversarial tester: a duplicated manifest column or JSON key, a header
sample rate that would upsample a clip to gigabytes, a file name that is not UTF-8, an empty folder named
like a clip, a truncated WAV, a Latin-1 manifest, a fold protocol with too few speakers, a class named
twice in data.labels. Each is one line naming the fix, or a clip skipped or reported with its true reason."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line, write_clip

import ser_dist.data.audio as audio_module
import ser_dist.data.corpora  # noqa: F401  registers the adapters
import ser_dist.data.dataset as dataset_module
from ser_dist.config import Data
from ser_dist.data.audio import AudioError, decode_audio, load_audio, native_frames, resampling_rate
from ser_dist.data.dataset import build_audio_dataset
from ser_dist.data.folder import scan_folder
from ser_dist.data.manifest import read_manifest
from ser_dist.data.pipeline import prepare_data, scan_corpus, summary_line
from ser_dist.data.records import DataError, Record
from ser_dist.data.splits import split_records
from ser_dist.errors import ConfigError

RATE = 16000
PATTERN = r"^(spk\d+)_"


def corpus(root: Path, speakers: int = 4, per_class: int = 2) -> Path:
    """Two classes, ``speakers`` speakers, ``per_class`` clips of each class per speaker."""
    for s in range(speakers):
        for c, label in enumerate(("Anger", "Sad")):
            for take in range(per_class):
                write_clip(root / label / f"spk{s:02d}_{label.lower()}_{take}.wav", seed=100 * s + 10 * c + take)
    return root


def speaker_data(root: Path, **keys) -> Data:
    return Data(**{"root": str(root), "speaker_pattern": PATTERN, "max_seconds": 1.0, **keys})


def set_wav_rate(path: Path, rate: int) -> Path:
    raw = bytearray(path.read_bytes())
    fmt = raw.find(b"fmt ")
    raw[fmt + 12 : fmt + 16] = struct.pack("<I", rate)
    path.write_bytes(bytes(raw))
    return path


# --- 1: a column or key given twice -------------------------------------------------------------------


def test_a_column_named_twice_in_a_csv_header_is_one_line_naming_the_manifest_and_column(tmp_path):
    write_clip(tmp_path / "a.wav")
    write_clip(tmp_path / "b.wav", seed=1)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,speaker,label\na.wav,Anger,spk01,Sad\nb.wav,Sad,spk02,Anger\n")
    with pytest.raises(DataError) as err:
        read_manifest(manifest)
    one_line(err, f"{manifest}:1:", "column 'label' appears 2 times", "columns 2, 4", "rename or remove")
    tsv = tmp_path / "m.tsv"
    tsv.write_text("path\tpath\tlabel\na.wav\tb.wav\tAnger\n")
    with pytest.raises(DataError) as err:
        scan_corpus(Data(manifest=str(tsv), split="stratified"))
    one_line(err, f"{tsv}:1:", "column 'path' appears 2 times")


def test_a_key_given_twice_in_a_jsonl_row_is_one_line_naming_the_line(tmp_path):
    write_clip(tmp_path / "a.wav")
    write_clip(tmp_path / "b.wav", seed=1)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "a.wav", "label": "Anger"}\n{"path": "b.wav", "label": "Sad", "label": "Anger"}\n')
    with pytest.raises(DataError) as err:
        scan_corpus(Data(manifest=str(manifest), split="stratified"))
    one_line(err, f"{manifest}:2:", "key 'label' appears twice", "keeps only the last")


def test_a_lone_surrogate_escape_in_a_jsonl_label_is_one_line(tmp_path):
    write_clip(tmp_path / "a.wav")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "a.wav", "label": "Ang\\udce9r"}\n')
    with pytest.raises(DataError) as err:
        read_manifest(manifest)
    one_line(err, f"{manifest}:1:", "'label' holds a lone surrogate")


# --- 2: a header's sample rate, and memory that follows the crop ------------------------------------------


@pytest.mark.parametrize("rate", [1, 999, 384001, 1_000_000_000])
def test_an_implausible_native_rate_is_skipped_before_anything_is_resampled(tmp_path, monkeypatch, rate):
    path = set_wav_rate(write_clip(tmp_path / "clip.wav", seconds=3.0), rate)

    def no_resampling(*args):
        raise AssertionError("resampled a clip whose rate is implausible")

    monkeypatch.setattr(audio_module, "resample", no_resampling)
    with pytest.raises(AudioError) as err:
        load_audio(path, RATE)
    assert err.value.reason.startswith(f"implausible sample rate in the file's header ({rate} Hz; audio is 1000-384000 Hz)")
    dataset, skipped = build_audio_dataset(
        [Record(path=str(path), label="x")], sample_rate=RATE, max_seconds=1.0, cache_dir=tmp_path / "cache"
    )
    assert len(dataset) == 0 and skipped == [(str(path), err.value.reason)]


def test_only_the_crop_is_read_and_resampled_and_it_matches_resampling_the_whole_clip(tmp_path, monkeypatch):
    seen = []
    real_resample = audio_module.resample

    def recording(waveform, orig_rate, new_rate):
        seen.append(len(waveform))
        return real_resample(waveform, orig_rate, new_rate)

    monkeypatch.setattr(audio_module, "resample", recording)
    for rate in (1000, 8000, 44100):  # 1000 Hz: the largest upsampling a plausible header allows (16x)
        path = write_clip(tmp_path / f"long_{rate}.wav", seconds=30.0, rate=rate)
        seen.clear()
        decoded = decode_audio(path, RATE, max_samples=RATE)
        assert len(decoded.samples) == RATE and decoded.num_samples == 30 * RATE and decoded.truncated is None
        crop = native_frames(RATE, rate, RATE)
        assert seen == [crop] and crop < rate * 1.1  # a second at the native rate, plus the filter's reach
        whole = load_audio(path, RATE)
        assert len(whole) == 30 * RATE
        np.testing.assert_allclose(decoded.samples, whole[:RATE], atol=1e-5)
    records = [Record(path=str(tmp_path / "long_8000.wav"), label="x")]
    dataset, skipped = build_audio_dataset(records, sample_rate=RATE, max_seconds=1.0, cache_dir=tmp_path / "cache")
    assert skipped == [] and dataset["num_samples"][:] == [RATE] and dataset["original_duration"][:] == [30.0]


def test_an_odd_native_rate_never_builds_a_huge_resampling_kernel(tmp_path):
    # Rates corpora use resample from themselves; 47999 Hz (16000 x 48405 taps, 3 GB) from 48000 Hz.
    for rate in (8000, 11025, 12000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 192000, 384000):
        assert resampling_rate(rate, RATE) == rate
    assert resampling_rate(47999, RATE) == 48000
    assert abs(resampling_rate(11127, RATE) - 11127) <= 11127 * 0.005
    path = write_clip(tmp_path / "odd.wav", seconds=1.0, rate=47999)
    assert len(load_audio(path, RATE)) == 16000  # ceil(47999 samples * 16000 / 48000)


# --- 3: a file name that is not UTF-8 -------------------------------------------------------------------


def test_a_clip_whose_name_is_not_utf8_is_set_aside_with_that_reason_not_as_unrecognised(tmp_path):
    root = corpus(tmp_path / "corpus")
    name = os.fsdecode(b"spk01_\xff\xfe.wav")
    os.rename(write_clip(tmp_path / "valid.wav", seed=99), root / "Anger" / name)  # soundfile can't write that name
    prepared = prepare_data(speaker_data(root, split="stratified"), seed=0)
    reasons = {p: r for p, r in ((f["path"], f["reason"]) for f in prepared.report["set_aside_files"])}
    assert reasons[str(root / "Anger" / name)] == (
        "file name is not valid UTF-8 (b'spk01_\\xff\\xfe.wav'); rename it (e.g. convmv -f latin1 -t utf8 --notest FILE)"
    )
    assert prepared.report["num_used"] == 16
    json.dumps(prepared.report)  # the report stays writable
    with pytest.raises(AudioError) as err:  # any caller of the decoder gets the true reason
        load_audio(root / "Anger" / name)
    assert err.value.reason.startswith("file name is not valid UTF-8")
    # A manifest row naming it (Python's json writes such a name as a surrogate escape) is set aside too.
    manifest = tmp_path / "m.jsonl"
    rows = [{"path": str(root / "Anger" / name), "label": "Anger"}, {"path": str(root / "Sad" / "spk00_sad_0.wav"), "label": "Sad"}]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    scan = read_manifest(manifest)
    assert [r.label for r in scan.records] == ["Sad"]
    assert scan.problems[0][1].startswith("file name is not valid UTF-8")


# --- 4: folder entries that are not files ------------------------------------------------------------


def test_an_empty_folder_named_like_a_clip_and_other_entries_that_are_not_files_are_set_aside(tmp_path, monkeypatch):
    root = corpus(tmp_path / "corpus")
    (root / "Anger" / "spk01_dir.wav").mkdir()
    (root / "Sad" / "empty").mkdir()
    os.mkfifo(root / "Sad" / "spk01_fifo.wav")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "Sad" / "spk01_socket.wav"))
    try:
        os.mknod(root / "Sad" / "spk01_null.wav", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        device = True
    except (PermissionError, OSError):
        device = False
    locked = root / "Sad" / "locked"
    write_clip(locked / "spk01_sad_9.wav")
    real_scandir = os.scandir

    def scandir(path):  # the tests run as root, so chmod would not stop the walk
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    try:
        prepared = prepare_data(speaker_data(root, split="stratified"), seed=0)
    finally:
        server.close()
    reasons = {Path(f["path"]).relative_to(root).as_posix(): f["reason"] for f in prepared.report["set_aside_files"]}
    expected = {
        "Anger/spk01_dir.wav": "a folder, not a file (named like an audio file, and empty)",
        "Sad/empty": "empty folder",
        "Sad/spk01_fifo.wav": "not a regular file (a device, pipe or socket)",
        "Sad/spk01_socket.wav": "not a regular file (a device, pipe or socket)",
        "Sad/locked": "folder not readable (Permission denied)",
    }
    if device:
        expected["Sad/spk01_null.wav"] = "not a regular file (a device, pipe or socket)"
    assert reasons == expected
    assert prepared.report["num_found"] == 16 + len(expected) and prepared.report["num_used"] == 16
    # scan_folder alone (the named corpora's walk) reports them the same way.
    monkeypatch.setattr(os, "scandir", real_scandir)
    assert (str(root / "Anger" / "spk01_dir.wav"), expected["Anger/spk01_dir.wav"]) in scan_folder(root).other


# --- 5: a truncated WAV ----------------------------------------------------------------------------------


def test_a_truncated_wav_is_kept_with_the_audio_it_holds_and_reported(tmp_path):
    root = corpus(tmp_path / "corpus")
    whole = write_clip(root / "Anger" / "spk01_truncated.wav", seconds=3.0, seed=7)
    raw = whole.read_bytes()
    whole.write_bytes(raw[: 44 + RATE * 2])  # the header still declares 3 s; 1 s of samples follow it
    prepared = prepare_data(speaker_data(root, split="stratified", max_seconds=2.0), seed=0)
    assert str(whole) in {rec.path for rec in prepared.records}
    reason = "truncated: the header declares 3 s of audio, the file holds 1 s; the audio present is used"
    assert prepared.report["truncated_files"] == [{"path": str(whole), "reason": reason}]
    assert any("1 clip(s) come from truncated files" in w and "spk01_truncated.wav" in w for w in prepared.report["warnings"])
    assert "1 truncated kept" in summary_line(prepared.report)
    index = next(i for i, rec in enumerate(prepared.records) if rec.path == str(whole))
    assert prepared.dataset["num_samples"][index] == RATE
    # A whole file, and a streaming writer's "to the end of the file" size, are not truncated.
    assert decode_audio(root / "Sad" / "spk00_sad_0.wav").truncated is None
    streaming = bytearray(raw)
    data = streaming.find(b"data")
    streaming[data + 4 : data + 8] = struct.pack("<I", 0xFFFFFFFF)
    (tmp_path / "streaming.wav").write_bytes(bytes(streaming))
    decoded = decode_audio(tmp_path / "streaming.wav")
    assert decoded.truncated is None and decoded.num_samples == 3 * RATE


def test_a_truncated_mp3_is_kept_and_noted(tmp_path):
    path = write_clip(tmp_path / "clip.mp3", seconds=3.0)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    decoded = decode_audio(path, RATE)
    assert decoded.truncated is not None and decoded.truncated.startswith("truncated: the header declares 3 s of audio")
    assert 0 < len(decoded.samples) < 2 * RATE


# --- 6: a manifest that is not UTF-8 --------------------------------------------------------------------


def test_a_latin1_manifest_names_the_line_and_byte_and_says_to_resave_it_as_utf8(tmp_path):
    write_clip(tmp_path / "a.wav")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("path,label\na.wav,Anger\nb.wav,Col\u00e8re\n".encode("latin-1"))
    with pytest.raises(DataError) as err:
        scan_corpus(Data(manifest=str(manifest), split="stratified"))
    message = one_line(err, f"{manifest}:3:", "not UTF-8 text", "byte 0xe8 at byte 10 of the line", "re-save the manifest as UTF-8")
    assert "not a text manifest" not in message
    utf16 = tmp_path / "m16.jsonl"
    utf16.write_bytes('{"path": "a.wav", "label": "Anger"}\n'.encode("utf-16"))
    with pytest.raises(DataError) as err:
        read_manifest(utf16)
    one_line(err, f"{utf16}:", "UTF-16 text", "re-save it as UTF-8")


# --- 7: fold protocols with too few speakers or sessions --------------------------------------------------


def records_of(speakers: int, sessions: int = 0) -> list[Record]:
    return [
        Record(path=f"/c/spk{s}_{label}_{t}.wav", label=label, speaker=f"spk{s}", session=f"Session{s // 2 + 1}" if sessions else None)
        for s in range(speakers)
        for label in ("Anger", "Sad")
        for t in range(3)
    ]


def test_fold_protocols_with_too_few_speakers_say_how_many_are_needed_and_found_without_circular_advice():
    for protocol in ("leave_one_speaker_out", "speaker_kfold"):
        with pytest.raises(DataError) as err:
            split_records(records_of(1), Data(split=protocol), seed=0)  # no data.fold given either
        message = one_line(
            err, f"data.split={protocol} needs at least 3 speakers (one each for test, validation and train); found 1 (spk0)"
        )
        assert "data.fold" not in message and "val_fraction" not in message and "num_folds" not in message
        with pytest.raises(DataError) as err:
            split_records(records_of(2), Data(split=protocol, fold=1), seed=0)
        one_line(err, "needs at least 3 speakers", "found 2 (spk0, spk1)", "set data.val_fraction=0")
        with pytest.raises(DataError) as err:
            split_records(records_of(1), Data(split=protocol, fold=1, val_fraction=0.0), seed=0)
        message = one_line(err, "needs at least 2 speakers (one each for test and train); found 1")
        assert "val_fraction" not in message
    # With enough speakers but fewer than folds, the advice is a number of folds that works.
    with pytest.raises(DataError) as err:
        split_records(records_of(4), Data(split="speaker_kfold", num_folds=5, fold=1), seed=0)
    one_line(err, "needs at least 5 speakers (one per fold); found 4", "set data.num_folds=4")
    split = split_records(records_of(4), Data(split="speaker_kfold", num_folds=4, fold=1), seed=0)
    assert split["train"] and split["val"] and split["test"]
    # Two speakers and no validation is a working leave-one-speaker-out.
    assert split_records(records_of(2), Data(split="leave_one_speaker_out", fold=2, val_fraction=0.0), seed=0)["val"] == []


def test_leave_one_session_out_with_one_session_says_so_before_asking_for_a_fold():
    with pytest.raises(DataError) as err:
        split_records(records_of(2, sessions=1), Data(split="leave_one_session_out"), seed=0)
    message = one_line(err, "needs at least 2 sessions (one to test, the others to train); found 1 ('Session1')")
    assert "data.fold" not in message
    # Two sessions of one speaker each: validation can't have its own speaker; speaker needs 3, so stratified.
    records = [r for r in records_of(4, sessions=1) if r.speaker in ("spk0", "spk2")]
    with pytest.raises(DataError) as err:
        split_records(records, Data(split="leave_one_session_out", fold=1), seed=0)
    one_line(err, "the training sessions have 1 speaker", "set data.val_fraction=0", "data.split=stratified")
    split = split_records(records, Data(split="leave_one_session_out", fold=1, val_fraction=0.0), seed=0)
    assert split["test"] and split["train"] and split["val"] == []


def test_one_speaker_through_prepare_data_is_one_line(tmp_path):
    root = corpus(tmp_path / "corpus", speakers=1)
    with pytest.raises(DataError) as err:
        prepare_data(speaker_data(root, split="leave_one_speaker_out"), seed=0)
    one_line(err, "needs at least 3 speakers", "found 1 (spk00)")


# --- 8: a class named twice in data.labels ----------------------------------------------------------------


def test_a_class_named_twice_in_data_labels_is_one_line_before_any_audio_is_read(tmp_path, monkeypatch):
    root = corpus(tmp_path / "corpus")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded audio before checking data.labels")

    monkeypatch.setattr(dataset_module, "decode_audio", no_decoding)
    with pytest.raises(ConfigError) as err:
        prepare_data(speaker_data(root, labels=["Anger", "Anger", "Sad"]), seed=0)
    one_line(err, "data.labels=Anger,Anger,Sad lists 'Anger' 2 times", "data.labels=Anger,Sad")
    with pytest.raises(ConfigError) as err:  # a named corpus too
        scan_corpus(Data(root=str(root), corpus="crema_d", labels=["anger", "sad", "anger"]))
    one_line(err, "lists 'anger' 2 times")
