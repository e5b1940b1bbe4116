"""Name -> builder maps. Components are looked up by name, with ``package.module:attr`` as the escape hatch.

The escape hatch is for names the user wrote: a recipe, a ``--config`` YAML, the command line. A model
folder (a run's ``model/``, an export, a Hub download) is not trusted: its ``ser_dist.json`` may name only
registered components. ``check_stored_names`` refuses any other name with one line before anything is
built, and inside ``untrusted(source)`` a lookup cannot import at all, whatever the caller forgot to check.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
from typing import Callable, Dict, Generic, Iterable, Iterator, TypeVar

from .errors import UserError

T = TypeVar("T", bound=Callable)

# Set (to the file the names come from) while a model folder's stored names are resolved.
_UNTRUSTED_SOURCE: contextvars.ContextVar[str | None] = contextvars.ContextVar("ser_dist_untrusted_source", default=None)


class UntrustedComponentError(UserError):
    """A model folder names a component that is not registered (an import path or an unknown name)."""


def refusal(source: str, key: str, value: str, known: Iterable[str]) -> UntrustedComponentError:
    what = "an import path" if ":" in str(value) else "not a registered name"
    return UntrustedComponentError(
        f"{source}: {key}={value!r} is {what}; a model folder may name only built-in components (known: {', '.join(known)}) "
        "and nothing it names is imported; if you trust this code, rebuild the model from your own recipe"
    )


def untrusted_source() -> str | None:
    """The model file whose names are being resolved now, or None when the names are the user's own."""
    return _UNTRUSTED_SOURCE.get()


@contextlib.contextmanager
def untrusted(source) -> Iterator[None]:
    """Within this block no ``Registry.get`` imports anything: names come from ``source`` (a model's file)."""
    token = _UNTRUSTED_SOURCE.set(str(source))
    try:
        yield
    finally:
        _UNTRUSTED_SOURCE.reset(token)


class Registry(Generic[T]):
    def __init__(self, kind: str, key: str | None = None):
        self.kind = kind
        self.key = key  # the config key whose value names an entry (None: not read from a config)
        self._entries: Dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def decorator(fn: T) -> T:
            key = name or fn.__name__
            if key in self._entries:
                raise KeyError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = fn
            return fn

        return decorator

    def __contains__(self, name: str) -> bool:
        return name in self._entries or ":" in name

    def is_registered(self, name) -> bool:
        return isinstance(name, str) and name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        if ":" in name:  # escape hatch: an import path such as "my_pkg.models:my_backbone"
            source = untrusted_source()
            if source is not None:  # the name came from a model folder: never import it
                load_builtins()  # ser-dist's own modules, so the message lists every built-in name
                raise refusal(source, self.key or self.kind, name, self.names())
            module, _, attr = name.partition(":")
            try:
                return getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as err:
                raise KeyError(f"cannot import {self.kind} {name!r}: {err}") from None
        raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())} (or give an import path 'package.module:name')")


BACKBONES: Registry = Registry("backbone", key="model.backbone")
HEADS: Registry = Registry("head")
LOSSES: Registry = Registry("loss", key="loss.name")
CORPORA: Registry = Registry("corpus", key="data.corpus")
AUGMENTATIONS: Registry = Registry("augmentation", key="data.augment")

# Every registry a stored experiment names entries of. A new registry read from a config key goes here,
# so that a model folder's value for it is checked too.
CONFIG_REGISTRIES = (BACKBONES, LOSSES, CORPORA, AUGMENTATIONS)

# ser-dist's own modules whose import registers the built-in entries.
_BUILTIN_MODULES = ("ser_dist.models", "ser_dist.losses", "ser_dist.data.manifest", "ser_dist.data.corpora", "ser_dist.data.augment")


def load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    from .models import _register_builtins

    _register_builtins()


def check_stored_names(exp, source, *, unregistered_ok: Iterable[str] = ()) -> None:
    """Refuse, in one line naming ``source``, a stored experiment whose registry-named keys hold anything
    but registered names. ``unregistered_ok``: keys that may also hold a plain name the registry lacks
    (never an import path), because the caller resolves them some other, import-free way."""
    load_builtins()
    allowed = set(unregistered_ok)
    for registry in CONFIG_REGISTRIES:
        section, _, field = registry.key.partition(".")
        value = getattr(getattr(exp, section), field)
        for name in value if isinstance(value, (list, tuple)) else [value]:
            if registry.is_registered(name):
                continue
            if registry.key in allowed and isinstance(name, str) and ":" not in name:
                continue
            raise refusal(str(source), registry.key, name, registry.names())
