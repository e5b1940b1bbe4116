"""The one training loop, on Accelerate.

``train(experiment)`` reads as three steps. ``setup`` claims the run folder, prepares the data (decode once,
split, report), builds model, loss, optimizer and schedule and, on a resume, loads the checkpoint. ``fit``
trains epoch by epoch with early stopping on a validation metric, checkpointing the full state. ``finish``
tests the best model on the test split and writes the run's reports and export. The same code runs on one
CPU, one GPU, many GPUs and nodes, and under DeepSpeed; *how* it runs comes from the launcher
(``ser_dist.runtime``), the data and its loaders from ``ser_dist.run_data``, scoring from ``ser_dist.scoring``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from . import progress, run_folder
from .checkpoint import TrainerState, complete_checkpoints, load_checkpoint, resume_training, run_identity, save_checkpoint
from .data.sampler import TrainBatchSampler
from .errors import TrainingError
from .losses import build_loss, build_objective
from .mixup import training_loss
from .models import build_model
from .optim import Freezing, Schedule, build_optimizer
from .reports import write_training_reports
from .run_data import build_loaders, cached_features, prepare_and_report_data, split_clips
from .run_log import RunLog
from .runtime import (  # noqa: F401  make_accelerator and configure_deepspeed are also used from here by tests
    built_whole,
    check_ranks_agree,
    configure_deepspeed,
    deepspeed_input_dtype,
    log_deepspeed,
    make_accelerator,
    out_of_memory_message,
)
from .scoring import METRIC_KEYS, evaluate, history_row, is_better, run_results, score_text
from .speaker_norm import fit_speaker_norm, speaker_inputs
from .tracking import Trackers, epoch_values, log_with, run_hparams, step_values
from .train_stats import EpochStats


@dataclass
class Run:
    """What one training run holds, built by ``setup``, advanced by ``fit``, written out by ``finish``."""

    exp: object
    accelerator: object
    log: RunLog
    data: object
    model: torch.nn.Module
    optimizer: object
    criterion: torch.nn.Module
    schedule: Schedule
    freezing: Freezing
    sampler: TrainBatchSampler
    loader_generator: torch.Generator
    train_loader: DataLoader
    val_loader: DataLoader
    test_loader: DataLoader
    identity: dict
    num_parameters: int
    trackers: Trackers
    stats: EpochStats
    speakers: dict | None = None  # model.feature_norm=speaker: each split's speaker rows (ser_dist.speaker_norm)
    state: TrainerState = field(default_factory=TrainerState)
    timing: dict = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return Path(self.exp.train.output_dir)

    def checkpoint(self, best: bool = False) -> None:
        """Collective, on every rank. ``best``: this one becomes the best checkpoint (named in its own state)."""
        save_checkpoint(
            self.accelerator,
            self.out / "checkpoints",
            self.state,
            self.exp.train.keep_last,
            best=best,
            schedule=self.schedule,
            run_info=self.identity,
        )


def train(exp) -> dict:
    run = setup(exp)
    with run.trackers.closed_on_error():  # a run that fails ends its trackers (MLflow: FAILED, not RUNNING)
        fit(run)
        return finish(run)


# ---- set-up ------------------------------------------------------------------------------------------------


def setup(exp) -> Run:
    # Gradients that fade through long recurrences become denormal floats, which x86 CPUs process
    # ~100x slower: the BiLSTM's backward pass runs 7x faster with them flushed to zero (no effect on
    # GPUs). The flag is per thread and inherited by threads created later, so it is set before any
    # torch op starts the intra-op thread pool.
    torch.set_flush_denormal(True)
    accelerator = make_accelerator(exp, log_with=log_with(exp))  # a tracker whose package is missing stops here
    progress.configure(exp.train.progress, exp.train.progress_seconds, enabled=accelerator.is_main_process)
    from accelerate.utils import set_seed

    set_seed(exp.train.seed, deterministic=exp.train.deterministic)
    out = Path(exp.train.output_dir)
    if accelerator.is_main_process:  # before anything is written: one folder holds one run
        run_folder.claim(out, exp.train, has_checkpoint=bool(complete_checkpoints(out / "checkpoints")))
    accelerator.wait_for_everyone()
    run_folder.check_shared(accelerator, out)
    log = RunLog(accelerator, out)
    log(f"{exp.name}: {accelerator.num_processes} process(es) on {accelerator.device}, precision {accelerator.mixed_precision}")
    started = time.time()
    data = prepare_and_report_data(exp, accelerator, log)
    # Wall times of this process (a resumed run times only what it ran): timing.json.
    timing = {"prepare_seconds": round(time.time() - started, 3), "epoch_seconds": []}
    run = build_run(exp, accelerator, log, data)
    run.timing = timing
    run.state = resume_training(
        accelerator,
        exp,
        log,
        ckpt_dir=out / "checkpoints",
        identity=run.identity,
        schedule=run.schedule,
        batches_per_epoch=len(run.sampler.local_batches()),
    )
    resumed = run.state.global_step > 0 or run.state.epoch > 0
    run.trackers.start(run_hparams(exp, run.accelerator, run.num_parameters, data.report), resumed=resumed)
    return run


def build_run(exp, accelerator, log, data) -> Run:
    """Model, loss, optimizer, schedule, freezing and loaders, prepared by Accelerate."""
    clips, durations = split_clips(data)
    train_durations = durations["train"]
    with built_whole(accelerator):
        model = build_model(exp, len(data.label_names))
    if exp.model.cache_features:  # frozen encoder: run it once per clip, train the head on its output
        clips = cached_features(model, clips, exp, accelerator, log)
    speakers = fit_speaker_norm(model, data, clips, exp, accelerator.device, log)  # None unless model.feature_norm=speaker
    classes = build_loss(exp.loss, len(data.label_names), data.class_counts("train")) if data.label_names else None
    criterion = build_objective(exp.loss, exp.data.targets, classes)  # with the dimensions' loss under dimensional|both
    optimizer = build_optimizer(model, exp.optim)
    loaders = build_loaders(exp, accelerator, clips, durations, log)
    steps_per_epoch = math.ceil(len(loaders.sampler.local_batches()) / exp.train.grad_accum_steps)
    schedule = Schedule(optimizer, exp.optim, steps_per_epoch * exp.train.epochs, maximize=exp.train.metric != "loss")
    if accelerator.state.deepspeed_plugin is not None:
        configure_deepspeed(accelerator.state.deepspeed_plugin, exp)
    num_parameters = sum(p.numel() for p in model.parameters())  # before ZeRO-3 partitions them
    model, optimizer, val_loader, test_loader = accelerator.prepare(model, optimizer, loaders.val, loaders.test)
    log(f"model: {exp.model.backbone}, {num_parameters / 1e6:.2f} M parameters; loss {objective_name(exp)}; {steps_per_epoch} steps/epoch")
    log_deepspeed(accelerator, log)
    return Run(
        exp=exp,
        accelerator=accelerator,
        log=log,
        data=data,
        model=model,
        optimizer=optimizer,
        criterion=criterion,
        schedule=schedule,
        freezing=Freezing(exp.model, accelerator.unwrap_model(model), optimizer),
        sampler=loaders.sampler,
        loader_generator=loaders.generator,
        train_loader=loaders.train,
        val_loader=val_loader,
        test_loader=test_loader,
        identity=run_identity(exp, data),
        num_parameters=num_parameters,
        trackers=Trackers(accelerator, exp),
        stats=EpochStats(train_durations),
        speakers=speakers,
    )


def objective_name(exp) -> str:
    """The loss as the log names it: ``ce``; ``ccc over arousal, valence`` (dimensional); ``ce + 0.5 x ccc over ...``."""
    targets, loss = exp.data.targets, exp.loss
    dimensional = f"{loss.dimension_loss} over {', '.join(exp.data.dimension_columns)}"
    return {"categorical": loss.name, "dimensional": dimensional}.get(targets, f"{loss.name} + {loss.dimension_weight:g} x {dimensional}")


# ---- fit ----------------------------------------------------------------------------------------------------


def fit(run: Run) -> None:
    for epoch in range(run.state.epoch, run.exp.train.epochs):
        if run.state.stopped_early:
            break
        started = time.time()
        frozen = train_epoch(run, epoch)
        end_epoch(run, epoch, frozen, started)


def train_epoch(run: Run, epoch: int) -> set[str]:
    """One epoch's optimizer steps, from the batch a resumed run stopped at; returns the parts frozen in it."""
    state, exp = run.state, run.exp
    state.epoch = epoch
    frozen = run.freezing.start_epoch(epoch, from_batch=state.batches_done)  # the same on any number of processes
    run.sampler.set_epoch(epoch)
    run.loader_generator.manual_seed(exp.train.seed * 100_003 + epoch)
    run.sampler.set_start(state.batches_done)
    epoch_batches = state.batches_done + len(run.sampler)
    run.model.train()
    input_dtype = deepspeed_input_dtype(run.accelerator)
    run.stats.start()
    with progress.progress(total=len(run.sampler), desc=f"epoch {epoch + 1}/{exp.train.epochs}", unit="batch") as bar:
        for batch in run.train_loader:
            run.stats.got_batch(batch)
            batch = {k: v.to(run.accelerator.device, non_blocking=True) for k, v in batch.items()}
            batch["input_values"] = batch["input_values"].to(input_dtype)
            stepped = train_step(run, batch, frozen)
            state.batches_done += 1
            mid_epoch = state.batches_done < epoch_batches  # the epoch-end checkpoint follows validation anyway
            if stepped and mid_epoch and exp.train.save_every_steps and state.global_step % exp.train.save_every_steps == 0:
                run.checkpoint()
            bar.update(1, **bar_figures(run))
            run.stats.done_batch()
    return frozen


