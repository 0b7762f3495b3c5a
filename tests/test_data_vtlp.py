"""VTLP of log-mel features (data/vtlp.py) against independent references: the warp's defining
properties, an explicit per-bin bisection-and-interpolation loop in float64, and a formant that
must move to the warped frequency."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from streaming_aum.data.vtlp import (
    VTLP_BOUNDARY_HZ, mel_bin_centres_hz, vtlp_batch, vtlp_source_bins, vtlp_warp_hz,
    warp_features)
from streaming_aum.errors import AudioInputError, ConfigError
from streaming_aum.features import kaldi_mel_banks

NYQ = 8000.0


def test_mel_centres_are_the_peaks_of_kaldi_filters():
    """Each Kaldi filter is a triangle in mel peaking at its centre: its value there is 1."""
    banks = kaldi_mel_banks(torch.float64).numpy()  # (128, 256) on FFT bins k * 31.25 Hz
    centres = mel_bin_centres_hz()
    assert centres.shape == (128,) and np.all(np.diff(centres) > 0)
    # the filter of bin i is 0 at the centres of bins i-1 and i+1 and largest near its own
    fft_hz = np.arange(256) * 16000.0 / 512
    for i in (20, 64, 120):
        peak = fft_hz[np.argmax(banks[i])]
        spacing = 16000.0 / 512
        assert abs(peak - centres[i]) <= spacing / 2 + 1e-9
        assert banks[i][np.searchsorted(fft_hz, centres[i + 1]) + 1] == 0.0


@pytest.mark.parametrize("alpha", [0.85, 0.9, 0.97, 1.0, 1.04, 1.1, 1.2])
def test_warp_is_the_piecewise_linear_vtlp(alpha):
    f0 = VTLP_BOUNDARY_HZ * min(alpha, 1.0) / alpha
    f = np.linspace(0.0, NYQ, 4001)
    g = vtlp_warp_hz(f, alpha)
    assert g[0] == 0.0 and g[-1] == pytest.approx(NYQ, abs=1e-9)
    assert np.all(np.diff(g) > 0)  # strictly increasing: invertible
    below = f <= f0
    np.testing.assert_allclose(g[below], alpha * f[below], rtol=0, atol=1e-9)
    # continuous at the knee, linear above it
    eps = 1e-6
    assert abs(vtlp_warp_hz(np.array([f0 + eps]), alpha)[0] - alpha * f0) < 1e-3
    above = f[f > f0]
    slope = np.diff(vtlp_warp_hz(above, alpha)) / np.diff(above)
    np.testing.assert_allclose(slope, slope[0], rtol=1e-9)


def _reference_warp(x: np.ndarray, alpha: float) -> np.ndarray:
    """(T, F) float64: output bin i reads the input at g^-1(centre_i), found by bisection on g,
    then linear interpolation between the neighbouring bins, one frame and bin at a time."""
    centres = mel_bin_centres_hz()
    mel = lambda f: 1127.0 * math.log1p(f / 700.0)  # noqa: E731
    lo, hi = mel(20.0), mel(NYQ)
    delta = (hi - lo) / (len(centres) + 1)
    t, n = x.shape
    out = np.empty_like(x)
    for i in range(n):
        a, b = 0.0, NYQ
        for _ in range(200):
            mid = 0.5 * (a + b)
            if vtlp_warp_hz(np.array([mid]), alpha)[0] < centres[i]:
                a = mid
            else:
                b = mid
        pos = min(max((mel(0.5 * (a + b)) - lo) / delta - 1.0, 0.0), n - 1.0)
        k = min(int(math.floor(pos)), n - 2)
        w = pos - k
        for j in range(t):
            out[j, i] = x[j, k] * (1.0 - w) + x[j, k + 1] * w
    return out


@pytest.mark.parametrize("alpha", [0.9, 0.95, 1.07, 1.1])
def test_warp_features_matches_an_explicit_loop(alpha):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, 128))
    out = warp_features(torch.from_numpy(x), [alpha, 1.0]).numpy()
    np.testing.assert_allclose(out[0], _reference_warp(x[0], alpha), rtol=0, atol=1e-9)
    assert np.array_equal(out[1], x[1])  # alpha = 1: copied bit for bit
    # float32 features give the float64 result to float32 rounding
    out32 = warp_features(torch.from_numpy(x).float(), [alpha, alpha]).numpy()
    np.testing.assert_allclose(out32[0], out[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_a_formant_moves_to_the_warped_frequency(alpha):
    """A Gaussian bump (in mel bins) at 1 kHz must peak, after warping, at the bin nearest to
    g(1 kHz) = alpha * 1 kHz (below the knee)."""
    centres = mel_bin_centres_hz()
    k = int(np.argmin(np.abs(centres - 1000.0)))
    bins = np.arange(128)
    x = np.exp(-0.5 * ((bins - k) / 2.0) ** 2)[None, None, :].repeat(3, axis=1)
    out = warp_features(torch.from_numpy(x), [alpha]).numpy()[0, 1]
    # refine the peak with a parabola through the top three bins, then map bin -> Hz
    p = int(np.argmax(out))
    d = 0.5 * (out[p - 1] - out[p + 1]) / (out[p - 1] - 2 * out[p] + out[p + 1])
    peak_hz = np.interp(p + d, bins, centres)
    assert peak_hz == pytest.approx(alpha * centres[k], rel=0.01)
    assert vtlp_source_bins(alpha)[p] == pytest.approx(k, abs=1.0)


def test_vtlp_batch_draws_only_when_on():
    x = torch.randn(4, 5, 128)
    g = torch.Generator().manual_seed(11)
    before = g.get_state()
    assert vtlp_batch(x, g, 0.0) is x
    assert torch.equal(g.get_state(), before)  # p = 0: no draw, earlier seeds reproduce
    a = vtlp_batch(x, torch.Generator().manual_seed(5), 1.0, (0.9, 1.1))
    b = vtlp_batch(x, torch.Generator().manual_seed(5), 1.0, (0.9, 1.1))
    assert torch.equal(a, b)
    # p = 1: every example is warped, by the factor the generator drew
    g = torch.Generator().manual_seed(5)
    torch.rand(4, generator=g, dtype=torch.float64)
    u = torch.rand(4, generator=g, dtype=torch.float64)
    expect = warp_features(x, [0.9 + 0.2 * float(v) for v in u])
    assert torch.equal(a, expect) and not torch.equal(a[0], x[0])
    # p = 0.5 over many examples warps about half of them
    many = torch.randn(400, 2, 128)
    out = vtlp_batch(many, torch.Generator().manual_seed(1), 0.5)
    same = sum(torch.equal(out[i], many[i]) for i in range(400))
    assert 150 < same < 250


def test_vtlp_bad_input_names_the_problem():
    with pytest.raises(ConfigError, match=r"alpha must be a number in \[0.5, 2\]"):
        vtlp_warp_hz(np.array([100.0]), 3.0)
    with pytest.raises(ConfigError, match="alpha must be"):
        warp_features(torch.zeros(1, 2, 128), [float("nan")])
    with pytest.raises(ConfigError, match="one warp factor per example: 2 examples, 1 factors"):
        warp_features(torch.zeros(2, 2, 128), [1.1])
    with pytest.raises(AudioInputError, match=r"\(batch, frames, mel bins\) float tensor; got \(2, 128\)"):
        warp_features(torch.zeros(2, 128), [1.1, 1.1])
    with pytest.raises(AudioInputError, match="float tensor"):
        warp_features(torch.zeros(1, 2, 128, dtype=torch.int64), [1.1])
    with pytest.raises(ConfigError, match="probability"):
        vtlp_batch(torch.zeros(1, 2, 128), torch.Generator(), 1.5)
    with pytest.raises(ConfigError, match="low <= high"):
        vtlp_batch(torch.zeros(1, 2, 128), torch.Generator(), 0.5, (1.1, 0.9))
