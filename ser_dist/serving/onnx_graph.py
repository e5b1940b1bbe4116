"""A trained model as an ONNX graph: ``ser-dist export MODEL OUT --format onnx`` (``export_onnx``).

The graph takes ``input_values`` [batch, samples] float32 waveforms at the model's sample rate, zero-padded after
each clip, and ``lengths`` [batch] int64 (each clip's samples); both axes are dynamic. It returns
``probabilities`` [batch, classes] (the softmax of ``logits``), ``logits``, ``embedding`` and, for a model with
``data.targets=dimensional|both``, ``dimensions`` [batch, K]. The front ends (STFT, mel filterbank, MFCC, deltas,
normalisation) and the padding masks are inside the graph; ``serving/onnx_backend.py`` runs it with ONNX Runtime.

What stays outside the graph, and why:
- a batch shorter than the model's receptive field (``min_input_samples``, stored in ``onnx.json``) is zero-padded
  to it before the graph, as the torch model pads inside ``forward`` (a branch on a shape, which a traced graph
  cannot keep);
- openSMILE functionals (``model.backbone=opensmile``) are computed by the openSMILE library, not by torch ops:
  that graph takes ``features`` [batch, num_functionals] (``opensmile.Smile`` on each clip) and holds the
  standardisation and the head; the ONNX backend runs openSMILE itself first.

The export traces a copy of the model in which torchaudio's FFT spectrograms are replaced by the same STFT as a
convolution with a fixed DFT basis (``ConvSpectrogram``: ONNX has no complex tensors), which agrees with the FFT to
float32 rounding. ``check_onnx`` runs the graph on clips of several lengths in one batch against the torch model
before the export is written, so an export that disagrees (by more than ``TOLERANCE``) is never left behind.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError, first_line
from .onnx_backend import ONNX_FILE, ONNX_META, OnnxModel, require

OPSET = 17
TOLERANCE = 1e-4  # the largest probability difference check_onnx accepts between torch and ONNX Runtime


class ConvSpectrogram(nn.Module):
    """torchaudio's ``Spectrogram`` (centred, reflect-padded, one-sided, unnormalised) as a strided convolution
    with the windowed DFT basis: [..., time] -> [..., n_fft // 2 + 1, frames], power ``power``."""

    def __init__(self, spectrogram: nn.Module):
        super().__init__()
        if spectrogram.normalized or not spectrogram.onesided or spectrogram.pad or spectrogram.power is None:
            raise UserError("ONNX export: only unnormalised, one-sided power spectrograms without extra padding are supported")
        self.n_fft, self.hop_length, self.center = spectrogram.n_fft, spectrogram.hop_length, spectrogram.center
        self.pad_mode, self.power = spectrogram.pad_mode, float(spectrogram.power)
        window = spectrogram.window.double()
        left = (self.n_fft - window.numel()) // 2  # torch.stft centres a shorter window in the frame
        window = nn.functional.pad(window, (left, self.n_fft - window.numel() - left))
        n = torch.arange(self.n_fft, dtype=torch.float64)
        k = torch.arange(self.n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * k * n / self.n_fft
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])  # [2F, n_fft]
        self.register_buffer("basis", basis[:, None, :], persistent=False)  # float64: see forward

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        shape = waveform.shape
        # In float64: a float32 DFT's rounding (~1e-7 of the frame's energy) is large beside the quiet bins' power,
        # which log-mel front ends magnify; the FFT's rounding is far smaller. The power goes back to float32.
        x = waveform.double().reshape(-1, 1, shape[-1])
        if self.center:
            x = nn.functional.pad(x, (self.n_fft // 2, self.n_fft // 2), mode=self.pad_mode)
        starts = torch.arange(0, x.shape[-1] - self.n_fft + 1, self.hop_length, device=x.device)
        frames = x[:, 0, :][:, starts[:, None] + torch.arange(self.n_fft, device=x.device)[None, :]]  # [N, frames, n_fft]
        spec = torch.matmul(frames, self.basis[:, 0, :].transpose(0, 1)).transpose(1, 2)  # [N, 2F, frames]
        real, imag = spec.chunk(2, dim=1)
        power = real**2 + imag**2
        if self.power != 2.0:
            power = power.pow(self.power / 2.0)
        return power.float().reshape(*shape[:-1], power.shape[-2], power.shape[-1])


def onnx_ready(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose torchaudio spectrograms are ``ConvSpectrogram``s (the original is left as it is)."""
    import torchaudio

    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torchaudio.transforms.Spectrogram):
                setattr(module, name, ConvSpectrogram(child))
    return model


class WaveformGraph(nn.Module):
    """(input_values, lengths) -> probabilities, logits, embedding[, dimensions], for a model with a torch front end."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor, lengths: torch.Tensor):
        return graph_outputs(self.model(input_values, lengths))


class FunctionalsGraph(nn.Module):
    """features [B, F] (openSMILE functionals) -> the same outputs, for ``OpenSmileSER``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor):
        one_frame = torch.ones_like(features[:, 0], dtype=torch.long)
        return graph_outputs(self.model(features[:, None, :], one_frame))


def graph_outputs(output) -> tuple[torch.Tensor, ...]:
    logits = output.logits.float()
    outs = (torch.softmax(logits, dim=-1), logits, output.embedding.float())
    return outs + ((output.dimensions.float(),) if output.dimensions is not None else ())


def output_names(has_dimensions: bool) -> list[str]:
    return ["probabilities", "logits", "embedding"] + (["dimensions"] if has_dimensions else [])


def is_functionals_model(model: nn.Module) -> bool:
    from ..models.smile import OpenSmileSER

    return isinstance(model, OpenSmileSER)


def example_batch(model: nn.Module, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three clips of different lengths (2, 1.337 and 0.711 s, at least the model's receptive field), zero-padded."""
    minimum = int(getattr(model, "min_input_samples", 1) or 1)
    lengths = [max(minimum, int(seconds * sample_rate)) for seconds in (2.0, 1.337, 0.711)]
    generator = torch.Generator().manual_seed(0)
    batch = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        t = torch.arange(n) / sample_rate
        batch[i, :n] = 0.3 * torch.sin(2 * math.pi * (150 + 60 * i) * t) + 0.05 * torch.randn(n, generator=generator)
    return batch, torch.tensor(lengths, dtype=torch.long)


def trace_to_onnx(graph: nn.Module, inputs: tuple[torch.Tensor, ...], input_axes: dict, path: Path, names: list[str]) -> None:
    """``torch.onnx.export``'s TorchScript path (dynamic axes by name; the dynamo path specialises the masks' shapes)."""
    axes = dict(input_axes)
    axes.update({name: {0: "batch"} for name in names})
    with warnings.catch_warnings():  # tracer warnings about Python values taken from shapes, and the exporter's deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            inputs,
            str(path),
            input_names=list(input_axes),
            output_names=names,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )


def export_onnx(model_path: str | Path, out: str | Path, *, revision: str | None = None) -> Path:
    """Write ``out``/model.onnx, onnx.json, and the model folder's ser_dist.json and model card, checked against the
    torch model (``check_onnx``). ``model_path``: a run directory, an export folder or a Hub id."""
    require("onnx", "ser-dist export --format onnx")
    require("onnxruntime", "ser-dist export --format onnx")
    from .export import META_FILE, load_exported
    from .hub import resolve_model_dir

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; give a new or empty folder for the ONNX export")
    if out.exists() and any(p.name not in (ONNX_FILE, ONNX_META, META_FILE, "README.md") for p in out.iterdir()):
        raise UserError(f"{out}: exists and holds other files; give a new or empty folder (an earlier ONNX export there is replaced)")
    source = resolve_model_dir(model_path, revision=revision)
    model, meta = load_exported(source)
    model = onnx_ready(model.float())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".tmp-{out.name}-"))  # never anyone else's folder
    try:
        write_graph(model, meta, source, model_path, tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:  # a failed trace, check or write leaves nothing behind
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def write_graph(model: nn.Module, meta: dict, source: Path, model_path, tmp: Path) -> None:
    """model.onnx, onnx.json (checked by ``check_onnx``), ser_dist.json and the card into ``tmp``."""
    from .export import META_FILE

    sample_rate = int(meta["sample_rate"])
    names = output_names(bool(meta.get("dimensions")))
    batch, lengths = example_batch(model, sample_rate)
    functionals = is_functionals_model(model)
    with torch.no_grad():
        if functionals:
            features = model.encode(batch, lengths)[0][:, 0, :]
            graph, inputs, axes = FunctionalsGraph(model), (features,), {"features": {0: "batch"}}
        else:
            graph, inputs, axes = (
                WaveformGraph(model),
                (batch, lengths),
                {"input_values": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}},
            )
        try:
            trace_to_onnx(graph.eval(), inputs, axes, tmp / ONNX_FILE, names)
        except (RuntimeError, TypeError, ValueError, torch.onnx.errors.OnnxExporterError) as err:
            reason = first_line(err)
            raise UserError(
                f"ONNX export of {model_path}: the exporter failed ({type(err).__name__}: {reason}); keep using the torch model"
            ) from None
    info = {
        "format": "onnx",
        "opset": OPSET,
        "inputs": list(axes),
        "outputs": names,
        "classes": len(meta["labels"]),
        "dimensions": len(meta.get("dimensions") or []),
        "sample_rate": sample_rate,
        "min_input_samples": int(getattr(model, "min_input_samples", 1) or 1),
        "preprocessing": "opensmile" if functionals else "waveform",
        **({"smile_set": model.extractor.feature_set} if functionals else {}),
        "padding_changes_output": bool(getattr(model, "padding_changes_output", False)),
        # a Hub id as given; a local folder by its name only (this file is for sharing, not this machine's paths)
        "source": str(model_path) if not Path(model_path).exists() else Path(model_path).resolve().name,
    }
    info["max_abs_difference"] = check_onnx(model, tmp, info, meta, (batch, lengths))
    (tmp / ONNX_META).write_text(json.dumps(info, indent=2))
    for name in (META_FILE, "README.md"):
        if (source / name).is_file():
            shutil.copy(source / name, tmp / name)


