"""The comparative study: 4 backbones x 5 losses, run across all folds of a speaker-independent protocol.

The study's settings live here once, and each of the 20 recipes ``recipes/{backbone}_{loss}.py``
composes one backbone preset with one loss preset (``study_experiment("lstm", "focal")``), so a
hyperparameter is changed in one place. Defaults follow the seed study: IEMOCAP, its usual 4 classes
(excited merged into happy), leave-one-session-out (5 folds), UA for early stopping and model choice.

``run_cv`` runs every fold of a recipe's protocol and writes ``cv_summary.json`` / ``cv_summary.md``
(mean ± sample std across folds of UA, WA and macro-F1); ``run_grid`` runs ``run_cv`` per recipe,
skips folds that already finished with the same settings (the fingerprint in their ``metrics.json``;
a fold run with other settings stops the command, or retrains with ``--rerun``) and writes the backbone x loss
table (``results.md``, ``results.csv``) and heatmap (``results_heatmap.png``).

How a fold runs: in this process, through the recipe's own ``__main__`` block (its real entry point),
or, with ``launcher="accelerate launch --num_processes 8"``, as one launcher command per fold. A
process started by a multi-process launcher cannot run several folds (each run ends by tearing down
the process group), so ``ser-dist cv`` refuses to run under one and asks for ``--launcher`` instead.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

from .config import Data, Experiment, Loss, Model, Optim, Train, apply_overrides, parse_args
from .errors import ConfigError, UserError

# --- the study's settings ----------------------------------------------------------------------

STUDY_DATA = Data(corpus="iemocap", root=None, split="leave_one_session_out", fold=1, max_seconds=10.0)
STUDY_TRAIN = Train(epochs=50, batch_size=32, early_stopping_patience=5, metric="ua", max_grad_norm=1.0)


@dataclasses.dataclass(frozen=True)
class BackbonePreset:
    """What one row of the study sets: the model and how it is optimised."""

    model: Model
    optim: Optim
    train: Train = dataclasses.field(default_factory=lambda: dataclasses.replace(STUDY_TRAIN))


SSL_MODEL = Model(head="mean", embedding_size=256, dropout=0.1, freeze_feature_encoder_epochs=3, layerdrop=0.0)
SSL_OPTIM = Optim(name="adamw", lr=2e-5, weight_decay=0.01, scheduler="linear_warmup", warmup_ratio=0.1)
SSL_TRAIN = dataclasses.replace(STUDY_TRAIN, epochs=30, batch_size=8)

BACKBONE_PRESETS: dict[str, BackbonePreset] = {
    # Unidirectional LSTM(256) x 2 on 40 MFCC + delta + delta-delta (120-D), dense 128.
    "lstm": BackbonePreset(
        model=Model(backbone="lstm", n_mfcc=40, hidden_size=256, embedding_size=128, dropout=0.3),
        optim=Optim(name="adam", lr=1e-3, scheduler="plateau", plateau_factor=0.5, plateau_patience=2),
    ),
    # VGGish on 0.96 s log-mel patches, mean of the 128-D patch embeddings. From scratch unless
    # model.checkpoint=PATH gives the AudioSet weights (the seed's setting), then fine-tuned at a lower lr.
    "vggish": BackbonePreset(
        model=Model(backbone="vggish", hidden_size=4096, embedding_size=128, dropout=0.3),
        optim=Optim(name="adam", lr=1e-4, scheduler="plateau", plateau_factor=0.5, plateau_patience=2),
    ),
    # Pretrained SSL encoders with the seed's fine-tuning strategy (the SSL seed recipes, recipes/hubert_large_ce.py,
    # wav2vec2_base_bandpass_ce.py, wavlm_base_plus_ce.py, import SSL_MODEL/SSL_OPTIM/SSL_TRAIN too): mean pooling -> 256 -> classes,
    # CNN feature encoder frozen for 3 epochs, AdamW 2e-5 with linear warmup, batch 8, layerdrop 0.
    "wav2vec2_base": BackbonePreset(model=dataclasses.replace(SSL_MODEL, backbone="wav2vec2_base"), optim=SSL_OPTIM, train=SSL_TRAIN),
    "hubert_large": BackbonePreset(model=dataclasses.replace(SSL_MODEL, backbone="hubert_large"), optim=SSL_OPTIM, train=SSL_TRAIN),
}

LOSS_PRESETS: dict[str, Loss] = {
    "ce": Loss(name="ce"),
    "label_smoothing": Loss(name="label_smoothing", label_smoothing=0.1),
    "focal": Loss(name="focal", gamma=2.0),
    "aam": Loss(name="aam", margin=0.2, scale=30.0),
    "ccc": Loss(name="ccc"),
}

# Tiny versions of each row for smoke runs (``--smoke``): minutes on a CPU, numbers meaningless.
SMOKE_OVERRIDES: dict[str, list[str]] = {
    "lstm": ["model.hidden_size=16", "model.embedding_size=16"],
    "vggish": ["model.cnn_width=0.0625", "model.hidden_size=32", "model.embedding_size=16"],
    "wav2vec2_base": ["model.backbone=wav2vec2_tiny_random", "model.pretrained=false"],
    "hubert_large": ["model.backbone=hubert_tiny_random", "model.pretrained=false"],
}
SMOKE_COMMON = [
    "train.epochs=1", "train.batch_size=8", "train.grad_accum_steps=1", "train.early_stopping_patience=null",
    "data.max_seconds=2.0", "train.tensorboard=false",
]


def study_experiment(backbone: str, loss: str) -> Experiment:
    """The study's cell ``backbone`` x ``loss`` (fold 1; ``ser-dist cv`` runs them all)."""
    if backbone not in BACKBONE_PRESETS:
        raise ConfigError(f"study backbone {backbone!r} is not one of {', '.join(BACKBONE_PRESETS)}")
    if loss not in LOSS_PRESETS:
        raise ConfigError(f"study loss {loss!r} is not one of {', '.join(LOSS_PRESETS)}")
    preset = BACKBONE_PRESETS[backbone]
    name = f"{backbone}_{loss}"
    return Experiment(
        name=name,
        data=dataclasses.replace(STUDY_DATA),
        model=dataclasses.replace(preset.model),
        loss=dataclasses.replace(LOSS_PRESETS[loss]),
        optim=dataclasses.replace(preset.optim),
        train=dataclasses.replace(preset.train, output_dir=f"runs/{name}"),
    )


