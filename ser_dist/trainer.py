"""The one training loop, on Accelerate.

``train(experiment)`` prepares the data (decode once, split, report), builds model, loss, optimizer and
schedule, trains with early stopping on a validation metric, checkpoints the full state, evaluates the
best model on the test split and writes the run's reports and export. The same code runs on one CPU,
one GPU, many GPUs and nodes, and under DeepSpeed; *how* it runs comes from the launcher.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from datetime import timedelta
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from . import config as config_module
from . import run_folder
from .checkpoint import TrainerState, check_same_run, complete_checkpoints, load_checkpoint, resolve_resume, save_checkpoint, verify
from .data.augment import augmented_training_data
from .data.dataset import AudioClips, collate_waveforms
from .data.pipeline import first_problems, prepare_data, summary_line, write_report
from .data.sampler import TrainBatchSampler
from .errors import UserError
from .losses import build_loss
from .metrics import compute_metrics
from .models import build_model
from .optim import Freezing, Schedule, build_optimizer, freezes_anything
from .run_log import RunLog

METRIC_KEYS = {"ua": "unweighted_accuracy", "wa": "weighted_accuracy", "macro_f1": "macro_f1", "loss": "loss"}


class TrainingError(UserError):
    pass


def make_accelerator(exp):
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    handlers = []
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    if use_cpu and os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        raise TrainingError(
            "DeepSpeed was asked for, but ACCELERATE_USE_CPU=true (accelerate launch --cpu) makes Accelerate drop it silently; "
            "unset ACCELERATE_USE_CPU / drop --cpu (without a GPU, DeepSpeed runs on CPU over gloo by itself)"
        )
    if distributed and (not torch.cuda.is_available() or use_cpu):
        handlers.append(InitProcessGroupKwargs(backend="gloo", timeout=timedelta(minutes=30)))
    if freezes_anything(exp.model) or exp.model.layerdrop > 0:
        from accelerate.utils import DistributedDataParallelKwargs

        # A frozen part gets no gradients (ser_dist.optim.Freezing), nor a layer LayerDrop skipped: DDP must not wait for them.
        handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    precision = None if exp.train.mixed_precision == "auto" else exp.train.mixed_precision
    accelerator = Accelerator(mixed_precision=precision, gradient_accumulation_steps=exp.train.grad_accum_steps, kwargs_handlers=handlers)
    if distributed and accelerator.distributed_type == "NO":
        # e.g. the GPU config (accelerate_config.yaml) on a machine without GPUs: every process would train alone
        raise TrainingError(
            f"{os.environ['WORLD_SIZE']} processes were launched but Accelerate set up no distributed training "
            f"(a GPU launch on a machine without CUDA?); on CPUs use bash launch/cpu_multiprocess.sh (torchrun with ACCELERATE_USE_CPU=true)"
        )
    asked = launcher_process_count()
    if asked is not None and asked > accelerator.num_processes:
        raise TrainingError(
            f"accelerate launch was asked for {asked} processes but started this one alone ({accelerator.num_processes} process): "
            "accelerate runs --cpu (and a machine without GPUs) as a single process; for several CPU processes use "
            f"NPROC={asked} bash launch/cpu_multiprocess.sh RECIPE ... (ACCELERATE_USE_CPU=true torchrun --nproc_per_node {asked} RECIPE ...)"
        )
    return accelerator


def launcher_process_count() -> int | None:
    """The ``--num_processes`` of an ``accelerate launch`` that started this process directly (Linux), else None.

    accelerate's single-process launcher (``--cpu``, or no GPU found) passes nothing of it on, so a
    ``--num_processes 2`` it ignored is read from the parent's command line.
    """
    try:
        parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    argv = [part.decode(errors="replace") for part in parent if part]
    launched = any(a.endswith("accelerate") or a == "accelerate.commands.launch" for a in argv) and (
        "launch" in argv or "accelerate.commands.launch" in argv
    )
    if not launched:
        return None
    for i, arg in enumerate(argv):
        for flag in ("--num_processes", "--num-processes"):
            value = argv[i + 1] if arg == flag and i + 1 < len(argv) else arg.split("=", 1)[1] if arg.startswith(flag + "=") else None
            if value is not None and value.isdigit():
                return int(value)
    return None


@contextlib.contextmanager
def built_whole(accelerator):
    """Build the model unpartitioned on every rank, even under ZeRO-3.

    Under ZeRO-3 transformers would build and load encoders partitioned (``zero.Init``), where wav2vec2's
    weight-norm positional conv can be neither initialised nor loaded. SER models fit on one device, so
    each rank builds the whole model and ``accelerator.prepare`` partitions it.
    """
    if accelerator.state.deepspeed_plugin is None:
        yield
        return
    from transformers.integrations import deepspeed as hf_deepspeed

    ref = hf_deepspeed._hf_deepspeed_config_weak_ref
    config = ref() if ref is not None else None
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if config is not None:
            hf_deepspeed.set_hf_deepspeed_config(config)


def deepspeed_input_dtype(accelerator) -> torch.dtype:
    """DeepSpeed bf16/fp16 casts the weights themselves (no autocast): the waveforms must match them."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:
        config = plugin.deepspeed_config
        if config.get("bf16", {}).get("enabled") is True:
            return torch.bfloat16
        if config.get("fp16", {}).get("enabled") is True:
            return torch.float16
    return torch.float32


