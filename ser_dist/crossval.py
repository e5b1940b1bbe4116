"""Cross-validation and the grid: run a recipe on every fold of its protocol, and a set of recipes as a table.

``run_cv`` runs every fold of a recipe's protocol and writes ``cv_summary.json`` / ``cv_summary.md``
(mean ± sample std across folds of UA, WA and macro-F1); ``run_grid`` runs ``run_cv`` per recipe,
skips folds that already finished with the same settings (the fingerprint in their ``metrics.json``;
a fold run with other settings stops the command, or retrains with ``--rerun``) and writes the backbone x loss
table (``results.md``, ``results.csv``) and heatmap (``results_heatmap.png``, ser_dist/results.py). The
study's settings are the recipes themselves (``recipes/{backbone}_{loss}.py``); ``check_comparable``
refuses a grid whose cells differ in data protocol or, within a row, in model and training settings.

How a fold runs: in this process, through the recipe's own ``__main__`` block (its real entry point),
or, with ``launcher="accelerate launch --num_processes 8"``, as one launcher command per fold. A
process started by a multi-process launcher cannot run several folds (each run ends by tearing down
the process group), so ``ser-dist cv`` refuses to run under one and asks for ``--launcher`` instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import Experiment, apply_overrides, parse_args
from .errors import ConfigError, UserError
from .progress import configured, progress, write
from .recipe import Recipe, load_recipe, run_recipe_main, smoke_overrides
from .results import CV_METRICS, CV_SUMMARY, collect_results, write_results

# --- cross-validation ----------------------------------------------------------------------------


@dataclasses.dataclass
class CVPlan:
    recipe: Recipe
    experiment: Experiment  # fold 1's resolved config
    out_dir: Path
    overrides: list[str]  # every fold's overrides, without data.fold / train.output_dir
    folds: list[int | None]  # data.fold per run; [None] for single-split protocols

    def fold_dir(self, fold: int | None) -> Path:
        return self.out_dir / f"fold_{fold or 1}"

    def fold_overrides(self, fold: int | None, restart: bool = False) -> list[str]:
        """``restart``: clear the fold's earlier run (other settings) instead of resuming it."""
        extra = [f"train.output_dir={self.fold_dir(fold)}", "train.overwrite=true" if restart else "train.resume=auto"]
        return self.overrides + ([f"data.fold={fold}"] if fold is not None else []) + extra

    def command(self, fold: int | None, launcher: str | None, restart: bool = False) -> list[str]:
        prefix = shlex.split(launcher) if launcher else [sys.executable]
        return prefix + [str(self.recipe.path), *self.fold_overrides(fold, restart)]

    def fold_experiment(self, fold: int | None) -> Experiment:
        """The fold's resolved config, as its training run resolves it."""
        return apply_overrides(self.experiment, {"data.fold": fold}) if fold is not None else self.experiment

    def earlier_run(self, fold: int | None) -> tuple[str, str]:
        """What the fold folder holds: ("none" | "same" | "changed", why). "same": a run of these settings
        (finished when its metrics.json exists); "changed": a run of other settings, ``why`` names them."""
        from . import config as config_module

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


def plan_cv(recipe_path: str | os.PathLike, overrides: Sequence[str], out_dir: str | None = None, smoke: bool = False) -> CVPlan:
    """Resolve the config (so a bad key fails before any fold runs) and count the protocol's folds."""
    from .data.pipeline import scan_corpus
    from .data.splits import FOLD_PROTOCOLS, num_folds

    recipe = load_recipe(recipe_path)
    overrides = (smoke_overrides(recipe.backbone) if smoke else []) + list(overrides)
    exp = apply_overrides(recipe.config, parse_args(overrides)).validate()
    out = Path(out_dir) if out_dir else Path(exp.train.output_dir)
    if exp.data.split in FOLD_PROTOCOLS:
        folds: list[int | None] = list(range(1, num_folds(scan_corpus(exp.data).records, exp.data) + 1))
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


