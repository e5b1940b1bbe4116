"""Name -> builder maps. Components are looked up by name, with ``package.module:attr`` as the escape hatch."""
from __future__ import annotations

import importlib
from typing import Callable, Dict, Generic, TypeVar

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
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

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        if ":" in name:  # escape hatch: an import path such as "my_pkg.models:my_backbone"
            module, _, attr = name.partition(":")
            try:
                return getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as err:
                raise KeyError(f"cannot import {self.kind} {name!r}: {err}") from None
        raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())} (or give an import path 'package.module:name')")


BACKBONES: Registry = Registry("backbone")
HEADS: Registry = Registry("head")
LOSSES: Registry = Registry("loss")
CORPORA: Registry = Registry("corpus")
AUGMENTATIONS: Registry = Registry("augmentation")
