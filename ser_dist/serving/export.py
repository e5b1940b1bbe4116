"""Exported models: a folder that ``ser-dist predict`` and ``EmotionClassifier.from_pretrained`` load.

Layout (the ``huggingface_hub`` ``PyTorchModelHubMixin`` convention): ``model.safetensors`` (weights,
never pickle), ``config.json`` and ``ser_dist.json`` (the resolved experiment, label names, sample
rate, crop policy, test metrics, data summary), plus the ``README.md`` model card and its
``confusion_matrix.png`` (``ser_dist.serving.model_card``). A backbone may write its own weight/config files
instead (``model.export_pretrained``), e.g. a stock transformers layout that ``transformers.pipeline``
loads. Loading reads safetensors, or a ``pytorch_model.bin`` only with ``torch.load(weights_only=True)``.

A model folder is untrusted input, so loading one never imports a module it names: ``ser_dist.json`` may
name only registered components (``check_model_folder``), and an SSL export's transformers files may not
ask for custom code (``auto_map``). Import paths are honoured only in the user's own recipe or command line.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import torch

from ..errors import ConfigError, UserError, first_line
from ..registry import UntrustedComponentError, check_stored_names, untrusted

META_FILE = "ser_dist.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


def export_model(model, state_dict: dict, directory: Path, *, exp, label_names: list[str], extra: dict | None = None) -> Path:
    """Write the export atomically (temp folder, then rename). Call on the main process only."""
    from safetensors.torch import save_file

    from ..config import model_dict

    directory = Path(directory)
    tmp = directory.parent / f".tmp-{directory.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = {
        "format_version": FORMAT_VERSION,
        "labels": list(label_names),
        "id2label": {str(i): name for i, name in enumerate(label_names)},
        "label2id": {name: i for i, name in enumerate(label_names)},
        "sample_rate": exp.data.sample_rate,
        "max_seconds": exp.data.max_seconds,
        "backbone": exp.model.backbone,
        # data.targets=dimensional|both: the regression outputs after the classes, by name (and the ratings' scale)
        **(
            {"dimensions": list(exp.data.dimension_columns), "dimension_range": exp.data.dimension_range}
            if exp.data.targets != "categorical"
            else {}
        ),
        "experiment": model_dict(exp),
        **({"hf_dataset": source} if (source := _hf_dataset_source(directory, exp)) else {}),
        **(extra or {}),
    }
    if hasattr(model, "export_pretrained"):
        model.export_pretrained(tmp, state_dict, meta)
    else:
        tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps({"library_name": "ser-dist", **meta}, indent=2))
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    from .model_card import write_model_card

    write_model_card(tmp, meta)
    if directory.exists():
        old = directory.parent / f".old-{directory.name}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, directory)
    return directory


def _hf_dataset_source(directory: Path, exp) -> dict | None:
    """Where the training data's Hugging Face dataset came from (its Hub id, declared license), as the run's
    data report recorded it (``pipeline.hf_summary``), for the model card; None for other data."""
    report = directory.parent / "data_report.json"  # a training run's, written before its export
    if exp.data.hf_dataset is None or not report.is_file():
        return None
    try:
        source = json.loads(report.read_text()).get("hf")
    except (OSError, ValueError):
        return None
    return source if isinstance(source, dict) else None


def read_meta(directory: Path) -> dict:
    """``ser_dist.json``, with every field ser-dist reads from it checked (``check_meta``): one line naming
    the file and the key for anything missing, mistyped or out of range."""
    path = Path(directory) / META_FILE
    if not path.exists():
        raise UserError(f"{directory}: not a ser-dist model (no {META_FILE}); pass a run directory or its model/ folder")
    if not path.is_file():
        raise UserError(f"{path}: not a file (a folder or a device); the model's metadata is missing, re-export the model")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: corrupt model metadata ({getattr(err, 'msg', None) or err.reason}); re-export the model") from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror or err}); check its permissions, or re-export the model") from None
    missing = [key for key in ("labels", "sample_rate", "experiment") if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise UserError(f"{path}: incomplete model metadata (no {', '.join(missing)}); re-export the model")
    check_meta(meta, path)
    return meta


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_meta(meta: dict, path: Path) -> None:
    """Refuse, in one line naming ``path`` and the key, metadata that would load into a wrong or crashing model:
    ``labels`` a non-empty list of distinct non-empty strings (and ``id2label`` / ``label2id``, where present,
    the same classes in the same order), ``sample_rate`` an integer in [1000, 384000] Hz, ``max_seconds`` null
    or a finite number > 0, ``experiment`` a mapping of sections."""
    fix = "re-export the model"
    labels = meta["labels"]
    check_dimensions_meta(meta, path)
    if not isinstance(labels, list) or not (labels or meta.get("dimensions")):
        raise UserError(f"{path}: labels={_shown(labels)} must be a non-empty list of class names; {fix}")
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            raise UserError(f"{path}: labels holds {_shown(label)}, not a class name (a non-empty string); {fix}")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise UserError(f"{path}: labels names {', '.join(map(repr, repeated))} more than once; each class needs one name, {fix}")
    if "id2label" in meta and meta["id2label"] != {str(i): name for i, name in enumerate(labels)}:
        raise UserError(f"{path}: id2label={_shown(meta['id2label'])} does not match labels {labels} (class i is labels[i]); {fix}")
    if "label2id" in meta and meta["label2id"] != {name: i for i, name in enumerate(labels)}:
        raise UserError(f"{path}: label2id={_shown(meta['label2id'])} does not match labels {labels} (class i is labels[i]); {fix}")
    rate = meta["sample_rate"]
    if not (isinstance(rate, int) and not isinstance(rate, bool) and 1000 <= rate <= 384000):
        raise UserError(f"{path}: sample_rate={_shown(rate)} must be an integer number of Hz in [1000, 384000]; {fix}")
    seconds = meta.get("max_seconds")
    if seconds is not None and not (_is_number(seconds) and math.isfinite(seconds) and seconds > 0):
        raise UserError(f"{path}: max_seconds={_shown(seconds)} must be null (whole clips) or a finite number of seconds > 0; {fix}")
    if not isinstance(meta["experiment"], dict):
        raise UserError(f"{path}: experiment={_shown(meta['experiment'])} must be a mapping of settings (data, model, loss, ...); {fix}")
    if not isinstance(meta.get("backbone_in_export", False), bool):
        raise UserError(f"{path}: backbone_in_export={_shown(meta['backbone_in_export'])} must be true or false; {fix}")
    for key in ("ssl", "test_metrics", "data", "hf_dataset"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise UserError(f"{path}: {key}={_shown(meta[key])} must be a mapping; {fix}")


def check_dimensions_meta(meta: dict, path: Path) -> None:
    """``dimensions`` (regression outputs after the classes, data.targets=dimensional|both), where present: a non-empty
    list of distinct names; ``dimension_range`` null or [low, high], low < high."""
    names, value_range = meta.get("dimensions", ["-"]), meta.get("dimension_range")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names) or len(set(names)) < len(names):
        raise UserError(f"{path}: dimensions={_shown(names)} must be a non-empty list of distinct dimension names; re-export the model")
    if value_range is not None and not (isinstance(value_range, list) and len(value_range) == 2 and all(map(_is_number, value_range))):
        raise UserError(f"{path}: dimension_range={_shown(value_range)} must be null or [low, high]; re-export the model")


def stored_experiment(directory: Path, meta: dict):
    """The experiment ``ser_dist.json`` stores, parsed as a ``--config`` file would be (unknown keys and mistyped
    values refused, missing keys filled with defaults); nothing it names is imported or checked here."""
    from ..config import from_dict

    try:
        return from_dict(meta["experiment"], check_values=False)
    except ConfigError as err:
        raise UserError(f"{Path(directory) / META_FILE}: experiment: {err}; re-export the model") from None


def check_stored_settings(directory: Path, meta: dict, exp) -> None:
    """The stored settings pass the command line's own range checks (``config_checks.check_numeric_ranges``) and agree
    with the metadata beside them, so a damaged or hand-edited file fails in one line instead of deep in a
    model builder, or with a model that predicts from audio at the wrong rate."""
    from .. import config
    from ..config_checks import check_choice, check_numeric_ranges

    source = Path(directory) / META_FILE
    try:
        check_numeric_ranges(exp)
        # The named choices evaluation reads (the split protocol, the precision) and the training ones, as
        # Experiment.validate checks them; the builders check the model's own (head, classifier, ...).
        for key, choices in (
            ("data.split", config.SPLITS),
            ("optim.scheduler", config.SCHEDULERS),
            ("optim.name", config.OPTIMIZERS),
            ("train.metric", config.METRICS),
            ("train.mixed_precision", config.PRECISIONS),
            ("model.head", config.HEADS),
        ):
            section, _, name = key.partition(".")
            check_choice(key, getattr(getattr(exp, section), name), choices)
    except ConfigError as err:
        raise UserError(f"{source}: experiment {err}; re-export the model") from None
    data = exp.data
    if data.max_seconds is not None and data.min_seconds > data.max_seconds:
        raise UserError(
            f"{source}: experiment data.min_seconds={data.min_seconds} is longer than data.max_seconds={data.max_seconds}; re-export the model"
        )
    if meta.get("dimensions", []) != (list(data.dimension_columns) if data.targets != "categorical" else []):
        raise UserError(
            f"{source}: dimensions={meta.get('dimensions')!r} disagree with its data.targets and data.dimension_columns; re-export the model"
        )
    for key in ("sample_rate", "max_seconds"):
        if meta.get(key) != getattr(data, key):
            raise UserError(
                f"{source}: {key}={meta.get(key)!r} but the experiment's data.{key}={getattr(data, key)!r}; the file was edited or damaged, re-export the model"
            )


def check_export(directory: Path) -> tuple[dict, object]:
    """(meta, experiment) of a model folder, every check done that needs no model built: the metadata's fields,
    the stored settings' types, the safe-loading checks (``check_model_folder``: before anything else looks at
    what the settings name) and the settings' ranges."""
    directory = Path(directory)
    meta = read_meta(directory)
    exp = stored_experiment(directory, meta)
    check_model_folder(directory, meta, exp)
    check_stored_settings(directory, meta, exp)
    return meta, exp