def check_launch(plan: CVPlan, launcher: str | None) -> None:
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
        raise UserError(
            f"--launcher {launcher!r}: {err}; quote it as one shell word, e.g. --launcher 'accelerate launch --num_processes 8'"
        ) from None
    if not command:
        raise UserError("--launcher is empty; e.g. --launcher 'accelerate launch --num_processes 8'")
    if shutil.which(command[0]) is None:
        raise UserError(f"--launcher {launcher!r}: {command[0]} is not a program on PATH; install it or give its full path")


def run_cv(plan: CVPlan, launcher: str | None = None, log=write, rerun: bool = False) -> dict:
    """Run the folds without a finished run of these settings (a partly run fold resumes from its checkpoint;
    a fold run with other settings stops the command, or with ``rerun`` retrains). A ``folds`` progress
    (``train.progress``) counts the folds done, those finished earlier included."""
    if launcher is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError(
            "ser-dist cv runs several trainings one after another, which a multi-process launch cannot do in one process; "
            "run it without a launcher and pass --launcher 'accelerate launch --num_processes N' instead"
        )
    check_launch(plan, launcher)
    restart = check_earlier_runs(plan, rerun)
    with _progress_of(plan), progress(total=len(plan.folds), desc=f"{plan.recipe.name} folds", unit="fold", leave=True) as folds:
        for fold in plan.folds:
            label = f"{plan.recipe.name} fold {fold or 1}/{len(plan.folds)}"
            done = plan.fold_dir(fold) / "metrics.json"
            if done.exists() and not restart[fold]:
                log(f"{label}: finished earlier with the same settings ({done}), not rerun")
            else:
                log(f"{label}: {'retraining (settings changed)' if restart[fold] else 'training'} -> {plan.fold_dir(fold)}")
                _run_fold(plan, fold, launcher, restart[fold])
            folds.update(1)
    return write_cv_summary(plan)


def _progress_of(plan: CVPlan):
    """This process's progress mode for the plan's folds: its ``train.progress`` and ``train.progress_seconds``."""
    return configured(plan.experiment.train.progress, plan.experiment.train.progress_seconds)


def _run_fold(plan: CVPlan, fold: int | None, launcher: str | None, restart: bool) -> None:
    """Train one fold: through the recipe's ``__main__`` in this process, or as a launcher command."""
    label = f"{plan.recipe.name} fold {fold or 1}/{len(plan.folds)}"
    done = plan.fold_dir(fold) / "metrics.json"
    if launcher is None:
        run_recipe_main(plan.recipe.path, plan.fold_overrides(fold, restart))
    else:
        result = subprocess.run(plan.command(fold, launcher, restart))
        if result.returncode != 0:
            raise UserError(
                f"{label} failed (exit {result.returncode}); see {plan.fold_dir(fold) / 'train.log'}, then rerun the same command to resume"
            )
    if not done.exists():
        raise UserError(f"{label} ended without {done}; see {plan.fold_dir(fold) / 'train.log'}")


def write_cv_summary(plan: CVPlan) -> dict:
    folds, keys = [], ()
    for fold in plan.folds:
        metrics = json.loads((plan.fold_dir(fold) / "metrics.json").read_text())
        keys = summary_keys(metrics["test"])
        folds.append(
            {
                "fold": fold or 1,
                **{key: metrics["test"][key] for key in keys},
                "num_examples": metrics["test"]["num_examples"],
                "config_fingerprint_without_fold": metrics.get("config_fingerprint_without_fold"),
            }
        )
    summary = {
        "recipe": str(plan.recipe.path),
        "experiment": plan.recipe.config.name,
        "backbone": plan.recipe.backbone,
        "loss": plan.recipe.loss,
        "overrides": plan.overrides,
        "num_folds": len(folds),
        "folds": folds,
        **{key: _mean_std([fold[key] for fold in folds]) for key in keys},
    }
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    (plan.out_dir / CV_SUMMARY).write_text(json.dumps(summary, indent=2))
    (plan.out_dir / "cv_summary.md").write_text(cv_summary_markdown(summary))
    return summary


