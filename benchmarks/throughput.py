"""ser-dist against the usual HF Trainer pipeline: same model, same clips, same steps, side by side.

    python benchmarks/throughput.py --out runs/throughput            # CPU (the numbers in docs/benchmarks.md)
    python benchmarks/throughput.py --out runs/throughput --device cuda

Data: clips shaped like IEMOCAP (durations drawn from ../shared/data/durations/iemocap.csv, 4.55 +- 3.23 s,
or from a log-normal with that mean and sd when the file is absent), each made by repeating a clip of the
generated demo corpus (so labels are learnable), written as 16 kHz WAV. Speakers 1-8 train, 9 validates
(speaker-independent), 10 is the (unused here) test split.

Both sides: the same tiny random HuBERT config (ser_dist.models.ssl_presets.tiny_config, layer norm, attention
mask), the same seed, AdamW, lr, weight decay, linear warmup, clipping, epochs, clips cropped at the same
``--max-seconds``, and the same number of optimizer steps per epoch. ``--freeze-feature-encoder`` keeps the
CNN feature encoder frozen on both sides (``model.freeze_feature_encoder()``, the default of transformers'
``run_audio_classification.py``; ser-dist's ``model.freeze_feature_encoder_epochs=-1``).

- baseline: ``datasets`` ``Audio`` column (torchcodec decodes every clip on every access) +
  ``set_transform`` with the feature extractor + ``DataCollatorWithPadding`` (pad to the longest clip of a
  random batch of ``--batch-size``) + ``AutoModelForAudioClassification`` + ``transformers.Trainer``;
- ser-dist: its own trainer (decode-once int16 Arrow cache, duration-budget batches whose budget is
  chosen so the epoch has the same number of batches as the baseline's).

Each side runs in its own process; reported: seconds per epoch (first, and the mean of later ones),
train clips per second on later epochs, the fraction of padded samples in training batches, peak memory
(RSS on CPU, allocated on GPU), and the final validation UA. Writes ``OUT/throughput.json`` and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IEMOCAP_DURATIONS = ROOT.parent / "shared" / "data" / "durations" / "iemocap.csv"
SAMPLE_RATE = 16000
TRAIN_SPEAKERS = {f"spk{i:02d}" for i in range(1, 9)}
SPLIT_OF_SPEAKER = {**{s: "train" for s in TRAIN_SPEAKERS}, "spk09": "val", "spk10": "test"}


# --- data -------------------------------------------------------------------------------------------


def iemocap_durations(count: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    if IEMOCAP_DURATIONS.exists():
        with open(IEMOCAP_DURATIONS, newline="") as f:
            seconds = np.array([float(row["seconds"]) for row in csv.DictReader(f)])
        return rng.choice(seconds, size=count, replace=True), f"drawn from {IEMOCAP_DURATIONS.name}"
    mean, sd = 4.55, 3.23  # IEMOCAP's, as a log-normal
    sigma = math.sqrt(math.log(1 + (sd / mean) ** 2))
    return rng.lognormal(math.log(mean) - sigma**2 / 2, sigma, size=count), "log-normal with IEMOCAP's mean and sd"


def make_data(out: Path, clips: int, seed: int) -> tuple[Path, str]:
    """Write the clips and a manifest (path,label,speaker,session=split); reuse them when present."""
    import soundfile as sf

    from ser_dist.data.demo import make_demo_corpus

    manifest = out / "data" / "manifest.csv"
    if manifest.exists():
        return manifest, (out / "data" / "durations.txt").read_text()
    demo = out / "data" / "demo"
    make_demo_corpus(demo, num_speakers=10, num_sentences=10, seed=seed)
    sources = sorted(demo.glob("*/*.wav"))
    rng = np.random.default_rng(seed)
    durations, how = iemocap_durations(clips, rng)
    rows = []
    gap = np.zeros(int(0.2 * SAMPLE_RATE), dtype=np.float32)
    for index, seconds in enumerate(durations):
        source = sources[rng.integers(len(sources))]
        audio, rate = sf.read(source, dtype="float32")
        target = max(1, int(round(seconds * rate)))
        tiled = np.concatenate([np.concatenate([audio, gap])] * (target // (len(audio) + len(gap)) + 1))[:target]
        path = out / "data" / "clips" / f"{index:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tiled, rate)
        speaker = source.name.split("_")[0]
        rows.append({"path": str(path), "label": source.parent.name, "speaker": speaker, "session": SPLIT_OF_SPEAKER[speaker]})
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "speaker", "session"])
        writer.writeheader()
        writer.writerows(rows)
    (out / "data" / "durations.txt").write_text(how)
    return manifest, how


def read_manifest(manifest: Path) -> list[dict]:
    with open(manifest, newline="") as f:
        return list(csv.DictReader(f))


def padding_fraction(batches: list[list[float]]) -> float:
    """Padded samples / all samples of the padded batches (durations in seconds)."""
    padded = sum(len(b) * max(b) for b in batches)
    return 1.0 - sum(sum(b) for b in batches) / padded


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


# --- the two sides (each in its own process) --------------------------------------------------------


def run_ser_dist(args, manifest: Path) -> dict:
    from ser_dist.config import Data, Experiment, Loss, Model, Optim, Train
    from ser_dist.data.sampler import TrainBatchSampler
    from ser_dist.trainer import train

    rows = read_manifest(manifest)
    train_rows = [r for r in rows if r["session"] == "train"]
    import soundfile as sf

    durations = [min(sf.info(r["path"]).duration, args.max_seconds) for r in train_rows]
    steps = math.ceil(len(train_rows) / args.batch_size)
    budget = batch_seconds_for(durations, steps, args.seed)
    exp = Experiment(
        name="throughput_ser_dist",
        data=Data(
            manifest=str(manifest),
            split="fixed",
            max_seconds=args.max_seconds,
            batch_seconds=budget,
            cache_dir=str(args.out / "ser_dist" / "cache"),
        ),
        model=Model(
            backbone="hubert_tiny_random",
            pretrained=False,
            embedding_size=256,
            dropout=0.0,
            freeze_feature_encoder_epochs=-1 if args.freeze_feature_encoder else 0,
        ),
        loss=Loss(name="ce"),
        optim=Optim(name="adamw", lr=args.lr, weight_decay=0.01, scheduler="linear_warmup", warmup_ratio=0.1),
        train=Train(
            epochs=args.epochs,
            batch_size=args.batch_size,
            max_grad_norm=1.0,
            early_stopping_patience=None,
            seed=args.seed,
            output_dir=str(args.out / "ser_dist" / "run"),
            overwrite=True,
            report_to=[],
            mixed_precision="bf16" if args.device == "cuda" else "no",
        ),
    )
    started = time.time()
    results = train(exp)
    total = time.time() - started
    history = results_history(args.out / "ser_dist" / "run")
    sampler = TrainBatchSampler(durations, batch_size=args.batch_size, batch_seconds=budget, seed=args.seed)
    batches = [[durations[i] for i in b] for b in sampler.global_batches()]
    epochs = results["timing"]["epoch_seconds"]
    return {
        "side": "ser-dist",
        "batch_seconds": budget,
        "steps_per_epoch": len(batches),
        "prepare_seconds": results["timing"]["prepare_seconds"],
        # ser-dist decodes before its first epoch: the cold-cache first epoch includes that.
        "first_epoch_seconds": results["timing"]["prepare_seconds"] + epochs[0],
        "later_epoch_seconds": float(np.mean(epochs[1:])) if len(epochs) > 1 else None,
        "epoch_seconds": epochs,
        "train_clips": len(train_rows),
        "padding_fraction": padding_fraction(batches),
        "peak_memory_mb": peak_memory_mb(args.device),
        "val_unweighted_accuracy": history[-1]["val_unweighted_accuracy"],
        "total_seconds": total,
    }


def results_history(run: Path) -> list[dict]:
    with open(run / "training_history.csv", newline="") as f:
        return [{k: float(v) if k.startswith("val_") else v for k, v in row.items()} for row in csv.DictReader(f)]


def batch_seconds_for(durations: list[float], steps: int, seed: int) -> float:
    """The smallest budget whose duration-budget batches number at most ``steps`` (the baseline's count)."""
    from ser_dist.data.sampler import TrainBatchSampler

    low, high = max(durations), sum(durations)
    for _ in range(60):
        middle = (low + high) / 2
        count = len(TrainBatchSampler(durations, batch_size=1, batch_seconds=middle, seed=seed).global_batches())
        low, high = (low, middle) if count <= steps else (middle, high)
    return math.ceil(high * 1000) / 1000  # rounded up: rounding down could add a batch


def run_baseline(args, manifest: Path) -> dict:
    import torch
    import transformers
    from datasets import Audio, Dataset
    from transformers import AutoModelForAudioClassification, DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    from ser_dist.metrics import compute_metrics
    from ser_dist.models.ssl import default_feature_extractor
    from ser_dist.models.ssl_presets import tiny_config

    rows = read_manifest(manifest)
    labels = sorted({r["label"] for r in rows})
    label2id = {name: i for i, name in enumerate(labels)}
    split = {name: [r for r in rows if r["session"] == name] for name in ("train", "val")}
    datasets = {
        name: Dataset.from_dict({"audio": [r["path"] for r in part], "label": [label2id[r["label"]] for r in part]}).cast_column(
            "audio", Audio(sampling_rate=SAMPLE_RATE)
        )
        for name, part in split.items()
    }
    config = tiny_config("hubert", layer_norm=True)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = label2id
    config.layerdrop, config.mask_time_prob = 0.0, 0.0
    extractor = default_feature_extractor(config, SAMPLE_RATE, return_attention_mask=True)
    max_samples = int(args.max_seconds * SAMPLE_RATE)
    seen_lengths: list[list[int]] = []

    def transform(batch):
        arrays = [decoder.get_all_samples().data.mean(0).numpy() for decoder in batch["audio"]]  # decoded on every access
        inputs = extractor(arrays, sampling_rate=SAMPLE_RATE, max_length=max_samples, truncation=True)
        return {"input_values": inputs["input_values"], "labels": batch["label"]}

    for dataset in datasets.values():
        dataset.set_transform(transform)
    padder = DataCollatorWithPadding(extractor, padding="longest")

    def collate(features):
        batch = padder(features)
        seen_lengths.append(batch["attention_mask"].sum(1).tolist())
        return batch

    class EpochTimer(TrainerCallback):
        def __init__(self):
            self.started, self.seconds = None, []

        def on_epoch_begin(self, *_, **__):
            self.started = time.time()

        def on_evaluate(self, *_, **__):  # evaluation closes the epoch, as in ser-dist's timing
            if self.started is not None:  # not the extra evaluate() after training
                self.seconds.append(time.time() - self.started)
                self.started = None

    transformers.set_seed(args.seed)
    model = AutoModelForAudioClassification.from_config(config)
    if args.freeze_feature_encoder:
        model.freeze_feature_encoder()  # what transformers' run_audio_classification.py does by default
    timer = EpochTimer()
    training_args = TrainingArguments(
        output_dir=str(args.out / "baseline" / "run"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=0.01,
        warmup_steps=0.1,
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        num_train_epochs=args.epochs,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        report_to=[],
        seed=args.seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        use_cpu=args.device == "cpu",
        bf16=args.device == "cuda",
        disable_tqdm=True,
    )

    def metrics(prediction):
        scores = compute_metrics(prediction.predictions.argmax(-1), prediction.label_ids, len(labels), labels)
        return {"unweighted_accuracy": scores["unweighted_accuracy"]}

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["val"],
        data_collator=collate,
        compute_metrics=metrics,
        callbacks=[timer],
    )
    started = time.time()
    trainer.train()
    total = time.time() - started
    final = trainer.evaluate()
    steps_per_epoch = math.ceil(len(split["train"]) / args.batch_size)
    train_batches = [[n / SAMPLE_RATE for n in b] for b in seen_lengths[: steps_per_epoch * args.epochs] if len(b)]
    return {
        "side": "HF Trainer baseline",
        "steps_per_epoch": steps_per_epoch,
        "first_epoch_seconds": timer.seconds[0],
        "later_epoch_seconds": float(np.mean(timer.seconds[1:])) if len(timer.seconds) > 1 else None,
        "epoch_seconds": timer.seconds,
        "train_clips": len(split["train"]),
        "padding_fraction": padding_fraction(train_batches_only(train_batches, steps_per_epoch, len(split["val"]), args)),
        "peak_memory_mb": peak_memory_mb(args.device),
        "val_unweighted_accuracy": final["eval_unweighted_accuracy"],
        "total_seconds": total,
        "torch_threads": torch.get_num_threads(),
    }


def train_batches_only(batches: list[list[float]], steps_per_epoch: int, val_clips: int, args) -> list[list[float]]:
    """The collator also pads evaluation batches; keep the training ones (each epoch: train steps, then val)."""
    val_batches = math.ceil(val_clips / args.batch_size)
    kept, index = [], 0
    while index < len(batches):
        kept.extend(batches[index : index + steps_per_epoch])
        index += steps_per_epoch + val_batches
    return kept


# --- driver ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/throughput"))
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-seconds", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--freeze-feature-encoder",
        action="store_true",
        help="both sides keep the CNN feature encoder frozen (the default of transformers' audio-classification example)",
    )
    parser.add_argument("--side", choices=("ser-dist", "baseline"), help=argparse.SUPPRESS)  # one side, in a child process
    args = parser.parse_args()
    args.out = args.out.resolve()
    manifest, how = make_data(args.out, args.clips, args.seed)
    if args.side:
        result = run_ser_dist(args, manifest) if args.side == "ser-dist" else run_baseline(args, manifest)
        (args.out / f"{args.side}.json").write_text(json.dumps(result, indent=2))
        return
    results = []
    for side in ("baseline", "ser-dist"):
        env = {**os.environ, "SER_DIST_CACHE": str(args.out / "ser_dist" / "cache")}
        if args.device == "cpu":
            env["ACCELERATE_USE_CPU"] = "true"
        command = [sys.executable, __file__, "--side", side, *sys.argv[1:]]
        subprocess.run(command, check=True, env=env)
        results.append(json.loads((args.out / f"{side}.json").read_text()))
    baseline, ours = results
    speedup = (
        baseline["later_epoch_seconds"] / ours["later_epoch_seconds"]
        if baseline["later_epoch_seconds"] and ours["later_epoch_seconds"]
        else None
    )
    summary = {
        "device": args.device,
        "durations": how,
        "clips": args.clips,
        "args": {k: str(v) for k, v in vars(args).items()},
        "baseline": baseline,
        "ser_dist": ours,
        "later_epoch_speedup": speedup,
    }
    (args.out / "throughput.json").write_text(json.dumps(summary, indent=2))
    print(table(baseline, ours, speedup, args, how))


