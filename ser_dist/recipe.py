"""Recipes: scripts whose ``CONFIG = Experiment(...)`` is a page of settings, read or run by ``ser-dist cv`` / ``grid``.

``load_recipe`` reads a recipe's ``CONFIG`` without running it; ``run_recipe_main`` runs its ``__main__``
block in this process (its real entry point). ``smoke_overrides`` are the ``--smoke`` settings
(``ser_dist/smoke.yaml``): tiny models and one epoch, to check a setup end to end in minutes on a CPU.
"""

from __future__ import annotations

import dataclasses
import os
import runpy
import sys
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from .config import Experiment
from .errors import UserError


@dataclasses.dataclass
class Recipe:
    """A recipe script and its ``CONFIG``; its name, study row and column come from them."""

    path: Path
    config: Experiment  # the recipe's CONFIG, before any override

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def backbone(self) -> str:
        """The study row: the recipe's own backbone, whatever a smoke override swaps in."""
        return self.config.model.backbone

    @property
    def loss(self) -> str:
        return self.config.loss.name


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read a recipe's ``CONFIG`` without running it (its ``__main__`` block does not execute)."""
    path = Path(path)
    if path.suffix != ".py" or not path.is_file():
        raise UserError(f"{path}: recipe not found; recipes are scripts such as recipes/lstm_focal.py")
    namespace = runpy.run_path(str(path), run_name="ser_dist_recipe")
    config = namespace.get("CONFIG")
    if not isinstance(config, Experiment):
        raise UserError(f"{path}: a recipe defines CONFIG = Experiment(...) at module level; this one does not")
    return Recipe(path=path, config=config)


def run_recipe_main(path: Path, overrides: Sequence[str]) -> None:
    """Run a recipe's ``__main__`` block in this process, as ``python RECIPE overrides`` would."""
    saved = sys.argv
    sys.argv = [str(path), *overrides]
    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:
        sys.argv = saved


@cache
def _smoke_settings() -> dict:
    """``smoke.yaml``: ``common`` overrides for every recipe, ``backbones`` adds per study row."""
    return yaml.safe_load(resources.files(__package__).joinpath("smoke.yaml").read_text(encoding="utf-8"))


def smoke_overrides(backbone: str) -> list[str]:
    """The ``--smoke`` overrides for a recipe whose backbone is ``backbone`` (unknown rows: the common ones)."""
    settings = _smoke_settings()
    return list(settings["common"]) + list(settings["backbones"].get(backbone, []))
