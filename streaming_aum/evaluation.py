"""Evaluation: clip accuracy on 1 s clips and event-level keyword detection on long streams.

**Detection time.** The streaming detector decides that a keyword occurred when an
:class:`~streaming_aum.events.EventTracker` event is open and can no longer be dropped as too
short. :class:`DecisionTracker` feeds an ``EventTracker`` and, after every frame, looks at
:meth:`EventTracker.open_events`: the first frame after which an event is open and
``t_end - onset >= min_duration_s`` gives the event's *decision time* ``decision_s`` = that
frame's ``t_end`` (the moment its audio had fully arrived). With the default
``min_duration_s = 0`` this is the ``t_end`` of the first frame over the on threshold, while the
tracker reports the event's onset as that frame's ``t_start``. An event that becomes final
without ever being seen open that long (only possible with gaps between frames) gets the time it
became final. Merged events keep the decision time of their first part. Decision times are
carried by :class:`Detection` (an :class:`Event` with ``decision_s``); :func:`match_events` uses
``decision_s`` for matching and latency, and a plain ``Event`` (e.g. read from a CSV) falls back to
its ``onset_s`` (one hop, about 0.16 s, earlier than its decision time).

**Score frames.** Both stream modes produce one score frame per patch column (0.16 s hop), frame
``c`` covering the new audio ``[t_end(c-1), t_end(c))`` with ``t_end(c) = column_end_sample(c) /
16 kHz`` (``aum stream --events`` uses the same convention). ``readout`` picks the scores:

* ``"window"`` (default): the head on the mean features of the last ``W`` columns (all columns
  so far for ``W = None``): the streaming runtime's ``HopResult.probs`` with ``pool="window"``.
* ``"columns"``: the head on each column's own features (``HopResult.column_logits``).

*Streaming* runs :class:`~streaming_aum.runtime.StreamingRuntime` over the file in chunks.
*Offline* runs the bidirectional model once over the whole file (``model.forward_tokens``), takes
per-column logits, and applies the same readout (the head is linear, so the mean of per-column
logits over the last ``W`` columns equals the head on their mean features). The two differ only
in the context each token saw: the whole file (offline) vs. the past plus the window (streaming).
For forward-only mixers (``none``) they are equal for every ``W`` (P3); for bidirectional mixers
they agree at the last hop of ``W = None`` only. Both feed the same tracker (``detect_events``
equals :func:`track_events` by construction).
"""

from __future__ import annotations

import csv
import json
import math
import numbers
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import torch

from .audio_constants import FRAMES_PER_PATCH, SAMPLE_RATE, column_end_sample
from .audio_io import load_audio
from .errors import ConfigError, EventInputError
from .events import TIME_EPS_S, Event, EventConfig, EventTracker
from .model import AudioMamba
from .offline import features_for_model

NON_KEYWORD_CLASSES: tuple[str, ...] = ("_unknown_", "_silence_")
"""Classes whose detections are never scored (any label starting with ``_`` is excluded too)."""

SPLITS: tuple[str, ...] = ("train", "val", "test_voice", "test_engine")
READOUTS: tuple[str, ...] = ("window", "columns")
TRUTH_REQUIRED: tuple[str, ...] = ("onset_s", "offset_s", "label")
DEFAULT_BEFORE_S: float = 0.1
DEFAULT_AFTER_S: float = 0.75


def keyword_classes(labels: Sequence[str]) -> list[str]:
    """The scored keyword classes among ``labels``: all but ``_unknown_``, ``_silence_`` and any
    other label starting with ``_``."""
    return [c for c in labels if c not in NON_KEYWORD_CLASSES and not c.startswith("_")]


# --------------------------------------------------------------------------------------------
# Detections with decision times
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Detection(Event):
    """An :class:`Event` plus ``decision_s``: when the streaming detector knew it (seconds)."""

    decision_s: float


@dataclass(frozen=True)
class Announcement:
    """An event the detector has just decided on (still open): for live display.

    ``score`` is the largest probability so far; the final event may score higher."""

    label: str
    onset_s: float
    decision_s: float
    score: float


def detection_time(event: Event) -> float:
    """``decision_s`` of a :class:`Detection`, else the event's ``onset_s`` (seconds)."""
    return float(event.decision_s) if isinstance(event, Detection) else float(event.onset_s)


