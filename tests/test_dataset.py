"""The decode-once cache: contents, skips, crop, order, cache hits that decode nothing, invalidation,
atomic publishing, concurrent builders, and the torch view + padding collate on top of it."""

from __future__ import annotations

import json
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import ser_dist.data.dataset as dataset_module
from ser_dist.data.audio import decode_audio, load_audio
from ser_dist.data.dataset import AudioClips, build_audio_dataset, collate_waveforms, default_cache_dir
from ser_dist.data.records import Record
from ser_dist.errors import ConfigError, UserError

RATE = 16000


def chirp(seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.4 * np.sin(2 * np.pi * (200 + 300 * seed) * t) + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)


@pytest.fixture
def corpus(tmp_path):
    """Six records in a deliberate order: good clips at 16 and 8 kHz, one stereo, and three bad files."""
    root = tmp_path / "corpus"
    root.mkdir()
    sf.write(root / "long.wav", chirp(3.0, RATE, 1), RATE)
    (root / "corrupt.wav").write_bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    sf.write(root / "short.flac", chirp(0.5, 8000, 2), 8000)
    (root / "empty.wav").write_bytes(b"")
    sf.write(root / "stereo.wav", np.stack([chirp(1.2, RATE, 3)] * 2, axis=1), RATE)
    (root / "notes.mp3").write_text("not audio\n" * 100)
    names = ["long.wav", "corrupt.wav", "short.flac", "empty.wav", "stereo.wav", "notes.mp3"]
    labels = ["angry", "sad", "happy", "sad", "neutral", "angry"]
    records = [
        Record(path=str(root / name), label=label, speaker=f"spk{i % 2}", session=f"s{i // 3}")
        for i, (name, label) in enumerate(zip(names, labels))
    ]
    return root, records


@pytest.fixture
def count_decodes(monkeypatch):
    """Count decode_audio calls made by the cache builder (in-process, num_proc=1)."""
    calls = []

    def counting(path, sample_rate=16000, max_samples=None):
        calls.append(str(path))
        return decode_audio(path, sample_rate, max_samples)

    monkeypatch.setattr(dataset_module, "decode_audio", counting)
    return calls


def build(records, cache, **overrides):
    options = dict(sample_rate=RATE, max_seconds=2.0, cache_dir=cache, num_proc=1)
    options.update(overrides)
    return build_audio_dataset(records, **options)


