"""Optimizer, schedulers and freezing.

Every parameter is in the optimizer from step 0, in named groups (``head``, ``encoder``,
``feature_encoder``, each split into decayed and non-decayed tensors): DeepSpeed ZeRO builds its
optimizer only from the parameters that require grad at start (DeepSpeed #1767), so a part left out
there would silently never train after its unfreeze.

Freezing is one mechanism on any number of processes (``Freezing``): while a part is frozen its
parameters stop requiring grad, so they get no gradient, enter no clipping norm and no optimizer state
(AdamW skips a parameter without a gradient); its groups' lr is also held at 0, which under ZeRO (whose
flat partitions see zeros for it) keeps decoupled weight decay from moving it. When the part unfreezes,
its groups' optimizer state is dropped, so it starts from a fresh state exactly as on one process.
DDP is told to expect parameters without gradients whenever the recipe freezes anything
(``find_unused_parameters``, in the trainer's accelerator set-up).
"""

from __future__ import annotations

import math

import torch


def build_optimizer(model, optim) -> torch.optim.Optimizer:
    groups = []
    for part, params in model.parameter_groups().items():
        lr = optim.lr if part == "head" or optim.backbone_lr is None else optim.backbone_lr
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]  # biases and norm scales are not decayed
        for suffix, tensors, weight_decay in (("", decay, optim.weight_decay), ("_no_decay", no_decay, 0.0)):
            if tensors:
                groups.append({"params": tensors, "lr": lr, "weight_decay": weight_decay, "name": part + suffix, "part": part})
    if optim.name == "adamw":
        return torch.optim.AdamW(groups, lr=optim.lr)
    if optim.name == "adam":
        return torch.optim.Adam(groups, lr=optim.lr)
    return torch.optim.SGD(groups, lr=optim.lr, momentum=0.9)


class Schedule:
    """Per-step warmup schedules (``linear_warmup``, ``cosine_warmup``) or per-epoch ReduceLROnPlateau."""

    def __init__(self, optimizer, optim, total_steps: int, maximize: bool):
        self.kind = optim.scheduler
        self.scheduler = None
        if self.kind == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max" if maximize else "min", factor=optim.plateau_factor, patience=optim.plateau_patience
            )
        elif self.kind in ("linear_warmup", "cosine_warmup"):
            warmup = int(round(optim.warmup_ratio * total_steps))
            cosine = self.kind == "cosine_warmup"

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / max(1, warmup)
                progress = (step - warmup) / max(1, total_steps - warmup)
                return max(0.0, 0.5 * (1 + math.cos(math.pi * progress))) if cosine else max(0.0, 1.0 - progress)

            self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def after_optimizer_step(self) -> None:
        if self.kind in ("linear_warmup", "cosine_warmup"):
            self.scheduler.step()

    def after_validation(self, metric: float) -> None:
        if self.kind == "plateau":
            self.scheduler.step(metric)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)


def frozen_parts(model_cfg, epoch: int) -> set[str]:
    """Parts frozen during ``epoch`` (0-based): a pure function of the epoch, so every rank agrees."""
    frozen = set()
    if model_cfg.freeze_backbone_epochs == -1 or epoch < model_cfg.freeze_backbone_epochs:
        frozen |= {"encoder", "feature_encoder"}
    if model_cfg.freeze_feature_encoder_epochs == -1 or epoch < model_cfg.freeze_feature_encoder_epochs:
        frozen.add("feature_encoder")
    return frozen


def apply_frozen_lrs(optimizer, frozen: set[str]) -> None:
    """Hold frozen groups at lr 0, keeping the scheduled lr to restore at unfreeze.

    Call at every epoch start and after every scheduler step (a LambdaLR step rewrites every group's lr).
    """
    for group in optimizer.param_groups:
        if group.get("part") in frozen:
            if group["lr"] != 0.0:
                group["lr_when_unfrozen"] = group["lr"]
                group["lr"] = 0.0
        elif group.get("lr_when_unfrozen") is not None:
            if group["lr"] == 0.0:
                group["lr"] = group["lr_when_unfrozen"]
            group["lr_when_unfrozen"] = None


def reset_optimizer_state(optimizer, parts: set[str]) -> None:
    """Drop the optimizer state of the groups of ``parts``; the optimizer re-creates it at the next step.

    ``param_groups``/``state`` are the torch optimizer's, also under ZeRO (where a group's ``params`` is its
    flat fp32 partition), so this is the same call on any number of processes.
    """
    for group in optimizer.param_groups:
        if group.get("part") in parts:
            for param in group["params"]:
                optimizer.state.pop(param, None)


class Freezing:
    """Which parts are frozen in an epoch, applied the same way on one process, DDP and ZeRO."""

    def __init__(self, model_cfg, model, optimizer):
        self.model_cfg, self.model, self.optimizer = model_cfg, model, optimizer

    def start_epoch(self, epoch: int, from_batch: int = 0) -> set[str]:
        """Freeze and unfreeze for ``epoch`` (0-based). A part unfrozen at this epoch's start loses its
        optimizer state; a run resumed in the middle of the epoch (``from_batch`` > 0) has that already."""
        frozen = frozen_parts(self.model_cfg, epoch)
        before = frozen_parts(self.model_cfg, epoch - 1) if epoch > 0 else frozen
        self.model.set_frozen("feature_encoder" in frozen, "encoder" in frozen)
        apply_frozen_lrs(self.optimizer, frozen)
        if from_batch == 0:
            reset_optimizer_state(self.optimizer, before - frozen)
        return frozen

    def after_step(self, frozen: set[str]) -> None:
        apply_frozen_lrs(self.optimizer, frozen)  # a LambdaLR step rewrites every group's lr