def _read_weights(directory: Path, map_location: str) -> dict:
    """Weights from ``model.safetensors``; a ``pytorch_model.bin`` only through ``torch.load(weights_only=True)``,
    which refuses to run pickled code, so a model folder from an untrusted source cannot execute anything."""
    from safetensors.torch import load_file

    weights = directory / WEIGHTS_FILE
    if weights.exists():
        return load_file(str(weights), device=map_location)
    legacy = directory / "pytorch_model.bin"
    if legacy.exists():
        import warnings

        try:
            with warnings.catch_warnings():  # torch warns about the pickle protocol of a file it may then refuse
                warnings.simplefilter("ignore")
                state = torch.load(legacy, map_location=map_location, weights_only=True)
        except Exception as err:  # UnpicklingError for anything that is not plain tensors
            raise UserError(
                f"{legacy}: refused or corrupt ({type(err).__name__}); only plain tensors are loaded, never pickled code: re-export as {WEIGHTS_FILE}"
            ) from None
        if not isinstance(state, dict):
            raise UserError(
                f"{legacy}: holds a {type(state).__name__}, not a state dict (tensor name -> tensor); re-export as {WEIGHTS_FILE}"
            )
        return state
    raise UserError(f"{directory}: no {WEIGHTS_FILE}; the export is incomplete, re-export the model")


