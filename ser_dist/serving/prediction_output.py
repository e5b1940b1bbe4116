"""What ``ser-dist predict`` prints: a table, ``--json`` (a list of objects) or ``--csv`` (a row per input and per window).

Each input is named as it was given: a file's path, or a dataset row's record id ``hf://<name>/<split>/<row>``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

from .inference import Prediction


def write_predictions(
    predictions: Sequence[Prediction], labels: Sequence[str], fmt: str = "table", top_k: int | None = None, out: TextIO | None = None
) -> None:
    """``fmt``: ``table``, ``json`` or ``csv``; ``out`` defaults to stdout."""
    out = out or sys.stdout
    if fmt == "json":
        # allow_nan=False: strict JSON always (predict() fails an input whose output is not finite).
        print(json.dumps([p.to_dict(top_k=top_k) for p in predictions], indent=2, allow_nan=False), file=out)
    elif fmt == "csv":
        import csv

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["file", "segment", "start", "end", "label", "confidence", *[f"p_{name}" for name in labels]])

        def write(p, segment: str, start: str, end: str, row: dict) -> None:
            probs = [f"{row['probabilities'][name]:.6f}" for name in labels]
            writer.writerow([p.file, segment, start, end, row["label"], f"{row['confidence']:.6f}", *probs])

        for p in predictions:  # the input's row (segment "all"), then one row per window of a long recording
            write(p, "all", "", "", p.to_dict())
            for w in p.windows or []:
                write(p, "window", f"{w['start']:.2f}", f"{w['end']:.2f}", w)
    else:
        width = max([len(p.file) for p in predictions] + [4])
        print(f"{'file':<{width}}  {'emotion':<12} confidence" + ("  top " + str(top_k) if top_k else ""), file=out)
        for p in predictions:
            top = "  " + ", ".join(f"{label} {prob:.3f}" for label, prob in p.top(top_k)) if top_k else ""
            windows = f"  (mean of {len(p.windows)} windows)" if p.windows else ""
            print(f"{p.file:<{width}}  {p.label:<12} {p.confidence:.3f}{top}{windows}", file=out)
            for w in p.windows or []:
                print(f"{'':<{width}}    {w['start']:7.1f}-{w['end']:7.1f} s  {w['label']:<12} {w['confidence']:.3f}", file=out)