def smoke_overrides(backbone: str) -> list[str]:
    """The ``--smoke`` overrides for a recipe whose backbone is ``backbone`` (unknown rows: the common ones)."""
    return SMOKE_COMMON + SMOKE_OVERRIDES.get(backbone, [])


# --- recipes -------------------------------------------------------------------------------------

@dataclasses.dataclass
class Recipe:
    path: Path
    config: Experiment  # the recipe's CONFIG, before any override

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def backbone(self) -> str:
        """The study row: the recipe's own backbone, whatever a smoke override swaps in."""
        return self.config.model.backbone

    @property
    def loss(self) -> str:
        return self.config.loss.name


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read a recipe's ``CONFIG`` without running it (its ``__main__`` block does not execute)."""
    path = Path(path)
    if path.suffix != ".py" or not path.is_file():
        raise UserError(f"{path}: recipe not found; recipes are scripts such as recipes/lstm_focal.py")
    namespace = runpy.run_path(str(path), run_name="ser_dist_recipe")
    config = namespace.get("CONFIG")
    if not isinstance(config, Experiment):
        raise UserError(f"{path}: a recipe defines CONFIG = Experiment(...) at module level; this one does not")
    return Recipe(path=path, config=config)


def run_recipe_main(path: Path, overrides: Sequence[str]) -> None:
    """Run a recipe's ``__main__`` block in this process, as ``python RECIPE overrides`` would."""
    saved = sys.argv
    sys.argv = [str(path), *overrides]
    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:
        sys.argv = saved


