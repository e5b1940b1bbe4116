"""ONNX Runtime in place of torch: ``ser-dist predict OUT --backend onnx`` and
``EmotionClassifier.from_pretrained(OUT, backend="onnx")`` for a folder ``ser-dist export --format onnx`` wrote.

``OnnxModel`` is called as the torch model is (``(input_values [B, T], lengths [B]) -> SEROutput``), so windows,
segments, batching and every failure reason of ``EmotionClassifier`` are the same for both backends. The graph and
what it leaves outside (``onnx.json``) are described in ``serving/onnx_graph.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError, first_line
from ..models.base import SEROutput

ONNX_FILE = "model.onnx"
ONNX_META = "onnx.json"  # beside ser_dist.json: the graph's inputs, outputs and pre-processing


def require(module: str, feature: str):
    """Import an optional package of the ``onnx`` extra, or one line naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{feature} needs the {module} package, which is not installed; pip install 'ser-dist[onnx]'") from None


def read_onnx_info(folder: Path) -> dict:
    """``onnx.json`` of an ONNX export, checked; one line naming the folder and the fix otherwise."""
    folder = Path(folder)
    path = folder / ONNX_META
    if not (folder / ONNX_FILE).is_file() or not path.is_file():
        raise UserError(
            f"{folder}: no {ONNX_FILE} + {ONNX_META} (not an ONNX export); make one with: ser-dist export {folder} OUT --format onnx, "
            "then ser-dist predict OUT --backend onnx"
        )
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable ({err}); re-export with ser-dist export MODEL OUT --format onnx") from None
    fields = {"inputs": list, "outputs": list, "sample_rate": int, "min_input_samples": int, "preprocessing": str}
    for key, kind in fields.items():
        if not isinstance(info, dict) or not isinstance(info.get(key), kind) or isinstance(info.get(key), bool):
            raise UserError(f"{path}: {key} is missing or not a {kind.__name__}; re-export with ser-dist export MODEL OUT --format onnx")
    if info["preprocessing"] not in ("waveform", "opensmile"):
        raise UserError(f"{path}: preprocessing={info['preprocessing']!r} is not waveform or opensmile; re-export the model")
    return info


def providers_for(device: torch.device) -> list[str]:
    """ONNX Runtime's CUDA provider for a CUDA device when this build has it, else the CPU provider."""
    import onnxruntime

    if device.type == "cuda":
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise UserError(
                f"--device {device}: this onnxruntime has no CUDA provider (it has {', '.join(onnxruntime.get_available_providers())}); "
                "pip install onnxruntime-gpu, or predict with --device cpu"
            )
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxModel:
    """An ONNX export run by ONNX Runtime, with the torch model's call signature and output."""

    def __init__(self, folder: str | Path, info: dict | None = None, device: torch.device | None = None, meta: dict | None = None):
        ort = require("onnxruntime", "the ONNX backend (--backend onnx)")
        self.folder = Path(folder)
        self.info = info if info is not None else read_onnx_info(self.folder)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initialisers are not the user's concern
        try:
            self.session = ort.InferenceSession(
                str(self.folder / ONNX_FILE), options, providers=providers_for(device or torch.device("cpu"))
            )
        except Exception as err:  # onnxruntime's InvalidGraph / Fail / NoSuchFile: one line
            reason = first_line(err)
            raise UserError(f"{self.folder / ONNX_FILE}: ONNX Runtime cannot load it ({reason}); re-export the model") from None
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.min_input_samples = int(self.info["min_input_samples"])
        self.padding_changes_output = bool(self.info.get("padding_changes_output", False))
        self.functionals = None
        if self.info["preprocessing"] == "opensmile":
            from ..models.smile import OpenSmileFunctionals

            model_cfg = ((meta or {}).get("experiment") or {}).get("model") or {}
            self.functionals = OpenSmileFunctionals(model_cfg.get("smile_set", "egemaps"), int(self.info["sample_rate"]))
            if self.info.get("smile_set", self.functionals.feature_set) != self.functionals.feature_set:
                raise UserError(
                    f"{self.folder / ONNX_META}: the graph takes {self.info['smile_set']} functionals but ser_dist.json's model "
                    f"computes {self.functionals.feature_set}; re-export the model"
                )

    def to(self, device) -> OnnxModel:  # EmotionClassifier moves its model; the session's providers were chosen at load
        return self

    def eval(self) -> OnnxModel:
        return self

    def feeds(self, input_values: torch.Tensor, lengths: torch.Tensor) -> dict[str, np.ndarray]:
        waveforms = input_values.detach().float().cpu().numpy()
        counts = lengths.detach().cpu().numpy().astype(np.int64)
        if self.functionals is not None:  # openSMILE on each clip's valid samples, as OpenSmileSER.encode
            return {"features": np.stack([self.functionals(waveforms[b, : max(1, int(n))]) for b, n in enumerate(counts)])}
        if waveforms.shape[1] < self.min_input_samples:  # as the torch model pads inside forward
            waveforms = np.pad(waveforms, ((0, 0), (0, self.min_input_samples - waveforms.shape[1])))
        return {"input_values": np.ascontiguousarray(waveforms), "lengths": counts}

    def __call__(self, input_values: torch.Tensor, lengths: torch.Tensor) -> SEROutput:
        outputs = dict(zip(self.output_names, self.session.run(None, self.feeds(input_values, lengths))))
        tensor = {name: torch.from_numpy(value) for name, value in outputs.items()}
        return SEROutput(logits=tensor["logits"], embedding=tensor["embedding"], dimensions=tensor.get("dimensions"))


def load_onnx(path: str | Path, device: torch.device, revision: str | None = None) -> tuple[OnnxModel, dict]:
    """(OnnxModel, the model's ser_dist.json metadata, checked as a torch model folder's) of an ONNX export: a folder
    or a Hub id (``revision``) holding one."""
    from .export import check_export
    from .hub import resolve_model_dir

    require("onnxruntime", "the ONNX backend (--backend onnx)")  # before the model is looked for
    folder = resolve_model_dir(path, revision=revision)
    info = read_onnx_info(folder)
    meta, _ = check_export(folder)
    counts = {"classes": len(meta["labels"]), "dimensions": len(meta.get("dimensions") or [])}
    for key, count in counts.items():  # outputs paired with names by position: a mismatch would mislabel them
        if info.get(key, count) != count:
            raise UserError(f"{folder / ONNX_META}: the graph has {info[key]} {key} but ser_dist.json names {count}; re-export the model")
    if int(meta["sample_rate"]) != info["sample_rate"]:
        raise UserError(
            f"{folder / ONNX_META}: sample_rate {info['sample_rate']} differs from ser_dist.json's {meta['sample_rate']}; re-export"
        )
    return OnnxModel(folder, info, device, meta), meta
