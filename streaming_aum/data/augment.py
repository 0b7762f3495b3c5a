"""On-the-fly training augmentation of 1 s keyword clips and SpecAugment (data.md 5.1, A.3).

:class:`Augmenter` turns a clean clip into a training example, in this order:

0. **speed** (p=0 by default; opt-in, no random draw when 0): play the clip at a speed drawn
   from ``speeds`` (0.9, 0.95, 1.05, 1.1 by default; polyphase resampling, so tempo and pitch
   move together, as in Ko et al. 2015's speed perturbation), then crop or zero-pad it
   centrally back to its length. Each factor is a new "speaker" for the model (vocal tract
   and speaking rate), the axis on which held-out voices and engines differ from training;
1. **shift**: delay or advance by U(-0.1, +0.1) s, zero filled (step 6 covers the zeros);
2. **reverb** (p=0.3): convolve with a RIR of the split's bank (:func:`apply_rir`), so the word,
   not the background, is reverberant;
3. **background** (p=0.8): ambience (60%) or coloured noise (40%) from a :class:`BackgroundBank`
   at SNR U(0, 20) dB (:func:`mix_at_snr`); a silent clip (``_silence_``) gets the background at
   an absolute level of U(-50, -25) dBFS instead, since an SNR is undefined there;
4. **telephone band** (p=0.15): 300-3400 Hz band-pass, down to 8 kHz and back;
5. **gain**: scale to a peak of U(0.2, 0.9);
6. **noise floor** (always): white/pink noise at U(-70, -45) dBFS RMS, added last so its level
   is absolute and padding is never digital zero.

All randomness comes from the ``numpy.random.Generator`` passed in; :meth:`Augmenter.draw`
returns the drawn :class:`AugmentPlan` and :meth:`Augmenter.apply` is a pure function of the wave
and the plan (``augmenter(wave, rng) == augmenter.apply(wave, augmenter.draw(len(wave), rng))``).
Levels in dBFS are ``20*log10(RMS)`` re full scale 1.0; audio is 16 kHz mono float32.

:func:`spec_augment` masks time and frequency spans of ``(B, T, F)`` features (AuM fbank:
100 frames per second, 128 mel bins) with a ``torch.Generator``; :mod:`streaming_aum.data.vtlp`
warps their frequency axis (vocal tract length perturbation, opt-in: ``[augment] p_vtlp``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from streaming_aum.audio_constants import SAMPLE_RATE
from streaming_aum.data.background import BackgroundBank
from streaming_aum.data.noise import _check_range, _check_rng, noise_floor, rms
from streaming_aum.data.rooms import RirBank, apply_rir
from streaming_aum.errors import AudioInputError, ConfigError

__all__ = [
    "AugmentConfig",
    "AugmentPlan",
    "Augmenter",
    "change_speed",
    "is_speed_factor",
    "mix_at_snr",
    "spec_augment",
    "spec_augment_spans",
    "telephone_band",
]

SILENT_RMS: float = 1e-5  # a clip below -100 dBFS RMS counts as silent (no SNR reference)
TELEPHONE_FILTER_ORDER: int = 4  # Butterworth band-pass order (per band edge)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of :class:`Augmenter` (defaults: data.md 5.1)."""

    floor_dbfs: tuple[float, float] = (-70.0, -45.0)
    p_background: float = 0.8
    snr_db: tuple[float, float] = (0.0, 20.0)
    silent_background_dbfs: tuple[float, float] = (-50.0, -25.0)
    p_reverb: float = 0.3
    p_telephone: float = 0.15
    telephone_band_hz: tuple[float, float] = (300.0, 3400.0)
    telephone_rate: int = 8000
    peak: tuple[float, float] = (0.2, 0.9)
    shift_s: float = 0.1
    p_speed: float = 0.0
    speeds: tuple[float, ...] = (0.9, 0.95, 1.05, 1.1)

    def __post_init__(self) -> None:
        if not self.speeds or not all(map(is_speed_factor, self.speeds)):
            raise ConfigError(f"speeds must be a non-empty list of factors in [0.5, 2] that are "
                              f"multiples of 0.05 (0.9, 0.95, 1.05, ...); got {self.speeds!r}")
        for name in ("p_background", "p_reverb", "p_telephone", "p_speed"):
            p = getattr(self, name)
            if not (isinstance(p, (int, float)) and 0.0 <= float(p) <= 1.0):
                raise ConfigError(f"{name} must be a probability in [0, 1]; got {p!r}")
        for name in ("floor_dbfs", "snr_db", "silent_background_dbfs", "peak",
                     "telephone_band_hz"):
            _check_range(getattr(self, name), name)
        if not 0.0 < self.peak[0] <= self.peak[1] <= 1.0:
            raise ConfigError(f"peak must satisfy 0 < low <= high <= 1; got {self.peak}")
        lo, hi = self.telephone_band_hz
        if not 0.0 < lo < hi < self.telephone_rate / 2:
            raise ConfigError(f"telephone_band_hz must satisfy 0 < low < high < "
                              f"telephone_rate/2 = {self.telephone_rate / 2}; got {(lo, hi)}")
        if SAMPLE_RATE % int(self.telephone_rate):
            raise ConfigError(f"telephone_rate must divide {SAMPLE_RATE} Hz; got "
                              f"{self.telephone_rate}")
        if not (math.isfinite(self.shift_s) and 0.0 <= self.shift_s < 1.0):
            raise ConfigError(f"shift_s must be in [0, 1) seconds; got {self.shift_s}")


