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
    from .data.pipeline import write_report
    from .data.report_text import report_text
    from .progress import configured
    from .recipe import resolved_config
    from .run_data import check_validation_split, prepare_run_data

    if recipe is None and not data_items:
        raise UserError(
            "ser-dist prepare needs a recipe (ser-dist prepare recipes/bilstm_mfcc_ce.py data.root=DIR) or --data KEY=VALUE ..."
        )
    exp = resolved_config(recipe, overrides, data_items).validate()
    with configured(exp.train.progress, exp.train.progress_seconds), _cache_lines_on_stdout():
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
def _cache_lines_on_stdout():
    """The decode cache's lines (a hit, or what was decoded) on stdout, beside the report; stderr holds the
    decoding progress (``ser_dist.progress``, as ``train.progress`` says) and an error's one line."""
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
