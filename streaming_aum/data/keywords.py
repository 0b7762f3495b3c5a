"""The seeded, reproducible, resumable TTS keyword-clip generator (``aum data keywords``).

Output (``out_dir``):

* ``clips/<split>/<word>/<split>_<index:06d>.wav``: 1 s (16000 samples at 16 kHz) mono int16;
  ``<word>`` is the spoken word, or ``_silence_``;
* ``manifest.jsonl``: one JSON object per clip, keys ``path`` (relative to ``out_dir``),
  ``split``, ``word``, ``voice_id`` (``noise/<colour>`` for silence), ``engine``, ``onset_s``
  and ``speech_s`` (seconds: where the speech starts and how long it lasts), ``rate``,
  ``pitch``, ``tempo``, ``cents`` (null for silence) and ``seed`` (the clip's own seed);
* ``generator.json``: preset, seed, counts, engine versions, voice ids per split, package
  version.

Each clip (data.md 5.1 / A.1): one word spoken by a voice drawn by engine-group weight, then
uniformly within the group; rate x0.6-1.15, engine pitch 0-1, sox tempo 0.9-1.1, pitch
-300..+500 cents; trimmed, centre-cropped to 1 s if longer, placed at a uniform random offset
in the 1 s window (the rest is digital zero; the training pipeline adds a noise floor and
backgrounds), peak-normalised to U(0.3, 0.9). ``_silence_`` clips are 1 s of white / pink /
brown noise at -70..-35 dBFS RMS.

Reproducibility: every random choice of clip ``i`` of split ``s`` comes from
``SeedSequence([seed, split_index(s), i])``, so the plan (all clips with their parameters) is
fixed by the arguments and the installed voices. Resumability: clips whose manifest row and file
exist are skipped; rows are appended (flushed) as clips complete, and the manifest is rewritten
sorted at the end, so an interrupted run, rerun with the same arguments, ends with the same
manifest as an uninterrupted one. A different configuration into a non-empty directory is
refused (:class:`OutputDirError`).
"""

from __future__ import annotations

import dataclasses

import json
import logging
import multiprocessing
import os
import sys
import tempfile
import time
import wave
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from streaming_aum.audio_constants import SAMPLE_RATE
from streaming_aum.data import voices as voices_mod
from streaming_aum.data.synth import SynthesisError, SynthRequest, synthesize_many
from streaming_aum.data.voices import (
    SPLITS, VOICE_SPLIT_SEED, Voice, check_disjoint, discover_voices, engine_versions,
    split_voices,
)
from streaming_aum.data.words import COMMANDS10, SC35, SILENCE, UNKNOWN_EXTRA
from streaming_aum.errors import AuMError, ConfigError

__all__ = [
    "CLIP_SAMPLES",
    "ENGINE_WEIGHTS",
    "MANIFEST_KEYS",
    "PRESETS",
    "OutputDirError",
    "Preset",
    "SplitCounts",
    "generate_keywords",
    "plan_clips",
    "read_manifest",
]

log = logging.getLogger(__name__)

CLIP_SAMPLES: int = SAMPLE_RATE  # 1 s clips
MANIFEST_NAME: str = "manifest.jsonl"
GENERATOR_NAME: str = "generator.json"
CLIPS_DIR: str = "clips"
MANIFEST_KEYS: tuple[str, ...] = ("path", "split", "word", "voice_id", "engine", "onset_s",
                                  "speech_s", "rate", "pitch", "tempo", "cents", "seed")
CHUNKSIZE: int = 8  # clips per pool task
FESTIVAL_BATCH: int = 32  # festival clips per pool task (one festival process per task)

# per-clip randomisation ranges (data.md 5.1 / A.1)
RATE_RANGE: tuple[float, float] = (0.6, 1.15)  # x 175 wpm
PITCH_RANGE: tuple[float, float] = (0.0, 1.0)  # engine pitch control
TEMPO_RANGE: tuple[float, float] = (0.9, 1.1)  # sox tempo
CENTS_RANGE: tuple[float, float] = (-300.0, 500.0)  # sox pitch, skewed up towards female F0
PEAK_RANGE: tuple[float, float] = (0.3, 0.9)  # peak of the placed clip, full scale 1.0
SILENCE_DBFS_RANGE: tuple[float, float] = (-70.0, -35.0)  # RMS of silence clips
NOISE_COLOURS: tuple[str, ...] = ("white", "pink", "brown")