def configure_deepspeed(plugin, exp) -> None:
    """Fill the DeepSpeed config's ``"auto"`` values that Accelerate cannot know from the recipe.

    The train loader is ours (not prepared), so ZeRO is told its micro batch size; clipping comes from
    ``train.max_grad_norm`` (Accelerate would put 1.0). Precision comes from the launcher, the lr from the
    recipe's optimizer (the JSON has no optimizer section).
    """
    config = plugin.deepspeed_config
    config["train_micro_batch_size_per_gpu"] = exp.train.batch_size
    if config.get("gradient_clipping", "auto") == "auto":
        config["gradient_clipping"] = float(exp.train.max_grad_norm or 0.0)


def eval_loader(clips: AudioClips, durations: list[float], batch_size: int) -> DataLoader:
    """Clips sorted by duration, so batches pad little; ``gather_for_metrics`` restores exact counts."""
    order = sorted(range(len(clips)), key=lambda i: durations[i])
    return DataLoader(Subset(clips, order), batch_size=batch_size, shuffle=False, collate_fn=collate_waveforms)


@torch.no_grad()
def evaluate(model, loader, criterion, accelerator, label_names: list[str]) -> dict:
    """Metrics over every clip of ``loader`` exactly once, identical on every rank."""
    model.eval()
    all_logits, all_labels, all_index = [], [], []
    input_dtype = deepspeed_input_dtype(accelerator)
    for batch in loader:
        with accelerator.autocast():
            logits = model(batch["input_values"].to(input_dtype), batch["lengths"]).logits
        logits, labels, index = accelerator.gather_for_metrics((logits.float(), batch["labels"], batch["index"]))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
        all_index.append(index.cpu())
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


def out_of_memory_message(batch: dict, exp, device) -> str:
    clips, longest = len(batch["lengths"]), float(batch["lengths"].max()) / exp.data.sample_rate
    return (
        f"out of memory on {device} in a training batch of {clips} clips (train.batch_size={exp.train.batch_size}), "
        f"the longest {longest:.1f} s; lower train.batch_size, cap the padded audio per batch with data.batch_seconds, "
        "shorten data.max_seconds, or raise train.grad_accum_steps"
    )


def check_ranks_agree(accelerator, state, optimizer, frozen: set[str]) -> None:
    """Every rank must decide early stopping, the plateau lr and freezing identically, on the same step.

    The decisions depend only on gathered metrics and the epoch, so they agree by construction; one tiny
    all-gather per epoch proves it, turning a divergence (which would deadlock or train different
    models later) into an error at the epoch where it happened.
    """
    if accelerator.num_processes == 1:
        return
    names = ["epoch", "global_step", "stopped_early", "epochs_without_improvement", "frozen_parts"]
    values = [state.epoch, state.global_step, float(state.stopped_early), state.epochs_without_improvement, len(frozen)]
    names += [f"lr[{g.get('name', i)}]" for i, g in enumerate(optimizer.param_groups)]
    values += [float(g["lr"]) for g in optimizer.param_groups]
    every = accelerator.gather(torch.tensor([values], dtype=torch.float64, device=accelerator.device)).cpu()
    differ = [name for j, name in enumerate(names) if not torch.all(every[:, j] == every[0, j])]
    if differ:
        raise TrainingError(
            f"ranks disagree at epoch {state.epoch + 1} on {', '.join(differ)} ({every.tolist()}); "
            "a decision was taken on one rank alone: every rank must run the same steps"
        )


