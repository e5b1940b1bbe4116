"""Scoring a model on a set of clips, the same way for validation, the test split and ``ser-dist evaluate``:
every clip exactly once (``gather_for_metrics``), UA / WA / macro-F1 / confusion matrix from
``ser_dist.metrics``, and non-finite outputs refused rather than counted as the first class.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Subset

from . import config as config_module
from .data.dataset import AudioClips, collate_waveforms
from .errors import TrainingError
from .metrics import compute_metrics
from .progress import progress
from .runtime import deepspeed_input_dtype
from .speaker_norm import TRANSDUCTIVE_NOTE, speaker_inputs

METRIC_KEYS = {"ua": "unweighted_accuracy", "wa": "weighted_accuracy", "macro_f1": "macro_f1", "loss": "loss"}


def eval_loader(clips: AudioClips, durations: list[float], batch_size: int) -> DataLoader:
    """Clips sorted by duration, so batches pad little; ``gather_for_metrics`` restores exact counts."""
    order = sorted(range(len(clips)), key=lambda i: durations[i])
    return DataLoader(Subset(clips, order), batch_size=batch_size, shuffle=False, collate_fn=collate_waveforms)


@torch.no_grad()
def evaluate(model, loader, criterion, accelerator, label_names: list[str], *, desc: str = "evaluate", speakers=None, split="") -> dict:
    """Metrics over every clip of ``loader`` exactly once, identical on every rank (progress: ``desc``);
    ``speakers``: ``model.feature_norm=speaker``'s rows per split (``ser_dist.speaker_norm``), ``split`` this loader's."""
    model.eval()
    all_logits, all_labels, all_index = [], [], []
    input_dtype = deepspeed_input_dtype(accelerator)
    with progress(total=len(loader), desc=desc, unit="batch") as bar:
        for batch in loader:
            with accelerator.autocast():
                logits = model(batch["input_values"].to(input_dtype), batch["lengths"], **speaker_inputs(speakers, split, batch)).logits
            logits, labels, index = accelerator.gather_for_metrics((logits.float(), batch["labels"], batch["index"]))
            all_logits.append(logits.cpu())
            all_labels.append(labels.cpu())
            all_index.append(index.cpu())
            bar.update(1)
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    broken = int((~torch.isfinite(logits).all(-1)).sum())
    if broken:  # argmax would silently count them as the first class
        raise TrainingError(
            f"the model's outputs are non-finite (NaN/inf) for {broken} of {len(logits)} clips: it diverged or its weights are broken; "
            "lower optim.lr, use bf16 instead of fp16, or check the data report for broken clips"
        )
    metrics = compute_metrics(logits.argmax(-1).numpy(), labels.numpy(), len(label_names), label_names)
    metrics["loss"] = float(criterion(logits, labels))
    metrics["probabilities"] = torch.softmax(logits, -1).numpy()
    metrics["index"] = torch.cat(all_index).numpy()
    return metrics


def test_summary(scores: dict) -> dict:
    """``evaluate``'s scores as metrics.json reports them: without the per-clip arrays, with the clip count."""
    summary = {k: v for k, v in scores.items() if k not in ("probabilities", "index")}
    summary["num_examples"] = int(len(scores["index"]))
    return summary


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
        "protocol": TRANSDUCTIVE_NOTE if run.speakers is not None else "speaker-independent features: no test clip is seen before testing",
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
