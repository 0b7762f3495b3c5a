"""Coloured noise, quiet noise floors, looping and level helpers (data.md A.3).

All audio is 16 kHz mono float32 ``(n,)`` on a full scale of 1.0; levels are RMS, in dBFS
(``20*log10(RMS)``); lengths are in samples, times (``LOOP_CROSSFADE_S``) in seconds. Also the
argument checks ``_check_rng`` (a ``numpy.random.Generator``) and ``_check_range`` (a finite
``(low, high)`` pair) shared by the data modules.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from streaming_aum.audio_constants import SAMPLE_RATE
from streaming_aum.errors import AudioInputError, ConfigError

__all__ = [
    "NOISE_KINDS",
    "colored_noise",
    "loop_to_length",
    "noise_floor",
    "rms",
]

SILENT_PEAK: float = 1e-4  # a decoded file whose peak is below this is treated as empty
LOOP_CROSSFADE_S: float = 0.05  # crossfade when a short ambience file is looped
NOISE_KINDS: tuple[str, ...] = ("white", "pink", "brown")
FLOOR_DBFS: tuple[float, float] = (-70.0, -45.0)  # RMS re 1.0 full scale


def rms(x: np.ndarray) -> float:
    """Root mean square of ``x`` (float64 accumulation); 0.0 for an empty array."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def _check_rng(rng: np.random.Generator) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)); "
                          f"got {type(rng).__name__}")
    return rng


def colored_noise(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of white / pink / brown noise with unit RMS, float32 ``(n,)``.

    Shaped in the frequency domain: the amplitude of rfft bin ``k`` is scaled by 1 (white),
    ``1/sqrt(k)`` (pink: power ~ 1/f, -3.01 dB per octave) or ``1/k`` (brown: power ~ 1/f^2,
    -6.02 dB per octave). The DC bin is zeroed for pink and brown.
    """
    if kind not in NOISE_KINDS:
        raise ConfigError(f"unknown noise kind {kind!r}; accepted: {', '.join(NOISE_KINDS)}")
    n = int(n)
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    rng = _check_rng(rng)
    white = rng.standard_normal(n)
    if kind == "white":
        y = white
    else:
        spec = np.fft.rfft(white)
        k = np.arange(spec.size, dtype=np.float64)
        k[0] = 1.0
        spec = spec / (np.sqrt(k) if kind == "pink" else k)
        spec[0] = 0.0
        y = np.fft.irfft(spec, n)
    r = rms(y)
    return (y / r if r > 0 else y).astype(np.float32)


def noise_floor(n: int, rng: np.random.Generator,
                dbfs_range: tuple[float, float] = FLOOR_DBFS) -> np.ndarray:
    """A quiet white or pink noise floor, float32 ``(n,)``, RMS level uniform in ``dbfs_range``.

    dBFS here is ``20*log10(RMS)`` re a full scale of 1.0. Added so that padding is never digital
    zero (data.md 0.6 and 5.1 step 1).
    """
    lo, hi = _check_range(dbfs_range, "dbfs_range")
    rng = _check_rng(rng)
    kind = NOISE_KINDS[int(rng.integers(0, 2))]  # white or pink
    level = float(rng.uniform(lo, hi))
    return (colored_noise(n, kind, rng) * np.float32(10.0 ** (level / 20.0))).astype(np.float32)


def _check_range(r: Sequence[float], name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in r)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be two numbers (low, high); got {r!r}") from exc
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ConfigError(f"{name} must be finite with low <= high; got ({lo}, {hi})")
    return lo, hi


def loop_to_length(x: np.ndarray, n: int, start: int = 0,
                   crossfade: int = int(LOOP_CROSSFADE_S * SAMPLE_RATE)) -> np.ndarray:
    """``n`` samples of ``x`` repeated end to end from offset ``start``, float32 ``(n,)``.

    Consecutive copies overlap by ``crossfade`` samples with an equal-power (sin/cos) fade, which
    keeps the level of uncorrelated material steady across the joins.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0:
        raise AudioInputError("cannot loop an empty array; need at least one sample")
    n = int(n)
    start = int(start) % x.size
    if start + n <= x.size:
        return x[start:start + n].copy()
    xf = min(int(crossfade), x.size // 2)
    step = x.size - xf
    total = start + n
    copies = 1 + max(0, math.ceil((total - x.size) / max(step, 1)))
    out = np.zeros(step * copies + xf, dtype=np.float32)
    if xf > 0:
        t = (np.arange(xf, dtype=np.float32) + 0.5) / xf
        fade_in, fade_out = np.sin(0.5 * np.pi * t), np.cos(0.5 * np.pi * t)
    for c in range(copies):
        seg = x.copy()
        if xf > 0 and c > 0:
            seg[:xf] *= fade_in
        if xf > 0 and c < copies - 1:
            seg[-xf:] *= fade_out
        out[c * step:c * step + x.size] += seg
    return out[start:start + n].copy()