@dataclass
class AugmentPlan:
    """Everything one call of :class:`Augmenter` drew; shapes are ``(n,)`` float32 at 16 kHz."""

    shift: int  # samples; > 0 delays the clip
    rir: np.ndarray | None  # reverb impulse response, or None
    background: np.ndarray | None  # unit-RMS background, or None
    snr_db: float  # used when the clip is not silent
    background_dbfs: float  # used when the clip is silent
    telephone: bool
    peak: float
    floor: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.float32))
    speed: float = 1.0  # playback speed factor (1.0: unchanged)


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal + g * noise`` with ``g`` such that ``10 log10(P_signal / P(g noise)) = snr_db``.

    Powers are means of squares over the whole arrays (same shape). Returns float32.

    Raises:
        AudioInputError: shapes differ, or the signal or the noise is silent (SNR undefined).
    """
    s = np.asarray(signal, dtype=np.float64)
    n = np.asarray(noise, dtype=np.float64)
    if s.shape != n.shape:
        raise AudioInputError(f"signal and noise must have the same shape; got {s.shape} and "
                              f"{n.shape}")
    if not math.isfinite(float(snr_db)):
        raise ConfigError(f"snr_db must be finite; got {snr_db}")
    ps, pn = float(np.mean(s * s)), float(np.mean(n * n))
    if ps <= 0.0 or pn <= 0.0:
        which = "signal" if ps <= 0.0 else "noise"
        raise AudioInputError(f"mix_at_snr needs a non-silent signal and noise; the {which} has "
                              f"zero power, so no SNR can be set (add it at an absolute level)")
    g = math.sqrt(ps / (pn * 10.0 ** (float(snr_db) / 10.0)))
    return (s + g * n).astype(np.float32)


def telephone_band(x: np.ndarray, band_hz: tuple[float, float] = (300.0, 3400.0),
                   rate: int = 8000) -> np.ndarray:
    """Band-pass ``band_hz`` and pass through ``rate`` Hz and back; float32, same length."""
    from scipy.signal import butter, resample_poly, sosfilt

    y = np.asarray(x, dtype=np.float64)
    sos = butter(TELEPHONE_FILTER_ORDER, band_hz, btype="bandpass", fs=SAMPLE_RATE, output="sos")
    y = sosfilt(sos, y)
    down = SAMPLE_RATE // int(rate)
    y = resample_poly(resample_poly(y, 1, down), down, 1)[:x.size]
    if y.size < x.size:
        y = np.pad(y, (0, x.size - y.size))
    return y.astype(np.float32)


def _speed_ratio(factor: float) -> tuple[int, int] | None:
    """``(up, down)`` with ``up / down = 1 / factor`` for a factor that is a multiple of 0.05
    (so resampling by ``up / down`` plays the clip ``factor`` times as fast), else None."""
    twentieths = round(float(factor) * 20)
    if twentieths <= 0 or abs(twentieths - float(factor) * 20) > 1e-9:
        return None
    g = math.gcd(20, twentieths)
    return 20 // g, twentieths // g


def is_speed_factor(factor: object) -> bool:
    """Whether ``factor`` is a speed :func:`change_speed` accepts in a config: a number in
    [0.5, 2] that is a multiple of 0.05."""
    return (isinstance(factor, (int, float)) and 0.5 <= factor <= 2.0
            and _speed_ratio(factor) is not None)


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """``x`` (n,) played ``factor`` times as fast (polyphase resampling by ``1 / factor``), then
    centrally cropped or zero-padded back to ``n`` samples. Float32."""
    from scipy.signal import resample_poly

    ratio = _speed_ratio(factor)
    if ratio is None:
        raise ConfigError(f"speed factor must be a multiple of 0.05; got {factor!r}")
    up, down = ratio
    if up == down:
        return np.asarray(x, dtype=np.float32).copy()
    y = resample_poly(np.asarray(x, dtype=np.float64), up, down)
    n = x.size
    if y.size >= n:
        start = (y.size - n) // 2
        y = y[start:start + n]
    else:
        left = (n - y.size) // 2
        y = np.pad(y, (left, n - y.size - left))
    return y.astype(np.float32)


def _shift(x: np.ndarray, shift: int) -> np.ndarray:
    out = np.zeros_like(x)
    if shift >= 0:
        out[shift:] = x[:x.size - shift]
    else:
        out[:shift] = x[-shift:]
    return out


class Augmenter:
    """Seeded on-the-fly augmentation of a float32 ``(n,)`` 16 kHz clip (see the module docstring).

    Args:
        config: probabilities and ranges.
        backgrounds: the split's :class:`BackgroundBank` (``BackgroundBank.noise_only()`` when no
            ambience was fetched).
        rirs: the split's :class:`RirBank`, or None to disable reverb whatever ``p_reverb`` says.
    """

    def __init__(self, config: AugmentConfig | None = None,
                 backgrounds: BackgroundBank | None = None, rirs: RirBank | None = None) -> None:
        self.config = config or AugmentConfig()
        self.backgrounds = backgrounds if backgrounds is not None else BackgroundBank.noise_only()
        self.rirs = rirs

    def draw(self, n: int, rng: np.random.Generator) -> AugmentPlan:
        """Draw the random choices for one clip of ``n`` samples (the same order every call)."""
        rng = _check_rng(rng)
        c = self.config
        max_shift = int(round(c.shift_s * SAMPLE_RATE))
        shift = int(rng.integers(-max_shift, max_shift + 1)) if max_shift else 0
        rir = None
        if rng.random() < c.p_reverb and self.rirs is not None and len(self.rirs):
            rir = self.rirs.sample(rng)
        background = self.backgrounds.sample(n, rng) if rng.random() < c.p_background else None
        snr = float(rng.uniform(*c.snr_db))
        bg_dbfs = float(rng.uniform(*c.silent_background_dbfs))
        telephone = bool(rng.random() < c.p_telephone)
        peak = float(rng.uniform(*c.peak))
        floor = noise_floor(n, rng, c.floor_dbfs)
        speed = 1.0
        if c.p_speed > 0.0 and rng.random() < c.p_speed:  # no draw at all when off
            speed = float(c.speeds[int(rng.integers(len(c.speeds)))])
        return AugmentPlan(shift, rir, background, snr, bg_dbfs, telephone, peak, floor, speed)

    def apply(self, wave: np.ndarray, plan: AugmentPlan) -> np.ndarray:
        """Apply a drawn plan to ``wave``; a pure function of its inputs. Float32 ``(n,)``."""
        x = _check_wave(wave)
        if plan.floor.size != x.size:
            raise AudioInputError(f"the plan was drawn for {plan.floor.size} samples but the wave "
                                  f"has {x.size}")
        if plan.speed != 1.0:
            x = change_speed(x, plan.speed)
        y = _shift(x.astype(np.float64), plan.shift)
        if plan.rir is not None:
            y = apply_rir(y, plan.rir).astype(np.float64)
        if plan.background is not None:
            bg = np.asarray(plan.background, dtype=np.float64)
            if rms(y) > SILENT_RMS:
                y = mix_at_snr(y, bg, plan.snr_db).astype(np.float64)
            else:
                y = y + bg / max(rms(bg), 1e-12) * 10.0 ** (plan.background_dbfs / 20.0)
        if plan.telephone:
            y = telephone_band(y, self.config.telephone_band_hz,
                               self.config.telephone_rate).astype(np.float64)
        peak = float(np.max(np.abs(y))) if y.size else 0.0
        if peak > 0.0:
            y = y * (plan.peak / peak)
        return (y + plan.floor).astype(np.float32)

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _check_wave(wave)
        return self.apply(x, self.draw(x.size, rng))


def _check_wave(wave: np.ndarray) -> np.ndarray:
    x = np.asarray(wave)
    if x.ndim != 1 or x.size == 0 or not np.issubdtype(x.dtype, np.floating):
        raise AudioInputError(f"Augmenter needs a non-empty 1-D float waveform (n,) at "
                              f"{SAMPLE_RATE} Hz; got shape {x.shape}, dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise AudioInputError("Augmenter input contains NaN/Inf samples; all must be finite")
    return x.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# SpecAugment
# --------------------------------------------------------------------------------------------


def spec_augment_spans(batch: int, frames: int, bins: int, generator: torch.Generator,
                       time_masks: int = 2, max_time: int = 20, freq_masks: int = 2,
                       max_freq: int = 24) -> list[dict[str, list[tuple[int, int]]]]:
    """The spans :func:`spec_augment` masks: per example ``{"time": [(start, width)], "freq": ...}``.

    Per example, first ``time_masks`` time spans then ``freq_masks`` frequency spans; each width
    is uniform in ``[0, min(max, size)]`` and each start uniform in ``[0, size - width]``.
    Draws from ``generator`` only (CPU ``torch.randint``).
    """
    for name, v in (("time_masks", time_masks), ("max_time", max_time),
                    ("freq_masks", freq_masks), ("max_freq", max_freq)):
        if int(v) < 0:
            raise ConfigError(f"{name} must be >= 0; got {v}")

    def one(size: int, max_width: int) -> tuple[int, int]:
        w = int(torch.randint(0, min(max_width, size) + 1, (1,), generator=generator))
        s = int(torch.randint(0, size - w + 1, (1,), generator=generator))
        return s, w

    out = []
    for _ in range(batch):
        t = [one(frames, max_time) for _ in range(time_masks)]
        f = [one(bins, max_freq) for _ in range(freq_masks)]
        out.append({"time": t, "freq": f})
    return out


def spec_augment(features: torch.Tensor, generator: torch.Generator, time_masks: int = 2,
                 max_time: int = 20, freq_masks: int = 2, max_freq: int = 24,
                 fill: float = 0.0) -> torch.Tensor:
    """A copy of ``features`` ``(B, T, F)`` with per-example time and frequency masks set to ``fill``.

    ``max_time`` is in frames (AuM fbank: 10 ms each), ``max_freq`` in mel bins. The spans are
    those of :func:`spec_augment_spans` with the same generator state; all other values are
    copied bit for bit.
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 3:
        shape = tuple(features.shape) if hasattr(features, "shape") else type(features).__name__
        raise AudioInputError(f"spec_augment needs a (batch, frames, bins) tensor; got {shape}")
    b, t, f = features.shape
    spans = spec_augment_spans(b, t, f, generator, time_masks, max_time, freq_masks, max_freq)
    out = features.clone()
    for i, sp in enumerate(spans):
        for s, w in sp["time"]:
            out[i, s:s + w, :] = fill
        for s, w in sp["freq"]:
            out[i, :, s:s + w] = fill
    return out
