"""What ``ser-dist`` says about itself: ``--version``, every option's help, and ``train|prepare RECIPE --help``
listing the recipe's keys with the values that command line gives them."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT, ser_dist_cli

import ser_dist
from ser_dist.cli import main
from ser_dist.cli_parser import package_version

# [project]'s version = "X.Y.Z" (a regex: tomllib is Python 3.11+, and ser-dist supports 3.10)
PYPROJECT_VERSION = re.search(r'^\[project\][^\[]*?^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M | re.S).group(1)


def test_version_is_pyprojects_through_the_entry_point_and_without_package_metadata(monkeypatch):
    assert ser_dist.__version__ == PYPROJECT_VERSION
    result = ser_dist_cli("--version")
    assert result.returncode == 0 and result.stdout == f"ser-dist {PYPROJECT_VERSION}\n", result.stderr
    from importlib import metadata

    def no_metadata(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", no_metadata)  # run from a source tree that was never installed
    assert package_version() == ser_dist.__version__


def help_of(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_make_demo_data_help_describes_every_option_and_its_default(capsys):
    text = " ".join(help_of(capsys, "make-demo-data", "--help").split())  # argparse wraps lines
    for fragment in (
        "out_dir a new or empty folder",
        "--speakers SPEAKERS synthetic voices, alternately male and female (>= 2; default 10)",
        "--sentences SENTENCES distinct sentences each speaker says in every emotion (default 10)",
        "--takes TAKES recordings of each speaker, sentence and emotion",
        "(default 1)",
        "--seed SEED every voice, sentence and clip follows from it: the same seed writes the same bytes (default 0)",
        "data.speaker_pattern='^(spk\\d+)_'",
    ):
        assert fragment in text, fragment


def test_every_option_of_every_command_has_a_help():
    from ser_dist.cli_parser import build_parser

    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command").choices
    missing = [
        f"{name} {action.dest}" for name, sub in commands.items() for action in sub._actions if not action.help and action.dest != "help"
    ]
    assert not missing, missing


def test_train_recipe_help_lists_the_recipes_keys_with_the_overrides_given(tmp_path):
    """Through the real entry point: the recipe's settings, not the train subcommand's argparse help."""
    result = ser_dist_cli("train", "recipes/bilstm_mfcc_ce.py", "optim.lr=0.1", "--help")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "usage: ser-dist train recipes/bilstm_mfcc_ce.py [--config FILE.yaml] [section.key=value ...]"
    assert lines[1].startswith("the settings of recipe recipes/bilstm_mfcc_ce.py with optim.lr=0.1 ")
    assert "bilstm_mfcc_ce: override any key with section.key=value, or --config FILE.yaml" in lines
    assert "  optim.lr=0.1" in lines and "  optim.name='adam'" in lines and "  data.root=None" in lines  # the recipe's values
    assert "  train.progress='auto'" in lines and not (tmp_path / "runs").exists()  # nothing ran


def test_train_help_of_a_yaml_config_is_the_defaults_with_that_yaml(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  epochs: 3\nmodel:\n  hidden_size: 64\n")
    main(["train", str(config), "-h", "train.seed=7"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(f"the settings of YAML config {config} with train.seed=7 (defaults < that YAML <")
    assert {"  train.epochs=3", "  model.hidden_size=64", "  train.seed=7", "  model.backbone='bilstm'"} <= set(lines)


def test_recipe_help_of_prepare_and_argparse_help_without_a_recipe(capsys):
    main(["prepare", "recipes/lstm_ce.py", "--data", "root=/corpus", "labels=Anger,Sad", "--help"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("usage: ser-dist prepare recipes/lstm_ce.py ") and lines[0].endswith("[--data KEY=VALUE ...] [--out DIR]")
    assert "  data.root='/corpus'" in lines and "  data.labels=['Anger', 'Sad']" in lines
    assert help_of(capsys, "train", "--help").startswith("usage: ser-dist train [-h] recipe")
    assert help_of(capsys, "train", "-h").startswith("usage: ser-dist train [-h] recipe")
    assert help_of(capsys, "prepare", "--help").startswith("usage: ser-dist prepare [-h]")


def test_recipe_help_with_a_bad_key_or_a_missing_recipe_is_one_line(capsys):
    from ser_dist.errors import ConfigError, UserError

    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'; did you mean optim.lr\?"):
        main(["train", "recipes/lstm_ce.py", "optim.lrr=1", "--help"])
    with pytest.raises(UserError, match="recipe not found"):
        main(["train", "recipes/no_such_recipe.py", "--help"])
