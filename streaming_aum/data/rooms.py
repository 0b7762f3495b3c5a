"""Room impulse responses: shoebox rooms, their bank, and reverberation (data.md 0.5, 1.4).

:func:`make_rir_bank` makes RIRs of random rooms (dimensions in metres, ``ROOM_DIMS_M``; target
RT60 in seconds, ``RT60_RANGE_S``), split by room (every third room is a test room), and
:class:`RirBank` loads one split; :func:`apply_rir` convolves 16 kHz mono float32 ``(n,)`` audio.
RIRs are 16 kHz float32, peak 1; lengths are in samples. Files written under ``cache_dir``::

    rirs_train.npy, rirs_test.npy  float16 (count, max_len), zero-padded, peak 1
    rirs.jsonl, rirs_params.json   one row per RIR (split, index, room, dims, rt60, length, ...)
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streaming_aum.audio_constants import SAMPLE_RATE
from streaming_aum.data.manifest_io import read_jsonl, write_jsonl
from streaming_aum.data.noise import _check_range, _check_rng, rms
from streaming_aum.data.splits import BANK_SPLITS, bank_split
from streaming_aum.errors import AudioInputError, ConfigError

__all__ = [
    "RirBank",
    "apply_rir",
    "make_rir_bank",
    "room_rirs",
    "room_split",
    "schroeder_rt60",
]

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
    write_jsonl(cache / "rirs.jsonl", rows)
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
        rows = sorted((r for r in read_jsonl(man) if r["split"] == half), key=lambda r: r["index"])
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
