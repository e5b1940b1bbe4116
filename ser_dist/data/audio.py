"""Reading and writing audio clips: one float32 mono waveform in [-1, 1] at the model's rate.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis/Opus and MP3 at several thousand short clips a
second per core; torchcodec (FFmpeg) is the fallback for what libsndfile can't open (M4A/AAC, WebM,
WMA, MP3 variants mpg123 rejects). Both hand back the file's own rate, so resampling is one code path
(torchaudio's windowed sinc, see resample.py) whichever decoder read the file.

A clip that can't be decoded raises ``AudioError`` with the path and a short reason; callers skip and
report it rather than stop the run, so it is deliberately not a ``UserError``.

Memory follows the audio a clip holds and the crop asked for, never what its header claims: a native
rate outside 1000-384000 Hz is a corrupt header (a WAV claiming 1 Hz would be upsampled 16000-fold) and
is refused before anything is read; frames are read in blocks, at most the crop's worth at the native
rate (plus the resampling filter's reach), and only those are resampled.
"""

from __future__ import annotations

import errno
import io
import math
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import torch

from .records import not_utf8_name
from .resample import native_frames, resample, resampling_rate

PathLike = str | os.PathLike
# What the decoders read: a file, or a whole encoded clip held in memory (a Hugging Face ``Audio`` row's bytes).
Source = Path | bytes

# A native rate outside this range is a corrupt header, not audio (data.sample_rate takes the same range).
MIN_NATIVE_RATE = 1000
MAX_NATIVE_RATE = 384000
# Frames read per call: a header that claims hours of audio costs only what the file holds.
_READ_BLOCK_FRAMES = 1 << 20
# A decoder that stops this far short of the frame count its header declares marks a truncated file
# (some slack: MP3 frame counts from a Xing header are estimates to within a frame or two).
_SHORT_FRACTION, _SHORT_SECONDS = 0.01, 0.05

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


class Decoded(NamedTuple):
    samples: np.ndarray  # float32 mono at the requested rate in [-1, 1], at most ``max_samples`` long
    num_samples: int  # the whole clip's length at that rate, before the crop
    truncated: str | None  # set when the file holds less audio than its header declares; the rest is used


def decoded_or_reason(decode, *args):
    """``decode(*args)``, or the reason it failed: the ``AudioError``'s, or "decoder error: ..." for a decoder
    failing in an unforeseen way. Callers skip or report that one clip, never stop on it."""
    try:
        return decode(*args)
    except AudioError as err:
        return err.reason
    except Exception as err:
        return f"decoder error: {type(err).__name__}: {err}"


def load_audio(path: PathLike, sample_rate: int = 16000, max_seconds: float | None = None) -> np.ndarray:
    """Decode ``path`` to a float32 mono waveform at ``sample_rate``, values clipped to [-1, 1]; with
    ``max_seconds``, its first ``max_seconds`` only (read and resampled alone, see ``decode_audio``)."""
    max_samples = None if max_seconds is None else max(1, int(round(max_seconds * sample_rate)))
    return decode_audio(path, sample_rate, max_samples).samples


