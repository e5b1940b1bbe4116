"""ser-dist: speech emotion recognition training with Accelerate, and prediction with trained models.

``from ser_dist import EmotionClassifier`` is lazy: importing the package loads nothing heavy.
"""

from __future__ import annotations

__version__ = "0.1.0"  # pyproject.toml's version (tests/test_cli_help.py keeps them equal); used without package metadata

_LAZY = {
    "EmotionClassifier": "ser_dist.serving.inference",
    "Prediction": "ser_dist.serving.inference",
    "SERHubModel": "ser_dist.serving.hub",
    "evaluate_model": "ser_dist.serving.evaluation",
    "push_to_hub": "ser_dist.serving.hub",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ser_dist' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