# --- cross-validation ----------------------------------------------------------------------------

CV_METRICS = ("unweighted_accuracy", "weighted_accuracy", "macro_f1")
CV_SUMMARY = "cv_summary.json"


@dataclasses.dataclass
class CVPlan:
    recipe: Recipe
    experiment: Experiment  # fold 1's resolved config
    out_dir: Path
    overrides: list[str]  # every fold's overrides, without data.fold / train.output_dir
    folds: list[Optional[int]]  # data.fold per run; [None] for single-split protocols

    def fold_dir(self, fold: Optional[int]) -> Path:
        return self.out_dir / f"fold_{fold or 1}"

    def fold_overrides(self, fold: Optional[int], restart: bool = False) -> list[str]:
        """``restart``: clear the fold's earlier run (other settings) instead of resuming it."""
        extra = [f"train.output_dir={self.fold_dir(fold)}", "train.overwrite=true" if restart else "train.resume=auto"]
        return self.overrides + ([f"data.fold={fold}"] if fold is not None else []) + extra

    def command(self, fold: Optional[int], launcher: Optional[str], restart: bool = False) -> list[str]:
        prefix = shlex.split(launcher) if launcher else [sys.executable]
        return prefix + [str(self.recipe.path), *self.fold_overrides(fold, restart)]

    def fold_experiment(self, fold: Optional[int]) -> Experiment:
        """The fold's resolved config, as its training run resolves it."""
        return apply_overrides(self.experiment, {"data.fold": fold}) if fold is not None else self.experiment

    def earlier_run(self, fold: Optional[int]) -> tuple[str, str]:
        """What the fold folder holds: ("none" | "same" | "changed", why). "same": a run of these settings
        (finished when its metrics.json exists); "changed": a run of other settings, ``why`` names them."""
        from . import config as config_module
        from .errors import ConfigError

        folder = self.fold_dir(fold)
        config_file, metrics_file = folder / "config.yaml", folder / "metrics.json"
        if not config_file.exists():
            return ("changed", f"{metrics_file} has no config.yaml beside it") if metrics_file.exists() else ("none", "")
        wanted = self.fold_experiment(fold)
        try:
            differences = config_module.setting_differences(config_module.load(config_file), wanted)
        except ConfigError as err:
            return "changed", f"its {config_file.name} does not load ({err})"
        if differences:
            shown = ", ".join(f"{key}={old!r} then, {new!r} now" for key, old, new in differences[:3])
            return "changed", shown + (f" (+{len(differences) - 3} more)" if len(differences) > 3 else "")
        if metrics_file.exists():
            recorded = json.loads(metrics_file.read_text()).get("config_fingerprint")
            if recorded is None:
                return "changed", "its metrics.json records no settings fingerprint (an older ser-dist)"
            if recorded != config_module.fingerprint(wanted):
                return "changed", "its metrics.json was written by other settings than its config.yaml says"
        return "same", ""


def plan_cv(recipe_path: str | os.PathLike, overrides: Sequence[str], out_dir: Optional[str] = None, smoke: bool = False) -> CVPlan:
    """Resolve the config (so a bad key fails before any fold runs) and count the protocol's folds."""
    from .data.pipeline import scan_corpus
    from .data.splits import FOLD_PROTOCOLS, num_folds

    recipe = load_recipe(recipe_path)
    overrides = (smoke_overrides(recipe.backbone) if smoke else []) + list(overrides)
    exp = apply_overrides(recipe.config, parse_args(overrides)).validate()
    out = Path(out_dir) if out_dir else Path(exp.train.output_dir)
    if exp.data.split in FOLD_PROTOCOLS:
        folds: list[Optional[int]] = list(range(1, num_folds(scan_corpus(exp.data).records, exp.data) + 1))
    else:
        folds = [None]
    return CVPlan(recipe=recipe, experiment=exp, out_dir=out, overrides=overrides, folds=folds)


