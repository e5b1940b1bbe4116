"""Every built-in component, by name: one table per kind, ``name -> "module:attr"``.

Reading a table imports nothing, so checking a name (a config's validation, a model folder's names,
the did-you-mean of an error) costs nothing and pulls in neither torch nor a model; ``get`` imports the
one entry it returns. A name with a colon, ``package.module:attr``, is the escape hatch for a user's
own component; ``register`` adds one at run time (a notebook, a test).

The escape hatch is for names the user wrote: a recipe, a ``--config`` YAML, the command line. A model
folder (a run's ``model/``, an export, a Hub download) is not trusted: its ``ser_dist.json`` may name only
registered components. ``check_stored_names`` refuses any other name with one line before anything is
built, and inside ``untrusted(source)`` a lookup cannot import at all, whatever the caller forgot to check.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
from collections.abc import Callable, Iterable, Iterator

from .errors import ConfigError, UserError

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


def _import(path: str) -> Callable:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


class Registry:
    """The built-in ``name -> "module:attr"`` table of one kind of component, plus what ``register`` adds."""

    def __init__(self, kind: str, key: str, builtins: dict[str, str]):
        self.kind = kind
        self.key = key  # the config key whose value names an entry
        self.builtins = dict(builtins)
        self._entries: dict[str, Callable] = {}  # built-ins once imported, and components registered at run time

    def register(self, name: str | None = None) -> Callable[[Callable], Callable]:
        """A decorator adding a component under ``name`` (default: the function's name) for this process."""

        def decorator(fn: Callable) -> Callable:
            key = name or fn.__name__
            if key in self._entries or key in self.builtins:
                raise KeyError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = fn
            return fn

        return decorator

    def __contains__(self, name: str) -> bool:
        return self.is_registered(name) or ":" in name

    def is_registered(self, name) -> bool:
        return isinstance(name, str) and (name in self.builtins or name in self._entries)

    def names(self) -> list[str]:
        return sorted(set(self.builtins) | set(self._entries))

    def get(self, name: str) -> Callable:
        if name in self._entries:
            return self._entries[name]
        if name in self.builtins:
            self._entries[name] = _import(self.builtins[name])
            return self._entries[name]
        if ":" in name:  # escape hatch: an import path such as "my_pkg.models:my_backbone"
            source = untrusted_source()
            if source is not None:  # the name came from a model folder: never import it
                raise refusal(source, self.key, name, self.names())
            try:
                return _import(name)
            except (ImportError, AttributeError) as err:
                raise KeyError(f"cannot import {self.kind} {name!r}: {err}") from None
        raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())} (or give an import path 'package.module:name')")

    def require(self, name: str, key: str) -> None:
        """A ``ConfigError`` naming ``key`` unless ``get(name)`` will find ``name``. Only an import path (the
        user's own) is imported, so that a bad one fails now; a table name imports nothing."""
        if self.is_registered(name):
            return
        if ":" in name:
            try:
                self.get(name)
            except KeyError as err:
                raise ConfigError(f"{key}: {err.args[0]}") from None
            return
        raise ConfigError(f"{key}: unknown {self.kind} {name!r}; known: {', '.join(self.names())}")


BACKBONES = Registry(
    "backbone",
    "model.backbone",
    {
        "bilstm": "ser_dist.models.recurrent:bilstm",
        "lstm": "ser_dist.models.recurrent:lstm",
        "vggish": "ser_dist.models.vggish:vggish",
        # log-mel -> 4 conv blocks -> BiLSTM -> attentive statistics pooling, from scratch (~0.6 M parameters)
        "crnn": "ser_dist.models.crnn:crnn",
        # Any Hub id or save_pretrained folder of the wav2vec2 / HuBERT / WavLM family; the presets below call it.
        "ssl_encoder": "ser_dist.models.ssl:ssl_encoder",
        "hubert_base": "ser_dist.models.ssl_presets:hubert_base",
        "hubert_large": "ser_dist.models.ssl_presets:hubert_large",
        "wav2vec2_base": "ser_dist.models.ssl_presets:wav2vec2_base",
        "wav2vec2_large": "ser_dist.models.ssl_presets:wav2vec2_large",
        "wavlm_base_plus": "ser_dist.models.ssl_presets:wavlm_base_plus",
        "wavlm_large": "ser_dist.models.ssl_presets:wavlm_large",
        # ~35 K-parameter random models built from code (no download): tests and CPU smoke runs.
        "hubert_tiny_random": "ser_dist.models.ssl_presets:hubert_tiny_random",
        "wav2vec2_tiny_random": "ser_dist.models.ssl_presets:wav2vec2_tiny_random",
        "wavlm_tiny_random": "ser_dist.models.ssl_presets:wavlm_tiny_random",
        # openSMILE functionals (model.smile_set) + a linear model or small MLP: pip install 'ser-dist[opensmile]'
        "opensmile": "ser_dist.models.smile:opensmile",
    },
)
LOSSES = Registry(
    "loss",
    "loss.name",
    {
        "ce": "ser_dist.losses:build_cross_entropy",
        "label_smoothing": "ser_dist.losses:build_label_smoothing",
        "focal": "ser_dist.losses:build_focal",
        "aam": "ser_dist.losses:build_additive_angular_margin",
        "ccc": "ser_dist.losses:build_concordance",
        # the multi-class hinge of a linear SVM (torch.nn.MultiMarginLoss); L2 through optim.weight_decay
        "svm": "ser_dist.losses:build_multiclass_hinge",
    },
)
CORPORA = Registry(
    "corpus",
    "data.corpus",
    {
        "folder": "ser_dist.data.folder:folder",
        "manifest": "ser_dist.data.manifest:manifest",
        "iemocap": "ser_dist.data.corpora:iemocap",
        "crema_d": "ser_dist.data.corpora:crema_d",
        "ravdess": "ser_dist.data.corpora:ravdess",
        "tess": "ser_dist.data.corpora:tess",
        "emodb": "ser_dist.data.corpora:emodb",
        "savee": "ser_dist.data.corpora:savee",
    },
)
AUGMENTATIONS = Registry(
    "augmentation",
    "data.augment",
    {
        "bandpass": "ser_dist.data.augment:bandpass",
        "pitch_shift": "ser_dist.data.augment:pitch_shift",
        "time_mask": "ser_dist.data.augment:time_mask",
        "noise": "ser_dist.data.augment:noise",
        "gain": "ser_dist.data.augment:gain",
        "speed": "ser_dist.data.augment:speed",
    },
)

# Every registry a stored experiment names entries of. A new registry read from a config key goes here,
# so that a model folder's value for it is checked too.
CONFIG_REGISTRIES = (BACKBONES, LOSSES, CORPORA, AUGMENTATIONS)


def check_stored_names(exp, source, *, unregistered_ok: Iterable[str] = ()) -> None:
    """Refuse, in one line naming ``source``, a stored experiment whose registry-named keys hold anything
    but registered names. ``unregistered_ok``: keys that may also hold a plain name the registry lacks
    (never an import path), because the caller resolves them some other, import-free way."""
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
