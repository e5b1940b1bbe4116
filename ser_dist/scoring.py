"""Scoring a model on a set of clips, the same way for validation, the test split and ``ser-dist evaluate``:
every clip exactly once (``gather_for_metrics``), UA / WA / macro-F1 / confusion matrix from
``ser_dist.metrics`` (and with dimensional targets CCC / Pearson / MAE per dimension, over the whole set),
and non-finite outputs refused rather than counted as the first class.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Subset

from . import config as config_module
from .data.dataset import AudioClips, collate_waveforms
from .errors import TrainingError
from .losses import objective_loss
from .metrics import compute_metrics, dimension_metrics
from .models import SEROutput
from .progress import progress
from .runtime import deepspeed_input_dtype
from .speaker_norm import TRANSDUCTIVE_NOTE, speaker_inputs

METRIC_KEYS = {"ua": "unweighted_accuracy", "wa": "weighted_accuracy", "macro_f1": "macro_f1", "ccc_mean": "ccc_mean", "loss": "loss"}
CLASS_SCORES = ("unweighted_accuracy", "weighted_accuracy", "macro_f1")  # a history row's val_* columns of the classes
PER_CLIP = ("probabilities", "index", "predicted_dimensions", "true_dimensions")  # evaluate's arrays, not metrics.json's


def eval_loader(clips: AudioClips, durations: list[float], batch_size: int) -> DataLoader:
    """Clips sorted by duration, so batches pad little; ``gather_for_metrics`` restores exact counts."""
    order = sorted(range(len(clips)), key=lambda i: durations[i])
    return DataLoader(Subset(clips, order), batch_size=batch_size, shuffle=False, collate_fn=collate_waveforms)


@torch.no_grad()
def evaluate(
    model, loader, criterion, accelerator, label_names: list[str], *, desc: str = "evaluate", speakers=None, split="", dimensions=()
) -> dict:
    """Metrics over every clip of ``loader`` exactly once, identical on every rank (progress: ``desc``);
    ``speakers``: ``model.feature_norm=speaker``'s rows per split (``ser_dist.speaker_norm``), ``split`` this loader's.
    ``criterion``: the run's ``losses.TargetLoss`` (or a plain categorical loss). ``dimensions``: the names of the
    model's regression outputs (data.targets=dimensional|both), scored with CCC / Pearson / MAE; no ``label_names``:
    no class metrics."""
    model.eval()
    gathered: dict[str, list] = {"logits": [], "labels": [], "index": [], "predicted": [], "true": []}
    input_dtype = deepspeed_input_dtype(accelerator)
    with progress(total=len(loader), desc=desc, unit="batch") as bar:
        for batch in loader:
            with accelerator.autocast():
                output = model(batch["input_values"].to(input_dtype), batch["lengths"], **speaker_inputs(speakers, split, batch))
            values = (output.logits.float(), batch["labels"], batch["index"])
            if dimensions:
                values += (output.dimensions.float(), batch["dimensions"])
            for key, value in zip(gathered, accelerator.gather_for_metrics(values)):
                gathered[key].append(value.cpu())
            bar.update(1)
    logits, labels = torch.cat(gathered["logits"]), torch.cat(gathered["labels"])
    predicted = torch.cat(gathered["predicted"]) if dimensions else None
    outputs = torch.cat([logits, predicted], dim=-1) if dimensions else logits
    broken = int((~torch.isfinite(outputs).all(-1)).sum())
    if broken:  # argmax would silently count them as the first class
        raise TrainingError(
            f"the model's outputs are non-finite (NaN/inf) for {broken} of {len(logits)} clips: it diverged or its weights are broken; "
            "lower optim.lr, use bf16 instead of fp16, or check the data report for broken clips"
        )
    metrics = compute_metrics(logits.argmax(-1).numpy(), labels.numpy(), len(label_names), label_names) if label_names else {}
    true = torch.cat(gathered["true"]) if dimensions else None
    if dimensions:
        metrics.update(dimension_metrics(predicted.numpy(), true.numpy(), list(dimensions)))
    metrics["loss"] = float(objective_loss(criterion, SEROutput(logits, None, predicted), labels, true))  # the CCC over every clip
    if label_names:
        metrics["probabilities"] = torch.softmax(logits, -1).numpy()
    if dimensions:
        metrics["dimensions"] = list(dimensions)
        metrics["predicted_dimensions"], metrics["true_dimensions"] = predicted.numpy(), true.numpy()
    metrics["index"] = torch.cat(gathered["index"]).numpy()
    return metrics


def test_summary(scores: dict) -> dict:
    """``evaluate``'s scores as metrics.json reports them: without the per-clip arrays, with the clip count."""
    summary = {k: v for k, v in scores.items() if k not in PER_CLIP}
    summary["num_examples"] = int(len(scores["index"]))
    return summary


