"""Hugging Face datasets as corpora (ser_dist/data/hf.py): every form a user may hand over gives the same records,
labels, speakers and splits, and audio that decodes as the files it came from; bad input is one line."""

import io
import json

import numpy as np
import pytest
import soundfile as sf
from conftest import one_line, write_clip

from ser_dist.data.audio import AudioError, decode_audio, decode_audio_bytes
from ser_dist.data.hf import check_split_columns, open_hf_dataset, scan_data, scan_hf_dataset
from ser_dist.data.hf_audio import audio_location, decode_hf_audio, iter_audio
from ser_dist.data.records import DataError

datasets = pytest.importorskip("datasets")

EMOTIONS = ["neutral", "angry", "sad"]  # ClassLabel order, not alphabetical
SPEAKERS = ["spk1", "spk2"]
MAX_SAMPLES = 8000


@pytest.fixture(autouse=True)
def _offline_local_cache(tmp_path, monkeypatch):
    """load_dataset's converted copies go under tmp_path, and the Hub is never tried."""
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    datasets.disable_progress_bars()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """12 clips (2 speakers x 3 emotions x 2), at three rates, one of them stereo: (path, emotion, speaker) rows."""
    root = tmp_path_factory.mktemp("hf-clips") / "clips"
    rows = []
    for i in range(12):
        emotion, speaker = EMOTIONS[i % 3], SPEAKERS[i // 6]
        rate = (16000, 22050, 8000)[i % 3]
        samples = np.random.default_rng(i).uniform(-0.3, 0.3, (int(0.3 * rate), 2 if i == 4 else 1)).astype(np.float32)
        rows.append((write_clip(root / f"{speaker}_{i:02d}.wav", samples=samples, rate=rate), emotion, speaker))
    return rows


def _dataset(rows, class_label=True):
    features = datasets.Features(
        {
            "audio": datasets.Audio(),
            "label": datasets.ClassLabel(names=EMOTIONS) if class_label else datasets.Value("string"),
            "speaker": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(
        {"audio": [str(p) for p, _, _ in rows], "label": [e for _, e, _ in rows], "speaker": [s for _, _, s in rows]}, features=features
    )


def _assert_matches(hf, scan, rows, splits=None):
    """Records follow ``rows``; each one's audio decodes to exactly what decode_audio gives for its file."""
    assert [(r.label, r.speaker) for r in scan.records] == [(e, s) for _, e, s in rows]
    if splits is not None:
        assert [scan.fixed_split[r.path] for r in scan.records] == splits
    values = list(iter_audio(hf, scan.records, batch_rows=5))
    assert len(values) == len(rows)
    for rec, value, (path, _, _) in zip(scan.records, values, rows):
        got = decode_hf_audio(value, rec.path, 16000, MAX_SAMPLES)
        want = decode_audio(path, 16000, MAX_SAMPLES)
        assert got.num_samples == want.num_samples and np.array_equal(got.samples, want.samples)


def test_a_save_to_disk_dataset_keeps_classlabel_order_speakers_and_record_ids(clips, tmp_path):
    _dataset(clips).save_to_disk(str(tmp_path / "emo"))  # embeds the audio bytes
    hf = open_hf_dataset(str(tmp_path / "emo"))
    scan = scan_hf_dataset(hf)
    assert hf.columns.audio == "audio" and hf.columns.speaker == "speaker" and hf.hub_id is None
    assert scan.labels == EMOTIONS and not scan.problems and not scan.warnings
    assert scan.records[3].path == "hf://emo/train/3" and audio_location(scan.records[3].path) == ("train", 3)
    _assert_matches(hf, scan, clips, splits=["train"] * 12)
    assert next(iter_audio(hf, scan.records[:1]))["bytes"]  # from the dataset, not from the files
    check_split_columns(hf, "speaker")


def test_a_datasetdict_keeps_its_own_splits_and_a_subset_of_records_reads_the_right_rows(clips, tmp_path):
    parts = {"train": clips[:6], "validation": clips[6:9], "test": clips[9:]}
    datasets.DatasetDict({name: _dataset(rows, class_label=False) for name, rows in parts.items()}).save_to_disk(str(tmp_path / "dd"))
    hf = open_hf_dataset(str(tmp_path / "dd"))
    scan = scan_hf_dataset(hf)
    assert scan.labels is None  # text labels: the pipeline sorts them
    assert scan.records[6].path == "hf://dd/validation/0" and audio_location("hf://dd/validation/0") == ("validation", 0)
    _assert_matches(hf, scan, clips, splits=["train"] * 6 + ["val"] * 3 + ["test"] * 3)
    # The pipeline drops records (data.labels, skipped clips): the others still read their own rows, across splits.
    kept = [rec for rec in scan.records if rec.label != "angry"][::-1]
    by_path = {rec.path: path for rec, (path, _, _) in zip(scan.records, clips)}
    for rec, value in zip(kept, iter_audio(hf, kept, batch_rows=3)):
        assert np.array_equal(decode_hf_audio(value, rec.path).samples, decode_audio(by_path[rec.path]).samples)
    only = open_hf_dataset(str(tmp_path / "dd"), splits={"test": "test", "train": "train"})
    assert list(only.splits) == ["test", "train"] and len(scan_hf_dataset(only).records) == 9
    with pytest.raises(DataError) as err:
        open_hf_dataset(str(tmp_path / "dd"), splits={"dev": "val"})
    one_line(err, "'dev', which the dataset does not have", "its splits: train, validation, test")


def test_a_parquet_file_with_embedded_audio(clips, tmp_path):
    _dataset(clips).save_to_disk(str(tmp_path / "emo"))
    datasets.load_from_disk(str(tmp_path / "emo")).to_parquet(str(tmp_path / "emo.parquet"))
    hf = open_hf_dataset(str(tmp_path / "emo.parquet"))
    scan = scan_hf_dataset(hf)
    assert scan.labels == EMOTIONS and scan.records[0].path == "hf://emo.parquet/train/0"
    _assert_matches(hf, scan, clips, splits=["train"] * 12)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_jsonl_or_csv_file_with_relative_audio_paths_and_named_columns(clips, tmp_path, suffix):
    folder = clips[0][0].parent
    rows = [{"file": f"{folder.name}/{p.name}", "emotion": e, "spk": int(s[-1]), "note": "x"} for p, e, s in clips]
    table = tmp_path / f"clips{suffix}"
    if suffix == ".jsonl":
        table.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        table.write_text("file,emotion,spk,note\n" + "".join(f"{r['file']},{r['emotion']},{r['spk']},x\n" for r in rows))
    (tmp_path / folder.name).symlink_to(folder)  # the paths are relative to the file's folder, not the working directory
    hf = open_hf_dataset(str(table), label_column="emotion", speaker_column="spk")
    assert hf.columns.audio == "file"  # the one text column naming audio files
    scan = scan_hf_dataset(hf)
    assert scan.labels is None and [r.speaker for r in scan.records] == ["1"] * 6 + ["2"] * 6
    _assert_matches(hf, scan, [(p, e, str(int(s[-1]))) for p, e, s in clips])
    assert scan.warnings == []


def test_an_audiofolder_with_metadata_csv(clips, tmp_path):
    root = tmp_path / "af"
    lines = ["file_name,label,speaker"]
    for path, emotion, speaker in clips:
        (root / "audio").mkdir(parents=True, exist_ok=True)
        (root / "audio" / path.name).write_bytes(path.read_bytes())
        lines.append(f"audio/{path.name},{emotion},{speaker}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    hf = open_hf_dataset(str(root))
    scan = scan_hf_dataset(hf)
    _assert_matches(hf, scan, clips, splits=["train"] * 12)
    assert scan.records[0].path == "hf://af/train/0"


def test_scan_data_reads_the_config_keys_and_the_fingerprint_follows_the_data(clips, tmp_path):
    from types import SimpleNamespace

    copies = [(write_clip(tmp_path / p.name, samples=sf.read(str(p))[0], rate=sf.info(str(p)).samplerate), e) for p, e, _ in clips[:4]]
    table = tmp_path / "clips.jsonl"
    table.write_text("".join(json.dumps({"path": str(p), "label": e}) + "\n" for p, e in copies))
    data = SimpleNamespace(
        hf_dataset=str(table),
        hf_config=None,
        hf_revision=None,
        audio_column="path",
        label_column=None,
        speaker_column=None,
        session_column=None,
    )
    first = scan_data(data)
    assert len(first.records) == 4 and first.dataset.columns.speaker is None
    with pytest.raises(DataError) as err:
        check_split_columns(first.dataset, "speaker")
    one_line(
        err, "data.split=speaker needs each clip's speaker", "set data.speaker_column=COLUMN", "columns: path (string), label (string)"
    )
    assert scan_data(data).dataset.fingerprint == first.dataset.fingerprint  # stable
    write_clip(copies[0][0], seconds=0.4, seed=99)  # a clip the file names is rewritten: a new cache key
    assert scan_data(data).dataset.fingerprint != first.dataset.fingerprint
    assert open_hf_dataset(str(table), session_column="label").fingerprint != first.dataset.fingerprint  # the columns read count
    with pytest.raises(DataError) as err:
        open_hf_dataset(str(table), revision="v2")
    one_line(err, "data.hf_revision='v2' is for a Hub dataset, and this is a local path")


def test_unlabelled_rows_are_set_aside_and_unused_classlabel_names_are_a_warning(clips, tmp_path):
    ds = _dataset(clips[:6]).cast_column("label", datasets.ClassLabel(names=[*EMOTIONS, "happy"]))
    ds = ds.map(lambda row, i: {"label": -1 if i == 2 else row["label"]}, with_indices=True)
    ds.save_to_disk(str(tmp_path / "emo"))
    scan = scan_hf_dataset(open_hf_dataset(str(tmp_path / "emo")))
    assert len(scan.records) == 5 and scan.problems == [("hf://emo/train/2", "no label (column 'label' is -1 on this row)")]
    assert scan.labels == EMOTIONS and scan.warnings == ["emo: ClassLabel name(s) 'happy' have no rows; left out of the classes"]


def test_bad_columns_are_one_line_naming_the_key_and_the_columns(clips, tmp_path):
    _dataset(clips[:3]).rename_column("label", "emotion").save_to_disk(str(tmp_path / "emo"))
    with pytest.raises(DataError) as err:
        open_hf_dataset(str(tmp_path / "emo"))
    one_line(
        err,
        "no column 'label' for data.label_column",
        "set data.label_column=COLUMN",
        "audio (Audio), emotion (ClassLabel), speaker (string)",
    )
    with pytest.raises(DataError) as err:
        open_hf_dataset(str(tmp_path / "emo"), label_column="emotion", speaker_column="speakr")
    one_line(err, "no column 'speakr' for data.speaker_column", "did you mean 'speaker'?")
    with pytest.raises(DataError) as err:
        open_hf_dataset(str(tmp_path / "emo"), label_column="emotion", audio_column="speaker_id")
    one_line(err, "no column 'speaker_id' for data.audio_column")
    with pytest.raises(DataError) as err:
        open_hf_dataset(str(tmp_path / "emo"), label_column="audio")
    one_line(err, "data.label_column='audio' holds Audio values; a class needs a ClassLabel or text column")
    table = tmp_path / "no_audio.jsonl"
    table.write_text(json.dumps({"text": "hello", "label": "angry"}) + "\n")
    with pytest.raises(DataError) as err:
        open_hf_dataset(str(table))
    one_line(err, "no audio column", "set data.audio_column=COLUMN", "columns: text (string), label (string)")
    for missing in (tmp_path / "nowhere", tmp_path / "clips.parquet"):
        with pytest.raises(DataError) as err:
            open_hf_dataset(str(missing))
        one_line(err, "data.hf_dataset not found")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        open_hf_dataset(str(tmp_path / "empty"))
    one_line(err, "datasets can't read it")


def test_a_row_with_undecodable_bytes_raises_audio_error_for_that_row_only(clips, tmp_path):
    ds = datasets.Dataset.from_dict(
        {
            "audio": [{"bytes": clips[0][0].read_bytes(), "path": None}, {"bytes": b"not audio at all" * 8, "path": None}, None],
            "label": ["a", "b", "a"],
        },
        features=datasets.Features({"audio": datasets.Audio(), "label": datasets.Value("string")}),
    )
    ds.save_to_disk(str(tmp_path / "bad"))
    hf = open_hf_dataset(str(tmp_path / "bad"))
    scan = scan_hf_dataset(hf)
    good, garbage, empty = iter_audio(hf, scan.records)
    assert decode_hf_audio(good, scan.records[0].path).samples.size > 0
    with pytest.raises(AudioError) as err:
        decode_hf_audio(garbage, scan.records[1].path)
    assert err.value.path == "hf://bad/train/1" and err.value.reason == "not an audio file (format not recognised)"
    with pytest.raises(AudioError) as err:
        decode_hf_audio(empty, scan.records[2].path)
    assert err.value.reason == "no audio on this row (the audio column is empty)"
    with pytest.raises(AudioError) as err:
        decode_hf_audio({"bytes": None, "path": str(tmp_path / "gone.wav")}, "hf://x/train/0")
    assert err.value.reason == f"file not found ({tmp_path / 'gone.wav'})"


def test_a_hub_id_offline_is_one_line_saying_how_to_use_a_local_copy():
    with pytest.raises(DataError) as err:
        open_hf_dataset("someone/emotion-corpus")
    one_line(err, "data.hf_dataset='someone/emotion-corpus': can't reach the Hugging Face Hub", "save_to_disk(DIR)", "HF_HUB_OFFLINE=1")


@pytest.mark.parametrize("fmt,subtype,rate,channels", [("WAV", "PCM_16", 44100, 2), ("FLAC", "PCM_16", 22050, 1), ("MP3", None, 16000, 1)])
def test_decode_audio_bytes_equals_decode_audio_of_the_same_file(tmp_path, fmt, subtype, rate, channels):
    samples = np.random.default_rng(1).uniform(-0.5, 0.5, (rate, channels)).astype(np.float32)
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(str(path), samples, rate, format=fmt, subtype=subtype)
    for max_samples in (None, 4000):
        got, want = decode_audio_bytes(path.read_bytes(), "hf://x/train/0", 16000, max_samples), decode_audio(path, 16000, max_samples)
        assert got.num_samples == want.num_samples and got.truncated == want.truncated and np.array_equal(got.samples, want.samples)


def test_decode_audio_bytes_gives_decode_audios_reasons(tmp_path):
    buffer = io.BytesIO()
    sf.write(buffer, np.full(1600, 0.1, np.float32), 16000, format="WAV", subtype="PCM_16")
    whole = buffer.getvalue()
    (tmp_path / "cut.wav").write_bytes(whole[: len(whole) // 2])
    cut = decode_audio_bytes(whole[: len(whole) // 2], "hf://x/train/1")
    assert cut.truncated == decode_audio(tmp_path / "cut.wav").truncated and cut.truncated.startswith(
        "truncated: the header declares 0.1 s"
    )
    for data, reason in (
        (b"", "empty (0 bytes)"),
        (b"RIFF" + b"\0" * 40, None),
        (b"\x00\x01" * 100, "not an audio file (format not recognised)"),
    ):
        with pytest.raises(AudioError) as err:
            decode_audio_bytes(data, "hf://x/train/2")
        assert err.value.path == "hf://x/train/2" and (reason is None or err.value.reason == reason)
        if reason is None:
            (tmp_path / "bad.wav").write_bytes(data)
            with pytest.raises(AudioError) as from_file:
                decode_audio(tmp_path / "bad.wav")
            assert err.value.reason == from_file.value.reason


def test_a_missing_local_path_that_looks_like_a_hub_id_says_it_is_not_there(tmp_path, monkeypatch):
    # "data/corpus" with data/ here but no corpus in it (a typo, or a run evaluated from another folder):
    # the one line names the local folder it looked in before the Hub's reason.
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        open_hf_dataset("data/corpus")
    one_line(err, "data.hf_dataset='data/corpus': no such file or folder in", str(tmp_path / "data"), "can't reach the Hugging Face Hub")


def test_hf_config_on_a_save_to_disk_folder_or_a_data_file_is_one_line_not_ignored(clips, tmp_path):
    # load_from_disk and a single parquet/csv file have no configurations: data.hf_config=... must not be dropped silently.
    ds = datasets.Dataset.from_dict(
        {"audio": [str(clips[0][0])], "label": ["a"]},
        features=datasets.Features({"audio": datasets.Audio(), "label": datasets.Value("string")}),
    )
    ds.save_to_disk(str(tmp_path / "saved"))
    ds.to_parquet(str(tmp_path / "rows.parquet"))
    for source, kind in ((tmp_path / "saved", "save_to_disk folder"), (tmp_path / "rows.parquet", "data file")):
        with pytest.raises(DataError) as err:
            open_hf_dataset(str(source), config="clean")
        one_line(err, "data.hf_config='clean' picks a configuration", f"a {kind} has none", "leave data.hf_config unset")
