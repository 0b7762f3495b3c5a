"""Background, event and room banks for augmentation and long streams (data.md 1.2, 1.4, 5.2, A.3, A.4).

Three banks, all 16 kHz mono float32, each split into ``train`` and ``test`` halves that never
share a source:

* **ambience beds** (:class:`BackgroundBank`): real non-speech recordings of at least 2 s (rain,
  water, fire, traffic, industry, crowd, birds, ...) taken from Debian game/education/sound-theme
  packages by :func:`fetch_ambience`, plus coloured noise (:func:`colored_noise`);
* **event sounds** (:class:`EventBank`): short class-labelled recordings from the same packages
  (footsteps, door, bell, phone, animals, explosion, glass, ...) plus procedural classes made here
  in numpy (:func:`procedural_event`: siren, alarm_beep, car_horn, clock_tick, door_knock,
  engine_idle) whose parameter ranges differ between train and test, so a stream always has
  "other sounds" even when nothing was fetched;
* **room impulse responses** (:class:`RirBank`): pyroomacoustics shoebox rooms made by
  :func:`make_rir_bank`, split by room, with :func:`apply_rir` to convolve.

Cache layout written by :func:`fetch_ambience` and :func:`make_rir_bank` under ``cache_dir``::

    deb/*.deb                      downloaded packages (apt-get download, never installed)
    unpacked/<package>/...         dpkg -x of each package
    rcc/<resource>/...             sounds pulled out of GCompris Qt .rcc resource files
    ambience/<split>/<class>/*.wav ambience beds, 16 kHz mono int16
    events/<split>/<class>/*.wav   event sounds, 16 kHz mono int16
    ambience.jsonl, events.jsonl   one row per file: path (relative to cache_dir), class, kind,
                                   package, source, licence, split, duration_s, orig_rate
    rirs_train.npy, rirs_test.npy  float16 (count, max_len), zero-padded, peak 1
    rirs.jsonl, rirs_params.json   one row per RIR (split, index, room, dims, rt60, length, ...)

Splits: a file's split comes from a stable hash of its *group* (package + file stem with digits
removed, so ``Fire1.wav``/``Fire2.wav`` and ``wolf-growl-1/-2`` stay together), 30% test.
Licences are per package (``PACKAGE_LICENCES``); see ``unpacked/<pkg>/usr/share/doc/<pkg>/copyright``
for per-file detail. Generated audio stays in the cache and is never committed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import subprocess
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf
import torch

from streaming_aum.audio_constants import SAMPLE_RATE
from streaming_aum.audio_io import resample
from streaming_aum.errors import AudioInputError, AuMError, ConfigError

__all__ = [
    "AMBIENCE_MIN_S",
    "DEFAULT_PACKAGES",
    "NOISE_KINDS",
    "PACKAGE_LICENCES",
    "PROCEDURAL_CLASSES",
    "PROCEDURAL_RANGES",
    "BackgroundBank",
    "EventBank",
    "RirBank",
    "apply_rir",
    "bank_split",
    "colored_noise",
    "fetch_ambience",
    "loop_to_length",
    "make_rir_bank",
    "noise_floor",
    "procedural_event",
    "rcc_extract",
    "rms",
    "room_rirs",
    "schroeder_rt60",
    "stable_split",
]

# --------------------------------------------------------------------------------------------
# constants
# --------------------------------------------------------------------------------------------

BANK_SPLITS: tuple[str, ...] = ("train", "test")
TEST_FRACTION: float = 0.3  # share of source groups that go to the test half (70/30)
AMBIENCE_MIN_S: float = 2.0  # ambience beds are at least this long
EVENT_MIN_S: float = 0.05
EVENT_MAX_S: float = 8.0  # longer "event" files are dropped (mostly jingles)
SILENT_PEAK: float = 1e-4  # a decoded file whose peak is below this is treated as empty
LOOP_CROSSFADE_S: float = 0.05  # crossfade when a short ambience file is looped
P_AMBIENCE: float = 0.6  # BackgroundBank.sample: real ambience vs coloured noise
P_PROCEDURAL: float = 0.25  # EventBank.sample: procedural vs recorded when both exist
NOISE_KINDS: tuple[str, ...] = ("white", "pink", "brown")
FLOOR_DBFS: tuple[float, float] = (-70.0, -45.0)  # RMS re 1.0 full scale

DEFAULT_PACKAGES: tuple[str, ...] = (
    "minetest-data",  # 3.6 MB: footsteps per surface, doors, fire, water/lava beds, glass, tnt
    "sound-theme-freedesktop",  # 0.4 MB: bell, phone, alarm clock, camera shutter
    "oxygen-sounds",  # 1.9 MB: phone ring and UI chimes
    "lincity-ng-data",  # 45 MB: ~4 s loops of traffic, industry, water, fire, crowd, farm, train
    "gcompris-qt-data",  # 44 MB: farm animals, rain, factory, train, door, bark, gong (.rcc)
    "wesnoth-1.16-data",  # 146 MB: ambient beds (birds, campfire, night, ship), explosion, wolf
)  # 241 MB of .deb in all

PACKAGE_LICENCES: dict[str, str] = {
    "minetest-data": "CC-BY-SA-3.0 (*.ogg; doors CC-BY-3.0)",
    "sound-theme-freedesktop": "CC-BY-SA-3.0 / CC-BY-3.0 / GPL-2+ (per file)",
    "oxygen-sounds": "LGPL-3.0-or-later",
    "lincity-ng-data": "GPL-2+",
    "gcompris-qt-data": "GPL-3+ / CC-BY(-SA) (per file)",
    "wesnoth-1.16-data": "GPL-2+",
}

AUDIO_EXTENSIONS: tuple[str, ...] = (".ogg", ".oga", ".wav", ".flac")
GCOMPRIS_RCC_DIR = "usr/share/gcompris-qt/rcc"

# Speech, voices, music and instruments never enter a bank (checked before the class rules):
# spoken channel tests, wesnoth unit grunts (-hit/-die/human), lincity loops of people talking
# (school, market, residential, ...), GCompris instruments and world music, game music.
EXCLUDE_RE = re.compile(
    r"(/music/|explore_world_music|/instruments?/|/voices?[-_/]|audio-channel|audio-test-signal|"
    r"wardrums|guitar|fanfare|witch|laugh|intro\.ogg|-die|-hit|human|groan|ugg\.wav|wail|"
    r"school|residential|market|university|health|commune|shanty|youcannot|tuxok|weird|lapause)"
)

# (class, role, regex on the lower-cased "package/relative/path"); the first match wins.
# role "ambience": kept if >= AMBIENCE_MIN_S; role "event": kept if EVENT_MIN_S..EVENT_MAX_S.
CLASS_RULES: tuple[tuple[str, str, str], ...] = (
    # ambience beds
    ("rain", "ambience", r"rain_in_garden|frogsinpond"),
    ("harbor", "ambience", r"harbor\d*\.wav|ambient/ship\.ogg"),
    ("water", "ambience", r"env_sounds_water|/water\d\.wav|parklandlake|water_fill"),
    ("fire", "ambience", r"fire_(fire|large|small)|/fire\d\.wav|firestation|firewasteland|"
                         r"campfire|furnace_active|env_sounds_lava"),
    ("traffic", "ambience", r"trafic|dirttrack"),
    ("train", "ambience", r"railtrain|train_slowing|railroad/.*train\.wav"),
    ("industry", "ambience", r"industry|factory_noise|coalmine|oremine|powercoal|blacksmith|"
                             r"/mill\d|windmill|recycle|/tip\d|monumentconstruction|substation\d|"
                             r"/rocket\d|rockettakeoff|/build\d"),
    ("crowd", "ambience", r"sportscroud"),
    ("birds", "ambience", r"ambient/(birds\d|morning)\.ogg|/green\d\.wav|parklandplane"),
    ("night_insects", "ambience", r"ambient/night\.ogg"),
    ("farm", "ambience", r"(organic)?farm\d\.wav"),
    # events
    ("footsteps", "event", r"footstep|icy_walk"),
    ("door", "event", r"door_open|door_close|doors_|fencegate"),
    ("knock", "event", r"knock"),
    ("bell_chime", "event", r"/bell\.(oga|wav)$|gong"),
    ("phone_alarm", "event", r"phone|alarm-clock|lrring_"),
    ("dog", "event", r"/dog\.ogg|bark_"),
    ("cat", "event", r"/cat\.ogg"),
    ("cow", "event", r"/cow\.ogg"),
    ("pig", "event", r"/pig\.ogg"),
    ("sheep", "event", r"/sheep\.ogg"),
    ("horse", "event", r"/horse\.ogg|horse-canter"),
    ("duck", "event", r"/duck\.ogg"),
    ("chicken", "event", r"/chickens?\.ogg"),
    ("bird", "event", r"/owl\.ogg"),
    ("wolf", "event", r"wolf-growl"),
    ("explosion", "event", r"explo|tnt_explode|fireballs"),
    ("gunshot", "event", r"gunshot"),
    ("glass_break", "event", r"break_glass"),
    ("thunder", "event", r"/lightning\.ogg|/rumble\.ogg"),
    ("car", "event", r"carengine|/car\.wav|cart_moving"),
    ("helicopter", "event", r"helicopter"),
    ("heartbeat", "event", r"heart_beat"),
    ("applause", "event", r"applause"),
    ("water_drop", "event", r"/drip\.wav|/bubble\.wav"),
    ("camera_shutter", "event", r"camera-shutter|screen-capture"),
    ("impact", "event", r"object_falling|hits_\d|/crash\.wav|metal_hit|pickaxe|place_node|"
                        r"/brick\.wav|cave-in|dig_choppy|dig_cracky"),
    ("metal_hit", "event", r"/sword-\d\.ogg|/mace\.(ogg|wav)|/axe\.ogg"),
    ("horn", "event", r"horn-signals/horn-\d"),
    ("ui_sound", "event", r"oxygen-(im|sys|window|k3b)|stereo/(complete|message|dialog-|device-|"
                          r"service-|trash-empty|suspend-error|power-)"),
)
_CLASS_RULES_RE = tuple((c, role, re.compile(rx)) for c, role, rx in CLASS_RULES)

# --------------------------------------------------------------------------------------------
# small numeric helpers
# --------------------------------------------------------------------------------------------


def rms(x: np.ndarray) -> float:
    """Root mean square of ``x`` (float64 accumulation); 0.0 for an empty array."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def _check_rng(rng: np.random.Generator) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)); "
                          f"got {type(rng).__name__}")
    return rng


