"""Dimensional emotion (data.targets=dimensional|both): the CCC against a numpy reference and its edge cases, the losses,
ratings through the data layer (a bad value set aside and reported, a missing column one line), the demo corpus's
ratings, tiny dimensional and ``both`` runs through the real recipe, and predict / export round trips."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SPEAKER_PATTERN, TINY_BILSTM, assert_one_line_error, run_recipe, ser_dist_cli

from ser_dist.config import Data, Experiment, Loss, Train, cli
from ser_dist.data.records import DataError
from ser_dist.errors import ConfigError
from ser_dist.losses import DimensionalConcordanceLoss, TargetLoss, build_loss, build_objective, concordance_correlation
from ser_dist.metrics import concordance, dimension_metrics, pearson
from ser_dist.models import SEROutput

NAMES = ["arousal", "valence", "dominance"]


def numpy_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin (1989), written out: population moments."""
    sxy = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * sxy / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


# ---- the CCC and the losses -------------------------------------------------------------------------------


def test_ccc_matches_numpy_on_random_data_in_torch_and_in_the_metrics():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(200, 3))
    predicted = 0.6 * truth + rng.normal(scale=0.7, size=(200, 3)) + [0.1, -0.3, 0.0]
    expected = [numpy_ccc(predicted[:, k], truth[:, k]) for k in range(3)]
    ours = concordance_correlation(torch.tensor(predicted), torch.tensor(truth)).numpy()
    assert ours == pytest.approx(expected, abs=1e-5)
    assert [concordance(predicted[:, k], truth[:, k]) for k in range(3)] == pytest.approx(expected, abs=1e-12)
    scores = dimension_metrics(predicted, truth, NAMES)
    assert [scores[f"ccc_{name}"] for name in NAMES] == pytest.approx(expected, abs=1e-12)
    assert scores["ccc_mean"] == pytest.approx(np.mean(expected))
    assert scores["pearson_arousal"] == pytest.approx(np.corrcoef(predicted[:, 0], truth[:, 0])[0, 1])
    assert scores["mae_valence"] == pytest.approx(np.mean(np.abs(predicted[:, 1] - truth[:, 1])))


def test_ccc_edge_cases_constant_perfect_and_shifted_or_scaled():
    y = np.linspace(0.0, 1.0, 50)
    assert concordance(np.full(50, 0.5), y) == 0.0  # a constant prediction agrees with nothing
    assert pearson(np.full(50, 0.5), y) == 0.0
    assert concordance(y, y) == pytest.approx(1.0)
    shift = 0.3
    assert concordance(y + shift, y) == pytest.approx(2 * y.var() / (2 * y.var() + shift**2))  # Pearson would say 1
    assert pearson(y + shift, y) == pytest.approx(1.0) and pearson(2 * y, y) == pytest.approx(1.0)
    assert concordance(2 * y, y) < 1.0
    assert concordance(np.ones(5), np.ones(5)) == 1.0  # the same constant: perfect agreement
    t = torch.tensor(y)[:, None]
    assert concordance_correlation(torch.full_like(t, 0.5), t).item() == pytest.approx(0.0, abs=1e-6)
    assert concordance_correlation(t, t).item() == pytest.approx(1.0, abs=1e-6)
    assert concordance_correlation(t + shift, t).item() == pytest.approx(concordance(y + shift, y), abs=1e-5)


def test_the_ccc_loss_is_one_minus_the_mean_ccc_and_trains_a_batch_of_one_to_nothing():
    rng = np.random.default_rng(1)
    predicted = torch.tensor(rng.normal(size=(16, 3)), requires_grad=True)
    truth = torch.tensor(rng.normal(size=(16, 3)))
    loss = DimensionalConcordanceLoss()(predicted, truth)
    expected = 1 - np.mean([numpy_ccc(predicted.detach().numpy()[:, k], truth.numpy()[:, k]) for k in range(3)])
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    loss.backward()
    assert torch.isfinite(predicted.grad).all() and predicted.grad.abs().sum() > 0
    single = torch.zeros(1, 3, requires_grad=True)
    assert DimensionalConcordanceLoss()(single, torch.ones(1, 3)).item() == pytest.approx(1.0)  # no variance in a batch of 1


