"""Vocal tract length perturbation (VTLP) of log-mel features (Jaitly & Hinton 2013).

A speaker's vocal tract length scales the frequencies of their formants: a shorter tract moves
every formant up by a common factor ``alpha``. VTLP makes new "speakers" from a training clip by
warping the frequency axis of its spectrogram by a random ``alpha`` (0.9-1.1 in the paper), the
axis on which held-out voices and engines differ from the training ones. Unlike speed
perturbation (:func:`streaming_aum.data.augment.change_speed`) it leaves timing and pitch
(harmonic spacing aside) alone.

The warp (the paper's piecewise-linear form, Nyquist kept fixed): a frequency ``f`` of the clip
moves to

    g(f) = alpha * f                                    for f <= f0 = boundary_hz * min(alpha, 1) / alpha
    g(f) = nyq - (nyq - boundary_hz * min(alpha, 1)) / (nyq - f0) * (nyq - f)   above,

continuous at ``f0``, ``g(0) = 0``, ``g(nyq) = nyq``, strictly increasing. On AuM's features
(Kaldi log-mel, ``N_MELS`` = 128 bins from ``LOW_FREQ_HZ`` = 20 Hz to the Nyquist frequency
8 kHz, bin ``i`` centred at mel ``m_low + (i + 1) * delta``, ``mel(f) = 1127 ln(1 + f/700)``), the
warped spectrogram's bin ``i`` takes the clip's value at ``g^-1(centre_i)``, read by linear
interpolation between the two nearest mel bins (clamped to the first/last bin). Interpolating
log-mel values rather than re-filtering a power spectrum is the usual feature-domain shortcut;
it is exact for ``alpha = 1`` (the identity, bit for bit) and smooth in ``alpha``.

Features are ``(B, T, F)``: batch x frames (10 ms) x mel bins, column 0 the lowest band, in any
affine normalisation (a warp along F commutes with a per-tensor ``(x - mean) / (2 std)``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from streaming_aum.audio_constants import LOW_FREQ_HZ, N_MELS, SAMPLE_RATE
from streaming_aum.errors import AudioInputError, ConfigError

__all__ = ["VTLP_BOUNDARY_HZ", "is_alpha_range", "mel_bin_centres_hz", "vtlp_batch",
           "vtlp_source_bins", "vtlp_warp_hz", "warp_features"]

VTLP_BOUNDARY_HZ: float = 4800.0  # Jaitly & Hinton's F_hi: where the linear part ends (alpha <= 1)
NYQUIST_HZ: float = SAMPLE_RATE / 2.0


def _mel(f_hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(f_hz, dtype=np.float64) / 700.0)


def _inv_mel(m: np.ndarray) -> np.ndarray:
    return 700.0 * np.expm1(np.asarray(m, dtype=np.float64) / 1127.0)


def _mel_axis(n_mels: int) -> tuple[float, float]:
    """Kaldi's mel axis: ``(mel of 20 Hz, spacing)``; bin ``i`` is centred at ``lo + (i + 1) d``."""
    lo = float(_mel(LOW_FREQ_HZ))
    return lo, (float(_mel(NYQUIST_HZ)) - lo) / (n_mels + 1)


def mel_bin_centres_hz(n_mels: int = N_MELS) -> np.ndarray:
    """``(n_mels,)`` centre frequencies in Hz of Kaldi's mel bins (20 Hz to Nyquist), float64."""
    lo, delta = _mel_axis(n_mels)
    return _inv_mel(lo + delta * np.arange(1, n_mels + 1))


def _is_alpha(alpha: object) -> bool:
    return (not isinstance(alpha, bool) and isinstance(alpha, (int, float))
            and math.isfinite(alpha) and 0.5 <= alpha <= 2.0)


def is_alpha_range(v: object) -> bool:
    """Whether ``v`` is a ``[low, high]`` pair of warp factors in [0.5, 2] with low <= high
    (``vtlp_batch``'s ``alpha_range``; the training config's ``[augment] vtlp_alpha``)."""
    return (isinstance(v, (list, tuple)) and len(v) == 2 and all(map(_is_alpha, v))
            and v[0] <= v[1])


def _check_alpha(alpha: float) -> float:
    if not _is_alpha(alpha):
        raise ConfigError(f"VTLP warp factor alpha must be a number in [0.5, 2]; got {alpha!r}")
    return float(alpha)