def check_earlier_runs(plan: CVPlan, rerun: bool = False) -> dict:
    """Fold -> whether to restart it. A fold folder that holds a run of other settings stops the command
    (before anything trains) with one line naming them, unless ``rerun``: then just that fold retrains."""
    restart = {}
    for fold in plan.folds:
        state, why = plan.earlier_run(fold)
        if state == "changed" and not rerun:
            raise UserError(
                f"{plan.recipe.name} fold {fold or 1}: {plan.fold_dir(fold)} holds a run of other settings ({why}); "
                "pass --rerun to retrain the folds whose settings changed, or use another --out"
            )
        restart[fold] = state == "changed"
    return restart


def check_launch(plan: CVPlan, launcher: Optional[str]) -> None:
    """Before any fold trains: the output folder can be made, and the launcher parses and exists."""
    from .run_folder import file_in_the_way

    blocked = file_in_the_way(plan.out_dir)
    if blocked is not None:
        raise UserError(f"--out {plan.out_dir}: {blocked} is a file, so the folds' folder cannot be created; pass a folder path")
    if launcher is None:
        return
    try:
        command = shlex.split(launcher)
    except ValueError as err:
        raise UserError(f"--launcher {launcher!r}: {err}; quote it as one shell word, e.g. --launcher 'accelerate launch --num_processes 8'") from None
    if not command:
        raise UserError("--launcher is empty; e.g. --launcher 'accelerate launch --num_processes 8'")
    if shutil.which(command[0]) is None:
        raise UserError(f"--launcher {launcher!r}: {command[0]} is not a program on PATH; install it or give its full path")


def run_cv(plan: CVPlan, launcher: Optional[str] = None, log=print, rerun: bool = False) -> dict:
    """Run the folds without a finished run of these settings (a partly run fold resumes from its checkpoint;
    a fold run with other settings stops the command, or with ``rerun`` retrains)."""
    if launcher is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError(
            "ser-dist cv runs several trainings one after another, which a multi-process launch cannot do in one process; "
            "run it without a launcher and pass --launcher 'accelerate launch --num_processes N' instead"
        )
    check_launch(plan, launcher)
    restart = check_earlier_runs(plan, rerun)
    for fold in plan.folds:
        done = plan.fold_dir(fold) / "metrics.json"
        label = f"{plan.recipe.name} fold {fold or 1}/{len(plan.folds)}"
        if done.exists() and not restart[fold]:
            log(f"{label}: finished earlier with the same settings ({done}), not rerun")
            continue
        log(f"{label}: {'retraining (settings changed)' if restart[fold] else 'training'} -> {plan.fold_dir(fold)}")
        if launcher is None:
            run_recipe_main(plan.recipe.path, plan.fold_overrides(fold, restart[fold]))
        else:
            result = subprocess.run(plan.command(fold, launcher, restart[fold]))
            if result.returncode != 0:
                raise UserError(f"{label} failed (exit {result.returncode}); see {plan.fold_dir(fold) / 'train.log'}, then rerun the same command to resume")
        if not done.exists():
            raise UserError(f"{label} ended without {done}; see {plan.fold_dir(fold) / 'train.log'}")
    return write_cv_summary(plan)


def write_cv_summary(plan: CVPlan) -> dict:
    folds = []
    for fold in plan.folds:
        metrics = json.loads((plan.fold_dir(fold) / "metrics.json").read_text())
        folds.append({
            "fold": fold or 1, **{key: metrics["test"][key] for key in CV_METRICS}, "num_examples": metrics["test"]["num_examples"],
            "config_fingerprint_without_fold": metrics.get("config_fingerprint_without_fold"),
        })
    summary = {
        "recipe": str(plan.recipe.path),
        "experiment": plan.recipe.config.name,
        "backbone": plan.recipe.backbone,
        "loss": plan.recipe.loss,
        "overrides": plan.overrides,
        "num_folds": len(folds),
        "folds": folds,
        **{key: _mean_std([fold[key] for fold in folds]) for key in CV_METRICS},
    }
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    (plan.out_dir / CV_SUMMARY).write_text(json.dumps(summary, indent=2))
    (plan.out_dir / "cv_summary.md").write_text(cv_summary_markdown(summary))
    return summary