def test_summary(scores: dict) -> dict:
    """``evaluate``'s scores as metrics.json reports them: without the per-clip arrays, with the clip count."""
    summary = {k: v for k, v in scores.items() if k not in ("probabilities", "index")}
    summary["num_examples"] = int(len(scores["index"]))
    return summary


def check_batches_per_step(exp, sampler, train_durations: list[float], num_processes: int, log) -> None:
    """An optimizer step takes ``grad_accum_steps`` batches on every process: more than an epoch has would
    repeat each clip many times over. Filling the last step repeats a few batches, which the log says."""
    natural = len(TrainBatchSampler(train_durations, batch_size=exp.train.batch_size, batch_seconds=exp.data.batch_seconds, seed=exp.train.seed).global_batches())
    per_step = num_processes * exp.train.grad_accum_steps
    if per_step > natural:
        raise TrainingError(
            f"train.grad_accum_steps={exp.train.grad_accum_steps} x {num_processes} process(es) takes {per_step} batches per optimizer step, "
            f"but an epoch has {natural} ({len(train_durations)} training clips); lower train.grad_accum_steps to at most "
            f"{max(1, natural // num_processes)}, or train.batch_size"
        )
    repeated = len(sampler.global_batches()) - natural
    if repeated:
        log(f"sampler: {repeated} of the epoch's {natural} batches are repeated so that every process runs whole optimizer steps")


def resume_training(accelerator, exp, log, *, ckpt_dir: Path, identity: dict, schedule, batches_per_epoch: int) -> TrainerState:
    """The state to start from: fresh, or the checkpoint ``train.resume`` names, loaded after checking it is
    whole, of this run (settings and data), at a position this run has, with its best checkpoint present."""
    resume_from = resolve_resume(exp.train.resume, ckpt_dir, log) if accelerator.is_main_process else None
    if accelerator.num_processes > 1:  # rank 0 chose (and set damaged checkpoints aside): every rank loads that one
        from accelerate.utils import broadcast_object_list

        resume_from = broadcast_object_list([resume_from])[0]
    if resume_from is None:
        if exp.train.resume == "auto":
            log("resume: no checkpoint to continue from, starting from scratch")
        return TrainerState(num_processes=accelerator.num_processes)
    state = load_checkpoint(accelerator, resume_from, schedule)
    check_same_run(resume_from, identity, resume_safe_keys(exp))
    if state.batches_done > batches_per_epoch:
        raise TrainingError(f"{resume_from}: its state says {state.batches_done} batches into the epoch, but an epoch has {batches_per_epoch}; resume from another checkpoint")
    if state.best_checkpoint is not None:
        problem = verify(ckpt_dir / state.best_checkpoint) if (ckpt_dir / state.best_checkpoint).is_dir() else "it is missing"
        if problem:  # the export must be the best model: stop now, not after training to the end
            raise TrainingError(
                f"{ckpt_dir / state.best_checkpoint}, the best checkpoint so far, is needed for the export but {problem}; "
                "restore it, or start the run over with train.overwrite=true"
            )
    log(f"resumed from {resume_from} (epoch {state.epoch + 1}, batch {state.batches_done}, step {state.global_step})")
    return state


def run_identity(exp, data) -> dict:
    """What a resumed run must share with the run that wrote its checkpoint: the resolved config (less how
    it is launched) and the data: every clip's path, label, speaker, session, split and decoded duration."""
    import hashlib

    flat = config_module.flatten(config_module.to_dict(exp))
    settings = {key: value for key, value in flat.items() if key not in config_module.RUN_CONTROL_KEYS}
    split_of = {i: name for name, indices in data.split.items() for i in indices}
    durations = data.dataset["duration"]
    rows = [[r.path, r.label, r.speaker, r.session, split_of.get(i), round(float(durations[i]), 6)] for i, r in enumerate(data.records)]
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    summary = f"{len(rows)} clips, " + ", ".join(f"{name} {len(idx)}" for name, idx in data.split.items())
    return {"config": settings, "data": digest, "data_summary": summary}