def table(baseline: dict, ours: dict, speedup, args, how: str) -> str:
    def clips_per_second(side):
        return side["train_clips"] / side["later_epoch_seconds"] if side["later_epoch_seconds"] else float("nan")

    lines = [
        f"{args.clips} clips ({how}, cropped at {args.max_seconds:g} s), {args.epochs} epochs, device {args.device}, "
        f"CNN feature encoder {'frozen' if args.freeze_feature_encoder else 'trained'}",
        "",
        "| | HF Trainer baseline | ser-dist |",
        "| --- | --- | --- |",
        f"| optimizer steps per epoch | {baseline['steps_per_epoch']} | {ours['steps_per_epoch']} |",
        f"| first epoch, s (ser-dist: + decode-once cache) | {baseline['first_epoch_seconds']:.1f} | {ours['first_epoch_seconds']:.1f} |",
        f"| later epochs, s each | {baseline['later_epoch_seconds']:.1f} | {ours['later_epoch_seconds']:.1f} |",
        f"| train clips/s, later epochs | {clips_per_second(baseline):.1f} | {clips_per_second(ours):.1f} |",
        f"| padded samples in training batches | {100 * baseline['padding_fraction']:.1f}% | {100 * ours['padding_fraction']:.1f}% |",
        f"| peak memory, MB | {baseline['peak_memory_mb']:.0f} | {ours['peak_memory_mb']:.0f} |",
        f"| final validation UA | {100 * baseline['val_unweighted_accuracy']:.1f}% | {100 * ours['val_unweighted_accuracy']:.1f}% |",
        "",
        f"later-epoch speed-up: {speedup:.2f}x" if speedup else "later-epoch speed-up: n/a (run at least 2 epochs)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
