"""Exported models: a folder that ``ser-dist predict`` and ``EmotionClassifier.from_pretrained`` load.

Layout (the ``huggingface_hub`` ``PyTorchModelHubMixin`` convention): ``model.safetensors`` (weights,
never pickle), ``config.json`` and ``ser_dist.json`` (the resolved experiment, label names, sample
rate, crop policy, test metrics, data summary), plus the ``README.md`` model card and its
``confusion_matrix.png`` (``ser_dist.model_card``). A backbone may write its own weight/config files
instead (``model.export_pretrained``), e.g. a stock transformers layout that ``transformers.pipeline``
loads. Loading reads safetensors, or a ``pytorch_model.bin`` only with ``torch.load(weights_only=True)``.

A model folder is untrusted input, so loading one never imports a module it names: ``ser_dist.json`` may
name only registered components (``check_model_folder``), and an SSL export's transformers files may not
ask for custom code (``auto_map``). Import paths are honoured only in the user's own recipe or command line.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from .errors import UserError
from .registry import UntrustedComponentError, check_stored_names, untrusted

META_FILE = "ser_dist.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


def export_model(model, state_dict: dict, directory: Path, *, exp, label_names: list[str], extra: dict | None = None) -> Path:
    """Write the export atomically (temp folder, then rename). Call on the main process only."""
    from safetensors.torch import save_file

    from .config import model_dict

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
        "experiment": model_dict(exp),
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


def read_meta(directory: Path) -> dict:
    path = Path(directory) / META_FILE
    if not path.exists():
        raise UserError(f"{directory}: not a ser-dist model (no {META_FILE}); pass a run directory or its model/ folder")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: corrupt model metadata ({getattr(err, 'msg', None) or err.reason}); re-export the model") from None
    missing = [key for key in ("labels", "sample_rate", "experiment") if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise UserError(f"{path}: incomplete model metadata (no {', '.join(missing)}); re-export the model")
    return meta


def _read_weights(directory: Path, map_location: str) -> dict:
    """Weights from ``model.safetensors``; a ``pytorch_model.bin`` only through ``torch.load(weights_only=True)``,
    which refuses to run pickled code, so a model folder from an untrusted source cannot execute anything."""
    from safetensors.torch import load_file

    weights = directory / WEIGHTS_FILE
    if weights.exists():
        return load_file(str(weights), device=map_location)
    legacy = directory / "pytorch_model.bin"
    if legacy.exists():
        try:
            return torch.load(legacy, map_location=map_location, weights_only=True)
        except Exception as err:  # UnpicklingError for anything that is not plain tensors
            raise UserError(f"{legacy}: refused or corrupt ({str(err).splitlines()[0][:200]}); only plain tensors are loaded, re-export as {WEIGHTS_FILE}") from None
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


def load_exported(directory: Path, map_location: str = "cpu"):
    """Rebuild the model from ``ser_dist.json`` and load its weights. Returns (model, meta).

    The folder is untrusted: ``check_model_folder`` refuses one naming anything but built-in components,
    and the model is built inside ``registry.untrusted``, where no name is imported."""
    from safetensors import SafetensorError

    from .config import from_dict
    from .models import build_model

    directory = Path(directory)
    meta = read_meta(directory)
    exp = from_dict(meta["experiment"])
    check_model_folder(directory, meta, exp)
    exp.model.pretrained = False  # the weights come from the export, not from the Hub
    exp.model.checkpoint = None
    if meta.get("backbone_in_export"):  # e.g. an SSL encoder's config.json: rebuild from the export, not the Hub
        exp.model.backbone = str(directory)
    with untrusted(directory / META_FILE):
        model = build_model(exp, len(meta["labels"]))
    try:
        if hasattr(model, "load_export"):
            model.load_export(directory, meta)
        else:
            state = _read_weights(directory, map_location)
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise UserError(f"{directory / WEIGHTS_FILE}: weights do not match the model ({len(missing)} missing, {len(unexpected)} unexpected tensors); re-export the model")
    except UserError:
        raise
    except (SafetensorError, OSError, RuntimeError, ValueError, KeyError) as err:
        raise UserError(f"{directory}: corrupt or truncated weights ({str(err).splitlines()[0]}); re-export the model") from None
    model.eval()
    return model, meta
