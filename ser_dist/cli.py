"""``ser-dist`` command line: ``ser-dist COMMAND --help`` for each command."""

from __future__ import annotations

import argparse
import math
import runpy
import sys
from pathlib import Path

from .errors import UserError, install_excepthook


def cmd_make_demo_data(args) -> None:
    from .data.demo import make_demo_corpus

    summary = make_demo_corpus(args.out_dir, num_speakers=args.speakers, num_sentences=args.sentences, takes=args.takes, seed=args.seed)
    counts = ", ".join(f"{k} {v}" for k, v in summary["per_class"].items())
    print(
        f"wrote {summary['num_clips']} clips ({counts}) from {len(summary['speakers'])} speakers to {args.out_dir} in {summary['seconds']:.1f} s"
    )


def cmd_augment(args) -> None:
    from .data.augment import augment_corpus

    ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    if not ops:
        raise UserError("--ops needs at least one augmentation, e.g. --ops bandpass,noise")
    summary = augment_corpus(
        Path(args.src),
        Path(args.dst),
        ops,
        copies=args.copies,
        sample_rate=args.sample_rate,
        seed=args.seed,
        keep_originals=not args.no_originals,
    )
    print(f"wrote {summary['written']} clips ({summary['originals']} originals x {', '.join(ops)}) and sources.csv to {args.dst}")
    if summary["skipped"]:
        path, reason = summary["skipped"][0]
        print(f"skipped {len(summary['skipped'])} unreadable file(s), e.g. {path}: {reason}", file=sys.stderr)


def cmd_train(args, overrides: list[str]) -> None:
    """Run a recipe script (its CONFIG with overrides), or a YAML config with no recipe."""
    target = Path(args.recipe)
    if target.suffix == ".py":
        if not target.exists():
            raise UserError(f"{target}: recipe not found; recipes live in recipes/ (e.g. recipes/bilstm_mfcc_ce.py)")
        sys.argv = [str(target), *overrides]
        runpy.run_path(str(target), run_name="__main__")
        return
    from .config import Experiment, cli
    from .trainer import train

    train(cli(Experiment(), ["--config", str(target), *overrides]))


def cmd_prepare(args, overrides: list[str]) -> None:
    from .prepare import prepare

    prepare(args.recipe, overrides, args.data or [], out=args.out)


def cmd_predict(args) -> None:
    from .serving.hf_inputs import dataset_keys
    from .serving.inference import EmotionClassifier, gather_inputs
    from .serving.prediction_output import write_predictions

    keys = dataset_keys(args.data) if args.data else None
    if args.split is not None and keys is None:
        raise UserError(f"--split {args.split} picks a split of a dataset: give --data hf_dataset=ID_OR_DIR too")
    files, set_aside = gather_inputs(args.inputs)
    if not files and keys is None:
        example = f" ({len(set_aside)} entries set aside, e.g. {set_aside[0][0]}: {set_aside[0][1]})" if set_aside else ""
        raise UserError(
            f"no input audio files{example}; pass files, folders or a CSV/JSONL manifest: ser-dist predict RUN_DIR a.wav b.flac "
            "(or a dataset's rows: --data hf_dataset=ID_OR_DIR)"
        )
    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"--top-k {args.top_k}: give a number of classes >= 1")
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: give a number of clips >= 1")
    classifier = EmotionClassifier.from_pretrained(args.model, device=args.device, revision=args.revision)
    options = dict(
        batch_size=args.batch_size, window_seconds=args.window_seconds, hop_seconds=args.hop_seconds, progress=not args.no_progress
    )
    predictions, failed = classifier.predict(files, **options) if files else ([], [])
    if keys is not None:  # the dataset's rows after the files
        rows, failed_rows = classifier.predict_dataset(keys.pop("hf_dataset"), args.split, columns=keys, **options)
        predictions, failed = predictions + rows, failed + failed_rows
    write_predictions(predictions, classifier.labels, "json" if args.json else "csv" if args.csv else "table", args.top_k)
    for file, reason in set_aside + failed:  # every entry of a given folder (every row of a dataset) is predicted or listed here
        print(f"ser-dist: skipped {file}: {reason}", file=sys.stderr)
    if failed and not predictions:
        raise SystemExit(1)