# train engine-group weights (data.md 5.1), renormalised over the engines present in a split
ENGINE_WEIGHTS: dict[str, float] = {
    "espeak-ng": 35.0, "espeak": 15.0, "mbrola": 20.0, "flite": 10.0, "festival": 10.0,
    "pico": 10.0, "piper": 10.0,
}

_ROUND = 4  # decimals kept of rate / pitch / tempo (the rounded value is what is synthesised)


class OutputDirError(AuMError):
    """``out_dir`` holds other data (another preset, seed, count or voice set)."""


# --------------------------------------------------------------------------------------------
# presets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitCounts:
    """Clips of one split: ``per_word`` per keyword word, ``unknown`` clips of words drawn from
    the unknown pool, ``silence`` noise-only clips."""

    per_word: int
    unknown: int
    silence: int

    def scaled(self, factor: float) -> "SplitCounts":
        def s(n: int) -> int:
            return 0 if n == 0 else max(1, int(round(n * factor)))
        return SplitCounts(s(self.per_word), s(self.unknown), s(self.silence))


@dataclass(frozen=True)
class Preset:
    """A named generation size. ``engines`` restricts the engines (None: all installed);
    ``voices_per_split`` keeps only that many voices per split (None: all)."""

    name: str
    keyword_words: tuple[str, ...]
    unknown_pool: tuple[str, ...]
    counts: dict[str, SplitCounts]
    engines: tuple[str, ...] | None = None
    voices_per_split: int | None = None


_OTHER_SC = tuple(w for w in SC35 if w not in COMMANDS10)
PRESETS: dict[str, Preset] = {
    # CI: espeak-ng only, 35 SC words + 10 unknown words, 3 voices per split; ~170 clips
    "smoke": Preset(
        "smoke", tuple(SC35), tuple(UNKNOWN_EXTRA[:10]),
        {"train": SplitCounts(2, 10, 4), "val": SplitCounts(1, 5, 2),
         "test_voice": SplitCounts(1, 5, 2), "test_engine": SplitCounts(1, 5, 0)},
        engines=("espeak-ng",), voices_per_split=3),
    # the project's default KWS-12 model: 10 commands, unknown = other SC words + extras; ~7000
    "small": Preset(
        "small", tuple(COMMANDS10), _OTHER_SC + tuple(UNKNOWN_EXTRA),
        {"train": SplitCounts(300, 1500, 300), "val": SplitCounts(40, 200, 40),
         "test_voice": SplitCounts(60, 300, 60), "test_engine": SplitCounts(40, 200, 0)}),
    # data.md 5.1 counts for KWS-35: 1000 per word in train (35k), unknown pool 150 words x 20
    "full": Preset(
        "full", tuple(SC35), tuple(UNKNOWN_EXTRA),
        {"train": SplitCounts(1000, 3000, 2000), "val": SplitCounts(100, 300, 200),
         "test_voice": SplitCounts(200, 600, 400), "test_engine": SplitCounts(100, 300, 0)}),
}


# --------------------------------------------------------------------------------------------
# plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to make one clip; fixed by (seed, split, index) and the voices."""

    path: str  # relative to out_dir
    split: str
    index: int
    word: str
    seed: int
    voice: Voice | None = None  # None for silence
    rate: float | None = None
    pitch: float | None = None
    tempo: float | None = None
    cents: float | None = None
    onset_u: float = 0.0  # the onset as a fraction of the free room in the 1 s window
    peak: float = 0.0
    colour: str | None = None  # silence only
    level_dbfs: float | None = None  # silence only


def _clip_seed(seed: int, split_index: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, split_index, index]).generate_state(1)[0])


def _choose_voice(rng: np.random.Generator, by_engine: dict[str, list[Voice]]) -> Voice:
    engines = sorted(by_engine)
    w = np.array([ENGINE_WEIGHTS.get(e, 1.0) for e in engines])
    engine = engines[int(rng.choice(len(engines), p=w / w.sum()))]
    group = by_engine[engine]
    return group[int(rng.integers(len(group)))]


def _clip_path(split: str, word: str, index: int) -> str:
    return f"{CLIPS_DIR}/{split}/{word}/{split}_{index:06d}.wav"


