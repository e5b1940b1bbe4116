"""The data report as ``ser-dist prepare`` prints it: what a run would train, validate and test on.

Classes with their clips per split, speakers per split, clip durations (percentiles before the
``data.max_seconds`` crop), the clips skipped (counted by kind, the first few with their reason) and
set aside, and the warnings. Everything is also in ``data_report.json``; this is the page to read.
"""

from __future__ import annotations

import collections

import numpy as np

from .pipeline import PreparedData, clip_name, skip_kind, summary_line

SHOWN_PROBLEMS = 5
SHOWN_SPEAKERS = 8
PERCENTILES = (5, 50, 95)


def report_text(prepared: PreparedData) -> str:
    report = prepared.report
    splits = list(report["splits"])
    lines = [summary_line(report), ""]
    labels = prepared.label_names or report["labels"]  # data.targets=dimensional: the data's classes, if it has any
    width = max([len(label) for label in labels] + [5])
    lines.append(f"{'class':<{width}}  " + "  ".join(f"{name:>6}" for name in splits))
    for label in labels:
        counts = [report["splits"][name]["per_class"].get(label, 0) for name in splits]
        lines.append(f"{label:<{width}}  " + "  ".join(f"{count:>6}" for count in counts))
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{report['splits'][name]['num_clips']:>6}" for name in splits))
    dimensions = report.get("dimensions")
    if dimensions:  # data.targets=dimensional|both: each split's ratings, after data.dimension_range
        lines += ["", f"{'ratings (mean +- sd)':<21}" + "  ".join(f"{name:>15}" for name in splits)]
        for column in dimensions["columns"]:
            cells = [dimensions["splits"][name][column] for name in splits]
            lines.append(f"  {column:<19}" + "  ".join(f"{c['mean']:>6.3f} +- {c['std']:.3f}" if c else f"{'-':>15}" for c in cells))
    lines += ["", "speakers:"]
    for name in splits:
        speakers = report["splits"][name]["speakers"]
        shown = ", ".join(speakers[:SHOWN_SPEAKERS]) + (
            f", ... (+{len(speakers) - SHOWN_SPEAKERS})" if len(speakers) > SHOWN_SPEAKERS else ""
        )
        lines.append(f"  {name}: {len(speakers)}" + (f" ({shown})" if speakers else " (no speaker ids)"))
    lines += ["", "seconds per clip (before the crop): " + " / ".join(f"p{p}" for p in PERCENTILES) + " / max"]
    original = prepared.dataset.select_columns(["original_duration"]).with_format("arrow")[:].column(0).to_numpy()
    for name in splits:
        values = original[np.asarray(prepared.split_indices[name], dtype=np.int64)]
        if values.size:
            figures = [*np.percentile(values, PERCENTILES), values.max()]
            lines.append(f"  {name}: " + " / ".join(f"{value:.2f}" for value in figures))
    lines += _problems("skipped", report["skipped_files"], by_kind=True)
    lines += _problems("set aside", report["set_aside_files"])
    for warning in report.get("warnings") or []:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def _problems(what: str, rows: list[dict], by_kind: bool = False) -> list[str]:
    if not rows:
        return []
    kinds = collections.Counter(skip_kind(row["reason"]) for row in rows) if by_kind else {}
    counted = f" ({', '.join(f'{count} {kind}' for kind, count in kinds.items())})" if kinds else ""
    lines = ["", f"{what}: {len(rows)} clip(s){counted}"]
    for row in rows[:SHOWN_PROBLEMS]:
        where = f" (split {row['split']}, row {row['row']})" if "row" in row else ""
        lines.append(f"  {clip_name(row['path'])}{where}: {row['reason']}")
    if len(rows) > SHOWN_PROBLEMS:
        lines.append(f"  ... (+{len(rows) - SHOWN_PROBLEMS} more in data_report.json)")
    return lines
