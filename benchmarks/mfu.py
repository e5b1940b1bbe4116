"""Training throughput and model FLOPs utilisation (MFU) of a wav2vec2-family encoder on IEMOCAP-shaped batches.

    python benchmarks/mfu.py --size hubert_large --device cuda                 # bf16, H100/H200/A100 peak looked up
    python benchmarks/mfu.py --size wav2vec2_base --device cuda --batch-seconds 120
    python benchmarks/mfu.py --size tiny --device cpu --steps 3 --peak-tflops 1   # smoke run (what the tests run)

A randomly initialised encoder of the named size (HuBERT-large: 24 x 1024, layer-norm CNN, attention mask;
wav2vec2-base: 12 x 768, group-norm CNN, no mask; built from code, so nothing is downloaded) with
ser-dist's mean-pooling head trains with AdamW on random audio whose clip durations are drawn from IEMOCAP's
(``../shared/data/durations/iemocap.csv``, or a log-normal with its mean 4.55 s and sd 3.23 s), batched as
ser-dist batches them (``TrainBatchSampler``: duration buckets with a budget of ``--batch-seconds`` of padded
audio per batch), under bf16 autocast on GPU. After ``--warmup`` steps, ``--steps`` steps are timed (with
device synchronisation) and reported: clips/s, audio-seconds/s, peak GPU memory, achieved model TFLOP/s and
MFU = achieved / peak.

Model FLOPs are counted analytically per clip, on its real (unpadded) length, so padding is never counted as
useful work (``torch.utils.flop_counter`` misses CPU SDPA attention and overcounts the grouped positional
convolution's backward): the CNN (2 x out x in x kernel per output frame per layer), the feature
projection, the positional convolution, and per transformer layer 8 T H^2 (Q, K, V, output) + 4 T^2 H
(scores and weighted sum) + 4 T H I (feed-forward). Training is 3x the forward (backward = 2x); a frozen
CNN (``--freeze-feature-encoder``) counts once. HuBERT-large comes to about 36 GFLOP per second of 16 kHz
audio forward, wav2vec2-base about 14.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16000
# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from the vendors' data sheets (SXM parts).
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 70.0}


def encoder_config(size: str):
    """The encoder's transformers config, built from code (no download)."""
    from transformers import HubertConfig, Wav2Vec2Config

    from ser_dist.models.ssl_presets import tiny_config

    if size == "hubert_large":  # facebook/hubert-large-ll60k's architecture
        return HubertConfig(
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            feat_extract_norm="layer",
            do_stable_layer_norm=True,
            conv_bias=True,
            layerdrop=0.0,
        )
    if size == "wav2vec2_base":  # facebook/wav2vec2-base's architecture
        return Wav2Vec2Config(layerdrop=0.0)
    if size == "tiny":
        return tiny_config("hubert", layer_norm=True)
    raise SystemExit(f"mfu.py: error: unknown --size {size!r}; use hubert_large, wav2vec2_base or tiny")


def conv_output_lengths(config, samples: int) -> list[int]:
    lengths, length = [], samples
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        length = (length - kernel) // stride + 1
        lengths.append(length)
    return lengths