def bank_split(split: str) -> str:
    """The bank half a data split draws from: ``train``/``val`` -> ``train``, ``test*`` -> ``test``."""
    if split in ("train", "val"):
        return "train"
    if split == "test" or split.startswith("test_"):
        return "test"
    raise ConfigError(f"unknown split {split!r}; accepted: train, val, test, test_voice, "
                      f"test_engine")


def stable_split(key: str, test_fraction: float = TEST_FRACTION) -> str:
    """``'test'`` for about ``test_fraction`` of keys, else ``'train'``; a pure function of ``key``."""
    h = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 2**32
    return "test" if h < test_fraction else "train"


def _group_key(package: str, rel_path: str) -> str:
    """Package + file stem with digit runs removed: numbered variants of one recording share a split."""
    stem = Path(rel_path).stem.lower()
    stem = re.sub(r"\d+", "", stem)
    stem = re.sub(r"[-_. ]+", "_", stem).strip("_")
    return f"{package}/{stem}"


# --------------------------------------------------------------------------------------------
# coloured noise and noise floor (data.md A.3)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# procedural event sounds (data.md 5.2): disjoint parameter ranges for train and test
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# fetching recordings: apt-get download, dpkg -x, GCompris .rcc, classify, decode (data.md 1.2, 6)
# --------------------------------------------------------------------------------------------


