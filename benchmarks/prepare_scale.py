"""Data preparation at scale: time per 1,000 clips and peak memory for 10k / 30k / 100k short clips.

    python benchmarks/prepare_scale.py --clips 10000,30000,100000 --work /tmp/ser_scale --out runs/prepare_scale
    python benchmarks/prepare_scale.py --clips 1000 --work /tmp/ser_scale       # a quick check

For each N, a synthetic corpus of N short clips (0.4-0.6 s of 16 kHz tone + noise, 4 emotions, 20 speakers) is
written once under ``--work``: as WAV files with a manifest (``manifest.csv``: path, label, speaker), and as a
Hugging Face dataset (``save_to_disk``, an ``Audio`` column holding the same WAV bytes, ``ClassLabel`` labels,
a speaker column). Then each form is prepared in a fresh process, first with an empty decode cache (cold:
scan, decode into the Arrow cache, split) and again with the cache filled (warm: what a training run waits
for before its first step):

- ``manifest``: ``ser_dist.data.pipeline.prepare_data(Data(manifest=...), seed)``;
- ``hf``: the same call with ``Data(hf_dataset=...)``: the rows' WAV bytes decoded straight from the dataset;
- ``hf_core``: ``ser_dist.data.hf`` and ``hf_audio`` alone (open, scan, ``iter_audio`` and ``decode_hf_audio`` of every
  row, no cache), in one process: the memory the dataset reader itself needs.

Reported per form and N: seconds and seconds per 1,000 clips (cold), warm seconds (``prepare_data`` with the
cache filled), warm start seconds (the whole warm process: interpreter, imports and ``prepare_data``) and warm
train start seconds (``recipes/bilstm_mfcc_ce.py`` on the filled cache, from launch to its first epoch: the
data, the model, the optimizer and the loaders set up; the run is then stopped), peak RSS of the preparing
process while it works and of it with its decoding workers (``--num-proc``, default 2; their RSS summed, so
shared pages count twice), sampled every 20 ms, beside its RSS after imports, so growth with N is visible. RSS
counts the memory-mapped Arrow files' pages that were read (the dataset's audio, the cache being written and read
back): page cache the kernel reclaims, which grows with the corpus. The peak anonymous memory (RSS less its
file-backed and shared pages) is what the process itself holds. Writes ``OUT/prepare_scale.json`` with ``--out``
and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

EMOTIONS = ["neutral", "happy", "angry", "sad"]
NUM_SPEAKERS = 20
SAMPLE_RATE = 16000
SEED = 0


# --- the corpus -------------------------------------------------------------------------------------


def build_corpus(folder: Path, count: int) -> None:
    """WAV clips + manifest.csv + hf/ (save_to_disk) under ``folder``; kept when a previous call finished it."""
    done = folder / "corpus.json"
    if done.exists() and json.loads(done.read_text()).get("clips") == count:
        return
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    rows = write_clips(folder / "clips", count)
    with open(folder / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "speaker"])
        writer.writerows(rows)
    write_hf_dataset(folder, rows)
    done.write_text(json.dumps({"clips": count, "seconds_to_build": round(time.perf_counter() - started, 1)}))


def write_clips(folder: Path, count: int) -> list[tuple[str, str, str]]:
    import soundfile as sf

    rng = np.random.default_rng(SEED)
    rows = []
    for i in range(count):
        label, speaker = EMOTIONS[i % len(EMOTIONS)], f"spk{(i // len(EMOTIONS)) % NUM_SPEAKERS + 1:02d}"
        samples = int(rng.uniform(0.4, 0.6) * SAMPLE_RATE)
        t = np.arange(samples) / SAMPLE_RATE
        tone = 0.2 * np.sin(2 * np.pi * (150 + 60 * EMOTIONS.index(label) + rng.uniform(-10, 10)) * t)
        path = folder / f"{i // 1000:03d}" / f"{speaker}_{i:06d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), (tone + rng.normal(0, 0.02, samples)).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        rows.append((str(path.relative_to(folder.parent)), label, speaker))
    return rows


def _hf_rows(folder: str, rows: list):
    for path, label, speaker in rows:
        yield {"audio": {"bytes": (Path(folder) / path).read_bytes(), "path": Path(path).name}, "label": label, "speaker": speaker}


def write_hf_dataset(folder: Path, rows: list) -> None:
    import datasets

    features = datasets.Features(
        {"audio": datasets.Audio(), "label": datasets.ClassLabel(names=EMOTIONS), "speaker": datasets.Value("string")}
    )
    built = datasets.Dataset.from_generator(
        _hf_rows, features=features, gen_kwargs={"folder": str(folder), "rows": rows}, cache_dir=str(folder / "hf-build")
    )
    built.save_to_disk(str(folder / "hf"))
    del built
    shutil.rmtree(folder / "hf-build", ignore_errors=True)


# --- one measurement, in its own process -------------------------------------------------------------


class PeakMemory:
    """The largest RSS of this process, and of it plus its decoding workers (summed), sampled every 20 ms while open."""

    def __init__(self):
        import psutil

        self.process = psutil.Process()
        self.peak = self.peak_with_workers = self.peak_anonymous = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            info = self.process.memory_info()
            own = info.rss
            self.peak_anonymous = max(self.peak_anonymous, info.rss - info.shared)
            workers = 0
            for child in self.process.children(recursive=True):
                try:
                    workers += child.memory_info().rss
                except Exception:  # a worker that just exited
                    pass
            self.peak, self.peak_with_workers = max(self.peak, own), max(self.peak_with_workers, own + workers)
            if self._stop.wait(0.02):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def measure(form: str, corpus: Path, cache: Path, num_proc: int) -> dict:
    """Prepare ``corpus`` as ``form``; time and memory of this process (and its decoding workers) while it works."""
    import datasets
    import psutil

    import ser_dist.data.dataset  # noqa: F401  everything prepare_data imports, before the memory is sampled
    import ser_dist.data.splits  # noqa: F401
    from ser_dist.config import Data
    from ser_dist.data.hf import open_hf_dataset, scan_hf_dataset
    from ser_dist.data.hf_audio import decode_hf_audio, iter_audio
    from ser_dist.data.pipeline import prepare_data

    datasets.disable_progress_bars()
    imported = psutil.Process().memory_info()
    imported_rss, imported_anonymous = imported.rss, imported.rss - imported.shared
    started = time.perf_counter()
    with PeakMemory() as memory:
        if form == "hf_core":
            scan = scan_hf_dataset(open_hf_dataset(str(corpus / "hf")))
            used = sum(
                1
                for rec, value in zip(scan.records, iter_audio(scan.dataset, scan.records))
                if decode_hf_audio(value, rec.path, SAMPLE_RATE, 10 * SAMPLE_RATE).num_samples
            )
        else:
            source = {"manifest": str(corpus / "manifest.csv")} if form == "manifest" else {"hf_dataset": str(corpus / "hf")}
            used = prepare_data(Data(split="speaker", cache_dir=str(cache), **source), SEED, num_proc=num_proc).report["num_used"]
    mb = 1 << 20
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "clips_used": used,
        "rss_after_imports_mb": round(imported_rss / mb),
        "peak_rss_mb": round(memory.peak / mb),
        "peak_rss_with_workers_mb": round(memory.peak_with_workers / mb),
        "anonymous_after_imports_mb": round(imported_anonymous / mb),
        "peak_anonymous_mb": round(memory.peak_anonymous / mb),
    }


def run_child(form: str, corpus: Path, cache: Path, num_proc: int) -> dict:
    """``measure`` in a fresh process; ``process_seconds``: its whole wall time, from start to exit."""
    command = [sys.executable, __file__, "--child", form, "--corpus", str(corpus), "--cache", str(cache), "--num-proc", str(num_proc)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{form} on {corpus} failed:\n{result.stderr[-3000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "process_seconds": round(time.perf_counter() - started, 2)}


def train_start(form: str, corpus: Path, cache: Path) -> float:
    """Seconds from launching the BiLSTM recipe on the warm cache to its first epoch (its ``model:`` log line, after
    the data, the model, the optimizer and the loaders are set up); the run is then stopped."""
    source = f"data.manifest={corpus / 'manifest.csv'}" if form == "manifest" else f"data.hf_dataset={corpus / 'hf'}"
    out = corpus / f"train-start-{form}"
    shutil.rmtree(out, ignore_errors=True)
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "bilstm_mfcc_ce.py"
    command = [sys.executable, str(recipe), source, f"data.cache_dir={cache}", f"train.output_dir={out}", "train.report_to=[]"]
    started = time.perf_counter()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    ) as run:
        for line in run.stdout:
            if "] model: " in line:
                seconds = time.perf_counter() - started
                break
        else:
            raise SystemExit(f"the recipe on {form} stopped before training (exit {run.wait()})")
        run.terminate()
    shutil.rmtree(out, ignore_errors=True)
    return round(seconds, 2)


def benchmark(count: int, work: Path, num_proc: int, forms: list[str]) -> list[dict]:
    corpus = work / f"n{count}"
    build_corpus(corpus, count)
    results = []
    for form in forms:
        cache = corpus / f"cache-{form}"
        shutil.rmtree(cache, ignore_errors=True)
        row = {"form": form, "clips": count, **run_child(form, corpus, cache, num_proc)}
        row["seconds_per_1000_clips"] = round(row["seconds"] / count * 1000, 2)
        if form != "hf_core":  # the cache is filled: the second preparation is what training waits for
            warm = run_child(form, corpus, cache, num_proc)
            row["warm_seconds"], row["warm_start_seconds"], row["warm_peak_rss_mb"] = (
                warm["seconds"],
                warm["process_seconds"],
                warm["peak_rss_mb"],
            )
            row["warm_train_start_seconds"] = train_start(form, corpus, cache)
        shutil.rmtree(cache, ignore_errors=True)
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


def table(results: list[dict]) -> str:
    lines = [
        "| form | clips | cold s | s / 1,000 clips | warm s | warm start s | warm train start s | RSS MB after imports | peak RSS MB | "
        "peak RSS MB with workers | anonymous MB after imports | peak anonymous MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['form']} | {r['clips']:,} | {r['seconds']} | {r['seconds_per_1000_clips']} | {r.get('warm_seconds', '-')} | "
            f"{r.get('warm_start_seconds', '-')} | {r.get('warm_train_start_seconds', '-')} | "
            f"{r['rss_after_imports_mb']} | {r['peak_rss_mb']} | {r['peak_rss_with_workers_mb']} | "
            f"{r['anonymous_after_imports_mb']} | {r['peak_anonymous_mb']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", default="10000,30000,100000", help="comma-separated corpus sizes")
    parser.add_argument("--work", type=Path, default=Path("runs/prepare_scale_data"), help="where the corpora are written (and kept)")
    parser.add_argument("--out", type=Path, default=None, help="folder for prepare_scale.json")
    parser.add_argument("--num-proc", type=int, default=2, help="decoding processes for prepare_data")
    parser.add_argument("--forms", default="manifest,hf,hf_core", help="comma-separated: manifest, hf, hf_core")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.corpus, args.cache, args.num_proc)))
        return
    sizes = [int(text) for text in args.clips.split(",") if text.strip()]
    forms = [form.strip() for form in args.forms.split(",") if form.strip()]
    results = [row for count in sizes for row in benchmark(count, args.work.resolve(), args.num_proc, forms)]
    print(table(results))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "prepare_scale.json").write_text(json.dumps({"hf_dataset_supported": "hf" in forms, "results": results}, indent=2))


if __name__ == "__main__":
    main()
