"""Reading and writing audio clips: one float32 mono waveform in [-1, 1] at the model's rate.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis/Opus and MP3 at several thousand short clips a
second per core; torchcodec (FFmpeg) is the fallback for what libsndfile can't open (M4A/AAC, WebM,
WMA, MP3 variants mpg123 rejects). Both hand back the file's own rate, so resampling is one code path
(torchaudio's windowed sinc, see ``RESAMPLING``) whichever decoder read the file.

A clip that can't be decoded raises ``AudioError`` with the path and a short reason; callers skip and
report it rather than stop the run, so it is deliberately not a ``UserError``.
"""
from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
import torch

PathLike = Union[str, os.PathLike]

# Kaiser-windowed sinc with librosa's "kaiser_best" settings: flat to ~0.95 of the new Nyquist and
# > 100 dB stopband. torchaudio's default (width 6, Hann) lets 9 kHz alias into 16 kHz output at -17 dB
# and attenuates 7 kHz by 2 dB; since clips are decoded once and cached, the extra cost (~15 ms per
# 10 s clip) doesn't matter.
RESAMPLING = dict(
    lowpass_filter_width=64,
    rolloff=0.9475937167399596,
    resampling_method="sinc_interp_kaiser",
    beta=14.769656459379492,
)

# libsndfile error codes meaning "not a format I can open" (as opposed to "a WAV/FLAC/... I recognise,
# but broken"): 1 is SF_ERR_UNRECOGNISED_FORMAT; 7 is what its MP3 reader reports when mpg123 finds no
# MPEG frame (its message, "File does not exist...", is misleading, so it is never shown).
_SNDFILE_UNRECOGNISED = {1, 7}
# torchcodec prefixes errors with the C++ function and source location: "fn, /path/File.cpp:41, msg".
_TORCHCODEC_PREFIX = re.compile(r"^\w+, \S+\.cpp:\d+, ")


