"""load_audio: every supported container at several rates and channel counts comes out as 16 kHz mono
float32 that still is the signal that was written; every kind of broken file gives AudioError + reason."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from ser_dist.data.audio import AudioError, load_audio, write_audio

TARGET_RATE = 16000
TONE_HZ = 440.0


def tone(rate: int, seconds: float = 1.0, amplitude: float = 0.5, hz: float = TONE_HZ) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def dominant_frequency(waveform: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return float(np.fft.rfftfreq(len(waveform), 1 / rate)[np.argmax(spectrum)])


def rms(waveform: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))


@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_lossless_wav_resampled_to_16k_matches_the_analytic_tone(tmp_path, rate):
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, tone(rate), rate, subtype="FLOAT")
    waveform = load_audio(path, TARGET_RATE)
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert waveform.shape[0] == TARGET_RATE
    expected = tone(TARGET_RATE)
    # Away from the edges (where the sinc filter sees the implicit zero padding) the band-limited
    # resampler reproduces the tone almost exactly.
    interior = slice(400, -400)
    np.testing.assert_allclose(waveform[interior], expected[interior], atol=2e-3)


def test_resampling_keeps_the_speech_band_and_removes_what_would_alias(tmp_path):
    # 7 kHz is inside the 16 kHz passband and must keep its level; 9.5 kHz is above the new Nyquist
    # and must be filtered out, not folded back to 6.5 kHz (torchaudio's default filter fails both).
    for hz, expected_rms in [(7000.0, 0.5 / np.sqrt(2)), (9500.0, 0.0)]:
        path = tmp_path / f"tone_{int(hz)}.wav"
        sf.write(path, tone(44100, hz=hz), 44100, subtype="FLOAT")
        waveform = load_audio(path, TARGET_RATE)[400:-400]
        assert rms(waveform) == pytest.approx(expected_rms, abs=2e-3)


@pytest.mark.parametrize(
    "suffix, rate, channels",
    [
        (".wav", 8000, 1),
        (".wav", 44100, 2),
        (".flac", 22050, 1),
        (".flac", 44100, 2),
        (".ogg", 22050, 2),
        (".ogg", 44100, 1),
        (".mp3", 44100, 2),
        (".mp3", 22050, 1),
        (".mp3", 8000, 1),
    ],
)
def test_containers_rates_and_channels_become_16k_mono(tmp_path, suffix, rate, channels):
    mono = tone(rate)
    # Stereo: left 0.6, right 0.2 of the same tone, so the channel mean has amplitude 0.4.
    signal = np.stack([mono * 1.2, mono * 0.4], axis=1) if channels == 2 else mono
    path = tmp_path / f"clip{suffix}"
    write_audio(path, signal, rate)
    waveform = load_audio(path, TARGET_RATE)
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    # Lossy codecs pad the stream (encoder delay, last frame); allow up to ~60 ms extra.
    assert TARGET_RATE - 160 <= waveform.shape[0] <= TARGET_RATE + 1000
    assert dominant_frequency(waveform, TARGET_RATE) == pytest.approx(TONE_HZ, abs=3.0)
    expected_amplitude = 0.4 if channels == 2 else 0.5
    core = waveform[1600:-1600]  # skip codec onset/tail transients
    assert rms(core) == pytest.approx(expected_amplitude / np.sqrt(2), rel=0.06)
    assert np.abs(waveform).max() <= 1.0


def test_m4a_goes_through_the_torchcodec_fallback(tmp_path):
    path = tmp_path / "clip.m4a"
    write_audio(path, tone(48000), 48000)
    with pytest.raises(sf.LibsndfileError):
        sf.read(path)  # libsndfile can't open MP4/AAC: the fallback decoder must be what read it
    waveform = load_audio(path, TARGET_RATE)
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert dominant_frequency(waveform, TARGET_RATE) == pytest.approx(TONE_HZ, abs=3.0)
    assert rms(waveform[3200:-3200]) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_same_rate_pcm16_is_returned_without_resampling(tmp_path):
    path = tmp_path / "native.wav"
    signal = tone(TARGET_RATE, seconds=0.5)
    sf.write(path, signal, TARGET_RATE, subtype="PCM_16")
    waveform = load_audio(path, TARGET_RATE)
    assert waveform.shape == signal.shape
    np.testing.assert_allclose(waveform, signal, atol=1 / 32767)


def test_out_of_range_float_samples_are_clipped(tmp_path):
    path = tmp_path / "hot.wav"
    sf.write(path, np.array([0.0, 1.5, -2.0, 0.25] * 100, dtype=np.float32), TARGET_RATE, subtype="FLOAT")
    waveform = load_audio(path, TARGET_RATE)
    assert waveform.max() == 1.0 and waveform.min() == -1.0
    assert waveform[3] == pytest.approx(0.25)


def test_silent_clip_is_valid_audio(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(8000, dtype=np.float32), 8000)
    waveform = load_audio(path, TARGET_RATE)
    assert waveform.shape == (TARGET_RATE,)
    assert not waveform.any()


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _truncated_header(path):
    sf.write(path, tone(TARGET_RATE), TARGET_RATE)
    path.write_bytes(path.read_bytes()[:20])  # RIFF header and half of the 'fmt ' chunk


def _empty_file(path):
    path.write_bytes(b"")


def _text(path):
    path.write_text("this is a text file, not an MPEG stream\n" * 40)


def _zero_samples(path):
    sf.write(path, np.zeros(0, dtype=np.float32), TARGET_RATE)


def _all_nan(path):
    sf.write(path, np.full(800, np.nan, dtype=np.float32), TARGET_RATE, subtype="FLOAT")


def _some_inf(path):
    signal = tone(TARGET_RATE, seconds=0.1)
    signal[10] = np.inf
    sf.write(path, signal, TARGET_RATE, subtype="FLOAT")


def _corrupt_flac(path):
    sf.write(path, tone(TARGET_RATE, seconds=2.0), TARGET_RATE)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "name, make, reason",
    [
        ("random.wav", _random_bytes, "not an audio file (format not recognised)"),
        ("header.wav", _truncated_header, "truncated/corrupt: Error in WAV/W64/RF64 file. Malformed 'fmt ' chunk"),
        ("empty.wav", _empty_file, "empty file (0 bytes)"),
        ("notes.mp3", _text, "not an audio file (format not recognised)"),
        ("zero.wav", _zero_samples, "empty (0 samples)"),
        ("nan.wav", _all_nan, "all samples are NaN/Inf"),
        ("inf.wav", _some_inf, "1 of 1600 samples are NaN/Inf"),
        ("half.flac", _corrupt_flac, "truncated/corrupt: flac decoder lost sync"),
    ],
)
def test_unusable_files_raise_audio_error_with_reason(tmp_path, name, make, reason):
    path = tmp_path / name
    make(path)
    with pytest.raises(AudioError) as caught:
        load_audio(path, TARGET_RATE)
    assert caught.value.reason == reason
    assert caught.value.path == str(path)
    assert str(caught.value) == f"{path}: {reason}"


def test_missing_file_is_an_audio_error(tmp_path):
    with pytest.raises(AudioError, match="file not found"):
        load_audio(tmp_path / "nowhere.wav")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command to make a video file")
def test_media_file_without_audio_stream(tmp_path):
    path = tmp_path / "video.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=duration=0.2:size=32x32", "-y", str(path)],
        check=True,
    )
    with pytest.raises(AudioError) as caught:
        load_audio(path)
    assert caught.value.reason == "not audio (the file has no audio stream)"


def test_audio_error_survives_pickling():
    # Pool workers send errors back to the parent by pickling them.
    error = pickle.loads(pickle.dumps(AudioError("/data/a.wav", "empty (0 samples)")))
    assert (error.path, error.reason) == ("/data/a.wav", "empty (0 samples)")


def test_write_audio_accepts_torch_tensors_and_makes_folders(tmp_path):
    import torch

    path = tmp_path / "nested" / "dir" / "clip.flac"
    write_audio(path, torch.from_numpy(tone(TARGET_RATE, seconds=0.25)), TARGET_RATE)
    assert sf.info(path).samplerate == TARGET_RATE and sf.info(path).frames == 4000
    with pytest.raises(ValueError, match="shape"):
        write_audio(tmp_path / "bad.wav", np.zeros((2, 2, 2)), TARGET_RATE)
    assert not os.path.exists(tmp_path / "bad.wav")
