"""How a run runs: the accelerator for the launcher it was started by, DeepSpeed's "auto" values and the log
line of the settings it runs with, building a model whole under ZeRO-3, and the checks that every process agrees.

Nothing here knows the training loop; the loop (``ser_dist.trainer``) and ``ser-dist evaluate`` call it.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from pathlib import Path

import torch

from .errors import TrainingError


def make_accelerator(exp, log_with: list | None = None):
    """The run's Accelerator; ``log_with``: its trackers (``ser_dist.tracking.log_with``), none for ``ser-dist evaluate``."""
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
    if _freezes_anything(exp.model) or exp.model.layerdrop > 0:
        from accelerate.utils import DistributedDataParallelKwargs

        # A frozen part gets no gradients (ser_dist.optim.Freezing), nor a layer LayerDrop skipped: DDP must not wait for them.
        handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    precision = None if exp.train.mixed_precision == "auto" else exp.train.mixed_precision
    accelerator = Accelerator(
        mixed_precision=precision,
        gradient_accumulation_steps=exp.train.grad_accum_steps,
        kwargs_handlers=handlers,
        log_with=log_with or None,
        project_dir=exp.train.output_dir if log_with else None,  # Aim's repository; TensorBoard's folder is set in log_with
    )
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


def _freezes_anything(model_cfg) -> bool:
    return model_cfg.freeze_feature_encoder_epochs != 0 or model_cfg.freeze_backbone_epochs != 0


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


def log_deepspeed(accelerator, log) -> None:
    if accelerator.state.deepspeed_plugin is not None:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        log(
            f"DeepSpeed ZeRO-{ds['zero_optimization']['stage']}: micro batch {ds['train_micro_batch_size_per_gpu']}, "
            f"gradient clipping {ds['gradient_clipping']}, bf16 {ds.get('bf16', {}).get('enabled', False)}, fp16 {ds.get('fp16', {}).get('enabled', False)}"
        )