def _custom_code_key(tree, path: str = "") -> str | None:
    """The first ``auto_map`` (transformers' pointer to Python files that come with a model) in a JSON tree."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "auto_map":
                return f"{path}{key}"
            found = _custom_code_key(value, f"{path}{key}.")
            if found:
                return found
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found = _custom_code_key(value, f"{path}{i}.")
            if found:
                return found
    return None


def check_model_folder(directory: Path, meta: dict, exp) -> None:
    """Refuse, before anything is imported or built, a model folder that would make loading run code it names.

    - every registry-named key of the stored experiment (``ser_dist.registry.CONFIG_REGISTRIES``: backbone,
      loss, corpus, augmentations) holds a registered name; an SSL export's backbone is its own folder;
    - ``model.attention`` is not a Hub kernel repository (transformers would download and run it);
    - an SSL export's JSON files carry no ``auto_map``: transformers would offer to import the folder's
      own ``*.py`` (and import it after a ``y`` on stdin), since ser-dist cannot tell transformers no.
    """
    source = Path(directory) / META_FILE
    in_export = bool(meta.get("backbone_in_export"))
    check_stored_names(exp, source, unregistered_ok=("model.backbone",) if in_export else ())
    attention = str(exp.model.attention)
    if "/" in attention or ":" in attention:
        raise UntrustedComponentError(
            f"{source}: model.attention={attention!r} names code to download; a model folder may name only built-in "
            "attention implementations (auto, sdpa, eager); if you trust this code, rebuild the model from your own recipe"
        )
    if in_export:
        for path in sorted(Path(directory).glob("*.json")):
            try:
                tree = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise UserError(f"{path}: corrupt JSON ({getattr(err, 'msg', None) or err.reason}); re-export the model") from None
            key = _custom_code_key(tree)
            if key:
                raise UntrustedComponentError(
                    f"{path}: {key} asks transformers to run the model's own Python code; a model folder may use only "
                    "built-in transformers models, and ser-dist never runs a model's code; if you trust this code, "
                    "rebuild the model from your own recipe"
                )


def _stored_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in the folder's safetensors file(s), read from their headers (no tensor is loaded);
    {} when they do not open, which loading the weights then reports."""
    from safetensors import safe_open

    index = directory / "model.safetensors.index.json"
    try:
        names = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else [WEIGHTS_FILE]
        shapes = {}
        for name in names:
            with safe_open(str(directory / name), framework="pt") as handle:
                for key in handle.keys():
                    shapes[key] = tuple(handle.get_slice(key).get_shape())
        return shapes
    except Exception:  # any damage: the load itself names it
        return {}