def _mean_std(values: list[float]) -> dict:
    from .reports import mean_and_std

    mean, std = mean_and_std(values)
    return {"mean": mean, "std": std, "folds": values}


def summary_keys(test: dict) -> tuple[str, ...]:
    """The test scores a cv summary pools: UA / WA / macro-F1 with classes, each dimension's CCC and their mean with
    dimensional targets."""
    dimensions = [f"ccc_{name}" for name in [*test.get("dimensions", []), "mean"]] if test.get("dimensions") else []
    return tuple(key for key in CV_METRICS if key in test) + tuple(dimensions)


def cv_summary_markdown(summary: dict) -> str:
    names = {"unweighted_accuracy": "UA", "weighted_accuracy": "WA", "macro_f1": "macro-F1"}
    keys = [key for key in summary["folds"][0] if key in names or key.startswith("ccc_")]  # summary_keys' order
    lines = [
        f"# {summary['experiment']}: {summary['num_folds']} fold(s)",
        "",
        "| fold | test clips | " + " | ".join(names.get(k, k.replace("ccc_", "CCC ")) for k in keys) + " |",
        "| --- | --- |" + " --- |" * len(keys),
    ]
    for fold in summary["folds"]:
        lines.append(f"| {fold['fold']} | {fold['num_examples']} | " + " | ".join(_value(k, fold[k]) for k in keys) + " |")
    lines.append("| **mean ± std** | | " + " | ".join(_pm(summary[k], k) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def _value(key: str, value: float) -> str:
    """A class score in percent, a CCC as it is."""
    return f"{value:.3f}" if key.startswith("ccc_") else f"{100 * value:.2f}"


def _pm(stat: dict, key: str = "") -> str:
    return _value(key, stat["mean"]) + ("" if stat["std"] is None else f" ± {_value(key, stat['std'])}")


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
    rated = [plan.recipe.path for plan in plans if plan.experiment.data.targets == "dimensional"]
    if rated:  # before anything trains: the grid's table is of class metrics (UA, WA, macro-F1)
        raise UserError(
            f"{rated[0]}: data.targets=dimensional has no class metrics for the grid's table; run ser-dist cv on it (its "
            "summary pools each dimension's CCC), or use data.targets=both"
        )
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
            (
                plans[0],
                _differences(plans[0].experiment.data, plan.experiment.data, "data", ignore=("fold",)),
                "the cells of a grid share one data protocol",
            ),
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


def grid_jobs(plans: Sequence[CVPlan], launcher: str | None = None, rerun: bool = False) -> list[str]:
    """One shell command per cell: ``ser-dist cv`` of that recipe into its cell folder."""
    jobs = []
    for plan in plans:
        command = ["ser-dist", "cv", str(plan.recipe.path), *plan.overrides, "--out", str(plan.out_dir)] + (["--rerun"] if rerun else [])
        if launcher:
            command += ["--launcher", launcher]
        jobs.append(shlex.join(command))
    return jobs


def run_grid(plans: Sequence[CVPlan], out_dir: str, launcher: str | None = None, log=write, rerun: bool = False) -> dict[str, Path]:
    """Run every cell (folds finished with the same settings are skipped), then write the study table and heatmap.
    A ``cells`` progress (the first cell's ``train.progress``) counts the cells done."""
    for plan in plans:  # every cell's folders are checked before anything trains
        check_launch(plan, launcher)
        check_earlier_runs(plan, rerun)
    with _progress_of(plans[0]), progress(total=len(plans), desc="grid cells", unit="cell", leave=True) as cells:
        for index, plan in enumerate(plans, 1):
            log(
                f"grid cell {index}/{len(plans)}: {plan.recipe.name} ({plan.recipe.backbone} x {plan.recipe.loss}, {len(plan.folds)} fold(s))"
            )
            run_cv(plan, launcher=launcher, log=log, rerun=rerun)
            cells.update(1, cell=plan.recipe.name)
    paths = write_results(collect_results([plan.out_dir for plan in plans]), out_dir)
    log(f"grid: {len(plans)} cells -> {paths['markdown']}, {paths['csv']}, {paths['heatmap']}")
    return paths
