"""Classification losses for the comparative study: CE, label smoothing, focal, AAM-softmax, CCC and the SVM's hinge;
and the dimensional losses (``data.targets=dimensional|both``: 1 - CCC over the batch, or MSE, per dimension),
which ``TargetLoss`` combines with the categorical one.

Every loss is an ``nn.Module`` with ``forward(logits [B, C], labels [B] long) -> scalar`` (a mean
over the batch) and is listed in ``ser_dist.registry.LOSSES`` under its config name with a
builder ``fn(cfg: Loss, num_classes, class_counts) -> nn.Module``; ``loss.name`` may also be an
import path ``package.module:builder``. All losses compute in float32, also under autocast, since
softmax/log in fp16 and bf16 lose the small probabilities these losses are made of.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import Loss
from .errors import ConfigError
from .registry import LOSSES


def build_loss(cfg: Loss, num_classes: int, class_counts: Sequence[int] | None = None) -> nn.Module:
    """Look ``cfg.name`` up in ``LOSSES`` and build it. ``class_counts``: clips per class in the
    training split, in label order (needed for ``loss.class_weights=true``)."""
    try:
        builder = LOSSES.get(cfg.name)
    except KeyError as err:
        raise ConfigError(f"loss.name={cfg.name!r}: {err.args[0]}") from None
    return builder(cfg, num_classes, list(class_counts) if class_counts is not None else None)


def uses_cosine_classifier(cfg: Loss) -> bool:
    """Whether the loss expects ``scale * cos(theta)`` logits (``model.classifier=auto`` picks cosine)."""
    return cfg.name == "aam"


def inverse_frequency_weights(class_counts: Sequence[int] | None, num_classes: int) -> torch.Tensor:
    """``w_c = (1 / n_c) / mean_k(1 / n_k)``: rare classes weigh more, and the mean weight is 1 so
    the loss keeps the scale of the unweighted one."""
    if class_counts is None:
        raise ConfigError("loss.class_weights=true needs the training split's class counts; pass class_counts to build_loss")
    if len(class_counts) != num_classes:
        raise ConfigError(f"loss.class_weights=true: got {len(class_counts)} class counts for {num_classes} classes")
    empty = [c for c, n in enumerate(class_counts) if n <= 0]
    if empty:
        raise ConfigError(
            f"loss.class_weights=true: class index(es) {empty} have no training clips, so no inverse-frequency weight; "
            "drop them with data.labels=... or set loss.class_weights=false"
        )
    inverse = torch.tensor([1.0 / n for n in class_counts], dtype=torch.float32)
    return inverse / inverse.mean()


def _weighted_mean(per_sample: torch.Tensor, labels: torch.Tensor, class_weight: torch.Tensor | None) -> torch.Tensor:
    """Plain mean, or ``sum_i w_{y_i} l_i / sum_i w_{y_i}`` (PyTorch's convention for weighted CE)."""
    if class_weight is None:
        return per_sample.mean()
    sample_weight = class_weight.to(per_sample.device)[labels]
    return (sample_weight * per_sample).sum() / sample_weight.sum()


class CrossEntropyLoss(nn.Module):
    """Cross-entropy, optionally with label smoothing ``eps`` and class weights ``w``.

    Per sample: ``(1 - eps) * -log p_y + eps * mean_c(-log p_c)``; the batch loss is the
    ``w_y``-weighted mean of it (the class weight scales the whole smoothed term of the sample).
    """

    def __init__(self, label_smoothing: float = 0.0, class_weight: torch.Tensor | None = None):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"loss.label_smoothing={label_smoothing} must be in [0, 1)")
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("class_weight", class_weight, persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        per_sample = F.cross_entropy(logits.float(), labels, reduction="none", label_smoothing=self.label_smoothing)
        return _weighted_mean(per_sample, labels, self.class_weight)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): ``-alpha_y * (1 - p_y)^gamma * log p_y``, mean over the batch.

    ``gamma = 0`` and no ``alpha`` is cross-entropy. ``alpha`` (one weight per class) multiplies the
    per-sample terms; the mean is a plain mean over samples, as in the paper.
    """

    def __init__(self, gamma: float = 2.0, alpha: torch.Tensor | None = None):
        super().__init__()
        if gamma < 0:
            raise ConfigError(f"loss.gamma={gamma} must be >= 0")
        self.gamma = float(gamma)
        self.register_buffer("alpha", alpha, persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_p_target = F.log_softmax(logits.float(), dim=-1).gather(1, labels[:, None]).squeeze(1)
        # 1 - p from expm1 is exact for confident samples; the floor keeps the gradient of
        # (1 - p)^gamma finite for gamma < 1 when p rounds to 1.
        one_minus_p = (-torch.expm1(log_p_target)).clamp(min=1e-6)
        per_sample = -(one_minus_p**self.gamma) * log_p_target
        if self.alpha is not None:
            per_sample = per_sample * self.alpha.to(per_sample.device)[labels]
        return per_sample.mean()


class AdditiveAngularMarginLoss(nn.Module):
    """AAM-softmax (ArcFace, Deng et al., 2019) on logits ``scale * cos(theta)`` from a cosine classifier.

    The target class's cosine becomes ``cos(theta + m)``; past ``theta + m > pi`` (where
    ``cos(theta + m)`` would start increasing again) it is ``cos(theta) - m * sin(m)`` instead, the
    usual threshold that keeps the target logit monotonic in ``theta``. All logits are then multiplied
    by ``scale`` and fed to (optionally class-weighted) cross-entropy. The margin exists only here:
    predictions use the classifier's cosine logits as they are.
    """

    def __init__(self, margin: float = 0.2, scale: float = 30.0, class_weight: torch.Tensor | None = None):
        super().__init__()
        if not 0.0 <= margin < math.pi / 2:
            raise ConfigError(f"loss.margin={margin} must be in [0, pi/2) radians (ArcFace uses 0.2-0.5)")
        if scale <= 0:
            raise ConfigError(f"loss.scale={scale} must be > 0")
        self.margin = float(margin)
        self.scale = float(scale)
        self.cos_m = math.cos(margin)
        self.sin_m = math.sin(margin)
        self.threshold = math.cos(math.pi - margin)  # cos(theta) below this means theta + m > pi
        self.fallback_offset = math.sin(math.pi - margin) * margin
        self.register_buffer("class_weight", class_weight, persistent=False)
        self._checked_logit_range = False

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if not self._checked_logit_range and logits.numel():
            # Once only (it syncs with the device): a linear classifier's logits are not cosines,
            # and clamping them into [-1, 1] would train on nonsense without complaint.
            if logits.detach().abs().amax().item() > self.scale * (1 + 1e-3):
                raise ConfigError(
                    f"loss.name=aam expects cosine logits in [-loss.scale, loss.scale] = [-{self.scale:g}, {self.scale:g}]; "
                    "set model.classifier=cosine (or auto)"
                )
            self._checked_logit_range = True
        cosine = (logits / self.scale).clamp(-1.0, 1.0)
        target_cos = cosine.gather(1, labels[:, None])
        # cos(theta + m) = cos cos_m - sin sin_m, with sin from the identity (no acos); the floor
        # keeps d sqrt / d x finite at cos = +-1.
        target_sin = (1.0 - target_cos * target_cos).clamp(min=1e-6).sqrt()
        with_margin = target_cos * self.cos_m - target_sin * self.sin_m
        with_margin = torch.where(target_cos > self.threshold, with_margin, target_cos - self.fallback_offset)
        margin_logits = self.scale * cosine.scatter(1, labels[:, None], with_margin)
        per_sample = F.cross_entropy(margin_logits, labels, reduction="none")
        return _weighted_mean(per_sample, labels, self.class_weight)


class ConcordanceLoss(nn.Module):
    """CCC loss adapted to classification: ``1 - mean_c CCC_c`` between softmax outputs and one-hot labels.

    With ``p = softmax(logits)`` and ``y = one_hot(labels)`` (both ``[B, C]``), for each class ``c``
    over the batch, with population statistics::

        CCC_c = 2 cov(p_c, y_c) / (var(p_c) + var(y_c) + (mean(p_c) - mean(y_c))^2 + eps)

    and ``loss = 1 - mean_c CCC_c`` (0 for a perfect prediction, up to 2).

    A class whose one-hot column is constant in the batch (absent from it, or every sample's label)
    has ``var(y_c) = cov = 0`` whatever ``p`` is: its CCC is 0 even for a perfect prediction and
    gives no gradient, so it is left out of the mean. If no class is left (a batch of size 1, or of
    a single class) the loss falls back to ``mean((p - y)^2)``, the numerator of ``1 - CCC`` (also 0
    for a perfect prediction), so such a batch still trains the model in the same direction.
    Absent classes are still pushed down through the softmax of the present ones.
    """

    def __init__(self, num_classes: int, eps: float = 1e-8):
        super().__init__()
        self.num_classes = num_classes
        self.eps = eps

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        probs = F.softmax(logits.float(), dim=-1)
        target = F.one_hot(labels, self.num_classes).to(probs.dtype)
        mean_p, mean_y = probs.mean(0), target.mean(0)
        var_p = ((probs - mean_p) ** 2).mean(0)
        var_y = ((target - mean_y) ** 2).mean(0)
        cov = ((probs - mean_p) * (target - mean_y)).mean(0)
        ccc = 2 * cov / (var_p + var_y + (mean_p - mean_y) ** 2 + self.eps)
        defined = var_y > 0  # the one-hot column varies within the batch
        # A sum over a mask, not indexing by it, so the loss never depends on the device's answer.
        count = defined.sum()
        ccc_loss = 1.0 - (ccc * defined).sum() / count.clamp(min=1)
        fallback = ((probs - target) ** 2).mean()
        return torch.where(count > 0, ccc_loss, fallback)


class MulticlassHingeLoss(nn.Module):
    """The multi-class hinge loss of a linear SVM (Weston and Watkins, 1999), as ``torch.nn.MultiMarginLoss``
    computes it: per sample, ``sum_{k != y} max(0, 1 - (s_y - s_k)) / K`` over the K classes' scores ``s``.

    Every class that comes within the margin (1) of the target's score adds to the loss, not only the
    strongest rival (Crammer and Singer's max). With a linear classifier and L2 on its weights (``optim.weight_decay``
    with ``optim.name=adam`` or ``sgd``, which add ``weight_decay * W`` to the gradient: a penalty
    ``weight_decay / 2 * ||W||^2``; biases are not decayed) the mean over N training clips plus that penalty is
    ``weight_decay`` times the soft-margin SVM objective ``1/2 ||W||^2 + C * sum_i sum_{k != y_i} hinge_ik`` with
    ``C = 1 / (weight_decay * N * K)``: the same minimum. The batch loss is the mean over samples, or the
    ``w_y``-weighted mean with class weights (as for cross-entropy). The scores are the logits as they are:
    predictions are their argmax, and ``ser-dist predict``'s probabilities a softmax of them (a ranking of the
    classes, not calibrated probabilities).
    """

    def __init__(self, class_weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("class_weight", class_weight, persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        per_sample = F.multi_margin_loss(logits.float(), labels, p=1, margin=1.0, reduction="none")
        return _weighted_mean(per_sample, labels, self.class_weight)


def _per_class_weights(values: Sequence[float] | None, key: str, num_classes: int) -> torch.Tensor | None:
    if values is None:
        return None
    if len(values) != num_classes:
        raise ConfigError(f"{key} has {len(values)} values but there are {num_classes} classes; give one weight per class, in label order")
    if any(v < 0 for v in values):
        raise ConfigError(f"{key}={list(values)}: weights must be >= 0")
    return torch.tensor([float(v) for v in values], dtype=torch.float32)


def build_cross_entropy(cfg: Loss, num_classes: int, class_counts: list[int] | None = None) -> CrossEntropyLoss:
    weight = inverse_frequency_weights(class_counts, num_classes) if cfg.class_weights else None
    return CrossEntropyLoss(label_smoothing=0.0, class_weight=weight)


def build_label_smoothing(cfg: Loss, num_classes: int, class_counts: list[int] | None = None) -> CrossEntropyLoss:
    weight = inverse_frequency_weights(class_counts, num_classes) if cfg.class_weights else None
    return CrossEntropyLoss(label_smoothing=cfg.label_smoothing, class_weight=weight)


def build_focal(cfg: Loss, num_classes: int, class_counts: list[int] | None = None) -> FocalLoss:
    """``loss.alpha`` gives per-class weights; ``loss.class_weights=true`` uses inverse frequencies as alpha."""
    if cfg.alpha is not None and cfg.class_weights:
        raise ConfigError("loss.alpha and loss.class_weights=true both weight the classes of the focal loss; set only one")
    alpha = _per_class_weights(cfg.alpha, "loss.alpha", num_classes)
    if cfg.class_weights:
        alpha = inverse_frequency_weights(class_counts, num_classes)
    return FocalLoss(gamma=cfg.gamma, alpha=alpha)


def build_additive_angular_margin(cfg: Loss, num_classes: int, class_counts: list[int] | None = None) -> AdditiveAngularMarginLoss:
    weight = inverse_frequency_weights(class_counts, num_classes) if cfg.class_weights else None
    return AdditiveAngularMarginLoss(margin=cfg.margin, scale=cfg.scale, class_weight=weight)


def build_multiclass_hinge(cfg: Loss, num_classes: int, class_counts: list[int] | None = None) -> MulticlassHingeLoss:
    weight = inverse_frequency_weights(class_counts, num_classes) if cfg.class_weights else None
    return MulticlassHingeLoss(class_weight=weight)


def build_concordance(cfg: Loss, num_classes: int, class_counts: list[int] | None = None) -> ConcordanceLoss:
    if cfg.class_weights:
        # The CCC is averaged over classes, so every class already counts the same.
        raise ConfigError(
            "loss.class_weights=true is not supported by loss.name=ccc (it weighs classes equally already); set loss.class_weights=false"
        )
    return ConcordanceLoss(num_classes)


# --- dimensional emotion (data.targets=dimensional|both) -----------------------------------------------


def concordance_correlation(predictions: torch.Tensor, targets: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Lin's (1989) concordance correlation coefficient of each column [K] over the rows [N, K], in float32:
    ``2 cov(p, y) / (var(p) + var(y) + (mean(p) - mean(y))^2 + eps)`` with population moments. 1 is perfect
    agreement; a shift or a change of scale lowers it (Pearson's r would not notice); a constant prediction gives 0."""
    p, y = predictions.float(), targets.float()
    mean_p, mean_y = p.mean(0), y.mean(0)
    cov = ((p - mean_p) * (y - mean_y)).mean(0)
    return 2 * cov / (((p - mean_p) ** 2).mean(0) + ((y - mean_y) ** 2).mean(0) + (mean_p - mean_y) ** 2 + eps)