class DecisionTracker:
    """An :class:`EventTracker` that also records each event's decision time.

    ``update(t_start, t_end, probs)`` and ``flush()`` return ``(announcements, detections)``:
    events decided at this frame (see the module docstring) and events that became final, as
    :class:`Detection` with ``decision_s``. The events are exactly the ``EventTracker``'s.
    """

    def __init__(self, labels: Sequence[str], config: EventConfig | None = None) -> None:
        self.tracker = EventTracker(labels, config)
        self.labels = self.tracker.labels
        self._min_duration = self.tracker.config.min_duration_s
        self.reset()

    def reset(self) -> None:
        self.tracker.reset()
        self._decided: dict[tuple[str, float], float] = {}
        self._last_t_end: float | None = None

    def update(self, t_start: float, t_end: float, probs: Any
               ) -> tuple[list[Announcement], list[Detection]]:
        """One score frame ``[t_start, t_end)`` seconds, ``probs`` (C,)."""
        final = self.tracker.update(t_start, t_end, probs)
        te = float(t_end)
        self._last_t_end = te
        late, detections = self._resolve(final, te)
        fresh = []
        for label, (onset, score) in self.tracker.open_events().items():
            key = (label, onset)
            if key not in self._decided and te - onset >= self._min_duration - TIME_EPS_S:
                self._decided[key] = te
                fresh.append(Announcement(label, onset, te, score))
        return late + fresh, detections

    def flush(self, t_end: float | None = None) -> tuple[list[Announcement], list[Detection]]:
        """End of stream (see :meth:`EventTracker.flush`); the tracker is reset afterwards."""
        final = self.tracker.flush(t_end)
        end = t_end if t_end is not None else (self._last_t_end or 0.0)
        out = self._resolve(final, float(end))
        self._decided.clear()
        self._last_t_end = None
        return out

    def _resolve(self, final: list[Event], now: float
                 ) -> tuple[list[Announcement], list[Detection]]:
        late, detections = [], []
        for e in final:
            decision = self._decided.pop((e.label, e.onset_s), None)
            if decision is None:  # never seen open long enough (gaps between frames)
                decision = now
                late.append(Announcement(e.label, e.onset_s, now, e.score))
            detections.append(Detection(e.onset_s, e.offset_s, e.label, e.score, decision))
        return late, detections


def track_events(times: Any, probs: Any, labels: Sequence[str],
                 config: EventConfig | None = None) -> list[Detection]:
    """:func:`~streaming_aum.events.detect_events` (same events, same order) with decision times.

    ``times`` (N, 2) ``[t_start, t_end]`` seconds per frame, ``probs`` (N, C)."""
    tracker = DecisionTracker(labels, config)
    t = np.asarray(times, dtype=np.float64).reshape(-1, 2)
    p = np.asarray(probs, dtype=np.float64).reshape(t.shape[0], len(tracker.labels))
    out: list[Detection] = []
    for (ts, te), row in zip(t.tolist(), p):
        out.extend(tracker.update(ts, te, row)[1])
    out.extend(tracker.flush()[1])
    return sorted(out, key=lambda e: (e.onset_s, e.label))


# --------------------------------------------------------------------------------------------
# Event matching
# --------------------------------------------------------------------------------------------