def bar_figures(run: Run) -> dict:
    """The epoch bar's running figures: the epoch's mean loss so far, the head's lr, clips per second."""
    state = run.state
    loss = state.train_loss_sum / state.train_loss_count if state.train_loss_count else float("nan")
    return {"loss": loss, "lr": float(run.optimizer.param_groups[0]["lr"]), "clips/s": run.stats.clips_per_second()}


def train_step(run: Run, batch: dict, frozen: set[str]) -> bool:
    """Forward and backward on one batch; at the end of an accumulation, the optimizer step. True if a step was taken."""
    accelerator = run.accelerator
    with accelerator.accumulate(run.model):
        try:
            with accelerator.autocast():
                loss = training_loss(
                    run.model, run.criterion, batch, run.exp.train.mixup_alpha, speaker_inputs(run.speakers, "train", batch)
                )
            accelerator.backward(loss)
        except torch.OutOfMemoryError:
            raise TrainingError(out_of_memory_message(batch, run.exp, accelerator.device)) from None
        if not accelerator.sync_gradients:
            return False
        return optimizer_step(run, loss, frozen)


def optimizer_step(run: Run, loss: torch.Tensor, frozen: set[str]) -> bool:
    """Clip, step and count; a non-finite loss or gradient on any rank skips the step on every rank."""
    accelerator, state, exp = run.accelerator, run.state, run.exp
    grad_norm = accelerator.clip_grad_norm_(run.model.parameters(), exp.train.max_grad_norm or float("inf"))
    # One small collective per optimizer step: the mean loss and whether any rank saw a non-finite value.
    stats = accelerator.reduce(torch.stack([loss.detach().float(), (~torch.isfinite(loss.detach())).float()]).to(accelerator.device), "sum")
    finite = stats[1].item() == 0 and (grad_norm is None or bool(torch.isfinite(torch.as_tensor(grad_norm))))
    if finite or accelerator.scaler is not None:  # the fp16 scaler skips non-finite steps itself
        run.optimizer.step()
    finite = finite and not getattr(run.optimizer, "step_was_skipped", False)
    run.optimizer.zero_grad(set_to_none=True)
    if not finite:
        state.nonfinite_steps += 1
        state.nonfinite_streak += 1
        run.log(f"step {state.global_step}: non-finite loss or gradients, step skipped ({state.nonfinite_steps} so far)")
        run.trackers.log({"train/skipped_steps": state.nonfinite_steps}, step=state.global_step)
        if state.nonfinite_streak >= exp.train.max_nonfinite_steps:
            raise TrainingError(
                f"{state.nonfinite_streak} optimizer steps in a row had non-finite loss or gradients; "
                "lower optim.lr, use bf16 instead of fp16, or check the data report for broken clips"
            )
        return False
    mean_loss = float(stats[0]) / accelerator.num_processes
    state.global_step += 1
    state.nonfinite_streak = 0
    state.train_loss_sum += mean_loss
    state.train_loss_count += 1
    run.schedule.after_optimizer_step()
    run.freezing.after_step(frozen)
    if state.global_step % exp.train.log_every_steps == 0:
        # lr: the one the step used (the schedule has moved on to the next step's); so are the others
        values = step_values(mean_loss, run.optimizer, grad_norm, exp.train.max_grad_norm, state.nonfinite_steps)
        run.trackers.log(values, step=state.global_step)
    return True