class DimensionalConcordanceLoss(nn.Module):
    """``loss.dimension_loss=ccc``: the mean over dimensions of ``1 - CCC``, the CCC computed over the batch (the
    objective of the MSP-Podcast / AVEC dimensional challenges; 0 for perfect agreement, up to 2).

    The CCC is a statistic of a set of clips, so a batch's loss depends on the batch: small batches estimate the
    means and variances poorly (a batch of 1 has no variance, so its loss is 1 and gives no gradient), and the
    model is pulled toward each batch's own spread. Batches of 16-64 clips are usual; validation and test score the
    whole split at once (the CCC over all its clips, which the metrics report too)."""

    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (1.0 - concordance_correlation(predictions, targets)).mean()


class DimensionalSquaredErrorLoss(nn.Module):
    """``loss.dimension_loss=mse``: the mean squared error over clips and dimensions (per clip: no batch effect)."""

    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(predictions.float(), targets.float())


class TargetLoss(nn.Module):
    """A run's objective on the model's ``SEROutput``, for every ``data.targets``: the categorical loss on ``logits``
    (``categorical``), the dimensional loss on ``dimensions`` (``dimensional``: ratings [B, K] as targets), or under
    ``both`` their weighted sum ``categorical + dimension_weight * dimensional``. With categorical targets only it is
    the categorical loss itself, called as ever (``loss(logits, labels)``)."""

    def __init__(self, categorical: nn.Module | None, dimensional: nn.Module | None = None, dimension_weight: float = 1.0):
        super().__init__()
        self.categorical, self.dimensional, self.dimension_weight = categorical, dimensional, float(dimension_weight)

    def forward(self, output, labels: torch.Tensor, dimensions: torch.Tensor | None = None) -> torch.Tensor:
        if self.dimensional is None:
            return self.categorical(output.logits, labels)
        loss = self.dimensional(output.dimensions, dimensions)
        if self.categorical is None:
            return loss
        return self.categorical(output.logits, labels) + self.dimension_weight * loss