@dataclass
class ClassCounts:
    """True positives, false positives (false alarms) and false negatives (misses)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float | None:
        """TP / (TP + FP); None without detections."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """TP / (TP + FN); None without true events."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        """2 TP / (2 TP + FP + FN); None when all three are 0."""
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else None

    def __iadd__(self, other: "ClassCounts") -> "ClassCounts":
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": self.precision,
                "recall": self.recall, "f1": self.f1}


def _latency_stats(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median_s": None, "p90_s": None}
    arr = np.asarray(values, dtype=np.float64)
    return {"n": int(arr.size), "median_s": float(np.median(arr)),
            "p90_s": float(np.percentile(arr, 90))}


@dataclass
class EventScores:
    """Event-level scores of keyword detections against ground truth.

    ``per_keyword`` counts, ``latencies_s`` (decision time - true offset of each hit, seconds,
    negative when decided before the word ended), ``duration_s`` of audio scored. ``hits``
    (detection, truth row), ``misses`` (truth rows) and ``false_alarms`` (detections) list the
    individual outcomes. Scores of several streams add up with ``+``.
    """

    keywords: list[str]
    duration_s: float
    per_keyword: dict[str, ClassCounts]
    latencies_s: dict[str, list[float]]
    hits: list[tuple[Event, dict[str, Any]]] = field(default_factory=list)
    misses: list[dict[str, Any]] = field(default_factory=list)
    false_alarms: list[Event] = field(default_factory=list)

    @property
    def micro(self) -> ClassCounts:
        """Counts summed over keywords (micro-average)."""
        total = ClassCounts()
        for c in self.per_keyword.values():
            total += c
        return total

    @property
    def false_alarms_per_hour(self) -> float:
        """All false alarms / hours of audio scored."""
        return self.micro.fp / (self.duration_s / 3600.0) if self.duration_s > 0 else math.nan

    @property
    def latency(self) -> dict[str, Any]:
        """``{"n", "median_s", "p90_s"}`` over every hit (None without hits)."""
        return _latency_stats([v for k in self.keywords for v in self.latencies_s[k]])

    def __add__(self, other: "EventScores") -> "EventScores":
        if list(other.keywords) != list(self.keywords):
            raise ConfigError("cannot add EventScores of different keyword lists")
        per = {k: ClassCounts() for k in self.keywords}
        for k in self.keywords:
            per[k] += self.per_keyword[k]
            per[k] += other.per_keyword[k]
        return EventScores(list(self.keywords), self.duration_s + other.duration_s, per,
                           {k: self.latencies_s[k] + other.latencies_s[k] for k in self.keywords},
                           self.hits + other.hits, self.misses + other.misses,
                           self.false_alarms + other.false_alarms)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (counts, P/R/F1, FA/h, latency; no individual events)."""
        return {"duration_s": self.duration_s, "micro": self.micro.to_dict(),
                "false_alarms_per_hour": self.false_alarms_per_hour,
                "latency": self.latency,
                "per_keyword": {k: {**self.per_keyword[k].to_dict(),
                                    "latency": _latency_stats(self.latencies_s[k])}
                                for k in self.keywords}}


def empty_scores(keywords: Sequence[str]) -> EventScores:
    """Scores of nothing (0 s), the neutral element of ``+``."""
    kws = list(keywords)
    return EventScores(kws, 0.0, {k: ClassCounts() for k in kws}, {k: [] for k in kws})


def _check_keywords(keywords: Sequence[str]) -> list[str]:
    if isinstance(keywords, str) or not isinstance(keywords, Iterable):
        raise ConfigError(f"keywords = {keywords!r}: expected a list of class labels")
    kws = list(keywords)
    if not kws or any(not isinstance(k, str) or not k for k in kws) or len(set(kws)) != len(kws):
        raise ConfigError(f"keywords = {kws!r}: expected a non-empty list of distinct labels")
    return kws


def _truth_row(row: Mapping[str, Any], i: int) -> dict[str, Any]:
    missing = [k for k in TRUTH_REQUIRED if k not in row]
    if missing:
        raise EventInputError(f"truth[{i}] lacks {missing}: expected rows with "
                              f"{list(TRUTH_REQUIRED)} (and optionally 'kind')")
    try:
        onset, offset = float(row["onset_s"]), float(row["offset_s"])
    except (TypeError, ValueError):
        raise EventInputError(f"truth[{i}] has onset_s={row['onset_s']!r}, offset_s="
                              f"{row['offset_s']!r}: expected numbers of seconds") from None
    if not (math.isfinite(onset) and math.isfinite(offset)) or offset < onset:
        raise EventInputError(f"truth[{i}]: expected finite times with offset_s >= onset_s, "
                              f"got {onset}, {offset}")
    return {**row, "onset_s": onset, "offset_s": offset}


