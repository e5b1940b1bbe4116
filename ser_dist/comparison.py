"""A run and a baseline tested on the same clips, in one line: the summary ``launch/quickstart.sh`` prints.

    python -m ser_dist.comparison RUN_DIR [--baseline BASELINE_RUN_DIR] [--name TEXT] [--baseline-name TEXT]

``same_clips_summary`` reads each finished run's ``metrics.json``, ``split.csv`` and ``data_report.json``, refuses a
baseline whose test clips are not the run's (a comparison on other clips compares nothing), and says on how many
speakers the run was tested (and whether training saw them), what chance is (100 / number of classes) and the
baseline's test UA.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .data.split_file import read_split
from .errors import UserError, install_excepthook

PathLike = str | os.PathLike


def _read_json(run_dir: Path, name: str) -> dict:
    path = run_dir / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{run_dir}: no {name}; not a finished ser-dist run (pass a run's train.output_dir)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not readable JSON ({err}); rerun the run") from None


def tested_clips(run_dir: PathLike) -> tuple[list[tuple[str, str]], list[str], bool]:
    """A run's test clips from its ``split.csv``, as sorted (path, label) pairs; its test speakers; and whether
    none of them is in the train or validation split (False when a clip has no speaker)."""
    records, split = read_split(Path(run_dir) / "split.csv")
    clips = sorted((records[i].path, records[i].label) for i in split["test"])
    speakers = {records[i].speaker for i in split["test"]}
    seen = {records[i].speaker for name in ("train", "val") for i in split[name]}
    unseen = None not in speakers and not speakers & seen
    return clips, sorted(s for s in speakers if s is not None), unseen


def check_same_test_clips(run_dir: PathLike, baseline_dir: PathLike) -> list[tuple[str, str]]:
    """The test clips both runs were scored on; a ``UserError`` naming the difference when they are not the same."""
    ours, theirs = tested_clips(run_dir)[0], tested_clips(baseline_dir)[0]
    if ours != theirs:
        only_ours, only_theirs = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        example = (only_ours or only_theirs)[0]
        raise UserError(
            f"{run_dir} and {baseline_dir} were not tested on the same clips ({len(only_ours)} test clip(s) only in the first, "
            f"{len(only_theirs)} only in the second, e.g. {example[0]} ({example[1]})); give both runs the same data.* settings "
            "and data.split_seed"
        )
    return ours


def test_ua(run_dir: Path, metrics: dict) -> float:
    """The run's test UA in percent; a run without one (dimensional targets score CCC) is one line."""
    value = (metrics.get("test") or {}).get("unweighted_accuracy")
    if value is None:
        raise UserError(
            f"{run_dir / 'metrics.json'} has no test.unweighted_accuracy (a run of class targets has); compare categorical runs"
        )
    return 100 * value


def same_clips_summary(
    run_dir: PathLike, baseline_dir: PathLike | None = None, name: str | None = None, baseline_name: str | None = None
) -> str:
    """``NAME: test UA 58.3 on 3 unseen speakers (180 clips); chance 16.7; BASELINE baseline 41.2 on the same clips``."""
    run_dir = Path(run_dir)
    metrics = _read_json(run_dir, "metrics.json")
    labels = _read_json(run_dir, "data_report.json")["labels"]
    ua = test_ua(run_dir, metrics)  # first: a run without classes is one line before anything divides by their number
    clips, speakers, unseen = tested_clips(run_dir)
    plural = "" if len(speakers) == 1 else "s"
    if unseen:
        who = f"{len(speakers)} unseen speaker{plural}"
    else:  # a protocol that mixes speakers (data.split=stratified), or clips without speakers
        who = f"{len(speakers)} speaker{plural}, some also in training" if speakers else "its test split"
    if "transductive" in str(metrics.get("protocol", "")):
        who += " (transductive: per-speaker statistics include the test speakers' audio)"
    line = f"{name or metrics['experiment']}: test UA {ua:.1f} on {who} ({len(clips)} clips); chance {100 / len(labels):.1f}"
    if baseline_dir is None:
        return line
    check_same_test_clips(run_dir, baseline_dir)
    baseline = _read_json(Path(baseline_dir), "metrics.json")
    baseline_ua = test_ua(Path(baseline_dir), baseline)
    return line + f"; {baseline_name or baseline['experiment']} baseline {baseline_ua:.1f} on the same clips"


def main(argv: list[str] | None = None) -> None:
    install_excepthook()
    parser = argparse.ArgumentParser(prog="python -m ser_dist.comparison", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a finished run's folder (train.output_dir)")
    parser.add_argument("--baseline", help="a finished run tested on the same clips; refused when its test clips differ")
    parser.add_argument("--name", help="what to call the run (default: its experiment name)")
    parser.add_argument("--baseline-name", help="what to call the baseline (default: its experiment name)")
    args = parser.parse_args(argv)
    print(same_clips_summary(args.run_dir, args.baseline, name=args.name, baseline_name=args.baseline_name))


if __name__ == "__main__":
    main()
