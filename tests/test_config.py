"""Typed config: precedence, coercion, and errors that fail before any data or model is touched."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ser_dist.config import ConfigError, Data, Experiment, Train, cli, from_dict, load, save, to_dict

ROOT = Path(__file__).resolve().parents[1]


def base() -> Experiment:
    return Experiment(name="t", data=Data(root="somewhere"), train=Train(epochs=7))


def test_overrides_are_typed():
    exp = cli(
        base(),
        [
            "train.epochs=3",
            "optim.lr=1e-4",
            "data.labels=Anger,Sad",
            "data.max_seconds=null",
            "loss.alpha=[1, 2]",
            "train.report_to=[]",
        ],
    )
    assert exp.train.epochs == 3 and isinstance(exp.train.epochs, int)
    assert exp.optim.lr == pytest.approx(1e-4)
    assert exp.data.labels == ["Anger", "Sad"]
    assert exp.data.max_seconds is None
    assert exp.loss.alpha == [1.0, 2.0]
    assert exp.train.report_to == []


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
        (["train.deterministic=maybe"], "must be true or false"),
        (["train.report_to=[tensorbord]"], "train.report_to='tensorbord' is not one of tensorboard, mlflow"),
        (["train.report_to=[mlflow,mlflow]"], "names a tracker twice"),
        (["train.report_to=none"], "train.report_to='none': for no tracker write train.report_to=[]"),  # transformers' spelling
        (["train.report_to="], "must be a list (comma-separated on the command line, [] for an empty one)"),
        (["train.progress=bars"], "train.progress='bars' is not one of auto, bar, log, off"),
        (["train.tensorboard=false"], "train.tensorboard is gone: use train.report_to=[tensorboard]"),
        (["data.split=random"], "data.split='random' is not one of"),
        (["train.epochs=0"], "train.epochs=0 is out of range: it must be in [1, inf)"),
        (["data.val_fraction=0.6", "data.test_fraction=0.5"], "must leave clips for training"),
        (["epochs=3"], "unknown config key"),
        (["--nonsense"], "unexpected argument"),
    ],
)
def test_bad_config_is_one_clear_error(argv, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
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
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["ser-dist: error: unknown config key 'train.epocs'; did you mean train.epochs?"]
    assert not out.exists()


# ---- every numeric setting: finite and in range ---------------------------------------------------------


def numeric_fields() -> list[tuple[str, type]]:
    """(section.key, int or float) of every numeric setting, from the dataclasses themselves."""
    import dataclasses
    import typing

    from ser_dist.overrides import resolve_annotation as _resolve
    from ser_dist.overrides import sections as _sections

    found = []
    for section_name, section in _sections(Experiment()).items():
        for f in dataclasses.fields(section):
            annotation = _resolve(f.type)
            args = typing.get_args(annotation) or (annotation,)
            inner = [typing.get_args(a)[0] if typing.get_origin(a) is list else a for a in args]
            for kind in (float, int):
                if kind in inner:
                    found.append((f"{section_name}.{f.name}", kind))
                    break
    return found


def outside_values(key: str, kind: type) -> list:
    from ser_dist.config_checks import NUMERIC_RANGES, _parse_interval

    low, high, low_closed, high_closed = _parse_interval(NUMERIC_RANGES[key])
    step = 1 if kind is int else 1e-3
    values = []
    if low != float("-inf"):
        values.append(kind(low - step) if low_closed else kind(low))
    if high != float("inf"):
        values.append(kind(high + step) if high_closed else kind(high))
    return values


def test_every_numeric_setting_has_a_range():
    from ser_dist.config_checks import NUMERIC_RANGES

    keys = {key for key, _ in numeric_fields()}
    assert keys - set(NUMERIC_RANGES) == set(), "numeric settings without a range in NUMERIC_RANGES"
    assert set(NUMERIC_RANGES) - keys == set(), "ranges for keys that do not exist"


@pytest.mark.parametrize("key, kind", numeric_fields())
def test_out_of_range_or_non_finite_values_fail_in_one_line_naming_the_key(key, kind):
    value_as_cli = lambda v: f"[{v}]" if key in ("loss.alpha", "data.dimension_range") else str(v)  # noqa: E731
    bad = outside_values(key, kind)
    assert bad, f"{key}: a range with no bound"
    for value in bad:
        with pytest.raises(ConfigError, match=re.escape(f"{key}=") + ".*out of range: it must be in "):
            cli(base(), [f"{key}={value_as_cli(value)}"])
    if kind is float:
        for value in ("nan", "inf", "-inf"):
            with pytest.raises(ConfigError, match=re.escape(f"{key}=") + ".*must be a finite number"):
                cli(base(), [f"{key}={value_as_cli(value)}"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.backbone=hubert_larg", "unknown model.backbone='hubert_larg'; did you mean 'hubert_large'?"),
        ("model.backbone=BiLSTM", "unknown model.backbone='BiLSTM'"),
        ("loss.name=focall", "unknown loss.name='focall'; did you mean 'focal'?"),
        ("loss.name=no_such_pkg.mod:loss", "loss.name: cannot import loss 'no_such_pkg.mod:loss'"),
        ("model.backbone=./no/such/dir", "model.backbone=./no/such/dir: ./no/such/dir is not a directory"),
    ],
)
def test_unknown_component_names_fail_at_config_time_with_a_suggestion(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        cli(base(), [override])


def test_hub_ids_local_directories_and_import_paths_stay_valid_backbones(tmp_path):
    assert cli(base(), ["model.backbone=facebook/hubert-large-ll60k"]).model.backbone == "facebook/hubert-large-ll60k"
    assert cli(base(), [f"model.backbone={tmp_path}"]).model.backbone == str(tmp_path)
    assert cli(base(), ["model.backbone=ser_dist.models.recurrent:bilstm"]).model.backbone == "ser_dist.models.recurrent:bilstm"


def test_a_wrong_backbone_fails_before_the_corpus_is_read(tmp_path):
    """Through the recipe's entry point: the error comes before any data line (the corpus is never scanned)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "bilstm_mfcc_ce.py"), f"data.root={tmp_path}", "model.backbone=wav2vec_base"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2 and "data:" not in result.stdout
    assert result.stderr.strip() == (
        "ser-dist: error: unknown model.backbone='wav2vec_base'; did you mean 'wav2vec2_base'? Known: "
        + result.stderr.split("Known: ")[1].strip()
    )