def check_onnx(model: nn.Module, folder: Path, info: dict, meta: dict, example: tuple[torch.Tensor, torch.Tensor]) -> float:
    """The largest difference between the torch model's and the graph's probabilities (and dimensions) on
    clips of 2, 1.34 and 0.71 s in one batch, and on the shortest alone; an error above ``TOLERANCE``."""
    runner = OnnxModel(folder, info, meta=meta)
    batch, lengths = example  # example_batch's, the clips the graph was traced on
    worst = 0.0
    cases = [(batch, lengths), (batch[2:, : int(lengths[2])], lengths[2:])]
    if info["padding_changes_output"]:  # group-norm encoders: each clip alone, as EmotionClassifier runs them
        cases = [(batch[i : i + 1, : int(lengths[i])], lengths[i : i + 1]) for i in range(len(lengths))]
    with torch.no_grad():
        for x, n in cases:
            want, got = model(x, n), runner(x, n)
            pairs = [(torch.softmax(want.logits.float(), -1), torch.softmax(got.logits, -1))]
            if want.dimensions is not None:
                pairs.append((want.dimensions.float(), got.dimensions))
            worst = max([worst] + [float((a - b).abs().max()) for a, b in pairs])
    if not np.isfinite(worst) or worst > TOLERANCE:
        raise UserError(
            f"ONNX export of {info['source']}: ONNX Runtime and torch disagree by {worst:.2e} (> {TOLERANCE}) on the check clips; "
            "this backbone's graph is not exported faithfully, keep using the torch model"
        )
    return worst
