"""Self-supervised speech encoders (HuBERT, wav2vec 2.0, WavLM, ...) as SER backbones.

``model.backbone`` is a registry name (``hubert_large`` -> ``facebook/hubert-large-ll60k``), any Hub id,
or a local directory that transformers' Auto classes load; every name goes through :func:`ssl_encoder`.
The registered names (Hub checkpoints and the ``*_tiny_random`` models built from code, for tests and
CPU smoke runs) are the presets of ser_dist.models.ssl_presets.

Input handling follows each checkpoint's feature extractor: ``do_normalize`` (zero mean, unit variance
per utterance, over the valid samples only), and an attention mask only where the checkpoint was
trained with one (``return_attention_mask``; without a feature extractor file: layer-norm feature
encoders take it, group-norm ones such as wav2vec2-base and HuBERT-base get zero padding and no mask).
Pooling always ignores padded frames (``_get_feat_extract_output_lengths``).

Heads (``model.head``): ``mean`` (the transformers ``*ForSequenceClassification`` layout: projector,
mean over valid frames, classifier), ``weighted_layers`` (the same layout with ``use_weighted_layer_sum``:
a softmax-weighted sum of all hidden layers, SUPERB style) and ``attentive_stats`` (attentive statistics
pooling). The first two with a linear classifier export as a stock transformers model that
``transformers.pipeline("audio-classification", model=DIR)`` runs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, UserError, first_line
from ..registry import BACKBONES
from .base import SERModel, SEROutput, reject_recurrent_options
from .classifier import build_classifier
from .heads import AttentiveStatsPooling, frame_mask, masked_mean, resolve_head

STANDARD_HEADS = ("mean", "weighted_layers")
SSL_HEADS = ("mean", "attentive_stats", "weighted_layers")  # the first is what model.head=auto means


def default_feature_extractor(config, sample_rate: int = 16000, return_attention_mask: bool | None = None):
    """For checkpoints without a preprocessor_config.json: the wav2vec2 family is pretrained on 16 kHz audio."""
    from transformers import Wav2Vec2FeatureExtractor

    if return_attention_mask is None:
        return_attention_mask = getattr(config, "feat_extract_norm", "group") == "layer"
    return Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=sample_rate, padding_value=0.0, do_normalize=True, return_attention_mask=return_attention_mask
    )


def zero_mean_unit_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-utterance normalisation over the valid samples only, padding set to 0 (what
    ``Wav2Vec2FeatureExtractor(do_normalize=True)`` does to each clip before padding)."""
    weights = mask.to(x.dtype)
    count = weights.sum(1, keepdim=True).clamp(min=1.0)
    mean = (x * weights).sum(1, keepdim=True) / count
    variance = ((x - mean) ** 2 * weights).sum(1, keepdim=True) / count
    return (x - mean) / torch.sqrt(variance + 1e-7) * weights