def rcc_extract(path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Path]:
    """Extract the files of a Qt ``.rcc`` resource whose names end in ``extensions`` (data.md A.4).

    Handles format versions 1-3 and zlib-compressed entries; zstd entries (flag 4, not used by
    GCompris 3.1) are skipped. Returns the written paths (existing ones are kept, not rewritten).
    """
    b = Path(path).read_bytes()
    if b[:4] != b"qres":
        raise AudioInputError(f"{path} is not a Qt resource file (no 'qres' magic)")
    ver, tree, data, names = struct.unpack(">IIII", b[4:20])
    node = 14 if ver == 1 else 22
    out: list[Path] = []

    def name(off: int) -> str:
        o = names + off
        (ln,) = struct.unpack(">H", b[o:o + 2])
        return b[o + 6:o + 6 + 2 * ln].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        i, prefix = stack.pop()
        o = tree + i * node
        noff, flags = struct.unpack(">IH", b[o:o + 6])
        p = f"{prefix}/{name(noff)}" if i else ""
        if flags & 2:  # directory
            cnt, first = struct.unpack(">II", b[o + 6:o + 14])
            stack.extend((c, p) for c in range(first, first + cnt))
            continue
        if not p.lower().endswith(extensions) or flags & 4:
            continue
        target = Path(out_dir) / p.lstrip("/")
        if not target.exists():
            d = data + struct.unpack(">I", b[o + 10:o + 14])[0]
            (size,) = struct.unpack(">I", b[d:d + 4])
            blob = b[d + 4:d + 4 + size]
            if flags & 1:
                blob = zlib.decompress(blob[4:])
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(blob)
            tmp.replace(target)
        out.append(target)
    return sorted(out)


def classify_path(key: str) -> tuple[str, str] | None:
    """``(class, role)`` for a ``package/relative/path`` key, or None (excluded or unlabelled)."""
    k = key.lower()
    if EXCLUDE_RE.search(k):
        return None
    for cls, role, rx in _CLASS_RULES_RE:
        if rx.search(k):
            return cls, role
    return None


def _download(packages: Sequence[str], deb_dir: Path, log: list[str]) -> dict[str, Path]:
    deb_dir.mkdir(parents=True, exist_ok=True)
    have: dict[str, Path] = {}
    for pkg in packages:
        found = sorted(deb_dir.glob(f"{pkg}_*.deb"))
        if not found:
            try:
                res = subprocess.run(["apt-get", "download", pkg], cwd=deb_dir, capture_output=True,
                                     text=True, timeout=1200)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.append(f"{pkg}: apt-get download failed ({exc})")
                continue
            found = sorted(deb_dir.glob(f"{pkg}_*.deb"))
            if res.returncode != 0 or not found:
                log.append(f"{pkg}: apt-get download failed: {res.stderr.strip()[-300:]}")
                continue
        have[pkg] = found[-1]
    return have