def match_events(detections: Sequence[Event], truth: Sequence[Mapping[str, Any]],
                 keywords: Sequence[str], duration_s: float, before_s: float = DEFAULT_BEFORE_S,
                 after_s: float = DEFAULT_AFTER_S) -> EventScores:
    """Score keyword detections against true events (one stream of ``duration_s`` seconds).

    A true event counts when its ``label`` is in ``keywords`` (and its ``kind``, if given, is
    ``"kw"``). Detections with labels outside ``keywords`` are ignored. Detections are taken in
    order of detection time (:func:`detection_time`); each is a hit on the unmatched true event
    of the same label with the earliest onset whose window ``[onset - before_s, offset +
    after_s]`` holds its detection time (inclusive, within 1e-6 s), else a false alarm. Each true
    event matches at most one detection; unmatched ones are misses. Latency of a hit = detection
    time - true offset.
    """
    kws = _check_keywords(keywords)
    for name, v in (("duration_s", duration_s), ("before_s", before_s), ("after_s", after_s)):
        if not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"{name} = {v!r}: expected a finite number of seconds >= 0")
    if duration_s <= 0:
        raise ConfigError(f"duration_s = {duration_s!r}: expected the stream's length in seconds "
                          f"(> 0)")
    wanted = set(kws)
    rows = [_truth_row(r, i) for i, r in enumerate(truth)]
    rows = [r for r in rows if r["label"] in wanted and r.get("kind", "kw") == "kw"]
    by_label: dict[str, list[int]] = defaultdict(list)
    for i in sorted(range(len(rows)), key=lambda i: (rows[i]["onset_s"], rows[i]["offset_s"])):
        by_label[rows[i]["label"]].append(i)
    for i, d in enumerate(detections):
        if not isinstance(d, Event):
            raise EventInputError(f"detections[{i}] is {type(d).__name__}: expected an Event")
    dets = sorted((d for d in detections if d.label in wanted),
                  key=lambda d: (detection_time(d), d.label))
    scores = empty_scores(kws)
    scores.duration_s = float(duration_s)
    matched = [False] * len(rows)
    for d in dets:
        t = detection_time(d)
        hit = next((i for i in by_label[d.label] if not matched[i]
                    and rows[i]["onset_s"] - before_s - TIME_EPS_S <= t
                    <= rows[i]["offset_s"] + after_s + TIME_EPS_S), None)
        if hit is None:
            scores.per_keyword[d.label].fp += 1
            scores.false_alarms.append(d)
        else:
            matched[hit] = True
            scores.per_keyword[d.label].tp += 1
            scores.latencies_s[d.label].append(t - rows[hit]["offset_s"])
            scores.hits.append((d, rows[hit]))
    for i, r in enumerate(rows):
        if not matched[i]:
            scores.per_keyword[r["label"]].fn += 1
            scores.misses.append(r)
    return scores


