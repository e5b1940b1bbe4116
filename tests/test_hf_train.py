"""Training, preparing and evaluating on Hugging Face datasets (data.hf_dataset) through the real entry points.

Every form a user may hand over trains the tiny BiLSTM recipe: a save_to_disk Dataset (ClassLabel, speaker
column), a DatasetDict with its own splits (data.split=fixed), a parquet file, an audiofolder with
metadata.csv. The demo corpus as a folder and as a dataset give the same split and the same test scores.
Bad data is one line, or a skipped row listed by split and row.
"""

import csv
import json
import shutil

import pytest
from conftest import SPEAKER_PATTERN, TINY_BILSTM, assert_one_line_error, one_line, run_entry_point, run_recipe, ser_dist_cli

from ser_dist.config import Data
from ser_dist.data.demo_hf import save_as_hf_dataset
from ser_dist.data.pipeline import prepare_data
from ser_dist.data.records import DataError
from ser_dist.errors import ConfigError, UserError

datasets = pytest.importorskip("datasets")
pytestmark = pytest.mark.usefixtures("hf_offline")  # in this process too (conftest)

# Small and fast: 1 s clips, 1 epoch, no TensorBoard; the same for every run so that they compare.
FAST = [*TINY_BILSTM, "data.max_seconds=1.0", "model.frame_stride=2", "train.epochs=1", "train.seed=3", "train.report_to=[]"]


