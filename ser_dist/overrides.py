"""From text to typed settings: ``section.key=value`` overrides, ``--config`` YAML files, a field's annotation.

Works on any experiment dataclass whose fields are section dataclasses (``ser_dist.config.Experiment``):
a key that no section has is an error with a did-you-mean, and each value is checked against its field's
annotation, converting only what a YAML scalar or a command-line string allows (``"3"`` -> 3, ``a,b`` -> a list).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import ConfigError

# Keys of earlier versions, and what replaced them (a stored record's are translated: config.stored_settings).
RENAMED = {"train.tensorboard": "use train.report_to=[tensorboard] (the default) or train.report_to=[] for no tracker"}


def sections(exp) -> dict[str, Any]:
    return {f.name: getattr(exp, f.name) for f in dataclasses.fields(exp) if dataclasses.is_dataclass(getattr(exp, f.name))}


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field's annotation, converting what a YAML scalar or CLI string allows."""
    annotation = resolve_annotation(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: cannot be {value!r}")
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()] if value.strip() not in ("", "[]") else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} must be a list (comma-separated on the command line, [] for an empty one)")
        return [_coerce(key, v, item) for v in value]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{key}={value!r} must be true or false")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be an integer")
        if isinstance(value, int):
            return value
        try:
            return int(str(value))
        except ValueError:
            raise ConfigError(f"{key}={value!r} must be an integer") from None
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={value!r} must be a number") from None
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}={value!r} must be a string")
        if value is None or not str(value).strip():  # an empty key=, which would otherwise become the string "None"
            raise ConfigError(f"{key} needs a value (it was given empty)")
        return str(value)
    return value


def resolve_annotation(annotation: Any) -> Any:
    if isinstance(annotation, str):  # from __future__ annotations
        return eval(annotation, {**vars(typing), "Optional": Optional, "list": list})
    return annotation


def _set(exp, dotted: str, raw: Any) -> None:
    by_name = sections(exp)
    top = {f.name for f in dataclasses.fields(exp)}
    section_name, _, key = dotted.partition(".")
    if not key:
        if section_name in top and section_name not in by_name:
            setattr(exp, section_name, _coerce(section_name, raw, next(f.type for f in dataclasses.fields(exp) if f.name == section_name)))
            return
        raise ConfigError(f"unknown config key {dotted!r}; keys look like section.key=value, sections: {', '.join(by_name)}")
    if section_name not in by_name:
        hint = difflib.get_close_matches(section_name, list(by_name), n=1)
        raise ConfigError(
            f"unknown config section {section_name!r} in {dotted!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else f"; sections: {', '.join(by_name)}")
        )
    section = by_name[section_name]
    fields = {f.name: f for f in dataclasses.fields(section)}
    if dotted in RENAMED:
        raise ConfigError(f"{dotted} is gone: {RENAMED[dotted]}")
    if key not in fields:
        hint = difflib.get_close_matches(key, list(fields), n=1)
        raise ConfigError(
            f"unknown config key {dotted!r}"
            + (f"; did you mean {section_name}.{hint[0]}?" if hint else f"; {section_name} has: {', '.join(fields)}")
        )
    setattr(section, key, _coerce(dotted, raw, fields[key].type))


def apply_overrides(exp, overrides: dict[str, Any]):
    exp = dataclasses.replace(exp, **{name: dataclasses.replace(sec) for name, sec in sections(exp).items()})
    for dotted, value in overrides.items():
        _set(exp, dotted, value)
    return exp


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"epochs": 3}} -> {"train.epochs": 3}."""
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


class _SettingsLoader(yaml.SafeLoader):
    """SafeLoader whose booleans are YAML 1.2's (true/false): ``train.progress=off`` stays the text "off"
    (YAML 1.1 reads off/on/yes/no as booleans); a boolean field still takes those words (``_coerce``)."""


_SettingsLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SettingsLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


class _UniqueKeyLoader(_SettingsLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (line {key_node.start_mark.line + 1})", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if not path.is_file():
        raise ConfigError(f"{path}: is a folder, not a YAML config file")
    try:
        tree = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); re-save it as UTF-8"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data:, model:, ...)")
    return flatten(tree)


def parse_args(argv: list[str]) -> dict[str, Any]:
    """``--config FILE`` entries first (in order), then ``section.key=value`` entries."""
    from_files: dict[str, Any] = {}
    from_cli: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-c"):
            if i + 1 >= len(argv):
                raise ConfigError("--config needs a file: --config my_run.yaml")
            from_files.update(load_yaml(argv[i + 1]))
            i += 2
            continue
        if arg.startswith("--config="):
            from_files.update(load_yaml(arg.split("=", 1)[1]))
        elif "=" in arg and not arg.startswith("-"):
            key, _, value = arg.partition("=")
            try:
                from_cli[key.strip()] = yaml.load(value, Loader=_SettingsLoader) if value.strip() else None
            except yaml.YAMLError:
                from_cli[key.strip()] = value
        else:
            raise ConfigError(f"unexpected argument {arg!r}; use section.key=value (e.g. train.epochs=5) or --config FILE.yaml")
        i += 1
    return {**from_files, **from_cli}


def data_overrides(items: list[str]) -> dict[str, str]:
    """``--data key=value ...`` (``ser-dist evaluate``, ``ser-dist prepare``) as ``{"data.key": value}``; a key
    may be written ``data.key`` too, and one given twice is an error (which value was meant is unknown)."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--data {item!r}: give key=value pairs, e.g. --data root=DIR corpus=emodb (or hf_dataset=ID_OR_DIR)")
        dotted = key if key.startswith("data.") else f"data.{key}"
        if dotted in pairs:
            raise ConfigError(f"--data {key}= is given twice ({pairs[dotted]!r} and {value!r}); give each key once")
        pairs[dotted] = value
    return pairs