def read_truth_csv(path: str | Path) -> list[dict[str, Any]]:
    """Ground-truth rows of a stream CSV (``onset_s,offset_s,label,kind,...``); times as floats."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EventInputError(f"{path}: cannot read the ground-truth CSV ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    missing = [k for k in TRUTH_REQUIRED if k not in (reader.fieldnames or [])]
    if missing:
        raise EventInputError(f"{path}: header {reader.fieldnames!r} lacks {missing}; expected "
                              f"onset_s,offset_s,label,kind,snr_db,source,word")
    rows = []
    for i, row in enumerate(reader):
        try:
            rows.append(_truth_row(row, i))
        except EventInputError as exc:
            raise EventInputError(f"{path} line {i + 2}: {exc}") from None
    return rows


# --------------------------------------------------------------------------------------------
# Streams: streaming and offline score frames
# --------------------------------------------------------------------------------------------

class StreamDetections(NamedTuple):
    """Detections of one file: ``detections`` (with decision times), ``times`` (T, 2) frame
    ``[t_start, t_end]`` seconds, ``probs`` (T, C) the scores fed to the tracker."""

    detections: list[Detection]
    times: np.ndarray
    probs: np.ndarray


def column_frame_times(n_columns: int) -> np.ndarray:
    """(n, 2) ``[t_end(c-1), t_end(c)]`` seconds of columns ``0..n-1`` (``t_end(-1) = 0``)."""
    ends = np.array([column_end_sample(c) / SAMPLE_RATE for c in range(n_columns)])
    return np.stack([np.concatenate([[0.0], ends[:-1]]), ends], axis=1).reshape(-1, 2)


def _check_readout(readout: str) -> None:
    if readout not in READOUTS:
        raise ConfigError(f"readout = {readout!r}: expected one of {READOUTS}")


def _check_streaming_model(model: AudioMamba) -> None:
    cfg = model.config
    if (cfg.token_order, cfg.pos_embed, cfg.class_token) != ("time_major", "freq_rows", "none"):
        raise ConfigError("stream evaluation needs a streaming-layout model (token_order="
                          "'time_major', pos_embed='freq_rows', class_token='none'); this one has "
                          f"{cfg.token_order!r}, {cfg.pos_embed!r}, {cfg.class_token!r}")


def stream_events_streaming(model: AudioMamba, wav_path: str | Path,
                            window_columns: int | None, event_config: EventConfig | None = None,
                            *, readout: str = "window", chunk_samples: int = 1600
                            ) -> StreamDetections:
    """Push ``wav_path`` in ``chunk_samples`` chunks through a ``StreamingRuntime`` (W =
    ``window_columns``, one column per hop) and a :class:`DecisionTracker`."""
    from .runtime import StreamingRuntime
    from .stream_cli import read_chunks

    _check_readout(readout)
    rate, chunks = read_chunks(wav_path, chunk_samples)
    runtime = StreamingRuntime(model, window_columns=window_columns, hop_columns=1,
                               input_rate=rate, column_scores=readout == "columns")
    tracker = DecisionTracker(model.labels, event_config)
    detections: list[Detection] = []
    times: list[tuple[float, float]] = []
    rows: list[np.ndarray] = []

    def consume(results) -> None:
        for r in results:
            p = r.probs if readout == "window" else model.probabilities(r.column_logits[-1])
            p = p.detach().double().cpu().numpy()
            ts = times[-1][1] if times else 0.0
            detections.extend(tracker.update(ts, r.t_end, p)[1])
            times.append((ts, r.t_end))
            rows.append(p)

    for block in chunks:
        consume(runtime.push(block))
    consume(runtime.flush())
    detections.extend(tracker.flush()[1])
    detections.sort(key=lambda e: (e.onset_s, e.label))
    return StreamDetections(detections, np.asarray(times, dtype=np.float64).reshape(-1, 2),
                            np.asarray(rows, dtype=np.float64).reshape(len(rows), -1))


def offline_column_logits(model: AudioMamba, waveform: torch.Tensor) -> torch.Tensor:
    """(n,) samples at 16 kHz -> (n_columns, C) logits of each column's mean token features
    after one bidirectional pass over the whole waveform (features as ``features_for_model``)."""
    _check_streaming_model(model)
    feats = features_for_model(model, waveform)
    if feats.shape[0] < FRAMES_PER_PATCH:
        return torch.zeros(0, model.config.num_classes)
    param = next(model.parameters())
    with torch.inference_mode():
        tokens, _ = model.forward_tokens(feats.unsqueeze(0).to(param.dtype))
        rows = model.config.freq_patches
        cols = tokens[0].reshape(-1, rows, tokens.shape[-1]).mean(1)  # time-major
        return model.forward_head(cols)


def window_readout(column_logits: torch.Tensor, window_columns: int | None) -> torch.Tensor:
    """(T, C) per-column logits -> (T, C) mean over the last ``window_columns`` columns (all
    columns so far for None), computed in float64."""
    x = column_logits.double()
    cs = torch.cumsum(x, 0)
    n = torch.arange(1, x.shape[0] + 1, dtype=torch.float64).unsqueeze(1)
    if window_columns is None or window_columns >= x.shape[0]:
        return (cs / n).to(column_logits.dtype)
    W = window_columns
    shifted = torch.cat([torch.zeros(W, x.shape[1], dtype=x.dtype), cs[:-W]])
    return ((cs - shifted) / n.clamp(max=W)).to(column_logits.dtype)


def stream_events_offline(model: AudioMamba, wav_path: str | Path,
                          event_config: EventConfig | None = None, *,
                          window_columns: int | None = None, readout: str = "window"
                          ) -> StreamDetections:
    """Whole file through the bidirectional model at once (:func:`offline_column_logits`), the
    same readout as streaming (``window_columns`` for ``"window"``), then :func:`track_events`
    (= ``detect_events`` plus decision times)."""
    _check_readout(readout)
    if window_columns is not None and (not isinstance(window_columns, int)
                                       or isinstance(window_columns, bool) or window_columns < 1):
        raise ConfigError(f"window_columns must be a positive integer or None, got "
                          f"{window_columns!r}")
    logits = offline_column_logits(model, load_audio(wav_path))
    if readout == "window":
        logits = window_readout(logits, window_columns)
    probs = model.probabilities(logits).double().numpy()
    times = column_frame_times(probs.shape[0])
    return StreamDetections(track_events(times, probs, model.labels, event_config), times, probs)


def audio_duration_s(path: str | Path) -> float:
    """Length of an audio file in seconds (header only)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError) as exc:
        raise EventInputError(f"{path}: cannot read audio ({exc})") from None
    return info.frames / info.samplerate


