"""Tests of streaming_aum.audio_io: file reading, dtype/channel conversion, resampling, validation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as taf

from streaming_aum.audio_constants import FRAME_SAMPLES, SAMPLE_RATE
from streaming_aum.audio_io import (
    MAX_CHANNELS,
    check_sample_rate,
    load_audio,
    resample,
    to_float32,
    to_mono,
    validate_waveform,
)
from streaming_aum.errors import AudioInputError

FIXTURES = Path(__file__).parent / "fixtures" / "aum_official"
SAMPLE_WAV = FIXTURES / "sample.wav"


def _pcm16(n: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Random int16 PCM, shape (n, channels) as soundfile writes it, full range included."""
    rng = np.random.default_rng(seed)
    data = rng.integers(-32768, 32768, size=(n, channels), dtype=np.int64).astype(np.int16)
    data[0, 0], data[1 % n, 0] = -32768, 32767
    return data


# ---------------------------------------------------------------------------------------------
# load_audio
# ---------------------------------------------------------------------------------------------


def test_sample_wav_is_int16_over_32768() -> None:
    """The fixture decodes to its raw int16 samples / 32768 (torchaudio.load's normalisation)."""
    raw, rate = sf.read(SAMPLE_WAV, dtype="int16")
    assert rate == SAMPLE_RATE and raw.ndim == 1 and raw.shape[0] == 160_029
    audio = load_audio(SAMPLE_WAV)
    assert audio.dtype == torch.float32 and audio.shape == (160_029,)
    expected = torch.from_numpy(raw.astype(np.float64) / 32768.0).to(torch.float32)
    assert torch.equal(audio, expected)


@pytest.mark.parametrize(
    ("fmt", "subtype", "atol"),
    [("WAV", "PCM_16", 0.0), ("FLAC", "PCM_16", 0.0), ("WAV", "PCM_32", 0.0), ("WAV", "FLOAT", 0.0)],
)
def test_lossless_formats_round_trip(tmp_path: Path, fmt: str, subtype: str, atol: float) -> None:
    data = _pcm16(3000)
    path = tmp_path / f"x.{fmt.lower()}"
    # float files hold the same values as floats (soundfile writes int16 arrays to FLOAT raw)
    payload = data.astype(np.float32) / 32768.0 if subtype == "FLOAT" else data
    sf.write(path, payload, SAMPLE_RATE, format=fmt, subtype=subtype)
    audio = load_audio(path)
    expected = torch.from_numpy(data[:, 0].astype(np.float64) / 32768.0).to(torch.float32)
    torch.testing.assert_close(audio, expected, atol=atol, rtol=0)


def test_int32_pcm_scaling(tmp_path: Path) -> None:
    """32-bit PCM is value / 2**31, exactly (checked on values that are not multiples of 2**16)."""
    rng = np.random.default_rng(1)
    data = rng.integers(-(2**31), 2**31, size=2000, dtype=np.int64).astype(np.int32)
    path = tmp_path / "x32.wav"
    sf.write(path, data, SAMPLE_RATE, subtype="PCM_32")
    expected = torch.from_numpy(data.astype(np.float64) / 2**31).to(torch.float32)
    torch.testing.assert_close(load_audio(path), expected, atol=1e-7, rtol=0)


