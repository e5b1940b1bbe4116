"""``ser-dist`` command line: ``ser-dist COMMAND --help`` for each command."""
from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path

from .errors import UserError, install_excepthook


def cmd_make_demo_data(args) -> None:
    from .data.demo import make_demo_corpus

    summary = make_demo_corpus(args.out_dir, num_speakers=args.speakers, num_sentences=args.sentences, takes=args.takes, seed=args.seed)
    counts = ", ".join(f"{k} {v}" for k, v in summary["per_class"].items())
    print(f"wrote {summary['num_clips']} clips ({counts}) from {len(summary['speakers'])} speakers to {args.out_dir} in {summary['seconds']:.1f} s")


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


def cmd_predict(args) -> None:
    from .data.manifest import audio_files
    from .inference import EmotionClassifier

    files: list[Path] = []
    for item in args.inputs:
        path = Path(item)
        files.extend(audio_files(path) if path.is_dir() else [path])
    if not files:
        raise UserError("no input audio files; pass files or folders: ser-dist predict RUN_DIR a.wav b.flac")
    classifier = EmotionClassifier.from_pretrained(args.model, device=args.device)
    predictions, failed = classifier.predict(files, batch_size=args.batch_size)
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
    else:
        width = max([len(p.file) for p in predictions] + [4])
        print(f"{'file':<{width}}  {'emotion':<12} confidence")
        for p in predictions:
            print(f"{p.file:<{width}}  {p.label:<12} {p.confidence:.3f}")
    for file, reason in failed:
        print(f"ser-dist: skipped {file}: {reason}", file=sys.stderr)
    if failed and not predictions:
        raise SystemExit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ser-dist", description="Speech emotion recognition training on one CPU to many GPUs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-demo-data", help="write the synthetic acted-emotion demo corpus (folder per class)")
    p.add_argument("out_dir")
    p.add_argument("--speakers", type=int, default=10)
    p.add_argument("--sentences", type=int, default=10)
    p.add_argument("--takes", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("train", help="train a recipe: ser-dist train recipes/bilstm_mfcc_ce.py data.root=DIR [section.key=value ...]")
    p.add_argument("recipe", help="a recipe script (recipes/*.py) or a YAML config")

    p = sub.add_parser("predict", help="predict the emotion of audio files with a trained model")
    p.add_argument("model", help="a run directory (train.output_dir) or an exported model folder")
    p.add_argument("inputs", nargs="+", help="audio files or folders")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default=None)
    return parser


def main(argv: list[str] | None = None) -> None:
    install_excepthook()
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv and argv[0] == "train":  # everything after the recipe is section.key=value overrides
        args, overrides = parser.parse_known_args(argv)
        cmd_train(args, overrides)
        return
    args = parser.parse_args(argv)
    {"make-demo-data": cmd_make_demo_data, "predict": cmd_predict}[args.command](args)


if __name__ == "__main__":
    main()
