"""VGGish (Hershey et al., "CNN architectures for large-scale audio classification", ICASSP 2017) for SER.

Front end, as VGGish's: 25 ms windows, 10 ms hop, 512-point FFT magnitude, 64 HTK mel bands from 125
to 7500 Hz, ``log(mel + 0.01)``, cut into non-overlapping patches of 96 frames x 64 bands (0.96 s).
Network, as published: conv3x3 64 - pool - 128 - pool - 256 - 256 - pool - 512 - 512 - pool (ReLU
after each conv, 2x2 max-pools), then fc 4096 - 4096 - 128 (ReLU after each), one 128-D embedding per
patch. The utterance embedding is the mean of its patch embeddings over the valid patches only: a clip
of ``n`` frames has ``max(1, ceil(n / 96))`` patches, its last one completed with the log-mel of
silence (``log 0.01``); patches that exist only because another clip in the batch is longer are left
out of the mean. Then dropout and the classifier (linear, or cosine for AAM).

``model.checkpoint=PATH`` starts from local weights (trained from scratch without it). The file is a
PyTorch state dict (``.pt``/``.pth``/``.bin``, read with ``weights_only=True``) or ``.safetensors``
with torchvggish's key layout, e.g. its AudioSet release ``vggish-10086976.pth``::

    features.{0,3,6,8,11,13}.weight / .bias      the six conv layers (64, 128, 256, 256, 512, 512)
    embeddings.{0,2,4}.weight / .bias            fc 12288->4096, 4096->4096, 4096->128

Keys may carry one ``vggish.`` or ``module.`` prefix; torchvggish's ``pproc.*`` (PCA post-processing)
is not used and ignored. The fc input is flattened in TensorFlow's (height, width, channel) order, as
torchvggish does, so converted TF weights work unchanged. Any missing key or shape mismatch is an
error naming the first offender.

Parameter groups: ``feature_encoder`` = the conv stack, ``encoder`` = the fc layers (both use
``optim.backbone_lr`` when set, and follow ``model.freeze_*_epochs``), ``head`` = the classifier.
``model.cnn_width`` scales the conv channels and ``model.hidden_size`` / ``model.embedding_size``
set the fc sizes (4096 / 128 as published), for tiny test models; a checkpoint needs the published sizes.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torchaudio
from torch import nn

from ..errors import ConfigError
from .base import SERModel, SEROutput, reject_recurrent_options
from .classifier import build_classifier
from .features import make_buffers_non_persistent
from .heads import resolve_head

PATCH_FRAMES = 96
NUM_BANDS = 64
LOG_OFFSET = 0.01
CONV_CHANNELS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


class VGGishLogMel(nn.Module):
    """[B, samples] -> (log-mel [B, frames, 64], valid frames [B]); VGGish's framing (no centring)."""

    def __init__(self, sample_rate: int = 16000):
        super().__init__()
        self.win_length = int(round(0.025 * sample_rate))
        self.hop_length = int(round(0.010 * sample_rate))
        self.n_fft = 1 << (self.win_length - 1).bit_length()  # 512 at 16 kHz; the window is zero-padded to it
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=self.n_fft,
            win_length=self.win_length,
            hop_length=self.hop_length,
            f_min=125.0,
            f_max=7500.0,
            n_mels=NUM_BANDS,
            power=1.0,
            center=False,
            mel_scale="htk",
        )
        make_buffers_non_persistent(self.mel)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            if waveforms.shape[1] < self.n_fft:  # shorter than one frame: one frame of mostly silence
                waveforms = nn.functional.pad(waveforms, (0, self.n_fft - waveforms.shape[1]))
            log_mel = torch.log(self.mel(waveforms.float()) + LOG_OFFSET).transpose(1, 2)  # [B, frames, 64]
            frames = (torch.div(lengths.to(log_mel.device) - self.n_fft, self.hop_length, rounding_mode="floor") + 1).clamp(
                min=1, max=log_mel.shape[1]
            )
            valid = torch.arange(log_mel.shape[1], device=log_mel.device)[None, :] < frames[:, None]
            return log_mel.masked_fill(~valid.unsqueeze(-1), math.log(LOG_OFFSET)), frames


