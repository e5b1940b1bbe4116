"""Recurrent backbones on MFCC + delta + delta-delta features (the seeds' BiLSTM and the study's LSTM)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..registry import BACKBONES
from .base import SERModel, SEROutput
from .classifier import build_classifier
from .features import MFCCFrontend


class RecurrentSER(SERModel):
    """MFCC front end -> stacked (Bi)LSTMs on packed sequences -> dense embedding -> classifier.

    The seed's BiLSTM: Bi-LSTM 256 x 2 layers -> Bi-LSTM 256 -> dense 128 -> classes, dropout 0.3.
    The utterance vector is the last layer's final hidden state of each direction, read from packed
    sequences, so padded frames never enter it.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        sample_rate: int = 16000,
        n_mfcc: int = 40,
        hidden_size: int = 256,
        layer_sizes: tuple[int, ...] = (2, 1),
        bidirectional: bool = True,
        embedding_size: int = 128,
        dropout: float = 0.3,
        classifier: str = "linear",
        classifier_scale: float = 30.0,
    ):
        super().__init__()
        self.frontend = MFCCFrontend(sample_rate=sample_rate, n_mfcc=n_mfcc)
        directions = 2 if bidirectional else 1
        self.lstms = nn.ModuleList()
        input_size = self.frontend.output_size
        for num_layers in layer_sizes:
            self.lstms.append(
                nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True, bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
            )
            input_size = hidden_size * directions
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Sequential(nn.Linear(input_size, embedding_size), nn.ReLU())
        self.classifier = build_classifier(embedding_size, num_classes, classifier, classifier_scale)

    def forward(self, input_values: torch.Tensor, lengths: torch.Tensor) -> SEROutput:
        features, frames = self.frontend(input_values, lengths)
        hidden = features
        for i, lstm in enumerate(self.lstms):
            packed = pack_padded_sequence(hidden, frames.cpu(), batch_first=True, enforce_sorted=False)
            output, (h_n, _) = lstm(packed)
            if i + 1 < len(self.lstms):
                hidden, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=features.shape[1])
                hidden = self.dropout(hidden)
        directions = 2 if lstm.bidirectional else 1
        # h_n: [layers * directions, B, H]; the last layer's forward (and backward) final states.
        last = h_n[-directions:].transpose(0, 1).reshape(h_n.shape[1], -1)
        embedding = self.dense(self.dropout(last))
        return SEROutput(logits=self.classifier(self.dropout(embedding)), embedding=embedding)


@BACKBONES.register("bilstm")
def bilstm(model_cfg, num_classes: int, sample_rate: int, classifier: str = "linear", classifier_scale: float = 30.0) -> RecurrentSER:
    """The seed's BiLSTM: Bi-LSTM(256) x 2 layers -> Bi-LSTM(256) -> dense(128)."""
    return RecurrentSER(
        num_classes,
        sample_rate=sample_rate,
        n_mfcc=model_cfg.n_mfcc,
        hidden_size=model_cfg.hidden_size,
        layer_sizes=(2, 1),
        bidirectional=True,
        embedding_size=model_cfg.embedding_size,
        dropout=model_cfg.dropout,
        classifier=classifier,
        classifier_scale=classifier_scale,
    )


@BACKBONES.register("lstm")
def lstm(model_cfg, num_classes: int, sample_rate: int, classifier: str = "linear", classifier_scale: float = 30.0) -> RecurrentSER:
    """The study's unidirectional LSTM: LSTM(256) x 2 layers -> dense(128)."""
    return RecurrentSER(
        num_classes,
        sample_rate=sample_rate,
        n_mfcc=model_cfg.n_mfcc,
        hidden_size=model_cfg.hidden_size,
        layer_sizes=(2,),
        bidirectional=False,
        embedding_size=model_cfg.embedding_size,
        dropout=model_cfg.dropout,
        classifier=classifier,
        classifier_scale=classifier_scale,
    )