@pytest.fixture(scope="module")
def hf_env(tmp_path_factory):
    """Offline, with datasets' converted copies (parquet, audiofolder) under a temporary HF_HOME; one torch thread
    (two intra-op threads on two busy cores make a tiny run's epoch 20-400x slower, and every run here compares alike)."""
    home = tmp_path_factory.mktemp("hf_home")
    return {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_TOKEN": "", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def demo_hf(demo_corpus, tmp_path_factory):
    """The demo corpus as a save_to_disk Dataset: rows in the folder scan's order, ClassLabel, speaker column."""
    out = tmp_path_factory.mktemp("hf") / "demo_hf"
    save_as_hf_dataset(demo_corpus, out)
    return out


def train(tmp_path_factory, name: str, *data: str, env: dict) -> tuple:
    out = tmp_path_factory.mktemp(name) / "run"
    result = run_recipe("bilstm_mfcc_ce.py", *data, f"train.output_dir={out}", *FAST, env=env)
    assert result.returncode == 0 and (out / "metrics.json").exists(), result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


@pytest.fixture(scope="module")
def folder_run(demo_corpus, tmp_path_factory, hf_env):
    return train(tmp_path_factory, "folder", f"data.root={demo_corpus}", f"data.speaker_pattern={SPEAKER_PATTERN}", env=hf_env)[0]


@pytest.fixture(scope="module")
def hf_run(demo_hf, tmp_path_factory, hf_env):
    """``ser-dist prepare`` into a cache of its own, then the run on the same settings: (run, prepare's output, cache)."""
    cache = tmp_path_factory.mktemp("hf_cache")
    data = [f"data.hf_dataset={demo_hf}", f"data.cache_dir={cache}"]
    prepared = run_entry_point(["-m", "ser_dist.cli", "prepare", "recipes/bilstm_mfcc_ce.py", *data, *FAST], env=hf_env)
    assert prepared.returncode == 0, prepared.stderr
    built = {entry.name: (entry / "meta.json").stat().st_mtime_ns for entry in cache.iterdir() if (entry / "meta.json").exists()}
    run, _ = train(tmp_path_factory, "hf", *data, env=hf_env)
    return run, prepared.stdout, cache, built


def split_rows(run) -> list[dict]:
    with open(run / "split.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_demo_corpus_as_a_folder_and_as_a_dataset_give_the_same_split_and_scores(folder_run, hf_run):
    hf, _, _, _ = hf_run
    folder_rows, hf_rows = split_rows(folder_run), split_rows(hf)
    # Row i of the dataset is clip i of the folder scan: the same clip goes to the same split.
    assert [r["path"] for r in hf_rows] == [f"hf://demo_hf/train/{i}" for i in range(len(folder_rows))]
    assert [(r["label"], r["speaker"], r["split"]) for r in hf_rows] == [(r["label"], r["speaker"], r["split"]) for r in folder_rows]
    assert json.loads((hf / "metrics.json").read_text())["test"] == json.loads((folder_run / "metrics.json").read_text())["test"]
    predictions = [(run / "test_predictions.csv").read_text().splitlines() for run in (hf, folder_run)]
    assert [line.split(",", 1)[1] for line in predictions[0]] == [
        line.split(",", 1)[1] for line in predictions[1]
    ]  # every clip's probabilities
    report = json.loads((hf / "data_report.json").read_text())
    assert report["hf_dataset"].endswith("demo_hf") and report["hf"]["hub_id"] is None and report["hf"]["columns"]["speaker"] == "speaker"


def test_prepare_prints_the_report_and_the_run_reuses_its_cache(hf_run):
    run, printed, cache, built = hf_run
    assert "decoded 72 clips into" in printed
    for fragment in ("72 clips used of 72 found", "class", "Anger", "speakers:", "train: 2 (", "p5 / p50 / p95 / max"):
        assert fragment in printed, fragment
    after = {entry.name: (entry / "meta.json").stat().st_mtime_ns for entry in cache.iterdir() if (entry / "meta.json").exists()}
    assert len(built) == 1 and after == built  # the run found prepare's entry: nothing was built again
    report = json.loads((run / "data_report.json").read_text())
    assert f"train: {len(report['splits']['train']['speakers'])} (" in printed


@pytest.fixture
def one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the runs had (hf_env)
    yield
    torch.set_num_threads(threads)


def test_evaluate_data_hf_dataset_reproduces_the_test_split(hf_run, demo_hf, tmp_path, one_torch_thread):
    run, _, _, _ = hf_run
    from ser_dist.cli import main

    main(["evaluate", str(run), "--data", f"hf_dataset={demo_hf}", "split=speaker", "--split", "test", "--out", str(tmp_path / "eval")])
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    trained = json.loads((run / "metrics.json").read_text())["test"]
    for key in ("unweighted_accuracy", "weighted_accuracy", "macro_f1", "confusion_matrix", "num_examples"):
        assert evaluated["test"][key] == trained[key], key
    assert evaluated["data"]["hf_dataset"] == str(demo_hf)
    main(["evaluate", str(run), "--out", str(tmp_path / "own")])  # the run's split.csv: its rows read back from the dataset
    assert json.loads((tmp_path / "own" / "metrics.json").read_text())["test"] == trained


def test_evaluate_run_refuses_a_dataset_changed_since_the_run(hf_run, demo_hf, tmp_path, one_torch_thread):
    # split.csv names rows by index: the same dataset re-saved with its rows reordered would pair the run's labels
    # with other rows' audio and score silently wrong; it is one line naming the change instead.
    run, _, _, _ = hf_run
    from ser_dist.cli import main

    changed = tmp_path / "changed" / demo_hf.name
    rows = datasets.load_from_disk(str(demo_hf))
    rows.select(list(reversed(range(len(rows))))).save_to_disk(str(changed))
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    for saved in (copy / "config.yaml", copy / "model" / "ser_dist.json", copy / "model" / "config.json"):  # the run, moved beside it
        saved.write_text(saved.read_text().replace(str(demo_hf), str(changed)))
    with pytest.raises(UserError) as err:
        main(["evaluate", str(copy), "--out", str(tmp_path / "eval")])
    one_line(err, f"data.hf_dataset={changed}: the dataset changed since the run", "--data hf_dataset=")
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_a_second_prepare_is_a_cache_hit(hf_run, demo_hf, capsys, one_torch_thread):
    _, _, cache, built = hf_run
    from ser_dist.cli import main

    main(["prepare", "recipes/bilstm_mfcc_ce.py", f"data.hf_dataset={demo_hf}", f"data.cache_dir={cache}", *FAST])
    assert f"audio cache hit: {cache / next(iter(built))}" in capsys.readouterr().out


def test_the_model_card_names_no_local_dataset(hf_run):
    from huggingface_hub.repocard import metadata_load

    run, _, _, _ = hf_run
    meta = metadata_load(run / "model" / "README.md")
    assert "datasets" not in meta and "base_model" not in meta and "demo_hf" not in json.dumps(meta)
    assert "a local Hugging Face dataset (`demo_hf`)" in (run / "model" / "README.md").read_text()


def test_the_model_card_of_a_hub_dataset_and_an_ssl_backbone():
    from ser_dist.serving.model_card import card_data

    experiment = {
        "data": {"hf_dataset": "someone/emotions", "split": "fixed"},
        "model": {"backbone": "hubert_large"},
        "loss": {"name": "ce"},
    }
    meta = {
        "experiment": experiment,
        "hf_dataset": {"hub_id": "someone/emotions", "license": "cc-by-4.0"},
        "test_metrics": {"unweighted_accuracy": 0.5},
    }
    card = card_data(meta).to_dict()
    assert card["datasets"] == ["someone/emotions"] and card["license"] == "cc-by-4.0"
    assert card["base_model"] == "facebook/hubert-large-ll60k"
    experiment["model"]["pretrained"] = False  # a random init starts from no checkpoint
    experiment["data"] = {"root": "/data/smallfolder", "split": "speaker"}
    card = card_data({"experiment": experiment}).to_dict()
    assert "datasets" not in card and "base_model" not in card and "smallfolder" not in json.dumps(card)


@pytest.fixture(scope="module")
def own_splits_run(demo_corpus, tmp_path_factory, hf_env):
    """A DatasetDict with train/validation/test by speaker, row 5 of train holding bytes that are no audio."""
    folder = tmp_path_factory.mktemp("dd")
    clean = save_as_hf_dataset(demo_corpus, folder / "clean", test_speakers=["spk04"], val_speakers=["spk03"])
    train_split = clean["train"].cast_column("audio", datasets.Audio(decode=False))
    train_split = train_split.map(
        lambda row, i: {"audio": {"bytes": b"not audio at all" * 8, "path": None} if i == 5 else row["audio"]}, with_indices=True
    ).cast_column("audio", datasets.Audio())
    datasets.DatasetDict({"train": train_split, "validation": clean["validation"], "test": clean["test"]}).save_to_disk(str(folder / "dd"))
    return train(tmp_path_factory, "fixed", f"data.hf_dataset={folder / 'dd'}", "data.split=fixed", env=hf_env)


def test_a_datasetdict_trains_on_its_own_splits_and_lists_the_undecodable_row(own_splits_run):
    run, result = own_splits_run
    rows = split_rows(run)
    assert {r["split"] for r in rows if r["speaker"] == "spk04"} == {"test"} and {r["split"] for r in rows if r["speaker"] == "spk03"} == {
        "val"
    }
    assert all(r["path"].startswith(f"hf://dd/{ {'train': 'train', 'val': 'validation', 'test': 'test'}[r['split']] }/") for r in rows)
    report = json.loads((run / "data_report.json").read_text())
    assert report["skipped_files"] == [
        {"path": "hf://dd/train/5", "split": "train", "row": 5, "reason": "not an audio file (format not recognised)"}
    ]
    assert report["num_used"] == 71 and "hf://dd/train/5: not an audio file" in result.stdout


@pytest.mark.parametrize("form", ["parquet", "audiofolder"])
def test_a_parquet_file_and_an_audiofolder_train(form, demo_corpus, demo_hf, tmp_path_factory, hf_env):
    folder = tmp_path_factory.mktemp(form)
    if form == "parquet":
        source = folder / "demo.parquet"
        datasets.load_from_disk(str(demo_hf)).to_parquet(str(source))  # the audio bytes embedded
    else:
        source = folder / "af"
        lines = ["file_name,label,speaker"]  # string labels: sorted, as a folder's
        for clip in sorted(demo_corpus.rglob("*.wav")):
            (source / "audio").mkdir(parents=True, exist_ok=True)
            shutil.copy(clip, source / "audio" / clip.name)
            lines.append(f"audio/{clip.name},{clip.parent.name},{clip.name.split('_')[0]}")
        (source / "metadata.csv").write_text("\n".join(lines) + "\n")
    run, _ = train(tmp_path_factory, form, f"data.hf_dataset={source}", env=hf_env)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["num_used"] == 72 and metrics["test"]["num_examples"] > 0
    assert {r["speaker"] for r in split_rows(run) if r["split"] == "test"}.isdisjoint(
        {r["speaker"] for r in split_rows(run) if r["split"] == "train"}
    )


def fail_before_decoding(monkeypatch):
    import ser_dist.data.dataset as dataset_module

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded audio before checking the dataset's columns")

    monkeypatch.setattr(dataset_module, "build_audio_dataset", no_decoding)


def test_bad_datasets_are_one_line_before_any_audio_is_decoded(demo_hf, tmp_path, monkeypatch):
    fail_before_decoding(monkeypatch)
    ds = datasets.load_from_disk(str(demo_hf))
    ds.remove_columns("audio").save_to_disk(str(tmp_path / "no_audio"))
    ds.rename_column("label", "emotion").save_to_disk(str(tmp_path / "emotion"))
    ds.remove_columns("speaker").save_to_disk(str(tmp_path / "no_speaker"))
    cases = [
        ({"hf_dataset": str(tmp_path / "no_audio")}, DataError, ["no audio column", "set data.audio_column=COLUMN"]),
        ({"hf_dataset": str(tmp_path / "emotion")}, DataError, ["no column 'label' for data.label_column", "emotion (ClassLabel)"]),
        (
            {"hf_dataset": str(tmp_path / "no_speaker")},
            DataError,
            ["data.split=speaker needs each clip's speaker", "data.speaker_column=COLUMN"],
        ),
        (
            {"hf_dataset": str(demo_hf), "split": "fixed"},
            DataError,
            ["data.split=fixed uses the dataset's own splits, and it has no test split (its splits: train)"],
        ),
        ({"hf_dataset": str(demo_hf), "root": "/data/x"}, ConfigError, ["data.root=/data/x: they name two corpora"]),
        (
            {"hf_dataset": str(demo_hf), "speaker_pattern": "^(spk)"},
            ConfigError,
            ["set data.speaker_pattern=null (and data.speaker_column=COLUMN)"],
        ),
        ({"root": "/data/x", "audio_column": "wav"}, ConfigError, ["data.audio_column=wav is for a Hugging Face dataset"]),
    ]
    for keys, kind, fragments in cases:
        with pytest.raises(kind) as err:
            prepare_data(Data(**keys), seed=0)
        one_line(err, *fragments)


def test_a_bad_dataset_on_the_command_line_is_one_line(demo_hf, tmp_path):
    datasets.load_from_disk(str(demo_hf)).remove_columns("speaker").save_to_disk(str(tmp_path / "no_speaker"))
    result = ser_dist_cli("prepare", "--data", f"hf_dataset={tmp_path / 'no_speaker'}", "split=leave_one_speaker_out", "fold=1")
    assert_one_line_error(result, "data.split=leave_one_speaker_out needs each clip's speaker", "or use data.split=stratified or fixed")


def test_the_decoding_pool_reads_its_jobs_a_window_at_a_time_and_keeps_their_order():
    from ser_dist.data import decode_pool

    pulled = []

    def jobs(count):
        for i in range(count):
            pulled.append(i)
            yield (-i,)

    results = decode_pool.decode_all(abs, jobs(10_000), 10_000, num_proc=2)  # abs: a picklable module-level function
    assert next(results) == 0
    window = 2 * decode_pool.IN_FLIGHT_PER_PROCESS * 32  # processes x chunks in flight x chunk size
    assert len(pulled) <= window + 32, len(pulled)  # not the 10,000 that ProcessPoolExecutor.map would submit
    assert list(results) == list(range(1, 10_000))


def test_a_dataset_decodes_the_same_in_a_pool_of_processes(demo_hf, tmp_path, monkeypatch):
    from ser_dist.data import decode_pool
    from ser_dist.data.dataset import build_audio_dataset
    from ser_dist.data.hf import scan_data

    scan = scan_data(Data(hf_dataset=str(demo_hf)))
    records = scan.records[::3]  # a subset, in order: each record still reads its own row
    one, _ = build_audio_dataset(records, sample_rate=16000, max_seconds=1.0, cache_dir=tmp_path / "one", hf=scan.dataset)
    monkeypatch.setattr(decode_pool, "MIN_CLIPS_PER_PROCESS", 1)  # a pool even for 24 clips
    pooled, _ = build_audio_dataset(records, sample_rate=16000, max_seconds=1.0, cache_dir=tmp_path / "two", hf=scan.dataset, num_proc=2)
    assert pooled["path"][:] == one["path"][:] == [rec.path for rec in records]
    assert pooled["audio"][:] == one["audio"][:]