def _unpack(pkg: str, deb: Path, root: Path, log: list[str]) -> Path | None:
    dest = root / pkg
    marker = dest / ".unpacked"
    if marker.exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    try:
        res = subprocess.run(["dpkg", "-x", str(deb), str(dest)], capture_output=True, text=True,
                             timeout=1200)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.append(f"{pkg}: dpkg -x failed ({exc})")
        return None
    if res.returncode != 0:
        log.append(f"{pkg}: dpkg -x failed: {res.stderr.strip()[-300:]}")
        return None
    marker.write_text(deb.name + "\n")
    return dest


def _candidates(pkg: str, unpacked: Path, rcc_root: Path) -> list[tuple[str, Path]]:
    """``(key, file)`` pairs: key = ``package/relative/path`` (rcc entries: ``package/rcc/name/...``)."""
    out: list[tuple[str, Path]] = []
    for f in sorted(unpacked.rglob("*")):
        if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS:
            out.append((f"{pkg}/{f.relative_to(unpacked).as_posix()}", f))
    rcc_dir = unpacked / GCOMPRIS_RCC_DIR
    if rcc_dir.is_dir():
        for rcc in sorted(rcc_dir.glob("*.rcc")):
            dest = rcc_root / rcc.stem
            marker = rcc_root / f".{rcc.stem}.done"
            if not marker.exists():
                rcc_extract(rcc, dest)
                rcc_root.mkdir(parents=True, exist_ok=True)
                marker.write_text("ok\n")
            if dest.is_dir():
                for f in sorted(dest.rglob("*")):
                    if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS:
                        out.append((f"{pkg}/rcc/{rcc.stem}/{f.relative_to(dest).as_posix()}", f))
    return out


