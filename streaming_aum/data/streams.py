"""Long continuous streams with exact, time-stamped ground truth (data.md 5.3, A.6).

A stream is a non-stationary background bed with events dropped in by a Poisson process:

* **bed**: ambience segments of the split's bank crossfaded end to end, plus 0.3 x coloured
  noise (coloured noise alone without ambience), under a slow random-walk gain (+-6 dB, 1 s
  steps), at an RMS level of U(-40, -30) dBFS;
* **events**: the first at U(0.5, 2) s, then gaps of ``max(0.4 s, Exp(mean 3 s))``; the kind is
  a keyword clip (p=0.5, word in ``keywords``), ``_unknown_`` speech (p=0.2, other words) or an
  environmental sound (p=0.3, the :class:`EventBank` of the split, procedural classes if none);
  kinds without material are skipped and the others renormalised;
* **level**: each event is scaled to an SNR U(``snr_db``) against the power of the bed in the
  event's span +-1 s (the bed only, not the other events);
* **labels**: only the event's *active span* (10 ms frames within 35 dB of its loudest frame) is
  inserted, on the 10 ms grid, and that span is the ground-truth row, so onsets and offsets are
  exact multiples of 10 ms. Events never overlap.

The mixture is optionally reverberated (one RIR for the whole stream; ``snr_db`` stays the dry
SNR), then scaled down if needed so its peak is at most 0.99. Streams are 16 kHz mono; the truth
CSV has the columns :data:`TRUTH_COLUMNS`.

Clip directories are those of ``streaming_aum.data.keywords``: ``DIR/manifest.jsonl`` rows with
``path`` (relative to DIR), ``split``, ``word``, ``voice_id``, ... (1 s, 16 kHz int16 wavs).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch

from streaming_aum.audio_constants import HOP_SAMPLES, SAMPLE_RATE
from streaming_aum.audio_io import resample
from streaming_aum.data.background import BackgroundBank, EventBank
from streaming_aum.data.noise import NOISE_KINDS, _check_range, _check_rng, colored_noise, rms
from streaming_aum.data.rooms import RirBank, apply_rir
from streaming_aum.data.splits import bank_split
from streaming_aum.data.words import COMMANDS10, SILENCE, UNKNOWN
from streaming_aum.errors import AudioInputError, ConfigError, EventInputError

__all__ = [
    "TRUTH_COLUMNS",
    "ClipPool",
    "StreamParts",
    "active_span",
    "background_bed",
    "build_stream",
    "build_stream_parts",
    "generate_streams",
    "read_truth_csv",
    "write_stream",
]

TRUTH_COLUMNS: tuple[str, ...] = ("onset_s", "offset_s", "label", "kind", "snr_db", "source", "word")
KINDS: tuple[str, ...] = ("kw", "unk", "env")
KIND_PROBS: tuple[float, ...] = (0.5, 0.2, 0.3)
ACTIVE_SPAN_DB: float = 35.0
GRID_SAMPLES: int = HOP_SAMPLES  # 10 ms: active-span frames and event starts lie on this grid
FIRST_EVENT_S: tuple[float, float] = (0.5, 2.0)
MIN_GAP_S: float = 0.4
MEAN_GAP_S: float = 3.0
SNR_CONTEXT_S: float = 1.0
BED_NOISE_WEIGHT: float = 0.3
BED_WALK_DB: float = 6.0
BED_WALK_STEP_S: float = 1.0
BED_WALK_SIGMA_DB: float = 1.5
BED_LEVEL_DBFS: tuple[float, float] = (-40.0, -30.0)
BED_SEGMENT_S: tuple[float, float] = (5.0, 15.0)
BED_CROSSFADE_S: float = 0.5
PEAK_LIMIT: float = 0.99
SPLITS: tuple[str, ...] = ("train", "val", "test_voice", "test_engine")
MAX_SILENT_DRAWS: int = 100


def active_span(x: np.ndarray, db: float = ACTIVE_SPAN_DB,
                grid: int = GRID_SAMPLES) -> tuple[int, int]:
    """``(start, end)`` samples of the frames of ``x`` within ``db`` dB of its loudest frame.

    Frames are ``grid`` samples (10 ms) from sample 0; ``start``/``end`` are multiples of
    ``grid`` (``x`` is treated as zero-padded to a whole frame). ``(0, 0)`` for silence.
    """
    x = np.asarray(x, dtype=np.float64)
    frames = math.ceil(x.size / grid)
    if frames == 0:
        return 0, 0
    padded = np.zeros(frames * grid)
    padded[:x.size] = x
    energy = np.mean(padded.reshape(frames, grid) ** 2, axis=1)
    top = float(energy.max())
    if top <= 0.0:
        return 0, 0
    on = np.nonzero(energy >= top * 10.0 ** (-db / 10.0))[0]
    return int(on[0]) * grid, (int(on[-1]) + 1) * grid


def snr_gain(event: np.ndarray, local_background: np.ndarray, snr_db: float) -> float:
    """The gain that puts ``event`` at ``snr_db`` against the mean power of
    ``local_background`` (the bed around it); float64 powers."""
    pn = float(np.mean(np.asarray(local_background, dtype=np.float64) ** 2))
    ps = float(np.mean(np.asarray(event, dtype=np.float64) ** 2))
    return math.sqrt(pn * 10.0 ** (snr_db / 10.0) / ps)


# --------------------------------------------------------------------------------------------
# keyword clips
# --------------------------------------------------------------------------------------------


@dataclass
class ClipPool:
    """The keyword (``word in keywords``) and unknown-word clips of one split of a clip dir."""

    root: Path
    split: str
    keywords: tuple[str, ...]
    kw_rows: list[dict]
    unk_rows: list[dict]
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, clips_dir: str | os.PathLike[str], split: str,
             keywords: Sequence[str] = COMMANDS10) -> "ClipPool":
        root = Path(clips_dir)
        man = root / "manifest.jsonl"
        if not man.exists():
            raise ConfigError(f"no manifest.jsonl in {root}; make keyword clips first "
                              f"(`aum data keywords --out {root} ...`)")
        with man.open() as f:
            rows = [json.loads(line) for line in f if line.strip()]
        for r in rows[:1]:
            missing = {"path", "split", "word"} - set(r)
            if missing:
                raise ConfigError(f"{man} rows lack {sorted(missing)}; expected keys path, split, "
                                  f"word, voice_id, ...")
        mine = [r for r in rows if r["split"] == split]
        if not mine:
            found = sorted({r["split"] for r in rows})
            raise ConfigError(f"{man} has no clips of split {split!r}; it has: {', '.join(found)}")
        kws = tuple(keywords)
        kw = [r for r in mine if r["word"] in kws]
        unk = [r for r in mine if r["word"] not in kws and r["word"] not in (SILENCE, UNKNOWN)]
        if not kw:
            raise ConfigError(f"{man} split {split!r} holds no clip of the keywords "
                              f"{', '.join(kws)}")
        return cls(root, split, kws, kw, unk)

    def read(self, row: dict) -> np.ndarray:
        """The clip of ``row`` as 16 kHz mono float32 ``(n,)``."""
        key = row["path"]
        if key not in self._cache:
            path = self.root / key
            try:
                y, rate = sf.read(str(path), dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError, OSError) as exc:
                raise AudioInputError(f"cannot read clip {path} ({exc})") from exc
            y = y.mean(axis=1)
            if rate != SAMPLE_RATE:
                y = resample(torch.from_numpy(np.ascontiguousarray(y)), int(rate),
                             SAMPLE_RATE).numpy()
            self._cache[key] = np.asarray(y, dtype=np.float32)
        return self._cache[key]


def _source(row: dict) -> str:
    voice = row.get("voice_id", "")
    return f"{row['path']}|{voice}" if voice else str(row["path"])


# --------------------------------------------------------------------------------------------
# the bed
# --------------------------------------------------------------------------------------------


def _walk_gain(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gain ``(n,)``: a random walk in dB, steps every 1 s, reflected into +-6 dB, interpolated."""
    steps = math.ceil(n / (BED_WALK_STEP_S * SAMPLE_RATE)) + 2
    db = np.zeros(steps)
    for i in range(1, steps):
        v = db[i - 1] + rng.normal(0.0, BED_WALK_SIGMA_DB)
        if v > BED_WALK_DB:
            v = 2 * BED_WALK_DB - v
        if v < -BED_WALK_DB:
            v = -2 * BED_WALK_DB - v
        db[i] = float(np.clip(v, -BED_WALK_DB, BED_WALK_DB))
    knots = np.arange(steps) * BED_WALK_STEP_S * SAMPLE_RATE
    return 10.0 ** (np.interp(np.arange(n), knots, db) / 20.0)