def history_row(epoch: int, train_loss: float, val: dict, optimizer, *, frozen: set[str], nonfinite_steps: int) -> dict:
    """One epoch's row of training_history.csv: the losses, the validation scores the targets have (UA / WA / macro-F1
    with classes, the CCC per dimension and their mean with dimensions), the lr, what was frozen."""
    row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val["loss"]}
    row.update({f"val_{key}": val[key] for key in CLASS_SCORES if key in val})
    row.update({f"val_ccc_{name}": val[f"ccc_{name}"] for name in [*val.get("dimensions", []), "mean"] if f"ccc_{name}" in val})
    row.update({"lr": optimizer.param_groups[0]["lr"], "frozen": "+".join(sorted(frozen)) or "none", "nonfinite_steps": nonfinite_steps})
    return row


def score_text(scores: dict, test: bool = False) -> str:
    """A split's headline scores for the run log: ``UA 35.00 WA 35.00 F1 20.41`` with classes (the test line: two
    spaces apart, ``macro-F1``), ``CCC mean 0.512 (arousal 0.701, ...)`` with dimensions."""
    gap, parts = "  " if test else " ", []
    if "unweighted_accuracy" in scores:
        ua, wa, f1 = (100 * scores[key] for key in CLASS_SCORES)
        parts.append(gap.join((f"UA {ua:.2f}", f"WA {wa:.2f}", f"{'macro-F1' if test else 'F1'} {f1:.2f}")))
    if "ccc_mean" in scores:
        each = ", ".join(f"{name} {scores[f'ccc_{name}']:.3f}" for name in scores.get("dimensions", []))
        parts.append(f"CCC mean {scores['ccc_mean']:.3f} ({each})")
    return "; ".join(parts)


def is_better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


def run_results(run, test: dict) -> dict:
    """metrics.json: a function of the config and the data only (wall times go to timing.json)."""
    exp, state, data = run.exp, run.state, run.data
    return {
        "experiment": exp.name,
        "test": test_summary(test),
        "best_epoch": state.best_epoch,
        "best_val_" + METRIC_KEYS[exp.train.metric]: state.best_metric,
        "epochs_run": len(state.history),
        "stopped_early": state.stopped_early,
        "nonfinite_steps": state.nonfinite_steps,
        "num_parameters": run.num_parameters,
        "num_processes": run.accelerator.num_processes,
        "protocol": TRANSDUCTIVE_NOTE if run.speakers is not None else "features use no statistics of the test clips",
        # What cv, grid and report check before reusing or pooling this run (ser_dist.config.fingerprint).
        "config_fingerprint": config_module.fingerprint(exp),
        "config_fingerprint_without_fold": config_module.fingerprint(exp, ignore=("data.fold",)),
        "data": {
            "num_used": data.report["num_used"],
            "skipped_files": len(data.report["skipped_files"]),
            "set_aside_files": len(data.report["set_aside_files"]),
            "warnings": data.report.get("warnings", []),
            "split": data.report["splits"],
        },
    }