def test_config_files_with_a_key_twice_not_utf8_or_a_folder_are_one_line(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("train:\n  epochs: 1\ndata:\n  root: a\ntrain:\n  batch_size: 8\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: not valid YAML \(.*key 'train' is given twice \(line 5\)"):
        cli(base(), ["--config", str(twice)])
    inner = tmp_path / "inner.yaml"
    inner.write_text("data:\n  root: a\n  root: b\n")
    with pytest.raises(ConfigError, match="key 'root' is given twice"):
        cli(base(), ["--config", str(inner)])
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml: not UTF-8 text \(byte 0xe9"):
        cli(base(), ["--config", str(latin)])
    with pytest.raises(ConfigError, match="is a folder, not a YAML config file"):
        cli(base(), ["--config", str(tmp_path)])


# ---- from_dict and load check the values as the command line does ------------------------------------


@pytest.mark.parametrize(
    "tree, message",
    [
        (
            {"model": {"freeze_feature_encoder_epochs": -2}},
            "model.freeze_feature_encoder_epochs=-2 is out of range: it must be in [-1, inf)",
        ),
        ({"model": {"freeze_backbone_epochs": -2}}, "model.freeze_backbone_epochs=-2 is out of range: it must be in [-1, inf)"),
        ({"data": {"split": "random"}}, "data.split='random' is not one of"),
        ({"data": {"val_fraction": 0.5, "test_fraction": 0.5}}, "data.val_fraction + data.test_fraction must leave clips for training"),
        ({"model": {"cache_features": True}}, "model.cache_features=true caches a frozen encoder's output"),
        ({"train": {"resume": "auto", "overwrite": True}}, "train.resume and train.overwrite=true contradict each other"),
    ],
)
def test_from_dict_and_load_check_values_as_the_command_line_does(tree, message, tmp_path):
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    for build in (lambda: cli(base(), ["--config", str(path)]), lambda: from_dict(tree), lambda: load(path)):
        with pytest.raises(ConfigError, match=re.escape(message)):
            build()
    assert to_dict(from_dict(tree, check_values=False)) == to_dict(load(path, check_values=False))  # typed only


def test_a_saved_record_is_not_checked_against_this_machine(tmp_path):
    """A run's config.yaml read back (ser-dist report, a study's folds) needs no corpus, checkpoint or package here."""
    tree = {"model": {"backbone": "my_pkg.models:encoder"}, "train": {"resume": str(tmp_path / "gone")}}
    assert from_dict(tree).train.resume == str(tmp_path / "gone")
    with pytest.raises(ConfigError, match="data.root is required"):
        cli(Experiment(), ["model.backbone=my_pkg.models:encoder"])


def test_checking_component_names_imports_no_component():
    """The registry's tables are read, not imported: validating a config pulls in neither ser_dist.data, ser_dist.models nor torch."""
    code = (
        "import sys; from ser_dist.config import Experiment, cli; "
        "cli(Experiment(), ['data.root=.', 'data.corpus=emodb', 'data.augment=bandpass,noise', 'loss.name=focal', 'model.backbone=hubert_large']); "
        "print(sorted(m for m in sys.modules if m.startswith(('ser_dist.data', 'ser_dist.models', 'ser_dist.losses', 'torch'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_record_of_an_earlier_version_keeps_its_tracker_setting():
    """Runs and model folders written before train.report_to stored train.tensorboard: they still load."""
    from ser_dist.config import from_dict, to_dict

    old = to_dict(base())
    del old["train"]["report_to"]
    old["train"]["tensorboard"] = False
    assert from_dict(old).train.report_to == []
    old["train"]["tensorboard"] = True
    assert from_dict(old).train.report_to == ["tensorboard"]


def test_words_yaml_1_1_reads_as_booleans_stay_text_for_text_keys(tmp_path):
    """train.progress=off is the text "off" (YAML 1.1 would read a boolean), on the command line and in a file;
    boolean keys still take yes/no/on/off."""
    exp = cli(base(), ["train.progress=off", "train.deterministic=on"])
    assert exp.train.progress == "off" and exp.train.deterministic is True
    config_file = tmp_path / "run.yaml"
    config_file.write_text("train:\n  progress: off\n  deterministic: no\n")
    exp = cli(base(), ["--config", str(config_file)])
    assert exp.train.progress == "off" and exp.train.deterministic is False


def test_settings_added_later_leave_the_fingerprint_as_it_was_at_their_defaults():
    """Runs recorded before train.mixup_alpha and the dimensional keys existed keep matching their configs."""
    import hashlib
    import json

    from ser_dist.config import LATER_KEYS, fingerprint, result_settings

    exp = cli(Experiment(data=Data(root=".")), [])
    before = {key: value for key, value in result_settings(exp).items() if key not in LATER_KEYS}  # a config of before
    assert fingerprint(exp) == hashlib.sha256(json.dumps(before, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert fingerprint(cli(Experiment(data=Data(root=".")), ["train.mixup_alpha=0.2"])) != fingerprint(exp)