def test_build_keeps_good_clips_in_order_and_reports_every_skip(corpus, tmp_path):
    root, records = corpus
    threads = torch.get_num_threads()
    dataset, skipped = build(records, tmp_path / "cache")
    assert torch.get_num_threads() == threads  # decoding runs single-threaded, then restores it
    assert dataset["path"][:] == [str(root / n) for n in ("long.wav", "short.flac", "stereo.wav")]
    assert dataset["label"][:] == ["angry", "happy", "neutral"]
    assert dataset["speaker"][:] == ["spk0", "spk0", "spk0"]
    assert dataset["session"][:] == ["s0", "s0", "s1"]
    assert dataset["source"][:] == [str(root / n) for n in ("long.wav", "short.flac", "stereo.wav")]
    assert skipped == [
        (str(root / "corrupt.wav"), "not an audio file (format not recognised)"),
        (str(root / "empty.wav"), "empty file (0 bytes)"),
        (str(root / "notes.mp3"), "not an audio file (format not recognised)"),
    ]
    # long.wav (3 s) is cut to its first 2 s; the others are shorter than max_seconds.
    assert dataset["num_samples"][:] == [2 * RATE, RATE // 2, int(1.2 * RATE)]
    assert dataset["duration"][:] == pytest.approx([2.0, 0.5, 1.2])
    assert dataset["original_duration"][:] == pytest.approx([3.0, 0.5, 1.2])
    assert [len(a) for a in dataset.with_format("numpy")["audio"]] == dataset["num_samples"][:]


def test_cached_samples_equal_a_fresh_decode_within_int16_precision(corpus, tmp_path):
    root, records = corpus
    dataset, _ = build(records, tmp_path / "cache", max_seconds=None)
    clips = dataset.with_format("numpy")
    for row, name in enumerate(["long.wav", "short.flac", "stereo.wav"]):
        fresh = load_audio(root / name, RATE)
        cached = clips[row]["audio"].astype(np.float32) / 32767
        assert cached.shape == fresh.shape
        np.testing.assert_allclose(cached, fresh, atol=0.5 / 32767 + 1e-7)
    # The crop keeps the start of the clip.
    cropped, _ = build(records, tmp_path / "cache", max_seconds=1.0)
    np.testing.assert_array_equal(cropped.with_format("numpy")[0]["audio"], clips[0]["audio"][:RATE])


def test_unchanged_second_call_decodes_nothing(corpus, tmp_path, count_decodes):
    _, records = corpus
    first, first_skipped = build(records, tmp_path / "cache")
    assert len(count_decodes) == len(records)
    second, second_skipped = build(records, tmp_path / "cache")
    assert len(count_decodes) == len(records)  # no new decode
    assert second_skipped == first_skipped
    assert second["path"][:] == first["path"][:]
    np.testing.assert_array_equal(second.with_format("numpy")[0]["audio"], first.with_format("numpy")[0]["audio"])
    # Memory-mapped from the cache folder, not held in RAM.
    assert all(str(tmp_path / "cache") in f["filename"] for f in second.cache_files)


def test_rewritten_file_rate_or_crop_change_make_a_new_entry(corpus, tmp_path, count_decodes):
    root, records = corpus
    cache = tmp_path / "cache"
    build(records, cache)
    entries = {p.name for p in cache.iterdir() if p.is_dir()}
    assert len(entries) == 1

    # Rewrite one clip with new content (and an explicitly different mtime, whatever the fs resolution).
    sf.write(root / "short.flac", chirp(0.75, 8000, 4), 8000)
    stat = os.stat(root / "short.flac")
    os.utime(root / "short.flac", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    count_decodes.clear()
    dataset, _ = build(records, cache)
    assert len(count_decodes) == len(records)
    assert dataset["num_samples"][1] == int(0.75 * RATE)

    count_decodes.clear()
    dataset, _ = build(records, cache, sample_rate=8000)
    assert len(count_decodes) == len(records)
    assert dataset["num_samples"][:] == [2 * 8000, int(0.75 * 8000), int(1.2 * 8000)]

    count_decodes.clear()
    dataset, _ = build(records, cache, max_seconds=1.0)
    assert len(count_decodes) == len(records)
    assert dataset["num_samples"][0] == RATE

    # A relabelled record changes the stored columns, so it is a new entry too.
    count_decodes.clear()
    relabelled = [Record(path=r.path, label="calm", speaker=r.speaker, session=r.session) for r in records]
    dataset, _ = build(relabelled, cache)
    assert set(dataset["label"][:]) == {"calm"}
    assert len(count_decodes) == len(records)

    assert len({p.name for p in cache.iterdir() if p.is_dir()}) == 5
    # Each earlier entry is still a cache hit.
    count_decodes.clear()
    build(records, cache, sample_rate=8000)
    assert count_decodes == []


def test_skipped_list_is_cached_with_the_entry(corpus, tmp_path):
    _, records = corpus
    _, skipped = build(records, tmp_path / "cache")
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert [tuple(row) for row in json.loads((entry / "skipped.json").read_text())] == skipped
    meta = json.loads((entry / "meta.json").read_text())
    assert (meta["num_clips"], meta["num_skipped"], meta["sample_rate"]) == (3, 3, RATE)


def test_leftovers_of_a_killed_build_are_never_loaded(corpus, tmp_path, count_decodes):
    _, records = corpus
    cache = tmp_path / "cache"
    build(records, cache)
    (entry,) = [p for p in cache.iterdir() if p.is_dir()]
    # A killed run leaves a temp folder; an entry folder without meta.json is not complete either.
    leftover = cache / f".tmp-{entry.name}-deadbeef"
    leftover.mkdir()
    (leftover / "decoded.arrow").write_bytes(b"partial")
    (entry / "meta.json").unlink()
    count_decodes.clear()
    dataset, skipped = build(records, cache)
    assert len(count_decodes) == len(records)  # rebuilt, not loaded from the incomplete folder
    assert len(dataset) == 3 and len(skipped) == 3
    assert not leftover.exists()
    assert sorted(p.name for p in cache.iterdir()) == [entry.name, f"{entry.name}.lock"]


def test_losing_a_publish_race_keeps_the_winners_entry(tmp_path):
    winner = tmp_path / "entry"
    winner.mkdir()
    (winner / "meta.json").write_text("{}")
    loser = tmp_path / ".tmp-entry-1"
    loser.mkdir()
    (loser / "meta.json").write_text('{"loser": true}')
    dataset_module._publish(loser, winner)
    assert (winner / "meta.json").read_text() == "{}"


def test_two_builders_of_the_same_cache_decode_once_and_agree(corpus, tmp_path, count_decodes):
    # Threads stand in for processes: flock excludes separate opens of the lock file either way, and
    # in-process builders let the decode counter see that only one of them decoded.
    _, records = corpus
    cache = tmp_path / "cache"
    start = threading.Barrier(2)
    results = [None, None]

    def builder(slot):
        start.wait()
        dataset, skipped = build(records, cache)
        results[slot] = (dataset["path"][:], dataset["num_samples"][:], skipped, [f["filename"] for f in dataset.cache_files])

    threads = [threading.Thread(target=builder, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results[0] is not None and results[0] == results[1]
    assert len(count_decodes) == len(records)
    entries = [p for p in cache.iterdir() if not p.name.endswith(".lock")]
    assert len(entries) == 1 and not entries[0].name.startswith(".tmp")


def test_parallel_decode_matches_serial_decode(corpus, tmp_path):
    _, records = corpus
    serial, serial_skipped = build(records, tmp_path / "serial")
    parallel, parallel_skipped = build(records, tmp_path / "parallel", num_proc=2)
    assert parallel_skipped == serial_skipped
    assert parallel["path"][:] == serial["path"][:]
    for a, b in zip(parallel.with_format("numpy")["audio"], serial.with_format("numpy")["audio"]):
        np.testing.assert_array_equal(a, b)


def test_default_cache_dir_comes_from_the_environment(corpus, tmp_path, monkeypatch):
    _, records = corpus
    monkeypatch.setenv("SER_DIST_CACHE", str(tmp_path / "env_cache"))
    assert default_cache_dir() == tmp_path / "env_cache"
    build(records, None)
    assert any(p.is_dir() for p in (tmp_path / "env_cache").iterdir())
    monkeypatch.delenv("SER_DIST_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "ser_dist" / "audio"


def test_all_clips_unreadable_gives_an_empty_dataset_and_full_skip_list(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    missing = tmp_path / "missing.wav"
    dataset, skipped = build([Record(path=str(bad), label="sad"), Record(path=str(missing), label="sad")], tmp_path / "cache")
    assert len(dataset) == 0
    assert skipped == [(str(bad), "not an audio file (format not recognised)"), (str(missing), "file not found")]
    assert len(AudioClips(dataset, LABELS)) == 0


def test_decoding_progress_counts_clips_and_skips_on_stderr(corpus, tmp_path, capsys):
    from ser_dist.progress import configured

    _, records = corpus
    with configured("log", seconds=0):
        build(records, tmp_path / "cache")
    captured = capsys.readouterr()
    lines = [line.split("] decode: ")[1].split(";")[0] for line in captured.err.splitlines() if "] decode: " in line]
    assert lines == [f"{n}/6 clips ({100 * n / 6:.0f}%), skipped {s}" for n, s in zip(range(1, 7), (0, 1, 1, 2, 2, 3))]
    assert "\r" not in captured.err and "decode" not in captured.out
    with configured("off"):
        build(records, tmp_path / "other-cache")
    assert "decode" not in capsys.readouterr().err


@pytest.mark.parametrize("options, key", [({"sample_rate": 0}, "data.sample_rate"), ({"max_seconds": -1.0}, "data.max_seconds")])
def test_bad_settings_are_config_errors(corpus, tmp_path, options, key):
    _, records = corpus
    with pytest.raises(ConfigError, match=key):
        build(records, tmp_path / "cache", **options)


LABELS = {"angry": 0, "happy": 1, "neutral": 2, "sad": 3}


def test_audio_clips_items_are_float_waveforms_with_label_ids(corpus, tmp_path):
    _, records = corpus
    dataset, _ = build(records, tmp_path / "cache")
    clips = AudioClips(dataset, LABELS)
    assert len(clips) == 3
    item = clips[np.int64(1)]
    assert set(item) == {"waveform", "label", "index"}
    assert item["waveform"].dtype == torch.float32 and item["waveform"].shape == (RATE // 2,)
    assert (item["label"], item["index"]) == (LABELS["happy"], 1)
    stored = dataset.with_format("numpy")[1]["audio"]
    np.testing.assert_allclose(item["waveform"].numpy(), stored / 32767, rtol=1e-6)
    np.testing.assert_array_equal(clips.num_samples, dataset["num_samples"][:])

    # A split (Dataset.select) indexes its own rows.
    split = AudioClips(dataset.select([2, 0]), LABELS)
    assert split[0]["waveform"].shape == (int(1.2 * RATE),) and split[0]["label"] == LABELS["neutral"]
    assert split[1]["waveform"].shape == (2 * RATE,)

    restored = pickle.loads(pickle.dumps(clips))
    torch.testing.assert_close(restored[0]["waveform"], clips[0]["waveform"])


def test_audio_clips_rejects_labels_the_model_does_not_know(corpus, tmp_path):
    _, records = corpus
    dataset, _ = build(records, tmp_path / "cache")
    with pytest.raises(UserError, match="'neutral'"):
        AudioClips(dataset, {"angry": 0, "happy": 1})


def test_collate_pads_to_the_longest_clip():
    batch = [
        {"waveform": torch.ones(3), "label": 2, "index": 7},
        {"waveform": torch.full((5,), -0.5), "label": 0, "index": 1},
        {"waveform": torch.ones(1), "label": 1, "index": 4},
    ]
    out = collate_waveforms(batch)
    assert out["input_values"].dtype == torch.float32 and out["input_values"].shape == (3, 5)
    torch.testing.assert_close(out["input_values"][0], torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(out["input_values"][1], torch.full((5,), -0.5))
    assert set(out) == {"input_values", "lengths", "labels", "index"}  # no attention mask: the models mask from lengths
    assert out["lengths"].tolist() == [3, 5, 1] and out["lengths"].dtype == torch.int64
    assert out["labels"].tolist() == [2, 0, 1] and out["labels"].dtype == torch.int64
    assert out["index"].tolist() == [7, 1, 4] and out["index"].dtype == torch.int64
    with pytest.raises(ValueError, match="empty batch"):
        collate_waveforms([])


def test_dataloader_workers_read_the_cache(corpus, tmp_path):
    _, records = corpus
    dataset, _ = build(records, tmp_path / "cache")
    loader = torch.utils.data.DataLoader(AudioClips(dataset, LABELS), batch_size=2, num_workers=2, collate_fn=collate_waveforms)
    batches = list(loader)
    assert [b["index"].tolist() for b in batches] == [[0, 1], [2]]
    assert batches[0]["input_values"].shape == (2, 2 * RATE)
    assert batches[0]["lengths"].tolist() == [2 * RATE, RATE // 2]
    assert batches[1]["labels"].tolist() == [LABELS["neutral"]]


def test_an_unexpected_decoder_failure_skips_only_that_clip(corpus, tmp_path, monkeypatch):
    root, records = corpus

    def flaky(path, sample_rate=16000, max_samples=None):
        if str(path).endswith("stereo.wav"):
            raise MemoryError("decoder ran out of memory")
        return decode_audio(path, sample_rate, max_samples)

    monkeypatch.setattr(dataset_module, "decode_audio", flaky)
    dataset, skipped = build(records, tmp_path / "cache")
    assert dataset["path"][:] == [str(root / "long.wav"), str(root / "short.flac")]
    assert (str(root / "stereo.wav"), "decoder error: MemoryError: decoder ran out of memory") in skipped