# --------------------------------------------------------------------------------------------
# DET curve over the event on-threshold
# --------------------------------------------------------------------------------------------

DetRun = tuple[StreamDetections, Sequence[Mapping[str, Any]], float]
"""One stream for :func:`det_curve`: its scores, its ground-truth rows, its length (s)."""


def _clamp_threshold(value: Any, ceiling: float) -> Any:
    """A float-or-dict threshold setting with every value capped at ``ceiling``."""
    if isinstance(value, Mapping):
        return {k: min(float(v), ceiling) for k, v in value.items()}
    return min(float(value), ceiling)


def det_event_configs(thresholds: Sequence[float], keywords: Sequence[str],
                      base_config: EventConfig | None = None) -> list[EventConfig]:
    """One :class:`EventConfig` per DET threshold: ``base_config``'s settings (defaults when
    None) with ``on_threshold = th`` for every class, ``classes = keywords``, and a fixed
    ``off_threshold`` (a number or a per-class dict) capped at ``th`` (the off threshold may
    not exceed the on threshold); ``off_threshold = None`` (off = on) stays None.

    Raises ConfigError for an empty list or a threshold outside [0, 1]."""
    kws = _check_keywords(keywords)
    if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Iterable):
        raise ConfigError(f"det thresholds = {thresholds!r}: expected a list of numbers in "
                          f"[0, 1]")
    ths = list(thresholds)
    if not ths:
        raise ConfigError("det thresholds = []: expected at least one threshold in [0, 1]")
    base = base_config if base_config is not None else EventConfig()
    out = []
    for th in ths:
        # EventConfig validates th (a probability) with its usual message
        on = EventConfig(on_threshold=th).on_threshold
        off = None if base.off_threshold is None else _clamp_threshold(base.off_threshold, on)
        out.append(EventConfig(on_threshold=on, off_threshold=off,
                               min_duration_s=base.min_duration_s, cooldown_s=base.cooldown_s,
                               warmup_s=base.warmup_s, classes=kws, max_gap_s=base.max_gap_s))
    return out


def _det_row(threshold: float, scores: EventScores) -> dict[str, Any]:
    m = scores.micro
    return {"threshold": threshold, "tp": m.tp, "fp": m.fp, "fn": m.fn,
            "precision": m.precision, "recall": m.recall, "f1": m.f1,
            "false_alarms_per_hour": scores.false_alarms_per_hour,
            "miss_rate": m.fn / (m.tp + m.fn) if m.tp + m.fn else None}


def det_curve(runs: Sequence[DetRun], labels: Sequence[str], keywords: Sequence[str],
              thresholds: Sequence[float], base_config: EventConfig | None = None,
              before_s: float = DEFAULT_BEFORE_S, after_s: float = DEFAULT_AFTER_S
              ) -> list[dict[str, Any]]:
    """Detection error trade-off over the event on-threshold (data.md 5.3).

    ``runs``: ``(StreamDetections, truth_rows, duration_s)`` per stream, the scores
    (``.times``, ``.probs``) as computed once by :func:`stream_events_streaming` /
    :func:`stream_events_offline` (their ``.detections`` are not used). For each threshold
    (in the given order) the scores of every run go through :func:`track_events` with the
    config of :func:`det_event_configs`, and :func:`match_events` is summed over runs.

    Returns one row per threshold: ``{"threshold", "tp", "fp", "fn", "precision", "recall",
    "f1", "false_alarms_per_hour", "miss_rate"}`` (micro over ``keywords``; ``miss_rate`` =
    FN / (TP + FN), None without true keyword events; precision/recall/F1 None as in
    :class:`ClassCounts`).

    With a fixed ``off_threshold`` (hysteresis) and no cooldown, raising the threshold never
    adds detections (each event at a higher threshold lies in its own event at a lower one).
    With ``off_threshold = None`` (off = on) a dip between two thresholds can split one event
    in two, and a cooldown can release a later onset, so TP + FP need not be monotone then.
    """
    kws = _check_keywords(keywords)
    configs = det_event_configs(thresholds, kws, base_config)
    checked = []
    for i, run in enumerate(runs):
        try:
            res, truth_rows, duration = run
            times, probs = res.times, res.probs
        except (TypeError, ValueError, AttributeError):
            raise ConfigError(f"runs[{i}]: expected (StreamDetections, truth rows, duration_s)"
                              ) from None
        checked.append((times, probs, truth_rows, duration))
    rows = []
    for cfg in configs:
        total = empty_scores(kws)
        for times, probs, truth_rows, duration in checked:
            dets = track_events(times, probs, labels, cfg)
            total = total + match_events(dets, truth_rows, kws, duration, before_s, after_s)
        rows.append(_det_row(float(cfg.on_threshold), total))
    return rows


