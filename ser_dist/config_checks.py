"""What a config's values must satisfy, whatever they come from: each numeric setting in its range
(``NUMERIC_RANGES``), each choice among its choices, each component name known to ``ser_dist.registry``.

``Experiment.check_values`` and ``Experiment.validate`` (``ser_dist.config``) call these, and
``serving.export`` checks a model folder's stored settings with them. Names are read from the registry's
tables; only an import path the user gave is imported.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

from .errors import ConfigError
from .overrides import sections

# Allowed ranges of the numeric settings, in interval notation ("[0, 1)": 0 <= x < 1). Every float
# setting is also checked to be finite; a None (null) value, where the key allows one, is not checked.
NUMERIC_RANGES = {
    "data.fold": "[1, inf)",
    "data.num_folds": "[2, inf)",
    "data.split_seed": "[0, inf)",
    "data.val_fraction": "[0, 1)",
    "data.test_fraction": "[0, 1)",
    "data.sample_rate": "[1000, 384000]",
    "data.max_seconds": "(0, inf)",
    "data.batch_seconds": "(0, inf)",
    "data.num_workers": "[0, 256]",
    "data.augment_prob": "[0, 1]",
    "data.min_seconds": "[0, inf)",
    "data.dimension_range": "[-1000000, 1000000]",
    "model.n_mfcc": "[1, 64]",
    "model.hidden_size": "[1, inf)",
    "model.num_layers": "[1, inf)",
    "model.frame_stride": "[1, inf)",
    "model.embedding_size": "[1, inf)",
    "model.dropout": "[0, 1)",
    "model.cnn_width": "(0, 16]",
    "model.freeze_feature_encoder_epochs": "[-1, inf)",
    "model.freeze_backbone_epochs": "[-1, inf)",
    "model.layerdrop": "[0, 1)",
    "model.mask_time_prob": "[0, 1)",
    "model.mlp_layers": "[0, inf)",
    "model.freq_masks": "[0, inf)",
    "model.freq_mask_width": "[0, inf)",
    "model.time_masks": "[0, inf)",
    "model.time_mask_ratio": "[0, 1]",
    "loss.label_smoothing": "[0, 1)",
    "loss.gamma": "[0, inf)",
    "loss.alpha": "[0, inf)",
    "loss.margin": "[0, 1.5707963)",
    "loss.scale": "(0, inf)",
    "loss.dimension_weight": "(0, inf)",
    "optim.lr": "(0, inf)",
    "optim.backbone_lr": "(0, inf)",
    "optim.weight_decay": "[0, inf)",
    "optim.warmup_ratio": "[0, 1]",
    "optim.plateau_factor": "(0, 1)",
    "optim.plateau_patience": "[0, inf)",
    "train.epochs": "[1, inf)",
    "train.batch_size": "[1, inf)",
    "train.grad_accum_steps": "[1, inf)",
    "train.max_grad_norm": "[0, inf)",
    "train.mixup_alpha": "[0, inf)",
    "train.early_stopping_patience": "[1, inf)",
    "train.seed": "[0, 4294967295]",
    "train.save_every_steps": "[0, inf)",
    "train.keep_last": "[1, inf)",
    "train.log_every_steps": "[1, inf)",
    "train.progress_seconds": "[0, inf)",
    "train.max_nonfinite_steps": "[1, inf)",
}
RANGE_HINTS = {
    "model.n_mfcc": "the MFCC front end has 64 mel bands",
    "data.fold": "folds are numbered from 1",
    "model.num_layers": "null: the backbone's own depth",
    "model.frame_stride": "1: every 10 ms MFCC frame",
    "data.max_seconds": "null: keep whole clips",
    "train.early_stopping_patience": "null: no early stopping",
    "train.max_grad_norm": "null or 0: no clipping",
    "model.mlp_layers": "0: a linear model on the functionals",
    "data.dimension_range": "the ratings' scale [low, high], e.g. [1, 5]",
}
# Backbones whose front end computes features that model.spec_augment masks (a user's import path may read it too).
SPEC_AUGMENT_BACKBONES = ("crnn", "bilstm", "lstm")
# model.feature_norm: the backbones whose front end normalises its features (opensmile standardises its functionals)
FEATURE_NORM_BACKBONES = ("crnn", "bilstm", "lstm", "opensmile")
# Backbones whose package is an optional extra of ser-dist: name -> (package, extra).
OPTIONAL_BACKBONE_PACKAGES = {"opensmile": ("opensmile", "opensmile")}


def check_choice(key: str, value: str, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(choices)}")


def _parse_interval(text: str) -> tuple[float, float, bool, bool]:
    low, high = (float(part) for part in text[1:-1].split(","))
    return low, high, text[0] == "[", text[-1] == "]"


def check_numeric_ranges(exp) -> None:
    """Every numeric setting is finite and in its range (``NUMERIC_RANGES``), with one line naming the key."""
    import math

    for section_name, section in sections(exp).items():
        for f in dataclasses.fields(section):
            key, value = f"{section_name}.{f.name}", getattr(section, f.name)
            values = value if isinstance(value, list) else [value]
            for item in values:
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    continue
                if isinstance(item, float) and not math.isfinite(item):
                    raise ConfigError(f"{key}={item} must be a finite number")
                if key not in NUMERIC_RANGES:
                    continue
                low, high, low_closed, high_closed = _parse_interval(NUMERIC_RANGES[key])
                if item < low or item > high or (item == low and not low_closed) or (item == high and not high_closed):
                    hint = f" ({RANGE_HINTS[key]})" if key in RANGE_HINTS else ""
                    raise ConfigError(f"{key}={item} is out of range: it must be in {NUMERIC_RANGES[key]}{hint}")


def _unknown(key: str, value: str, known: list[str], also: str) -> ConfigError:
    hint = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
    return ConfigError(
        f"unknown {key}={value!r}" + (f"; did you mean {hint[0]!r}?" if hint else "") + f" Known: {', '.join(known)}; {also}"
    )


def check_component_names(exp) -> None:
    """``model.backbone``, ``loss.name``, ``data.corpus`` and each ``data.augment`` op name a component in
    ``ser_dist.registry`` (read from its tables: nothing is imported), an import path the user gave
    (``pkg.module:name``, imported here so a bad one fails now), or, for the backbone, a Hub id
    (``owner/name``) or a local directory written by ``save_pretrained``."""
    from .registry import AUGMENTATIONS, BACKBONES, CORPORA, LOSSES

    for key, registry, also in (
        (
            "model.backbone",
            BACKBONES,
            "or a Hub id (owner/name), a local directory written by save_pretrained, or an import path package.module:builder",
        ),
        ("loss.name", LOSSES, "or an import path package.module:builder"),
        ("data.corpus", CORPORA, "or an import path package.module:adapter"),
    ):
        value = getattr(getattr(exp, key.split(".")[0]), key.split(".")[1])
        if registry.is_registered(value) or ":" in value:
            registry.require(value, key)
            continue
        if key == "model.backbone":
            from .hub_ids import looks_like_repo_id

            if Path(value).expanduser().is_dir() or looks_like_repo_id(value):
                continue
            if value.startswith((".", "/", "~")) or Path(value).expanduser().exists():
                raise ConfigError(
                    f"model.backbone={value}: {value} is not a directory; pass a folder written by save_pretrained (config.json + weights), a Hub id or a registered name"
                )
        raise _unknown(key, value, registry.names(), also)
    for name in exp.data.augment:
        AUGMENTATIONS.require(name, "data.augment")


def missing_package(backbone: str) -> str | None:
    """The one line for a backbone whose optional package is not installed, else None. The package is looked
    for (``importlib.util.find_spec``), not imported: validating a config imports no component."""
    import importlib.util

    if backbone not in OPTIONAL_BACKBONE_PACKAGES:
        return None
    package, extra = OPTIONAL_BACKBONE_PACKAGES[backbone]
    try:
        found = importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a broken or half-removed installation
        found = False
    if found:
        return None
    return f"model.backbone={backbone}: the {package} package is not installed; pip install 'ser-dist[{extra}]' (or pip install {package})"


def check_opensmile_settings(model_cfg) -> None:
    """``model.backbone=opensmile`` trains its head on functionals computed once per clip, standardised with the
    training clips' statistics, which the feature cache computes: it needs ``model.cache_features=true`` (and so a
    frozen extractor); ``model.mlp_layers`` shapes only its head."""
    if model_cfg.backbone == "opensmile":
        if not model_cfg.cache_features or model_cfg.freeze_backbone_epochs != -1:
            raise ConfigError(
                "model.backbone=opensmile computes its functionals once per clip and standardises them with the training clips' "
                "statistics: set model.cache_features=true and model.freeze_backbone_epochs=-1 (the extractor has no parameters to train)"
            )
    elif model_cfg.mlp_layers != 0:
        raise ConfigError(f"model.mlp_layers is for the opensmile backbone, not {model_cfg.backbone}; leave it out (model.mlp_layers=0)")


def check_spec_augment(model_cfg) -> None:
    """``model.spec_augment`` masks the features a feature backbone computes; on another registered backbone
    (an SSL encoder has ``model.mask_time_prob``) it fails rather than being ignored."""
    backbone = model_cfg.backbone
    if model_cfg.spec_augment and backbone not in SPEC_AUGMENT_BACKBONES and ":" not in backbone:
        raise ConfigError(
            f"model.spec_augment is for the {', '.join(SPEC_AUGMENT_BACKBONES)} backbones, not {backbone}"
            + ("; an SSL encoder masks with model.mask_time_prob" if backbone not in ("vggish", "opensmile") else "")
        )


def check_feature_norm(model_cfg) -> None:
    """``model.feature_norm=global|speaker`` on a registered backbone that does not normalise features fails here,
    before any data is read, rather than being ignored or failing after the corpus is decoded."""
    backbone, norm, allowed = model_cfg.backbone, model_cfg.feature_norm, FEATURE_NORM_BACKBONES
    if norm != "utterance" and backbone not in allowed and ":" not in backbone:
        raise ConfigError(
            f"model.feature_norm={norm} applies to the {', '.join(allowed[:-1])} and {allowed[-1]} backbones, not {backbone}; "
            "leave model.feature_norm=utterance (its default) or use one of those backbones"
        )


TARGETS = ("categorical", "dimensional", "both")
DIMENSION_LOSSES = ("ccc", "mse")
CLASS_METRICS = ("ua", "wa", "macro_f1")  # train.metric values that score classes
# A manifest's own columns, which can't also hold a dimension's ratings (ser_dist.data.manifest reads them).
RESERVED_COLUMNS = ("path", "label", "speaker", "session", "source", "duration")
RESERVED_DIMENSION_NAMES = ("mean",)  # metrics.json's ccc_mean is the mean over the dimensions


def check_targets(exp) -> None:
    """``data.targets`` and the dimensional settings: choices, the columns and their range, and the settings that
    only make sense for the targets chosen (a class metric without classes, a dimension metric without dimensions)."""
    data, loss, train = exp.data, exp.loss, exp.train
    check_choice("data.targets", data.targets, TARGETS)
    check_choice("loss.dimension_loss", loss.dimension_loss, DIMENSION_LOSSES)
    columns = [str(name).strip() for name in data.dimension_columns]
    if not columns or not all(columns):
        raise ConfigError(
            f"data.dimension_columns={data.dimension_columns!r} must name at least one column, e.g. arousal,valence,dominance"
        )
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise ConfigError(f"data.dimension_columns names {repeated[0]!r} twice; name each column once")
    reserved = [name for name in columns if name in RESERVED_COLUMNS]
    if reserved:
        raise ConfigError(f"data.dimension_columns: {reserved[0]!r} is a manifest's own column, not ratings; name the ratings' columns")
    if any(name in RESERVED_DIMENSION_NAMES for name in columns):
        raise ConfigError(
            "data.dimension_columns: 'mean' would collide with the scores' mean over the dimensions (ccc_mean); rename that column"
        )
    value_range = data.dimension_range
    if value_range is not None and (len(value_range) != 2 or not value_range[0] < value_range[1]):
        raise ConfigError(
            f"data.dimension_range={value_range} must be [low, high] with low < high (the ratings' scale, e.g. [1, 5]), or null to keep them as given"
        )
    targets = data.targets
    if targets == "categorical" and train.metric == "ccc_mean":
        raise ConfigError(
            "train.metric=ccc_mean scores dimensions: set data.targets=dimensional or both, or use train.metric=ua|wa|macro_f1|loss"
        )
    if targets == "dimensional":
        if train.metric in CLASS_METRICS:
            raise ConfigError(
                f"train.metric={train.metric} scores classes, and data.targets=dimensional has none: use train.metric=ccc_mean or loss"
            )
        if loss.class_weights:
            raise ConfigError("loss.class_weights=true weighs classes, and data.targets=dimensional has none; leave it out")
    if targets != "both" and loss.dimension_weight != 1.0:
        raise ConfigError(
            f"loss.dimension_weight={loss.dimension_weight} weighs the dimensional loss against the categorical one, under "
            "data.targets=both only; leave it out (1.0)"
        )
    if targets != "categorical" and (loss.name == "aam" or exp.model.classifier == "cosine"):
        raise ConfigError(
            f"data.targets={targets}: the dimensions are regression outputs beside the classes, and a cosine classifier "
            "(loss.name=aam, model.classifier=cosine) bounds every output to a scaled cosine; use another loss.name and model.classifier=auto"
        )
