"""Typed experiment configuration.

Precedence: dataclass defaults < recipe < ``--config file.yaml`` < ``section.key=value`` on the command
line. Unknown keys, values of the wrong type and missing required values fail here, before any data
is read or any model is built. The resolved config is saved beside every run (``config.yaml``).
Turning text (a YAML file, a ``key=value`` argument) into typed field values is ``ser_dist.overrides``.
Checking the values (ranges, choices, component names) is ``ser_dist.config_checks``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config_checks import (
    check_choice,
    check_component_names,
    check_feature_norm,
    check_numeric_ranges,
    check_opensmile_settings,
    check_spec_augment,
    check_targets,
    missing_package,
)
from .errors import ConfigError, install_excepthook
from .overrides import apply_overrides, flatten, load_yaml, parse_args, sections

SPLITS = ("stratified", "speaker", "leave_one_speaker_out", "leave_one_session_out", "speaker_kfold", "fixed")
SEEDED_SPLITS = ("stratified", "speaker", "speaker_kfold")  # the protocols whose split data.split_seed (or train.seed) draws
SCHEDULERS = ("plateau", "linear_warmup", "cosine_warmup", "none")
OPTIMIZERS = ("adam", "adamw", "sgd")
METRICS = ("ua", "wa", "macro_f1", "ccc_mean", "loss")  # ccc_mean: data.targets=dimensional|both
PRECISIONS = ("auto", "no", "fp16", "bf16")
HEADS = ("auto", "last", "mean", "attentive_stats", "weighted_layers")
PROGRESS = ("auto", "bar", "log", "off")  # ser_dist.progress
# openSMILE functionals (model.backbone=opensmile): egemaps = eGeMAPSv02 (88-D), compare = ComParE_2016 (6,373-D)
SMILE_SETS = ("egemaps", "compare")
# Accelerate's experiment trackers train.report_to may name (ser_dist.tracking), each with its package.
TRACKERS = ("tensorboard", "mlflow", "wandb", "aim", "comet_ml", "clearml")

# How a run is launched, not what it computes: left out of the exported experiment and of the resume check.
RUN_CONTROL_KEYS = ("train.resume", "train.overwrite", "train.output_dir")
# Settings that cannot change a run's numbers (where it writes, how often it logs or saves, where its
# decode cache lives): left out of its fingerprint, the rest is in it.
RESULT_NEUTRAL_KEYS = RUN_CONTROL_KEYS + (
    "data.cache_dir",
    "data.num_workers",
    "train.report_to",
    "train.project",
    "train.progress",
    "train.progress_seconds",
    "train.log_every_steps",
    "train.keep_last",
    "train.save_every_steps",
    "train.push_to_hub",
    "hub.repo_id",
    "hub.private",
    "hub.revision",
)
# Keys a resumed run may change; any other difference from the checkpoint's run stops the resume.
# train.epochs is safe only when the lr schedule does not span the run's length (plateau, none).
RESUME_SAFE_KEYS = (
    "name",
    "train.epochs",
    "train.early_stopping_patience",
    "train.keep_last",
    "train.save_every_steps",
    "train.log_every_steps",
    "train.report_to",
    "train.project",
    "train.progress",
    "train.progress_seconds",
    "train.push_to_hub",
    "train.max_nonfinite_steps",
    "data.cache_dir",
    "data.num_workers",
    "hub.repo_id",
    "hub.private",
    "hub.revision",
)


@dataclass
class Data:
    corpus: str = "folder"  # adapter name in ser_dist.registry.CORPORA, or "manifest"
    root: str | None = None  # required unless data.manifest or data.hf_dataset is given
    manifest: str | None = None  # CSV/JSONL with path,label[,speaker,session,source]
    hf_dataset: str | None = None  # a Hugging Face dataset instead: a Hub id, a save_to_disk folder, or a file/folder load_dataset reads
    hf_config: str | None = None  # the Hub dataset's configuration (load_dataset's name)
    hf_revision: str | None = None  # the Hub dataset's branch, tag or commit
    audio_column: str | None = None  # None: the column with the Audio feature (or of audio file paths)
    label_column: str = "label"  # ClassLabel or text
    speaker_column: str | None = None  # None: "speaker" when the dataset has it
    session_column: str | None = None  # None: "session" when the dataset has it
    labels: list[str] | None = None  # keep (and order) only these classes; None: all found
    # what a clip teaches: categorical (its class), dimensional (its ratings in data.dimension_columns) or both
    targets: str = "categorical"
    # data.targets=dimensional|both: the manifest's (or dataset's) columns of each clip's ratings, one model output each
    dimension_columns: list[str] = field(default_factory=lambda: ["arousal", "valence", "dominance"])
    dimension_range: list[float] | None = None  # the ratings' scale [low, high], mapped to [0, 1] (e.g. [1, 5]); None: kept as given
    split: str = "speaker"  # speaker-independent unless told otherwise
    fold: int | None = None  # for the fold-based protocols (1-based)
    num_folds: int = 5  # for speaker_kfold
    # seed of the stratified/speaker/speaker_kfold split (None: train.seed); set it to vary train.seed on one split
    split_seed: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    speaker_pattern: str | None = None  # regex on the file name; group 1 is the speaker id
    sample_rate: int = 16000
    max_seconds: float | None = 10.0  # longer clips are cut to this (None: keep whole clips)
    min_seconds: float = 0.1  # shorter clips are skipped and listed in data_report.json (0: keep any length)
    batch_seconds: float | None = None  # duration-budget batches instead of train.batch_size
    cache_dir: str | None = None  # decode-once cache (default: $SER_DIST_CACHE or ~/.cache/ser_dist/audio)
    num_workers: int = 0
    augment: list[str] = field(default_factory=list)  # online augmentation ops for training clips
    augment_prob: float = 0.5


@dataclass
class Model:
    backbone: str = "bilstm"  # name in ser_dist.registry.BACKBONES, a Hub id or a local directory
    # pooling: auto (SSL: mean; (Bi)LSTM: last) | last ((Bi)LSTM final states) | mean | attentive_stats | weighted_layers (SSL)
    head: str = "auto"
    n_mfcc: int = 40
    # bilstm / lstm / crnn: utterance (the seed's per-clip mean/var) | global (training-data statistics); all of these and
    # opensmile: speaker (each speaker's own statistics, test speakers' unlabelled audio included: transductive)
    feature_norm: str = "utterance"
    hidden_size: int = 256
    num_layers: int | None = None  # (Bi)LSTM: recurrent layers (default: the backbone's own, BiLSTM 3 = the seed's 2 + 1, LSTM 2)
    frame_stride: int = 1  # (Bi)LSTM: average each N consecutive MFCC frames before the LSTM (N times fewer recurrent steps)
    embedding_size: int = 128
    dropout: float = 0.3
    pretrained: bool = True  # SSL encoders: load pretrained weights (False: random init from the config)
    checkpoint: str | None = None  # optional local weights for the backbone (e.g. VGGish)
    cnn_width: float = 1.0  # VGGish, CRNN: multiplies their conv channels (VGGish 64-128-256-512; CRNN 16-32-64-64)
    # SpecAugment on the normalised features of crnn / bilstm / lstm, in training mode only: per clip, freq_masks bands of
    # 0..freq_mask_width features and time_masks spans of 0..time_mask_ratio x the clip's valid frames, set to 0
    spec_augment: bool = False
    freq_masks: int = 2
    freq_mask_width: int = 8
    time_masks: int = 2
    time_mask_ratio: float = 0.1
    freeze_feature_encoder_epochs: int = 0  # SSL: CNN feature encoder frozen for the first N epochs (-1: always)
    freeze_backbone_epochs: int = 0  # SSL: whole encoder frozen for the first N epochs (-1: always)
    cache_features: bool = False  # SSL with freeze_backbone_epochs=-1: run the encoder once per clip, train the head on cached features
    layerdrop: float = 0.0  # >0 leaves parameters unused in a step, which breaks DDP's gradient reduction
    mask_time_prob: float = 0.0  # SSL: SpecAugment-style time masking in training (0: off)
    classifier: str = "auto"  # linear | cosine | auto (cosine for the AAM loss)
    attention: str = "auto"  # attention implementation for HF encoders: auto | sdpa | eager
    smile_set: str = "egemaps"  # opensmile: the functionals, egemaps (eGeMAPSv02, 88-D) | compare (ComParE_2016, 6,373-D)
    # opensmile: hidden layers (model.hidden_size units, ReLU, model.dropout after each) between the standardised
    # functionals and the classifier; 0: a linear model on them (logistic regression with loss ce, a linear SVM with svm)
    mlp_layers: int = 0


@dataclass
class Loss:
    name: str = "ce"  # ce | label_smoothing | focal | aam | ccc | svm (multi-class hinge), or an import path
    class_weights: bool = False  # weight classes by inverse frequency in the training split
    label_smoothing: float = 0.1
    gamma: float = 2.0  # focal
    alpha: list[float] | None = None  # focal: per-class weights
    margin: float = 0.2  # AAM
    scale: float = 30.0  # AAM
    # data.targets=dimensional|both: ccc (mean over dimensions of 1 - CCC over the batch, Lin 1989) | mse
    dimension_loss: str = "ccc"
    dimension_weight: float = 1.0  # data.targets=both: loss = categorical loss + dimension_weight * dimensional loss


@dataclass
class Optim:
    name: str = "adamw"
    lr: float = 1e-3
    backbone_lr: float | None = None  # pretrained encoders: a separate (usually smaller) lr
    weight_decay: float = 0.0
    scheduler: str = "plateau"
    warmup_ratio: float = 0.1
    plateau_factor: float = 0.5
    plateau_patience: int = 2


@dataclass
class Train:
    epochs: int = 50
    batch_size: int = 32  # per process
    grad_accum_steps: int = 1
    max_grad_norm: float | None = 1.0
    mixup_alpha: float = 0.0  # > 0: mixup of training clips and their labels, lam ~ Beta(alpha, alpha) per batch (ser_dist.mixup)
    early_stopping_patience: int | None = 5
    metric: str = "ua"  # validation metric for early stopping and the best checkpoint
    seed: int = 42
    output_dir: str = "runs/default"
    mixed_precision: str = "auto"  # auto: what the launcher says (accelerate config / --mixed_precision)
    save_every_steps: int = 0  # 0: checkpoint at each epoch end only
    keep_last: int = 2
    resume: str | None = None  # auto | PATH | None
    overwrite: bool = False  # clear the outputs of an earlier run in train.output_dir first (else such a folder is refused)
    log_every_steps: int = 10  # the trackers get the step's loss, lr per group, gradient norm, clipped/skipped
    max_nonfinite_steps: int = 20  # stop after this many skipped non-finite steps in a row
    # Accelerate's experiment trackers (ser_dist.tracking): any of TRACKERS, [] for none. TensorBoard writes
    # OUTPUT_DIR/tensorboard; the others are configured as their own docs say (MLFLOW_TRACKING_URI, WANDB_MODE, ...).
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    project: str = "ser-dist"  # the trackers' project (MLflow experiment, W&B / Comet / ClearML project)
    progress: str = "auto"  # bars on a terminal, log lines elsewhere (auto), bar, log, off: ser_dist.progress
    progress_seconds: float = 30.0  # log mode: a progress line every this many seconds
    deterministic: bool = False
    push_to_hub: bool = False


@dataclass
class Hub:
    repo_id: str | None = None
    private: bool = False
    revision: str | None = None


@dataclass
class Experiment:
    name: str = "experiment"
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    loss: Loss = field(default_factory=Loss)
    optim: Optim = field(default_factory=Optim)
    train: Train = field(default_factory=Train)
    hub: Hub = field(default_factory=Hub)

    def validate(self) -> Experiment:
        """The command line's checks: ``check_values``, then what launching the run needs: a corpus to read,
        components that resolve (a user's import path is imported), folders that can be created, a checkpoint."""
        self.check_values()
        if self.data.root is None and self.data.manifest is None and self.data.hf_dataset is None:
            raise ConfigError(
                "data.root is required: pass data.root=DIR (a folder with one subfolder per emotion), data.manifest=FILE.csv or data.hf_dataset=ID_OR_DIR"
            )
        check_component_names(self)  # a typo fails here, before the corpus is scanned and decoded
        missing = missing_package(self.model.backbone)  # an optional extra (opensmile): looked for, not imported
        if missing:
            raise ConfigError(missing)
        from .run_folder import file_in_the_way

        for key, folder in (("data.cache_dir", self.data.cache_dir), ("train.output_dir", self.train.output_dir)):
            if folder is not None:
                blocked = file_in_the_way(folder)
                if blocked is not None:
                    raise ConfigError(f"{key}={folder}: {blocked} is a file, so this folder cannot be created; pass a folder path")
        if self.train.resume not in (None, "auto") and not Path(self.train.resume).exists():
            raise ConfigError(f"train.resume={self.train.resume}: no such checkpoint; use train.resume=auto or a checkpoint folder")
        return self

    def check_values(self) -> Experiment:
        """What the settings must satisfy by themselves, wherever they come from (a run's saved config.yaml
        too): choices, ranges, settings that contradict each other. Reads no file and imports nothing."""
        check_choice("data.split", self.data.split, SPLITS)
        check_choice("optim.scheduler", self.optim.scheduler, SCHEDULERS)
        check_choice("optim.name", self.optim.name, OPTIMIZERS)
        check_choice("train.metric", self.train.metric, METRICS)
        check_choice("train.mixed_precision", self.train.mixed_precision, PRECISIONS)
        check_choice("train.progress", self.train.progress, PROGRESS)
        for tracker in self.train.report_to:
            if str(tracker).lower() in ("none", "null", "off", "false", ""):  # transformers' report_to="none"
                raise ConfigError(f"train.report_to={tracker!r}: for no tracker write train.report_to=[]")
            check_choice("train.report_to", tracker, TRACKERS)
        if len(set(self.train.report_to)) < len(self.train.report_to):
            raise ConfigError(f"train.report_to={','.join(self.train.report_to)} names a tracker twice; name each once")
        check_choice("model.head", self.model.head, HEADS)
        check_choice("model.feature_norm", self.model.feature_norm, ("utterance", "global", "speaker"))
        check_choice("model.classifier", self.model.classifier, ("auto", "linear", "cosine"))
        check_choice("model.smile_set", self.model.smile_set, SMILE_SETS)
        # A value with "/" would be a Hub kernel repository, code transformers downloads and runs.
        check_choice(
            "model.attention", self.model.attention, ("auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")
        )
        check_numeric_ranges(self)
        if self.data.max_seconds is not None and self.data.min_seconds > self.data.max_seconds:
            raise ConfigError(
                f"data.min_seconds={self.data.min_seconds} is longer than data.max_seconds={self.data.max_seconds}; lower data.min_seconds"
            )
        if self.data.val_fraction + self.data.test_fraction >= 1.0:
            raise ConfigError("data.val_fraction + data.test_fraction must leave clips for training (sum < 1)")
        if self.data.split_seed is not None and self.data.split not in SEEDED_SPLITS:
            raise ConfigError(
                f"data.split_seed has no effect with data.split={self.data.split} (its folds or sets do not depend on a seed); "
                f"leave it out, or use it with data.split={'|'.join(SEEDED_SPLITS)}"
            )
        if self.model.cache_features and self.model.freeze_backbone_epochs != -1:
            raise ConfigError(
                "model.cache_features=true caches a frozen encoder's output: also set model.freeze_backbone_epochs=-1 (frozen for the whole run)"
            )
        if self.model.cache_features and self.data.augment:
            raise ConfigError(
                "model.cache_features=true computes each clip's features once, so online augmentation (data.augment) would never be seen; drop one of them"
            )
        check_opensmile_settings(self.model)
        check_spec_augment(self.model)
        check_feature_norm(self.model)
        check_targets(self)
        if self.train.push_to_hub and not self.hub.repo_id:
            raise ConfigError("train.push_to_hub=true needs hub.repo_id=OWNER/NAME (the Hub repository to create or update)")
        if self.train.resume is not None and self.train.overwrite:
            raise ConfigError(
                "train.resume and train.overwrite=true contradict each other: resume continues the run in train.output_dir, overwrite clears it; pick one"
            )
        return self


def cli(default: Experiment, argv: list[str] | None = None) -> Experiment:
    """Resolve a recipe's config against ``--config`` files and ``section.key=value`` arguments."""
    install_excepthook()
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(describe(default))
        raise SystemExit(0)
    return apply_overrides(default, parse_args(argv)).validate()


def to_dict(exp: Experiment) -> dict[str, Any]:
    return dataclasses.asdict(exp)


def result_settings(exp: Experiment, ignore: tuple = ()) -> dict[str, Any]:
    """Every setting that can change a run's numbers, flat (``section.key``): less ``RESULT_NEUTRAL_KEYS`` and ``ignore``."""
    return {key: value for key, value in flatten(to_dict(exp)).items() if key not in RESULT_NEUTRAL_KEYS and key not in ignore}


# Keys added after runs were recorded: at their defaults the fingerprint stays as before, so earlier runs still match.
LATER_KEYS = (
    "train.mixup_alpha",
    "data.targets",
    "data.dimension_columns",
    "data.dimension_range",
    "loss.dimension_loss",
    "loss.dimension_weight",
)


def fingerprint(exp: Experiment, ignore: tuple = ()) -> str:
    """A short hash of ``result_settings``: two runs with the same fingerprint ran the same settings."""
    import hashlib
    import json

    defaults = flatten(to_dict(Experiment()))
    settings = {k: v for k, v in result_settings(exp, ignore).items() if not (k in LATER_KEYS and v == defaults[k])}
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def setting_differences(old: Experiment, new: Experiment, ignore: tuple = ()) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for each setting in ``result_settings`` that differs."""
    a, b = result_settings(old, ignore), result_settings(new, ignore)
    return [(key, a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def model_dict(exp: Experiment) -> dict[str, Any]:
    """``to_dict`` less how the run was launched (``RUN_CONTROL_KEYS``): what an export records, so a resumed
    run's export is byte for byte the uninterrupted run's. Loading fills the missing keys with defaults."""
    tree = to_dict(exp)
    for dotted in RUN_CONTROL_KEYS:
        section, _, key = dotted.partition(".")
        tree[section].pop(key, None)
    return tree


def from_dict(tree: dict[str, Any], *, check_values: bool = True) -> Experiment:
    """The experiment a nested dict describes (a run's record: ``ser_dist.json``'s ``experiment``), typed and
    checked as the command line checks its values (``Experiment.check_values``; a record is not checked
    against this machine's files). ``check_values=False``: typed only, for a model folder, whose settings
    ``export.check_export`` checks with messages naming the folder."""
    exp = apply_overrides(Experiment(), stored_settings(flatten(tree)))
    return exp.check_values() if check_values else exp


def stored_settings(flat: dict[str, Any]) -> dict[str, Any]:
    """A record written by an earlier version, in today's keys: ``train.tensorboard=B`` became ``train.report_to``."""
    flat = dict(flat)
    if "train.tensorboard" in flat:
        flat.setdefault("train.report_to", ["tensorboard"] if flat.pop("train.tensorboard") else [])
    return flat


def save(exp: Experiment, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(exp), sort_keys=False))


def load(path: str | Path, *, check_values: bool = True) -> Experiment:
    """A YAML config (a run's ``config.yaml``), typed and checked as ``from_dict`` checks one."""
    exp = apply_overrides(Experiment(), stored_settings(load_yaml(path)))
    return exp.check_values() if check_values else exp


def describe(exp: Experiment) -> str:
    lines = [f"{exp.name}: override any key with section.key=value, or --config FILE.yaml", ""]
    for name, section in sections(exp).items():
        for f in dataclasses.fields(section):
            lines.append(f"  {name}.{f.name}={getattr(section, f.name)!r}")
    return "\n".join(lines)