def plan_clips(preset: Preset, counts: dict[str, SplitCounts], splits: dict[str, list[Voice]],
               seed: int) -> list[ClipSpec]:
    """The full, deterministic list of clips: per split, the keyword slots (``per_word`` of each
    word, in word order), then ``unknown`` slots, then ``silence`` slots; slot ``i`` draws all its
    randomness from ``SeedSequence([seed, split_index, i])``."""
    plan: list[ClipSpec] = []
    for split_index, split in enumerate(SPLITS):
        c = counts[split]
        voices = splits.get(split, [])
        speech_slots = [w for w in preset.keyword_words for _ in range(c.per_word)]
        speech_slots += [None] * c.unknown
        if not voices:
            speech_slots = []
        slots: list[str | None] = speech_slots + [SILENCE] * c.silence
        by_engine: dict[str, list[Voice]] = {}
        for v in voices:
            by_engine.setdefault(v.engine, []).append(v)
        for i, slot in enumerate(slots):
            cs = _clip_seed(seed, split_index, i)
            rng = np.random.default_rng(cs)
            if slot == SILENCE:
                colour = NOISE_COLOURS[int(rng.integers(len(NOISE_COLOURS)))]
                level = round(float(rng.uniform(*SILENCE_DBFS_RANGE)), 2)
                plan.append(ClipSpec(_clip_path(split, SILENCE, i), split, i, SILENCE, cs,
                                     colour=colour, level_dbfs=level))
                continue
            word = slot if slot is not None else preset.unknown_pool[
                int(rng.integers(len(preset.unknown_pool)))]
            voice = _choose_voice(rng, by_engine)
            plan.append(ClipSpec(
                _clip_path(split, word, i), split, i, word, cs, voice,
                rate=round(float(rng.uniform(*RATE_RANGE)), _ROUND),
                pitch=round(float(rng.uniform(*PITCH_RANGE)), _ROUND),
                tempo=round(float(rng.uniform(*TEMPO_RANGE)), _ROUND),
                cents=round(float(rng.uniform(*CENTS_RANGE)), 1),
                onset_u=float(rng.uniform()), peak=float(rng.uniform(*PEAK_RANGE))))
    return plan