def cmd_evaluate(args) -> None:
    from .serving.evaluation import evaluate_model, parse_label_map

    results, out = evaluate_model(
        args.model,
        args.data,
        split=args.split,
        label_map=parse_label_map(args.label_map),
        out=args.out,
        batch_size=args.batch_size,
        revision=args.revision,
    )
    t, d = results["test"], results["data"]
    if d["skipped_files"]:
        print(f"ser-dist: {d['skipped_files']} unreadable clip(s) skipped (listed in {out / 'data_report.json'})", file=sys.stderr)
    if d["classes_missing_from_corpus"]:
        print(f"note: no clips of {', '.join(d['classes_missing_from_corpus'])}; UA averages the classes present", file=sys.stderr)
    print(
        f"{results['evaluated_on']}: {t['num_examples']} clips: UA {100 * t['unweighted_accuracy']:.2f}  "
        f"WA {100 * t['weighted_accuracy']:.2f}  macro-F1 {100 * t['macro_f1']:.2f}  -> {out}"
    )


def cmd_push(args) -> None:
    from .serving.hub import push_to_hub

    url = push_to_hub(args.run_dir, args.repo_id, private=args.private, revision=args.revision, commit_message=args.message)
    print(f"pushed {args.run_dir} to {url}")


def _study_arguments(args, extras: list[str]) -> tuple[list[str], list[str]]:
    """Recipes (``*.py``) and ``section.key=value`` overrides from the positionals; ``--data k=v`` adds data.k=v."""
    recipes, overrides = [], (["--config", args.config] if args.config else [])
    for item in list(args.items) + list(extras):
        if item.endswith(".py"):
            recipes.append(item)
        elif "=" in item and not item.startswith("-"):
            overrides.append(item)
        else:
            raise UserError(
                f"unexpected argument {item!r}; give recipes (recipes/lstm_ce.py), section.key=value overrides and the options in --help"
            )
    for item in args.data or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--data {item!r}: give key=value pairs such as --data corpus=emodb root=DIR split=leave_one_speaker_out")
        overrides.append(f"{key if '.' in key else 'data.' + key}={value}")  # section.key=value after --data passes as is
    return recipes, overrides


def cmd_cv(args, extras: list[str]) -> None:
    from .crossval import plan_cv, run_cv

    recipes, overrides = _study_arguments(args, extras)
    if len(recipes) != 1:
        raise UserError(f"ser-dist cv takes one recipe, got {len(recipes)}; for several use ser-dist grid")
    plan = plan_cv(recipes[0], overrides, out_dir=args.out, smoke=args.smoke)
    run_cv(plan, launcher=args.launcher, rerun=args.rerun)
    print((plan.out_dir / "cv_summary.md").read_text(), end="")
    print(f"-> {plan.out_dir / 'cv_summary.json'}")


def cmd_grid(args, extras: list[str]) -> None:
    from .crossval import grid_jobs, plan_grid, run_grid

    recipes, overrides = _study_arguments(args, extras)
    plans = plan_grid(recipes, overrides, args.out, smoke=args.smoke)
    if args.print_jobs:
        print("\n".join(grid_jobs(plans, launcher=args.launcher, rerun=args.rerun)))
        print(f"# when every job has finished: ser-dist report {args.out}/*/ --out {args.out}", file=sys.stderr)
        return
    paths = run_grid(plans, args.out, launcher=args.launcher, rerun=args.rerun)
    print(paths["markdown"].read_text(), end="")


def cmd_report(args) -> None:
    import os

    from .results import collect_results, write_results

    rows = collect_results(args.run_dirs)  # a damaged or repeated run fails here, before anything is written
    out = args.out or os.path.commonpath([os.path.dirname(os.path.realpath(d)) for d in args.run_dirs])
    paths = write_results(rows, out)
    print(paths["markdown"].read_text(), end="")
    print(f"-> {paths['markdown']}, {paths['csv']}, {paths['heatmap']}")


