"""Pooling over frames that never sees padding: masked mean and attentive statistics pooling."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


def resolve_head(head: str, allowed: tuple[str, ...], backbone: str) -> str:
    """``model.head`` for a backbone family: ``auto`` is the family's default (``allowed[0]``); a head the
    family cannot take is a ConfigError, raised while the model is built, before any pretrained weights load."""
    if head == "auto":
        return allowed[0]
    if head not in allowed:
        raise ConfigError(f"model.head={head!r} does not apply to {backbone}; use one of: auto, {', '.join(allowed)}")
    return head


def frame_mask(frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """[B, num_frames] bool: True on the first ``frames[b]`` (valid) frames of each row."""
    return torch.arange(num_frames, device=frames.device)[None, :] < frames.to(frames.device)[:, None]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` [B, T, D] over the frames where ``mask`` [B, T] is True (as transformers'
    ``*ForSequenceClassification`` pools when given an attention mask)."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class AttentiveStatsPooling(nn.Module):
    """Attentive statistics pooling (Okabe et al., 2018): frame weights from a small attention MLP,
    softmax over the valid frames only, then the weighted mean and standard deviation, concatenated."""

    def __init__(self, input_size: int, attention_size: int = 128):
        super().__init__()
        self.attention = nn.Sequential(nn.Linear(input_size, attention_size), nn.Tanh(), nn.Linear(attention_size, 1))
        self.output_size = 2 * input_size

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.attention(x).squeeze(-1).float()
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)
        xf = x.float()
        mean = (weights * xf).sum(1)
        variance = (weights * (xf - mean.unsqueeze(1)) ** 2).sum(1)
        return torch.cat([mean, variance.clamp(min=1e-6).sqrt()], dim=-1).to(x.dtype)