def end_epoch(run: Run, epoch: int, frozen: set[str], started: float) -> None:
    """Validate, record the epoch, decide early stopping and checkpoint (every rank decides the same)."""
    state, exp = run.state, run.exp
    metric_key = METRIC_KEYS[exp.train.metric]
    figures = run.stats.summary(run.accelerator)  # collective: the epoch's cost over every process
    val = evaluate(run.model, run.val_loader, run.criterion, run.accelerator, run.data.label_names, **scored(run, "val", "validate"))
    run.timing["epoch_seconds"].append(round(time.time() - started, 3))  # training + validation
    run.timing.setdefault("epochs", []).append({"epoch": epoch + 1, **{k: round(v, 4) for k, v in figures.items()}})
    run.schedule.after_validation(val[metric_key])
    train_loss = state.train_loss_sum / max(1, state.train_loss_count)
    row = history_row(epoch + 1, train_loss, val, run.optimizer, frozen=frozen, nonfinite_steps=state.nonfinite_steps)
    state.history.append(row)
    improved = is_better(val[metric_key], state.best_metric, exp.train.metric)
    if improved:
        state.best_metric, state.best_epoch, state.epochs_without_improvement = val[metric_key], epoch + 1, 0
    else:
        state.epochs_without_improvement += 1
    patience = exp.train.early_stopping_patience
    state.stopped_early = patience is not None and state.epochs_without_improvement >= patience
    check_ranks_agree(run.accelerator, state, run.optimizer, frozen)
    run.log(
        f"epoch {epoch + 1}/{exp.train.epochs}: train loss {row['train_loss']:.4f}, val loss {val['loss']:.4f}, "
        f"val {score_text(val)}{' *' if improved else ''} ({run.timing['epoch_seconds'][-1]:.1f} s)"
    )
    # x axis: optimizer steps for every figure (W&B takes increasing steps only); epoch/epoch says which epoch
    run.trackers.log(epoch_values(row, val, figures, run.optimizer, frozen, run.data.label_names), step=state.global_step)
    if run.data.label_names:
        run.trackers.confusion("val/confusion_matrix", val["confusion_matrix"], run.data.label_names, state.global_step)
    state.epoch, state.batches_done, state.train_loss_sum, state.train_loss_count = epoch + 1, 0, 0.0, 0
    run.checkpoint(best=improved)  # an improving checkpoint names itself the best in its own state file
    if state.stopped_early:
        run.log(f"early stopping: no {exp.train.metric} improvement for {patience} epochs (best epoch {state.best_epoch})")


