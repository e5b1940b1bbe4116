"""openSMILE functionals + a linear model or a small MLP: the field's standard classical SER baseline.

``model.smile_set``: ``egemaps`` (eGeMAPSv02, the extended Geneva Minimalistic Acoustic Parameter Set, 88
functionals) or ``compare`` (ComParE_2016, 6,373), computed by the ``opensmile`` package (audEERING's
openSMILE binary and configurations, ``pip install 'ser-dist[opensmile]'``; research and education use only,
see the README) from the decoded waveform at the data sample rate, one vector per clip.

The extractor has no parameters. Training runs it once per clip through the feature cache
(``model.cache_features=true``: ``data/feature_cache.py``, on disk under the decode cache, so every fold of a
cross-validation and every later run reads it back), then :meth:`OpenSmileSER.fit_standardisation` sets the
standardisation from the training split's features alone, before the first step. Its mean and standard
deviation are buffers: checkpointed, exported with the weights, and applied to every clip afterwards, as
scikit-learn's ``StandardScaler`` fitted on the training set would be. The head is a linear layer (logistic
regression with ``loss.name=ce``, a linear SVM with ``svm``; L2 through ``optim.weight_decay``) or, with
``model.mlp_layers=N``, N hidden layers of ``model.hidden_size`` (ReLU, ``model.dropout``) before it.

``forward`` takes waveforms [B, T] (prediction, evaluation: openSMILE runs on each clip's valid samples) or
the cached features [B, 1, D]. openSMILE gives NaN for a clip shorter than its 60 ms analysis window, so
shorter clips are zero-padded to it (``min_input_samples``); a functional that is still NaN or infinite is set
to the training mean (0 after standardisation).
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from ..config_checks import missing_package
from ..errors import ConfigError, UserError
from .base import SERModel, SEROutput, reject_recurrent_options
from .classifier import build_classifier
from .features import SpeakerNormalize

# model.smile_set -> (opensmile.FeatureSet name, number of functionals)
SMILE_SETS = {"egemaps": ("eGeMAPSv02", 88), "compare": ("ComParE_2016", 6373)}
# Bump when what the cached files hold changes meaning (the extractor's input or output), so old files are not reused.
FEATURE_FORMAT = 1


class OpenSmileFunctionals:
    """One clip's functionals, [D] float32, from float waveform samples at ``sample_rate``. Not a module: no
    parameters and no state; the ``opensmile.Smile`` object is built on first use."""

    def __init__(self, smile_set: str, sample_rate: int):
        if smile_set not in SMILE_SETS:
            raise ConfigError(f"model.smile_set={smile_set!r} is not one of {', '.join(SMILE_SETS)}")
        try:
            import opensmile
        except ImportError:
            raise UserError(missing_package("opensmile") or "the opensmile package does not import; reinstall it") from None
        self.feature_set, self.size = SMILE_SETS[smile_set]
        self.sample_rate = int(sample_rate)
        self.version = str(opensmile.__version__)
        self._smile = None

    @property
    def cache_id(self) -> str:
        """What the features depend on, as a folder name: the package version, the set, the rate."""
        name = f"opensmile-{self.version}-{self.feature_set}-functionals-{self.sample_rate}hz-v{FEATURE_FORMAT}"
        return re.sub(r"[^A-Za-z0-9._-]", "_", name)

    @property
    def min_samples(self) -> int:
        """openSMILE's longest analysis window (60 ms, eGeMAPS's pitch frames): fewer samples give NaN."""
        return -(-self.sample_rate * 3 // 50)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        import opensmile

        if self._smile is None:
            self._smile = opensmile.Smile(
                feature_set=getattr(opensmile.FeatureSet, self.feature_set), feature_level=opensmile.FeatureLevel.Functionals
            )
        if samples.shape[0] < self.min_samples:  # as batch padding would: zeros after the clip
            samples = np.pad(samples, (0, self.min_samples - samples.shape[0]))
        # openSMILE reads 16-bit samples (it multiplies by 32768 and truncates): give it the clip's own int16
        # values exactly (the decode cache's, and a decoded file's rounded the same way), so a file scored by
        # ser-dist predict gets the functionals its cached copy got in training.
        pcm = np.clip(np.rint(samples.astype(np.float64) * 32767.0), -32768, 32767)
        values = self._smile((pcm / 32768.0).astype(np.float32)[None], self.sample_rate)  # [channels, D, frames]
        return np.asarray(values, dtype=np.float32).reshape(-1)[: self.size]


class OpenSmileSER(SERModel):
    """Functionals -> standardisation (training statistics) -> [hidden layers] -> classifier."""

    def __init__(
        self,
        num_classes: int,
        *,
        smile_set: str = "egemaps",
        sample_rate: int = 16000,
        mlp_layers: int = 0,
        hidden_size: int = 256,
        dropout: float = 0.3,
        classifier: str = "linear",
        classifier_scale: float = 30.0,
        feature_norm: str = "global",
    ):
        super().__init__()
        self.extractor = OpenSmileFunctionals(smile_set, sample_rate)
        size = self.extractor.size
        # Identity until fit_standardisation: persistent, so the export carries the training statistics.
        self.register_buffer("feature_mean", torch.zeros(size))
        self.register_buffer("feature_std", torch.ones(size))
        # model.feature_norm=speaker: each speaker's own statistics instead (ser_dist.speaker_norm fits them)
        self.speaker_norm = SpeakerNormalize(size) if feature_norm == "speaker" else None
        layers: list[nn.Module] = []
        for index in range(mlp_layers):
            layers += [nn.Linear(size if index == 0 else hidden_size, hidden_size), nn.ReLU(), nn.Dropout(dropout)]
        self.hidden = nn.Sequential(*layers)
        self.classifier = build_classifier(hidden_size if mlp_layers else size, num_classes, classifier, classifier_scale)

    @property
    def feature_cache_id(self) -> str:
        """The feature cache keeps this extractor's output on disk under this name (``data/feature_cache.py``)."""
        return self.extractor.cache_id

    @property
    def min_input_samples(self) -> int:
        return self.extractor.min_samples

    @torch.no_grad()
    def encode(self, input_values: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(functionals [B, 1, D] on the input's device, one "frame" per clip), from each clip's valid samples."""
        waveforms = input_values.detach().float().cpu().numpy()
        rows = [self.extractor(waveforms[b, : max(1, int(n))]) for b, n in enumerate(lengths.tolist())]
        features = torch.from_numpy(np.stack(rows)).to(input_values.device)[:, None, :]
        return features, torch.ones(len(rows), dtype=torch.long, device=input_values.device)

    @torch.no_grad()
    def fit_standardisation(self, features: torch.Tensor) -> None:
        """Mean and (population) standard deviation of ``features`` [N, D], the training clips' functionals
        only; a constant functional keeps scale 1 (it standardises to 0), NaNs are left out of the statistics."""
        values = features.reshape(-1, features.shape[-1]).double()
        valid = torch.isfinite(values)
        count = valid.sum(0).clamp(min=1)
        mean = torch.where(valid, values, 0.0).sum(0) / count
        variance = torch.where(valid, (values - mean) ** 2, 0.0).sum(0) / count
        std = variance.sqrt()
        std = torch.where(std > 1e-8 * mean.abs().clamp(min=1.0), std, torch.ones_like(std))
        self.feature_mean.copy_(mean.to(self.feature_mean.dtype))
        self.feature_std.copy_(std.to(self.feature_std.dtype))

    def speaker_normaliser(self) -> SpeakerNormalize | None:
        return self.speaker_norm

    def unnormalised_features(self, input_values: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The functionals [B, 1, D] (non-finite ones as 0) and one valid "frame" per clip."""
        features = self.encode(input_values, lengths)[0] if input_values.dim() == 2 else input_values
        ones = torch.ones(features.shape[0], dtype=torch.long, device=features.device)
        return torch.nan_to_num(features.float(), nan=0.0, posinf=0.0, neginf=0.0), ones

    def forward(self, input_values: torch.Tensor, lengths: torch.Tensor, speakers: torch.Tensor | None = None) -> SEROutput:
        """``input_values``: waveforms [B, T] with ``lengths`` in samples, or the cached features [B, 1, D];
        ``speakers``: rows of the speaker normalisation (``model.feature_norm=speaker``; None: pooled statistics)."""
        features = self.encode(input_values, lengths)[0] if input_values.dim() == 2 else input_values
        if self.speaker_norm is not None:
            ones = torch.ones(features.shape[0], dtype=torch.long, device=features.device)
            standardised = self.speaker_norm(features.float(), ones, speakers)[:, 0, :]
        else:
            standardised = (features[:, 0, :].float() - self.feature_mean.float()) / self.feature_std.float()
        standardised = torch.nan_to_num(standardised, nan=0.0, posinf=0.0, neginf=0.0)
        embedding = self.hidden(standardised.to(self.classifier.weight.dtype))
        return SEROutput(logits=self.classifier(embedding), embedding=embedding)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Everything trainable is the head; the extractor (the "encoder" the feature cache freezes) has no parameters."""
        return {"feature_encoder": [], "encoder": [], "head": list(self.parameters())}


def opensmile(model_cfg, num_classes: int, sample_rate: int, classifier: str = "linear", classifier_scale: float = 30.0) -> OpenSmileSER:
    """openSMILE functionals (``model.smile_set``) -> standardisation -> ``model.mlp_layers`` hidden layers -> classifier."""
    if model_cfg.head != "auto":
        raise ConfigError(
            f"model.head={model_cfg.head!r} does not apply to opensmile (its functionals already summarise the clip); leave it at auto"
        )
    reject_recurrent_options(model_cfg, "opensmile")
    return OpenSmileSER(
        num_classes,
        smile_set=model_cfg.smile_set,
        sample_rate=sample_rate,
        mlp_layers=model_cfg.mlp_layers,
        hidden_size=model_cfg.hidden_size,
        dropout=model_cfg.dropout,
        classifier=classifier,
        classifier_scale=classifier_scale,
        feature_norm=model_cfg.feature_norm,
    )