def test_ogg_vorbis_is_lossy_but_close(tmp_path: Path) -> None:
    """A 440 Hz tone through OGG/Vorbis comes back at the same level and frequency."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    path = tmp_path / "x.ogg"
    sf.write(path, tone, SAMPLE_RATE, format="OGG", subtype="VORBIS")
    audio = load_audio(path).numpy()
    assert abs(audio.shape[0] - tone.shape[0]) <= 2048
    m = min(audio.shape[0], tone.shape[0])
    rms_ref = float(np.sqrt(np.mean(tone[:m] ** 2)))
    rms = float(np.sqrt(np.mean(audio[:m] ** 2)))
    assert rms == pytest.approx(rms_ref, rel=0.05)
    spectrum = np.abs(np.fft.rfft(audio[:m]))
    assert np.argmax(spectrum) * SAMPLE_RATE / m == pytest.approx(440.0, abs=2.0)


def test_stereo_mix_modes(tmp_path: Path) -> None:
    data = _pcm16(1000, channels=2, seed=3)
    path = tmp_path / "stereo.wav"
    sf.write(path, data, SAMPLE_RATE, subtype="PCM_16")
    f = data.astype(np.float64) / 32768.0
    first = load_audio(path, mix="first")
    mean = load_audio(path, mix="mean")
    assert torch.equal(first, torch.from_numpy(f[:, 0]).to(torch.float32))
    torch.testing.assert_close(mean, torch.from_numpy(f.mean(axis=1)).to(torch.float32), atol=1e-7, rtol=0)
    assert not torch.allclose(first, mean)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_load_resamples_like_torchaudio(tmp_path: Path, rate: int) -> None:
    data = _pcm16(rate // 4, seed=rate)
    path = tmp_path / f"r{rate}.wav"
    sf.write(path, data, rate, subtype="PCM_16")
    audio = load_audio(path)
    x = torch.from_numpy(data[:, 0].astype(np.float64) / 32768.0).to(torch.float32)
    expected = taf.resample(x, rate, SAMPLE_RATE)
    assert audio.shape[0] == math.ceil(x.shape[0] * SAMPLE_RATE / rate)
    torch.testing.assert_close(audio, expected, atol=1e-6, rtol=0)
    # target_rate is honoured too: 16 kHz -> 8 kHz halves the length
    assert load_audio(SAMPLE_WAV, target_rate=8000).shape[0] == math.ceil(160_029 / 2)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioInputError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioInputError, match="directory"):
        load_audio(tmp_path)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x00not really a wave file" * 10)
    with pytest.raises(AudioInputError, match=r"cannot read audio file .*garbage\.wav.*FLAC.*OGG.*WAV"):
        load_audio(garbage)
    zero = tmp_path / "zero.flac"
    zero.write_bytes(b"")
    with pytest.raises(AudioInputError, match="cannot read"):
        load_audio(zero)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), dtype=np.int16), SAMPLE_RATE, subtype="PCM_16")
    with pytest.raises(AudioInputError, match="no samples"):
        load_audio(empty)
    nan = tmp_path / "nan.wav"
    bad = np.zeros(100, dtype=np.float32)
    bad[[17, 40, 41]] = [np.nan, np.inf, -np.inf]
    sf.write(nan, bad, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioInputError, match=r"3 NaN/Inf samples \(first at index 17\)"):
        load_audio(nan)
    with pytest.raises(AudioInputError, match="mix"):
        load_audio(SAMPLE_WAV, mix="left")  # type: ignore[arg-type]
    with pytest.raises(AudioInputError, match="target_rate"):
        load_audio(SAMPLE_WAV, target_rate=0)


# ---------------------------------------------------------------------------------------------
# to_float32 / to_mono
# ---------------------------------------------------------------------------------------------

_INTS = np.array([-32768, -1, 0, 1, 12345, 32767], dtype=np.int16)


@pytest.mark.parametrize("as_torch", [False, True])
def test_to_float32_scaling(as_torch: bool) -> None:
    conv = (lambda a: torch.from_numpy(a)) if as_torch else (lambda a: a)
    assert to_float32(conv(_INTS)).tolist() == [v / 32768 for v in _INTS.tolist()]
    i32 = np.array([-(2**31), -1, 0, 2**31 - 1, 123456789], dtype=np.int32)
    expected32 = np.float32(i32.astype(np.float64) / 2**31)
    assert np.array_equal(to_float32(conv(i32)).numpy(), expected32)
    u8 = np.array([0, 1, 127, 128, 129, 255], dtype=np.uint8)
    assert to_float32(conv(u8)).tolist() == [(v - 128) / 128 for v in u8.tolist()]
    for dt in (np.float16, np.float32, np.float64):
        f = np.array([-1.5, 0.25, 3.0], dtype=dt)
        out = to_float32(conv(f))
        assert out.dtype == torch.float32 and out.tolist() == [-1.5, 0.25, 3.0]


def test_to_float32_keeps_shape_and_handles_odd_numpy_layouts() -> None:
    big_endian = _INTS.astype(">i2")
    assert to_float32(big_endian).tolist() == [v / 32768 for v in _INTS.tolist()]
    readonly = np.arange(6, dtype=np.float64).reshape(2, 3)
    readonly.setflags(write=False)
    out = to_float32(readonly[:, ::2])  # non-contiguous, read-only
    assert out.shape == (2, 2) and out.tolist() == [[0.0, 2.0], [3.0, 5.0]]


@pytest.mark.parametrize(
    "bad",
    [
        np.array([True, False]),
        np.array([1 + 2j]),
        np.array([1, 2], dtype=np.int64),
        np.array([1, 2], dtype=np.int8),
        np.array(["a"], dtype=object),
        torch.tensor([1, 2], dtype=torch.int64),
        torch.tensor([1.0], dtype=torch.complex64),
    ],
)
def test_to_float32_rejects_other_dtypes(bad: object) -> None:
    with pytest.raises(AudioInputError, match=r"dtype .*accepted dtypes are int16, int32, uint8, float16"):
        to_float32(bad)  # type: ignore[arg-type]


def test_to_float32_rejects_non_arrays() -> None:
    with pytest.raises(AudioInputError, match="numpy array or a torch tensor; got list"):
        to_float32([0.0, 1.0])  # type: ignore[arg-type]


def test_to_mono() -> None:
    x = np.array([[0.5, -1.0, 0.25], [0.1, 0.2, 0.3]], dtype=np.float64)
    assert torch.allclose(to_mono(x), torch.tensor([0.3, -0.4, 0.275]), atol=1e-7)
    assert to_mono(x, mix="first").tolist() == [0.5, -1.0, 0.25]
    assert to_mono(_INTS).tolist() == [v / 32768 for v in _INTS.tolist()]
    assert to_mono(torch.tensor([[1.0, 2.0]])).tolist() == [1.0, 2.0]
    with pytest.raises(AudioInputError, match=r"\(1, 2, 3\) \(3-D\); accepted shapes are \(n,\) and \(channels, n\)"):
        to_mono(np.zeros((1, 2, 3), dtype=np.float32))
    with pytest.raises(AudioInputError, match="transpose"):
        to_mono(np.zeros((1000, MAX_CHANNELS + 1), dtype=np.float32))
    with pytest.raises(AudioInputError, match="no channels"):
        to_mono(np.zeros((0, 10), dtype=np.float32))
    with pytest.raises(AudioInputError, match="mix"):
        to_mono(x, mix="median")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# resample / rates / validate_waveform
# ---------------------------------------------------------------------------------------------


def test_resample_matches_torchaudio_and_preserves_a_tone() -> None:
    rate = 48000
    t = torch.arange(rate, dtype=torch.float64) / rate
    tone = (0.3 * torch.sin(2 * math.pi * 1000.0 * t)).to(torch.float32)
    out = resample(tone, rate, SAMPLE_RATE)
    assert torch.equal(out, taf.resample(tone, rate, SAMPLE_RATE))
    t16 = torch.arange(SAMPLE_RATE, dtype=torch.float64) / SAMPLE_RATE
    expected = 0.3 * torch.sin(2 * math.pi * 1000.0 * t16)
    mid = slice(200, -200)  # away from the zero-padded edges
    torch.testing.assert_close(out[mid].double(), expected[mid], atol=5e-3, rtol=0)
    same = resample(tone, rate, rate)
    assert torch.equal(same, tone)


@pytest.mark.parametrize("rate", [0, -16000, 999, 384001, 16000.5, float("nan"), True, "16000", None])
def test_bad_rates(rate: object) -> None:
    with pytest.raises(AudioInputError, match="orig_rate"):
        resample(torch.zeros(10), rate, SAMPLE_RATE)  # type: ignore[arg-type]
    with pytest.raises(AudioInputError, match="target_rate"):
        resample(torch.zeros(10), SAMPLE_RATE, rate)  # type: ignore[arg-type]


def test_rate_bounds_and_integral_floats() -> None:
    assert check_sample_rate(1000) == 1000 and check_sample_rate(384000) == 384000
    assert check_sample_rate(16000.0) == 16000 and check_sample_rate(np.int64(8000)) == 8000
    with pytest.raises(AudioInputError, match=r"floating-point torch tensor; got int16"):
        resample(torch.zeros(10, dtype=torch.int16), 8000, SAMPLE_RATE)


def test_validate_waveform_messages() -> None:
    x = torch.linspace(-1, 1, 500, dtype=torch.float64)
    out = validate_waveform(x, min_samples=FRAME_SAMPLES)
    assert out.dtype == torch.float32 and torch.equal(out, x.float())
    with pytest.raises(
        AudioInputError,
        match=r"audio has 3 samples; at least 400 samples \(0\.025 s at 16 kHz\) are needed for one fbank frame",
    ):
        validate_waveform(torch.zeros(3), min_samples=FRAME_SAMPLES, reason="one fbank frame")
    with pytest.raises(AudioInputError, match=r"clip is empty \(0 samples\)"):
        validate_waveform(torch.zeros(0), name="clip")
    bad = torch.zeros(100)
    bad[17], bad[20], bad[50], bad[51], bad[99] = math.nan, math.inf, -math.inf, math.nan, math.nan
    with pytest.raises(AudioInputError, match=r"audio contains 5 NaN/Inf samples \(first at index 17\)"):
        validate_waveform(bad)
    with pytest.raises(AudioInputError, match=r"shape \(2, 5\); a 1-D"):
        validate_waveform(torch.zeros(2, 5))
    with pytest.raises(AudioInputError, match="dtype int16"):
        validate_waveform(torch.zeros(5, dtype=torch.int16))
    with pytest.raises(AudioInputError, match="torch tensor"):
        validate_waveform(np.zeros(5, dtype=np.float32))