def evaluate_streams(model: AudioMamba, streams_dir: str | Path, window_columns: int | None,
                     event_config: EventConfig | None = None, *, keywords: Sequence[str] | None
                     = None, readout: str = "window", modes: Sequence[str] = ("streaming",
                                                                              "offline"),
                     before_s: float = DEFAULT_BEFORE_S, after_s: float = DEFAULT_AFTER_S,
                     det_thresholds: Sequence[float] | None = None) -> dict[str, Any]:
    """Score every ``stream_*.wav`` (with its ``stream_*.csv``) in ``streams_dir``.

    Returns ``{"streams": [names], "duration_s", "window_columns", "readout", "event_config",
    "keywords", "modes": {mode: EventScores.to_dict() summed over streams}, "per_stream":
    {name: {mode: {"tp", "fp", "fn"}}}}``. ``keywords`` default: :func:`keyword_classes`.

    With ``det_thresholds``, the result also has ``"det": {mode: rows}``: :func:`det_curve`
    over those on-thresholds (other settings from ``event_config``) on the same per-stream
    scores (no second model pass).
    """
    _check_streaming_model(model)
    streams_dir = Path(streams_dir)
    wavs = sorted(streams_dir.glob("stream_*.wav"))
    if not wavs:
        raise EventInputError(f"{streams_dir}: no stream_*.wav files (expected stream_XXX.wav "
                              f"+ stream_XXX.csv pairs)")
    bad = [m for m in modes if m not in ("streaming", "offline")]
    if bad or not modes:
        raise ConfigError(f"modes = {list(modes)!r}: expected 'streaming' and/or 'offline'")
    kws = _check_keywords(keywords if keywords is not None else keyword_classes(model.labels))
    if det_thresholds is not None:  # validate before the model runs
        det_event_configs(det_thresholds, kws, event_config)
    totals = {m: empty_scores(kws) for m in modes}
    det_runs: dict[str, list[DetRun]] = {m: [] for m in modes}
    per_stream: dict[str, Any] = {}
    for wav in wavs:
        truth_path = wav.with_suffix(".csv")
        if not truth_path.is_file():
            raise EventInputError(f"{wav}: ground truth {truth_path.name} is missing")
        truth = read_truth_csv(truth_path)
        duration = audio_duration_s(wav)
        per_stream[wav.stem] = {}
        for mode in modes:
            if mode == "streaming":
                res = stream_events_streaming(model, wav, window_columns, event_config,
                                              readout=readout)
            else:
                res = stream_events_offline(model, wav, event_config,
                                            window_columns=window_columns, readout=readout)
            s = match_events(res.detections, truth, kws, duration, before_s, after_s)
            totals[mode] = totals[mode] + s
            if det_thresholds is not None:
                det_runs[mode].append((res, truth, duration))
            m = s.micro
            per_stream[wav.stem][mode] = {"tp": m.tp, "fp": m.fp, "fn": m.fn}
    out = {"streams": [w.stem for w in wavs],
           "duration_s": totals[modes[0]].duration_s,
           "window_columns": window_columns, "readout": readout,
           "event_config": None if event_config is None else event_config.to_dict(),
           "keywords": kws, "modes": {m: totals[m].to_dict() for m in modes},
           "per_stream": per_stream}
    if det_thresholds is not None:
        out["det"] = {m: det_curve(det_runs[m], model.labels, kws, det_thresholds, event_config,
                                   before_s=before_s, after_s=after_s) for m in modes}
    return out


# --------------------------------------------------------------------------------------------
# Clip accuracy
# --------------------------------------------------------------------------------------------

