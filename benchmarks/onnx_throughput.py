"""CPU prediction speed, torch against ONNX Runtime, for each backbone's ONNX export.

    python benchmarks/onnx_throughput.py --out runs/onnx_throughput             # the numbers in docs/benchmarks.md
    python benchmarks/onnx_throughput.py --out runs/onnx_throughput --backbones bilstm crnn --threads 1

Each backbone as its recipe builds it (``RECIPES``: the seed BiLSTM, the study's LSTM, the CRNN, full VGGish;
HuBERT as ``recipes/hubert_large_ce.py`` on a base-size encoder, ``transformers.HubertConfig()``'s defaults: nothing
is downloaded), with random weights: speed does not depend on the weights. The ONNX export is ``ser-dist export --format onnx``'s
(``export_onnx``, which also checks the graph against torch). Both backends score the same ``--clips`` clips of
2-5 s (uniform, seed 0) through ``EmotionClassifier._probabilities`` in batches of ``--batch-size``, torch
with ``torch.set_num_threads(--threads)`` and ONNX Runtime with ``intra_op_num_threads=--threads``; after one
warm-up batch, the best of ``--repeats`` passes over the clips is reported as clips/s and audio-seconds/s, with
the largest probability difference between the two. Writes ``OUT/onnx_throughput.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECIPES = {  # each backbone as this recipe builds it
    "bilstm": "recipes/bilstm_mfcc_ce.py",
    "lstm": "recipes/lstm_ce.py",
    "crnn": "recipes/crnn_logmel_ce.py",
    "vggish": "recipes/vggish_ce.py",
    "hubert_base_random": "recipes/hubert_large_ce.py",  # its head and settings, on a base-size random encoder
}


def build_folder(name: str, out: Path) -> Path:
    import torch
    from transformers import HubertConfig, Wav2Vec2FeatureExtractor

    from ser_dist.models import build_model
    from ser_dist.recipe import resolved_config
    from ser_dist.serving.export import export_model

    backbone = []
    if name == "hubert_base_random":  # HuBERT-base's architecture (95 M parameters) from the config's defaults
        folder = out / "hubert_base_config"
        HubertConfig().save_pretrained(folder)
        Wav2Vec2FeatureExtractor(return_attention_mask=False).save_pretrained(folder)
        backbone = [f"model.backbone={folder}", "model.pretrained=false"]
    exp = resolved_config(str(ROOT / RECIPES[name]), ["data.root=unused", *backbone])
    torch.manual_seed(0)
    model = build_model(exp, 4).eval()
    return export_model(model, model.state_dict(), out / name / "model", exp=exp, label_names=["angry", "happy", "neutral", "sad"])


def timed(classifier, clips: list[np.ndarray], batch_size: int, repeats: int) -> tuple[float, np.ndarray]:
    """(best seconds for one pass over ``clips``, the probabilities of that pass)."""
    classifier._probabilities(clips[:batch_size])  # warm-up: allocations, ORT's first-run graph work
    best, probs = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        probs = np.concatenate([classifier._probabilities(clips[i : i + batch_size]) for i in range(0, len(clips), batch_size)])
        best = min(best, time.perf_counter() - start)
    return best, probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--backbones", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import onnxruntime
    import torch

    from ser_dist.serving.inference import EmotionClassifier
    from ser_dist.serving.onnx_backend import OnnxModel
    from ser_dist.serving.onnx_graph import export_onnx

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, int(rng.uniform(2.0, 5.0) * 16000)).astype(np.float32) for _ in range(args.clips)]
    audio_seconds = sum(len(c) for c in clips) / 16000
    rows = []
    for name in args.backbones:
        folder = build_folder(name, out)
        start = time.perf_counter()
        onnx_dir = export_onnx(folder, out / name / "onnx")
        export_seconds = time.perf_counter() - start
        torch_classifier = EmotionClassifier.from_pretrained(folder, device="cpu")
        onnx_classifier = EmotionClassifier.from_pretrained(onnx_dir, device="cpu", backend="onnx")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = args.threads
        onnx_classifier.model.session = onnxruntime.InferenceSession(
            str(onnx_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        assert isinstance(onnx_classifier.model, OnnxModel)
        torch_seconds, torch_probs = timed(torch_classifier, clips, args.batch_size, args.repeats)
        onnx_seconds, onnx_probs = timed(onnx_classifier, clips, args.batch_size, args.repeats)
        rows.append(
            {
                "backbone": name,
                "parameters_m": round(sum(p.numel() for p in torch_classifier.model.parameters()) / 1e6, 2),
                "torch_clips_per_s": round(len(clips) / torch_seconds, 2),
                "onnx_clips_per_s": round(len(clips) / onnx_seconds, 2),
                "speedup": round(torch_seconds / onnx_seconds, 2),
                "torch_audio_s_per_s": round(audio_seconds / torch_seconds, 1),
                "onnx_audio_s_per_s": round(audio_seconds / onnx_seconds, 1),
                "max_abs_difference": float(np.abs(torch_probs - onnx_probs).max()),
                "export_seconds": round(export_seconds, 1),
                "onnx_mb": round((onnx_dir / "model.onnx").stat().st_size / 2**20, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    info = {
        "clips": args.clips,
        "audio_seconds": round(audio_seconds, 1),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    (out / "onnx_throughput.json").write_text(json.dumps({**info, "rows": rows}, indent=2))
    print(f"\n{args.clips} clips ({info['audio_seconds']} s of audio), batch {args.batch_size}, {args.threads} threads\n")
    print("| backbone | parameters (M) | torch clips/s | ONNX Runtime clips/s | speed-up | max prob. difference |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['backbone']} | {r['parameters_m']} | {r['torch_clips_per_s']} | {r['onnx_clips_per_s']} | {r['speedup']}x | {r['max_abs_difference']:.1e} |"
        )


if __name__ == "__main__":
    main()
