"""Prediction on recordings: ``EmotionClassifier.from_pretrained(DIR)(["a.wav", "b.flac"])``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from .errors import UserError
from .export import META_FILE, load_exported


def resolve_model_dir(path: str | Path) -> Path:
    """A run directory (its ``model/``), or an exported model directory."""
    path = Path(path)
    if (path / META_FILE).exists():
        return path
    if (path / "model" / META_FILE).exists():
        return path / "model"
    if not path.exists():
        raise UserError(f"{path}: no such model directory; pass a run directory (train.output_dir) or an exported model/ folder")
    raise UserError(f"{path}: no trained model here (no {META_FILE} in it or in {path}/model); train first or pass the export folder")


@dataclass
class Prediction:
    file: str
    label: str
    confidence: float
    probabilities: dict[str, float]

    def to_dict(self) -> dict:
        return {"file": self.file, "label": self.label, "confidence": self.confidence, "probabilities": self.probabilities}


class EmotionClassifier:
    def __init__(self, model: torch.nn.Module, meta: dict, device: Optional[str] = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.meta = meta
        self.labels: list[str] = list(meta["labels"])
        self.sample_rate: int = int(meta["sample_rate"])
        self.max_seconds: Optional[float] = meta.get("max_seconds")

    @classmethod
    def from_pretrained(cls, path: str | Path, device: Optional[str] = None) -> "EmotionClassifier":
        model, meta = load_exported(resolve_model_dir(path))
        return cls(model, meta, device)

    @torch.no_grad()
    def predict_waveforms(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities [N, C] for 1-D float waveforms at ``self.sample_rate``."""
        if self.max_seconds:
            limit = int(self.max_seconds * self.sample_rate)
            waveforms = [w[:limit] for w in waveforms]
        lengths = torch.tensor([len(w) for w in waveforms], dtype=torch.long)
        batch = torch.zeros(len(waveforms), int(lengths.max()))
        for i, w in enumerate(waveforms):
            batch[i, : len(w)] = torch.as_tensor(w, dtype=torch.float32)
        logits = self.model(batch.to(self.device), lengths.to(self.device)).logits
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def predict(self, files: Iterable[str | Path], batch_size: int = 8) -> tuple[list[Prediction], list[tuple[str, str]]]:
        """Predictions for the readable files, and (file, reason) for those that could not be read."""
        from .data.audio import AudioError, load_audio

        predictions, failed = [], []
        pending: list[tuple[str, np.ndarray]] = []

        def flush():
            if pending:
                probs = self.predict_waveforms([w for _, w in pending])
                for (name, _), p in zip(pending, probs):
                    best = int(p.argmax())
                    predictions.append(
                        Prediction(name, self.labels[best], float(p[best]), {label: float(v) for label, v in zip(self.labels, p)})
                    )
                pending.clear()

        for file in files:
            try:
                pending.append((str(file), load_audio(file, self.sample_rate)))
            except AudioError as err:
                failed.append((str(file), err.reason))
            if len(pending) >= batch_size:
                flush()
        flush()
        return predictions, failed

    def __call__(self, files: Iterable[str | Path], batch_size: int = 8) -> list[dict]:
        predictions, failed = self.predict(files, batch_size)
        if failed:
            raise UserError(f"{failed[0][0]}: {failed[0][1]}" + (f" (+{len(failed) - 1} more unreadable)" if len(failed) > 1 else ""))
        return [p.to_dict() for p in predictions]