def test_the_objective_of_each_target_kind():
    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 1, 0])
    predicted, truth = torch.tensor([[0.1], [0.5], [0.9]]), torch.tensor([[0.2], [0.4], [1.0]])
    output = SEROutput(logits, None, predicted)
    ce = torch.nn.functional.cross_entropy(logits, labels)
    ccc = 1 - concordance_correlation(predicted, truth).mean()
    mse = torch.nn.functional.mse_loss(predicted, truth)
    classes = build_loss(Loss(), 2)
    assert build_objective(Loss(), "categorical", classes)(output, labels).item() == pytest.approx(ce.item())
    assert build_objective(Loss(), "dimensional", None)(output, labels, truth).item() == pytest.approx(ccc.item(), abs=1e-6)
    both = build_objective(Loss(dimension_weight=0.5), "both", classes)(output, labels, truth)
    assert both.item() == pytest.approx(ce.item() + 0.5 * ccc.item(), abs=1e-6)
    assert build_objective(Loss(dimension_loss="mse"), "dimensional", None)(output, labels, truth).item() == pytest.approx(mse.item())
    assert isinstance(build_objective(Loss(), "both", classes), TargetLoss)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.metric=ccc_mean"], "train.metric=ccc_mean scores dimensions"),
        (["data.targets=dimensional"], "train.metric=ua scores classes, and data.targets=dimensional has none"),
        (["data.targets=dimensional", "train.metric=loss", "loss.dimension_weight=0.5"], "under data.targets=both only"),
        (["data.targets=both", "loss.name=aam"], "a cosine classifier"),
        (["data.targets=emotions"], "data.targets='emotions' is not one of categorical, dimensional, both"),
        (["data.targets=both", "data.dimension_columns=arousal,arousal"], "names 'arousal' twice"),
        (["data.targets=both", "data.dimension_columns=label"], "'label' is a manifest's own column"),
        (["data.targets=both", "data.dimension_range=[5,1]"], "must be [low, high] with low < high"),
        (["data.targets=both", "loss.dimension_loss=mae"], "loss.dimension_loss='mae' is not one of ccc, mse"),
    ],
)
def test_settings_that_contradict_the_targets_fail_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        cli(Experiment(data=Data(root=".")), overrides)


# ---- ratings through the data layer -----------------------------------------------------------------------


