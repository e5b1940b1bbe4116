"""Model card validation and pushing to the Hub (HfApi mocked: no network), clean failures, the token never written."""

import hashlib
import json
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_entry_point

TOKEN = "hf_ThisIsATestTokenThatMustNeverBeWritten"
EXPORT_FILES = {"README.md", "config.json", "confusion_matrix.png", "model.safetensors", "ser_dist.json"}


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_model_card_passes_hub_validation(deploy_run):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard import metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    run, _ = deploy_run
    export = run / "model"
    assert EXPORT_FILES <= {p.name for p in export.iterdir()}
    card = ModelCard.load(export / "README.md")  # parses the YAML front matter into ModelCardData
    meta = metadata_load(export / "README.md")
    assert meta["library_name"] == card.data.library_name == "ser-dist"
    assert meta["pipeline_tag"] == "audio-classification"
    assert {"speech-emotion-recognition", "bilstm", "loss-ce"} <= set(meta["tags"])
    assert "datasets" not in meta and meta["metrics"]  # a local folder is never named as a Hub dataset (issue 17)
    name, results = model_index_to_eval_results(meta["model-index"])
    test = json.loads((run / "metrics.json").read_text())["test"]
    by_type = {r.metric_type: r for r in results}
    assert by_type["unweighted_accuracy"].metric_value == pytest.approx(test["unweighted_accuracy"], abs=1e-4)
    assert by_type["accuracy"].metric_value == pytest.approx(test["weighted_accuracy"], abs=1e-4)
    assert by_type["f1"].metric_value == pytest.approx(test["macro_f1"], abs=1e-4)
    assert all(r.task_type == "audio-classification" and r.dataset_split == "test" and r.dataset_config == "speaker" for r in results)
    assert results[0].dataset_args["speaker_independent"] is True
    body = card.text
    for fragment in (
        "Anger",
        "Neutral",
        "Intended use and limitations",
        "acted",
        "natural",
        "languages",
        "bias",
        "confusion_matrix.png",
        "## Data",
        "## Training",
        "speaker-independent",
    ):
        assert fragment in body, fragment
    assert (export / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((export / "config.json").read_text())["labels"] == json.loads((export / "ser_dist.json").read_text())["labels"]


@pytest.fixture
def recorded_hub(monkeypatch):
    """HfApi with its network calls replaced by recorders."""
    from huggingface_hub import HfApi

    calls = []

    class Commit:
        commit_url = "https://huggingface.co/alice/ser-demo/commit/abc"

    def record(name, result=None):
        def method(self, *args, **kwargs):
            calls.append((name, args, kwargs, self.token))
            return result

        return method

    monkeypatch.setattr(HfApi, "create_repo", record("create_repo"))
    monkeypatch.setattr(HfApi, "create_branch", record("create_branch"))
    monkeypatch.setattr(HfApi, "create_commit", record("create_commit", Commit()))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return calls


def test_push_uploads_the_export_and_a_card_for_the_repo(deploy_run, recorded_hub, capsys):
    from huggingface_hub import ModelCard

    from ser_dist.cli import main

    run, _ = deploy_run
    before = digests(run)
    main(["push", str(run), "alice/ser-demo", "--private", "--revision", "exp1"])
    assert "pushed" in capsys.readouterr().out
    names = [name for name, *_ in recorded_hub]
    assert names == ["create_repo", "create_branch", "create_commit"]
    _, args, kwargs, token = recorded_hub[0]
    assert args == ("alice/ser-demo",) and kwargs["private"] is True and kwargs["exist_ok"] is True
    assert token is None  # huggingface_hub finds HF_TOKEN itself; ser-dist never reads or passes it
    assert recorded_hub[1][2]["branch"] == "exp1"
    _, args, kwargs, _ = recorded_hub[2]
    assert kwargs["revision"] == "exp1" and args == ("alice/ser-demo",)
    operations = {op.path_in_repo: op for op in kwargs["operations"]}
    assert set(operations) == EXPORT_FILES
    for name in EXPORT_FILES - {"README.md"}:
        assert Path(operations[name].path_or_fileobj).read_bytes() == (run / "model" / name).read_bytes()
    card_bytes = operations["README.md"].path_or_fileobj
    card_bytes = card_bytes if isinstance(card_bytes, bytes) else card_bytes.read()
    card = ModelCard(card_bytes.decode("utf-8"))
    assert card.data.model_name == "alice/ser-demo" and 'from_pretrained("alice/ser-demo")' in card.text
    # The push changes nothing locally and the token is nowhere in the run or in what was sent.
    assert digests(run) == before
    assert all(TOKEN.encode() not in (run / name).read_bytes() for name in before)
    assert TOKEN.encode() not in card_bytes


def test_push_offline_or_unauthenticated_fails_in_one_line_and_keeps_the_export(deploy_run, tmp_path):
    run, _ = deploy_run
    before = digests(run)
    offline = run_entry_point(
        ["-m", "ser_dist.cli", "push", str(run), "alice/ser-demo"], env={"HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    )
    assert_one_line_error(offline, "alice/ser-demo", "HF_HUB_OFFLINE", "intact")
    assert TOKEN not in offline.stderr + offline.stdout
    assert digests(run) == before


def test_train_push_to_hub_runs_after_the_run_is_written(deploy_run):
    """The shared run was trained with train.push_to_hub=true and no Hub login: one-line error, the run complete."""
    run, result = deploy_run
    assert_one_line_error(result, "not logged in to the Hugging Face Hub", "HF_TOKEN", "hf auth login", "unchanged")
    assert "test (" in result.stdout  # training and the test evaluation finished first
    for name in ("metrics.json", "confusion_matrix.png", "model/README.md", "model/model.safetensors", "model/ser_dist.json"):
        assert (run / name).exists(), name


def test_push_to_hub_without_repo_id_is_a_config_error():
    from ser_dist.config import Experiment, cli
    from ser_dist.errors import ConfigError

    with pytest.raises(ConfigError, match="train.push_to_hub=true needs hub.repo_id"):
        cli(Experiment(), ["data.root=anywhere", "train.push_to_hub=true"])
    assert (
        cli(Experiment(), ["data.root=anywhere", "train.push_to_hub=true", "hub.repo_id=alice/x", "hub.private=true"]).hub.private is True
    )


def test_bad_repo_id_and_missing_export(deploy_run, tmp_path, monkeypatch):
    from ser_dist.errors import UserError
    from ser_dist.serving.hub import push_to_hub

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(UserError, match="not of the form owner/name"):
        push_to_hub(deploy_run[0], "not a repo")
    with pytest.raises(UserError, match="no trained model here"):
        push_to_hub(tmp_path, "alice/ser-demo")