# --------------------------------------------------------------------------------------------
# making one clip (runs in the worker processes)
# --------------------------------------------------------------------------------------------


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of zero-mean noise with a white / pink (1/sqrt(f) amplitude) / brown (1/f
    amplitude) spectrum, shaped by FFT; unit RMS, float64."""
    spec = np.fft.rfft(rng.standard_normal(n))
    k = np.arange(spec.size, dtype=np.float64) + 1.0
    if colour == "pink":
        spec = spec / np.sqrt(k)
    elif colour == "brown":
        spec = spec / k
    elif colour != "white":
        raise ConfigError(f"unknown noise colour {colour!r}; accepted: {NOISE_COLOURS}")
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def _write_wav_int16(path: Path, x: np.ndarray) -> None:
    """Write float samples in [-1, 1] as mono 16-bit PCM at 16 kHz, atomically."""
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    tmp = path.with_name(path.name + ".part")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    os.replace(tmp, path)


def _row(spec: ClipSpec, voice_id: str, engine: str, onset: int, speech: int) -> dict:
    row = {
        "path": spec.path, "split": spec.split, "word": spec.word, "voice_id": voice_id,
        "engine": engine, "onset_s": onset / SAMPLE_RATE, "speech_s": speech / SAMPLE_RATE,
        "rate": spec.rate, "pitch": spec.pitch, "tempo": spec.tempo, "cents": spec.cents,
        "seed": spec.seed,
    }
    assert tuple(row) == MANIFEST_KEYS
    return row


def _place(speech: np.ndarray, spec: ClipSpec) -> tuple[np.ndarray, int, int]:
    """``(clip, onset, length)``: ``speech`` centre-cropped to 1 s if longer, placed at its
    onset (samples) in a zero 1 s window, peak-normalised to ``spec.peak``."""
    if speech.size > CLIP_SAMPLES:
        start = (speech.size - CLIP_SAMPLES) // 2
        speech = speech[start:start + CLIP_SAMPLES]
    room = CLIP_SAMPLES - speech.size
    onset = min(room, int(spec.onset_u * (room + 1)))
    y = np.zeros(CLIP_SAMPLES, dtype=np.float64)
    y[onset:onset + speech.size] = speech
    y *= spec.peak / float(np.max(np.abs(y)))
    return y, onset, speech.size


def _make_silence(out_dir: str, spec: ClipSpec) -> dict:
    dest = Path(out_dir) / spec.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    x = coloured_noise(CLIP_SAMPLES, spec.colour or "white", rng)
    _write_wav_int16(dest, x * 10.0 ** (spec.level_dbfs / 20.0))
    return _row(spec, f"noise/{spec.colour}", "noise", 0, 0)


def _synthesize_with_fallback(req: SynthRequest) -> tuple[np.ndarray, SynthRequest]:
    """One clip; if the engine fails at the drawn prosody (seen: mbrola/us3 on 'off' at an
    extreme rate gave sox no audio), retry deterministically at neutral post-processing, then
    at neutral rate and pitch. The returned request holds the values actually used (they go
    into the manifest). Raises the last SynthesisError if even neutral settings fail."""
    attempts = [req, dataclasses.replace(req, tempo=1.0, cents=0.0),
                dataclasses.replace(req, rate=1.0, pitch=0.5, tempo=1.0, cents=0.0)]
    error: SynthesisError | None = None
    for attempt in attempts:
        try:
            return synthesize_many([attempt])[0], attempt
        except SynthesisError as exc:
            error = exc
    raise error  # type: ignore[misc]


def _failed_row(spec: ClipSpec, error: Exception) -> dict:
    """What a worker returns for a clip its voice cannot say at all (e.g. mbrola/us3 lacks the
    diphones of 'off' and 'on' and outputs silence): no file, no manifest row; the generator
    lists it in generator.json under ``unsynthesisable``."""
    return {"path": spec.path, "failed": str(error), "voice_id": spec.voice.voice_id,
            "word": spec.word, "split": spec.split}


def _make_clips(task: tuple[str, list[ClipSpec]]) -> list[dict]:
    """Make the clips of one pool task (festival clips share one festival process); returns
    their manifest rows in task order."""
    out_dir, specs = task
    rows: dict[int, dict] = {}
    speech_specs = []
    for k, spec in enumerate(specs):
        if spec.voice is None:
            rows[k] = _make_silence(out_dir, spec)
        else:
            speech_specs.append((k, spec))
    if speech_specs:
        with tempfile.TemporaryDirectory(prefix="aum_kw_") as tmp:
            reqs = [SynthRequest(s.voice, s.word, s.rate, s.pitch, s.tempo, s.cents,
                                 Path(tmp) / f"speech_{k}.wav", s.seed) for k, s in speech_specs]
            try:
                speeches = synthesize_many(reqs)
            except SynthesisError:  # find the failing clip(s) and fall back for them only
                speeches = []
                for i, req in enumerate(reqs):
                    k, spec = speech_specs[i]
                    try:
                        speech, used = _synthesize_with_fallback(req)
                    except SynthesisError as exc:
                        rows[k] = _failed_row(spec, exc)
                        speeches.append(None)
                        continue
                    speeches.append(speech)
                    speech_specs[i] = (k, dataclasses.replace(
                        spec, rate=used.rate, pitch=used.pitch, tempo=used.tempo, cents=used.cents))
        for (k, spec), speech in zip(speech_specs, speeches):
            if speech is None:
                continue
            y, onset, n = _place(speech, spec)
            dest = Path(out_dir) / spec.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            _write_wav_int16(dest, y)
            rows[k] = _row(spec, spec.voice.voice_id, spec.voice.engine, onset, n)
    return [rows[k] for k in range(len(specs))]


# --------------------------------------------------------------------------------------------
# manifest and output directory
# --------------------------------------------------------------------------------------------


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``manifest.jsonl``; a truncated or malformed line (an interrupted write) is
    skipped."""
    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    for line in p.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and tuple(row) == MANIFEST_KEYS:
            rows.append(row)
    return rows


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def _write_manifest(path: Path, rows: Iterable[dict]) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def _sort_key(row: dict) -> tuple[int, str]:
    return SPLITS.index(row["split"]), row["path"].rsplit("/", 1)[-1]


def _check_out_dir(out: Path, config: dict) -> None:
    """Refuse a non-empty ``out`` that was not made with the same ``config``."""
    if not out.exists() or not any(out.iterdir()):
        return
    gen = out / GENERATOR_NAME
    if not gen.exists():
        raise OutputDirError(
            f"{out} is not empty and holds no {GENERATOR_NAME}: refusing to write keyword clips "
            f"into it; choose an empty or new directory")
    try:
        old = json.loads(gen.read_text()).get("config", {})
    except (json.JSONDecodeError, AttributeError):
        raise OutputDirError(f"{gen} is unreadable; choose an empty or new directory") from None
    diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
    if diff:
        shown = {k: (old.get(k), config.get(k)) for k in diff
                 if k in ("preset", "seed", "voice_split_seed", "engines")}
        raise OutputDirError(
            f"{out} holds keyword data made with other settings ({', '.join(diff)} differ"
            + (f": {shown} as (found, requested)" if shown else "")
            + "); rerun with the same preset/seed/counts/engines to resume, or choose another "
              "directory")