def background_bed(n: int, rng: np.random.Generator, backgrounds: BackgroundBank) -> np.ndarray:
    """The stream's background, float32 ``(n,)`` at 16 kHz (see the module docstring)."""
    rng = _check_rng(rng)
    kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
    noise = colored_noise(n, kind, rng).astype(np.float64)
    if len(backgrounds):
        xf = int(BED_CROSSFADE_S * SAMPLE_RATE)
        amb = np.zeros(n + xf)
        pos = 0
        t = (np.arange(xf) + 0.5) / xf
        fade_in, fade_out = np.sin(0.5 * np.pi * t), np.cos(0.5 * np.pi * t)
        while pos < n:
            seg_n = int(rng.uniform(*BED_SEGMENT_S) * SAMPLE_RATE) + xf
            seg = backgrounds.sample_ambience(seg_n, rng)[0].astype(np.float64)
            if pos > 0:
                seg[:xf] *= fade_in
            seg[-xf:] *= fade_out
            end = min(pos + seg_n, amb.size)
            amb[pos:end] += seg[:end - pos]
            pos += seg_n - xf
        bed = amb[:n] + BED_NOISE_WEIGHT * noise
    else:
        bed = noise
    bed = bed * _walk_gain(n, rng)
    level = float(rng.uniform(*BED_LEVEL_DBFS))
    r = rms(bed)
    return (bed * (10.0 ** (level / 20.0) / r if r > 0 else 1.0)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# streams
# --------------------------------------------------------------------------------------------


@dataclass
class StreamParts:
    """The dry parts of a stream: ``bed`` and ``events`` (float32 ``(n,)``) and the truth rows."""

    bed: np.ndarray
    events: np.ndarray
    rows: list[dict]


def _kind_choice(rng: np.random.Generator, available: Sequence[str]) -> str:
    probs = np.array([p if k in available else 0.0 for k, p in zip(KINDS, KIND_PROBS)])
    return KINDS[int(rng.choice(len(KINDS), p=probs / probs.sum()))]


def build_stream_parts(clips: str | os.PathLike[str] | ClipPool, split: str, duration_s: float,
                       rng: np.random.Generator, backgrounds: BackgroundBank | None = None,
                       events_bank: EventBank | None = None,
                       keywords: Sequence[str] = COMMANDS10,
                       snr_db: tuple[float, float] = (0.0, 20.0)) -> StreamParts:
    """Bed, dry events track and truth rows of one stream (:func:`build_stream` mixes them).

    ``clips`` is a clip directory or a loaded :class:`ClipPool` of ``split``. Without banks the
    bed is coloured noise and the environmental events are procedural, from ``split``'s half.
    """
    rng = _check_rng(rng)
    lo, hi = _check_range(snr_db, "snr_db")
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s)
            and duration_s > 0):
        raise ConfigError(f"duration_s must be a positive number of seconds; got {duration_s!r}")
    pool = clips if isinstance(clips, ClipPool) else ClipPool.load(clips, split, keywords)
    backgrounds = backgrounds if backgrounds is not None else BackgroundBank.noise_only(split)
    events_bank = events_bank if events_bank is not None else EventBank.procedural_only(split)
    n = int(round(duration_s * SAMPLE_RATE))
    bed = background_bed(n, rng, backgrounds)
    events = np.zeros(n, dtype=np.float64)
    available = ["kw", "env"] + (["unk"] if pool.unk_rows else [])
    rows: list[dict] = []
    t = float(rng.uniform(*FIRST_EVENT_S))
    context = int(SNR_CONTEXT_S * SAMPLE_RATE)
    silent_draws = 0
    while True:
        kind = _kind_choice(rng, available)
        if kind == "env":
            x, label, source = events_bank.sample(rng)
            word = ""
        else:
            sel = pool.kw_rows if kind == "kw" else pool.unk_rows
            row = sel[int(rng.integers(len(sel)))]
            x, word, source = pool.read(row), str(row["word"]), _source(row)
            label = word if kind == "kw" else UNKNOWN
        s0, s1 = active_span(x)
        if s1 <= s0:  # a silent clip carries no event: draw again
            silent_draws += 1
            if silent_draws > MAX_SILENT_DRAWS:
                raise AudioInputError(f"{MAX_SILENT_DRAWS} event draws in a row were silent; "
                                      f"the clips of {pool.root} split {split!r} look empty")
            continue
        silent_draws = 0
        seg = np.zeros(s1 - s0)
        avail = x[s0:min(s1, x.size)]
        seg[:avail.size] = avail
        start = int(round(t * SAMPLE_RATE / GRID_SAMPLES)) * GRID_SAMPLES
        end = start + seg.size
        if end > n:
            break
        snr = float(rng.uniform(lo, hi))
        gain = snr_gain(seg, bed[max(0, start - context):min(n, end + context)], snr)
        events[start:end] += seg * gain
        rows.append({"onset_s": round(start / SAMPLE_RATE, 3), "offset_s": round(end / SAMPLE_RATE, 3),
                     "label": label, "kind": kind, "snr_db": round(snr, 2), "source": source,
                     "word": word})
        t = end / SAMPLE_RATE + max(MIN_GAP_S, float(rng.exponential(MEAN_GAP_S)))
    return StreamParts(bed, events.astype(np.float32), rows)


