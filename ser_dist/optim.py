"""Optimizer, schedulers and freezing through learning rates.

Every parameter is in the optimizer from step 0, in named groups (``head``, ``encoder``,
``feature_encoder``, each split into decayed and non-decayed tensors). A frozen part is a group whose
lr is held at 0 (AdamW's update and decoupled weight decay both scale with lr, so the weights do not
move). This works the same under DDP, where a parameter that gets no gradient breaks the gradient
reduction, and under DeepSpeed ZeRO, which builds its optimizer only from the parameters that require
grad at start (DeepSpeed #1767): a later unfreeze there would silently train nothing.
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