def at_least(low: float, kind=int):
    """An argparse type: a finite ``kind`` >= ``low`` (argparse reports anything else as the option's error)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"{text} must be a finite number >= {low}" if kind is float else f"{text} must be >= {low}")
        return value

    return parse


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number of seconds > 0")
    return value


class OneLineParser(argparse.ArgumentParser):
    """Bad command-line input is one ``ser-dist: error:`` line, as every other bad input (no usage block)."""

    def error(self, message: str):
        print(f"ser-dist: error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ser-dist", description="Speech emotion recognition training on one CPU to many GPUs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-demo-data", help="write the synthetic acted-emotion demo corpus (folder per class)")
    p.add_argument("out_dir")
    p.add_argument("--speakers", type=at_least(2), default=10)
    p.add_argument("--sentences", type=at_least(1), default=10)
    p.add_argument("--takes", type=at_least(1), default=1)
    p.add_argument("--seed", type=at_least(0), default=0)

    p = sub.add_parser(
        "augment", help="write an augmented copy of a folder-per-class corpus (originals + one copy per op) and DST/sources.csv"
    )
    p.add_argument("src", help="folder with one subfolder per emotion")
    p.add_argument("dst", help="new folder to write (train on it with data.root=DST: copies stay in their original's split)")
    p.add_argument("--ops", required=True, help="comma-separated: bandpass, pitch_shift, time_mask, noise, gain, speed")
    p.add_argument("--copies", type=at_least(1), default=1, help="augmented copies per op and clip")
    p.add_argument("--sample-rate", type=at_least(1000), default=16000, help="rate of the written clips")
    p.add_argument("--seed", type=at_least(0), default=0)
    p.add_argument("--no-originals", action="store_true", help="write only the augmented copies")

    p = sub.add_parser("train", help="train a recipe: ser-dist train recipes/bilstm_mfcc_ce.py data.root=DIR [section.key=value ...]")
    p.add_argument("recipe", help="a recipe script (recipes/*.py) or a YAML config")

    p = sub.add_parser(
        "prepare", help="scan, decode (into the cache training reuses) and split a corpus without training; print the data report"
    )
    p.add_argument("recipe", nargs="?", default=None, help="a recipe script or a YAML config, then section.key=value overrides")
    p.add_argument(
        "--data", nargs="+", metavar="KEY=VALUE", help="data keys as ser-dist evaluate takes them: hf_dataset=ID_OR_DIR, root=DIR, ..."
    )
    p.add_argument("--out", default=None, help="also write data_report.json and split.csv into this folder")

    p = sub.add_parser("predict", help="predict the emotion of audio files with a trained model")
    p.add_argument("model", help="a run directory (train.output_dir), an exported model folder or a Hub id (owner/name)")
    p.add_argument(
        "inputs",
        nargs="*",
        help="audio files (any common format and rate), folders (recursive) or CSV/TSV/JSONL manifests with a 'path' column",
    )
    p.add_argument(
        "--data", nargs="+", metavar="KEY=VALUE", help="also every row of a dataset: hf_dataset=ID_OR_DIR [audio_column=...] ..."
    )
    p.add_argument("--split", default=None, help="with --data: only this split of the dataset (one of its own split names)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument(
        "--json", action="store_true", help="print a JSON list, one object per file: file, label, confidence, probabilities (+ windows)"
    )
    fmt.add_argument(
        "--csv", action="store_true", help="print CSV: one row per file (segment 'all') and per window, every class's probability"
    )
    p.add_argument("--top-k", type=at_least(1), default=None, help="also show the K most likely emotions")
    p.add_argument(
        "--window-seconds",
        type=positive_seconds,
        default=None,
        help="window length for long recordings (default: the model's training crop, data.max_seconds)",
    )
    p.add_argument(
        "--hop-seconds",
        type=positive_seconds,
        default=None,
        help="step between windows (default: the window length); recordings longer than window + hop are split",
    )
    p.add_argument("--batch-size", type=at_least(1), default=8, help="clips or windows per forward pass")
    p.add_argument("--revision", default=None, help="Hub models: branch, tag or commit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when there is one, else cpu)")

    p = sub.add_parser(
        "evaluate", help="score a saved model on a labelled corpus and write metrics.json, confusion matrix, classification report"
    )
    p.add_argument("model", help="a run directory, an exported model folder or a Hub id")
    p.add_argument(
        "--data",
        nargs="+",
        metavar="KEY=VALUE",
        help="the corpus, as training's data keys: root=DIR [corpus=emodb] [speaker_pattern=...], manifest=FILE, labels=a,b,... (default: the run's own split.csv)",
    )
    p.add_argument(
        "--split",
        choices=("test", "val", "train", "all"),
        default=None,
        help="which clips: default the run's test split without --data, every clip (all) with --data",
    )
    p.add_argument(
        "--label-map", default=None, metavar="CORPUS=MODEL,...", help="rename the corpus's labels to the model's, e.g. angry=Anger,sad=Sad"
    )
    p.add_argument("--out", default=None, help="report folder (default: RUN_DIR/evaluation)")
    p.add_argument("--batch-size", type=at_least(1), default=None, help="default: the model's train.batch_size")
    p.add_argument("--revision", default=None, help="Hub models: branch, tag or commit")

    p = sub.add_parser("push", help="upload a run's exported model (weights, config, model card) to the Hugging Face Hub")
    p.add_argument("run_dir", help="a run directory or an exported model folder")
    p.add_argument("repo_id", help="owner/name on the Hub (created if needed)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--revision", default=None, help="branch to push to (created if needed; default main)")
    p.add_argument("--message", default=None, help="commit message")

    for name, text in (
        ("cv", "run every fold of a recipe's protocol: ser-dist cv recipes/lstm_ce.py data.root=DIR [section.key=value ...] [--out DIR]"),
        ("grid", "run recipes x all folds and write results.md/.csv + heatmap: ser-dist grid recipes/lstm_*.py data.root=DIR --out DIR"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("items", nargs="+", help="recipe(s) and section.key=value overrides")
        p.add_argument(
            "--data", nargs="+", metavar="KEY=VALUE", help="data overrides without the section, e.g. --data corpus=emodb root=DIR"
        )
        p.add_argument("--config", help="a YAML config applied to every run (before the section.key=value overrides)")
        p.add_argument("--out", required=name == "grid", help="output folder (cv: default train.output_dir; folds go to OUT/fold_K)")
        p.add_argument("--launcher", help="run each fold as a command of this launcher, e.g. 'accelerate launch --num_processes 8'")
        p.add_argument(
            "--smoke", action="store_true", help="tiny models, 1 epoch, 2 s clips: check a setup end to end (numbers are meaningless)"
        )
        p.add_argument(
            "--rerun",
            action="store_true",
            help="retrain the folds whose folder holds a run of other settings (without it, such a fold stops the command)",
        )
        if name == "grid":
            p.add_argument(
                "--print-jobs", action="store_true", help="print one ser-dist cv command per cell (for a cluster) instead of running"
            )

    p = sub.add_parser("report", help="backbone x loss table (results.md/.csv) and heatmap from finished run or cv folders")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", help="where results.* go (default: the runs' common parent folder)")
    return parser


def main(argv: list[str] | None = None) -> None:
    install_excepthook()
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv and argv[0] == "train":  # everything after the recipe is section.key=value overrides
        args, overrides = parser.parse_known_args(argv)
        cmd_train(args, overrides)
        return
    if argv and argv[0] == "prepare":  # section.key=value overrides after the recipe, as for train
        args, overrides = parser.parse_known_args(argv)
        cmd_prepare(args, overrides)
        return
    if argv and argv[0] in ("cv", "grid"):  # overrides may follow the options too
        args, extras = parser.parse_known_args(argv)
        {"cv": cmd_cv, "grid": cmd_grid}[args.command](args, extras)
        return
    args = parser.parse_args(argv)
    {
        "make-demo-data": cmd_make_demo_data,
        "augment": cmd_augment,
        "predict": cmd_predict,
        "evaluate": cmd_evaluate,
        "push": cmd_push,
        "report": cmd_report,
    }[args.command](args)


if __name__ == "__main__":
    main()