class VGGish(nn.Module):
    """The VGGish network on [N, 1, 96, 64] patches -> [N, embedding_size], with torchvggish's module names."""

    def __init__(self, width: float = 1.0, hidden_size: int = 4096, embedding_size: int = 128):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for item in CONV_CHANNELS:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                channels = max(1, int(round(item * width)))
                layers += [nn.Conv2d(in_channels, channels, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_channels = channels
        self.features = nn.Sequential(*layers)
        flat = in_channels * (PATCH_FRAMES // 16) * (NUM_BANDS // 16)  # four 2x2 pools: 96x64 -> 6x4
        self.embeddings = nn.Sequential(
            nn.Linear(flat, hidden_size),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_size, embedding_size),
            nn.ReLU(inplace=True),
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.features(patches)  # [N, C, 6, 4]
        x = x.permute(0, 2, 3, 1).flatten(1)  # TF's (height, width, channel) flatten order, as torchvggish
        return self.embeddings(x)


def load_vggish_checkpoint(network: VGGish, path: str) -> None:
    """Load torchvggish-layout weights into ``network`` (see the module docstring); errors name the fix."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"model.checkpoint={path}: file not found; give a VGGish state dict (.pt/.pth/.safetensors)")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused, truncated file, not a tensor file
        raise ConfigError(f"model.checkpoint={path}: cannot read it as a state dict ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(state, dict):
        raise ConfigError(f"model.checkpoint={path}: holds a {type(state).__name__}, expected a state dict of tensors")
    for prefix in ("vggish.", "module."):
        if state and all(key.startswith(prefix) or key.startswith("pproc.") for key in state):
            state = {key[len(prefix) :] if key.startswith(prefix) else key: value for key, value in state.items()}
    state = {key: value for key, value in state.items() if not key.startswith("pproc.")}
    expected = network.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        detail = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise ConfigError(
            f"model.checkpoint={path}: keys do not match VGGish's layout ({len(missing)} missing, {len(unexpected)} unexpected; {detail}); "
            "expected torchvggish names features.{0,3,6,8,11,13}.* and embeddings.{0,2,4}.* (see ser_dist/models/vggish.py)"
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"model.checkpoint={path}: {key} has shape {tuple(state[key].shape)}, the model expects {tuple(tensor.shape)}; "
                "a checkpoint needs the published sizes (model.cnn_width=1, model.hidden_size=4096, model.embedding_size=128)"
            )
    network.load_state_dict(state)


class VGGishSER(SERModel):
    """Log-mel patches -> VGGish -> masked mean of patch embeddings -> dropout -> classifier."""

    def __init__(
        self,
        num_classes: int,
        *,
        sample_rate: int = 16000,
        width: float = 1.0,
        hidden_size: int = 4096,
        embedding_size: int = 128,
        dropout: float = 0.3,
        checkpoint: str | None = None,
        classifier: str = "linear",
        classifier_scale: float = 30.0,
    ):
        super().__init__()
        if width <= 0:
            raise ConfigError(f"model.cnn_width={width} must be > 0 (1 is VGGish as published)")
        self.frontend = VGGishLogMel(sample_rate)
        self.vggish = VGGish(width, hidden_size, embedding_size)
        if checkpoint:
            load_vggish_checkpoint(self.vggish, checkpoint)
        self.dropout = nn.Dropout(dropout)
        self.classifier = build_classifier(embedding_size, num_classes, classifier, classifier_scale)

    @property
    def min_input_samples(self) -> int:
        """One (uncentred) STFT frame; the front end zero-pads shorter batches to it."""
        return self.frontend.n_fft

    def forward(self, input_values: torch.Tensor, lengths: torch.Tensor) -> SEROutput:
        log_mel, frames = self.frontend(input_values, lengths)
        batch, total = log_mel.shape[0], log_mel.shape[1]
        num_patches = (total + PATCH_FRAMES - 1) // PATCH_FRAMES  # integer arithmetic on the size: a traced ONNX graph keeps it dynamic
        log_mel = nn.functional.pad(log_mel, (0, 0, 0, num_patches * PATCH_FRAMES - total), value=math.log(LOG_OFFSET))
        patches = log_mel.reshape(batch * num_patches, 1, PATCH_FRAMES, NUM_BANDS)
        patch_embeddings = self.vggish(patches).reshape(batch, num_patches, -1)
        valid_patches = torch.div(frames + PATCH_FRAMES - 1, PATCH_FRAMES, rounding_mode="floor")  # >= 1
        mask = (torch.arange(num_patches, device=frames.device)[None, :] < valid_patches[:, None]).unsqueeze(-1)
        embedding = (patch_embeddings * mask).sum(1) / valid_patches[:, None].to(patch_embeddings.dtype)
        return SEROutput(logits=self.classifier(self.dropout(embedding)), embedding=embedding)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "feature_encoder": list(self.vggish.features.parameters()),
            "encoder": list(self.vggish.embeddings.parameters()),
            "head": list(self.classifier.parameters()),
        }

    def set_frozen(self, feature_encoder: bool, encoder: bool) -> None:
        for module, frozen in ((self.vggish.features, feature_encoder or encoder), (self.vggish.embeddings, encoder)):
            for parameter in module.parameters():
                parameter.requires_grad_(not frozen)


def vggish(model_cfg, num_classes: int, sample_rate: int, classifier: str = "linear", classifier_scale: float = 30.0) -> VGGishSER:
    """VGGish as published (from scratch, or ``model.checkpoint`` weights), mean over 0.96 s patches."""
    resolve_head(model_cfg.head, ("mean",), "VGGish (it averages its 0.96 s patch embeddings)")
    reject_recurrent_options(model_cfg, "vggish")
    return VGGishSER(
        num_classes,
        sample_rate=sample_rate,
        width=model_cfg.cnn_width,
        hidden_size=model_cfg.hidden_size,
        embedding_size=model_cfg.embedding_size,
        dropout=model_cfg.dropout,
        checkpoint=model_cfg.checkpoint,
        classifier=classifier,
        classifier_scale=classifier_scale,
    )
