"""``aum bench streaming``: per-hop compute of the state-carrying runtime, windowed
recomputation side by side, a long soak (P6) and window fidelity (P4), in one run.

One JSON object (``--json``)::

    {"model": {...}, "threads": 1, "hop_s": 0.16,
     "windows": [{"window_s": 1.0, "window_columns": 6, "hop_ms_p50": ..., "hop_ms_p99": ...,
                  "rtf": ...}, ...],
     "hop_ms_p50": ..., "hop_ms_p99": ..., "rtf": ...,            # W = 1 s
     "recompute_hop_ms_p50": ..., "recompute_hop_ms_p99": ..., "recompute_ratio": ...,
     "interleaved": {"hop_ms_p50": ..., "hop_ms_p99": ..., "recompute_hop_ms_p50": ...,
                     "recompute_hop_ms_p99": ..., "recompute_ratio": ...},   # W = 1 s
     "soak": {"audio_s": ..., "hops": ..., "hop_ms_first": ..., "hop_ms_last": ...,
              "rss_mb_start": ..., "rss_mb_end": ..., "rss_mb_trace": [[hop, mb], ...]},
     "p4": [{"window_s": ..., "window_columns": ..., "hops": ...,   # hops summed over streams
             "top1_agreement": ..., "max_prob_diff": ..., "mean_prob_diff": ...,
             "truncated_hops": ..., "top1_agreement_truncated": ...,
             "events": {"reference_events": ..., "events": ..., "tp": ..., "fp": ..., "fn": ...,
                        "precision": ..., "recall": ..., "f1": ...} | null,
             "pool_stream": {same figures}, "same_span": {same figures},
             "per_stream": [{"stream": ..., "hops": ..., "pool_window": {figures},
                             "same_span": {figures}}, ...]}, ...],
     "p4_setup": {"model": {...}, "source": "synthetic" | "audio",
                  "stream_s": ... (synthetic) | "cap_s": ... (audio; null = whole files),
                  "streams": [{"stream", "audio_s", "used_s", "hops", "reference_events",
                               "reference_events_same_span": {columns: n}}, ...],
                  "hops": ..., "threads": ..., "reference": ..., "same_span_reference": ...,
                  "events": {"config": EventConfig.to_dict(), "settings_from", "tracker",
                             "match"} | {"skipped": reason},
                  "wall_s": ...}}

How each figure is obtained:

* Model: by default the shipped trained keyword spotter (``--model default``,
  ``streaming_aum.load_model()``), the model the issue's figures are asked for; ``--model PATH``
  (a saved model directory or checkpoint, streaming layout) instead. ``--model random``, or any
  of ``--depth`` / ``--embed-dim`` / ``--p4-depth``, measures a random-weight streaming-layout
  AuM-tiny, ``streaming_config(embed_dim=192, depth=24, mixer="v1", num_classes=35)`` (seed 0;
  those flags pick another size), whose figures stay comparable across runs: random weights
  cost the same compute as trained ones, only the P4 figures depend on the weights. (Until
  2026-11-26 the bare command measured the random AuM-tiny; BENCHMARKS.md's older records
  say which.) For a loaded model ``model`` records its path, whether the weights are the
  shipped trained ones or "as saved", a config summary, labels, ``config.extra["window_s"]``
  (``model_window_s``) and the parameter count. The size flags with a loaded model are a
  ConfigError.
* Audio (timing, soak): deterministic synthetic 16 kHz audio, white noise plus tones that
  switch on and off every few seconds (``synth_block``), generated one second at a time so an
  hour never sits in memory. The compute per hop does not depend on the content, so a loaded
  model is timed on the same audio.
* Hops: the stream is pushed one patch column at a time (the first chunk is 2800 samples,
  every later one 2560 = 0.16 s), so every ``push`` completes exactly one hop. A hop's time is
  the wall time of that ``push`` (fbank of the new column, patch embedding, all layers over the
  window, head): the compute per hop, excluding audio generation.
* Threads: ``torch.set_num_threads(1)`` (the numba scan follows torch's count) for every timed
  figure; the previous count is restored afterwards. P4 runs with the process's default count
  (its figures are not times; ``OMP_NUM_THREADS`` sets it).
* Window W (seconds) -> ``round(W / 0.16)`` patch columns (at least 1): 0.5 s -> 3, 1 s -> 6,
  2 s -> 12, 4 s -> 25 (0.96 s is 6 columns too). ``pool="window"`` (mean of the window's final
  features), the default.
* Per-W compute: a fresh ``StreamingRuntime`` per W streams the same audio from sample 0; the
  first ``HISTORY_HOPS`` hops (11.84 s: the 10.24 s recompute window plus 10 hops; the window is
  full and numba compiled by then) are untimed, the next ``--hops`` are timed; p50/p99 of those.
  Before any measurement one throwaway runtime streams 30 hops, so compilation never lands in a
  timed hop. ``rtf`` = p50 hop compute / 0.16 s (real-time factor of the compute; < 1 keeps up).
* Recompute, side by side: at W = 1 s, a ``RecomputeRuntime(model, window_s=10.24)`` is fed the
  very same chunks, after the same untimed history (so its window is full), and each of its
  pushes is timed too, in two protocols, one after the other on the continuing stream:

  - *blocked* (the headline figures): blocks of ``BLOCK_HOPS`` = 10 chunks; each block is
    pushed through the state-carrying runtime, then the same chunks through the recompute
    runtime. Each runtime runs its hops back to back, as it would alone, so neither pays for
    the other's cache footprint; blocks alternate, so machine drift hits both alike.
  - *interleaved* (``"interleaved"``): every chunk to both runtimes in turn (the protocol of
    the first recorded runs): each state-carrying hop starts right after a 10 s
    recomputation. Measured 2026-11-26 on AuM-tiny, the two protocols agree within the
    machine's noise (ratios 5.8 and 5.6; the dev machine alternates between fast and slow
    phases of many seconds that move both runtimes' times by ~30% together), so the other
    runtime's cache footprint is not what limits the ratio; both stay reported as a check.

  ``recompute_ratio`` = recompute p50 / state-carrying p50, blocked (issue target: >= 8);
  ``recompute_ratio_interleaved`` the same, interleaved. ``--hops`` timed hops per protocol.
  W = 1 s is always measured, added to ``--windows`` if missing; its ``windows`` record holds
  the blocked figures (the other W run alone, as in the blocked protocol).
* Soak (P6): a fresh W = 1 s runtime streams ``--soak-s`` seconds (default 1200: the issue's
  hour, 22499 hops, takes ~30 minutes on a 2-core machine; ``--soak-s 3600`` runs it); every
  hop is timed. ``hop_ms_first`` / ``hop_ms_last`` are the p50 of the first / last 1000 hops
  once the window is full (fewer for short soaks, then they overlap). ``rss_mb_start`` is the
  process's resident size after the first hop, ``rss_mb_end`` after the last, ``rss_mb_trace``
  every 1000 hops. The per-hop times are kept in an array allocated and written before the
  first RSS reading, so the measurement itself does not grow the process.
* P4 (window fidelity), the streams: by default one synthetic stream of ``--p4-s`` seconds
  (default 60). ``--p4-audio FILE ...`` streams those files instead, each read with
  ``audio_io.load_audio`` (mono, resampled to 16 kHz) before the timing starts (a bad file fails
  fast); ``--p4-s`` then caps each file at its first ``--p4-s`` seconds (default: whole files;
  ``--p4-s 0`` with ``--p4-audio`` is a ConfigError). Samples after a file's last complete hop
  are not pushed (no ``flush``). Every stream goes through its own fresh runtimes; the figures
  are summed over streams (hops, agreements, probability differences, event counts), and each
  stream's own figures and hop count are kept (``per_stream``, ``p4_setup.streams``).
* P4, the comparison: each stream is pushed into an unbounded
  ``StreamingRuntime(window_columns=None)`` (equal to the offline model on every prefix, P2)
  and, in the same loop, into one runtime per W (windows that round to the same column count
  share runtimes) with ``pool="window"`` and one with ``pool="stream"``; every hop's
  probabilities are compared with a reference: ``top1_agreement`` (argmax equal),
  ``max_prob_diff`` and ``mean_prob_diff`` (absolute, over hops and classes),
  ``top1_agreement_truncated`` over the hops where the window no longer covers the stream.
  Three comparisons per W:

  - top level (``pool="window"``) vs the unbounded runtime's own output, which pools over every
    token so far (the offline clip output of the prefix): the gap to P2 as the contract states
    it. It mixes two effects, the truncated backward context and the pooling span (W columns vs
    the whole prefix); for a keyword spotter on a long stream the whole-prefix mean drifts to a
    stream average, so this reference has few or no keyword events after the first seconds.
  - ``pool_stream``: the ``pool="stream"`` runtime (mean over every token since the start) vs the
    same reference: equal pooling span, so only the truncated backward context differs.
  - ``same_span``: the ``pool="window"`` runtime vs the unbounded runtime's final features
    (captured with a forward hook on ``model.norm_f`` during its own pushes only), mean-pooled
    over the same last W columns and put through the head exactly as the runtime does: again
    equal pooling span, for the windowed readout a keyword spotter is run with. This is the
    figure to choose W by for such a model; it is not ``aum eval``'s offline mode (whole-file
    bidirectional pass, which also sees the future).
* P4, event-level figures (``events``): every runtime's and every reference's per-hop
  probabilities go through the project's event post-processing, ``evaluation.track_events``
  (``events.EventTracker`` plus decision times), frames ``[t_end(hop - 1), t_end(hop))``, with
  the settings ``aum eval`` uses for the model: ``eval_cli.event_config_from_args`` with no
  command-line override, i.e. the model's ``config.extra["events"]`` (per-class on-thresholds,
  cooldown, ...) over the keyword classes of its labels, else ``eval_cli.EVENT_DEFAULTS``. The
  random model has no labels or event settings (labels ``class_0`` ... ``class_34``, all
  "keywords"), so it gets that plain default (on-threshold 0.5 per class, off = on, no minimum
  duration, no cooldown): its event figures exercise the harness, they say nothing about
  detection. A model whose labels hold no keyword class gets ``"events": null`` and
  ``p4_setup.events.skipped``. The reference's events stand in for ground truth:
  ``evaluation.match_events`` (the matching of ``aum eval``: a W event is a hit when its
  decision time lies in ``[onset - 0.1 s, offset + 0.75 s]`` of an unmatched reference event of
  the same label) gives tp / fp / fn and precision / recall / F1 of W's events against the
  reference's (``reference_events`` = tp + fn, ``events`` = tp + fp; precision, recall or F1 are
  null when their denominators are 0, as in ``evaluation.ClassCounts``).
* P4 cost: the unbounded reference costs O(n^2) over a stream (a 2-minute file is ~140 s for
  the 4-layer default model on one thread), hence the 60 s synthetic default; ``--p4-depth``
  can pick a shallower random model for it. With random weights the figures say how far a
  window moves the outputs, not how detection changes; run ``--model default --p4-audio ...``
  for that.
* Noise: per-hop times of a few ms are easily inflated many-fold by other processes on a small
  machine. Each timed record carries ``cpu``: ``own_cores`` (this process's CPU time / wall) and
  ``other_cores`` (CPUs kept busy by everything else meanwhile, from /proc/stat); trust figures
  whose ``other_cores`` is near 0. ``--wait-quiet`` waits for idle CPUs before starting.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..audio_constants import (SAMPLE_RATE, SAMPLES_PER_COLUMN, column_end_sample,
                               num_columns, num_frames)
from ..errors import ConfigError

DEFAULT_EMBED_DIM = 192  # AuM-tiny
DEFAULT_DEPTH = 24
NUM_CLASSES = 35
MIXER = "v1"
SEED = 0
DEFAULT_WINDOWS = "0.5,1,2,4"
REFERENCE_WINDOW_S = 1.0  # the headline figures and the recompute comparison
RECOMPUTE_WINDOW_S = 10.24  # the official 10.24 s input
HOP_S = SAMPLES_PER_COLUMN / SAMPLE_RATE  # 0.16 s per hop (one patch column)
HISTORY_HOPS = math.ceil(RECOMPUTE_WINDOW_S / HOP_S) + 10  # 74 untimed hops before timing
COMPILE_WARMUP_HOPS = 30
SOAK_SPAN_HOPS = 1000  # hop_ms_first / hop_ms_last are p50 over this many hops
RSS_TRACE_EVERY = 1000
# One hour (22499 hops) takes ~27-37 min on the 2-core dev machine; 20 min of audio ~8 min.
DEFAULT_SOAK_S = 1200.0
DEFAULT_P4_S = 60.0
RECOMPUTE_SPEEDUP_TARGET = 8.0
BLOCK_HOPS = 10  # blocked protocol: hops each runtime runs back to back before the other's


# Arithmetic and parsing ----------------------------------------------------------------------
def window_columns(window_s: float) -> int:
    """Window seconds -> patch columns: round(W / 0.16), at least one."""
    return max(1, round(window_s / HOP_S))


def hops_in(seconds: float) -> int:
    """Hops (one column each) completed by ``seconds`` of audio."""
    return hops_in_samples(int(round(seconds * SAMPLE_RATE)))


def hops_in_samples(n: int) -> int:
    """Hops (one column each) completed by ``n`` samples at 16 kHz: the patch columns of
    their frames."""
    return num_columns(num_frames(n))


def parse_windows(text: str) -> list[float]:
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"--windows takes comma-separated seconds (e.g. 0.5,1,2,4); "
                              f"got {part!r}")
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"window lengths must be positive seconds; got {part!r}")
        values.append(value)
    if not values:
        raise ConfigError("--windows is empty; give comma-separated seconds, e.g. 0.5,1,2,4")
    return list(dict.fromkeys(values))


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# Synthetic audio ---------------------------------------------------------------------------
def synth_block(index: int, seed: int = SEED) -> torch.Tensor:
    """Second ``index`` of the synthetic stream (16000 float32 samples), deterministic.

    White noise (0.05 rms) plus three tones; each tone is on or off and has its own pitch per
    2-second segment, so the content (and a model's output) changes over time."""
    rng = np.random.default_rng([seed, index])
    noise = rng.standard_normal(SAMPLE_RATE) * 0.05
    t = (index * SAMPLE_RATE + np.arange(SAMPLE_RATE, dtype=np.float64)) / SAMPLE_RATE
    audio = noise
    segment = index // 2
    for k in range(3):
        seg_rng = np.random.default_rng([seed, 1_000_003, segment, k])
        if seg_rng.random() < 0.5:
            freq = float(seg_rng.uniform(100.0, 4000.0))
            audio = audio + 0.2 * np.sin(2 * np.pi * freq * t)
    return torch.from_numpy(audio.astype(np.float32))


class HopChunks:
    """A hop source: ``next_chunk()`` returns the samples that complete the next hop (2800 for
    the first, 2560 after) from ``read(n)``, which subclasses provide."""

    _hop = 0

    def read(self, n: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def next_chunk(self) -> torch.Tensor:
        n = column_end_sample(0) if self._hop == 0 else SAMPLES_PER_COLUMN
        self._hop += 1
        return self.read(n)


class SynthStream(HopChunks):
    """The synthetic stream, hop by hop, generated a second at a time."""

    def __init__(self, seed: int = SEED) -> None:
        self.seed = seed
        self._block = 0
        self._buf = torch.zeros(0)

    def read(self, n: int) -> torch.Tensor:
        while self._buf.shape[0] < n:
            self._buf = torch.cat([self._buf, synth_block(self._block, self.seed)])
            self._block += 1
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


class AudioStream(HopChunks):
    """A recorded waveform (1-D, 16 kHz), hop by hop like :class:`SynthStream`."""

    def __init__(self, waveform: torch.Tensor) -> None:
        self.waveform = waveform
        self._pos = 0

    def read(self, n: int) -> torch.Tensor:
        if self._pos + n > self.waveform.shape[0]:
            raise RuntimeError("AudioStream: the waveform has no further complete hop")
        out = self.waveform[self._pos:self._pos + n]
        self._pos += n
        return out


# Model -------------------------------------------------------------------------------------
def build_model(embed_dim: int, depth: int) -> Any:
    from ..config import streaming_config
    from ..model.audio_mamba import AudioMamba

    torch.manual_seed(SEED)
    cfg = streaming_config(embed_dim=embed_dim, depth=depth, mixer=MIXER, num_classes=NUM_CLASSES)
    return AudioMamba(cfg).eval()


def model_info(model: Any) -> dict[str, Any]:
    """What the random-weight model of :func:`build_model` is (:func:`load_bench_model`
    describes a ``--model``)."""
    cfg = model.config
    default = (cfg.embed_dim, cfg.depth) == (DEFAULT_EMBED_DIM, DEFAULT_DEPTH)
    return {
        "name": "aum-tiny-streaming (random weights)" if default
        else f"aum-d{cfg.embed_dim}-L{cfg.depth}-streaming (random weights)",
        "source": "random", "weights": f"random (torch.manual_seed({SEED}))",
        "config": f"streaming_config(embed_dim={cfg.embed_dim}, depth={cfg.depth}, "
                  f"mixer={cfg.mixer!r}, num_classes={cfg.num_classes})",
        "embed_dim": cfg.embed_dim, "depth": cfg.depth, "mixer": cfg.mixer,
        "num_classes": cfg.num_classes, "seed": SEED,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
    }


def load_bench_model(spec: str) -> tuple[Any, dict[str, Any]]:
    """``--model``: the literal ``default`` (the shipped model, ``streaming_aum.load_model()``)
    or a saved model directory / checkpoint path. Returns ``(model, info)``; the model must have
    the streaming layout (the state-carrying runtime needs it)."""
    from ..loading import DEFAULT_MODEL_DIR, load_model

    if spec == "default":
        from ..eval_cli import load_model_or_default

        model, path, source = load_model_or_default(None), DEFAULT_MODEL_DIR, "default"
    else:
        model, path, source = load_model(spec), spec, "path"
    cfg = model.config
    if (cfg.token_order, cfg.pos_embed, cfg.class_token) != ("time_major", "freq_rows", "none"):
        raise ConfigError(
            f"--model {spec}: aum bench streaming measures the state-carrying runtime, which "
            "needs a streaming-layout model (token_order='time_major', pos_embed='freq_rows', "
            f"class_token='none'); this one has {cfg.token_order!r}, {cfg.pos_embed!r}, "
            f"{cfg.class_token!r}")
    window = cfg.extra.get("window_s")
    info = {
        "name": ("default model (shipped, trained weights)" if source == "default"
                 else f"saved model {path} (loaded weights)"),
        "source": source, "path": str(path),
        "weights": ("trained (the shipped default model, streaming_aum.load_model())"
                    if source == "default" else f"as saved in {path}"),
        "config": f"mixer={cfg.mixer!r}, embed_dim={cfg.embed_dim}, depth={cfg.depth}, "
                  f"d_state={cfg.d_state}, num_classes={cfg.num_classes} "
                  f"({cfg.output_activation}), {cfg.token_order}/{cfg.pos_embed}",
        "embed_dim": cfg.embed_dim, "depth": cfg.depth, "mixer": cfg.mixer,
        "num_classes": cfg.num_classes, "output_activation": cfg.output_activation,
        "labels": list(model.labels), "task": cfg.extra.get("task"),
        "model_window_s": window if isinstance(window, (int, float)) else None,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
    }
    return model, info


def scan_backend_of(model: Any) -> str:
    from ..ops import resolve_backend

    with torch.inference_mode():
        probe = torch.zeros(1, 1, model.config.d_inner)
        return resolve_backend(probe, model.layers[0].mixer.dt_proj.bias)


# Machine probes (shared with bench.offline) -----------------------------------------------
def rss_mb() -> float | None:
    from .offline import _rss_bytes

    rss = _rss_bytes()
    return None if rss is None else rss / 2**20


class CpuMeter:
    """How busy the machine was while a measurement ran: ``other_cores`` is the average number
    of CPUs that other processes kept busy (/proc/stat minus this process's own CPU time); on a
    quiet machine it is near 0. ``None`` fields off Linux."""

    def __init__(self) -> None:
        from .offline import _cpu_jiffies

        self._jiffies = _cpu_jiffies
        self._t0 = time.perf_counter()
        self._stat0 = _cpu_jiffies()
        self._own0 = self._own()

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system

    def read(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self._t0
        stat = self._jiffies()  # (busy, total) ticks
        own = (self._own() - self._own0) / wall if wall > 0 else None
        if stat is None or self._stat0 is None or stat[1] == self._stat0[1] or own is None:
            return {"own_cores": None if own is None else round(own, 2), "other_cores": None}
        busy, total = stat[0] - self._stat0[0], stat[1] - self._stat0[1]
        busy_cores = busy / total * (os.cpu_count() or 1)
        return {"own_cores": round(own, 2), "other_cores": round(max(0.0, busy_cores - own), 2)}


# Measurements ------------------------------------------------------------------------------
def _push_one(runtime: Any, chunk: torch.Tensor) -> Any:
    results = runtime.push(chunk)
    if len(results) != 1:  # pragma: no cover - a runtime change of the hop grid
        raise RuntimeError(f"expected one hop per column chunk, got {len(results)}")
    return results[0]


def _timed(runtime: Any, chunk: torch.Tensor) -> float:
    t0 = time.perf_counter()
    _push_one(runtime, chunk)
    return time.perf_counter() - t0


def _summary_ms(times_s: list[float]) -> dict[str, float]:
    ms = [t * 1e3 for t in times_s]
    return {"hop_ms_p50": round(percentile(ms, 50), 3), "hop_ms_p99": round(percentile(ms, 99), 3),
            "hop_ms_min": round(min(ms), 3), "hop_ms_mean": round(statistics.fmean(ms), 3)}


def compile_warmup(model: Any, hops: int = COMPILE_WARMUP_HOPS) -> float:
    """Stream a few hops through a throwaway small-window runtime: numba compiles (or loads) its
    kernel variants here, not in a timed hop. Returns the seconds it took."""
    from ..runtime import StreamingRuntime

    t0 = time.perf_counter()
    rt = StreamingRuntime(model, window_columns=2)
    src = SynthStream(seed=SEED + 1)
    for _ in range(hops):
        _push_one(rt, src.next_chunk())
    return time.perf_counter() - t0


def measure_window(model: Any, window_s: float, hops: int, *, recompute: bool = False,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Per-hop compute of ``StreamingRuntime`` at ``window_s`` (and, with ``recompute``, of
    ``RecomputeRuntime(window_s=10.24)`` on the same chunks in the same loop)."""
    from ..runtime import RecomputeRuntime, StreamingRuntime

    cols = window_columns(window_s)
    rt = StreamingRuntime(model, window_columns=cols)
    rc = RecomputeRuntime(model, window_s=RECOMPUTE_WINDOW_S) if recompute else None
    src = SynthStream()
    meter = CpuMeter()
    for _ in range(HISTORY_HOPS):  # same untimed history for both: windows full, kernels warm
        chunk = src.next_chunk()
        _push_one(rt, chunk)
        if rc is not None:
            _push_one(rc, chunk)
    record: dict[str, Any] = {"window_s": window_s, "window_columns": cols,
                              "window_s_effective": round(cols * HOP_S, 2), "hops": hops}
    if rc is not None:  # interleaved first, then blocked, on the continuing stream
        inter, inter_rc = [], []
        for i in range(hops):
            chunk = src.next_chunk()
            inter.append(_timed(rt, chunk))
            inter_rc.append(_timed(rc, chunk))
            if progress is not None and (i + 1) % 50 == 0:
                progress(f"  interleaved {i + 1}/{hops} hops")
        a, b = _summary_ms(inter), _summary_ms(inter_rc)
        record["interleaved"] = {
            "hop_ms_p50": a["hop_ms_p50"], "hop_ms_p99": a["hop_ms_p99"],
            "hop_ms_min": a["hop_ms_min"], "recompute_hop_ms_p50": b["hop_ms_p50"],
            "recompute_hop_ms_p99": b["hop_ms_p99"],
            "recompute_ratio": round(b["hop_ms_p50"] / a["hop_ms_p50"], 3)}
    times, rc_times = [], []
    while len(times) < hops:
        block = [src.next_chunk() for _ in range(min(BLOCK_HOPS, hops - len(times)))]
        times.extend(_timed(rt, chunk) for chunk in block)
        if rc is not None:
            rc_times.extend(_timed(rc, chunk) for chunk in block)
            if progress is not None and len(times) % 50 == 0:
                progress(f"  blocked {len(times)}/{hops} hops")
    record.update(_summary_ms(times))
    record["rtf"] = round(record["hop_ms_p50"] / (HOP_S * 1e3), 6)
    record["cpu"] = meter.read()
    if rc is not None:
        s = _summary_ms(rc_times)
        record["recompute"] = {"window_s": RECOMPUTE_WINDOW_S, **s,
                               "rtf": round(s["hop_ms_p50"] / (HOP_S * 1e3), 6)}
    return record


def measure_soak(model: Any, window_s: float, seconds: float,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Stream ``seconds`` of audio through one runtime; time every hop, trace the RSS."""
    from ..runtime import StreamingRuntime

    cols = window_columns(window_s)
    n = hops_in(seconds)
    if n < 1:
        raise ConfigError(f"--soak-s {seconds:g} is shorter than one hop "
                          f"({column_end_sample(0) / SAMPLE_RATE:g} s)")
    rt = StreamingRuntime(model, window_columns=cols)
    src = SynthStream(seed=SEED + 2)
    # The per-hop times go into an array written in full before the first RSS reading: a
    # Python list of floats grows by 32 bytes per hop (0.7 MB per hour), which the first
    # recorded hour showed as an "RSS creep" of the runtime.
    times = np.full(n, np.nan)
    trace: list[list[float]] = []
    rss_start = None
    gc.collect()
    meter = CpuMeter()
    t_wall = time.perf_counter()
    for i in range(n):
        times[i] = _timed(rt, src.next_chunk())
        if i == 0:
            rss_start = rss_mb()
        if (i + 1) % RSS_TRACE_EVERY == 0:
            mb = rss_mb()
            if mb is not None:
                trace.append([i + 1, round(mb, 1)])
            if progress is not None and (i + 1) % (10 * RSS_TRACE_EVERY) == 0:
                progress(f"  soak {i + 1}/{n} hops, RSS {mb:.1f} MB")
    wall = time.perf_counter() - t_wall
    rss_end = rss_mb()
    steady = times[min(cols, len(times) - 1):].tolist()  # once the window is full
    span = min(SOAK_SPAN_HOPS, len(steady))
    first = [t * 1e3 for t in steady[:span]]
    last = [t * 1e3 for t in steady[-span:]]
    all_ms = [t * 1e3 for t in times.tolist()]
    return {
        "audio_s": round(column_end_sample(n - 1) / SAMPLE_RATE, 2), "hops": n,
        "window_s": window_s, "window_columns": cols, "span_hops": span,
        "hop_ms_first": round(statistics.median(first), 3),
        "hop_ms_last": round(statistics.median(last), 3),
        "hop_ms_p99_first": round(percentile(first, 99), 3),
        "hop_ms_p99_last": round(percentile(last, 99), 3),
        "hop_ms_p50": round(percentile(all_ms, 50), 3),
        "hop_ms_p99": round(percentile(all_ms, 99), 3),
        "hop_ms_max": round(max(all_ms), 3),
        "rss_mb_start": None if rss_start is None else round(rss_start, 1),
        "rss_mb_end": None if rss_end is None else round(rss_end, 1),
        "rss_mb_trace": trace,
        "wall_s": round(wall, 1),
        "cpu": meter.read(),
    }


@dataclass
class P4Stream:
    """One P4 input: ``name`` (the file path as given, or the synthetic stream's), ``hops`` to
    push, ``audio_s`` (the file's full length; None for synthetic) and ``make()`` returning a
    fresh hop source (``next_chunk()``)."""

    name: str
    hops: int
    audio_s: float | None
    make: Callable[[], Any]


def synthetic_p4_stream(seconds: float) -> P4Stream:
    return P4Stream(f"synthetic (seed {SEED + 3})", hops_in(seconds), None,
                    lambda: SynthStream(seed=SEED + 3))


def audio_p4_streams(paths: list[str], cap_s: float | None) -> list[P4Stream]:
    """``--p4-audio``: each file read with ``audio_io.load_audio`` (mono, resampled to 16 kHz),
    cut to its first ``cap_s`` seconds when given; trailing samples that do not complete a hop
    are not pushed. The waveforms are held in memory (3.8 MB per minute)."""
    from ..audio_io import load_audio

    out = []
    for path in paths:
        wav = load_audio(path)
        full_s = wav.shape[0] / SAMPLE_RATE
        if cap_s is not None:
            wav = wav[:int(round(cap_s * SAMPLE_RATE))]
        n = hops_in_samples(wav.shape[0])
        if n < 1:
            raise ConfigError(f"--p4-audio {path}: {wav.shape[0] / SAMPLE_RATE:g} s is shorter "
                              f"than one hop ({column_end_sample(0) / SAMPLE_RATE:g} s)")
        out.append(P4Stream(str(path), n, round(full_s, 3),
                            lambda wav=wav: AudioStream(wav)))
    return out


def p4_event_config(model: Any) -> tuple[Any, dict[str, Any]]:
    """The event settings P4 tracks with, built exactly as ``aum eval`` builds them
    (``eval_cli.event_config_from_args`` with no command-line override): the model's
    ``config.extra["events"]``, else ``eval_cli.EVENT_DEFAULTS``, over the keyword classes of
    its labels. ``(None, {"skipped": reason})`` when the labels have no keyword class."""
    from ..eval_cli import event_config_from_args
    from ..evaluation import DEFAULT_AFTER_S, DEFAULT_BEFORE_S

    model_events = model.config.extra.get("events")
    ns = argparse.Namespace(threshold=None, off_threshold=None, min_duration_s=None,
                            cooldown_s=None)
    try:
        cfg = event_config_from_args(ns, model.labels, model_events)
    except ConfigError as exc:
        return None, {"skipped": str(exc)}
    return cfg, {
        "config": cfg.to_dict(),
        "settings_from": ("the model's config.extra['events'] (as aum eval)" if model_events
                          else "aum eval's defaults (eval_cli.EVENT_DEFAULTS: on 0.5, off = on, "
                               "no minimum duration, no cooldown): the model has no "
                               "config.extra['events']"),
        "tracker": "evaluation.track_events over every hop's probabilities, frames "
                   "[t_end(hop-1), t_end(hop))",
        "match": f"evaluation.match_events(W's events, reference events as truth, "
                 f"before_s={DEFAULT_BEFORE_S:g}, after_s={DEFAULT_AFTER_S:g})",
    }


@dataclass
class _P4Counts:
    """Raw figures of one comparison (summed over streams with ``+``)."""

    hops: int = 0
    agree: int = 0
    max: float = 0.0
    sum: float = 0.0
    count: int = 0
    truncated_hops: int = 0
    truncated_agree: int = 0
    scores: Any = None  # evaluation.EventScores, None without events

    def __add__(self, other: "_P4Counts") -> "_P4Counts":
        scores = (other.scores if self.scores is None else self.scores if other.scores is None
                  else self.scores + other.scores)
        return _P4Counts(self.hops + other.hops, self.agree + other.agree,
                         max(self.max, other.max), self.sum + other.sum,
                         self.count + other.count, self.truncated_hops + other.truncated_hops,
                         self.truncated_agree + other.truncated_agree, scores)

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "top1_agreement": round(self.agree / self.hops, 4),
            "max_prob_diff": float(f"{self.max:.6g}"),
            "mean_prob_diff": float(f"{self.sum / self.count:.6g}"),
            "truncated_hops": self.truncated_hops,
            "top1_agreement_truncated": (round(self.truncated_agree / self.truncated_hops, 4)
                                         if self.truncated_hops else None)}
        if self.scores is not None:
            m = self.scores.micro
            r4 = (lambda v: None if v is None else round(v, 4))
            out["events"] = {"reference_events": m.tp + m.fn, "events": m.tp + m.fp,
                             "tp": m.tp, "fp": m.fp, "fn": m.fn, "precision": r4(m.precision),
                             "recall": r4(m.recall), "f1": r4(m.f1)}
        else:
            out["events"] = None
        return out


def _compare(p: np.ndarray, ref: np.ndarray, cols: int, *, ref_events: Any = None,
             times: np.ndarray | None = None, labels: Any = None,
             event_config: Any = None) -> _P4Counts:
    """(n, C) probabilities of a windowed runtime vs a reference, hop by hop; with an event
    config, W's events (``track_events``) scored against ``ref_events`` by ``match_events``."""
    from ..evaluation import match_events, track_events

    diff = np.abs(p - ref)
    same = p.argmax(1) == ref.argmax(1)
    n = p.shape[0]
    trunc = np.arange(1, n + 1) > cols  # the window no longer covers the stream
    scores = None
    if event_config is not None:
        dets = track_events(times, p, labels, event_config)
        truth = [{"onset_s": e.onset_s, "offset_s": e.offset_s, "label": e.label}
                 for e in ref_events]
        scores = match_events(dets, truth, event_config.classes, float(times[-1, 1]))
    return _P4Counts(n, int(same.sum()), float(diff.max()), float(diff.sum()), int(diff.size),
                     int(trunc.sum()), int(same[trunc].sum()), scores)


P4_KINDS = ("pool_window", "pool_stream", "same_span")


def measure_p4(model: Any, windows: list[float], streams: list[P4Stream], *,
               event_config: Any = None, progress: Callable[[str], None] | None = None
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Window fidelity: every hop of each windowed runtime vs the unbounded runtime (P2), per
    stream from fresh runtimes, aggregated over streams. Returns ``(entries per W, per-stream
    info)`` (module docstring: P4)."""
    from ..evaluation import column_frame_times, track_events
    from ..runtime import StreamingRuntime

    rows = model.config.freq_patches
    labels = model.labels
    cols_of = {w: window_columns(w) for w in windows}
    col_set = sorted(set(cols_of.values()))  # windows rounding to the same columns share runtimes
    totals = {(c, k): _P4Counts() for c in col_set for k in P4_KINDS}
    per_stream: dict[tuple[int, str], list[dict[str, Any]]] = {key: [] for key in totals}
    info = []
    captured: list[torch.Tensor] = []
    capturing = [False]

    def hook(module: Any, inputs: Any, output: torch.Tensor) -> None:
        if capturing[0]:
            captured.append(output)

    # The unbounded runtime's final features of every token so far (norm_f's output in
    # run_layers), for the same-span reference; only its own pushes are captured.
    handle = model.norm_f.register_forward_hook(hook)
    t0 = time.perf_counter()
    try:
        for s_i, stream in enumerate(streams):
            n, C = stream.hops, model.config.num_classes
            reference = StreamingRuntime(model, window_columns=None)
            runtimes = {(c, pool): StreamingRuntime(model, window_columns=c, pool=pool)
                        for c in col_set for pool in ("window", "stream")}
            ref_all = np.empty((n, C))
            ref_span = {c: np.empty((n, C)) for c in col_set}
            got = {key: np.empty((n, C)) for key in runtimes}
            src = stream.make()
            for i in range(n):
                chunk = src.next_chunk()
                capturing[0] = True
                try:
                    ref_all[i] = _push_one(reference, chunk).probs.double().numpy()
                finally:
                    capturing[0] = False
                if len(captured) != 1:  # pragma: no cover - a runtime change
                    raise RuntimeError(f"expected one layer pass per reference hop, got "
                                       f"{len(captured)}")
                out = captured.pop()[0]  # (tokens so far, D), time-major
                with torch.inference_mode():
                    for c in col_set:  # as StreamingRuntime pools out[0, fin:] for pool="window"
                        logits = model.forward_head(out[-c * rows:].mean(0))
                        ref_span[c][i] = model.probabilities(logits).double().numpy()
                for key, rt in runtimes.items():
                    got[key][i] = _push_one(rt, chunk).probs.double().numpy()
                if progress is not None and (i + 1) % 50 == 0:
                    progress(f"  p4 stream {s_i + 1}/{len(streams)}: {i + 1}/{n} hops "
                             f"({time.perf_counter() - t0:.0f} s)")
            times = column_frame_times(n)
            ev: dict[str, Any] = {}
            if event_config is not None:
                ev["all"] = track_events(times, ref_all, labels, event_config)
                for c in col_set:
                    ev[c] = track_events(times, ref_span[c], labels, event_config)
            common = {"times": times, "labels": labels, "event_config": event_config}
            for c in col_set:
                for kind, p, ref, ref_ev in (
                        ("pool_window", got[(c, "window")], ref_all, ev.get("all")),
                        ("pool_stream", got[(c, "stream")], ref_all, ev.get("all")),
                        ("same_span", got[(c, "window")], ref_span[c], ev.get(c))):
                    counts = _compare(p, ref, c, ref_events=ref_ev, **common)
                    totals[(c, kind)] = totals[(c, kind)] + counts
                    per_stream[(c, kind)].append(counts.figures())
            info.append({"stream": stream.name, "audio_s": stream.audio_s,
                         "used_s": round(column_end_sample(n - 1) / SAMPLE_RATE, 3), "hops": n,
                         "reference_events": (None if event_config is None
                                              else len(ev["all"])),
                         "reference_events_same_span": (None if event_config is None else
                                                        {str(c): len(ev[c]) for c in col_set})})
    finally:
        handle.remove()

    out = []
    total_hops = sum(s.hops for s in streams)
    for w in windows:
        c = cols_of[w]
        entry: dict[str, Any] = {"window_s": w, "window_columns": c, "hops": total_hops}
        entry.update(totals[(c, "pool_window")].figures())
        entry["pool_stream"] = totals[(c, "pool_stream")].figures()
        entry["same_span"] = totals[(c, "same_span")].figures()
        entry["per_stream"] = [
            {"stream": s.name, "hops": s.hops, "pool_window": per_stream[(c, "pool_window")][k],
             "same_span": per_stream[(c, "same_span")][k]} for k, s in enumerate(streams)]
        out.append(entry)
    return out, info


def _load_1m() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _check_args(args: argparse.Namespace) -> None:
    """Argument checks that need no model; fills in the random model's size defaults."""
    sizes = [f"--{name.replace('_', '-')}" for name in ("depth", "embed_dim", "p4_depth")
             if getattr(args, name, None) is not None]
    spec = getattr(args, "model", None)
    if spec is None:  # the shipped model, unless a random model's size was asked for
        spec = "random" if sizes else "default"
    if spec != "random" and sizes:
        raise ConfigError(f"{'/'.join(sizes)} size the random-weight model; with --model "
                          f"{spec} the loaded model's size is fixed, so drop "
                          f"{' and '.join(sizes)} (or use --model random)")
    args.model = None if spec == "random" else spec  # None: the random model from here on
    model_given = args.model is not None
    if not model_given:
        args.depth = DEFAULT_DEPTH if args.depth is None else args.depth
        args.embed_dim = DEFAULT_EMBED_DIM if args.embed_dim is None else args.embed_dim
    names = ("hops",) if model_given else ("hops", "depth", "embed_dim")
    for name in names:
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, "
                              f"got {getattr(args, name)}")
    if getattr(args, "p4_depth", None) is not None and args.p4_depth < 1:
        raise ConfigError(f"--p4-depth must be at least 1, got {args.p4_depth}")
    for name in ("soak_s", "p4_s"):
        value = getattr(args, name)
        if value is None:
            continue
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a non-negative number of "
                              f"seconds, got {value!r}")
        if value > 0 and hops_in(value) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {value:g} is shorter than one hop "
                              f"({column_end_sample(0) / SAMPLE_RATE:g} s); use 0 to skip")
    if getattr(args, "p4_audio", None) and args.p4_s == 0:
        raise ConfigError("--p4-s 0 skips P4, but --p4-audio asks for it; drop one of them "
                          "(with --p4-audio, --p4-s caps each file's duration)")


def run_benchmark(args: argparse.Namespace,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from .offline import cpu_busy_fraction, wait_until_quiet

    def say(msg: str) -> None:
        if progress is not None:
            progress(msg)

    windows = parse_windows(args.windows)
    _check_args(args)
    measured = sorted(set(windows) | {REFERENCE_WINDOW_S})
    p4_audio = getattr(args, "p4_audio", None) or None
    p4_s = args.p4_s if args.p4_s is not None else (None if p4_audio else DEFAULT_P4_S)

    if getattr(args, "model", None) is not None:
        model, info = load_bench_model(args.model)
    else:
        model = build_model(args.embed_dim, args.depth)
        info = model_info(model)
    # Read (and check) the P4 audio before minutes of timing, so a bad file fails fast.
    p4_streams = (audio_p4_streams(p4_audio, p4_s) if p4_audio
                  else [synthetic_p4_stream(p4_s)] if p4_s else [])
    busy = wait_until_quiet(args.wait_quiet) if args.wait_quiet > 0 else cpu_busy_fraction()
    result: dict[str, Any] = {
        "model": info, "threads": 1, "hop_s": HOP_S,
        "scan_backend": scan_backend_of(model),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or None,
                    "python": platform.python_version(), "torch": torch.__version__,
                    "load_1m_start": _load_1m(),
                    "cpu_busy_before": None if busy is None else round(busy, 2)},
    }
    prev_threads = torch.get_num_threads()
    t_start = time.perf_counter()
    try:
        torch.set_num_threads(1)
        say(f"[bench streaming] compile warm-up ({COMPILE_WARMUP_HOPS} hops) ...")
        result["compile_warmup_s"] = round(compile_warmup(model), 2)
        records = []
        for w in measured:
            is_ref = w == REFERENCE_WINDOW_S
            say(f"[bench streaming] W = {w:g} s ({window_columns(w)} columns): {HISTORY_HOPS} "
                f"untimed + {args.hops} timed hops" + (", with recompute side by side" if is_ref
                                                      else "") + " ...")
            rec = measure_window(model, w, args.hops, recompute=is_ref, progress=say)
            say(f"[bench streaming]   p50 {rec['hop_ms_p50']:.2f} ms, p99 {rec['hop_ms_p99']:.2f} "
                "ms" + (f"; recompute p50 {rec['recompute']['hop_ms_p50']:.2f} ms" if is_ref
                        else ""))
            records.append(rec)
        ref = next(r for r in records if r["window_s"] == REFERENCE_WINDOW_S)
        rc = ref.pop("recompute")
        result["windows"] = records
        result["reference_window_s"] = REFERENCE_WINDOW_S
        result["hop_ms_p50"] = ref["hop_ms_p50"]
        result["hop_ms_p99"] = ref["hop_ms_p99"]
        result["rtf"] = ref["rtf"]
        result["recompute_window_s"] = RECOMPUTE_WINDOW_S
        result["recompute_hop_ms_p50"] = rc["hop_ms_p50"]
        result["recompute_hop_ms_p99"] = rc["hop_ms_p99"]
        result["recompute_rtf"] = rc["rtf"]
        result["recompute_ratio"] = round(rc["hop_ms_p50"] / ref["hop_ms_p50"], 3)
        result["interleaved"] = ref.pop("interleaved")
        result["recompute_ratio_interleaved"] = result["interleaved"]["recompute_ratio"]
        if args.soak_s > 0:
            say(f"[bench streaming] soak: {args.soak_s:g} s of audio at W = "
                f"{REFERENCE_WINDOW_S:g} s ({hops_in(args.soak_s)} hops) ...")
            result["soak"] = measure_soak(model, REFERENCE_WINDOW_S, args.soak_s, progress=say)
            s = result["soak"]
            say(f"[bench streaming]   hop p50 first {s['hop_ms_first']:.2f} ms, last "
                f"{s['hop_ms_last']:.2f} ms; RSS {s['rss_mb_start']} -> {s['rss_mb_end']} MB")
    finally:
        torch.set_num_threads(prev_threads)
    result["timing_wall_s"] = round(time.perf_counter() - t_start, 1)
    result["machine"]["load_1m_end"] = _load_1m()
    if p4_streams:
        if getattr(args, "model", None) is None and args.p4_depth not in (None, args.depth):
            p4_model = build_model(args.embed_dim, args.p4_depth)
            p4_info = model_info(p4_model)
        else:
            p4_model, p4_info = model, info
        event_config, events_setup = p4_event_config(p4_model)
        hops = sum(s.hops for s in p4_streams)
        what = (f"{len(p4_streams)} file(s)" if p4_audio else f"{p4_s:g} s synthetic stream")
        say(f"[bench streaming] P4: {what} ({hops} hops), windows "
            f"{', '.join(f'{w:g}' for w in measured)} s vs unbounded ...")
        t0 = time.perf_counter()
        result["p4"], streams_info = measure_p4(p4_model, measured, p4_streams,
                                                event_config=event_config, progress=say)
        setup: dict[str, Any] = {
            "model": p4_info, "source": "audio" if p4_audio else "synthetic"}
        if p4_audio:
            setup["cap_s"] = p4_s
        else:
            setup["stream_s"] = p4_s
        setup.update({
            "streams": streams_info, "hops": hops, "threads": torch.get_num_threads(),
            "reference": "StreamingRuntime(window_columns=None) (= offline on each prefix, P2), "
                         "pooled over every token so far",
            "same_span_reference": "the same unbounded runtime's final features, mean-pooled "
                                   "over the last W columns (the W runtime's pooling span)",
            "events": events_setup,
            "wall_s": round(time.perf_counter() - t0, 1)})
        result["p4_setup"] = setup
    result["targets"] = targets(result)
    return result


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, checked on this run's figures."""
    out: dict[str, Any] = {
        "recompute_ratio_at_1s": {"target": f">= {RECOMPUTE_SPEEDUP_TARGET:g}",
                                  "value": result["recompute_ratio"],
                                  "met": result["recompute_ratio"] >= RECOMPUTE_SPEEDUP_TARGET},
        "recompute_ratio_at_1s_interleaved": {
            "target": f">= {RECOMPUTE_SPEEDUP_TARGET:g} (pessimistic protocol, for reference)",
            "value": result["recompute_ratio_interleaved"],
            "met": result["recompute_ratio_interleaved"] >= RECOMPUTE_SPEEDUP_TARGET},
        "real_time_at_1s": {"target": "rtf < 1", "value": result["rtf"],
                            "met": result["rtf"] < 1},
    }
    soak = result.get("soak")
    if soak:
        # "No growth": last p50 within 10 % of the first, RSS within 5 MB (allocator noise).
        t_growth = soak["hop_ms_last"] / soak["hop_ms_first"]
        out["soak_time_flat"] = {"target": "hop_ms_last / hop_ms_first <= 1.10",
                                 "value": round(t_growth, 3), "met": t_growth <= 1.10}
        if soak["rss_mb_start"] is not None and soak["rss_mb_end"] is not None:
            growth = soak["rss_mb_end"] - soak["rss_mb_start"]
            out["soak_rss_flat"] = {"target": "rss_mb_end - rss_mb_start <= 5 MB",
                                    "value": round(growth, 1), "met": growth <= 5.0}
    return out


def format_table(result: dict[str, Any]) -> str:
    m = result["model"]
    lines = [f"Model: {m['name']}, {m['config']}, {m['params_m']} M params; "
             f"{result['threads']} thread, hop {result['hop_s']:g} s, "
             f"scan {result['scan_backend']}",
             "",
             f"{'W (s)':>6} {'cols':>5} {'p50 ms':>9} {'p99 ms':>9} {'rtf':>7} "
             f"{'other CPUs busy':>16}"]
    for r in result["windows"]:
        other = r.get("cpu", {}).get("other_cores")
        lines.append(f"{r['window_s']:>6g} {r['window_columns']:>5d} {r['hop_ms_p50']:>9.2f} "
                     f"{r['hop_ms_p99']:>9.2f} {r['rtf']:>7.3f} "
                     f"{'-' if other is None else format(other, '.2f'):>16}")
    lines += ["",
              f"W = 1 s: {result['hop_ms_p50']:.2f} ms p50 / {result['hop_ms_p99']:.2f} ms p99 per "
              f"hop; recompute over {result['recompute_window_s']:g} s: "
              f"{result['recompute_hop_ms_p50']:.2f} ms p50 -> {result['recompute_ratio']:.2f}x "
              "less compute per hop with the state carry (blocked; interleaved hop by hop: "
              f"{result['interleaved']['hop_ms_p50']:.2f} vs "
              f"{result['interleaved']['recompute_hop_ms_p50']:.2f} ms, "
              f"{result['recompute_ratio_interleaved']:.2f}x)"]
    soak = result.get("soak")
    if soak:
        lines.append(f"Soak {soak['audio_s']:g} s ({soak['hops']} hops): hop p50 first "
                     f"{soak['hop_ms_first']:.2f} ms, last {soak['hop_ms_last']:.2f} ms; RSS "
                     f"{soak['rss_mb_start']} -> {soak['rss_mb_end']} MB")
    if result.get("p4"):
        setup = result["p4_setup"]
        src = (f"{len(setup['streams'])} file(s), {setup['hops']} hops"
               if setup["source"] == "audio" else f"{setup['stream_s']:g} s synthetic stream")
        ev = setup["events"]

        def f1(fig: dict[str, Any]) -> str:
            e = fig.get("events")
            return "-" if not e or e["f1"] is None else f"{e['f1']:.3f}"

        def ev_counts(fig: dict[str, Any]) -> str:
            e = fig.get("events")
            return "-" if not e else f"{e['events']}/{e['reference_events']}"

        lines += ["", f"P4 vs unbounded (= offline prefix), {src}, "
                      f"{setup['model']['config']}:",
                  "  pool=window vs the unbounded runtime pooled over all tokens so far; "
                  "same span: vs its features pooled over the same last W columns",
                  "  events: W's events / reference events; F1 of W's events against the "
                  "reference's" + ("" if "config" in ev else f" (skipped: {ev['skipped']})"),
                  f"{'W (s)':>6} {'top1':>6} {'max|dp|':>8} {'mean|dp|':>9} {'ev F1':>6}  | "
                  f"{'span top1':>9} {'max|dp|':>8} {'mean|dp|':>9} {'events':>9} "
                  f"{'ev F1':>6}  | {'[pool=stream] top1':>18} {'max|dp|':>8}"]
        for e in result["p4"]:
            ps, sp = e["pool_stream"], e["same_span"]
            lines.append(f"{e['window_s']:>6g} {e['top1_agreement']:>6.3f} "
                         f"{e['max_prob_diff']:>8.4g} {e['mean_prob_diff']:>9.4g} {f1(e):>6}  | "
                         f"{sp['top1_agreement']:>9.3f} {sp['max_prob_diff']:>8.4g} "
                         f"{sp['mean_prob_diff']:>9.4g} {ev_counts(sp):>9} {f1(sp):>6}  | "
                         f"{ps['top1_agreement']:>18.3f} {ps['max_prob_diff']:>8.4g}")
    lines += ["", "Targets:"]
    for name, t in result["targets"].items():
        lines.append(f"  {name}: {t['value']} (target {t['target']}): "
                     f"{'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = run_benchmark(args, progress=progress)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
    return 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "streaming", help="per-hop compute, recompute baseline, soak and window fidelity",
        description="Streaming benchmark of the shipped default model (or --model PATH, or "
                    "--model random: a random-weight streaming-layout AuM-tiny, "
                    "streaming_config(embed_dim=192, depth=24, mixer='v1', num_classes=35), "
                    "sized by --depth / --embed-dim): per-hop compute p50/p99 on one thread for "
                    "several windows W, windowed recomputation over 10.24 s side by side at "
                    "W = 1 s, a long soak (time per hop and RSS at start and end) and P4 window "
                    "fidelity against the unbounded runtime (= offline on each prefix): top-1 "
                    "agreement, probability differences and event-level P/R/F1, on a synthetic "
                    "stream or on --p4-audio files.")
    p.add_argument("--json", action="store_true",
                   help="print only the JSON object on stdout (progress goes to stderr)")
    p.add_argument("--model", default=None, metavar="default|random|PATH",
                   help="'default' (the default, unless --depth / --embed-dim / --p4-depth are "
                        "given): the shipped trained model (streaming_aum.load_model()); "
                        "'random': the random-weight AuM-tiny (sized by those flags); or a "
                        "saved model directory / checkpoint, which must have the streaming "
                        "layout")
    p.add_argument("--windows", default=DEFAULT_WINDOWS,
                   help="comma list of windows W in seconds; 1 s is always measured "
                        "(default: %(default)s)")
    p.add_argument("--hops", type=int, default=200,
                   help="timed hops per window, after 74 untimed ones (default: %(default)s)")
    p.add_argument("--soak-s", type=float, default=DEFAULT_SOAK_S,
                   help="seconds of audio streamed in the soak at W = 1 s; 0 skips it "
                        "(default: %(default)s, which streams in ~8 min on 2 slow cores; "
                        "3600 = the issue's hour)")
    p.add_argument("--p4-s", type=float, default=None,
                   help="P4 stream length in seconds; 0 skips P4. Synthetic stream: its length "
                        f"(default {DEFAULT_P4_S:g}). With --p4-audio: caps each file at its "
                        "first P4_S seconds (default: whole files)")
    p.add_argument("--p4-audio", nargs="+", default=None, metavar="FILE",
                   help="P4 streams these audio files (any rate/channels; read as mono 16 kHz), "
                        "each through its own fresh runtimes, figures summed over files, instead "
                        "of the synthetic stream")
    p.add_argument("--depth", type=int, default=None,
                   help=f"random model depth (implies --model random; default: {DEFAULT_DEPTH}, "
                        "AuM-tiny)")
    p.add_argument("--embed-dim", type=int, default=None,
                   help=f"random model width (implies --model random; default: "
                        f"{DEFAULT_EMBED_DIM}, AuM-tiny)")
    p.add_argument("--p4-depth", type=int, default=None,
                   help="depth of the random model used for P4 only (default: --depth)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before measuring, wait up to SECONDS for the CPUs to be idle "
                        "(under 15%% busy); for shared machines (default: no wait)")
    p.set_defaults(func=run)
    return p