def decode_16k_mono(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Decode any libsndfile-readable file to 16 kHz mono float32 ``(n,)``; returns (audio, orig_rate)."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise AudioInputError(f"cannot decode {path} ({exc})") from exc
    if data.size == 0:
        raise AudioInputError(f"{path} holds no samples")
    mono = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    y = resample(mono, int(rate), SAMPLE_RATE).numpy().astype(np.float32)
    if not np.all(np.isfinite(y)):
        raise AudioInputError(f"{path} decodes to NaN/Inf samples")
    return y, int(rate)


def fetch_ambience(cache_dir: str | os.PathLike[str],
                   packages: Sequence[str] = DEFAULT_PACKAGES) -> dict:
    """Download, unpack, classify and decode real recordings into the ambience and event banks.

    Runs ``apt-get download`` (no install, no scripts) for each package missing from
    ``cache_dir/deb``, ``dpkg -x`` into ``cache_dir/unpacked/<package>``, extracts GCompris
    ``.rcc`` sounds, keeps the files that a rule of :data:`CLASS_RULES` labels (speech, voice and
    music excluded), decodes them to 16 kHz mono and writes them as int16 wav under
    ``cache_dir/{ambience,events}/<split>/<class>/`` with the manifests ``ambience.jsonl`` and
    ``events.jsonl``. Idempotent: packages, unpacked trees and decoded files that exist are reused;
    the manifests are rewritten from what is on disk.

    Returns a summary: counts per bank/split/class, total seconds, packages used, and a ``log`` of
    problems (a package that failed to download is reported there and skipped).

    Raises:
        AuMError: when no package could be obtained at all.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    debs = _download(list(packages), cache / "deb", log)
    if not debs:
        raise AuMError(f"none of the packages {', '.join(packages)} could be downloaded with "
                       f"apt-get download into {cache / 'deb'}: " + "; ".join(log))
    rows: dict[str, list[dict]] = {"ambience": [], "events": []}
    for pkg, deb in debs.items():
        unpacked = _unpack(pkg, deb, cache / "unpacked", log)
        if unpacked is None:
            continue
        for key, src in _candidates(pkg, unpacked, cache / "rcc"):
            label = classify_path(key)
            if label is None:
                continue
            cls, role = label
            row = _bank_file(cache, pkg, key, src, cls, role, log)
            if row is not None:
                rows["ambience" if role == "ambience" else "events"].append(row)
    summary: dict = {"packages": sorted(debs), "log": log}
    for bank, bank_rows in rows.items():
        bank_rows.sort(key=lambda r: r["path"])
        _write_jsonl(cache / f"{bank}.jsonl", bank_rows)
        summary[bank] = _count(bank_rows)
    return summary


def _bank_file(cache: Path, pkg: str, key: str, src: Path, cls: str, role: str,
               log: list[str]) -> dict | None:
    split = stable_split(_group_key(pkg, key))
    bank = "ambience" if role == "ambience" else "events"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key.split("/", 1)[1].replace("/", "__"))
    out = cache / bank / split / cls / f"{pkg}__{Path(safe).stem}.wav"
    if out.exists():
        n = sf.info(str(out)).frames
        orig_rate = int(sf.info(str(src)).samplerate)
    else:
        try:
            y, orig_rate = decode_16k_mono(src)
        except AudioInputError as exc:
            log.append(str(exc))
            return None
        dur = y.size / SAMPLE_RATE
        if float(np.max(np.abs(y))) < SILENT_PEAK:
            return None
        if role == "ambience" and dur < AMBIENCE_MIN_S:
            return None
        if role == "event" and not (EVENT_MIN_S <= dur <= EVENT_MAX_S):
            return None
        peak = float(np.max(np.abs(y)))
        if peak > 1.0:
            y = y / peak
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.stem + ".part.wav")
        sf.write(str(tmp), y, SAMPLE_RATE, subtype="PCM_16")
        tmp.replace(out)
        n = y.size
    return {"path": out.relative_to(cache).as_posix(), "class": cls, "kind": role,
            "package": pkg, "source": key.split("/", 1)[1], "licence": PACKAGE_LICENCES.get(
                pkg, f"see usr/share/doc/{pkg}/copyright"), "split": split,
            "duration_s": round(n / SAMPLE_RATE, 3), "orig_rate": orig_rate}


def _count(rows: list[dict]) -> dict:
    out: dict = {"files": len(rows), "seconds": round(sum(r["duration_s"] for r in rows), 1)}
    for split in BANK_SPLITS:
        sel = [r for r in rows if r["split"] == split]
        classes: dict[str, int] = {}
        for r in sel:
            classes[r["class"]] = classes.get(r["class"], 0) + 1
        out[split] = {"files": len(sel), "seconds": round(sum(r["duration_s"] for r in sel), 1),
                      "classes": dict(sorted(classes.items()))}
    return out


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    tmp.replace(path)


def _read_jsonl(path: Path) -> list[dict]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _load_bank_rows(cache_dir: str | os.PathLike[str], manifest: str, split: str) -> list[dict]:
    path = Path(cache_dir) / manifest
    if not path.exists():
        raise ConfigError(f"no {manifest} in {cache_dir}; build the banks with `aum data "
                          f"background --cache {cache_dir}` (or use the noise-only/procedural banks)")
    half = bank_split(split)
    return [r for r in _read_jsonl(path) if r["split"] == half]


def _read_wav(path: Path) -> np.ndarray:
    y, rate = sf.read(str(path), dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if rate != SAMPLE_RATE:
        y = resample(torch.from_numpy(np.ascontiguousarray(y)), int(rate), SAMPLE_RATE).numpy()
    return np.asarray(y, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# banks
# --------------------------------------------------------------------------------------------


@dataclass
class BackgroundBank:
    """Ambience beds of one split (16 kHz float32 arrays) plus coloured noise.

    ``sample(n, rng)`` returns unit-RMS background: with probability ``p_ambience`` a random
    segment of a random ambience file (looped with a crossfade when shorter than ``n``), else
    white/pink/brown noise. Without ambience it is always noise.
    """

    ambience: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    split: str = "train"
    p_ambience: float = P_AMBIENCE

    @classmethod
    def load(cls, cache_dir: str | os.PathLike[str], split: str) -> "BackgroundBank":
        """The ambience files of ``split``'s half (``train``/``val`` -> train, ``test*`` -> test)."""
        rows = _load_bank_rows(cache_dir, "ambience.jsonl", split)
        arrays = [_read_wav(Path(cache_dir) / r["path"]) for r in rows]
        return cls(arrays, [r["path"] for r in rows], bank_split(split))

    @classmethod
    def noise_only(cls, split: str = "train") -> "BackgroundBank":
        """A bank with no recordings: every sample is coloured noise."""
        return cls([], [], bank_split(split))

    def __len__(self) -> int:
        return len(self.ambience)

    def sample_ambience(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """A unit-RMS ambience segment ``(n,)`` and its name (coloured noise if the bank is empty)."""
        rng = _check_rng(rng)
        if self.ambience:
            i = int(rng.integers(len(self.ambience)))
            x = self.ambience[i]
            seg = loop_to_length(x, n, int(rng.integers(x.size)))
            r = rms(seg)
            if r > SILENT_PEAK * 0.1:
                return (seg / r).astype(np.float32), self.names[i]
        kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
        return colored_noise(n, kind, rng), f"noise:{kind}"

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Unit-RMS background, float32 ``(n,)``: ambience (p=p_ambience) or coloured noise."""
        rng = _check_rng(rng)
        if self.ambience and rng.random() < self.p_ambience:
            return self.sample_ambience(n, rng)[0]
        kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
        return colored_noise(n, kind, rng)


@dataclass
class EventBank:
    """Class-labelled event sounds of one split: recordings plus the procedural classes.

    ``sample(rng)`` returns ``(wave float32 (n,), class, source)``: a procedural event with
    probability ``p_procedural`` (always when there are no recordings), else a recording of a
    uniformly drawn class (class-balanced: UI chimes would otherwise dominate).
    """

    waves: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    split: str = "train"
    p_procedural: float = P_PROCEDURAL

    @classmethod
    def load(cls, cache_dir: str | os.PathLike[str], split: str,
             p_procedural: float = P_PROCEDURAL) -> "EventBank":
        rows = _load_bank_rows(cache_dir, "events.jsonl", split)
        waves = [_read_wav(Path(cache_dir) / r["path"]) for r in rows]
        return cls(waves, [r["class"] for r in rows],
                   [f"{r['package']}/{r['source']}" for r in rows], bank_split(split), p_procedural)

    @classmethod
    def procedural_only(cls, split: str = "train") -> "EventBank":
        return cls([], [], [], bank_split(split), 1.0)

    def __len__(self) -> int:
        return len(self.waves)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
        rng = _check_rng(rng)
        if not self.waves or rng.random() < self.p_procedural:
            kind = PROCEDURAL_CLASSES[int(rng.integers(len(PROCEDURAL_CLASSES)))]
            return procedural_event(kind, rng, self.split), kind, f"procedural:{kind}:{self.split}"
        classes = sorted(set(self.labels))
        cls = classes[int(rng.integers(len(classes)))]  # class-balanced: class first, then file
        members = [i for i, lab in enumerate(self.labels) if lab == cls]
        i = members[int(rng.integers(len(members)))]
        return self.waves[i], self.labels[i], self.sources[i]


# --------------------------------------------------------------------------------------------
# room impulse responses (data.md 0.5, 1.4)
# --------------------------------------------------------------------------------------------

ROOM_DIMS_M: tuple[tuple[float, float], ...] = ((3.0, 10.0), (3.0, 8.0), (2.4, 4.0))
RT60_RANGE_S: tuple[float, float] = (0.15, 0.9)
MAX_ORDER_CAP: int = 30  # image-source order cap: ~25 ms per RIR here (full order ~0.7 s)
RIRS_PER_ROOM: int = 4
TEST_ROOM_EVERY: int = 3  # room i is a test room when i % 3 == 2: 2/3 of rooms train
WALL_MARGIN_M: float = 0.5
MIN_SOURCE_MIC_M: float = 0.5
TAIL_MATCH_S: float = 0.02  # window before the mixing time used to match the tail's level
TAIL_XFADE_S: float = 0.01
SPEED_OF_SOUND: float = 343.0
RIR_BANK_VERSION: int = 2  # bump when the RIR recipe changes: an older bank is then rebuilt


def schroeder_rt60(h: np.ndarray, fs: int = SAMPLE_RATE) -> float:
    """RT60 in seconds from the Schroeder decay of ``h`` (T20: -5 to -25 dB, times 3)."""
    e = np.asarray(h, dtype=np.float64) ** 2
    edc = np.cumsum(e[::-1])[::-1]
    if edc[0] <= 0:
        return 0.0
    db = 10 * np.log10(np.maximum(edc / edc[0], 1e-30))
    i5 = int(np.argmax(db <= -5.0))
    i25 = int(np.argmax(db <= -25.0))
    if i25 <= i5:
        return 0.0
    return 3.0 * (i25 - i5) / fs


def _hybrid_tail(h: np.ndarray, rt60: float, t_c: float, rng: np.random.Generator,
                 fs: int = SAMPLE_RATE) -> np.ndarray:
    """Replace ``h`` after ``t_c`` s by exponentially decaying noise (60 dB per ``rt60``).

    The tail's level is matched to the RMS of ``h`` in the ``TAIL_MATCH_S`` before ``t_c`` and
    the two are crossfaded over ``TAIL_XFADE_S``. The tail runs ``rt60`` past ``t_c``, i.e.
    until it has decayed by 60 dB.
    """
    p0 = int(np.argmax(np.abs(h)))
    c = int(t_c * fs)
    w = int(TAIL_MATCH_S * fs)
    if c <= p0 + w or c >= h.size:
        return h
    level = rms(h[c - w:c])
    n = max(h.size, c + int(rt60 * fs))
    out = np.zeros(n)
    out[:h.size] = h
    t = np.arange(n - c) / fs
    tail = level * rng.standard_normal(n - c) * np.exp(-3.0 * math.log(10.0) * t / rt60)
    xf = min(int(TAIL_XFADE_S * fs), n - c)
    ramp = np.ones(n - c)
    ramp[:xf] = np.linspace(0.0, 1.0, xf)
    out[c:] = out[c:] * (1.0 - ramp) + tail * ramp
    return out


def room_rirs(room: int, seed: int, count: int, max_order_cap: int = MAX_ORDER_CAP,
              rt60_range: tuple[float, float] = RT60_RANGE_S) -> list[tuple[np.ndarray, dict]]:
    """``count`` RIRs of one random shoebox room: ``[(rir float32 (m,) peak 1, row), ...]``.

    Room ``room`` of a bank seeded ``seed``: dims from :data:`ROOM_DIMS_M`, target RT60 uniform in
    ``rt60_range`` turned into wall absorption by ``pyroomacoustics.inverse_sabine``. The image
    order is capped at ``max_order_cap``; when Sabine's order is higher, the tail after the time
    up to which the capped image set is complete (path length ``cap / sum(1/L_i)``) is replaced
    by matched decaying noise
    (:func:`_hybrid_tail`). Each RIR has its own random source and microphone position.
    """
    import pyroomacoustics as pra  # heavy import, only where RIRs are made

    rng = np.random.default_rng([int(seed), int(room)])
    for _ in range(50):
        dims = np.array([rng.uniform(lo, hi) for lo, hi in ROOM_DIMS_M])
        rt60 = float(rng.uniform(*rt60_range))
        try:
            absorption, order = pra.inverse_sabine(rt60, dims)
        except ValueError:
            continue  # room too large for this RT60: draw again
        break
    else:  # pragma: no cover - needs 50 unlucky draws
        raise ConfigError(f"no feasible room for RT60 range {rt60_range}")
    used = min(int(order), int(max_order_cap))
    out = []
    for k in range(count):
        while True:
            src = np.array([rng.uniform(WALL_MARGIN_M, d - WALL_MARGIN_M) for d in dims])
            mic = np.array([rng.uniform(WALL_MARGIN_M, d - WALL_MARGIN_M) for d in dims])
            if np.linalg.norm(src - mic) >= MIN_SOURCE_MIC_M:
                break
        shoebox = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption),
                              max_order=used, air_absorption=False)
        shoebox.add_source(src)
        shoebox.add_microphone(mic)
        shoebox.compute_rir()
        h = np.asarray(shoebox.rir[0][0], dtype=np.float64)
        hybrid = used < order
        if hybrid:
            p0 = int(np.argmax(np.abs(h)))
            # every path shorter than used / sum(1/L) metres has at most `used` reflections
            t_c = p0 / SAMPLE_RATE + used / float(np.sum(1.0 / dims)) / SPEED_OF_SOUND
            h = _hybrid_tail(h, rt60, t_c, rng)
        h = h / float(np.max(np.abs(h)))
        row = {"room": int(room), "rir_in_room": k, "dims_m": [round(float(d), 3) for d in dims],
               "rt60_target_s": round(rt60, 3), "rt60_measured_s": round(schroeder_rt60(h), 3),
               "sabine_order": int(order), "order_used": used, "hybrid_tail": bool(hybrid),
               "source_m": [round(float(v), 3) for v in src],
               "mic_m": [round(float(v), 3) for v in mic],
               "length": int(h.size), "split": room_split(room)}
        out.append((h.astype(np.float32), row))
    return out


def room_split(room: int) -> str:
    """``'test'`` for every ``TEST_ROOM_EVERY``-th room (1/3), else ``'train'``."""
    return "test" if room % TEST_ROOM_EVERY == TEST_ROOM_EVERY - 1 else "train"


def _room_job(args: tuple) -> list[tuple[np.ndarray, dict]]:
    return room_rirs(*args)


def make_rir_bank(cache_dir: str | os.PathLike[str], count: int, seed: int = 0,
                  workers: int = 2, per_room: int = RIRS_PER_ROOM,
                  max_order_cap: int = MAX_ORDER_CAP,
                  rt60_range: tuple[float, float] = RT60_RANGE_S) -> dict:
    """Make ``count`` RIRs in ``ceil(count / per_room)`` rooms and save them, split by room.

    Writes ``rirs_train.npy`` / ``rirs_test.npy`` (float16, ``(k, max_len)`` zero-padded, each
    RIR peak-normalised to 1), ``rirs.jsonl`` (one row per RIR: split, index in its split, room,
    dims, target and measured RT60, orders, length in samples) and ``rirs_params.json``. Skips
    the work when a bank with the same parameters exists. Returns a summary dict.
    """
    if int(count) < 1:
        raise ConfigError(f"count must be >= 1 RIR; got {count}")
    if int(per_room) < 1:
        raise ConfigError(f"per_room must be >= 1; got {per_room}")
    _check_range(rt60_range, "rt60_range")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    params = {"version": RIR_BANK_VERSION, "count": int(count), "seed": int(seed), "per_room": int(per_room),
              "max_order_cap": int(max_order_cap), "rt60_range": [float(v) for v in rt60_range],
              "room_dims_m": [list(r) for r in ROOM_DIMS_M], "sample_rate": SAMPLE_RATE}
    pfile = cache / "rirs_params.json"
    files = [cache / "rirs.jsonl", cache / "rirs_train.npy", cache / "rirs_test.npy"]
    if pfile.exists() and all(f.exists() for f in files):
        if json.loads(pfile.read_text()).get("params") == params:
            return json.loads(pfile.read_text())["summary"] | {"skipped": True}
    rooms = math.ceil(count / per_room)
    jobs = [(r, seed, min(per_room, count - r * per_room), max_order_cap, tuple(rt60_range))
            for r in range(rooms)]
    if workers > 1 and rooms > 1:
        with ProcessPoolExecutor(max_workers=int(workers)) as ex:
            results = list(ex.map(_room_job, jobs, chunksize=max(1, rooms // (4 * workers))))
    else:
        results = [_room_job(j) for j in jobs]
    per_split: dict[str, list[np.ndarray]] = {s: [] for s in BANK_SPLITS}
    rows: list[dict] = []
    for room_result in results:
        for h, row in room_result:
            row["index"] = len(per_split[row["split"]])
            per_split[row["split"]].append(h)
            rows.append(row)
    summary: dict = {"count": len(rows), "rooms": rooms}
    for split, hs in per_split.items():
        width = max((h.size for h in hs), default=1)
        arr = np.zeros((len(hs), width), dtype=np.float16)
        for i, h in enumerate(hs):
            arr[i, :h.size] = h.astype(np.float16)
        tmp = cache / f"rirs_{split}.part.npy"
        np.save(tmp, arr)
        tmp.replace(cache / f"rirs_{split}.npy")
        sel = [r for r in rows if r["split"] == split]
        summary[split] = {"rirs": len(hs), "rooms": len({r["room"] for r in sel}),
                          "bytes": int(arr.nbytes),
                          "mean_length_s": round(float(np.mean([h.size for h in hs])) / SAMPLE_RATE, 3)
                          if hs else 0.0}
    _write_jsonl(cache / "rirs.jsonl", rows)
    pfile.write_text(json.dumps({"params": params, "summary": summary}, indent=1) + "\n")
    return summary


@dataclass
class RirBank:
    """RIRs of one split, float32 ``(m,)`` each, peak 1; ``sample(rng)`` picks one uniformly."""

    rirs: list[np.ndarray]
    rows: list[dict]
    split: str

    @classmethod
    def load(cls, cache_dir: str | os.PathLike[str], split: str) -> "RirBank":
        half = bank_split(split)
        cache = Path(cache_dir)
        arr_path, man = cache / f"rirs_{half}.npy", cache / "rirs.jsonl"
        if not (arr_path.exists() and man.exists()):
            raise ConfigError(f"no RIR bank in {cache_dir} (need rirs_{half}.npy and rirs.jsonl); "
                              f"make one with `aum data rirs --cache {cache_dir} --count N`")
        arr = np.load(arr_path)
        rows = sorted((r for r in _read_jsonl(man) if r["split"] == half), key=lambda r: r["index"])
        if len(rows) != arr.shape[0]:
            raise ConfigError(f"{man} lists {len(rows)} {half} RIRs but {arr_path} holds "
                              f"{arr.shape[0]}; rebuild the bank")
        rirs = [arr[r["index"], :r["length"]].astype(np.float32) for r in rows]
        if not rirs:
            raise ConfigError(f"the RIR bank in {cache_dir} has no {half} RIRs; make a larger bank")
        return cls(rirs, rows, half)

    def __len__(self) -> int:
        return len(self.rirs)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        rng = _check_rng(rng)
        return self.rirs[int(rng.integers(len(self.rirs)))]


def apply_rir(x: np.ndarray, rir: np.ndarray, preserve_energy: bool = True) -> np.ndarray:
    """Reverberate ``x`` (float32 ``(n,)``) with ``rir``; output float32 ``(n,)``.

    FFT convolution, cut so that the RIR's direct-path peak (its largest ``|h|``) lands at lag 0:
    the dry onset stays where it was and the tail runs into the following samples; the tail past
    the end of ``x`` is dropped. With ``preserve_energy`` the output is scaled to the RMS of ``x``.
    A unit impulse returns ``x`` unchanged (up to float rounding).
    """
    from scipy.signal import fftconvolve

    x64 = np.asarray(x, dtype=np.float64)
    h = np.asarray(rir, dtype=np.float64)
    if x64.ndim != 1 or h.ndim != 1 or h.size == 0:
        raise AudioInputError(f"apply_rir needs 1-D audio and a non-empty 1-D RIR; got shapes "
                              f"{x64.shape} and {h.shape}")
    if x64.size == 0:
        return x64.astype(np.float32)
    p0 = int(np.argmax(np.abs(h)))
    y = fftconvolve(x64, h)[p0:p0 + x64.size]
    if preserve_energy:
        ry = rms(y)
        if ry > 0:
            y = y * (rms(x64) / ry)
    return y.astype(np.float32)
