"""Losses against hand-computed values (plain-Python math, not the code under test), their errors,
and a short training run per loss on a separable toy problem."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ser_dist.config import Loss
from ser_dist.errors import ConfigError
from ser_dist.losses import build_loss, inverse_frequency_weights, uses_cosine_classifier
from ser_dist.models.classifier import CosineClassifier, build_classifier

LOSS_NAMES = ("ce", "label_smoothing", "focal", "aam", "ccc")

# A fixed 4-sample, 3-class example; every class appears, sample 3 is misclassified.
LOGITS = [[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [-0.5, 0.2, 0.8], [1.0, 0.9, 0.0]]
LABELS = [0, 1, 2, 1]


def _softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _nll(row: list[float], label: int) -> float:
    return -math.log(_softmax(row)[label])


def _example() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(LOGITS, requires_grad=True), torch.tensor(LABELS)


def test_cross_entropy_matches_hand_value():
    logits, labels = _example()
    expected = sum(_nll(r, y) for r, y in zip(LOGITS, LABELS)) / len(LABELS)
    assert build_loss(Loss(name="ce"), 3)(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_inverse_frequency_weights_have_mean_one():
    # 1/n = [0.1, 0.2, 0.2], mean 1/6 -> [0.6, 1.2, 1.2]
    assert inverse_frequency_weights([10, 5, 5], 3).tolist() == pytest.approx([0.6, 1.2, 1.2])


def test_weighted_cross_entropy_matches_hand_value():
    logits, labels = _example()
    weights = [0.6, 1.2, 1.2]  # from counts [10, 5, 5]
    numerator = sum(weights[y] * _nll(r, y) for r, y in zip(LOGITS, LABELS))
    expected = numerator / sum(weights[y] for y in LABELS)
    loss = build_loss(Loss(name="ce", class_weights=True), 3, class_counts=[10, 5, 5])
    assert loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["ce", "label_smoothing", "focal", "aam"])
def test_class_weights_reject_empty_class_and_missing_counts(name):
    with pytest.raises(ConfigError, match="class index.*\\[1\\].*no training clips"):
        build_loss(Loss(name=name, class_weights=True), 3, class_counts=[4, 0, 2])
    with pytest.raises(ConfigError, match="class counts"):
        build_loss(Loss(name=name, class_weights=True), 3)
    with pytest.raises(ConfigError, match="2 class counts for 3 classes"):
        build_loss(Loss(name=name, class_weights=True), 3, class_counts=[4, 2])


def test_ccc_rejects_class_weights():
    with pytest.raises(ConfigError, match="loss.class_weights"):
        build_loss(Loss(name="ccc", class_weights=True), 3, class_counts=[1, 1, 1])


def test_label_smoothing_with_class_weights_matches_hand_value():
    logits, labels = _example()
    eps, weights = 0.2, [0.6, 1.2, 1.2]
    per_sample = []
    for row, y in zip(LOGITS, LABELS):
        uniform = sum(_nll(row, c) for c in range(3)) / 3
        per_sample.append((1 - eps) * _nll(row, y) + eps * uniform)
    expected = sum(weights[y] * nll for y, nll in zip(LABELS, per_sample)) / sum(weights[y] for y in LABELS)
    loss = build_loss(Loss(name="label_smoothing", label_smoothing=eps, class_weights=True), 3, class_counts=[10, 5, 5])
    assert loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_rejects_out_of_range():
    with pytest.raises(ConfigError, match="loss.label_smoothing"):
        build_loss(Loss(name="label_smoothing", label_smoothing=1.0), 3)


def test_focal_matches_hand_value():
    logits, labels = _example()
    gamma, alpha = 2.0, [0.25, 0.5, 1.0]
    terms = []
    for row, y in zip(LOGITS, LABELS):
        p = _softmax(row)[y]
        terms.append(-alpha[y] * (1 - p) ** gamma * math.log(p))
    loss = build_loss(Loss(name="focal", gamma=gamma, alpha=alpha), 3)
    assert loss(logits, labels).item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, labels = _example()
    expected = sum(_nll(r, y) for r, y in zip(LOGITS, LABELS)) / len(LABELS)
    assert build_loss(Loss(name="focal", gamma=0.0), 3)(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_focal_alpha_must_have_one_value_per_class():
    with pytest.raises(ConfigError, match="loss.alpha has 2 values but there are 3 classes"):
        build_loss(Loss(name="focal", alpha=[0.5, 0.5]), 3)
    with pytest.raises(ConfigError, match="loss.gamma"):
        build_loss(Loss(name="focal", gamma=-1.0), 3)
    with pytest.raises(ConfigError, match="set only one"):
        build_loss(Loss(name="focal", alpha=[1.0, 1.0, 1.0], class_weights=True), 3, class_counts=[1, 1, 1])


def test_focal_gradient_is_finite_for_confident_samples_and_small_gamma():
    logits = torch.tensor([[60.0, 0.0, 0.0]], requires_grad=True)  # p_target rounds to 1 in float32
    build_loss(Loss(name="focal", gamma=0.5), 3)(logits, torch.tensor([0])).backward()
    assert torch.isfinite(logits.grad).all()


# AAM: cosines chosen by hand; logits are scale * cosine, as the cosine classifier returns.
COSINES = [[0.8, 0.1, -0.3], [0.2, 0.5, 0.4], [-0.6, 0.3, -0.99]]
COS_LABELS = [0, 1, 2]  # the last target has theta = acos(-0.99) ~ 3.0, so theta + 0.5 > pi


def _aam_reference(margin: float, scale: float) -> float:
    total = 0.0
    for row, y in zip(COSINES, COS_LABELS):
        theta = math.acos(row[y])
        if theta + margin <= math.pi:
            target = math.cos(theta + margin)
        else:
            target = row[y] - math.sin(margin) * margin
        logits = [scale * (target if c == y else v) for c, v in enumerate(row)]
        total += _nll(logits, y)
    return total / len(COSINES)


def _cosine_example(scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    return (scale * torch.tensor(COSINES)).requires_grad_(), torch.tensor(COS_LABELS)


def test_aam_with_zero_margin_is_cross_entropy_on_scaled_cosines():
    scale = 10.0
    logits, labels = _cosine_example(scale)
    expected = sum(_nll([scale * v for v in row], y) for row, y in zip(COSINES, COS_LABELS)) / 3
    loss = build_loss(Loss(name="aam", margin=0.0, scale=scale), 3)
    assert loss(logits, labels).item() == pytest.approx(expected, rel=1e-5)


def test_aam_with_margin_matches_hand_value_and_exceeds_cross_entropy():
    scale, margin = 10.0, 0.5
    logits, labels = _cosine_example(scale)
    with_margin = build_loss(Loss(name="aam", margin=margin, scale=scale), 3)(logits, labels).item()
    without = build_loss(Loss(name="aam", margin=0.0, scale=scale), 3)(logits, labels).item()
    assert with_margin == pytest.approx(_aam_reference(margin, scale), rel=1e-4)
    assert with_margin > without


def test_aam_rejects_logits_that_are_not_cosines():
    loss = build_loss(Loss(name="aam", scale=5.0), 3)
    with pytest.raises(ConfigError, match="model.classifier=cosine"):
        loss(torch.tensor([[12.0, 0.0, -1.0]]), torch.tensor([0]))


def test_aam_gradient_is_finite_when_the_embedding_equals_a_class_weight():
    classifier = CosineClassifier(4, 3, scale=30.0)
    features = classifier.weight.detach()[:2].clone()  # cos = 1 exactly for the targets
    loss = build_loss(Loss(name="aam", margin=0.3, scale=30.0), 3)(classifier(features), torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(classifier.weight.grad).all()


def test_aam_rejects_bad_margin():
    with pytest.raises(ConfigError, match="loss.margin"):
        build_loss(Loss(name="aam", margin=-0.1), 3)


def test_ccc_matches_hand_value():
    logits, labels = _example()
    probs = [_softmax(r) for r in LOGITS]
    n, cccs = len(LABELS), []
    for c in range(3):
        p = [row[c] for row in probs]
        y = [1.0 if label == c else 0.0 for label in LABELS]
        mp, my = sum(p) / n, sum(y) / n
        var_p = sum((v - mp) ** 2 for v in p) / n
        var_y = sum((v - my) ** 2 for v in y) / n
        cov = sum((a - mp) * (b - my) for a, b in zip(p, y)) / n
        cccs.append(2 * cov / (var_p + var_y + (mp - my) ** 2))
    expected = 1 - sum(cccs) / 3
    assert build_loss(Loss(name="ccc"), 3)(logits, labels).item() == pytest.approx(expected, rel=1e-5)


def test_ccc_of_a_perfect_prediction_is_zero():
    labels = torch.tensor([0, 1, 2, 1, 0])
    logits = 30.0 * nn.functional.one_hot(labels, 3).float()
    assert build_loss(Loss(name="ccc"), 3)(logits, labels).item() == pytest.approx(0.0, abs=1e-6)


def test_ccc_leaves_classes_absent_from_the_batch_out():
    # Class 2 never appears: CCC is computed over classes 0 and 1 only, so a perfect prediction is 0
    # (a zero CCC for class 2 would make it 1/3).
    labels = torch.tensor([0, 1, 1, 0])
    logits = 30.0 * nn.functional.one_hot(labels, 3).float()
    assert build_loss(Loss(name="ccc"), 3)(logits, labels).item() == pytest.approx(0.0, abs=1e-6)


def test_ccc_with_batch_of_one_falls_back_to_squared_error():
    logits = torch.tensor([[1.0, 0.0, -1.0]], requires_grad=True)
    p = _softmax([1.0, 0.0, -1.0])
    expected = ((p[0] - 1) ** 2 + p[1] ** 2 + p[2] ** 2) / 3
    loss = build_loss(Loss(name="ccc"), 3)(logits, torch.tensor([0]))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert logits.grad[0, 0] < 0  # raising the target logit lowers the loss


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradient_flows_to_every_logit(name):
    scale = 30.0 if name == "aam" else 1.0
    logits = (scale * torch.tensor(COSINES)).requires_grad_()
    loss = build_loss(Loss(name=name), 3)(logits, torch.tensor([0, 1, 1]))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all() and (logits.grad.abs().sum(dim=1) > 0).all()


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_losses_compute_in_float32_under_autocast(name):
    classifier = build_classifier(4, 3, "cosine" if uses_cosine_classifier(Loss(name=name)) else "linear", 30.0)
    features = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    loss_fn = build_loss(Loss(name=name), 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = classifier(features)
        loss = loss_fn(logits, labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    half = loss_fn(logits.detach().to(torch.float16), labels)
    assert half.dtype == torch.float32 and torch.isfinite(half)


def test_build_loss_unknown_name_and_import_path():
    with pytest.raises(ConfigError, match="loss.name='crossentropy'.*known: aam, ccc, ce, focal, label_smoothing"):
        build_loss(Loss(name="crossentropy"), 3)
    focal = build_loss(Loss(name="ser_dist.losses:build_focal", gamma=1.0), 3)
    assert type(focal).__name__ == "FocalLoss" and focal.gamma == 1.0


def test_only_aam_uses_the_cosine_classifier():
    assert [n for n in LOSS_NAMES if uses_cosine_classifier(Loss(name=n))] == ["aam"]


def test_cosine_classifier_returns_scaled_cosines():
    classifier = CosineClassifier(2, 2, scale=10.0)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, -2.0]]))
    logits = classifier(torch.tensor([[1.0, 0.0], [6.0, 8.0]]))
    # cos([1,0],[3,4]) = 0.6, cos([1,0],[0,-2]) = 0; cos([6,8],[3,4]) = 1, cos([6,8],[0,-2]) = -0.8
    assert logits.tolist() == [pytest.approx([6.0, 0.0], abs=1e-5), pytest.approx([10.0, -8.0], abs=1e-5)]


def test_build_classifier_kinds():
    assert isinstance(build_classifier(8, 4, "linear", 30.0), nn.Linear)
    assert isinstance(build_classifier(8, 4, "cosine", 30.0), CosineClassifier)
    with pytest.raises(ConfigError, match="model.classifier='arc'"):
        build_classifier(8, 4, "arc", 30.0)
    with pytest.raises(ConfigError, match="loss.scale"):
        build_classifier(8, 4, "cosine", 0.0)


def _toy_problem(num_classes: int = 4, per_class: int = 24, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian clusters around random directions: separable by a linear and by a cosine classifier."""
    generator = torch.Generator().manual_seed(0)
    centres = nn.functional.normalize(torch.randn(num_classes, dim, generator=generator), dim=1) * 3.0
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    features = centres[labels] + 0.5 * torch.randn(len(labels), dim, generator=generator)
    return features, labels


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_each_loss_trains_a_classifier_above_chance(name):
    torch.manual_seed(0)
    features, labels = _toy_problem()
    cfg = Loss(name=name)
    classifier = build_classifier(features.shape[1], 4, "cosine" if uses_cosine_classifier(cfg) else "linear", cfg.scale)
    loss_fn = build_loss(cfg, 4, class_counts=torch.bincount(labels).tolist())
    optimizer = torch.optim.Adam(classifier.parameters(), lr=0.05)
    losses = []
    for _ in range(50):
        loss = loss_fn(classifier(features), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    accuracy = (classifier(features).argmax(dim=1) == labels).float().mean().item()
    assert losses[-1] < 0.5 * losses[0]
    assert accuracy > 0.9  # chance is 0.25


def _tone_clips(num_per_class: int = 4, seconds: float = 0.5, sample_rate: int = 16000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two classes of clips: a low and a high tone in noise, varied lengths (so padding is exercised)."""
    generator = torch.Generator().manual_seed(0)
    length = int(seconds * sample_rate)
    waves, labels, lengths = torch.zeros(2 * num_per_class, length), [], []
    for index in range(2 * num_per_class):
        label = index % 2
        valid = length - 400 * (index // 2)
        t = torch.arange(valid) / sample_rate
        waves[index, :valid] = 0.5 * torch.sin(2 * math.pi * (220.0 if label == 0 else 1760.0) * t) + 0.05 * torch.randn(
            valid, generator=generator
        )
        labels.append(label)
        lengths.append(valid)
    return waves, torch.tensor(lengths), torch.tensor(labels)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_each_loss_trains_the_tiny_model_to_lower_loss(name):
    """The real path: the tiny LSTM SER model (MFCC front end, cosine classifier for AAM) with each loss."""
    from ser_dist.config import Experiment, Model
    from ser_dist.models import build_model

    torch.manual_seed(0)
    exp = Experiment(model=Model(backbone="lstm", hidden_size=16, embedding_size=16, dropout=0.0), loss=Loss(name=name))
    model = build_model(exp, num_classes=2)
    loss_fn = build_loss(exp.loss, 2, class_counts=[4, 4])
    waves, lengths, labels = _tone_clips()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(25):
        loss = loss_fn(model(waves, lengths).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
