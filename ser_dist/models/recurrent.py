"""Recurrent backbones on MFCC + delta + delta-delta features (the seeds' BiLSTM and the study's LSTM)."""

from __future__ import annotations

import torch
from torch import nn

from .base import SERModel, SEROutput
from .classifier import build_classifier
from .features import FrontendSpeakerNorm, MFCCFrontend, SpecAugment, spec_augment
from .heads import AttentiveStatsPooling, frame_mask, masked_mean, resolve_head

RECURRENT_HEADS = ("last", "mean", "attentive_stats")  # the first is what model.head=auto means


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's first ``lengths[b]`` frames of ``x`` [B, T, D]; padding stays at the end."""
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    valid = lengths.to(x.device)[:, None]
    index = torch.where(steps < valid, valid - 1 - steps, steps)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class MaskedLSTM(nn.Module):
    """Stacked (bi)directional LSTM layers over zero-padded batches, exactly as packed sequences would run.

    Padding always follows the valid frames: the forward direction reads the batch as is, the backward
    direction reads each sequence reversed in place (``reverse_padded``), and an LSTM is causal, so no
    valid output ever depends on a padded frame. This gives what ``pack_padded_sequence`` gives, but
    packed sequences run their backward pass step by step with shrinking batches, about 14x slower on
    CPU. Dropout is applied between layers, as ``nn.LSTM(dropout=...)`` does.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool, dropout: float):
        super().__init__()
        self.bidirectional = bidirectional
        self.output_size = hidden_size * (2 if bidirectional else 1)
        sizes = [input_size] + [self.output_size] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.backward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes) if bidirectional else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (outputs [B, T, output_size], final state [B, output_size]: the forward direction at
        the last valid frame, concatenated with the backward direction after reading back to frame 0)."""
        x = x.to(self.forward_layers[0].weight_ih_l0.dtype)  # float32 features into bf16/fp16 weights (DeepSpeed casts the model)
        last = (lengths.to(x.device) - 1).clamp(min=0)
        rows = torch.arange(x.shape[0], device=x.device)
        for i, forward_layer in enumerate(self.forward_layers):
            if i:
                x = self.dropout(x)
            out, _ = forward_layer(x)
            final = out[rows, last]
            if self.bidirectional:
                reversed_out, _ = self.backward_layers[i](reverse_padded(x, lengths))
                final = torch.cat([final, reversed_out[rows, last]], dim=-1)
                out = torch.cat([out, reverse_padded(reversed_out, lengths)], dim=-1)
            x = out
        return x, final