def rated_manifest(corpus: Path, out: Path, edit=None) -> Path:
    """The demo corpus's manifest, rows edited by ``edit(rows)``, written to ``out`` (paths kept relative to ``corpus``)."""
    with open(corpus / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["path"] = str(corpus / row["path"])
    if edit is not None:
        edit(rows)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def spoil_two_rows(rows: list[dict]) -> None:
    rows[0]["arousal"] = ""
    rows[1]["valence"] = "high"


def test_ratings_travel_into_the_cache_and_batches_and_bad_values_are_set_aside(demo_corpus, tmp_path):
    from ser_dist.data.dataset import AudioClips, cache_key, collate_waveforms
    from ser_dist.data.pipeline import prepare_data

    manifest = rated_manifest(demo_corpus, tmp_path / "clips.csv", spoil_two_rows)
    data = Data(manifest=str(manifest), targets="both", dimension_range=[1.0, 5.0], cache_dir=str(tmp_path / "cache"))
    prepared = prepare_data(data, seed=0)
    reasons = {Path(row["path"]).name: row["reason"] for row in prepared.report["set_aside_files"]}
    assert len(reasons) == 2 and "no 'arousal' rating" in reasons["spk01_s01_anger_t1.wav"]
    assert "'valence' rating 'high' is not a number" in reasons["spk01_s02_anger_t1.wav"]
    assert len(prepared.records) == 72 - 2 and prepared.dimension_names == NAMES
    assert set(prepared.report["dimensions"]["splits"]) == {"train", "val", "test"}
    with open(manifest, newline="") as f:
        first = next(row for row in csv.DictReader(f) if row["path"] == prepared.records[0].path)
    expected = [(float(first[name]) - 1.0) / 4.0 for name in NAMES]  # [1, 5] mapped to [0, 1]
    assert prepared.records[0].dimensions == pytest.approx(expected)
    clips = AudioClips(prepared.dataset, {name: i for i, name in enumerate(prepared.label_names)})
    batch = collate_waveforms([clips[0], clips[1]])
    assert batch["dimensions"].dtype == torch.float32 and batch["dimensions"].shape == (2, 3)
    assert batch["dimensions"][0].tolist() == pytest.approx(expected, abs=1e-6)
    # the ratings are in the decode cache's key: other ratings, another entry
    changed = [r for r in prepared.records]
    key = cache_key(changed, sample_rate=16000, max_samples=160000)
    changed[0] = type(changed[0])(**{**vars(changed[0]), "dimensions": (0.0, 0.0, 0.0)})
    assert cache_key(changed, sample_rate=16000, max_samples=160000) != key
    categorical = prepare_data(Data(manifest=str(manifest), cache_dir=str(tmp_path / "cache")), seed=0)
    assert "dimensions" not in categorical.dataset.column_names and categorical.records[0].dimensions is None


def test_a_missing_column_or_a_folder_without_ratings_is_one_line(demo_corpus, tmp_path):
    from ser_dist.data.pipeline import prepare_data

    manifest = rated_manifest(demo_corpus, tmp_path / "clips.csv")
    with pytest.raises(DataError, match=r"no 'power' column for data.dimension_columns .*set data.dimension_columns=") as err:
        prepare_data(Data(manifest=str(manifest), targets="dimensional", dimension_columns=["arousal", "power"]), seed=0)
    assert "\n" not in str(err.value)
    # data.root=DIR: a folder with the demo corpus's manifest.csv reads the ratings from it, and says so
    read = prepare_data(Data(root=str(demo_corpus), targets="dimensional", cache_dir=str(tmp_path / "cache")), seed=0)
    assert read.report["warnings"] == [
        f"data.targets=dimensional: read the clips and their ratings from {demo_corpus / 'manifest.csv'} (data.manifest)"
    ]
    assert all(rec.dimensions is not None for rec in read.records)
    extra = tmp_path / "with_extra"
    shutil.copytree(demo_corpus, extra)
    shutil.copy(next(iter(sorted((extra / "Anger").glob("*.wav")))), extra / "Anger" / "unrated.wav")
    again = prepare_data(Data(root=str(extra), targets="dimensional", cache_dir=str(tmp_path / "cache")), seed=0)
    assert [Path(e["path"]).name for e in again.report["set_aside_files"]] == ["unrated.wav"]  # reported, not dropped silently
    assert "not listed in manifest.csv" in again.report["set_aside_files"][0]["reason"]
    bare = tmp_path / "bare"
    shutil.copytree(demo_corpus / "Anger", bare / "Anger")
    shutil.copytree(demo_corpus / "Sad", bare / "Sad")
    with pytest.raises(DataError, match=re.escape("data.manifest=FILE")) as err:
        prepare_data(Data(root=str(bare), targets="dimensional"), seed=0)
    assert "\n" not in str(err.value)


def test_a_manifest_of_ratings_alone_needs_no_label(demo_corpus, tmp_path):
    from ser_dist.data.pipeline import prepare_data

    def drop_labels(rows):
        for row in rows:
            del row["label"]

    manifest = rated_manifest(demo_corpus, tmp_path / "ratings.csv", drop_labels)
    prepared = prepare_data(Data(manifest=str(manifest), targets="dimensional", cache_dir=str(tmp_path / "cache")), seed=0)
    assert prepared.label_names == [] and len(prepared.records) == 72 and prepared.records[0].dimensions is not None


# ---- the demo corpus's ratings ----------------------------------------------------------------------------


def test_the_demo_ratings_are_deterministic_on_the_scale_and_follow_the_emotions(demo_corpus):
    from ser_dist.data.demo_ratings import DIMENSIONS, clip_ratings

    with open(demo_corpus / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 72 and list(rows[0]) == ["path", "label", "speaker", *DIMENSIONS]
    assert all((demo_corpus / row["path"]).is_file() for row in rows)
    values = np.array([[float(row[name]) for name in DIMENSIONS] for row in rows])
    assert values.min() >= 1.0 and values.max() <= 5.0 and len(np.unique(values[:, 0])) > 5
    assert clip_ratings(1, 0, 0, 0, 1) == {name: float(rows[0][name]) for name in DIMENSIONS}  # seed 1: the fixture's
    mean = {label: values[[row["label"] == label for row in rows]].mean(0) for label in ("Anger", "Happy", "Sad", "Fear")}
    assert mean["Anger"][0] > mean["Sad"][0] + 1.5  # aroused vs calm
    assert mean["Happy"][1] > mean["Anger"][1] + 1.5  # pleasant vs not
    assert mean["Anger"][2] > mean["Fear"][2] + 0.5  # dominant vs submissive


def test_the_demo_ratings_are_learnable_across_speakers_but_not_trivial(tmp_path):
    """Utterance MFCC statistics + ridge regression, speakers held out: arousal CCC well above 0, below perfect."""
    torchaudio = pytest.importorskip("torchaudio")
    import soundfile as sf
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ser_dist.data.demo import make_demo_corpus

    root = tmp_path / "corpus"
    make_demo_corpus(root, num_speakers=10, num_sentences=4, seed=0, workers=2)
    mfcc = torchaudio.transforms.MFCC(sample_rate=16000, n_mfcc=40, melkwargs=dict(n_fft=400, hop_length=160, n_mels=64))
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    features = []
    for row in rows:
        coefficients = mfcc(torch.from_numpy(sf.read(str(root / row["path"]), dtype="float32")[0]))
        features.append(torch.cat([coefficients.mean(dim=1), coefficients.std(dim=1)]).numpy())
    features, ratings = np.stack(features), np.array([[float(row[name]) for name in NAMES] for row in rows])
    predicted = np.zeros_like(ratings)
    for train, test in GroupKFold(n_splits=5).split(features, ratings, [row["speaker"] for row in rows]):
        predicted[test] = make_pipeline(StandardScaler(), Ridge(alpha=30.0)).fit(features[train], ratings[train]).predict(features[test])
    scores = dimension_metrics(predicted, ratings, NAMES)
    assert 0.5 < scores["ccc_arousal"] < 0.95, scores
    assert 0.2 < scores["ccc_mean"] < 0.9, scores


# ---- tiny runs through the real recipe, predict and export ----------------------------------------------


def tiny_run(corpus: Path, out: Path, manifest: Path, *extra: str):
    return run_recipe(
        "bilstm_mfcc_dimensional.py",
        f"data.manifest={manifest}",
        f"train.output_dir={out}",
        "train.epochs=2",
        "train.seed=3",
        "train.report_to=[]",
        *TINY_BILSTM,
        *extra,
        env={"OMP_NUM_THREADS": "1"},
    )


@pytest.fixture(scope="module")
def dimensional_run(demo_corpus, tmp_path_factory):
    work = tmp_path_factory.mktemp("dimensional")
    manifest = rated_manifest(demo_corpus, work / "clips.csv", spoil_two_rows)
    return work / "run", tiny_run(demo_corpus, work / "run", manifest)


@pytest.fixture(scope="module")
def both_run(demo_corpus, tmp_path_factory):
    work = tmp_path_factory.mktemp("both")
    manifest = rated_manifest(demo_corpus, work / "clips.csv")
    return work / "run", tiny_run(
        demo_corpus, work / "run", manifest, "data.targets=both", "loss.dimension_weight=0.5", "train.mixup_alpha=0.4"
    )


def test_a_tiny_dimensional_run_reports_the_ccc_of_every_dimension(dimensional_run):
    out, result = dimensional_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    for name in [*NAMES, "mean"]:
        for kind in ("ccc", "pearson", "mae"):
            assert np.isfinite(test[f"{kind}_{name}"]), (kind, name)
    assert "unweighted_accuracy" not in test and test["dimensions"] == NAMES and test["num_examples"] > 0
    assert "best_val_ccc_mean" in metrics and metrics["data"]["set_aside_files"] == 2
    report = json.loads((out / "data_report.json").read_text())
    assert sorted(Path(r["path"]).name for r in report["set_aside_files"]) == ["spk01_s01_anger_t1.wav", "spk01_s02_anger_t1.wav"]
    assert (out / "dimensions_scatter.png").stat().st_size > 0 and not (out / "confusion_matrix.png").exists()
    history = (out / "training_history.csv").read_text().splitlines()[0]
    assert "val_ccc_arousal" in history and "val_ccc_mean" in history and "val_unweighted_accuracy" not in history
    assert re.search(r"val CCC mean -?\d\.\d{3} \(arousal -?\d\.\d{3}, valence", result.stdout)
    assert "loss ccc over arousal, valence, dominance" in result.stdout
    with open(out / "test_predictions.csv") as f:
        assert next(csv.reader(f)) == ["path", "label", *[f"{kind}_{name}" for name in NAMES for kind in ("true", "pred")]]
    card = (out / "model" / "README.md").read_text()
    assert "- ccc" in card and "type: ccc" in card and "| arousal |" in card


def test_a_tiny_both_run_reports_classes_and_dimensions(both_run):
    out, result = both_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    test = json.loads((out / "metrics.json").read_text())["test"]
    assert {"unweighted_accuracy", "ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean"} <= set(test)
    assert (out / "confusion_matrix.png").exists() and (out / "dimensions_scatter.png").exists()
    assert "loss ce + 0.5 x ccc over arousal, valence, dominance" in result.stdout
    assert re.search(r"val UA \d+\.\d\d WA \d+\.\d\d F1 \d+\.\d\d; CCC mean", result.stdout)


@pytest.mark.parametrize("which", ["dimensional_run", "both_run"])
def test_predict_in_a_fresh_process_gives_the_runs_test_predictions(which, request):
    out, result = request.getfixturevalue(which)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(out / "test_predictions.csv") as f:
        logged = list(csv.DictReader(f))[:4]
    predicted = ser_dist_cli("predict", str(out), *[row["path"] for row in logged], "--json")
    assert predicted.returncode == 0, predicted.stderr
    for row, prediction in zip(logged, json.loads(predicted.stdout)):
        assert list(prediction["dimensions"]) == NAMES
        for name in NAMES:
            assert prediction["dimensions"][name] == pytest.approx(float(row[f"pred_{name}"]), abs=1e-4)
        if which == "both_run":
            assert prediction["label"] == row["predicted"]
        else:
            assert "label" not in prediction and "probabilities" not in prediction
    table = ser_dist_cli("predict", str(out), logged[0]["path"])
    assert table.returncode == 0 and all(name in table.stdout.splitlines()[0] for name in NAMES)
    rows = ser_dist_cli("predict", str(out), logged[0]["path"], "--csv").stdout.splitlines()
    assert rows[0].endswith("arousal,valence,dominance") and len(rows) == 2


def test_evaluate_refuses_a_dimensional_model_in_one_line(dimensional_run):
    out, _ = dimensional_run
    assert_one_line_error(ser_dist_cli("evaluate", str(out)), "ser-dist evaluate scores a model's classes", "metrics.json")


def test_an_ssl_export_of_dimensions_is_a_stock_transformers_regressor(tmp_path):
    from transformers import AutoModelForAudioClassification

    from ser_dist.config import apply_overrides
    from ser_dist.models import build_model
    from ser_dist.serving.export import export_model
    from ser_dist.serving.inference import EmotionClassifier

    overrides = {"model.backbone": "wav2vec2_tiny_random", "model.pretrained": False, "data.targets": "dimensional"}
    exp = apply_overrides(Experiment(train=Train(metric="ccc_mean")), {**overrides, "data.max_seconds": 1.0, "data.root": "."})
    model = build_model(exp, 0).eval()
    directory = export_model(model, model.state_dict(), tmp_path / "model", exp=exp, label_names=[])
    config = json.loads((directory / "config.json").read_text())
    assert config["problem_type"] == "regression" and list(config["id2label"].values()) == NAMES
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, 16000).astype(np.float32)
    ours = EmotionClassifier.from_pretrained(directory).predict_waveforms([audio])[0]
    stock = AutoModelForAudioClassification.from_pretrained(directory).eval()
    with torch.no_grad():
        values = stock(torch.from_numpy((audio - audio.mean()) / np.sqrt(audio.var() + 1e-7))[None]).logits[0].numpy()
    assert ours.shape == (3,) and np.allclose(values, ours, atol=1e-4)


def test_a_speaker_pattern_still_works_with_a_manifest_without_speakers(demo_corpus, tmp_path):
    from ser_dist.data.pipeline import prepare_data

    def drop_speakers(rows):
        for row in rows:
            del row["speaker"]

    manifest = rated_manifest(demo_corpus, tmp_path / "clips.csv", drop_speakers)
    data = Data(manifest=str(manifest), targets="dimensional", speaker_pattern=SPEAKER_PATTERN, cache_dir=str(tmp_path / "cache"))
    assert {rec.speaker for rec in prepare_data(data, seed=0).records} == {"spk01", "spk02", "spk03", "spk04"}


def test_cv_pools_the_ccc_of_every_fold(demo_corpus, tmp_path):
    manifest = rated_manifest(demo_corpus, tmp_path / "clips.csv")
    out = tmp_path / "cv"
    result = ser_dist_cli(
        "cv",
        "recipes/bilstm_mfcc_dimensional.py",
        f"data.manifest={manifest}",
        "data.split=speaker_kfold",
        "data.num_folds=2",
        "train.epochs=1",
        "train.report_to=[]",
        *TINY_BILSTM,
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads((out / "cv_summary.json").read_text())
    assert summary["num_folds"] == 2 and len(summary["ccc_mean"]["folds"]) == 2
    assert "| fold | test clips | CCC arousal | CCC valence | CCC dominance | CCC mean |" in (out / "cv_summary.md").read_text()


def test_the_ratings_baseline_benchmark_runs_on_a_small_demo_corpus(demo_corpus, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "demo_ratings_baseline", Path(__file__).parents[1] / "benchmarks" / "demo_ratings_baseline.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main([str(demo_corpus), "--folds", "2", "--seed", "1"])
    assert set(results) == {"ridge", "class_means", "noiseless"}
    assert results["noiseless"]["ccc_arousal"] > 0.8  # the raters' noise is what keeps it from 1
    assert "72 clips, 4 speakers, 2 speaker-independent folds" in capsys.readouterr().out


def test_a_grid_of_dimensional_recipes_is_refused_before_anything_trains(tmp_path):
    from ser_dist.crossval import plan_grid
    from ser_dist.errors import UserError

    recipe = str(Path(__file__).parent.parent / "recipes" / "bilstm_mfcc_dimensional.py")
    with pytest.raises(UserError, match="data.targets=dimensional has no class metrics for the grid's table; run ser-dist cv"):
        plan_grid([recipe], [f"data.root={tmp_path}"], str(tmp_path / "grid"))
    assert not (tmp_path / "grid").exists()