def build_stream(clips_dir: str | os.PathLike[str] | ClipPool, split: str, duration_s: float,
                 rng: np.random.Generator, backgrounds: BackgroundBank | None = None,
                 events_bank: EventBank | None = None, keywords: Sequence[str] = COMMANDS10,
                 snr_db: tuple[float, float] = (0.0, 20.0),
                 rir: np.ndarray | None = None) -> tuple[np.ndarray, list[dict]]:
    """One stream: ``(wave float32 (round(duration_s * 16000),), truth rows)``.

    Rows (sorted, non-overlapping): ``onset_s, offset_s`` (s, multiples of 0.01), ``label`` (the
    word for ``kw``, ``_unknown_`` for ``unk``, the sound class for ``env``), ``kind``,
    ``snr_db`` (dry SNR against the bed in +-1 s), ``source`` (clip path|voice id, package file or
    ``procedural:<class>:<half>``) and ``word`` (spoken word; empty for ``env``). Deterministic
    for a given ``rng`` state and inputs.
    """
    parts = build_stream_parts(clips_dir, split, duration_s, rng, backgrounds, events_bank,
                               keywords, snr_db)
    y = parts.bed.astype(np.float64) + parts.events
    if rir is not None:
        y = apply_rir(y, rir, preserve_energy=True).astype(np.float64)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > PEAK_LIMIT:
        y = y * (PEAK_LIMIT / peak)
    return y.astype(np.float32), parts.rows


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def write_stream(wave: np.ndarray, rows: Sequence[dict], out_prefix: str | os.PathLike[str]
                 ) -> tuple[Path, Path]:
    """Write ``<prefix>.wav`` (16 kHz mono int16) and ``<prefix>.csv`` (:data:`TRUTH_COLUMNS`)."""
    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    wav, csv_path = prefix.with_name(prefix.name + ".wav"), prefix.with_name(prefix.name + ".csv")
    sf.write(str(wav), np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0), SAMPLE_RATE,
             subtype="PCM_16")
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(TRUTH_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.3f}" if k in ("onset_s", "offset_s") else
                            f"{r[k]:.2f}" if k == "snr_db" else r.get(k, "")) for k in TRUTH_COLUMNS})
    return wav, csv_path