def scored(run: Run, split: str, desc: str) -> dict:
    """``evaluate``'s keywords for one of the run's splits: its progress name, speakers and dimensions."""
    return {"desc": desc, "speakers": run.speakers, "split": split, "dimensions": run.data.dimension_names}


# ---- finish -------------------------------------------------------------------------------------------------


def finish(run: Run) -> dict:
    """Reload the best checkpoint, test it, export it and write the reports."""
    from .serving.export import export_model

    exp, accelerator, state, data, out = run.exp, run.accelerator, run.state, run.data, run.out
    if state.global_step == 0 and state.nonfinite_steps > 0:
        raise TrainingError(
            f"every one of the run's {state.nonfinite_steps} optimizer steps had a non-finite loss or gradients, so nothing was trained "
            "and no model or metrics are written; lower optim.lr, use bf16 instead of fp16, or check the data report for broken clips"
        )
    if state.best_checkpoint is not None:
        load_checkpoint(accelerator, out / "checkpoints" / state.best_checkpoint)  # the weights; the schedule is done with
    test = evaluate(run.model, run.test_loader, run.criterion, accelerator, data.label_names, **scored(run, "test", "test"))
    state_dict = accelerator.get_state_dict(run.model)  # collective under ZeRO-3: gathers the full weights
    # torch.compile (accelerate launch --dynamo_backend inductor) prefixes every key with "_orig_mod.".
    # Under ZeRO-3 only rank 0 receives the gathered weights (None elsewhere).
    if state_dict is not None:
        state_dict = {key.removeprefix("_orig_mod."): value for key, value in state_dict.items()}
    results = run_results(run, test)
    if accelerator.is_main_process:
        with built_whole(accelerator):  # rank 0 alone: a partitioned (collective) build here would hang
            export_model(
                accelerator.unwrap_model(run.model, keep_torch_compile=False),
                state_dict,
                out / "model",
                exp=exp,
                label_names=data.label_names,
                extra={"test_metrics": results["test"], "data": results["data"], "protocol": results["protocol"]},
            )
        write_training_reports(
            out,
            results,
            test,
            history=state.history,
            label_names=data.label_names,
            test_records=[data.records[i] for i in data.split_indices["test"]],
            timing=run.timing,
        )
    run.trackers.finish(test, data.label_names, state.global_step)  # after the reports: MLflow takes them as artifacts
    accelerator.wait_for_everyone()
    t = results["test"]
    run.log(f"test ({t['num_examples']} clips, best epoch {state.best_epoch}): {score_text(t, test=True)}  -> {out}")
    run.log.close()
    accelerator.end_training()
    run_folder.release(out)
    results["timing"] = run.timing
    if exp.train.push_to_hub and accelerator.is_main_process:  # after everything is written: a failed push leaves the run intact
        from .serving.hub import push_to_hub

        url = push_to_hub(out, exp.hub.repo_id, private=exp.hub.private, revision=exp.hub.revision)
        print(f"pushed {out / 'model'} to {url}", flush=True)
    return results