def resume_safe_keys(exp) -> tuple:
    """``RESUME_SAFE_KEYS``, less ``train.epochs`` when the lr schedule spans the run's length."""
    spans_run = exp.optim.scheduler in ("linear_warmup", "cosine_warmup")
    return tuple(key for key in config_module.RESUME_SAFE_KEYS if not (spans_run and key == "train.epochs"))


def is_better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


def train(exp) -> dict:
    # Gradients that fade through long recurrences become denormal floats, which x86 CPUs process
    # ~100x slower: the BiLSTM's backward pass runs 7x faster with them flushed to zero (no effect on
    # GPUs). The flag is per thread and inherited by threads created later, so it is set before any
    # torch op starts the intra-op thread pool.
    torch.set_flush_denormal(True)
    accelerator = make_accelerator(exp)
    from accelerate.utils import set_seed

    set_seed(exp.train.seed, deterministic=exp.train.deterministic)
    out = Path(exp.train.output_dir)
    ckpt_dir = out / "checkpoints"
    if accelerator.is_main_process:  # before anything is written: one folder holds one run
        run_folder.claim(out, exp.train, has_checkpoint=bool(complete_checkpoints(ckpt_dir)))
    accelerator.wait_for_everyone()
    run_folder.check_shared(accelerator, out)
    log = RunLog(accelerator, out, tensorboard=exp.train.tensorboard)
    log(f"{exp.name}: {accelerator.num_processes} process(es) on {accelerator.device}, precision {accelerator.mixed_precision}")

    with accelerator.main_process_first():
        prepare_started = time.time()
        data = prepare_data(exp.data, exp.train.seed, num_proc=max(1, min(4, os.cpu_count() or 1)))
    # Wall times of this process (a resumed run times only what it ran): metrics.json "timing".
    timing = {"prepare_seconds": round(time.time() - prepare_started, 3), "epoch_seconds": []}
    label_names, num_classes = data.label_names, len(data.label_names)
    if accelerator.is_main_process:
        config_module.save(exp, out / "config.yaml")
        from .data.splits import write_split

        write_split(data.records, data.split, out / "split.csv")
        write_report(data.report, out / "data_report.json")
    log(summary_line(data.report))
    for warning in data.report.get("warnings", []):
        log(f"data: warning: {warning}")
    if data.report["skipped_files"] or data.report["set_aside_files"]:
        log(f"data: not used: {first_problems(data.report)} (all listed in {out / 'data_report.json'})")

    label2id = {name: i for i, name in enumerate(label_names)}
    clips = {name: AudioClips(data.dataset.select(idx), label2id) for name, idx in data.split.items()}
    durations = {name: data.durations(name) for name in data.split}
    with built_whole(accelerator):
        model = build_model(exp, num_classes)
    if exp.model.cache_features:  # frozen encoder: run it once per clip, train the head on its output
        from .data.feature_cache import cache_encoder_features, check_cacheable, freeze_encoder_for_good

        check_cacheable(model, exp.model)
        freeze_encoder_for_good(model)
        clips = {name: cache_encoder_features(model.to(accelerator.device), c, accelerator.device, log) for name, c in clips.items()}
        log(f"features: cached the frozen encoder's output for {sum(len(c) for c in clips.values())} clips")
    criterion = build_loss(exp.loss, num_classes, data.class_counts("train"))
    optimizer = build_optimizer(model, exp.optim)
    sampler = TrainBatchSampler(
        durations["train"], batch_size=exp.train.batch_size, batch_seconds=exp.data.batch_seconds, seed=exp.train.seed,
        num_replicas=accelerator.num_processes, rank=accelerator.process_index, steps_multiple=exp.train.grad_accum_steps,
    )
    # The loader draws its workers' seed from its own generator (re-seeded each epoch), not from the
    # global RNG: a run resumed mid-epoch then continues the global RNG (dropout) exactly where it stopped.
    loader_generator = torch.Generator()
    # data.augment: training clips only, augmented in the loader's workers, seeded per (seed, epoch, clip)
    train_clips, train_batches = augmented_training_data(clips["train"], sampler, exp.data, exp.train.seed)
    train_loader = DataLoader(
        train_clips, batch_sampler=train_batches, collate_fn=collate_waveforms, num_workers=exp.data.num_workers,
        pin_memory=accelerator.device.type == "cuda", persistent_workers=exp.data.num_workers > 0, generator=loader_generator,
    )
    if not data.split["val"]:
        raise TrainingError("the validation split is empty, and choosing the best epoch on the test split would leak it; set data.val_fraction > 0")
    val_loader = eval_loader(clips["val"], durations["val"], exp.train.batch_size)
    test_loader = eval_loader(clips["test"], durations["test"], exp.train.batch_size)
    check_batches_per_step(exp, sampler, durations["train"], accelerator.num_processes, log)
    steps_per_epoch = math.ceil(len(sampler.local_batches()) / exp.train.grad_accum_steps)
    schedule = Schedule(optimizer, exp.optim, steps_per_epoch * exp.train.epochs, maximize=exp.train.metric != "loss")
    if accelerator.state.deepspeed_plugin is not None:
        configure_deepspeed(accelerator.state.deepspeed_plugin, exp)
    num_parameters = sum(p.numel() for p in model.parameters())  # before ZeRO-3 partitions them
    model, optimizer, val_loader, test_loader = accelerator.prepare(model, optimizer, val_loader, test_loader)
    unwrapped = accelerator.unwrap_model(model)
    log(f"model: {exp.model.backbone}, {num_parameters / 1e6:.2f} M parameters; loss {exp.loss.name}; {steps_per_epoch} steps/epoch")
    if accelerator.state.deepspeed_plugin is not None:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        log(
            f"DeepSpeed ZeRO-{ds['zero_optimization']['stage']}: micro batch {ds['train_micro_batch_size_per_gpu']}, "
            f"gradient clipping {ds['gradient_clipping']}, bf16 {ds.get('bf16', {}).get('enabled', False)}, fp16 {ds.get('fp16', {}).get('enabled', False)}"
        )

    identity = run_identity(exp, data)
    state = resume_training(accelerator, exp, log, ckpt_dir=ckpt_dir, identity=identity, schedule=schedule, batches_per_epoch=len(sampler.local_batches()))
    checkpoint = lambda best=False: save_checkpoint(  # noqa: E731  collective, on every rank
        accelerator, ckpt_dir, state, exp.train.keep_last, best=best, schedule=schedule, run_info=identity
    )
    metric_key = METRIC_KEYS[exp.train.metric]
    input_dtype = deepspeed_input_dtype(accelerator)
    freezing = Freezing(exp.model, unwrapped, optimizer)

    for epoch in range(state.epoch, exp.train.epochs):
        if state.stopped_early:
            break
        state.epoch, started = epoch, time.time()
        frozen = freezing.start_epoch(epoch, from_batch=state.batches_done)  # the same on any number of processes
        sampler.set_epoch(epoch)
        loader_generator.manual_seed(exp.train.seed * 100_003 + epoch)
        sampler.set_start(state.batches_done)
        epoch_batches = state.batches_done + len(sampler)
        model.train()
        for batch in train_loader:
            batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
            batch["input_values"] = batch["input_values"].to(input_dtype)
            stepped = False
            with accelerator.accumulate(model):
                try:
                    with accelerator.autocast():
                        loss = criterion(model(batch["input_values"], batch["lengths"]).logits, batch["labels"])
                    accelerator.backward(loss)
                except torch.OutOfMemoryError:
                    raise TrainingError(out_of_memory_message(batch, exp, accelerator.device)) from None
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
                        freezing.after_step(frozen)
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
            mid_epoch = state.batches_done < epoch_batches  # the epoch-end checkpoint follows validation anyway
            if stepped and mid_epoch and exp.train.save_every_steps and state.global_step % exp.train.save_every_steps == 0:
                checkpoint()

        val = evaluate(model, val_loader, criterion, accelerator, label_names)
        timing["epoch_seconds"].append(round(time.time() - started, 3))  # training + validation
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
        check_ranks_agree(accelerator, state, optimizer, frozen)
        log(
            f"epoch {epoch + 1}/{exp.train.epochs}: train loss {row['train_loss']:.4f}, val loss {val['loss']:.4f}, "
            f"val UA {100 * val['unweighted_accuracy']:.2f} WA {100 * val['weighted_accuracy']:.2f} "
            f"F1 {100 * val['macro_f1']:.2f}{' *' if improved else ''} ({timing['epoch_seconds'][-1]:.1f} s)"
        )
        log.epoch(epoch + 1, row, val, label_names)
        state.epoch, state.batches_done, state.train_loss_sum, state.train_loss_count = epoch + 1, 0, 0.0, 0
        checkpoint(best=improved)  # an improving checkpoint names itself the best in its own state file
        if state.stopped_early:
            log(f"early stopping: no {exp.train.metric} improvement for {patience} epochs (best epoch {state.best_epoch})")

    return finish(exp, accelerator, model, state, data, test_loader, criterion, log, num_parameters, timing)


