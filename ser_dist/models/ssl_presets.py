"""The registered SSL backbones: ``ssl_encoder`` (ser_dist.models.ssl) on a Hub checkpoint or on a tiny model.

``hubert_large`` and its siblings load the pretrained checkpoint ``HUB_IDS[name]``; the ``*_tiny_random``
ones build a ~35 K-parameter random model of the same family from code (``tiny_config``), for tests and
CPU smoke runs (no download). ser_dist.registry.BACKBONES names each preset here by its module path.
"""

from __future__ import annotations

from .ssl import SSLClassifier, default_feature_extractor, ssl_encoder

HUB_IDS = {
    "hubert_large": "facebook/hubert-large-ll60k",
    "hubert_base": "facebook/hubert-base-ls960",
    "wav2vec2_base": "facebook/wav2vec2-base",
    "wav2vec2_large": "facebook/wav2vec2-large-lv60",
    "wavlm_base_plus": "microsoft/wavlm-base-plus",
    "wavlm_large": "microsoft/wavlm-large",
}


def tiny_config(model_type: str, layer_norm: bool):
    """A 2-layer, hidden-32 encoder with a 16-channel, 7-layer CNN of the real strides (20 ms frames at 16 kHz)."""
    from transformers import CONFIG_MAPPING

    extra = {"num_buckets": 32, "max_bucket_distance": 100} if model_type == "wavlm" else {}
    return CONFIG_MAPPING[model_type](
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer" if layer_norm else "group",
        do_stable_layer_norm=layer_norm,
        **extra,
    )


def hub_preset(name: str):
    """The backbone ``name``: ``ssl_encoder`` on the Hub checkpoint ``HUB_IDS[name]``."""

    def build(model_cfg, num_classes: int, sample_rate: int, classifier: str = "linear", classifier_scale: float = 30.0) -> SSLClassifier:
        return ssl_encoder(model_cfg, num_classes, sample_rate, classifier, classifier_scale, source=HUB_IDS[name])

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"{HUB_IDS[name]} (pretrained unless model.pretrained=false)."
    return build


def tiny_preset(name: str, model_type: str, *, layer_norm: bool, attention_mask: bool):
    """The backbone ``name``: ``ssl_encoder`` on a tiny random ``model_type`` built from code (``tiny_config``)."""

    def build(model_cfg, num_classes: int, sample_rate: int, classifier: str = "linear", classifier_scale: float = 30.0) -> SSLClassifier:
        config = tiny_config(model_type, layer_norm)  # a fresh one: load_encoder sets the run's overrides on it
        extractor = default_feature_extractor(config, return_attention_mask=attention_mask)
        return ssl_encoder(
            model_cfg, num_classes, sample_rate, classifier, classifier_scale, source=name, config=config, feature_extractor=extractor
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"A tiny random {model_type} ({'layer' if layer_norm else 'group'} norm, {'with' if attention_mask else 'no'} attention mask): tests and smoke runs."
    return build


# The presets ser_dist.registry.BACKBONES lists.
hubert_base = hub_preset("hubert_base")
hubert_large = hub_preset("hubert_large")
wav2vec2_base = hub_preset("wav2vec2_base")
wav2vec2_large = hub_preset("wav2vec2_large")
wavlm_base_plus = hub_preset("wavlm_base_plus")
wavlm_large = hub_preset("wavlm_large")
# Each tiny model keeps the semantics of the big sibling it stands in for (named at the end of its line).
hubert_tiny_random = tiny_preset("hubert_tiny_random", "hubert", layer_norm=True, attention_mask=True)  # hubert_large
wav2vec2_tiny_random = tiny_preset("wav2vec2_tiny_random", "wav2vec2", layer_norm=False, attention_mask=False)  # wav2vec2_base
wavlm_tiny_random = tiny_preset("wavlm_tiny_random", "wavlm", layer_norm=False, attention_mask=True)  # wavlm_base_plus