def _mean_std(values: list[float]) -> dict:
    from .report import mean_and_std

    mean, std = mean_and_std(values)
    return {"mean": mean, "std": std, "folds": values}


def cv_summary_markdown(summary: dict) -> str:
    names = {"unweighted_accuracy": "UA", "weighted_accuracy": "WA", "macro_f1": "macro-F1"}
    lines = [
        f"# {summary['experiment']}: {summary['num_folds']} fold(s)",
        "",
        "| fold | test clips | " + " | ".join(names[k] for k in CV_METRICS) + " |",
        "| --- | --- |" + " --- |" * len(CV_METRICS),
    ]
    for fold in summary["folds"]:
        lines.append(f"| {fold['fold']} | {fold['num_examples']} | " + " | ".join(f"{100 * fold[k]:.2f}" for k in CV_METRICS) + " |")
    lines.append("| **mean ± std** | | " + " | ".join(_pm(summary[k]) for k in CV_METRICS) + " |")
    return "\n".join(lines) + "\n"


def _pm(stat: dict) -> str:
    return f"{100 * stat['mean']:.2f}" + ("" if stat["std"] is None else f" ± {100 * stat['std']:.2f}")


# --- results across runs -------------------------------------------------------------------------

def _read_results_json(path: Path) -> dict:
    """A run's ``metrics.json`` or a cv folder's ``cv_summary.json``; a damaged one is one line naming it."""
    try:
        tree = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        reason = getattr(err, "msg", None) or getattr(err, "strerror", None) or getattr(err, "reason", None) or str(err)
        raise UserError(f"{path}: not valid JSON ({reason}); it was cut short or edited: rerun the run (train.resume=auto) or leave it out of the report") from None
    if not isinstance(tree, dict):
        raise UserError(f"{path}: holds a {type(tree).__name__}, not a mapping; not a ser-dist results file: rerun the run or leave it out of the report")
    return tree


def _metric_values(source: dict, path: Path, where: str) -> dict:
    """CV_METRICS from ``source`` (the ``where`` part of ``path``), each a fraction in [0, 1]."""
    values = {}
    for key in CV_METRICS:
        value = source.get(key) if isinstance(source, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):  # NaN fails too
            what = f"no {where}{key} (a fraction in [0, 1])" if value is None else f"{where}{key}={value!r} is not a fraction in [0, 1]"
            raise UserError(f"{path}: {what}; not a finished ser-dist run's results: rerun it or leave it out of the report")
        values[key] = value
    return values


def _run_folders(run_dir: Path, summary: Optional[dict]) -> list[str]:
    """The real paths of the runs a report argument stands for: a cv folder's fold folders, else the run itself."""
    if summary is None:
        return [os.path.realpath(run_dir)]
    return [os.path.realpath(run_dir / f"fold_{fold.get('fold')}") for fold in summary["folds"]]