class SSLClassifier(SERModel):
    """A transformers speech encoder + a pooling head + a classifier.

    The encoder is registered under its ``base_model_prefix`` (``hubert``, ``wav2vec2``, ``wavlm``), so
    with the standard heads the state dict is exactly the ``*ForSequenceClassification`` one.
    """

    def __init__(
        self,
        encoder,
        feature_extractor,
        num_classes: int,
        *,
        head: str = "mean",
        embedding_size: int = 256,
        dropout: float = 0.1,
        classifier: str = "linear",
        classifier_scale: float = 30.0,
    ):
        super().__init__()
        if not (hasattr(encoder, "feature_extractor") and hasattr(encoder, "_get_feat_extract_output_lengths")):
            raise ConfigError(
                f"model.backbone: {type(encoder).__name__} is not a speech encoder with a CNN feature encoder "
                "(the wav2vec2 / HuBERT / WavLM family); pass one of those"
            )
        self.prefix = encoder.base_model_prefix
        self.add_module(self.prefix, encoder)
        self.feature_extractor = feature_extractor
        self.head = head
        self.classifier_kind = classifier
        self.normalize = bool(getattr(feature_extractor, "do_normalize", True))
        self.use_attention_mask = bool(getattr(feature_extractor, "return_attention_mask", False))
        config = encoder.config
        hidden = config.hidden_size
        if head == "weighted_layers":
            num_layers = config.num_hidden_layers + 1  # transformer layers + the input embeddings
            self.layer_weights = nn.Parameter(torch.ones(num_layers) / num_layers)
        if head == "attentive_stats":
            self.pooling = AttentiveStatsPooling(hidden)
            self.projector = nn.Linear(self.pooling.output_size, embedding_size)
        else:
            self.projector = nn.Linear(hidden, embedding_size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = build_classifier(embedding_size, num_classes, classifier, classifier_scale)

    @property
    def encoder(self):
        return getattr(self, self.prefix)

    @property
    def min_input_samples(self) -> int:
        """The CNN feature encoder's receptive field: the fewest samples that give one frame (400 at the
        published kernels and strides, 10/5, 3/2 x4, 2/2 x2)."""
        config = self.encoder.config
        samples = 1
        for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
            samples = (samples - 1) * stride + kernel
        return samples

    @property
    def padding_changes_output(self) -> bool:
        """Zero padding reaches the encoder's statistics: without an attention mask (wav2vec2-base, HuBERT-base), and
        with one under a group-norm feature encoder (WavLM-base-plus), whose first layer normalises over all samples."""
        return not self.use_attention_mask or getattr(self.encoder.config, "feat_extract_norm", "layer") == "group"

    @property
    def standard_head(self) -> bool:
        """True when the model is exactly a transformers ``*ForSequenceClassification`` (a classifier, or a regressor
        under ``data.targets=dimensional``; not both at once, which a stock pipeline would softmax together)."""
        return self.head in STANDARD_HEADS and self.classifier_kind == "linear" and not getattr(self, "mixed_outputs", False)

    def encode(self, input_values: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's part of ``forward``: (what the head pools, valid frames per clip).

        Time comes first: [B, frames, H], or [B, frames, layers, H] for the ``weighted_layers`` head. With
        the whole backbone frozen this is a fixed function of the clip, so ``model.cache_features=true``
        computes it once per clip (ser_dist.data.feature_cache) and ``forward`` takes it instead of audio.
        """
        minimum = self.min_input_samples
        if input_values.shape[1] < minimum:  # the conv stack needs one full frame: zeros after the clip
            input_values = nn.functional.pad(input_values, (0, minimum - input_values.shape[1]))
        sample_mask = frame_mask(lengths, input_values.shape[1])
        x = zero_mean_unit_var(input_values, sample_mask) if self.normalize else input_values * sample_mask
        # A clip shorter than one frame is heard as the clip plus silence up to it: transformers turns a
        # mask of fewer samples into a frame count <= 0 and indexes the mask with it.
        attention_mask = frame_mask(lengths.clamp(min=minimum), input_values.shape[1]).long() if self.use_attention_mask else None
        weighted = self.head == "weighted_layers"
        outputs = self.encoder(x, attention_mask=attention_mask, output_hidden_states=weighted)
        if weighted:
            hidden = torch.stack(outputs.hidden_states, dim=2)
            # Layer-norm encoders' final norm only feeds last_hidden_state, which the weighted sum (as in
            # transformers) leaves out; a zero-weighted term gives it a (zero) gradient, as DDP needs.
            hidden = hidden + 0.0 * outputs.last_hidden_state.unsqueeze(2)
        else:
            hidden = outputs.last_hidden_state
        frames = self.encoder._get_feat_extract_output_lengths(lengths.clamp(min=minimum)).clamp(1, hidden.shape[1])
        return hidden, frames

    def forward(self, input_values: torch.Tensor, lengths: torch.Tensor) -> SEROutput:
        """``input_values``: waveforms [B, T] with ``lengths`` in samples, or what ``encode`` returns
        (cached features, 3 or 4 dims) with ``lengths`` in frames."""
        hidden, frames = self.encode(input_values, lengths) if input_values.dim() == 2 else (input_values, lengths)
        if self.head == "weighted_layers":
            hidden = (hidden * torch.softmax(self.layer_weights, dim=-1).view(1, 1, -1, 1)).sum(dim=2)
        valid = frame_mask(frames, hidden.shape[1])
        if self.head == "attentive_stats":
            embedding = self.projector(self.pooling(hidden, valid))
        else:
            embedding = masked_mean(self.projector(hidden), valid)
        return SEROutput(logits=self.classifier(self.dropout(embedding)), embedding=embedding)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        feature_encoder = list(self.encoder.feature_extractor.parameters())
        cnn = {id(p) for p in feature_encoder}
        encoder = [p for p in self.encoder.parameters() if id(p) not in cnn]
        head = [p for name, p in self.named_parameters() if not name.startswith(self.prefix + ".")]
        return {"head": head, "encoder": encoder, "feature_encoder": feature_encoder}

    def set_frozen(self, feature_encoder: bool, encoder: bool) -> None:
        groups = self.parameter_groups()
        for name, frozen in (("feature_encoder", feature_encoder), ("encoder", encoder)):
            for p in groups[name]:
                p.requires_grad_(not frozen)
        # transformers' own freeze flag: also skips the input's requires_grad for gradient checkpointing
        self.encoder.feature_extractor._requires_grad = not feature_encoder

    # -- export (ser_dist/serving/export.py calls these) -------------------------------------------------
    def hf_config(self, meta: dict):
        config = copy.deepcopy(self.encoder.config)
        # the classes, then the dimensions (data.targets=dimensional|both: models/dimensional.py), one per output
        names = [*meta["labels"], *meta.get("dimensions", [])]
        config.id2label = dict(enumerate(names))
        config.label2id = {name: i for i, name in enumerate(names)}
        if meta.get("dimensions") and not meta["labels"]:
            config.problem_type = "regression"  # transformers' MSE head: the stock layout of a regressor
        config.classifier_proj_size = self.projector.out_features
        config.use_weighted_layer_sum = self.head == "weighted_layers"
        if self.standard_head:
            config.architectures = [type(self.encoder).__name__.replace("Model", "ForSequenceClassification")]
        else:
            config.architectures = [type(self.encoder).__name__]
        return config

    def export_pretrained(self, directory: Path, state_dict: dict, meta: dict) -> None:
        """A transformers model folder (config.json, model.safetensors, preprocessor_config.json).

        Standard heads: a stock ``*ForSequenceClassification`` (checked by loading the weights strictly).
        Other heads: the same files with ser-dist's full state dict; ``AutoModel.from_pretrained(DIR)``
        still loads the fine-tuned encoder, and ser-dist loads the whole model.
        """
        from safetensors.torch import save_file

        directory = Path(directory)
        config = self.hf_config(meta)
        tensors = {k: v.detach().cpu().float().contiguous() for k, v in state_dict.items()}
        self.feature_extractor.save_pretrained(directory)
        if self.standard_head:
            from transformers import AutoModelForAudioClassification

            stock = AutoModelForAudioClassification.from_config(config)
            stock.load_state_dict(tensors, strict=True)
            stock.save_pretrained(directory)
        else:
            config.save_pretrained(directory)
            save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
        meta["backbone_in_export"] = True  # rebuild from this folder's config.json, not from the Hub
        meta["ssl"] = {"head": self.head, "standard_head": self.standard_head, "model_type": config.model_type}

    def load_export(self, directory: Path, meta: dict) -> None:
        from safetensors.torch import load_file

        directory = Path(directory)
        index = directory / "model.safetensors.index.json"
        files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
        state = {}
        for name in files:
            if not (directory / name).exists():
                raise UserError(f"{directory}: no {name}; the export is incomplete, re-export the model")
            state.update(load_file(str(directory / name)))
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise UserError(
                f"{directory}: weights do not match the model ({len(missing)} missing, {len(unexpected)} unexpected tensors, "
                f"e.g. {(list(missing) + list(unexpected))[0]}); re-export the model"
            )


def _is_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or Path(source).expanduser().exists()


def _load_error(name: str, source: str, err: Exception) -> UserError:
    reason = first_line(err, None)
    if _is_path(source):
        return UserError(
            f"model.backbone={name}: cannot load a transformers speech encoder from {source} ({reason}); "
            "the directory needs config.json (and the weights unless model.pretrained=false), as save_pretrained writes"
        )
    known = ", ".join(sorted(set(BACKBONES.names()) - {"ssl_encoder"}))
    return UserError(
        f"model.backbone={name}: cannot load {source!r} from the Hugging Face Hub ({reason}); without network access, "
        f"download it on a machine that has it (huggingface-cli download {source} --local-dir DIR), copy DIR here and "
        f"pass model.backbone=/path/to/DIR (registered backbones: {known})"
    )


def _hub_unreachable() -> bool:
    """True when the Hub's host does not even resolve (and no proxy is set): then only the local cache can
    serve a Hub id, and asking the network would just retry for half a minute before the same error."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # offline mode is handled by transformers; a proxy may reach what DNS here cannot
    try:
        socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname, 443)
        return False
    except OSError:
        return True


def load_encoder(source: str, model_cfg, sample_rate: int, *, name: str | None = None, config=None, feature_extractor=None):
    """(encoder, feature_extractor) from a Hub id or a directory; random weights when ``config`` is given
    or ``model.pretrained=false``."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    name = name or source
    # Every parameter must get a gradient each step (DDP): no layerdrop, no SpecAugment unless asked.
    overrides = {"layerdrop": model_cfg.layerdrop, "mask_time_prob": model_cfg.mask_time_prob, "mask_feature_prob": 0.0}
    attention = None if model_cfg.attention == "auto" else model_cfg.attention
    if _is_path(source) and not Path(source).expanduser().is_dir():
        raise UserError(
            f"model.backbone={name}: {source} is not a directory; pass a folder written by save_pretrained (config.json + weights) or a Hub id"
        )
    source = str(Path(source).expanduser()) if _is_path(source) else source
    built_from_code = config is not None
    hub = {} if _is_path(source) or built_from_code or not _hub_unreachable() else {"local_files_only": True}
    # Never run code that ships with a checkpoint (a config's auto_map): transformers refuses instead of asking on stdin.
    hub["trust_remote_code"] = False
    try:
        if config is None:
            config = AutoConfig.from_pretrained(source, **hub, **overrides)
        else:
            for key, value in overrides.items():
                setattr(config, key, value)
        if model_cfg.pretrained and not built_from_code:
            encoder = AutoModel.from_pretrained(source, config=config, attn_implementation=attention, **hub)
        else:
            encoder = AutoModel.from_config(config, attn_implementation=attention, trust_remote_code=False)
        if feature_extractor is None:
            try:
                feature_extractor = AutoFeatureExtractor.from_pretrained(source, **hub)
            except OSError:  # some checkpoints ship no preprocessor_config.json
                feature_extractor = default_feature_extractor(config)
    except (OSError, ValueError, KeyError) as err:
        if attention is not None and "attention implementation" in str(err):
            reason = str(err).strip().splitlines()[0]
            raise ConfigError(f"model.attention={attention}: {reason}; use model.attention=auto (or eager)") from None
        raise _load_error(name, source, err) from None
    rate = getattr(feature_extractor, "sampling_rate", sample_rate)
    if rate != sample_rate:
        raise ConfigError(f"model.backbone={name} expects {rate} Hz audio but data.sample_rate={sample_rate}; set data.sample_rate={rate}")
    return encoder, feature_extractor


def ssl_encoder(
    model_cfg,
    num_classes: int,
    sample_rate: int,
    classifier: str = "linear",
    classifier_scale: float = 30.0,
    *,
    source: str | None = None,
    config=None,
    feature_extractor=None,
) -> SSLClassifier:
    """Any transformers speech encoder: ``source`` (default ``model.backbone``) is a Hub id or a local directory."""
    source = source or model_cfg.backbone
    head = resolve_head(model_cfg.head, SSL_HEADS, "SSL encoders")  # before anything is downloaded
    reject_recurrent_options(model_cfg, model_cfg.backbone)
    encoder, feature_extractor = load_encoder(
        source, model_cfg, sample_rate, name=model_cfg.backbone, config=config, feature_extractor=feature_extractor
    )
    return SSLClassifier(
        encoder,
        feature_extractor,
        num_classes,
        head=head,
        embedding_size=model_cfg.embedding_size,
        dropout=model_cfg.dropout,
        classifier=classifier,
        classifier_scale=classifier_scale,
    )
