"""The one training loop, on Accelerate.

``train(experiment)`` prepares the data (decode once, split, report), builds model, loss, optimizer and
schedule, trains with early stopping on a validation metric, checkpoints the full state, evaluates the
best model on the test split and writes the run's reports and export. The same code runs on one CPU,
one GPU, many GPUs and nodes, and under DeepSpeed; *how* it runs comes from the launcher.
"""
from __future__ import annotations

import json
import math
import os
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from . import config as config_module
from .checkpoint import TrainerState, load_checkpoint, resolve_resume, save_checkpoint
from .data.dataset import AudioClips, collate_waveforms
from .data.pipeline import first_problems, prepare_data, summary_line, write_report
from .data.sampler import TrainBatchSampler
from .errors import UserError
from .losses import build_loss
from .metrics import compute_metrics
from .models import build_model
from .optim import Schedule, apply_frozen_lrs, build_optimizer, frozen_parts
from .run_log import RunLog

METRIC_KEYS = {"ua": "unweighted_accuracy", "wa": "weighted_accuracy", "macro_f1": "macro_f1", "loss": "loss"}


class TrainingError(UserError):
    pass


def make_accelerator(exp):
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    handlers = []
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and (not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")):
        handlers.append(InitProcessGroupKwargs(backend="gloo", timeout=timedelta(minutes=30)))
    precision = None if exp.train.mixed_precision == "auto" else exp.train.mixed_precision
    return Accelerator(mixed_precision=precision, gradient_accumulation_steps=exp.train.grad_accum_steps, kwargs_handlers=handlers)


def eval_loader(clips: AudioClips, durations: list[float], batch_size: int) -> DataLoader:
    """Clips sorted by duration, so batches pad little; ``gather_for_metrics`` restores exact counts."""
    order = sorted(range(len(clips)), key=lambda i: durations[i])
    return DataLoader(Subset(clips, order), batch_size=batch_size, shuffle=False, collate_fn=collate_waveforms)


@torch.no_grad()
def evaluate(model, loader, criterion, accelerator, label_names: list[str]) -> dict:
    """Metrics over every clip of ``loader`` exactly once, identical on every rank."""
    model.eval()
    all_logits, all_labels, all_index = [], [], []
    for batch in loader:
        with accelerator.autocast():
            logits = model(batch["input_values"], batch["lengths"]).logits
        logits, labels, index = accelerator.gather_for_metrics((logits.float(), batch["labels"], batch["index"]))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
        all_index.append(index.cpu())
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    metrics = compute_metrics(logits.argmax(-1).numpy(), labels.numpy(), len(label_names), label_names)
    metrics["loss"] = float(criterion(logits, labels))
    metrics["probabilities"] = torch.softmax(logits, -1).numpy()
    metrics["index"] = torch.cat(all_index).numpy()
    return metrics


def is_better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


def train(exp) -> dict:
    accelerator = make_accelerator(exp)
    from accelerate.utils import set_seed

    set_seed(exp.train.seed, deterministic=exp.train.deterministic)
    out = Path(exp.train.output_dir)
    log = RunLog(accelerator, out, tensorboard=exp.train.tensorboard)
    log(f"{exp.name}: {accelerator.num_processes} process(es) on {accelerator.device}, precision {accelerator.mixed_precision}")

    with accelerator.main_process_first():
        data = prepare_data(exp.data, exp.train.seed, num_proc=max(1, min(4, os.cpu_count() or 1)))
    label_names, num_classes = data.label_names, len(data.label_names)
    if accelerator.is_main_process:
        config_module.save(exp, out / "config.yaml")
        from .data.splits import write_split

        write_split(data.records, data.split, out / "split.csv")
        write_report(data.report, out / "data_report.json")
    log(summary_line(data.report))
    if data.report["skipped_files"] or data.report["set_aside_files"]:
        log(f"data: not used: {first_problems(data.report)} (all listed in {out / 'data_report.json'})")

    label2id = {name: i for i, name in enumerate(label_names)}
    clips = {name: AudioClips(data.dataset.select(idx), label2id) for name, idx in data.split.items()}
    durations = {name: data.durations(name) for name in data.split}
    model = build_model(exp, num_classes)
    criterion = build_loss(exp.loss, num_classes, data.class_counts("train"))
    optimizer = build_optimizer(model, exp.optim)
    sampler = TrainBatchSampler(
        durations["train"], batch_size=exp.train.batch_size, batch_seconds=exp.data.batch_seconds, seed=exp.train.seed,
        num_replicas=accelerator.num_processes, rank=accelerator.process_index, steps_multiple=exp.train.grad_accum_steps,
    )
    train_loader = DataLoader(
        clips["train"], batch_sampler=sampler, collate_fn=collate_waveforms, num_workers=exp.data.num_workers,
        pin_memory=accelerator.device.type == "cuda", persistent_workers=exp.data.num_workers > 0,
    )
    if not data.split["val"]:
        raise TrainingError("the validation split is empty, and choosing the best epoch on the test split would leak it; set data.val_fraction > 0")
    val_loader = eval_loader(clips["val"], durations["val"], exp.train.batch_size)
    test_loader = eval_loader(clips["test"], durations["test"], exp.train.batch_size)
    steps_per_epoch = math.ceil(len(sampler.local_batches()) / exp.train.grad_accum_steps)
    schedule = Schedule(optimizer, exp.optim, steps_per_epoch * exp.train.epochs, maximize=exp.train.metric != "loss")
    if accelerator.state.deepspeed_plugin is not None:  # the train loader is ours, not prepared: tell ZeRO its batch size
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = exp.train.batch_size
    model, optimizer, val_loader, test_loader = accelerator.prepare(model, optimizer, val_loader, test_loader)
    accelerator.register_for_checkpointing(schedule)
    unwrapped = accelerator.unwrap_model(model)
    num_parameters = sum(p.numel() for p in unwrapped.parameters())
    log(f"model: {exp.model.backbone}, {num_parameters / 1e6:.2f} M parameters; loss {exp.loss.name}; {steps_per_epoch} steps/epoch")

    state = TrainerState()
    ckpt_dir = out / "checkpoints"
    resume_from = resolve_resume(exp.train.resume, ckpt_dir)
    if resume_from is not None:
        state = load_checkpoint(accelerator, resume_from)
        log(f"resumed from {resume_from} (epoch {state.epoch + 1}, batch {state.batches_done}, step {state.global_step})")
    metric_key = METRIC_KEYS[exp.train.metric]
    hard_freeze = accelerator.num_processes == 1 and accelerator.state.deepspeed_plugin is None

    for epoch in range(state.epoch, exp.train.epochs):
        if state.stopped_early:
            break
        state.epoch, started = epoch, time.time()
        frozen = frozen_parts(exp.model, epoch)
        # One process: frozen parts also stop computing gradients. Several: all parameters keep
        # gradients (DDP/ZeRO need every one every step) and only the lr of 0 holds them still.
        unwrapped.set_frozen("feature_encoder" in frozen, "encoder" in frozen, hard=hard_freeze)
        apply_frozen_lrs(optimizer, frozen)
        sampler.set_epoch(epoch)
        sampler.set_start(state.batches_done)
        model.train()
        for batch in train_loader:
            batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
            stepped = False
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    loss = criterion(model(batch["input_values"], batch["lengths"]).logits, batch["labels"])
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), exp.train.max_grad_norm or float("inf"))
                    # One small collective per optimizer step: the mean loss and whether any rank saw a non-finite value.
                    stats = accelerator.reduce(torch.stack([loss.detach().float(), (~torch.isfinite(loss.detach())).float()]).to(accelerator.device), "sum")
                    finite = stats[1].item() == 0 and (grad_norm is None or bool(torch.isfinite(torch.as_tensor(grad_norm))))
                    if finite or accelerator.scaler is not None:  # the fp16 scaler skips non-finite steps itself
                        optimizer.step()
                    finite = finite and not getattr(optimizer, "step_was_skipped", False)
                    optimizer.zero_grad(set_to_none=True)
                    if finite:
                        stepped = True
                        state.global_step += 1
                        state.nonfinite_streak = 0
                        state.train_loss_sum += float(stats[0]) / accelerator.num_processes
                        state.train_loss_count += 1
                        schedule.after_optimizer_step()
                        apply_frozen_lrs(optimizer, frozen)
                    else:
                        state.nonfinite_steps += 1
                        state.nonfinite_streak += 1
                        log(f"step {state.global_step}: non-finite loss or gradients, step skipped ({state.nonfinite_steps} so far)")
                        if state.nonfinite_streak >= exp.train.max_nonfinite_steps:
                            raise TrainingError(
                                f"{state.nonfinite_streak} optimizer steps in a row had non-finite loss or gradients; "
                                "lower optim.lr, use bf16 instead of fp16, or check the data report for broken clips"
                            )
                    if finite and state.global_step % exp.train.log_every_steps == 0:
                        log.scalars(state.global_step, {"train/loss": float(stats[0]) / accelerator.num_processes, "train/lr": optimizer.param_groups[0]["lr"]})
            state.batches_done += 1
            if stepped and exp.train.save_every_steps and state.global_step % exp.train.save_every_steps == 0:
                save_checkpoint(accelerator, ckpt_dir, state, exp.train.keep_last)

        val = evaluate(model, val_loader, criterion, accelerator, label_names)
        schedule.after_validation(val[metric_key])
        row = {
            "epoch": epoch + 1,
            "train_loss": state.train_loss_sum / max(1, state.train_loss_count),
            "val_loss": val["loss"],
            "val_unweighted_accuracy": val["unweighted_accuracy"],
            "val_weighted_accuracy": val["weighted_accuracy"],
            "val_macro_f1": val["macro_f1"],
            "lr": optimizer.param_groups[0]["lr"],
            "frozen": "+".join(sorted(frozen)) or "none",
            "nonfinite_steps": state.nonfinite_steps,
        }
        state.history.append(row)
        improved = is_better(val[metric_key], state.best_metric, exp.train.metric)
        if improved:
            state.best_metric, state.best_epoch, state.epochs_without_improvement = val[metric_key], epoch + 1, 0
        else:
            state.epochs_without_improvement += 1
        patience = exp.train.early_stopping_patience
        state.stopped_early = patience is not None and state.epochs_without_improvement >= patience
        log(
            f"epoch {epoch + 1}/{exp.train.epochs}: train loss {row['train_loss']:.4f}, val loss {val['loss']:.4f}, "
            f"val UA {100 * val['unweighted_accuracy']:.2f} WA {100 * val['weighted_accuracy']:.2f} "
            f"F1 {100 * val['macro_f1']:.2f}{' *' if improved else ''} ({time.time() - started:.1f} s)"
        )
        log.epoch(epoch + 1, row, val, label_names)
        state.epoch, state.batches_done, state.train_loss_sum, state.train_loss_count = epoch + 1, 0, 0.0, 0
        if improved:
            state.best_checkpoint = save_checkpoint(accelerator, ckpt_dir, state, exp.train.keep_last).name
        else:
            save_checkpoint(accelerator, ckpt_dir, state, exp.train.keep_last)
        if state.stopped_early:
            log(f"early stopping: no {exp.train.metric} improvement for {patience} epochs (best epoch {state.best_epoch})")

    return finish(exp, accelerator, model, state, data, test_loader, criterion, log, num_parameters)


