"""``ser-dist`` command line: what each command does (their options and help: ``cli_parser.py``); ``ser-dist COMMAND --help``."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from .cli_parser import build_parser
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
    from .progress import configured
    from .serving.hf_inputs import dataset_keys
    from .serving.inference import EmotionClassifier, gather_inputs
    from .serving.prediction_output import write_predictions
    from .serving.segments import predict_options

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
    segmenting = predict_options(args)  # --segment vad: its options checked, silero-vad loaded (or missing) before the model
    classifier = EmotionClassifier.from_pretrained(args.model, device=args.device, revision=args.revision, backend=args.backend)
    mode = "off" if args.no_progress else args.progress
    options = dict(batch_size=args.batch_size, window_seconds=args.window_seconds, hop_seconds=args.hop_seconds, progress=mode != "off")
    options.update(segmenting)
    with configured(mode, args.progress_seconds):  # on stderr: stdout holds the predictions alone
        predictions, failed = classifier.predict(files, **options) if files else ([], [])
        if keys is not None:  # the dataset's rows after the files
            rows, failed_rows = classifier.predict_dataset(keys.pop("hf_dataset"), args.split, columns=keys, **options)
            predictions, failed = predictions + rows, failed + failed_rows
    fmt = "json" if args.json else "csv" if args.csv else "table"
    write_predictions(predictions, classifier.labels, fmt, args.top_k, dimensions=classifier.dimensions)
    for file, reason in set_aside + failed:  # every entry of a given folder (every row of a dataset) is predicted or listed here
        print(f"ser-dist: skipped {file}: {reason}", file=sys.stderr)
    if failed and not predictions:
        raise SystemExit(1)


def cmd_export(args) -> None:
    from .serving.onnx_graph import export_onnx

    out = export_onnx(args.model, args.out, revision=args.revision)
    print(f"wrote {out / 'model.onnx'} (checked against the torch model); predict with: ser-dist predict {out} FILES --backend onnx")


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


def cmd_demo(args) -> None:
    from .serving.demo import launch_demo
    from .serving.segments import predict_options

    options = dict(window_seconds=args.window_seconds, hop_seconds=args.hop_seconds, **predict_options(args))
    launch_demo(
        args.model,
        args.host,
        args.port,
        args.max_seconds,
        max_file_mb=args.max_file_mb,
        revision=args.revision,
        device=args.device,
        **options,
    )


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


HELP = ("-h", "--help")


def recipe_help_text(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """``ser-dist train|prepare TARGET [overrides] --help``: the keys of TARGET (a recipe or a YAML config) with the values
    this command line gives them, as ``python RECIPE --help`` lists them. None without a TARGET: argparse's help then."""
    if not argv or argv[0] not in ("train", "prepare") or not any(a in HELP for a in argv[1:]):
        return None
    rest = [a for a in argv if a not in HELP]
    if argv[0] == "train" and all(a.startswith("-") for a in rest[1:]):  # no recipe: train's own help
        return None
    args, overrides = parser.parse_known_args(rest)
    if args.recipe is None:
        return None
    from .recipe import recipe_help

    return recipe_help(argv[0], args.recipe, overrides, getattr(args, "data", None) or [])


def main(argv: list[str] | None = None) -> None:
    install_excepthook()
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    text = recipe_help_text(parser, argv)
    if text is not None:
        print(text)
        return
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
        "export": cmd_export,
        "evaluate": cmd_evaluate,
        "push": cmd_push,
        "demo": cmd_demo,
        "report": cmd_report,
    }[args.command](args)


if __name__ == "__main__":
    main()