def objective_loss(criterion: nn.Module, output, labels: torch.Tensor, dimensions: torch.Tensor | None = None) -> torch.Tensor:
    """``criterion`` on a model's ``SEROutput``: a ``TargetLoss`` takes it whole, a plain categorical loss its logits."""
    if isinstance(criterion, TargetLoss):
        return criterion(output, labels, dimensions)
    return criterion(output.logits, labels)


DIMENSION_LOSSES = {"ccc": DimensionalConcordanceLoss, "mse": DimensionalSquaredErrorLoss}


def build_objective(cfg: Loss, targets: str, categorical: nn.Module | None) -> TargetLoss:
    """The run's ``TargetLoss`` for ``data.targets``: ``categorical`` (the classes' loss, ``build_loss``; None under
    ``dimensional``) and ``loss.dimension_loss`` for the dimensions (unless ``categorical``), weighted by
    ``loss.dimension_weight``."""
    if targets == "categorical":
        return TargetLoss(categorical)
    if cfg.dimension_loss not in DIMENSION_LOSSES:
        raise ConfigError(f"loss.dimension_loss={cfg.dimension_loss!r} is not one of {', '.join(DIMENSION_LOSSES)}")
    return TargetLoss(categorical if targets == "both" else None, DIMENSION_LOSSES[cfg.dimension_loss](), cfg.dimension_weight)


__all__ = [
    "AdditiveAngularMarginLoss",
    "ConcordanceLoss",
    "CrossEntropyLoss",
    "DimensionalConcordanceLoss",
    "DimensionalSquaredErrorLoss",
    "FocalLoss",
    "MulticlassHingeLoss",
    "TargetLoss",
    "build_loss",
    "build_objective",
    "objective_loss",
    "concordance_correlation",
    "inverse_frequency_weights",
    "uses_cosine_classifier",
]