def _knee_hz(alpha: float, boundary_hz: float) -> float:
    """``f0``: the frequency where the warp's linear part ends."""
    return boundary_hz * min(alpha, 1.0) / alpha


def vtlp_warp_hz(f_hz: np.ndarray, alpha: float,
                 boundary_hz: float = VTLP_BOUNDARY_HZ) -> np.ndarray:
    """``g(f)``: where frequency ``f_hz`` (Hz, in ``[0, 8000]``) of a clip moves under warp
    ``alpha``."""
    alpha = _check_alpha(alpha)
    f = np.asarray(f_hz, dtype=np.float64)
    f0 = _knee_hz(alpha, boundary_hz)
    top = NYQUIST_HZ - (NYQUIST_HZ - boundary_hz * min(alpha, 1.0)) / (NYQUIST_HZ - f0) * (
        NYQUIST_HZ - f)
    return np.where(f <= f0, alpha * f, top)


def vtlp_source_bins(alpha: float, n_mels: int = N_MELS) -> np.ndarray:
    """``(n_mels,)`` float64: the fractional mel-bin index of the clip that warped bin ``i`` shows.

    ``g`` is piecewise linear with one knee, so ``g^-1`` is too: it is evaluated exactly by
    interpolating the inverse through the knots ``0, f0, nyq``.
    """
    alpha = _check_alpha(alpha)
    knots = np.array([0.0, _knee_hz(alpha, VTLP_BOUNDARY_HZ), NYQUIST_HZ])
    source_hz = np.interp(mel_bin_centres_hz(n_mels), vtlp_warp_hz(knots, alpha), knots)
    lo, delta = _mel_axis(n_mels)
    return np.clip((_mel(source_hz) - lo) / delta - 1.0, 0.0, n_mels - 1.0)


def warp_features(features: torch.Tensor, alphas: list[float] | tuple[float, ...]) -> torch.Tensor:
    """``(B, T, F)`` features, each example ``b`` warped by ``alphas[b]`` (1.0: copied bit for
    bit)."""
    if (not isinstance(features, torch.Tensor) or features.dim() != 3
            or not features.is_floating_point()):
        found = (f"{tuple(features.shape)} {features.dtype}" if isinstance(features, torch.Tensor)
                 else type(features).__name__)
        raise AudioInputError(f"VTLP needs a (batch, frames, mel bins) float tensor; got {found}")
    b, _, n = features.shape
    if len(alphas) != b:
        raise ConfigError(f"VTLP needs one warp factor per example: {b} examples, "
                          f"{len(alphas)} factors")
    out = features.clone()
    for i, alpha in enumerate(alphas):
        if _check_alpha(alpha) == 1.0:
            continue
        # neighbours and weights in float64, cast once: a float32 bin index near 127 would
        # round the weight by ~1e-5
        src = torch.from_numpy(vtlp_source_bins(alpha, n))
        left = src.floor().long().clamp(max=n - 2)
        frac = (src - left.double()).to(features.dtype).to(features.device)
        left = left.to(features.device)
        x = features[i]
        out[i] = x[:, left] * (1.0 - frac) + x[:, left + 1] * frac
    return out


def vtlp_batch(features: torch.Tensor, generator: torch.Generator, p: float,
               alpha_range: tuple[float, float] = (0.9, 1.1)) -> torch.Tensor:
    """Warp each example of ``(B, T, F)`` ``features`` with probability ``p`` by ``alpha`` drawn
    uniformly from ``alpha_range``; the others are copied unchanged.

    Draws from ``generator`` (CPU) only when ``p > 0``: two ``torch.rand`` of ``B`` values (the
    coin, then the factor), so a config without VTLP reproduces its earlier random streams.
    """
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"VTLP probability must lie in [0, 1]; got {p}")
    if not is_alpha_range(alpha_range):
        raise ConfigError(f"VTLP alpha range must be [low, high] warp factors in [0.5, 2] with "
                          f"low <= high; got {alpha_range}")
    lo, hi = float(alpha_range[0]), float(alpha_range[1])
    if p == 0.0:
        return features
    b = features.shape[0]
    coin = torch.rand(b, generator=generator, dtype=torch.float64)
    u = torch.rand(b, generator=generator, dtype=torch.float64)
    alphas = [lo + (hi - lo) * float(u[i]) if float(coin[i]) < p else 1.0 for i in range(b)]
    return warp_features(features, alphas)