def average_frames(features: torch.Tensor, frames: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each ``stride`` consecutive frames of ``features`` [B, T, D] averaged into one (T -> ceil(T / stride)),
    over the valid frames only: a clip of ``frames[b]`` valid frames keeps ``ceil(frames[b] / stride)``, and
    its last one averages just the valid frames it covers, so padding never enters."""
    if stride == 1:
        return features, frames
    batch, num_frames, size = features.shape
    pooled_frames = (num_frames + stride - 1) // stride
    pad = pooled_frames * stride - num_frames
    valid = frame_mask(frames, num_frames).to(features.dtype).unsqueeze(-1)
    summed = nn.functional.pad(features * valid, (0, 0, 0, pad)).view(batch, pooled_frames, stride, size).sum(2)
    counts = nn.functional.pad(valid, (0, 0, 0, pad)).view(batch, pooled_frames, stride, 1).sum(2)
    # ceil of frames >= 0 with a floor division of non-negative values: an ONNX graph's Div truncates, so -(-a // b) would not export
    return summed / counts.clamp(min=1.0), torch.div(frames + stride - 1, stride, rounding_mode="floor")


class LSTMHead:
    """The utterance head after a masked LSTM, for ``RecurrentSER`` and the CRNN (``models/crnn.py``): the
    final states (``head=last``), or the mean / attentive statistics of the outputs over the valid frames,
    then dropout -> dense ``embedding_size`` (ReLU) -> dropout -> classifier. Its modules keep the attribute
    names (``pooling``, ``dropout``, ``dense``, ``classifier``) that exported weights are stored under."""

    def build_head(self, input_size: int, embedding_size: int, num_classes: int, dropout: float, classifier: str, classifier_scale: float):
        self.dropout = nn.Dropout(dropout)
        self.pooling = AttentiveStatsPooling(input_size) if self.head == "attentive_stats" else None
        pooled_size = self.pooling.output_size if self.pooling is not None else input_size
        self.dense = nn.Sequential(nn.Linear(pooled_size, embedding_size), nn.ReLU())
        self.classifier = build_classifier(embedding_size, num_classes, classifier, classifier_scale)

    def head_output(self, outputs: torch.Tensor, final: torch.Tensor, frames: torch.Tensor) -> SEROutput:
        """``outputs`` [B, T, H] and ``final`` [B, H] of ``MaskedLSTM`` over clips of ``frames`` valid frames."""
        pooled = final
        if self.head != "last":
            valid = frame_mask(frames, outputs.shape[1])
            pooled = self.pooling(outputs, valid) if self.pooling is not None else masked_mean(outputs, valid)
        embedding = self.dense(self.dropout(pooled))
        return SEROutput(logits=self.classifier(self.dropout(embedding)), embedding=embedding)


class RecurrentSER(FrontendSpeakerNorm, LSTMHead, SERModel):
    """MFCC front end -> stacked (Bi)LSTM layers -> dense embedding -> classifier.

    The seed's BiLSTM: Bi-LSTM 256 x 2 layers -> Bi-LSTM 256 -> dense 128 -> classes, dropout 0.3.
    The utterance vector (``head``) is the last layer's final state of each direction over the valid
    frames (``last``, the seed's Keras ``return_sequences=False``; see :class:`MaskedLSTM`), the mean of
    its outputs over the valid frames (``mean``), or attentive statistics pooling of them
    (``attentive_stats``: weighted mean and standard deviation, as in x-vector/ECAPA models). Padded
    frames never enter any of them. ``frame_stride`` > 1 averages that many consecutive 10 ms MFCC frames
    before the LSTM (:func:`average_frames`): the recurrence runs that many times fewer steps.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        sample_rate: int = 16000,
        n_mfcc: int = 40,
        feature_norm: str = "utterance",
        hidden_size: int = 256,
        num_layers: int = 3,
        bidirectional: bool = True,
        embedding_size: int = 128,
        dropout: float = 0.3,
        classifier: str = "linear",
        classifier_scale: float = 30.0,
        head: str = "auto",
        frame_stride: int = 1,
        augment: SpecAugment | None = None,
    ):
        super().__init__()
        self.frame_stride = int(frame_stride)
        self.head = head = resolve_head(head, RECURRENT_HEADS, "(Bi)LSTM backbones")
        self.frontend = MFCCFrontend(sample_rate=sample_rate, n_mfcc=n_mfcc, norm=feature_norm)
        self.spec_augment = augment if augment is not None else SpecAugment()  # model.spec_augment, training mode only
        # The seed's stacks (an LSTM of 2 layers, then one of 1) are one stack of 3 layers with dropout between each.
        self.lstm = MaskedLSTM(self.frontend.output_size, hidden_size, num_layers, bidirectional, dropout)
        self.build_head(self.lstm.output_size, embedding_size, num_classes, dropout, classifier, classifier_scale)

    @property
    def min_input_samples(self) -> int:
        return self.frontend.min_input_samples

    def forward(self, input_values: torch.Tensor, lengths: torch.Tensor, speakers: torch.Tensor | None = None) -> SEROutput:
        features, frames = self.frontend(input_values, lengths, speakers)
        features, frames = average_frames(self.spec_augment(features, frames), frames, self.frame_stride)
        outputs, final = self.lstm(features, frames)
        return self.head_output(outputs, final, frames)


def _recurrent(
    model_cfg, num_classes: int, sample_rate: int, classifier: str, classifier_scale: float, num_layers: int, bidirectional: bool
) -> RecurrentSER:
    """``num_layers`` is the backbone's own depth; ``model.num_layers`` overrides it."""
    return RecurrentSER(
        num_classes,
        sample_rate=sample_rate,
        n_mfcc=model_cfg.n_mfcc,
        feature_norm=model_cfg.feature_norm,
        hidden_size=model_cfg.hidden_size,
        embedding_size=model_cfg.embedding_size,
        dropout=model_cfg.dropout,
        classifier=classifier,
        classifier_scale=classifier_scale,
        head=model_cfg.head,
        num_layers=model_cfg.num_layers if model_cfg.num_layers is not None else num_layers,
        bidirectional=bidirectional,
        frame_stride=model_cfg.frame_stride,
        augment=spec_augment(model_cfg),
    )


def bilstm(model_cfg, num_classes: int, sample_rate: int, classifier: str = "linear", classifier_scale: float = 30.0) -> RecurrentSER:
    """The seed's BiLSTM: Bi-LSTM(256) x 2 layers -> Bi-LSTM(256) -> dense(128)."""
    return _recurrent(model_cfg, num_classes, sample_rate, classifier, classifier_scale, num_layers=2 + 1, bidirectional=True)


def lstm(model_cfg, num_classes: int, sample_rate: int, classifier: str = "linear", classifier_scale: float = 30.0) -> RecurrentSER:
    """The study's unidirectional LSTM: LSTM(256) x 2 layers -> dense(128)."""
    return _recurrent(model_cfg, num_classes, sample_rate, classifier, classifier_scale, num_layers=2, bidirectional=False)
