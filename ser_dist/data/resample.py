"""Band-limited resampling to the model's rate, with a kernel whose size is bounded whatever the rates.

``decode_audio`` (audio.py) resamples every clip through ``resample(waveform, resampling_rate(native, new), new)``
and reads at most ``native_frames(...)`` frames for a crop, so a clip costs what its crop needs.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

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

# Largest sinc kernel (output phases x taps) built for one pair of rates: ~130 MB while it is built. A
# rate pair with a large reduced ratio (47999 -> 16000 Hz: 16000 x 48405 taps, 3 GB) resamples from the
# nearest rate within 0.5 % that fits instead (48000 Hz: a 0.002 % speed change).
_MAX_KERNEL_ELEMENTS = 1 << 22
_RATE_TOLERANCE = 0.005


def native_frames(max_samples: int | None, native_rate: int, sample_rate: int) -> int | None:
    """Frames at ``native_rate`` that ``max_samples`` at ``sample_rate`` need, with the resampling filter's
    reach past the crop (torchaudio pads by the kernel's half-width plus one input block)."""
    if max_samples is None:
        return None
    if native_rate == sample_rate:
        return max_samples
    from_rate = resampling_rate(native_rate, sample_rate)
    orig, _, width = _kernel_shape(from_rate, sample_rate)
    return math.ceil(max_samples * native_rate / sample_rate) + width + 2 * orig


def _kernel_shape(orig_rate: int, new_rate: int) -> tuple[int, int, int]:
    """(input block, output phases, half-width in input frames) of torchaudio's kernel for these rates."""
    g = math.gcd(int(orig_rate), int(new_rate))
    orig, new = orig_rate // g, new_rate // g
    base = min(orig, new) * RESAMPLING["rolloff"]
    return orig, new, math.ceil(RESAMPLING["lowpass_filter_width"] * orig / base)


@functools.lru_cache(maxsize=256)
def resampling_rate(orig_rate: int, new_rate: int) -> int:
    """The rate to resample from: ``orig_rate``, unless that pair needs a kernel over ``_MAX_KERNEL_ELEMENTS``;
    then the nearest rate within 0.5 % that does not (at worst the one with the smallest kernel)."""

    def elements(rate: int) -> int:
        orig, new, width = _kernel_shape(rate, new_rate)
        return new * (2 * width + orig)

    if elements(orig_rate) <= _MAX_KERNEL_ELEMENTS:
        return int(orig_rate)
    best = int(orig_rate)
    for step in range(1, max(1, int(orig_rate * _RATE_TOLERANCE)) + 1):
        for rate in (orig_rate - step, orig_rate + step):
            if elements(rate) <= _MAX_KERNEL_ELEMENTS:
                return int(rate)
            if elements(rate) < elements(best):
                best = int(rate)
    return best


def resample(waveform: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling of a 1-D float32 waveform (see ``RESAMPLING``); ``decode_audio`` passes
    ``resampling_rate(native, new_rate)`` as ``orig_rate``, which bounds the kernel's size."""
    tensor = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    with torch.inference_mode():
        return _resampler(int(orig_rate), int(new_rate))(tensor).numpy()


@functools.lru_cache(maxsize=16)
def _resampler(orig_rate: int, new_rate: int):
    # torchaudio.functional.resample rebuilds the filter bank on every call, which for 44.1 or
    # 22.05 -> 16 kHz costs more than the filtering itself; corpora use only a few rates.
    import torchaudio.transforms

    return torchaudio.transforms.Resample(orig_rate, new_rate, **RESAMPLING)
