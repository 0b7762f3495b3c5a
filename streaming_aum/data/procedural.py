"""Procedural event sounds made in numpy (data.md 5.2), so a stream always has "other sounds".

Classes ``PROCEDURAL_CLASSES``: siren, alarm_beep, car_horn, clock_tick, door_knock, engine_idle.
:func:`procedural_event` returns 16 kHz mono float32 ``(n,)`` with peak ``PROCEDURAL_PEAK`` (0.5);
parameters in ``PROCEDURAL_RANGES`` are in Hz, seconds, rpm or plain ratios, and the train and
test halves draw the sound-defining ones from disjoint ranges, so test events are acoustically new.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from streaming_aum.audio_constants import SAMPLE_RATE
from streaming_aum.data.noise import _check_rng
from streaming_aum.data.splits import bank_split
from streaming_aum.errors import ConfigError

__all__ = [
    "PROCEDURAL_CLASSES",
    "PROCEDURAL_RANGES",
    "procedural_event",
]

PROCEDURAL_CLASSES: tuple[str, ...] = (
    "siren", "alarm_beep", "car_horn", "clock_tick", "door_knock", "engine_idle")

# Per class, per bank half: parameter -> (low, high). Train and test intervals never overlap
# for the parameters that define the sound (frequencies, rates); durations are shared.
PROCEDURAL_RANGES: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "siren": {  # FM sweep between f_lo and f_hi; train = slow wail, test = fast yelp
        "train": {"f_lo_hz": (500, 700), "f_hi_hz": (1100, 1400), "period_s": (1.5, 3.0)},
        "test": {"f_lo_hz": (750, 950), "f_hi_hz": (1500, 1800), "period_s": (0.2, 0.5)},
    },
    "alarm_beep": {  # band-limited square-wave bursts
        "train": {"freq_hz": (2000, 2600), "beep_s": (0.06, 0.12)},
        "test": {"freq_hz": (2900, 3500), "beep_s": (0.15, 0.25)},
    },
    "car_horn": {  # two harmonic tones f1 and f1 * ratio
        "train": {"f1_hz": (380, 450), "ratio": (1.22, 1.28)},
        "test": {"f1_hz": (300, 360), "ratio": (1.15, 1.20)},
    },
    "clock_tick": {  # periodic damped clicks
        "train": {"period_s": (0.9, 1.1), "resonance_hz": (1800, 2600)},
        "test": {"period_s": (0.45, 0.55), "resonance_hz": (3200, 4200)},
    },
    "door_knock": {  # 2-4 damped low resonant hits
        "train": {"interval_s": (0.14, 0.22), "resonance_hz": (120, 220)},
        "test": {"interval_s": (0.26, 0.36), "resonance_hz": (250, 380)},
    },
    "engine_idle": {  # harmonic series at the firing rate (4-stroke, 4 cylinders: rpm / 30 Hz)
        "train": {"rpm": (600, 850)},
        "test": {"rpm": (950, 1300)},
    },
}
PROCEDURAL_PEAK: float = 0.5


def _u(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1]))


def _envelope(n: int, attack: float = 0.01, release: float = 0.03) -> np.ndarray:
    env = np.ones(n)
    a, r = min(n // 2, int(attack * SAMPLE_RATE)), min(n // 2, int(release * SAMPLE_RATE))
    if a:
        env[:a] = np.linspace(0.0, 1.0, a)
    if r:
        env[-r:] = np.minimum(env[-r:], np.linspace(1.0, 0.0, r))
    return env


def _harmonics(phase: np.ndarray, f0: np.ndarray | float, amps: Iterable[float]) -> np.ndarray:
    """Sum of ``a_k sin(k phase)``, dropping harmonics above 7 kHz (no aliasing at 16 kHz)."""
    f0max = float(np.max(f0))
    y = np.zeros_like(phase)
    for k, a in enumerate(amps, start=1):
        if k * f0max < 7000.0:
            y += a * np.sin(k * phase)
    return y


def procedural_event(kind: str, rng: np.random.Generator, split: str = "train") -> np.ndarray:
    """One procedural event sound of class ``kind``, float32 ``(n,)`` at 16 kHz, peak 0.5.

    ``split`` selects the parameter ranges of :data:`PROCEDURAL_RANGES` (``train``/``val`` ->
    train ranges, ``test*`` -> test ranges), so test events are acoustically new.
    """
    if kind not in PROCEDURAL_RANGES:
        raise ConfigError(f"unknown procedural class {kind!r}; accepted: "
                          f"{', '.join(PROCEDURAL_CLASSES)}")
    rng = _check_rng(rng)
    p = PROCEDURAL_RANGES[kind][bank_split(split)]
    sr = SAMPLE_RATE
    if kind == "siren":
        n = int(_u(rng, (1.5, 4.0)) * sr)
        t = np.arange(n) / sr
        lo, hi, period = _u(rng, p["f_lo_hz"]), _u(rng, p["f_hi_hz"]), _u(rng, p["period_s"])
        f = lo + (hi - lo) * (0.5 - 0.5 * np.cos(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)))
        y = _harmonics(2 * np.pi * np.cumsum(f) / sr, f, (1.0, 0.5, 0.25)) * _envelope(n)
    elif kind == "alarm_beep":
        f, beep = _u(rng, p["freq_hz"]), _u(rng, p["beep_s"])
        beeps = int(rng.integers(3, 9))
        n = int(2 * beep * beeps * sr)
        t = np.arange(n) / sr
        sq = _harmonics(2 * np.pi * f * t, f, [(1.0 / k if k % 2 else 0.0) for k in range(1, 8)])
        gate = ((t // beep) % 2 == 0).astype(np.float64)
        gate = np.convolve(gate, np.ones(32) / 32, mode="same")  # 2 ms edges, no clicks
        y = sq * gate
    elif kind == "car_horn":
        n = int(_u(rng, (0.3, 1.5)) * sr)
        t = np.arange(n) / sr
        f1 = _u(rng, p["f1_hz"])
        f2 = f1 * _u(rng, p["ratio"])
        amps = [1.0 / k for k in range(1, 16)]
        y = (_harmonics(2 * np.pi * f1 * t, f1, amps) + _harmonics(2 * np.pi * f2 * t, f2, amps))
        y = y * _envelope(n, 0.02, 0.05)
    elif kind == "clock_tick":
        n = int(_u(rng, (2.0, 4.0)) * sr)
        period, res = _u(rng, p["period_s"]), _u(rng, p["resonance_hz"])
        y = np.zeros(n)
        click_n = int(0.02 * sr)
        tc = np.arange(click_n) / sr
        for i, start in enumerate(range(int(0.05 * sr), n - click_n, int(period * sr))):
            fr = res * (0.85 if i % 2 else 1.0)  # tick / tock
            y[start:start + click_n] += np.sin(2 * np.pi * fr * tc) * np.exp(-tc / 0.003)
    elif kind == "door_knock":
        hits = int(rng.integers(2, 5))
        interval, res = _u(rng, p["interval_s"]), _u(rng, p["resonance_hz"])
        hit_n = int(0.15 * sr)
        n = int(interval * (hits - 1) * sr) + hit_n
        y = np.zeros(n)
        th = np.arange(hit_n) / sr
        for h in range(hits):
            s = int(h * interval * sr)
            decay = _u(rng, (0.03, 0.06))
            body = (np.sin(2 * np.pi * res * th) + 0.5 * np.sin(2 * np.pi * 2.3 * res * th))
            click = rng.standard_normal(hit_n) * np.exp(-th / 0.002) * 0.5
            y[s:s + hit_n] += (body * np.exp(-th / decay) + click) * _u(rng, (0.7, 1.0))
    else:  # engine_idle
        n = int(_u(rng, (2.0, 4.0)) * sr)
        t = np.arange(n) / sr
        fire = _u(rng, p["rpm"]) / 30.0
        jitter = 1.0 + 0.01 * np.sin(2 * np.pi * _u(rng, (0.3, 1.0)) * t)
        phase = 2 * np.pi * np.cumsum(fire * jitter) / sr
        amps = [math.exp(-k / 8.0) * _u(rng, (0.5, 1.0)) for k in range(1, 41)]
        tone = _harmonics(phase, fire, amps)
        rumble = np.convolve(rng.standard_normal(n), np.ones(8) / 8, mode="same")
        y = (tone + 0.3 * rumble * (1 + np.sin(phase))) * _envelope(n, 0.2, 0.2)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    y = y * (PROCEDURAL_PEAK / peak) if peak > 0 else y
    return y.astype(np.float32)
