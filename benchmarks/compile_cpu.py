"""Does ``torch.compile`` pay on CPU for an SSL encoder fed duration-budget batches? Eager against inductor.

    python benchmarks/compile_cpu.py [--steps 30] [--warmup 5] [--backbone hubert_tiny_random]

Trains the same randomly initialised model (the same seed, AdamW) for ``--steps`` steps on random audio batches
whose shapes vary as duration-budget batches do (6-14 clips of 2.5-7.5 s), first eagerly, then through
``torch.compile(dynamic=True)`` (what ``accelerate launch --dynamo_backend inductor --dynamo_use_dynamic``
does), and prints the seconds of the steps after the first ``--warmup`` and the audio seconds trained per
second. Results and the machine are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import random
import time

import torch


def build(backbone: str):
    from ser_dist.config import Data, Experiment, Model
    from ser_dist.models import build_model

    torch.manual_seed(0)
    exp = Experiment(data=Data(root="."), model=Model(backbone=backbone, pretrained=False, embedding_size=256, dropout=0.0))
    return build_model(exp, num_classes=6).train()


def run(backbone: str, compiled: bool, shapes: list[tuple[int, int]], warmup: int) -> dict:
    model = build(backbone)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    forward = torch.compile(model, dynamic=True) if compiled else model
    generator = torch.Generator().manual_seed(0)
    started, audio_seconds = time.perf_counter(), 0.0
    for index, (clips, samples) in enumerate(shapes):
        if index == warmup:
            started, audio_seconds = time.perf_counter(), 0.0
        waveforms = torch.randn(clips, samples, generator=generator) * 0.1
        loss = torch.nn.functional.cross_entropy(
            forward(waveforms, torch.full((clips,), samples)).logits, torch.zeros(clips, dtype=torch.long)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        audio_seconds += clips * samples / 16000
    seconds = time.perf_counter() - started
    return {
        "mode": "torch.compile (inductor, dynamic)" if compiled else "eager",
        "seconds": seconds,
        "audio_seconds_per_second": audio_seconds / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="hubert_tiny_random")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(0)
    shapes = [(rng.randint(6, 14), rng.randint(40000, 120000)) for _ in range(args.warmup + args.steps)]
    print(f"{args.backbone}, {torch.get_num_threads()} threads, {args.steps} timed steps after {args.warmup} warm-up steps")
    for compiled in (False, True):
        result = run(args.backbone, compiled, shapes, args.warmup)
        print(f"{result['mode']}: {result['seconds']:.1f} s, {result['audio_seconds_per_second']:.1f} audio-s/s")


if __name__ == "__main__":
    main()