# --------------------------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------------------------


def _resolve_counts(preset: Preset, per_word: int | None) -> dict[str, SplitCounts]:
    if per_word is None:
        return dict(preset.counts)
    if per_word < 1:
        raise ConfigError(f"per_word must be >= 1, got {per_word}")
    factor = per_word / preset.counts["train"].per_word
    return {s: c.scaled(factor) for s, c in preset.counts.items()}


def _resolve_voices(preset: Preset, engines: Sequence[str] | None
                    ) -> tuple[list[str], dict[str, list[Voice]]]:
    """The engines used and the split voices (restricted per preset)."""
    wanted = list(engines) if engines is not None else (
        list(preset.engines) if preset.engines is not None else list(voices_mod.ENGINES))
    found = discover_voices(wanted)
    present = sorted({v.engine for v in found}, key=voices_mod.ENGINES.index)
    if engines is not None:
        missing = [e for e in wanted if e not in present]
        if missing:
            raise ConfigError(f"TTS engine(s) {missing} requested but not installed "
                              f"(installed among the requested: {present or 'none'})")
    splits = split_voices(found, VOICE_SPLIT_SEED)
    if not splits["train"]:
        raise ConfigError(f"no training voices among engines {wanted}; training voices come "
                          f"from espeak-ng, espeak, mbrola, flite, festival or pico")
    if preset.voices_per_split is not None:
        rng = np.random.default_rng(VOICE_SPLIT_SEED)
        for s in ("train", "test_voice", "test_engine"):
            vs = splits[s]
            keep = sorted(rng.permutation(len(vs))[:preset.voices_per_split]) if vs else []
            splits[s] = [vs[k] for k in keep]
        splits["val"] = list(splits["train"])
    return present, splits


def _progress(done: int, total: int, t0: float, stream=sys.stderr) -> None:
    rate = done / max(time.perf_counter() - t0, 1e-9)
    print(f"keywords: {done}/{total} clips ({100 * done / max(total, 1):.0f}%), "
          f"{rate:.1f} clips/s", file=stream, flush=True)