def finish(exp, accelerator, model, state, data, test_loader, criterion, log, num_parameters) -> dict:
    """Reload the best checkpoint, test it, export it and write the reports."""
    from .export import export_model

    out = Path(exp.train.output_dir)
    if state.best_checkpoint is not None:
        accelerator.load_state(str(out / "checkpoints" / state.best_checkpoint))
    test = evaluate(model, test_loader, criterion, accelerator, data.label_names)
    state_dict = accelerator.get_state_dict(model)  # collective under ZeRO-3: gathers the full weights
    results = {
        "experiment": exp.name,
        "test": {k: v for k, v in test.items() if k not in ("probabilities", "index")},
        "best_epoch": state.best_epoch,
        "best_val_" + METRIC_KEYS[exp.train.metric]: state.best_metric,
        "epochs_run": len(state.history),
        "stopped_early": state.stopped_early,
        "nonfinite_steps": state.nonfinite_steps,
        "num_parameters": num_parameters,
        "num_processes": accelerator.num_processes,
        "data": {
            "num_used": data.report["num_used"],
            "skipped_files": len(data.report["skipped_files"]),
            "set_aside_files": len(data.report["set_aside_files"]),
            "split": data.report["splits"],
        },
    }
    results["test"]["num_examples"] = int(len(test["index"]))
    if accelerator.is_main_process:
        export_model(accelerator.unwrap_model(model), state_dict, out / "model", exp=exp, label_names=data.label_names, extra={"test_metrics": results["test"]})
        log.final(results, test, state.history, data)
    accelerator.wait_for_everyone()
    t = results["test"]
    log(
        f"test ({t['num_examples']} clips, best epoch {state.best_epoch}): UA {100 * t['unweighted_accuracy']:.2f}  "
        f"WA {100 * t['weighted_accuracy']:.2f}  macro-F1 {100 * t['macro_f1']:.2f}  -> {out}"
    )
    log.close()
    accelerator.end_training()
    return results
