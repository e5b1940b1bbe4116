"""A training run's data: the corpus prepared and reported once, the clips of each split, and their loaders.

``prepare_and_report_data`` decodes and splits the corpus and writes the run's inputs (config.yaml,
split.csv, data_report.json); ``split_clips`` and ``cached_features`` give the clips each split trains or
is scored on (decoded audio, or a frozen encoder's output); ``build_loaders`` batches them: the training
loader (duration-budget batches, whole optimizer steps on every process, online augmentation) and the
validation and test loaders. The training loop (``ser_dist.trainer``) calls these in its set-up.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from . import config as config_module
from .data.augment import augmented_training_data
from .data.dataset import AudioClips, collate_waveforms, default_cache_dir
from .data.pipeline import first_problems, prepare_data, summary_line, write_report
from .data.sampler import TrainBatchSampler
from .errors import TrainingError
from .scoring import eval_loader


@dataclass
class Loaders:
    """The training batch sampler, the generator its loader's workers are seeded from, and the three loaders."""

    sampler: TrainBatchSampler
    generator: torch.Generator
    train: DataLoader
    val: DataLoader
    test: DataLoader


def prepare_run_data(exp):
    """The data a training run of ``exp`` uses, decoded (up to 4 processes) and split; ``ser-dist prepare``
    calls it too, so the run afterwards finds this cache entry and this split."""
    return prepare_data(exp.data, exp.train.seed, num_proc=max(1, min(4, os.cpu_count() or 1)))


def check_validation_split(data) -> None:
    """Training needs validation clips: choosing the best epoch on the test split would leak it."""
    if not data.split_indices["val"]:
        raise TrainingError(
            "the validation split is empty, and choosing the best epoch on the test split would leak it; set data.val_fraction > 0"
        )


def prepare_and_report_data(exp, accelerator, log):
    """Decode and split the corpus (the main process first: it fills the cache), then save the config, the
    split and the data report, and log what was used, skipped and set aside."""
    out = Path(exp.train.output_dir)
    with accelerator.main_process_first():
        data = prepare_run_data(exp)
    if accelerator.is_main_process:
        config_module.save(exp, out / "config.yaml")
        from .data.split_file import write_split

        write_split(data.records, data.split_indices, out / "split.csv")
        write_report(data.report, out / "data_report.json")
    log(summary_line(data.report))
    for warning in data.report.get("warnings", []):
        log(f"data: warning: {warning}")
    if data.report["skipped_files"] or data.report["set_aside_files"]:
        log(f"data: not used: {first_problems(data.report)} (all listed in {out / 'data_report.json'})")
    check_validation_split(data)
    return data


def split_clips(data) -> tuple[dict[str, AudioClips], dict[str, list[float]]]:
    """The clips of each split (train, val, test) and their durations in seconds."""
    label2id = {name: i for i, name in enumerate(data.label_names)}
    clips = {name: AudioClips(data.dataset.select(idx), label2id) for name, idx in data.split_indices.items()}
    durations = {name: data.durations(name) for name in data.split_indices}
    return clips, durations


def cached_features(model, clips: dict, exp, accelerator, log) -> dict:
    """``model.cache_features``: the encoder, frozen for good, runs once per clip; the head trains on its output.

    A fixed extractor's features (openSMILE) also go to disk under the decode cache (``data.cache_dir``), so later
    runs and folds read them back; the main process computes them first, the others read its files. A model
    that standardises its inputs (``fit_standardisation``) gets the statistics of the training split only."""
    from .data.feature_cache import cache_encoder_features, check_cacheable, feature_store, freeze_encoder_for_good

    check_cacheable(model, exp.model)
    freeze_encoder_for_good(model)
    store = feature_store(model, exp.data.cache_dir or default_cache_dir())
    device = accelerator.device
    with accelerator.main_process_first() if store is not None else contextlib.nullcontext():
        clips = {name: cache_encoder_features(model.to(device), c, device, store) for name, c in clips.items()}
    total = sum(len(c) for c in clips.values())
    stored = f" ({sum(c.from_store for c in clips.values())} of them read back from {store.folder})" if store is not None else ""
    log(f"features: cached the frozen encoder's output for {total} clips{stored}")
    if hasattr(model, "fit_standardisation"):
        train = clips["train"]
        model.fit_standardisation(torch.cat([train[i]["waveform"] for i in range(len(train))]).to(device))
        log(f"features: standardised with the mean and standard deviation of the {len(train)} training clips alone")
    return clips


def build_loaders(exp, accelerator, clips: dict, durations: dict, log) -> Loaders:
    """This process's training loader and the validation and test loaders (not yet prepared by Accelerate)."""
    sampler = TrainBatchSampler(
        durations["train"],
        batch_size=exp.train.batch_size,
        batch_seconds=exp.data.batch_seconds,
        seed=exp.train.seed,
        num_replicas=accelerator.num_processes,
        rank=accelerator.process_index,
        steps_multiple=exp.train.grad_accum_steps,
    )
    check_batches_per_step(exp, sampler, durations["train"], accelerator.num_processes, log)
    # The loader draws its workers' seed from its own generator (re-seeded each epoch), not from the
    # global RNG: a run resumed mid-epoch then continues the global RNG (dropout) exactly where it stopped.
    loader_generator = torch.Generator()
    # data.augment: training clips only, augmented in the loader's workers, seeded per (seed, epoch, clip)
    train_clips, train_batches = augmented_training_data(clips["train"], sampler, exp.data, exp.train.seed)
    train_loader = DataLoader(
        train_clips,
        batch_sampler=train_batches,
        collate_fn=collate_waveforms,
        num_workers=exp.data.num_workers,
        pin_memory=accelerator.device.type == "cuda",
        persistent_workers=exp.data.num_workers > 0,
        generator=loader_generator,
    )
    val_loader = eval_loader(clips["val"], durations["val"], exp.train.batch_size)
    test_loader = eval_loader(clips["test"], durations["test"], exp.train.batch_size)
    return Loaders(sampler=sampler, generator=loader_generator, train=train_loader, val=val_loader, test=test_loader)


def check_batches_per_step(exp, sampler, train_durations: list[float], num_processes: int, log) -> None:
    """An optimizer step takes ``grad_accum_steps`` batches on every process: more than an epoch has would
    repeat each clip many times over. Filling the last step repeats a few batches, which the log says."""
    natural = len(
        TrainBatchSampler(
            train_durations, batch_size=exp.train.batch_size, batch_seconds=exp.data.batch_seconds, seed=exp.train.seed
        ).global_batches()
    )
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