class AudioError(Exception):
    """A clip that can't be used as audio. ``reason`` is short and human: 'empty (0 samples)'."""

    def __init__(self, path: PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # rebuilt from (path, reason) when it crosses a process boundary
        return (AudioError, (self.path, self.reason))


def load_audio(path: PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Decode ``path`` to a float32 mono waveform at ``sample_rate``, values clipped to [-1, 1].

    Channels are averaged. Raises ``AudioError`` for a missing, empty, unrecognised or corrupt file,
    a stream with 0 samples, or one with NaN/Inf samples (they would turn the loss into NaN). A silent
    (all-zero) clip is valid audio and is returned as is.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, _not_a_file(path))
    if not os.access(path, os.R_OK):
        raise AudioError(path, "not readable (permission denied)")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    waveform, native_rate = _decode(path)
    if waveform.shape[0] == 0:
        raise AudioError(path, "empty (0 samples)")
    finite = np.isfinite(waveform)
    if not finite.all():
        if not finite.any():
            raise AudioError(path, "all samples are NaN/Inf")
        raise AudioError(path, f"{int((~finite).sum())} of {finite.size} samples are NaN/Inf")
    mono = waveform.mean(axis=1, dtype=np.float32) if waveform.shape[1] > 1 else waveform[:, 0]
    if native_rate != sample_rate:
        mono = resample(mono, native_rate, sample_rate)
    # Float files may exceed full scale and sinc resampling overshoots slightly on clipped input.
    return np.clip(mono, -1.0, 1.0, out=np.ascontiguousarray(mono, dtype=np.float32))


def _not_a_file(path: Path) -> str:
    if path.is_dir():
        return "a folder, not an audio file"
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as err:
            if err.errno == errno.ELOOP:
                return "link loop (the link points back to itself)"
        return f"broken link (its target {os.readlink(path)} does not exist)"
    if path.exists():
        return "not a regular file (a device, pipe or socket)"
    return "file not found"


def resample(waveform: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling of a 1-D float32 waveform (see ``RESAMPLING``)."""
    tensor = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    with torch.inference_mode():
        return _resampler(int(orig_rate), int(new_rate))(tensor).numpy()


@functools.lru_cache(maxsize=16)
def _resampler(orig_rate: int, new_rate: int):
    # torchaudio.functional.resample rebuilds the filter bank on every call, which for 44.1 or
    # 22.05 -> 16 kHz costs more than the filtering itself; corpora use only a few rates.
    import torchaudio.transforms

    return torchaudio.transforms.Resample(orig_rate, new_rate, **RESAMPLING)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """(samples [T, C] float32, native rate) from soundfile, else torchcodec."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return data, int(rate)
    except sf.LibsndfileError as err:
        sndfile_error = err
    except (RuntimeError, ValueError) as err:  # errors raised while reading frames after a good open
        sndfile_error = err
    try:
        return _decode_torchcodec(path)
    except _TorchcodecOpenError:
        # Neither decoder recognised the container. If libsndfile recognised it, its message is the
        # specific one ("Malformed 'fmt ' chunk", "flac decoder lost sync").
        if getattr(sndfile_error, "code", 1) in _SNDFILE_UNRECOGNISED:
            raise AudioError(path, "not an audio file (format not recognised)") from None
        raise AudioError(path, f"truncated/corrupt: {_sndfile_message(sndfile_error)}") from None
    except AudioError:
        raise
    except Exception as err:  # FFmpeg opened the container but could not decode the stream
        if getattr(sndfile_error, "code", 1) not in _SNDFILE_UNRECOGNISED:
            raise AudioError(path, f"truncated/corrupt: {_sndfile_message(sndfile_error)}") from None
        raise AudioError(path, f"truncated/corrupt: {_torchcodec_message(err)}") from None


class _TorchcodecOpenError(Exception):
    pass


def _decode_torchcodec(path: Path) -> tuple[np.ndarray, int]:
    from torchcodec.decoders import AudioDecoder

    try:
        decoder = AudioDecoder(str(path))
    except (RuntimeError, ValueError) as err:
        message = _torchcodec_message(err)
        # A media file FFmpeg can open but without an audio stream (a video-only mp4, an image).
        if "audio stream" in message.lower():
            raise AudioError(path, "not audio (the file has no audio stream)") from None
        raise _TorchcodecOpenError(message) from None
    try:
        samples = decoder.get_all_samples()
    except RuntimeError as err:
        if "No audio frames were decoded" not in str(err):
            raise
        if not decoder.metadata.duration_seconds:
            raise AudioError(path, "empty (0 samples)") from None
        raise AudioError(path, "truncated/corrupt: no audio frame could be decoded") from None
    # AudioSamples.data is [channels, time]; keep soundfile's [time, channels] layout.
    return samples.data.T.contiguous().numpy().astype(np.float32, copy=False), int(samples.sample_rate)


def _sndfile_message(err: Exception) -> str:
    # LibsndfileError.error_string is libsndfile's message without the "Error opening 'path': " prefix.
    message = str(getattr(err, "error_string", None) or err).strip().rstrip(".")
    return re.sub(r"^Error\s*:\s*", "", message)


def _torchcodec_message(err: Exception) -> str:
    message = _TORCHCODEC_PREFIX.sub("", str(err).strip())
    return message.split("\n")[0].strip().rstrip(".")


def write_audio(path: PathLike, waveform, sample_rate: int) -> None:
    """Write a waveform ([T] mono or [T, C], float in [-1, 1]); the format follows the file extension.

    soundfile writes WAV, FLAC, OGG (Vorbis), OPUS (in Ogg) and MP3; other extensions (.m4a, .aac,
    .webm, ...) go through torchcodec's FFmpeg encoder, then the ``ffmpeg`` command.
    """
    path = Path(path)
    data = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    data = np.ascontiguousarray(data, dtype=np.float32)
    if data.ndim not in (1, 2):
        raise ValueError(f"write_audio: waveform must be [T] or [T, C], got shape {data.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".opus":
        sf.write(str(path), data, sample_rate, format="OGG", subtype="OPUS")
        return
    if suffix.lstrip(".").upper() in sf.available_formats():  # WAV, FLAC, OGG, MP3, AIFF, ...
        sf.write(str(path), data, sample_rate)
        return
    channels_first = torch.from_numpy(data[None, :] if data.ndim == 1 else data.T.copy())
    try:
        from torchcodec.encoders import AudioEncoder

        AudioEncoder(channels_first, sample_rate=sample_rate).to_file(str(path))
        return
    except Exception as err:  # an FFmpeg build without this encoder, or torchcodec unavailable
        encoder_error = err
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError(f"{path}: can't write {suffix} audio (torchcodec: {encoder_error}; no ffmpeg on PATH)")
    channels = 1 if data.ndim == 1 else data.shape[1]
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "pipe:0", str(path)],
        input=data.tobytes(),
        check=True,
    )