def decode_audio(path: PathLike, sample_rate: int = 16000, max_samples: int | None = None) -> Decoded:
    """Decode ``path`` to at most ``max_samples`` float32 mono samples at ``sample_rate`` (all of it when
    None), with the whole clip's length and a note when the file is truncated.

    Channels are averaged. Raises ``AudioError`` for a missing, empty, unrecognised or corrupt file, a
    native rate outside 1000-384000 Hz (a corrupt header), a stream with 0 samples, NaN/Inf samples in
    what is kept (they would turn the loss into NaN), or a path that is not valid UTF-8 (every path a run
    keeps goes into UTF-8 text files). A silent (all-zero) clip is valid audio and is returned as is.

    A file that holds less audio than its header declares (a WAV whose data chunk claims more bytes than
    follow it, an MP3 or other stream that ends early) is kept: the audio present is returned, and
    ``truncated`` says how much the header claimed, so callers can report it. Past the crop only a WAV's
    header is checked (nothing there is read); FFmpeg-only formats (M4A, WebM, ...) are not checked.

    With ``max_samples``, only the frames the crop needs are read at the native rate (plus the resampling
    filter's reach past the crop, so the kept samples equal those of resampling the whole clip), and only
    those are resampled: memory follows the crop, whatever the clip's length or rate.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, _not_a_file(path))
    bad_name = not_utf8_name(str(path))
    if bad_name is not None:
        raise AudioError(path, bad_name)
    if not os.access(path, os.R_OK):
        raise AudioError(path, "not readable (permission denied)")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    return _mono_at_rate(path, _decode(path, path, sample_rate, max_samples), sample_rate, max_samples)


def decode_audio_bytes(data: bytes, name: str, sample_rate: int = 16000, max_samples: int | None = None) -> Decoded:
    """``decode_audio`` for an encoded clip held in memory (WAV, FLAC, MP3, ... bytes, such as a Hugging Face
    ``Audio`` row's ``bytes``): the same decoders, checks, crop, resampling and ``AudioError`` reasons, with
    ``name`` (e.g. ``hf://corpus/train/12``) standing for the path in errors. No temporary file is written."""
    if not data:
        raise AudioError(name, "empty (0 bytes)")
    return _mono_at_rate(name, _decode(bytes(data), name, sample_rate, max_samples), sample_rate, max_samples)


def _mono_at_rate(name: PathLike, decoded: tuple, sample_rate: int, max_samples: int | None) -> Decoded:
    """``_decode``'s frames as a ``Decoded``: checked for samples and NaN/Inf, averaged to mono, resampled, cropped, clipped."""
    waveform, native_rate, total, truncated = decoded
    if waveform.shape[0] == 0:
        raise AudioError(name, "empty (0 samples)")
    finite = np.isfinite(waveform)
    if not finite.all():
        if not finite.any():
            raise AudioError(name, "all samples are NaN/Inf")
        raise AudioError(name, f"{int((~finite).sum())} of {finite.size} samples are NaN/Inf")
    mono = waveform.mean(axis=1, dtype=np.float32) if waveform.shape[1] > 1 else waveform[:, 0]
    num_samples = total
    if native_rate != sample_rate:
        from_rate = resampling_rate(native_rate, sample_rate)
        mono = resample(mono, from_rate, sample_rate)
        num_samples = math.ceil(total * sample_rate / from_rate)  # torchaudio's output length for the whole clip
    if max_samples is not None:
        mono = mono[:max_samples]
    # Float files may exceed full scale and sinc resampling overshoots slightly on clipped input.
    return Decoded(np.clip(mono, -1.0, 1.0, out=np.ascontiguousarray(mono, dtype=np.float32)), int(num_samples), truncated)


def _check_rate(path: PathLike, rate) -> int:
    """The native rate, or ``AudioError`` when the header's rate can't be a recording's (before any frame is read)."""
    if not rate or not MIN_NATIVE_RATE <= rate <= MAX_NATIVE_RATE:
        raise AudioError(
            path,
            f"implausible sample rate in the file's header ({rate} Hz; audio is {MIN_NATIVE_RATE}-{MAX_NATIVE_RATE} Hz): "
            "the header is corrupt; re-export the file",
        )
    return int(rate)


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


def _decode(source: Source, path: PathLike, sample_rate: int, max_samples: int | None) -> tuple[np.ndarray, int, int, str | None]:
    """(frames [T, C] float32 at the native rate, cut to what ``max_samples`` needs; native rate; frames in the
    whole clip; truncation note) from soundfile, else torchcodec. ``path`` names ``source`` in errors."""
    try:
        return _decode_soundfile(source, path, sample_rate, max_samples)
    except sf.LibsndfileError as err:
        sndfile_error = err
    except (RuntimeError, ValueError) as err:  # errors raised while reading frames after a good open
        sndfile_error = err
    try:
        return _decode_torchcodec(source, path, sample_rate, max_samples)
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


def _decode_soundfile(source: Source, path: PathLike, sample_rate: int, max_samples: int | None) -> tuple[np.ndarray, int, int, str | None]:
    with sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as f:
        rate = _check_rate(path, f.samplerate)
        declared = max(0, int(f.frames))
        crop = native_frames(max_samples, rate, sample_rate)
        wanted = declared if crop is None else min(declared, crop)
        blocks, got = [], 0
        while got < wanted:
            block = f.read(min(_READ_BLOCK_FRAMES, wanted - got), dtype="float32", always_2d=True)
            if not len(block):
                break
            blocks.append(block)
            got += len(block)
        channels, is_wav = f.channels, f.format in ("WAV", "WAVEX")
    data = np.concatenate(blocks) if len(blocks) > 1 else blocks[0] if blocks else np.zeros((0, channels), np.float32)
    if got < wanted:  # the stream ended before the frame count its header declares
        note = None
        if wanted - got > max(_SHORT_FRACTION * declared, _SHORT_SECONDS * rate):
            note = _truncated_note(declared / rate, got / rate)
        return data, rate, got, note
    shortfall = _wav_shortfall(source) if is_wav else None  # libsndfile counts the frames a WAV holds, not those it claims
    if shortfall is not None:
        claimed_bytes, block_align = shortfall
        return data, rate, declared, _truncated_note(claimed_bytes / block_align / rate, declared / rate)
    return data, rate, declared, None


def _truncated_note(claimed_seconds: float, held_seconds: float) -> str:
    return (
        f"truncated: the header declares {claimed_seconds:.3g} s of audio, the file holds {held_seconds:.3g} s; the audio present is used"
    )


def _wav_shortfall(source: Source) -> tuple[int, int] | None:
    """(bytes the data chunk declares, block align) for a RIFF/WAVE file whose data chunk claims more bytes
    than follow it; None for a whole file. A size of 0 or 0xFFFFFFFF is a streaming writer's "to the end"."""
    with io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return None
        position, block_align = 12, 0
        while position + 8 <= size:
            f.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"fmt ":
                fmt = f.read(16)
                block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else 0
            elif chunk_id == b"data":
                held = size - position - 8
                if chunk_size in (0, 0xFFFFFFFF) or chunk_size <= held or not block_align:
                    return None
                return chunk_size, block_align
            position += 8 + chunk_size + (chunk_size & 1)
    return None


class _TorchcodecOpenError(Exception):
    pass


def _decode_torchcodec(
    source: Source, path: PathLike, sample_rate: int, max_samples: int | None
) -> tuple[np.ndarray, int, int, str | None]:
    from torchcodec.decoders import AudioDecoder

    try:
        decoder = AudioDecoder(source if isinstance(source, bytes) else str(source))
    except (RuntimeError, ValueError) as err:
        message = _torchcodec_message(err)
        # A media file FFmpeg can open but without an audio stream (a video-only mp4, an image).
        if "audio stream" in message.lower():
            raise AudioError(path, "not audio (the file has no audio stream)") from None
        raise _TorchcodecOpenError(message) from None
    metadata = decoder.metadata
    crop = None
    if metadata.sample_rate:
        crop = native_frames(max_samples, _check_rate(path, metadata.sample_rate), sample_rate)
    try:
        if crop is None:
            samples = decoder.get_all_samples()
        else:  # timestamps start where the stream does (an MP3's encoder delay); a little extra, cut below
            begin = metadata.begin_stream_seconds or 0.0
            samples = decoder.get_samples_played_in_range(0.0, begin + (crop + metadata.sample_rate // 10) / metadata.sample_rate)
    except RuntimeError as err:
        if "No audio frames were decoded" not in str(err):
            raise
        if not metadata.duration_seconds:
            raise AudioError(path, "empty (0 samples)") from None
        raise AudioError(path, "truncated/corrupt: no audio frame could be decoded") from None
    rate = _check_rate(path, samples.sample_rate)
    # AudioSamples.data is [channels, time]; keep soundfile's [time, channels] layout.
    data = samples.data.T.contiguous().numpy().astype(np.float32, copy=False)
    total = data.shape[0]
    if crop is not None and total > crop:
        data = data[:crop]
        # The rest was not decoded: the header's duration (from the first sample) stands for the whole clip.
        duration = (metadata.duration_seconds or 0.0) - (metadata.begin_stream_seconds or 0.0)
        total = max(total, int(round(duration * rate)))
    return data, rate, total, None


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
        [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "f32le",
            "-ar",
            str(sample_rate),
            "-ac",
            str(channels),
            "-i",
            "pipe:0",
            str(path),
        ],
        input=data.tobytes(),
        check=True,
    )