def collect_results(run_dirs: Sequence[str | os.PathLike]) -> list[dict]:
    """One row per fold for ``report.results_table``: from cv folders (``cv_summary.json``) or single runs.

    A single run's row and column come from its saved ``config.yaml`` (model.backbone, loss.name). A run
    given twice (the same folder, through a link, or a cv folder and one of its folds) is refused: it
    would count as two folds.
    """
    from . import config as config_module

    rows = []
    given: dict[str, Path] = {}  # real path of a run folder -> the argument that named it
    for run_dir in map(Path, run_dirs):
        summary_path = run_dir / CV_SUMMARY
        if summary_path.is_file():
            summary = _read_results_json(summary_path)
            for key in ("backbone", "loss"):
                if not isinstance(summary.get(key), str) or not summary[key]:
                    raise UserError(f"{summary_path}: no {key}; not a ser-dist cv summary: rerun ser-dist cv or leave it out of the report")
            folds = summary.get("folds")
            if not isinstance(folds, list) or not folds or not all(isinstance(fold, dict) for fold in folds):
                raise UserError(f"{summary_path}: no folds list; not a ser-dist cv summary: rerun ser-dist cv or leave it out of the report")
            fold_rows = [
                {
                    "backbone": summary["backbone"], "loss": summary["loss"], "run": f"{run_dir} fold {fold.get('fold')}",
                    "fingerprint": fold.get("config_fingerprint_without_fold"),
                    **_metric_values(fold, summary_path, f"folds[{i}]."),
                }
                for i, fold in enumerate(folds)
            ]
        else:
            summary = None
            metrics_path, config_path = run_dir / "metrics.json", run_dir / "config.yaml"
            if not (metrics_path.is_file() and config_path.is_file()):
                raise UserError(f"{run_dir}: not a finished run (no {CV_SUMMARY}, or no metrics.json and config.yaml); pass run or cv folders")
            exp = config_module.load(config_path)
            metrics = _read_results_json(metrics_path)
            fold_rows = [{
                "backbone": exp.model.backbone, "loss": exp.loss.name, "run": str(run_dir),
                "fingerprint": metrics.get("config_fingerprint_without_fold"), **_metric_values(metrics.get("test"), metrics_path, "test."),
            }]
        for folder in _run_folders(run_dir, summary):
            if folder in given:
                raise UserError(
                    f"{run_dir}: run {folder} is given twice (also through {given[folder]}), so it would count as two folds; "
                    "give each run once (a cv folder brings all its folds)"
                )
            given[folder] = run_dir
        rows.extend(fold_rows)
    if not rows:
        raise UserError("no runs given; pass finished run folders (train.output_dir) or cv folders")
    check_one_setting_per_cell(rows)
    return rows


def check_one_setting_per_cell(rows: list[dict]) -> None:
    """A table cell pools folds of one setting: runs whose settings (but the fold) differ are refused."""
    cells: dict[tuple[str, str], dict] = {}
    for row in rows:
        first = cells.setdefault((row["backbone"], row["loss"]), row)
        if row.get("fingerprint") != first.get("fingerprint"):
            raise UserError(
                f"{first['run']} and {row['run']} are both the {row['backbone']} x {row['loss']} cell but ran other settings "
                f"(fingerprints {first.get('fingerprint') or 'none recorded'} and {row.get('fingerprint') or 'none recorded'}; "
                "compare their config.yaml); report runs of one setting per cell"
            )


def write_results(rows: list[dict], out_dir: str | os.PathLike) -> dict[str, Path]:
    """``results.md`` (backbone x loss, UA / WA ± across folds), ``results.csv`` and ``results_heatmap.png``."""
    from .report import plot_results_heatmap, results_table

    from .evaluation import make_output_folder

    out = make_output_folder(Path(out_dir))
    markdown, csv_rows = results_table(rows)
    num_folds = sorted({row["num_folds"] for row in csv_rows})
    note = (
        f"\nUA = unweighted accuracy (mean per-class recall), WA = weighted (plain) accuracy, in percent; "
        f"± = sample standard deviation across {'/'.join(map(str, num_folds))} fold(s). Runs: {len({row['run'] for row in rows})}.\n"
    )
    paths = {"markdown": out / "results.md", "csv": out / "results.csv", "heatmap": out / "results_heatmap.png"}
    paths["markdown"].write_text(markdown + note)
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(csv_rows[0]))
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in csv_rows)
    plot_results_heatmap(rows, paths["heatmap"])
    return paths


# --- the grid ------------------------------------------------------------------------------------