def generate_keywords(out_dir: str | os.PathLike, preset: str = "smoke", seed: int = 0,
                      workers: int = 2, engines: Sequence[str] | None = None,
                      progress: bool = True, per_word: int | None = None) -> dict:
    """Generate (or finish) the keyword clips of ``preset`` into ``out_dir``.

    Args:
        out_dir: output directory (created; must be empty or hold this same configuration).
        preset: ``smoke``, ``small`` or ``full`` (:data:`PRESETS`).
        seed: master seed of all per-clip randomness.
        workers: worker processes (1: run in this process).
        engines: TTS engines to use (default: the preset's, else every installed one).
        progress: print progress lines to stderr.
        per_word: train clips per keyword word; every other count is scaled by the same factor.

    Returns:
        The ``generator.json`` record (with ``clips`` per split and ``made`` / ``skipped``).

    Raises:
        ConfigError: unknown preset / engine, or no training voices.
        OutputDirError: ``out_dir`` holds other data.
        VoiceSplitError: a train voice (or engine) also in a test split.
        SynthesisError: an engine failed (completed clips stay; rerun to resume).
    """
    from streaming_aum import __version__

    if preset not in PRESETS:
        raise ConfigError(f"unknown keyword preset {preset!r}; accepted: {', '.join(PRESETS)}")
    p = PRESETS[preset]
    counts = _resolve_counts(p, per_word)
    used_engines, splits = _resolve_voices(p, engines)
    voice_ids = {s: [v.voice_id for v in vs] for s, vs in splits.items()}
    check_disjoint(voice_ids)
    plan = plan_clips(p, counts, splits, seed)

    out = Path(out_dir)
    config = {
        "preset": preset, "seed": int(seed), "voice_split_seed": VOICE_SPLIT_SEED,
        "counts": {s: asdict(c) for s, c in counts.items()},
        "engines": used_engines, "keyword_words": list(p.keyword_words),
        "unknown_pool": list(p.unknown_pool), "voices": voice_ids,
    }
    _check_out_dir(out, config)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "generator": "streaming_aum.data.keywords", "package_version": __version__,
        "config": config, "engine_versions": engine_versions(used_engines),
        "clips": {s: sum(1 for c in plan if c.split == s) for s in SPLITS},
        "complete": False,
    }
    _write_json_atomic(out / GENERATOR_NAME, record)

    manifest = out / MANIFEST_NAME
    by_path = {c.path: c for c in plan}
    kept = [r for r in read_manifest(manifest)
            if r["path"] in by_path and (out / r["path"]).exists()
            and r["split"] == by_path[r["path"]].split and r["seed"] == by_path[r["path"]].seed]
    kept = list({r["path"]: r for r in kept}.values())
    _write_manifest(manifest, kept)
    done = {r["path"] for r in kept}
    if (out / CLIPS_DIR).exists():
        for stale in (out / CLIPS_DIR).rglob("*.part"):  # half-written by an interrupted run
            stale.unlink()
    pending = [c for c in plan if c.path not in done]

    t0 = time.perf_counter()
    n_total, n_done = len(pending), 0
    step = max(1, n_total // 10)
    failed: list[dict] = []
    with open(manifest, "a") as mf:
        for rows in _run_tasks(str(out), pending, workers):
            for r in rows:
                if "failed" in r:
                    failed.append(r)
                    continue
                mf.write(json.dumps(r) + "\n")
            mf.flush()
            n_before, n_done = n_done, n_done + len(rows)
            if progress and (n_done // step != n_before // step or n_done == n_total):
                _progress(n_done, n_total, t0)
    elapsed = time.perf_counter() - t0

    rows = sorted(read_manifest(manifest), key=_sort_key)
    rows = list({r["path"]: r for r in rows}.values())
    failed.sort(key=lambda r: r["path"])
    if failed:
        log.warning("keywords: %d clip(s) could not be synthesised (listed in %s under "
                    "'unsynthesisable'), e.g. %s", len(failed), GENERATOR_NAME, failed[0]["failed"])
    if {r["path"] for r in rows} | {r["path"] for r in failed} != set(by_path):
        raise AuMError(f"{manifest}: {len(rows)} rows + {len(failed)} failures after generation, "
                       f"{len(plan)} planned")
    record["unsynthesisable"] = failed
    _write_manifest(manifest, rows)
    made = {s: [r["voice_id"] for r in rows if r["split"] == s] for s in SPLITS}
    check_disjoint(made)
    record["complete"] = True
    _write_json_atomic(out / GENERATOR_NAME, record)
    log.info("keywords: %d clips made, %d kept, %.1f s", n_total, len(kept), elapsed)
    return {**record, "made": n_total, "skipped": len(kept), "elapsed_s": elapsed}


def _tasks(out_dir: str, pending: list[ClipSpec]) -> list[tuple[str, list[ClipSpec]]]:
    """Pool tasks, costliest first so that no slow task is left for the end: festival clips
    grouped by voice, FESTIVAL_BATCH per task (one festival process each); then piper clips
    (~0.15 s each); then the rest, CHUNKSIZE per task, in plan order."""
    def engine(c: ClipSpec) -> str:
        return c.voice.engine if c.voice is not None else "noise"

    fest = sorted((c for c in pending if engine(c) == "festival"),
                  key=lambda c: (c.voice.voice_id, SPLITS.index(c.split), c.index))
    piper = [c for c in pending if engine(c) == "piper"]
    rest = [c for c in pending if engine(c) not in ("festival", "piper")]
    tasks = [(out_dir, fest[k:k + FESTIVAL_BATCH]) for k in range(0, len(fest), FESTIVAL_BATCH)]
    for group in (piper, rest):
        tasks += [(out_dir, group[k:k + CHUNKSIZE]) for k in range(0, len(group), CHUNKSIZE)]
    return tasks


def _run_tasks(out_dir: str, pending: list[ClipSpec], workers: int) -> Iterator[list[dict]]:
    """Rows of the pending clips, in completion order, one list per task of CHUNKSIZE clips."""
    if not pending:
        return
    if workers <= 1:
        for task in _tasks(out_dir, pending):
            yield _make_clips(task)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ctx.Pool(workers) as pool:
        yield from pool.imap_unordered(_make_clips, _tasks(out_dir, pending))
