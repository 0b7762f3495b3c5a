"""Tests of streaming_aum.features against the official fixtures and an independent float64 fbank."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio.compliance.kaldi as kaldi

from streaming_aum.audio_constants import (
    FRAME_SAMPLES,
    HOP_SAMPLES,
    LOG_FLOOR,
    LOW_FREQ_HZ,
    N_FFT,
    N_MELS,
    OFFICIAL_TARGET_FRAMES,
    PREEMPHASIS,
    SAMPLE_RATE,
    num_frames,
)
from streaming_aum.audio_io import load_audio
from streaming_aum.errors import AudioInputError, ConfigError
from streaming_aum.features import (
    NORM_PRESETS,
    TARGET_FRAMES_PRESETS,
    NormStats,
    file_to_features,
    kaldi_fbank,
    normalize,
    pad_or_crop,
    waveform_to_features,
)

FIXTURES = Path(__file__).parent / "fixtures" / "aum_official"
SAMPLE_WAV = FIXTURES / "sample.wav"
FIXTURE_ATOL = 5e-4  # the fixture README's tolerance for sample_fbank (normalised units)


@pytest.fixture(scope="module")
def sample_audio() -> torch.Tensor:
    return load_audio(SAMPLE_WAV)


@pytest.fixture(scope="module")
def official_inputs() -> dict:
    return torch.load(FIXTURES / "inputs.pt", weights_only=True)


# ---------------------------------------------------------------------------------------------
# independent float64 reference of the Kaldi fbank (written from the Kaldi/torchaudio definition)
# ---------------------------------------------------------------------------------------------


def _mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def _kaldi_mel_banks() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangles on the Kaldi mel scale, 20 Hz .. Nyquist; Nyquist bin 0."""
    nyquist = SAMPLE_RATE / 2
    lo, hi = _mel(LOW_FREQ_HZ), _mel(nyquist)
    delta = (hi - lo) / (N_MELS + 1)
    bin_mel = _mel(np.arange(N_FFT // 2) * SAMPLE_RATE / N_FFT)
    banks = np.zeros((N_MELS, N_FFT // 2 + 1))
    for m in range(N_MELS):
        left, centre, right = lo + m * delta, lo + (m + 1) * delta, lo + (m + 2) * delta
        up = (bin_mel - left) / (centre - left)
        down = (right - bin_mel) / (right - centre)
        banks[m, : N_FFT // 2] = np.maximum(0.0, np.minimum(up, down))
    return banks


def reference_fbank(x: np.ndarray, *, remove_frame_dc: bool = True) -> np.ndarray:
    """Float64 Kaldi fbank of (n,) samples at 16 kHz -> (frames, N_MELS) log mel energies."""
    x = np.asarray(x, dtype=np.float64)
    count = 1 + (len(x) - FRAME_SAMPLES) // HOP_SAMPLES
    frames = np.stack([x[i * HOP_SAMPLES : i * HOP_SAMPLES + FRAME_SAMPLES] for i in range(count)])
    if remove_frame_dc:
        frames = frames - frames.mean(axis=1, keepdims=True)
    previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)  # x[-1] := x[0]
    frames = frames - PREEMPHASIS * previous
    n = np.arange(FRAME_SAMPLES)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / (FRAME_SAMPLES - 1))  # symmetric
    power = np.abs(np.fft.rfft(frames * hann, n=N_FFT, axis=1)) ** 2
    energies = power @ _kaldi_mel_banks().T
    return np.log(np.maximum(energies, LOG_FLOOR))


def _noise(n: int, seed: int, scale: float = 0.1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, generator=g)).to(torch.float32)


# ---------------------------------------------------------------------------------------------
# official fixtures
# ---------------------------------------------------------------------------------------------


def test_sample_wav_matches_official_fbank(sample_audio: torch.Tensor) -> None:
    ref = torch.load(FIXTURES / "sample_fbank.pt", weights_only=True)
    assert ref.shape == (OFFICIAL_TARGET_FRAMES, N_MELS)
    out = waveform_to_features(sample_audio, preset="audioset", target_frames=OFFICIAL_TARGET_FRAMES)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    diff = (out - ref).abs()
    assert float(diff.max()) < FIXTURE_ATOL
    assert float(diff.median()) < 1e-5
    # the same through the file entry point with the preset's default length
    from_file = file_to_features(SAMPLE_WAV)
    assert float((from_file - ref).abs().max()) < FIXTURE_ATOL


def test_inputs_clip2_is_pipeline_at_256_frames(sample_audio: torch.Tensor, official_inputs: dict) -> None:
    out = waveform_to_features(sample_audio, target_frames=256)
    ref = official_inputs["fbank"][2]
    assert out.shape == ref.shape == (256, N_MELS)
    diff = (out - ref).abs()
    assert float(diff.max()) < FIXTURE_ATOL and float(diff.median()) < 1e-5


def test_padded_rows_equal_official_pad_value(official_inputs: dict) -> None:
    pad_value = float(official_inputs["pad_value"])
    assert NORM_PRESETS["audioset"].pad_value == pytest.approx(pad_value, abs=1e-7)
    n = SAMPLE_RATE  # 1.0 s -> 98 frames, the rest is padding
    real = num_frames(n)
    assert real == 98
    out = waveform_to_features(_noise(n, seed=7), target_frames=256)
    torch.testing.assert_close(out[real:], torch.full((256 - real, N_MELS), pad_value), atol=1e-7, rtol=0)
    torch.testing.assert_close(out[:real], normalize(kaldi_fbank(_noise(n, seed=7)), "audioset"), atol=0, rtol=0)
    assert float((out[:real] - pad_value).abs().mean()) > 0.1  # real rows are not padding
    # clip 1 of inputs.pt: rows 200..255 set to pad_value
    assert torch.equal(official_inputs["fbank"][1][200:], torch.full((56, N_MELS), official_inputs["pad_value"].item()))


def test_sample_frame_count_and_unnormalised_values(sample_audio: torch.Tensor) -> None:
    """998 frames; the unnormalised fbank is the fixture undone by the AudioSet statistics."""
    fb = kaldi_fbank(sample_audio)
    assert fb.shape == (998, N_MELS) == (num_frames(160_029), N_MELS)
    ref = torch.load(FIXTURES / "sample_fbank.pt", weights_only=True)
    stats = NORM_PRESETS["audioset"]
    undone = ref[:998] * (2 * stats.std) + stats.mean
    assert float((fb - undone).abs().max()) < FIXTURE_ATOL * 2 * stats.std


# ---------------------------------------------------------------------------------------------
# independent reference
# ---------------------------------------------------------------------------------------------


def _assert_close_to_reference(out: np.ndarray, ref: np.ndarray) -> None:
    """Compare fp32 log-mel ``out`` with the float64 ``ref`` (both (frames, bands), empty bands removed).

    fp32 errors are relative to the frame's energy, not to each band's (and torchaudio builds its
    mel triangles in fp32, ~1e-5 absolute in the weights), so: bands holding at least 1e-3 of the
    frame's largest band energy agree to 1e-4 in log (relative 1e-4); all bands agree in the energy
    domain to 5e-5 of that largest band energy; the typical (median) log error is below 1e-5.
    """
    e_out, e_ref = np.exp(out), np.exp(ref)
    frame_max = e_ref.max(axis=1, keepdims=True)
    strong = e_ref >= 1e-3 * frame_max
    assert strong.mean() > 0.5
    assert np.abs(out - ref)[strong].max() < 1e-4
    assert (np.abs(e_out - e_ref) / frame_max).max() < 5e-5
    assert np.median(np.abs(out - ref)) < 1e-5


@pytest.mark.parametrize(("n", "seed"), [(400, 0), (401, 1), (559, 2), (560, 3), (16000, 4)])
def test_kaldi_fbank_matches_float64_reference(n: int, seed: int) -> None:
    x = _noise(n, seed, scale=1.0)
    out = kaldi_fbank(x, remove_clip_dc=False).double().numpy()
    ref = reference_fbank(x.double().numpy())
    assert out.shape == ref.shape == (num_frames(n), N_MELS)
    # With 128 bins on a 512-point FFT, mel band 3 is narrower than an FFT bin and falls between
    # bin centres: it is empty and sits exactly at the log floor in both implementations.
    empty = _kaldi_mel_banks().max(axis=1) == 0
    assert np.flatnonzero(empty).tolist() == [3]
    np.testing.assert_allclose(out[:, empty], math.log(LOG_FLOOR), rtol=1e-7)
    np.testing.assert_allclose(ref[:, empty], math.log(LOG_FLOOR), rtol=1e-12)
    assert ref[:, ~empty].min() > math.log(LOG_FLOOR) + 4  # all other bands: well above the floor
    _assert_close_to_reference(out[:, ~empty], ref[:, ~empty])
    with_dc = kaldi_fbank(x, remove_clip_dc=True).double().numpy()
    ref_dc = reference_fbank(x.double().numpy() - x.double().numpy().mean())
    _assert_close_to_reference(with_dc[:, ~empty], ref_dc[:, ~empty])


def test_kaldi_fbank_reference_on_real_audio(sample_audio: torch.Tensor) -> None:
    """The same agreement on 3 s of sample.wav (official clip-DC removal on both sides)."""
    x = sample_audio[: 3 * SAMPLE_RATE]
    out = kaldi_fbank(x).double().numpy()
    ref = reference_fbank(x.double().numpy() - x.double().numpy().mean())
    nonempty = _kaldi_mel_banks().max(axis=1) > 0
    _assert_close_to_reference(out[:, nonempty], ref[:, nonempty])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [400, 559, 2800, 16000])
def test_cached_fbank_is_torchaudio_fbank_bit_for_bit(n: int, dtype: torch.dtype,
                                                      sample_audio: torch.Tensor) -> None:
    """``kaldi_fbank_unchecked`` (constants built once) reproduces torchaudio's
    ``kaldi.fbank`` with AuM's settings exactly, on noise, on speech and on a strided view."""
    from streaming_aum.features import kaldi_fbank_unchecked

    def torchaudio_fbank(w: torch.Tensor) -> torch.Tensor:
        return kaldi.fbank(w.unsqueeze(0), htk_compat=True, sample_frequency=SAMPLE_RATE,
                           use_energy=False, window_type="hanning", num_mel_bins=N_MELS,
                           dither=0.0, frame_shift=10.0)

    for w in (_noise(n, n, scale=1.0).to(dtype), sample_audio[5000:5000 + n].to(dtype),
              _noise(2 * n, 1, scale=0.1).to(dtype)[::2]):
        got = kaldi_fbank_unchecked(w)
        assert got.dtype == dtype and got.shape == (num_frames(n), N_MELS)
        assert torch.equal(got, torchaudio_fbank(w))
    with pytest.raises(AudioInputError, match="at least 400"):
        kaldi_fbank_unchecked(torch.zeros(399, dtype=dtype))


def test_reference_mel_banks_match_torchaudio() -> None:
    """The test's float64 triangles agree with torchaudio's float32 Kaldi mel banks."""
    banks = _kaldi_mel_banks()
    assert banks.shape == (N_MELS, N_FFT // 2 + 1)
    assert np.all(banks[:, -1] == 0) and np.all(banks[:, 0] == 0)  # 0 Hz < 20 Hz, Nyquist dropped
    ta_banks, _ = kaldi.get_mel_banks(N_MELS, N_FFT, float(SAMPLE_RATE), LOW_FREQ_HZ, 0.0, 100.0, -500.0, 1.0)
    np.testing.assert_allclose(banks[:, : N_FFT // 2], ta_banks.double().numpy(), atol=5e-5, rtol=0)
    peaks = np.argmax(banks, axis=1)
    assert np.all(np.diff(peaks[~(banks.max(axis=1) == 0)]) >= 0)  # column 0 is the lowest band


# ---------------------------------------------------------------------------------------------
# clip DC
# ---------------------------------------------------------------------------------------------


def test_constant_offset_changes_nothing() -> None:
    x = _noise(8000, seed=11, scale=1.0)
    offset = 0.25
    nonempty = _kaldi_mel_banks().max(axis=1) > 0
    for remove_clip_dc in (True, False):
        base = kaldi_fbank(x, remove_clip_dc=remove_clip_dc)
        shifted = kaldi_fbank(x + offset, remove_clip_dc=remove_clip_dc)
        _assert_close_to_reference(shifted[:, nonempty].double().numpy(), base[:, nonempty].double().numpy())
    official = kaldi_fbank(x, remove_clip_dc=True)[:, nonempty].double().numpy()
    streaming = kaldi_fbank(x, remove_clip_dc=False)[:, nonempty].double().numpy()
    _assert_close_to_reference(streaming, official)
    # the test is sensitive: without Kaldi's per-frame DC removal the offset would matter a lot
    no_frame_dc = reference_fbank(x.double().numpy(), remove_frame_dc=False)
    no_frame_dc_shifted = reference_fbank(x.double().numpy() + offset, remove_frame_dc=False)
    assert np.abs(no_frame_dc - no_frame_dc_shifted).max() > 0.1


def test_remove_clip_dc_variants_agree_on_sample(sample_audio: torch.Tensor) -> None:
    official = kaldi_fbank(sample_audio, remove_clip_dc=True)
    streaming = kaldi_fbank(sample_audio, remove_clip_dc=False)
    diff = (official - streaming).abs()
    assert float(diff.median()) < 1e-5 and float(diff.max()) < 1e-2  # max in near-silent bins only


# ---------------------------------------------------------------------------------------------
# pad/crop, normalisation, presets, signature
# ---------------------------------------------------------------------------------------------


def test_pad_or_crop() -> None:
    fb = torch.arange(5 * 3, dtype=torch.float32).reshape(5, 3)
    padded = pad_or_crop(fb, 7)
    assert torch.equal(padded[:5], fb) and torch.equal(padded[5:], torch.zeros(2, 3))
    assert torch.equal(pad_or_crop(fb, 2), fb[:2])
    assert torch.equal(pad_or_crop(fb, 5), fb)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="target_frames"):
            pad_or_crop(fb, bad)  # type: ignore[arg-type]
    with pytest.raises(AudioInputError, match="2-D"):
        pad_or_crop(torch.zeros(5), 3)


def test_normalize_and_presets() -> None:
    fb = torch.tensor([[0.0, -4.2677393, 1.0]])
    out = normalize(fb, "audioset")
    expected = (fb.double() + 4.2677393) / (2 * 4.5689974)
    torch.testing.assert_close(out.double(), expected, atol=1e-7, rtol=0)
    assert torch.equal(normalize(fb, NormStats(mean=1.0, std=0.5)), fb - 1.0)
    assert NORM_PRESETS["as20k"] == NORM_PRESETS["audioset"]
    assert NORM_PRESETS["speechcommands"] == NormStats(-6.845978, 5.5654526)
    assert NORM_PRESETS["vggsound"] == NormStats(-5.0767093, 4.4533687)
    assert NORM_PRESETS["voxceleb"] == NormStats(-3.7614744, 4.2011642)
    assert set(NORM_PRESETS) == set(TARGET_FRAMES_PRESETS)
    assert TARGET_FRAMES_PRESETS["speechcommands"] == 128 and TARGET_FRAMES_PRESETS["audioset"] == 1024
    with pytest.raises(ConfigError, match="unknown normalisation 'librispeech'"):
        normalize(fb, "librispeech")
    assert NormStats(np.float32(-4.0), np.float32(4.0)).pad_value == 0.5  # numpy scalars are fine
    for mean, std in [(0.0, 0.0), (0.0, -1.0), (0.0, math.inf), (math.nan, 1.0), ("0", 1.0)]:
        with pytest.raises(ConfigError, match="NormStats"):
            NormStats(mean=mean, std=std)  # type: ignore[arg-type]


def test_waveform_to_features_options() -> None:
    x = _noise(2 * SAMPLE_RATE, seed=5)
    raw = kaldi_fbank(x)
    sc = NORM_PRESETS["speechcommands"]
    out = waveform_to_features(x, preset="speechcommands")  # 198 frames cropped to 128
    torch.testing.assert_close(out, (raw[:128] - sc.mean) / (2 * sc.std), atol=1e-6, rtol=0)
    full = waveform_to_features(x, target_frames=None)
    assert full.shape == (num_frames(2 * SAMPLE_RATE), N_MELS)
    torch.testing.assert_close(full, normalize(raw, "audioset"), atol=0, rtol=0)
    custom = waveform_to_features(x, target_frames=None, stats=NormStats(0.0, 0.5))
    torch.testing.assert_close(custom, raw, atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="unknown normalisation"):
        waveform_to_features(x, preset="nope")


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_kaldi_fbank_errors() -> None:
    with pytest.raises(AudioInputError, match=r"is empty \(0 samples\).*one fbank frame"):
        kaldi_fbank(torch.zeros(0))
    with pytest.raises(AudioInputError, match=r"has 399 samples; at least 400 samples \(0\.025 s"):
        kaldi_fbank(torch.zeros(FRAME_SAMPLES - 1))
    x = _noise(1000, seed=1)
    x[17] = math.nan
    with pytest.raises(AudioInputError, match=r"1 NaN/Inf samples \(first at index 17\)"):
        kaldi_fbank(x)
    with pytest.raises(AudioInputError, match=r"shape \(2, 1000\)"):
        kaldi_fbank(torch.zeros(2, 1000))
    with pytest.raises(AudioInputError, match="dtype int16"):
        kaldi_fbank(torch.zeros(1000, dtype=torch.int16))
    with pytest.raises(AudioInputError, match="too short|has 100 samples"):
        waveform_to_features(torch.zeros(100))
    assert kaldi_fbank(torch.zeros(FRAME_SAMPLES)).shape == (1, N_MELS)
