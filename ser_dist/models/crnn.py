"""A convolutional-recurrent network trained from scratch on log-mel features (the CRNN of modern SER baselines).

Log-mel 64 x 10 ms frames (``features.LogMelFrontend``, ``model.feature_norm``), optional SpecAugment in
training (``model.spec_augment``), then four conv blocks: conv 3x3 -> batch norm -> ReLU -> max-pool
(frequency / 2 in each block, time / 2 in the first two: 40 ms frames) -> dropout, with 16-32-64-64 channels
(x ``model.cnn_width``). Each frame's channels x remaining bands (64 x 4) feed a one-layer BiLSTM
(``model.hidden_size`` per direction), then attentive statistics pooling (``model.head=auto``; or ``mean``,
``last``), a dense ``model.embedding_size`` embedding and the classifier, as the recurrent backbones.

Padding never reaches the prediction: after every block the frames past a clip's valid ones are set to 0,
which is what a clip alone sees (the convolution's zero padding); pooling runs after the ReLU with
``ceil_mode``, so a window half over padding takes the max of the valid frame and a 0 it cannot exceed,
and a clip of ``n`` frames keeps ``ceil(n / 2)``. The BiLSTM is ``recurrent.MaskedLSTM``, the pooling masked.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import SERModel, SEROutput, reject_recurrent_options
from .features import FrontendSpeakerNorm, LogMelFrontend, SpecAugment, spec_augment
from .heads import frame_mask, resolve_head
from .recurrent import LSTMHead, MaskedLSTM

CRNN_HEADS = ("attentive_stats", "mean", "last")  # the first is what model.head=auto means
CONV_CHANNELS = (16, 32, 64, 64)
TIME_POOLED_BLOCKS = 2  # the first blocks also halve the frame rate: 10 ms -> 40 ms
NUM_MELS = 64


class ConvBlock(nn.Module):
    """conv 3x3 -> batch norm -> ReLU -> zero the padded frames -> max-pool (time x ``time_pool``, frequency x 2) -> dropout."""

    def __init__(self, in_channels: int, channels: int, time_pool: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        self.time_pool = time_pool
        self.pool = nn.MaxPool2d(kernel_size=(time_pool, 2), stride=(time_pool, 2), ceil_mode=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` [B, C, T, F] (zero past each clip's ``frames``) -> the same for the pooled output."""
        x = torch.relu(self.norm(self.conv(x)))
        x = x * frame_mask(frames, x.shape[2])[:, None, :, None].to(x.dtype)
        frames = torch.div(frames + self.time_pool - 1, self.time_pool, rounding_mode="floor")  # ceil, as an ONNX graph computes it too
        return self.dropout(self.pool(x)), frames


class CRNNSER(FrontendSpeakerNorm, LSTMHead, SERModel):
    """Log-mel -> SpecAugment (training) -> 4 conv blocks -> BiLSTM -> attentive statistics pooling -> dense -> classifier."""

    def __init__(
        self,
        num_classes: int,
        *,
        sample_rate: int = 16000,
        feature_norm: str = "utterance",
        width: float = 1.0,
        hidden_size: int = 128,
        embedding_size: int = 128,
        dropout: float = 0.3,
        classifier: str = "linear",
        classifier_scale: float = 30.0,
        head: str = "auto",
        augment: SpecAugment | None = None,
    ):
        super().__init__()
        self.head = head = resolve_head(head, CRNN_HEADS, "the crnn backbone")
        self.frontend = LogMelFrontend(sample_rate=sample_rate, n_mels=NUM_MELS, norm=feature_norm)
        self.spec_augment = augment if augment is not None else SpecAugment()
        channels = [max(1, int(round(c * width))) for c in CONV_CHANNELS]
        self.blocks = nn.ModuleList(
            ConvBlock(c_in, c_out, 2 if i < TIME_POOLED_BLOCKS else 1, dropout)
            for i, (c_in, c_out) in enumerate(zip([1, *channels], channels))
        )
        bands = NUM_MELS >> len(CONV_CHANNELS)
        self.lstm = MaskedLSTM(channels[-1] * bands, hidden_size, num_layers=1, bidirectional=True, dropout=0.0)
        self.build_head(self.lstm.output_size, embedding_size, num_classes, dropout, classifier, classifier_scale)

    @property
    def min_input_samples(self) -> int:
        return self.frontend.min_input_samples

    def forward(self, input_values: torch.Tensor, lengths: torch.Tensor, speakers: torch.Tensor | None = None) -> SEROutput:
        features, frames = self.frontend(input_values, lengths, speakers)  # [B, T, 64], zero past frames
        x = self.spec_augment(features, frames).unsqueeze(1)  # [B, 1, T, 64]
        x = x.to(self.blocks[0].conv.weight.dtype)
        for block in self.blocks:
            x, frames = block(x, frames)
        x = x.permute(0, 2, 1, 3).flatten(2)  # [B, T', C * bands]: each frame's channels and remaining bands
        outputs, final = self.lstm(x, frames)
        return self.head_output(outputs, final, frames)


def crnn(model_cfg, num_classes: int, sample_rate: int, classifier: str = "linear", classifier_scale: float = 30.0) -> CRNNSER:
    """The CRNN on 64 log-mel bands: conv 16-32-64-64 (x ``model.cnn_width``) -> BiLSTM ``model.hidden_size`` -> attentive stats."""
    reject_recurrent_options(model_cfg, "crnn")
    return CRNNSER(
        num_classes,
        sample_rate=sample_rate,
        feature_norm=model_cfg.feature_norm,
        width=model_cfg.cnn_width,
        hidden_size=model_cfg.hidden_size,
        embedding_size=model_cfg.embedding_size,
        dropout=model_cfg.dropout,
        classifier=classifier,
        classifier_scale=classifier_scale,
        head=model_cfg.head,
        augment=spec_augment(model_cfg),
    )
