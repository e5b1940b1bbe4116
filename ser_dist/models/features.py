"""Acoustic front ends computed inside the model, on the model's device, in float32, and SpecAugment on their output."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn


def frame_lengths(num_samples: torch.Tensor, hop_length: int, n_fft: int, context: int = 0) -> torch.Tensor:
    """Frames of a centred STFT (torchaudio's ``center=True``) that depend on a clip's own samples only.

    A frame whose window reaches past the clip's last sample sees the zero padding of a batch (or the
    reflection of an unpadded clip), and ``context`` frames more at the end feed on those through the
    delta windows; leaving them out makes a clip's features the same alone or in any batch.
    """
    full = torch.div(num_samples - n_fft // 2, hop_length, rounding_mode="floor") + 1
    return (full - context).clamp(min=1)


def make_buffers_non_persistent(module: nn.Module) -> None:
    """Keep a fixed front end's buffers (STFT window, mel filterbank, DCT matrix) out of state dicts.

    They are rebuilt from the config, and torchaudio's window is a view into a larger storage, which
    safetensors refuses to save ("None is covering the entire storage").
    """
    for sub in module.modules():
        for name, buffer in list(sub._buffers.items()):
            if buffer is not None:
                sub.register_buffer(name, buffer.contiguous().clone(), persistent=False)


def masked_normalize(features: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance mean/variance normalisation over the valid frames only; padded frames are zeroed.

    ``features`` is [B, T, D]; statistics over padding would shift every clip toward silence.
    """
    mask = (torch.arange(features.shape[1], device=features.device)[None, :] < lengths[:, None]).unsqueeze(-1)
    count = lengths.clamp(min=1).to(features.dtype)[:, None, None]
    mean = (features * mask).sum(1, keepdim=True) / count
    var = (((features - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return ((features - mean) / torch.sqrt(var + eps)) * mask


def compute_deltas(x: torch.Tensor, win_length: int = 5) -> torch.Tensor:
    """``torchaudio.functional.compute_deltas`` (regression deltas over the last axis, edge frames repeated) in
    plain slices and sums: torchaudio's grouped convolution has a kernel count that depends on the batch, which
    an ONNX graph cannot hold (``ser-dist export --format onnx``). Equal to it to float32 rounding."""
    n = (win_length - 1) // 2
    steps = x.shape[-1]
    padded = torch.cat([x[..., :1].expand(*x.shape[:-1], n), x, x[..., -1:].expand(*x.shape[:-1], n)], dim=-1)
    total = sum(k * (padded[..., n + k : n + k + steps] - padded[..., n - k : n - k + steps]) for k in range(1, n + 1))
    return total / (n * (n + 1) * (2 * n + 1) / 3)


FEATURE_NORMS = ("utterance", "global", "speaker")


def valid_frame_mask(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, T, 1] True on each clip's valid frames."""
    return (torch.arange(features.shape[1], device=features.device)[None, :] < lengths[:, None]).unsqueeze(-1)


class GlobalNormalize(nn.Module):
    """Mean/variance normalisation with statistics of the training data (SpeechBrain's
    ``InputNormalization(norm_type="global")``): every valid frame seen in training mode updates exact
    running totals (Chan et al.'s parallel update), eval mode only reads them. The statistics are
    buffers, so they are checkpointed, exported and (under DDP) broadcast from rank 0.

    Per-utterance normalisation removes each clip's mean spectrum and loudness, which carry emotion
    (anger's brighter, louder spectrum); this keeps them, relative to the corpus.
    """

    def __init__(self, size: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("sum_squares", torch.zeros(size, dtype=torch.float64))  # sum of squared deviations

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, speakers: torch.Tensor | None = None) -> torch.Tensor:
        mask = valid_frame_mask(features, lengths)
        if self.training:
            with torch.no_grad():
                valid = features.double()[mask.expand_as(features)].view(-1, features.shape[-1])
                n = float(valid.shape[0])
                if n:
                    batch_mean = valid.mean(0)
                    delta = batch_mean - self.mean
                    total = self.count + n
                    self.sum_squares += ((valid - batch_mean) ** 2).sum(0) + delta**2 * self.count * n / total
                    self.mean += delta * n / total
                    self.count.fill_(total)
        variance = self.sum_squares / self.count.clamp(min=1.0)
        scale = torch.rsqrt(variance + self.eps).to(features.dtype)
        return (features - self.mean.to(features.dtype)) * scale * mask


class SpeakerNormalize(nn.Module):
    """``model.feature_norm=speaker``: each clip's features standardised with its own speaker's mean and
    standard deviation over all of that speaker's valid frames, in every split (Schuller et al.'s speaker
    normalisation). The test speakers' statistics come from their unlabelled audio: a transductive protocol.

    ``fit`` (``ser_dist.speaker_norm``, before the first step) sets the per-speaker rows, which are not saved
    (they are refitted from the data at every start, resume included), and the pooled statistics of the
    training speakers' frames, which are: a clip of no known speaker (``speakers=None``: ``ser-dist predict``,
    an export) is standardised with those, as ``global`` would.
    """

    def __init__(self, size: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("scale", torch.ones(size))
        self.register_buffer("speaker_mean", torch.zeros(0, size), persistent=False)
        self.register_buffer("speaker_scale", torch.ones(0, size), persistent=False)

    def fit(self, moments: torch.Tensor, train_rows: torch.Tensor) -> None:
        """``moments`` [S, 3, D] float64: per speaker, the count, sum and sum of squares of its valid frames
        (``speaker_moments``); ``train_rows``: the training speakers' rows, pooled for the fallback."""

        def mean_scale(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            count = m[..., 0, :].clamp(min=1.0)
            mean = m[..., 1, :] / count
            variance = (m[..., 2, :] / count - mean**2).clamp(min=0.0)
            return mean.float(), torch.rsqrt(variance + self.eps).float()

        device = self.mean.device
        self.speaker_mean, self.speaker_scale = (t.to(device) for t in mean_scale(moments))
        pooled_mean, pooled_scale = mean_scale(moments[train_rows].sum(0))
        self.mean.copy_(pooled_mean)
        self.scale.copy_(pooled_scale)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, speakers: torch.Tensor | None = None) -> torch.Tensor:
        mask = valid_frame_mask(features, lengths)
        if speakers is None:
            mean, scale = self.mean[None, None, :], self.scale[None, None, :]
        else:
            if self.speaker_mean.shape[0] == 0:
                raise RuntimeError("SpeakerNormalize: speakers given before fit() set their statistics")
            mean, scale = self.speaker_mean[speakers][:, None, :], self.speaker_scale[speakers][:, None, :]
        return (features - mean.to(features.dtype)) * scale.to(features.dtype) * mask


class FrontendSpeakerNorm:
    """``speaker_normaliser`` / ``unnormalised_features`` of a model whose ``frontend`` normalises its features."""

    def speaker_normaliser(self):
        norm = self.frontend.global_norm
        return norm if isinstance(norm, SpeakerNormalize) else None

    def unnormalised_features(self, input_values, lengths):
        return self.frontend.raw(input_values, lengths)


def speaker_moments(features: torch.Tensor, lengths: torch.Tensor, speakers: torch.Tensor, num_speakers: int) -> torch.Tensor:
    """[num_speakers, 3, D] float64: count, sum and sum of squares of each speaker's valid frames in this batch."""
    mask = valid_frame_mask(features, lengths).double()
    values = features.double() * mask
    per_clip = torch.stack([mask.expand_as(values).sum(1), values.sum(1), (values**2).sum(1)], dim=1)  # [B, 3, D]
    out = torch.zeros(num_speakers, 3, features.shape[-1], dtype=torch.float64, device=features.device)
    return out.index_add_(0, speakers.to(features.device), per_clip)


def normalizer(norm: str, size: int) -> GlobalNormalize | SpeakerNormalize | None:
    """``model.feature_norm``: None for ``utterance`` (``masked_normalize``), a GlobalNormalize for ``global``,
    a SpeakerNormalize for ``speaker``."""
    if norm not in FEATURE_NORMS:
        from ..errors import ConfigError

        raise ConfigError(f"model.feature_norm={norm!r} is not one of {', '.join(FEATURE_NORMS)}")
    return {"global": GlobalNormalize, "speaker": SpeakerNormalize}[norm](size) if norm != "utterance" else None


def normalise(norm: nn.Module | None, features: torch.Tensor, frames: torch.Tensor, speakers: torch.Tensor | None) -> torch.Tensor:
    """A front end's ``model.feature_norm`` (``normalizer``'s module, or per utterance when None), in float32."""
    with torch.autocast(device_type=features.device.type, enabled=False):
        return masked_normalize(features, frames) if norm is None else norm(features, frames, speakers)


class LogMelFrontend(nn.Module):
    """Log-mel energies, normalised: [B, T] -> ([B, frames, n_mels], valid frames [B]).

    25 ms windows, 10 ms hop, centred STFT (as the MFCC front end), ``n_mels`` bands from 20 Hz to Nyquist,
    ``log(power + 1e-6)``; ``norm`` as MFCCFrontend's. Frames past ``frame_lengths`` are zero.
    """

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64, win_ms: float = 25.0, hop_ms: float = 10.0, norm: str = "utterance"):
        super().__init__()
        self.global_norm = normalizer(norm, n_mels)
        self.hop_length = int(round(sample_rate * hop_ms / 1000))
        win_length = int(round(sample_rate * win_ms / 1000))
        self.n_fft = 1 << (win_length - 1).bit_length()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=self.n_fft,
            win_length=win_length,
            hop_length=self.hop_length,
            n_mels=n_mels,
            f_min=20.0,
            f_max=sample_rate / 2,
        )
        self.output_size = n_mels
        make_buffers_non_persistent(self.mel)

    @property
    def min_input_samples(self) -> int:
        return self.n_fft // 2 + 1  # the centred STFT's reflect padding

    def raw(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The log-mel energies before normalisation, float32, and the valid frames."""
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            if waveforms.shape[1] < self.min_input_samples:
                waveforms = nn.functional.pad(waveforms, (0, self.min_input_samples - waveforms.shape[1]))
            features = torch.log(self.mel(waveforms.float()) + 1e-6).transpose(1, 2)  # [B, T, n_mels]
            return features, frame_lengths(lengths, self.hop_length, self.n_fft).clamp(max=features.shape[1])

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, speakers: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features, frames = self.raw(waveforms, lengths)
        return normalise(self.global_norm, features, frames, speakers), frames


class SpecAugment(nn.Module):
    """SpecAugment's masking (Park et al., 2019) on normalised features [B, T, D], in training mode only.

    Each clip gets its own ``freq_masks`` bands of 0..``freq_mask_width`` features and ``time_masks`` spans
    of 0..``time_mask_ratio`` x its valid frames, placed within its valid frames, set to 0 (the normalised
    mean). torchaudio's FrequencyMasking / TimeMasking know no per-clip lengths, so a short clip in a batch
    of long ones would lose its whole tail; this draws from torch's RNG, so ``train.seed`` reproduces it.
    """

    def __init__(self, freq_masks: int = 0, freq_mask_width: int = 0, time_masks: int = 0, time_mask_ratio: float = 0.0):
        super().__init__()
        self.freq_masks, self.freq_mask_width = int(freq_masks), int(freq_mask_width)
        self.time_masks, self.time_mask_ratio = int(time_masks), float(time_mask_ratio)

    def forward(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        if not self.training or not (self.freq_masks or self.time_masks):
            return features
        batch, num_frames, size = features.shape
        device = features.device
        keep = torch.ones(batch, num_frames, size, dtype=torch.bool, device=device)
        bins = torch.arange(size, device=device)[None, :]
        for _ in range(self.freq_masks):
            width = torch.randint(0, min(self.freq_mask_width, size) + 1, (batch, 1), device=device)
            start = (torch.rand(batch, 1, device=device) * (size - width + 1)).long()
            keep &= ~((bins >= start) & (bins < start + width))[:, None, :]
        steps = torch.arange(num_frames, device=device)[None, :]
        valid = frames.to(device)
        longest = (valid.to(torch.float32) * self.time_mask_ratio).floor().long()
        for _ in range(self.time_masks):
            width = (torch.rand(batch, device=device) * (longest + 1)).long()
            start = (torch.rand(batch, device=device) * (valid - width + 1)).long()
            keep &= ~((steps >= start[:, None]) & (steps < (start + width)[:, None]))[:, :, None]
        return features * keep


def spec_augment(model_cfg) -> SpecAugment:
    """The ``model.spec_augment`` settings as a module (one that changes nothing when they are off)."""
    if not model_cfg.spec_augment:
        return SpecAugment()
    return SpecAugment(model_cfg.freq_masks, model_cfg.freq_mask_width, model_cfg.time_masks, model_cfg.time_mask_ratio)


class MFCCFrontend(nn.Module):
    """MFCC (``n_mfcc``) + delta + delta-delta, normalised: [B, T] -> [B, frames, 3 * n_mfcc].

    25 ms windows, 10 ms hop, 64 mel bands up to 8 kHz (for 16 kHz audio). ``norm``: ``utterance`` (the
    seed's: each clip's own mean and variance) or ``global`` (the training data's, see GlobalNormalize).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mfcc: int = 40,
        n_mels: int = 64,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        norm: str = "utterance",
    ):
        super().__init__()
        self.global_norm = normalizer(norm, 3 * n_mfcc)
        self.hop_length = int(round(sample_rate * hop_ms / 1000))
        win_length = int(round(sample_rate * win_ms / 1000))
        n_fft = 1 << (win_length - 1).bit_length()
        self.n_fft = n_fft
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=sample_rate,
            n_mfcc=n_mfcc,
            melkwargs={
                "n_fft": n_fft,
                "win_length": win_length,
                "hop_length": self.hop_length,
                "n_mels": n_mels,
                "f_min": 20.0,
                "f_max": sample_rate / 2,
            },
        )
        self.output_size = 3 * n_mfcc
        make_buffers_non_persistent(self.mfcc)

    @property
    def min_input_samples(self) -> int:
        """The centred STFT reflect-pads n_fft // 2 samples on each side, which needs a longer input."""
        return self.n_fft // 2 + 1

    def cepstra(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """torchaudio's MFCC ([B, n_mfcc, T]: power mel -> dB, floored ``top_db`` (80) below the peak -> DCT), with each
        clip's floor taken from the peak of its own valid frames. ``torchaudio.transforms.MFCC`` takes one peak over
        the whole [B, n_mels, T] batch, so a quiet clip's features (its bins more than 80 dB below a louder batch
        mate's peak) would change with the clips batched beside it."""
        mel = self.mfcc.MelSpectrogram(waveforms)  # [B, n_mels, T] power
        db = 10.0 * torch.log10(mel.clamp(min=1e-10))
        valid = frame_lengths(lengths, self.hop_length, self.n_fft).clamp(max=db.shape[-1])
        own = torch.arange(db.shape[-1], device=db.device)[None, :] < valid.to(db.device)[:, None]  # [B, T]
        peak = db.masked_fill(~own[:, None, :], float("-inf")).amax(dim=(1, 2), keepdim=True)
        db = torch.maximum(db, peak - self.mfcc.top_db)
        return torch.matmul(db.transpose(-1, -2), self.mfcc.dct_mat).transpose(-1, -2)

    def raw(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MFCC + deltas before normalisation, float32, and the valid frames."""
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            if waveforms.shape[1] < self.min_input_samples:  # as batch padding would: zeros after the clip
                waveforms = nn.functional.pad(waveforms, (0, self.min_input_samples - waveforms.shape[1]))
            mfcc = self.cepstra(waveforms.float(), lengths)  # [B, n_mfcc, T]
            delta = compute_deltas(mfcc)
            delta2 = compute_deltas(delta)
            features = torch.cat([mfcc, delta, delta2], dim=1).transpose(1, 2)  # [B, T, 3 * n_mfcc]
            # Each delta pass looks 2 frames ahead (compute_deltas' win_length=5), two passes: 4 frames.
            return features, frame_lengths(lengths, self.hop_length, self.n_fft, context=4).clamp(max=features.shape[1])

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, speakers: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features, frames = self.raw(waveforms, lengths)
        return normalise(self.global_norm, features, frames, speakers), frames