def read_manifest(data_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of ``data_dir/manifest.jsonl``."""
    path = Path(data_dir) / "manifest.jsonl"
    if not path.is_file():
        raise EventInputError(f"{data_dir}: no manifest.jsonl (expected a clip directory made by "
                              f"the data generator)")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EventInputError(f"{path} line {n}: not JSON ({exc})") from None
        if not isinstance(row, dict) or not {"path", "split", "word"} <= set(row):
            raise EventInputError(f"{path} line {n}: expected an object with 'path', 'split' "
                                  f"and 'word'")
        rows.append(row)
    return rows


def _predict(model: AudioMamba, paths: list[Path], batch_size: int) -> list[int]:
    """Top-1 class index of each file, features exactly as ``offline.features_for_model`` of
    the file plus the fixed evaluation noise floor (``training.samples.with_eval_floor``: the
    generated clips' digital-zero padding is an artefact no real input has); files with equal
    feature length are batched."""
    from .training.samples import with_eval_floor

    param = next(model.parameters())
    feats = [features_for_model(model, torch.from_numpy(
        with_eval_floor(load_audio(p).numpy(), p.name))) for p in paths]
    preds = [0] * len(paths)
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, f in enumerate(feats):
        by_len[f.shape[0]].append(i)
    for idx in by_len.values():
        for start in range(0, len(idx), batch_size):
            part = idx[start:start + batch_size]
            batch = torch.stack([feats[i] for i in part]).to(param.dtype)
            with torch.inference_mode():
                top = model(batch).argmax(-1).tolist()
            for i, k in zip(part, top):
                preds[i] = int(k)
    return preds


def clip_accuracy(model: AudioMamba, data_dir: str | Path, splits: Sequence[str],
                  task: str = "kws12", batch_size: int = 64) -> dict[str, dict[str, Any]]:
    """Top-1 accuracy of the offline model on the 1 s clips of each split.

    Each row's true class is ``streaming_aum.data.words.label_for(word, task)``, which must be
    one of ``model.labels``. Returns ``{split: {"accuracy" (None when n = 0), "n", "labels"
    (model class order), "per_class": {label: {"n", "correct", "accuracy"}}, "confusion":
    [[count]] (rows = true class, columns = predicted, in "labels" order)}}``.
    """
    from .data.words import label_for

    if isinstance(splits, str):
        splits = [splits]
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ConfigError(f"splits {list(splits)!r}: expected one or more of {SPLITS}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    data_dir = Path(data_dir)
    labels = model.labels
    index = {c: i for i, c in enumerate(labels)}
    rows = read_manifest(data_dir)
    out: dict[str, dict[str, Any]] = {}
    model.eval()
    for split in splits:
        chosen = [r for r in rows if r["split"] == split]
        truth = []
        for r in chosen:
            label = label_for(r["word"], task)
            if label not in index:
                raise ConfigError(f"class {label!r} (word {r['word']!r}, task {task!r}) is not a "
                                  f"label of this model; its labels are {labels}")
            truth.append(index[label])
        preds = _predict(model, [data_dir / r["path"] for r in chosen], batch_size)
        conf = np.zeros((len(labels), len(labels)), dtype=np.int64)
        for t, p in zip(truth, preds):
            conf[t, p] += 1
        n = len(chosen)
        correct = int(np.trace(conf))
        per_class = {}
        for i, c in enumerate(labels):
            n_c = int(conf[i].sum())
            per_class[c] = {"n": n_c, "correct": int(conf[i, i]),
                            "accuracy": float(conf[i, i] / n_c) if n_c else None}
        out[split] = {"accuracy": correct / n if n else None, "n": n, "labels": list(labels),
                      "per_class": per_class, "confusion": conf.tolist()}
    return out


__all__ = ["Announcement", "ClassCounts", "DecisionTracker", "Detection", "EventScores",
           "NON_KEYWORD_CLASSES", "StreamDetections", "audio_duration_s", "clip_accuracy",
           "column_frame_times", "det_curve", "det_event_configs", "detection_time",
           "empty_scores", "evaluate_streams",
           "keyword_classes", "match_events", "offline_column_logits", "read_manifest",
           "read_truth_csv", "stream_events_offline", "stream_events_streaming", "track_events",
           "window_readout"]
