"""What ``ser-dist predict`` prints: a table, ``--json`` (a list of objects) or ``--csv`` (a row per input and per window).

With ``--segment vad`` each input's speech segments follow it: a ``segments`` list in JSON, ``speech`` rows in CSV (a long
segment's ``window`` rows after it), a line each in the table (a segment extended to the model's minimum input says so).

Each input is named as it was given: a file's path, or a dataset row's record id ``hf://<name>/<split>/<row>``.
A model with dimensional outputs adds each dimension's value (``"dimensions": {name: value}`` in JSON, a column
each in CSV and the table); one without classes has no label, confidence or probabilities.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

from .inference import Prediction


def write_predictions(
    predictions: Sequence[Prediction],
    labels: Sequence[str],
    fmt: str = "table",
    top_k: int | None = None,
    out: TextIO | None = None,
    dimensions: Sequence[str] = (),
) -> None:
    """``fmt``: ``table``, ``json`` or ``csv``; ``out`` defaults to stdout; ``dimensions``: the model's, by name."""
    out = out or sys.stdout
    if not labels:  # dimensions alone
        write_dimensions(predictions, dimensions, fmt, out)
        return
    if fmt == "json":
        # allow_nan=False: strict JSON always (predict() fails an input whose output is not finite).
        print(json.dumps([p.to_dict(top_k=top_k) for p in predictions], indent=2, allow_nan=False), file=out)
    elif fmt == "csv":
        import csv

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["file", "segment", "start", "end", "label", "confidence", *[f"p_{name}" for name in labels], *dimensions])

        def write(p, segment: str, start: str, end: str, row: dict) -> None:
            probs = [f"{row['probabilities'][name]:.6f}" for name in labels]
            values = [f"{row['dimensions'][name]:.6f}" for name in dimensions]
            writer.writerow([p.file, segment, start, end, row["label"], f"{row['confidence']:.6f}", *probs, *values])

        for p in predictions:  # the input's row (segment "all"), then one row per window (or speech segment) of a long recording
            write(p, "all", "", "", p.to_dict())
            for kind, w in sub_rows(p):
                write(p, kind, f"{w['start']:.2f}", f"{w['end']:.2f}", w)
    else:
        width = max([len(p.file) for p in predictions] + [4])
        heads = "".join(f"  {name:>10}" for name in dimensions)
        print(f"{'file':<{width}}  {'emotion':<12} confidence{heads}" + ("  top " + str(top_k) if top_k else ""), file=out)
        for p in predictions:
            top = "  " + ", ".join(f"{label} {prob:.3f}" for label, prob in p.top(top_k)) if top_k else ""
            windows = f"  (mean of {len(p.windows)} windows)" if p.windows else ""
            windows = f"  (duration-weighted mean of {len(p.segments)} speech segments)" if p.segments else windows
            print(f"{p.file:<{width}}  {p.label:<12} {p.confidence:.3f}{_values(p.to_dict(), dimensions)}{top}{windows}", file=out)
            for w in p.windows or p.segments or []:
                values = _values(w, dimensions) + _segment_note(w)
                print(f"{'':<{width}}    {w['start']:7.1f}-{w['end']:7.1f} s  {w['label']:<12} {w['confidence']:.3f}{values}", file=out)


def sub_rows(p: Prediction) -> list[tuple[str, dict]]:
    """A prediction's rows after its own: ("window", w) per window, or ("speech", s) per speech segment, each then
    followed by its own windows."""
    if p.segments is None:
        return [("window", w) for w in p.windows or []]
    return [row for s in p.segments for row in [("speech", s), *[("window", w) for w in s.get("windows", [])]]]


def _segment_note(segment: dict) -> str:
    """The table's note on a speech segment: its windows, or the audio scored when it was extended."""
    if "extended_to" in segment:
        start, end = segment["extended_to"]
        return f"  (shorter than the model's minimum input: scored on {start:.2f}-{end:.2f} s)"
    return f"  (mean of {len(segment['windows'])} windows)" if "windows" in segment else ""


def _values(row: dict, dimensions: Sequence[str]) -> str:
    """A row's dimensions as the table's columns (``''`` without dimensions)."""
    return "".join(f"  {row['dimensions'][name]:>10.3f}" for name in dimensions)


def write_dimensions(predictions: Sequence[Prediction], dimensions: Sequence[str], fmt: str, out: TextIO) -> None:
    """The predictions of a model of dimensions alone: ``{"file", "dimensions"}`` objects, CSV rows or a table."""
    if fmt == "json":
        print(json.dumps([p.to_dict() for p in predictions], indent=2, allow_nan=False), file=out)
        return
    rows = []  # each input's row, then its windows
    for p in predictions:
        rows.append((p.file, "all", "", "", p.dimensions))
        rows += [(p.file, kind, f"{w['start']:.2f}", f"{w['end']:.2f}", w["dimensions"]) for kind, w in sub_rows(p)]
    if fmt == "csv":
        import csv

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["file", "segment", "start", "end", *dimensions])
        writer.writerows([*row[:4], *[f"{row[4][name]:.6f}" for name in dimensions]] for row in rows)
        return
    width = max([len(p.file) for p in predictions] + [4])
    print(f"{'file':<{width}}  " + "  ".join(f"{name:>10}" for name in dimensions), file=out)
    for file, segment, start, end, values in rows:
        name = file if segment == "all" else f"  {float(start):7.1f}-{float(end):7.1f} s"
        print(f"{name:<{width}}  " + "  ".join(f"{values[d]:>10.3f}" for d in dimensions), file=out)