def plan_grid(recipes: Sequence[str], overrides: Sequence[str], out_dir: str, smoke: bool = False) -> list[CVPlan]:
    """One cv plan per recipe, all resolved before anything trains; cells go to ``out_dir/<recipe>``."""
    if not recipes:
        raise UserError("no recipes given; e.g. ser-dist grid recipes/lstm_*.py data.root=DIR --out runs/grid")
    stems = [Path(r).stem for r in recipes]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise UserError(f"recipe {repeated[0]!r} is given twice; each grid cell needs its own folder")
    plans = [plan_cv(recipe, overrides, out_dir=str(Path(out_dir) / Path(recipe).stem), smoke=smoke) for recipe in recipes]
    check_comparable(plans)
    return plans


def check_comparable(plans: Sequence[CVPlan]) -> None:
    """A grid compares cells: all share the data protocol, and the cells of a row their model and training.

    Recipes written for other purposes (e.g. a seed recipe with its own split) are caught here, before
    anything trains, instead of silently putting a differently evaluated number in the table.
    """
    row_first: dict[str, CVPlan] = {}
    cells: dict[tuple[str, str], CVPlan] = {}
    for plan in plans:
        same_cell = cells.setdefault((plan.recipe.backbone, plan.recipe.loss), plan)
        if same_cell is not plan:
            raise UserError(
                f"{plan.recipe.path} and {same_cell.recipe.path} are both the {plan.recipe.backbone} x {plan.recipe.loss} cell; "
                "a grid has one recipe per cell (list the recipes explicitly rather than by a wide glob)"
            )
        row = row_first.setdefault(plan.recipe.backbone, plan)
        row_diffs = [
            diff
            for section in ("model", "optim", "train")
            for diff in _differences(getattr(row.experiment, section), getattr(plan.experiment, section), section, ignore=("output_dir",))
        ]
        pairs = (
            (plans[0], _differences(plans[0].experiment.data, plan.experiment.data, "data", ignore=("fold",)), "the cells of a grid share one data protocol"),
            (row, row_diffs, f"the cells of the {plan.recipe.backbone} row share its model and training settings"),
        )
        for other, diffs, why in pairs:
            if diffs:
                key, theirs, ours = diffs[0]
                raise UserError(
                    f"{plan.recipe.path} has {key}={ours!r} but {other.recipe.path} has {theirs!r}; {why}: "
                    f"pass {key}=VALUE to the grid, or align the recipes"
                )


def _differences(a, b, section: str, ignore: tuple[str, ...] = ()) -> list[tuple[str, object, object]]:
    return [
        (f"{section}.{f.name}", getattr(a, f.name), getattr(b, f.name))
        for f in dataclasses.fields(a)
        if f.name not in ignore and getattr(a, f.name) != getattr(b, f.name)
    ]


def grid_jobs(plans: Sequence[CVPlan], launcher: Optional[str] = None, rerun: bool = False) -> list[str]:
    """One shell command per cell: ``ser-dist cv`` of that recipe into its cell folder."""
    jobs = []
    for plan in plans:
        command = ["ser-dist", "cv", str(plan.recipe.path), *plan.overrides, "--out", str(plan.out_dir)] + (["--rerun"] if rerun else [])
        if launcher:
            command += ["--launcher", launcher]
        jobs.append(shlex.join(command))
    return jobs


def run_grid(plans: Sequence[CVPlan], out_dir: str, launcher: Optional[str] = None, log=print, rerun: bool = False) -> dict[str, Path]:
    """Run every cell (folds finished with the same settings are skipped), then write the study table and heatmap."""
    for plan in plans:  # every cell's folders are checked before anything trains
        check_launch(plan, launcher)
        check_earlier_runs(plan, rerun)
    for index, plan in enumerate(plans, 1):
        log(f"grid cell {index}/{len(plans)}: {plan.recipe.name} ({plan.recipe.backbone} x {plan.recipe.loss}, {len(plan.folds)} fold(s))")
        run_cv(plan, launcher=launcher, log=log, rerun=rerun)
    paths = write_results(collect_results([plan.out_dir for plan in plans]), out_dir)
    log(f"grid: {len(plans)} cells -> {paths['markdown']}, {paths['csv']}, {paths['heatmap']}")
    return paths