def check_weight_shapes(directory: Path, model, shapes: dict, num_labels: int) -> None:
    """Stored tensors whose shape differs from the model ``ser_dist.json`` describes: a classifier with another
    number of outputs than ``labels`` names is a label list that does not belong to the weights; any other
    difference, settings that do not (both are edits or damage, not truncated weights)."""
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    differing = [name for name in sorted(shapes) if name in expected and tuple(shapes[name]) != expected[name]]
    for name in differing:
        stored, wanted = tuple(shapes[name]), expected[name]
        if "classifier" in name.split(".") and stored and wanted and wanted[0] == num_labels and stored[1:] == wanted[1:]:
            raise UserError(
                f"{directory / META_FILE}: labels names {num_labels} classes but the weights' classifier ({name}) has {stored[0]} outputs; "
                "the labels do not belong to these weights, re-export the model"
            )
    if differing:
        name = differing[0]
        raise UserError(
            f"{directory}: weight {name} has shape {list(shapes[name])} but the model {META_FILE} describes has {list(expected[name])} "
            f"({len(differing)} tensor(s) differ); the weights and the settings do not belong together, re-export the model"
        )


def load_exported(directory: Path, map_location: str = "cpu"):
    """Rebuild the model from ``ser_dist.json`` and load its weights. Returns (model, meta).

    The folder is untrusted: ``check_export`` validates every field and setting read from it and
    ``check_model_folder`` refuses one naming anything but built-in components, and the model is built
    inside ``registry.untrusted``, where no name is imported."""
    from safetensors import SafetensorError

    from ..models import build_model

    directory = Path(directory)
    meta, exp = check_export(directory)
    exp.model.pretrained = False  # the weights come from the export, not from the Hub
    exp.model.checkpoint = None
    if meta.get("backbone_in_export"):  # e.g. an SSL encoder's config.json: rebuild from the export, not the Hub
        exp.model.backbone = str(directory)
    num_labels = len(meta["labels"])  # the class outputs; the dimensions' follow them (models/dimensional.py)
    with untrusted(directory / META_FILE):
        try:
            model = build_model(exp, num_labels)
        except ConfigError as err:  # a builder refusing a combination of settings: the stored ones, here
            raise UserError(f"{directory / META_FILE}: experiment {err}; re-export the model") from None
        except UserError:
            raise
        except (ValueError, TypeError, RuntimeError, KeyError, IndexError) as err:  # settings in range that still do not build
            reason = first_line(err, default="")
            raise UserError(
                f"{directory / META_FILE}: its settings do not build a model ({type(err).__name__}: {reason}); re-export the model"
            ) from None
    try:
        if hasattr(model, "load_export"):
            check_weight_shapes(directory, model, _stored_shapes(directory), num_labels)
            model.load_export(directory, meta)
        else:
            state = _read_weights(directory, map_location)
            check_weight_shapes(directory, model, {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}, num_labels)
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise UserError(
                    f"{directory / WEIGHTS_FILE}: weights do not match the model ({len(missing)} missing, {len(unexpected)} unexpected tensors); re-export the model"
                )
    except UserError:
        raise
    except (SafetensorError, OSError, RuntimeError, ValueError, KeyError) as err:
        raise UserError(f"{directory}: corrupt or truncated weights ({str(err).splitlines()[0]}); re-export the model") from None
    model.eval()
    return model, meta