def forward_flops(config, samples: int) -> tuple[float, float]:
    """(CNN feature encoder, everything after it) forward FLOPs for one clip of ``samples`` samples."""
    lengths = conv_output_lengths(config, samples)
    channels = [1, *config.conv_dim]
    cnn = sum(2.0 * frames * channels[i + 1] * channels[i] * kernel for i, (frames, kernel) in enumerate(zip(lengths, config.conv_kernel)))
    t, h, inner = lengths[-1], config.hidden_size, config.intermediate_size
    projection = 2.0 * t * config.conv_dim[-1] * h
    positional = 2.0 * t * h * (h // config.num_conv_pos_embedding_groups) * config.num_conv_pos_embeddings
    layer = 8.0 * t * h * h + 4.0 * t * t * h + 4.0 * t * h * inner
    return cnn, projection + positional + config.num_hidden_layers * layer


def training_flops(config, samples: int, frozen_cnn: bool) -> float:
    cnn, rest = forward_flops(config, samples)
    return (1.0 if frozen_cnn else 3.0) * cnn + 3.0 * rest


def durations(count: int, seed: int, max_seconds: float) -> np.ndarray:
    """IEMOCAP-shaped clip durations in seconds, cut at ``max_seconds`` (the throughput benchmark's draw)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from throughput import iemocap_durations

    drawn, _ = iemocap_durations(count, np.random.default_rng(seed))
    return np.minimum(drawn, max_seconds)


def peak_tflops(device: torch.device, given: float | None) -> tuple[float | None, str]:
    if given:
        return given, "--peak-tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in PEAK_BF16_TFLOPS.items():
            if key in name:
                return value, f"{name} (bf16 dense)"
        return None, f"{name}: unknown peak, pass --peak-tflops"
    return None, "CPU: pass --peak-tflops for an MFU"


def main() -> None:
    from ser_dist.config import Model
    from ser_dist.data.sampler import TrainBatchSampler
    from ser_dist.models.ssl import default_feature_extractor, ssl_encoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="hubert_large", help="hubert_large | wav2vec2_base | tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default=None, help="default: bf16 on GPU, fp32 on CPU")
    parser.add_argument("--batch-seconds", type=float, default=200.0, help="padded audio per batch (ser-dist's data.batch_seconds)")
    parser.add_argument("--max-seconds", type=float, default=15.0)
    parser.add_argument("--clips", type=int, default=4000)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--freeze-feature-encoder", action="store_true")
    parser.add_argument("--attention", default="sdpa", help="attention implementation: sdpa | eager")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, TFLOP/s (default: looked up for known GPUs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args()

    device = torch.device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    torch.manual_seed(args.seed)
    config = encoder_config(args.size)
    extractor = default_feature_extractor(config, SAMPLE_RATE)
    model_cfg = Model(backbone=args.size, pretrained=False, embedding_size=256, dropout=0.0, attention=args.attention)
    model = ssl_encoder(model_cfg, 4, SAMPLE_RATE, source=args.size, config=config, feature_extractor=extractor).to(device).train()
    model.set_frozen(args.freeze_feature_encoder, False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.01)

    seconds = durations(args.clips, args.seed, args.max_seconds)
    samples = np.round(seconds * SAMPLE_RATE).astype(np.int64)
    batches = TrainBatchSampler(seconds, batch_size=1, batch_seconds=args.batch_seconds, seed=args.seed).global_batches()
    needed = args.warmup + args.steps
    if len(batches) < needed:
        raise SystemExit(f"mfu.py: error: {len(batches)} batches from {args.clips} clips, {needed} needed; raise --clips")
    generator = torch.Generator().manual_seed(args.seed)
    labels = torch.randint(0, 4, (args.clips,), generator=generator)

    def step(batch: list[int]) -> None:
        lengths = torch.from_numpy(samples[batch])
        waveforms = torch.randn(len(batch), int(lengths.max()), generator=generator) * 0.1
        waveforms, lengths = waveforms.to(device, non_blocking=True), lengths.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(waveforms, lengths).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels[batch].to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for batch in batches[: args.warmup]:
        step(batch)
    synchronize()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timed = batches[args.warmup : needed]
    started = time.perf_counter()
    for batch in timed:
        step(batch)
    synchronize()
    elapsed = time.perf_counter() - started

    clips = [i for batch in timed for i in batch]
    flops = sum(training_flops(config, int(samples[i]), args.freeze_feature_encoder) for i in clips)
    padded = sum(len(batch) * int(samples[batch].max()) for batch in timed)
    peak, peak_source = peak_tflops(device, args.peak_tflops)
    achieved = flops / elapsed / 1e12
    result = {
        "size": args.size,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": precision,
        "attention": args.attention,
        "frozen_cnn": args.freeze_feature_encoder,
        "parameters_millions": sum(p.numel() for p in model.parameters()) / 1e6,
        "forward_gflop_per_audio_second": sum(forward_flops(config, SAMPLE_RATE * 10)) / 10 / 1e9,
        "batch_seconds": args.batch_seconds,
        "timed_steps": len(timed),
        "seconds": elapsed,
        "clips_per_second": len(clips) / elapsed,
        "audio_seconds_per_second": float(samples[clips].sum()) / SAMPLE_RATE / elapsed,
        "mean_clip_seconds": float(samples[clips].mean()) / SAMPLE_RATE,
        "padding_fraction": 1.0 - float(samples[clips].sum()) / padded,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "model_tflops_per_second": achieved,
        "peak_tflops": peak,
        "peak_source": peak_source,
        "mfu": achieved / peak if peak else None,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    memory = f"{result['peak_memory_gib']:.1f} GiB peak" if result["peak_memory_gib"] is not None else "CPU (no GPU memory figure)"
    mfu = f"MFU {100 * result['mfu']:.1f}% of {peak:g} TFLOP/s ({peak_source})" if peak else f"MFU n/a ({peak_source})"
    print(
        f"{args.size} ({result['parameters_millions']:.3g} M parameters, {result['forward_gflop_per_audio_second']:.3g} GFLOP forward per audio second), "
        f"{result['device']}, {precision}, {len(timed)} steps of ~{args.batch_seconds:g} s padded audio: "
        f"{result['clips_per_second']:.1f} clips/s, {result['audio_seconds_per_second']:.1f} audio-s/s "
        f"(mean clip {result['mean_clip_seconds']:.2f} s, padding {100 * result['padding_fraction']:.1f}%), {memory}, "
        f"{achieved:.3f} model TFLOP/s, {mfu}"
    )


if __name__ == "__main__":
    main()
