"""Recipes: scripts whose ``CONFIG = Experiment(...)`` is a page of settings, read or run by ``ser-dist cv`` / ``grid``.

``load_recipe`` reads a recipe's ``CONFIG`` without running it; ``run_recipe_main`` runs its ``__main__``
block in this process (its real entry point). ``resolved_config`` is the experiment ``ser-dist train`` /
``prepare`` TARGET [overrides] resolves, and ``recipe_help`` what their ``--help`` prints after a TARGET. ``smoke_overrides`` are the ``--smoke`` settings
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

from .config import Experiment, describe
from .errors import UserError
from .overrides import apply_overrides, data_overrides, parse_args


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


def resolved_config(target: str | None, overrides: Sequence[str] = (), data_items: Sequence[str] = ()) -> Experiment:
    """The settings ``ser-dist train|prepare TARGET overrides`` runs with, not yet validated: a recipe's ``CONFIG``
    (``TARGET`` ends in ``.py``), or the defaults with ``TARGET`` as a YAML config (None: the defaults alone),
    then ``--config`` files and ``section.key=value`` overrides, then ``--data KEY=VALUE`` items (``prepare``)."""
    if target is not None and target.endswith(".py"):
        base, config_args = load_recipe(target).config, []
    else:
        base, config_args = Experiment(), ([] if target is None else ["--config", target])
    return apply_overrides(base, {**parse_args([*config_args, *overrides]), **data_overrides(list(data_items))})


def recipe_help(command: str, target: str, overrides: Sequence[str] = (), data_items: Sequence[str] = ()) -> str:
    """``ser-dist COMMAND TARGET ... --help``: every key with the value this command line gives it (as
    ``python RECIPE --help`` lists a recipe's, with the overrides applied)."""
    recipe = target.endswith(".py")
    given = [*overrides, *(f"--data {item}" for item in data_items)]
    extra = " [--data KEY=VALUE ...] [--out DIR]" if command == "prepare" else ""
    lines = [
        f"usage: ser-dist {command} {target} [--config FILE.yaml] [section.key=value ...]{extra}",
        f"the settings of {'recipe' if recipe else 'YAML config'} {target}"
        + (f" with {' '.join(given)}" if given else "")
        + f" (defaults < {'recipe' if recipe else 'that YAML'} < --config < command line):",
        "",
        describe(resolved_config(target, overrides, data_items)),
    ]
    return "\n".join(lines)


@cache
def _smoke_settings() -> dict:
    """``smoke.yaml``: ``common`` overrides for every recipe, ``backbones`` adds per study row."""
    return yaml.safe_load(resources.files(__package__).joinpath("smoke.yaml").read_text(encoding="utf-8"))


def smoke_overrides(backbone: str) -> list[str]:
    """The ``--smoke`` overrides for a recipe whose backbone is ``backbone`` (unknown rows: the common ones)."""
    settings = _smoke_settings()
    return list(settings["common"]) + list(settings["backbones"].get(backbone, []))