def read_truth_csv(path: str | os.PathLike[str]) -> list[dict]:
    """Rows of a truth CSV: ``onset_s``/``offset_s``/``snr_db`` as floats, the rest as strings.

    Raises:
        EventInputError: missing file or columns, or a row with non-numeric or reversed times.
    """
    p = Path(path)
    if not p.exists():
        raise EventInputError(f"truth CSV not found: {p}")
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in ("onset_s", "offset_s", "label", "kind") if c not in header]
        if missing:
            raise EventInputError(f"{p} lacks the columns {missing}; expected a header with "
                                  f"{', '.join(TRUTH_COLUMNS)}")
        out = []
        for i, r in enumerate(reader, start=2):
            try:
                row = dict(r)
                row["onset_s"], row["offset_s"] = float(r["onset_s"]), float(r["offset_s"])
                if r.get("snr_db") not in (None, ""):
                    row["snr_db"] = float(r["snr_db"])
            except ValueError as exc:
                raise EventInputError(f"{p} line {i}: non-numeric time or SNR ({exc})") from exc
            if not row["offset_s"] >= row["onset_s"] >= 0.0:
                raise EventInputError(f"{p} line {i}: need 0 <= onset_s <= offset_s; got "
                                      f"{row['onset_s']}, {row['offset_s']}")
            out.append(row)
    return out


