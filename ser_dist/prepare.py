"""``ser-dist prepare``: the data step of a run alone (SpeechBrain's separate, idempotent preparation).

``ser-dist prepare RECIPE [section.key=value ...]`` or ``ser-dist prepare --data KEY=VALUE ...`` scans the
corpus, decodes every clip into the decode cache and draws the split exactly as ``train`` would with the
same settings, then prints the data report (``data/report_text.py``). The training run afterwards finds
the cache filled and starts in seconds; data it would refuse fails here, with the same one line.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from .errors import UserError


def prepare(recipe: str | None, overrides: list[str], data_items: list[str], out: str | None = None):
    """Resolve the config as ``train`` does (recipe < ``--config`` < overrides; ``--data`` keys last), prepare
    its data, print the report; ``out``: also write ``data_report.json`` and ``split.csv`` there."""
    from .config import Experiment
    from .data.pipeline import write_report
    from .data.report_text import report_text
    from .overrides import apply_overrides, data_overrides, parse_args
    from .run_data import check_validation_split, prepare_run_data

    if recipe is None and not data_items:
        raise UserError(
            "ser-dist prepare needs a recipe (ser-dist prepare recipes/bilstm_mfcc_ce.py data.root=DIR) or --data KEY=VALUE ..."
        )
    base, config_args = Experiment(), []
    if recipe is not None and recipe.endswith(".py"):
        from .recipe import load_recipe

        base = load_recipe(recipe).config
    elif recipe is not None:
        config_args = ["--config", recipe]  # a YAML config, as ser-dist train takes one
    exp = apply_overrides(base, {**parse_args([*config_args, *overrides]), **data_overrides(data_items)}).validate()
    with _cache_progress_on_stdout():
        prepared = prepare_run_data(exp)  # as the training run prepares it: same cache entry, same split
    check_validation_split(prepared)  # data training would refuse fails here, with the same line
    if out is not None:
        from .data.split_file import write_split

        Path(out).mkdir(parents=True, exist_ok=True)
        write_split(prepared.records, prepared.split_indices, Path(out) / "split.csv")
        write_report(prepared.report, Path(out) / "data_report.json")
    print(report_text(prepared))
    if out is not None:
        print(f"-> {Path(out) / 'data_report.json'}, {Path(out) / 'split.csv'}")
    return prepared


@contextlib.contextmanager
def _cache_progress_on_stdout():
    """The decode cache's lines (a hit, or the decoding progress) on stdout: stderr keeps the one error line."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("ser_dist.data")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
