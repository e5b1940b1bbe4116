"""``ser-dist``'s command line parser: every command, its options and their help (``ser-dist COMMAND --help``).

``cli.py`` runs the commands; this module only says what each takes. Bad input is one ``ser-dist: error:`` line.
"""

from __future__ import annotations

import argparse
import math
import sys

from .progress import MODES


def package_version() -> str:
    """The installed package's version; the source's ``ser_dist.__version__`` when it runs without package metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ser-dist")
    except PackageNotFoundError:
        from . import __version__

        return __version__


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


def port_number(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 1 to 65535")
    return int(text)


class OneLineParser(argparse.ArgumentParser):
    """Bad command-line input is one ``ser-dist: error:`` line, as every other bad input (no usage block)."""

    def error(self, message: str):
        print(f"ser-dist: error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def add_segment_options(p: argparse.ArgumentParser) -> None:
    """``ser-dist predict --segment windows|vad`` and the VAD's settings (``serving/segments.py``)."""
    p.add_argument(
        "--segment",
        choices=("windows", "vad"),
        default="windows",
        help="windows (default): a long recording is cut into fixed windows; vad: Silero VAD finds its speech regions "
        "(needs pip install 'ser-dist[vad]'), each is predicted (long ones windowed) with its start/end, the file's "
        "prediction is their duration-weighted mean, a file without speech is skipped with that reason",
    )
    p.add_argument("--vad-threshold", type=float, default=None, help="--segment vad: speech probability a 32 ms frame needs (default 0.5)")
    p.add_argument(
        "--min-speech-seconds", type=float, default=None, help="--segment vad: shorter speech regions are dropped (default 0.25)"
    )
    p.add_argument("--min-silence-seconds", type=float, default=None, help="--segment vad: a pause this long ends a region (default 0.1)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ser-dist", description="Speech emotion recognition training on one CPU to many GPUs.")
    parser.add_argument("--version", action="version", version=f"ser-dist {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "make-demo-data",
        help="write the synthetic acted-emotion demo corpus (folder per class)",
        description="Write a synthetic acted-emotion corpus: OUT_DIR/<Emotion>/spkNN_sNN_<emotion>_tN.wav for 6 emotions, "
        "16-bit mono 16 kHz WAV, 1.5-4 s each, plus OUT_DIR/README.md; speakers x sentences x 6 x takes clips. Train on it "
        "with data.root=OUT_DIR data.speaker_pattern='^(spk\\d+)_' (speaker-independent splits need the speaker).",
    )
    p.add_argument("out_dir", help="a new or empty folder (an earlier demo corpus there is replaced; any other file is refused)")
    p.add_argument(
        "--speakers", type=at_least(2), default=10, help="synthetic voices, alternately male and female (>= 2; default %(default)s)"
    )
    p.add_argument(
        "--sentences", type=at_least(1), default=10, help="distinct sentences each speaker says in every emotion (default %(default)s)"
    )
    p.add_argument(
        "--takes",
        type=at_least(1),
        default=1,
        help="recordings of each speaker, sentence and emotion, each with its own intensity, noise and level (default %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=at_least(0),
        default=0,
        help="every voice, sentence and clip follows from it: the same seed writes the same bytes (default %(default)s)",
    )

    p = sub.add_parser(
        "augment", help="write an augmented copy of a folder-per-class corpus (originals + one copy per op) and DST/sources.csv"
    )
    p.add_argument("src", help="folder with one subfolder per emotion")
    p.add_argument("dst", help="new folder to write (train on it with data.root=DST: copies stay in their original's split)")
    p.add_argument("--ops", required=True, help="comma-separated: bandpass, pitch_shift, time_mask, noise, gain, speed")
    p.add_argument("--copies", type=at_least(1), default=1, help="augmented copies per op and clip")
    p.add_argument("--sample-rate", type=at_least(1000), default=16000, help="rate of the written clips")
    p.add_argument("--seed", type=at_least(0), default=0, help="the random draws of every op: the same seed writes the same copies")
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
        "--json",
        action="store_true",
        help="print a JSON list, one object per file: file, label, confidence, probabilities (+ windows, or segments)",
    )
    fmt.add_argument(
        "--csv",
        action="store_true",
        help="print CSV: one row per file (segment 'all'), per window and per speech segment, every class's probability",
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
    add_segment_options(p)
    p.add_argument("--revision", default=None, help="Hub models: branch, tag or commit")
    p.add_argument(
        "--progress",
        choices=MODES,
        default="auto",
        help="progress on stderr when there is more than one batch of files or of a file's windows: bar (tqdm), log (a line "
        "every --progress-seconds, no carriage returns), off; auto (default): bar on a terminal, else log",
    )
    p.add_argument(
        "--progress-seconds",
        type=at_least(0.0, float),
        default=30.0,
        metavar="SECONDS",
        help="log mode: a line every this many seconds (default 30)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress on stderr (--progress off)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when there is one, else cpu)")
    p.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="torch (default), or onnx: run MODEL, a folder of ser-dist export --format onnx, with ONNX Runtime ('ser-dist[onnx]')",
    )

    p = sub.add_parser(
        "export",
        help="write a trained model in another format: ser-dist export MODEL OUT --format onnx",
        description="Export a run directory, a model folder or a Hub id. --format onnx writes OUT/model.onnx (dynamic batch and "
        "length axes; the front end and padding masks inside the graph), OUT/onnx.json and the model's ser_dist.json and card; "
        "ser-dist predict OUT --backend onnx runs it with ONNX Runtime. The graph is checked against the torch model before it is written.",
    )
    p.add_argument("model", help="a run directory (train.output_dir), an exported model folder or a Hub id (owner/name)")
    p.add_argument("out", help="a new or empty folder (an earlier ONNX export there is replaced)")
    p.add_argument("--format", choices=("onnx",), required=True, help="onnx (needs 'ser-dist[onnx]': onnx and onnxruntime)")
    p.add_argument("--revision", default=None, help="Hub models: branch, tag or commit")

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

    p = sub.add_parser(
        "demo", help="a browser page (Gradio) for a model: upload or record a clip, see its emotions (pip install 'ser-dist[demo]')"
    )
    p.add_argument("model", help="a run directory (train.output_dir), an exported model folder or a Hub id (owner/name)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (default %(default)s: this machine only; 0.0.0.0: every interface)"
    )
    p.add_argument("--port", type=port_number, default=7860, help="port to serve on, 1-65535 (default %(default)s)")
    p.add_argument(
        "--max-seconds", type=positive_seconds, default=600.0, help="refuse clips longer than this many seconds (default %(default)g)"
    )
    p.add_argument(
        "--max-file-mb",
        type=at_least(0.01, float),
        default=None,
        metavar="MB",
        help="refuse uploads larger than this many MB of 2^20 bytes (default: --max-seconds of 48 kHz 16-bit stereo WAV, 111 MB for 600 s)",
    )
    p.add_argument("--window-seconds", type=positive_seconds, default=None, help="as for predict: window length for long recordings")
    p.add_argument("--hop-seconds", type=positive_seconds, default=None, help="as for predict: step between windows")
    add_segment_options(p)  # --segment vad: the timeline shows speech regions instead of fixed windows
    p.add_argument("--revision", default=None, help="Hub models: branch, tag or commit")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when there is one, else cpu)")

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
    p.add_argument("run_dirs", nargs="+", help="finished run folders (train.output_dir) or cv folders (ser-dist cv --out)")
    p.add_argument("--out", help="where results.* go (default: the runs' common parent folder)")
    return parser
