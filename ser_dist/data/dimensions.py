"""Dimensional targets (``data.targets=dimensional|both``): each clip's ratings, one per ``data.dimension_columns``.

The ratings come from the columns of a manifest row (``data/manifest.py``) or of a Hugging Face dataset's row
(``add_hf_dimensions``), as numbers or numeric text. ``data.dimension_range=[low, high]`` maps them to [0, 1]
(``(value - low) / (high - low)``); without it they are kept as given. A clip whose value is missing, not a
number, not finite or outside the range is set aside with the reason (never read as 0), and the run's
data report lists it; a column that is not there at all is one line naming the file or dataset and the fix.
The values travel with the clip's record into the decode cache (whose key includes them), ``AudioClips`` and
the batches (``batch["dimensions"]``, float32 [B, K]).
"""

from __future__ import annotations

import math

from .records import DataError, Record, Scan

# The label of a clip that has none, under data.targets=dimensional (a manifest without a label column).
NO_CLASS = "(none)"


def dimension_columns(data) -> list[str]:
    """The configured dimension columns, or [] when the run has categorical targets only."""
    if data is None or getattr(data, "targets", "categorical") == "categorical":
        return []
    return [str(name).strip() for name in data.dimension_columns]


def labels_optional(data) -> bool:
    """Under ``data.targets=dimensional`` a clip needs no class (a corpus of ratings alone)."""
    return data is not None and getattr(data, "targets", "categorical") == "dimensional"


def rating(value, column: str, value_range) -> float | str:
    """One rating as the model's target (mapped to [0, 1] when ``value_range`` is given), or the reason it is unusable."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return f"no {column!r} rating (data.dimension_columns): the clip has no value there"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return f"{column!r} rating {str(value)[:40]!r} is not a number"
    try:
        number = float(value)
    except ValueError:
        return f"{column!r} rating {value.strip()[:40]!r} is not a number"
    if not math.isfinite(number):
        return f"{column!r} rating is {number} (not a finite number)"
    if value_range is None:
        return number
    low, high = (float(v) for v in value_range)
    if not low <= number <= high:
        return f"{column!r} rating {number:g} is outside data.dimension_range [{low:g}, {high:g}]; fix the value or the range"
    return (number - low) / (high - low)


def row_ratings(row: dict, columns: list[str], value_range) -> tuple[tuple[float, ...] | None, str | None]:
    """(ratings, None) for a row with a usable value in every column, else (None, the first reason)."""
    values = []
    for column in columns:
        value = rating(row.get(column), column, value_range)
        if isinstance(value, str):
            return None, value
        values.append(value)
    return tuple(values), None


def missing_column(where, column: str, found: list[str], targets: str) -> DataError:
    """The one line for a dimension column that the manifest or dataset does not have."""
    shown = ", ".join(map(repr, found)) or "none"
    return DataError(
        f"{where}: no {column!r} column for data.dimension_columns (found: {shown}); data.targets={targets} reads each clip's "
        "ratings from these columns: set data.dimension_columns=COLUMN,... to the ones holding them, or data.targets=categorical"
    )


def no_ratings_source(data, where) -> DataError:
    """The one line for dimensional targets on a corpus that has no ratings (a folder per class, a corpus adapter)."""
    from pathlib import Path

    manifest = Path(str(data.root or ".")) / "manifest.csv"  # the demo corpus writes one (ser-dist make-demo-data)
    given = f"data.manifest={manifest}" if manifest.is_file() else "data.manifest=FILE"
    return DataError(
        f"{where}: data.targets={data.targets} needs each clip's ratings, which a folder of class folders does not hold; pass a "
        f"manifest with the columns {', '.join(dimension_columns(data))} ({given}) or a Hugging Face dataset with them "
        "(data.hf_dataset=...)"
    )


def add_hf_dimensions(scan: Scan, data) -> None:
    """The ratings of each of ``scan``'s records (rows of its Hugging Face dataset) from the dataset's dimension columns;
    a row without a usable value is set aside with the reason. A column no split has is one line."""
    columns = dimension_columns(data)
    hf = scan.dataset
    if not columns:
        return
    ratings: dict[str, tuple] = {}
    for split, ds in hf.splits.items():
        for column in columns:
            if column not in ds.features:
                raise missing_column(f"{hf.name} (split {split!r})", column, list(ds.features), data.targets)
        table = ds.select_columns(columns).with_format("arrow")[:]
        values = {column: table.column(column).to_pylist() for column in columns}
        for row in range(len(ds)):
            ratings[f"{split}/{row}"] = row_ratings({c: values[c][row] for c in columns}, columns, data.dimension_range)
    kept: list[Record] = []
    for rec in scan.records:
        _, split, row = rec.path.rsplit("/", 2)  # hf://<name>/<split>/<row>
        values, reason = ratings[f"{split}/{row}"]
        if reason is not None:
            scan.problems.append((rec.path, reason))
            continue
        rec.dimensions = values
        kept.append(rec)
    scan.records = kept