def finish(exp, accelerator, model, state, data, test_loader, criterion, log, num_parameters, timing) -> dict:
    """Reload the best checkpoint, test it, export it and write the reports."""
    from .export import export_model

    out = Path(exp.train.output_dir)
    if state.global_step == 0 and state.nonfinite_steps > 0:
        raise TrainingError(
            f"every one of the run's {state.nonfinite_steps} optimizer steps had a non-finite loss or gradients, so nothing was trained "
            "and no model or metrics are written; lower optim.lr, use bf16 instead of fp16, or check the data report for broken clips"
        )
    if state.best_checkpoint is not None:
        load_checkpoint(accelerator, out / "checkpoints" / state.best_checkpoint)  # the weights; the schedule is done with
    test = evaluate(model, test_loader, criterion, accelerator, data.label_names)
    state_dict = accelerator.get_state_dict(model)  # collective under ZeRO-3: gathers the full weights
    # torch.compile (accelerate launch --dynamo_backend inductor) prefixes every key with "_orig_mod.".
    # Under ZeRO-3 only rank 0 receives the gathered weights (None elsewhere).
    if state_dict is not None:
        state_dict = {key.removeprefix("_orig_mod."): value for key, value in state_dict.items()}
    results = {
        "experiment": exp.name,
        "test": test_summary(test),
        "best_epoch": state.best_epoch,
        "best_val_" + METRIC_KEYS[exp.train.metric]: state.best_metric,
        "epochs_run": len(state.history),
        "stopped_early": state.stopped_early,
        "nonfinite_steps": state.nonfinite_steps,
        "num_parameters": num_parameters,
        "num_processes": accelerator.num_processes,
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
    if accelerator.is_main_process:
        with built_whole(accelerator):  # rank 0 alone: a partitioned (collective) build here would hang
            export_model(accelerator.unwrap_model(model, keep_torch_compile=False), state_dict, out / "model", exp=exp, label_names=data.label_names, extra={"test_metrics": results["test"], "data": results["data"]})
        log.final(results, test, state.history, data)
        (out / "timing.json").write_text(json.dumps(timing, indent=2))  # apart: metrics.json depends only on config and data
    accelerator.wait_for_everyone()
    t = results["test"]
    log(
        f"test ({t['num_examples']} clips, best epoch {state.best_epoch}): UA {100 * t['unweighted_accuracy']:.2f}  "
        f"WA {100 * t['weighted_accuracy']:.2f}  macro-F1 {100 * t['macro_f1']:.2f}  -> {out}"
    )
    log.close()
    accelerator.end_training()
    run_folder.release(out)
    results["timing"] = timing
    if exp.train.push_to_hub and accelerator.is_main_process:  # after everything is written: a failed push leaves the run intact
        from .hub import push_to_hub

        url = push_to_hub(out, exp.hub.repo_id, private=exp.hub.private, revision=exp.hub.revision)
        print(f"pushed {out / 'model'} to {url}", flush=True)
    return results
