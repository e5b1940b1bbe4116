"""Typed config: precedence, coercion, and errors that fail before any data or model is touched."""
import subprocess
import sys
from pathlib import Path

import pytest

from ser_dist.config import ConfigError, Data, Experiment, Train, cli, from_dict, load, save, to_dict

ROOT = Path(__file__).resolve().parents[1]


def base() -> Experiment:
    return Experiment(name="t", data=Data(root="somewhere"), train=Train(epochs=7))


def test_overrides_are_typed():
    exp = cli(base(), ["train.epochs=3", "optim.lr=1e-4", "data.labels=Anger,Sad", "data.max_seconds=null", "loss.alpha=[1, 2]", "train.tensorboard=false"])
    assert exp.train.epochs == 3 and isinstance(exp.train.epochs, int)
    assert exp.optim.lr == pytest.approx(1e-4)
    assert exp.data.labels == ["Anger", "Sad"]
    assert exp.data.max_seconds is None
    assert exp.loss.alpha == [1.0, 2.0]
    assert exp.train.tensorboard is False


def test_recipe_default_is_not_mutated():
    recipe = base()
    cli(recipe, ["train.epochs=3"])
    assert recipe.train.epochs == 7


def test_precedence_defaults_recipe_file_cli(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("train:\n  epochs: 11\n  batch_size: 4\noptim:\n  lr: 0.5\n")
    exp = cli(base(), ["--config", str(config_file), "train.epochs=2"])
    assert exp.train.epochs == 2  # CLI beats the file
    assert exp.train.batch_size == 4  # the file beats the recipe default
    assert exp.optim.lr == 0.5
    assert exp.train.seed == 42  # untouched default


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train.epoch=3"], "did you mean train.epochs"),
        (["trian.epochs=3"], "did you mean 'train'"),
        (["train.epochs=three"], "must be an integer"),
        (["train.tensorboard=maybe"], "must be true or false"),
        (["data.split=random"], "data.split='random' is not one of"),
        (["train.epochs=0"], "train.epochs=0 must be > 0"),
        (["data.val_fraction=0.6", "data.test_fraction=0.5"], "must leave clips for training"),
        (["epochs=3"], "unknown config key"),
        (["--nonsense"], "unexpected argument"),
    ],
)
def test_bad_config_is_one_clear_error(argv, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        cli(base(), argv)


def test_missing_required_root():
    with pytest.raises(ConfigError, match="data.root is required"):
        cli(Experiment(), [])


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        cli(base(), ["--config", str(bad)])
    with pytest.raises(ConfigError, match="config file not found"):
        cli(base(), ["--config", str(tmp_path / "missing.yaml")])


def test_round_trip(tmp_path):
    exp = cli(base(), ["data.labels=a,b", "loss.name=focal"])
    save(exp, tmp_path / "config.yaml")
    assert to_dict(load(tmp_path / "config.yaml")) == to_dict(exp)
    assert to_dict(from_dict(to_dict(exp))) == to_dict(exp)


def test_recipe_entry_point_reports_config_errors_in_one_line(tmp_path):
    """A bad key through the real entry point: exit code 2, one line on stderr, no traceback, no run dir."""
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "bilstm_mfcc_ce.py"), f"data.root={tmp_path}", "train.epocs=2", f"train.output_dir={out}"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["ser-dist: error: unknown config key 'train.epocs'; did you mean train.epochs?"]
    assert not out.exists()