def _stream_files(out_dir: Path) -> list[Path]:
    files = sorted(out_dir.glob("stream_*.wav")) + sorted(out_dir.glob("stream_*.csv"))
    if (out_dir / "streams.json").exists():
        files.append(out_dir / "streams.json")
    return files


def generate_streams(clips_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                     split: str, count: int, duration_s: float, seed: int,
                     snr_db: tuple[float, float] = (0.0, 20.0),
                     backgrounds_dir: str | os.PathLike[str] | None = None,
                     reverb: bool = False, keywords: Sequence[str] = COMMANDS10,
                     overwrite: bool = False) -> dict:
    """Write ``stream_000.wav/.csv`` ... and ``streams.json`` (arguments, seed, per-stream counts).

    Stream ``i`` uses ``np.random.default_rng([seed, i])``, so it does not depend on ``count``.
    ``backgrounds_dir``: a cache of ``aum data background`` (ambience, events and,
    with ``reverb``, RIRs of ``split``'s half); None means coloured noise and procedural events.

    Raises:
        FileExistsError: ``out_dir`` already holds stream files and ``overwrite`` is False.
        ConfigError: bad arguments or missing clips/banks.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
    if int(count) < 1:
        raise ConfigError(f"count must be >= 1 stream; got {count}")
    out = Path(out_dir)
    existing = _stream_files(out) if out.exists() else []
    if existing and not overwrite:
        names = ", ".join(p.name for p in existing[:4]) + (" ..." if len(existing) > 4 else "")
        raise FileExistsError(f"{out} already holds {len(existing)} stream files ({names}); "
                              f"refusing to overwrite them: choose another --out or pass "
                              f"--overwrite")
    pool = ClipPool.load(clips_dir, split, keywords)
    half = bank_split(split)
    if backgrounds_dir is not None:
        backgrounds = BackgroundBank.load(backgrounds_dir, half)
        events_bank = EventBank.load(backgrounds_dir, half)
        rirs = RirBank.load(backgrounds_dir, half) if reverb else None
    else:
        if reverb:
            raise ConfigError("reverb needs a RIR bank: pass backgrounds_dir (--background DIR) "
                              "holding rirs_*.npy")
        backgrounds, events_bank, rirs = BackgroundBank.noise_only(half), \
            EventBank.procedural_only(half), None
    for p in existing:
        p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    streams = []
    for i in range(int(count)):
        rng = np.random.default_rng([int(seed), i])
        rir = rirs.sample(rng) if rirs is not None else None
        wave, rows = build_stream(pool, split, duration_s, rng, backgrounds, events_bank,
                                  keywords, snr_db, rir)
        wav, csv_path = write_stream(wave, rows, out / f"stream_{i:03d}")
        kinds = {k: sum(r["kind"] == k for r in rows) for k in KINDS}
        streams.append({"wav": wav.name, "csv": csv_path.name, "events": len(rows), **kinds})
    info = {"clips_dir": str(clips_dir), "split": split, "count": int(count),
            "duration_s": float(duration_s), "seed": int(seed), "snr_db": [float(v) for v in snr_db],
            "backgrounds_dir": None if backgrounds_dir is None else str(backgrounds_dir),
            "reverb": bool(reverb), "keywords": list(keywords), "sample_rate": SAMPLE_RATE,
            "ambience_files": len(backgrounds), "event_files": len(events_bank),
            "streams": streams}
    (out / "streams.json").write_text(json.dumps(info, indent=1) + "\n")
    return info
