"""Event post-processing shared by streaming and file inference.

Score frames (one probability per class for a span ``[t_start, t_end)`` in seconds) become
sound events with onset and offset times. One code path serves both uses: :class:`EventTracker`
is the streaming, stateful detector, and :func:`detect_events` (the offline path) simply feeds
it frame by frame and flushes, so the two can never disagree.

Per class, in this order:

1. **Warm-up**: frames whose ``t_end < warmup_s`` are masked (treated as score 0, below every
   threshold; their scores never count).
2. **Hysteresis**: an event starts at the ``t_start`` of the first frame whose probability is
   ``>= on_threshold`` (unless the class is in cooldown), continues while probabilities stay
   ``>= off_threshold`` and ends at the ``t_start`` of the first frame below ``off_threshold``
   (the previous frame's ``t_end`` when frames are contiguous). At the end of the stream an
   open event ends at the last ``t_end`` (or the time given to :meth:`EventTracker.flush`).
3. **Gap merge**: an event whose next same-class event starts at most ``max_gap_s`` after
   its offset is merged with it (``max_gap_s = 0`` never merges).
4. **Minimum duration**: (merged) events shorter than ``min_duration_s`` are dropped.
5. **Cooldown**: after a kept event ends, no new event of that class may start for
   ``cooldown_s`` (frames above the threshold are simply ignored; a dropped event starts no
   cooldown).

An event's ``score`` is the largest probability among the frames inside it. Time comparisons
allow :data:`TIME_EPS_S` of floating-point slack (hop times such as ``3 * 0.1`` are inexact).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterable, Mapping, Sequence, Union

import numpy as np

from .errors import ConfigError, EventInputError

TIME_EPS_S: float = 1e-6
"""Slack (seconds) in every time comparison, far below one audio sample at 48 kHz."""

DEFAULT_THRESHOLD: float = 0.5
"""The on threshold of a class that a per-class dict does not name and has no ``"default"``."""

DEFAULT_KEY: str = "default"
"""The key of a per-class threshold dict that applies to every class it does not name."""

CSV_HEADER: tuple[str, ...] = ("onset_s", "offset_s", "label", "score")

STATE_FORMAT: str = "streaming_aum.events.EventTracker"
STATE_VERSION: int = 1

Threshold = Union[float, Mapping[str, float]]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def _check_probability(value: Any, what: str) -> float:
    """A threshold in [0, 1] as a float, else a ConfigError naming ``what``."""
    if not _is_number(value) or not math.isfinite(float(value)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{what} = {value!r} is not accepted: expected a probability "
                          f"threshold, a number in [0, 1]")
    return float(value)


def _check_duration(value: Any, name: str) -> float:
    """A finite, non-negative number of seconds as a float, else a ConfigError."""
    if not _is_number(value) or not math.isfinite(float(value)) or float(value) < 0.0:
        raise ConfigError(f"EventConfig.{name} = {value!r} is not accepted: expected a finite "
                          f"number of seconds >= 0")
    return float(value)


def _check_threshold(value: Any, name: str, *, allow_none: bool = False) -> Any:
    """Normalise a threshold field: a float, a ``{label: float}`` dict, or (if allowed) None."""
    if value is None and allow_none:
        return None
    if isinstance(value, Mapping):
        out: dict[str, float] = {}
        for key, v in value.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(f"EventConfig.{name} has key {key!r}: expected class labels "
                                  f"(non-empty strings) or {DEFAULT_KEY!r}")
            out[key] = _check_probability(v, f"EventConfig.{name}[{key!r}]")
        return out
    if _is_number(value):
        return _check_probability(value, f"EventConfig.{name}")
    accepted = "a number in [0, 1] or a {label: number} dict" + (" or None" if allow_none else "")
    raise ConfigError(f"EventConfig.{name} = {value!r} is not accepted: expected {accepted}")


def _check_classes(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(f"EventConfig.classes = {value!r} is not accepted: expected a list of "
                          f"class labels or None (all classes)")
    out = list(value)
    bad = [c for c in out if not isinstance(c, str) or not c]
    if bad:
        raise ConfigError(f"EventConfig.classes contains {bad[0]!r}: expected class labels "
                          f"(non-empty strings)")
    if not out:
        raise ConfigError("EventConfig.classes = [] is not accepted: name at least one class "
                          "label, or pass None for all classes")
    dupes = sorted({c for c in out if out.count(c) > 1})
    if dupes:
        raise ConfigError(f"EventConfig.classes names {dupes} more than once: expected "
                          f"distinct labels")
    return out


@dataclass
class EventConfig:
    """Post-processing settings; every duration is in seconds.

    ``on_threshold`` / ``off_threshold`` take one number for every class or a
    ``{label: threshold}`` dict; a dict's ``"default"`` key covers the classes it does not name
    (else 0.5 for ``on_threshold``, and the class's on threshold for ``off_threshold``).
    ``off_threshold=None`` means no hysteresis (off = on). ``classes`` restricts detection to
    those labels (None: all). Values are validated on construction; label-dependent checks
    (unknown names, off > on) happen in :meth:`thresholds_for`.
    """

    on_threshold: Threshold = DEFAULT_THRESHOLD
    off_threshold: Threshold | None = None
    min_duration_s: float = 0.0
    cooldown_s: float = 0.0
    warmup_s: float = 0.0
    classes: list[str] | None = None
    max_gap_s: float = 0.0

    def __post_init__(self) -> None:
        self.on_threshold = _check_threshold(self.on_threshold, "on_threshold")
        self.off_threshold = _check_threshold(self.off_threshold, "off_threshold",
                                              allow_none=True)
        for name in ("min_duration_s", "cooldown_s", "warmup_s", "max_gap_s"):
            setattr(self, name, _check_duration(getattr(self, name), name))
        self.classes = _check_classes(self.classes)
        if not isinstance(self.off_threshold, Mapping) and self.off_threshold is not None \
                and not isinstance(self.on_threshold, Mapping) \
                and self.off_threshold > self.on_threshold:
            raise ConfigError(f"EventConfig.off_threshold = {self.off_threshold} is above "
                              f"on_threshold = {self.on_threshold}: the off (release) threshold "
                              f"must be <= the on threshold")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable copy of the settings."""
        return dataclasses.asdict(self)

    def thresholds_for(self, labels: Sequence[str]) -> dict[str, tuple[float, float]]:
        """``{label: (on, off)}`` for the tracked classes among ``labels``, in label order.

        Raises ConfigError for names (in ``classes`` or a threshold dict) that are not labels,
        and for any class whose off threshold is above its on threshold.
        """
        labels = _check_labels(labels)
        known = set(labels)
        self._check_names(known)
        tracked = labels if self.classes is None else [c for c in labels if c in self.classes]
        out: dict[str, tuple[float, float]] = {}
        for label in tracked:
            on = _lookup(self.on_threshold, label, DEFAULT_THRESHOLD)
            off = on if self.off_threshold is None else _lookup(self.off_threshold, label, on)
            if off > on:
                raise ConfigError(f"class {label!r}: off_threshold {off} is above on_threshold "
                                  f"{on}; the off (release) threshold must be <= the on "
                                  f"threshold")
            out[label] = (on, off)
        return out

    def _check_names(self, known: set[str]) -> None:
        for name in ("on_threshold", "off_threshold"):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                unknown = sorted(k for k in value if k != DEFAULT_KEY and k not in known)
                if unknown:
                    raise ConfigError(f"EventConfig.{name} names unknown classes {unknown}: "
                                      f"expected model labels or {DEFAULT_KEY!r}")
        if self.classes is not None:
            unknown = [c for c in self.classes if c not in known]
            if unknown:
                raise ConfigError(f"EventConfig.classes names unknown classes {unknown}: "
                                  f"expected model labels")


def describe_threshold(value: Threshold | None) -> str:
    """A threshold for messages: ``0.7``, or a per-class dict as ``per class 0.7-0.9``
    (``none`` for None)."""
    if value is None:
        return "none"
    if isinstance(value, Mapping):
        values = sorted(float(v) for v in value.values())
        if not values:
            return "per class (none given)"
        lo, hi = values[0], values[-1]
        return f"per class {lo:g}" if lo == hi else f"per class {lo:g}-{hi:g}"
    return f"{float(value):g}"


def single_threshold(value: Threshold | None) -> float | None:
    """The one number a plot can draw: ``value`` itself, or None for a per-class dict."""
    return None if value is None or isinstance(value, Mapping) else float(value)


def _lookup(value: Threshold, label: str, fallback: float) -> float:
    """The threshold of ``label`` in a float-or-dict setting."""
    if isinstance(value, Mapping):
        return float(value.get(label, value.get(DEFAULT_KEY, fallback)))
    return float(value)


def _check_labels(labels: Sequence[str]) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, Iterable):
        raise ConfigError(f"labels = {labels!r} is not accepted: expected a list of class names")
    out = list(labels)
    if not out or any(not isinstance(x, str) or not x for x in out):
        raise ConfigError(f"labels = {out!r} is not accepted: expected a non-empty list of "
                          f"non-empty strings")
    if len(set(out)) != len(out):
        dupes = sorted({x for x in out if out.count(x) > 1})
        raise ConfigError(f"labels name {dupes} more than once: expected distinct class names")
    return out


# --------------------------------------------------------------------------------------------
# Events and the streaming tracker
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    """One detected sound event: ``[onset_s, offset_s)`` in seconds, ``score`` = max probability."""

    onset_s: float
    offset_s: float
    label: str
    score: float

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.offset_s - self.onset_s


def _sort_events(events: Iterable[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.onset_s, e.label))


@dataclass
class _ClassState:
    """Per-class state: idle, open (``onset`` set) or pending (``pending`` set), never both.

    A pending event has ended but may still merge with the next one (``max_gap_s``); it becomes
    final once no later onset could merge. ``cooldown_until`` (s) blocks new onsets before it.
    """

    onset: float | None = None
    score: float = 0.0
    pending: tuple[float, float, float] | None = None  # (onset_s, offset_s, score)
    cooldown_until: float | None = None

    @property
    def busy(self) -> bool:
        return self.onset is not None or self.pending is not None

    def to_dict(self) -> dict[str, Any]:
        return {"onset": self.onset, "score": self.score,
                "pending": None if self.pending is None else list(self.pending),
                "cooldown_until": self.cooldown_until}


class EventTracker:
    """Streaming, stateful event detector over score frames (see the module docstring).

    Feed one frame per hop with :meth:`update`, in time order; it returns the events that have
    become final (offset known, merge / minimum-duration / cooldown decisions settled), sorted
    by (onset, label). :meth:`flush` ends the stream. :meth:`state_dict` /
    :meth:`load_state_dict` snapshot and restore the state as plain JSON-serialisable types.
    """

    def __init__(self, labels: Sequence[str], config: EventConfig | None = None) -> None:
        self.labels: list[str] = _check_labels(labels)
        cfg = EventConfig() if config is None else config
        if not isinstance(cfg, EventConfig):
            raise ConfigError(f"config = {cfg!r} is not accepted: expected an EventConfig")
        self.config: EventConfig = EventConfig(**cfg.to_dict())  # private, re-validated copy
        thresholds = self.config.thresholds_for(self.labels)
        self._tracked: list[str] = list(thresholds)
        index = {label: i for i, label in enumerate(self.labels)}
        self._columns = np.array([index[c] for c in self._tracked], dtype=np.int64)
        self._on = np.array([thresholds[c][0] for c in self._tracked], dtype=np.float64)
        self._off = np.array([thresholds[c][1] for c in self._tracked], dtype=np.float64)
        self.reset()

    # -- public API -------------------------------------------------------------------------

    @property
    def tracked_classes(self) -> list[str]:
        """The labels events are detected for, in label order."""
        return list(self._tracked)

    def reset(self) -> None:
        """Forget everything: the next :meth:`update` starts a new stream."""
        self._states: list[_ClassState] = [_ClassState() for _ in self._tracked]
        self._busy: set[int] = set()
        self._last_t_start: float | None = None
        self._last_t_end: float | None = None

    def update(self, t_start: float, t_end: float, probs: Any) -> list[Event]:
        """Take the score frame covering ``[t_start, t_end)`` seconds; return newly final events.

        ``probs`` holds one probability per label (sequence, numpy array or torch tensor).
        Both times must increase from frame to frame. On any error the state is unchanged.
        """
        ts, te = self._check_times(t_start, t_end)
        p = self._check_probs(probs)
        masked = te < self.config.warmup_s - TIME_EPS_S
        tracked_p = p[self._columns]
        hot = set() if masked else set(np.flatnonzero(tracked_p >= self._on).tolist())
        out: list[Event] = []
        for k in sorted(hot | self._busy):
            event = self._step(k, ts, None if masked else float(tracked_p[k]))
            if event is not None:
                out.append(event)
        self._last_t_start, self._last_t_end = ts, te
        return _sort_events(out)

    def flush(self, t_end: float | None = None) -> list[Event]:
        """End the stream: close open events and return every remaining final event.

        Open events end at ``t_end`` seconds (default: the last frame's ``t_end``; a given
        value must be after the last frame's ``t_start``, e.g. the audio's true duration when
        the last window was padded). The tracker is then reset for a new stream.
        """
        end = self._check_flush_time(t_end)
        out: list[Event] = []
        for k in sorted(self._busy):
            st = self._states[k]
            if st.onset is not None:
                st.pending, st.onset = (st.onset, end, st.score), None
            event = self._finalize(k)
            if event is not None:
                out.append(event)
        self.reset()
        return _sort_events(out)

    def open_events(self) -> dict[str, tuple[float, float]]:
        """``{label: (onset_s, score_so_far)}`` of events in progress, for a live display.

        They may still be merged with an earlier event's onset or dropped as too short.
        """
        return {self._tracked[k]: (st.onset, st.score)
                for k, st in enumerate(self._states) if st.onset is not None}

    def state_dict(self) -> dict[str, Any]:
        """The complete state as plain, JSON-serialisable Python types."""
        classes = {self._tracked[k]: st.to_dict() for k, st in enumerate(self._states)
                   if st.busy or st.cooldown_until is not None}
        return {"format": STATE_FORMAT, "version": STATE_VERSION, "labels": list(self.labels),
                "config": self.config.to_dict(), "last_t_start": self._last_t_start,
                "last_t_end": self._last_t_end, "classes": classes}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot taken with the same labels and config."""
        self._check_state_header(state)
        states = [_ClassState() for _ in self._tracked]
        position = {label: k for k, label in enumerate(self._tracked)}
        classes = state.get("classes")
        if not isinstance(classes, Mapping):
            raise ConfigError("tracker state 'classes' must be a dict of per-class states")
        for label, cs in classes.items():
            if label not in position:
                raise ConfigError(f"tracker state has class {label!r}, which this tracker does "
                                  f"not track")
            states[position[label]] = _class_state_from_dict(label, cs)
        last_ts = _optional_time(state.get("last_t_start"), "last_t_start")
        last_te = _optional_time(state.get("last_t_end"), "last_t_end")
        self._states = states
        self._busy = {k for k, st in enumerate(states) if st.busy}
        self._last_t_start, self._last_t_end = last_ts, last_te

    # -- per-class state machine --------------------------------------------------------------

    def _step(self, k: int, ts: float, p: float | None) -> Event | None:
        """Advance class ``k`` by one frame starting at ``ts`` s (``p`` None: masked)."""
        st = self._states[k]
        on, off = float(self._on[k]), float(self._off[k])
        if st.onset is not None:
            if p is not None and p >= off:
                st.score = max(st.score, p)
                return None
            st.pending, st.onset = (st.onset, ts, st.score), None
        triggered = p is not None and p >= on
        if st.pending is not None and triggered and self._mergeable(st.pending[1], ts):
            st.onset, st.score, st.pending = st.pending[0], max(st.pending[2], p), None
            return None
        event = None
        if st.pending is not None and self._settled(st.pending[1], ts):
            event = self._finalize(k)
        if st.pending is None and triggered and self._cooled(st, ts):
            st.onset, st.score = ts, p
        self._mark(k)
        return event

    def _mergeable(self, offset: float, onset: float) -> bool:
        """Whether an onset at ``onset`` s merges with an event that ended at ``offset`` s."""
        gap = self.config.max_gap_s
        return gap > 0.0 and onset - offset <= gap + TIME_EPS_S

    def _settled(self, offset: float, ts: float) -> bool:
        """Whether, at a frame starting at ``ts`` s, no later onset can merge any more.

        Later frames start strictly after ``ts``, so ``ts >= offset + gap + eps`` suffices.
        """
        gap = self.config.max_gap_s
        return gap == 0.0 or ts >= offset + gap + TIME_EPS_S

    def _cooled(self, st: _ClassState, ts: float) -> bool:
        """Whether a new event may start at ``ts`` s (clears an expired cooldown)."""
        if st.cooldown_until is None:
            return True
        if ts >= st.cooldown_until - TIME_EPS_S:
            st.cooldown_until = None
            return True
        return False

    def _finalize(self, k: int) -> Event | None:
        """Settle class ``k``'s pending event: drop it if too short, else emit and cool down."""
        st = self._states[k]
        assert st.pending is not None
        onset, offset, score = st.pending
        st.pending = None
        self._mark(k)
        if offset - onset < self.config.min_duration_s - TIME_EPS_S:
            return None
        if self.config.cooldown_s > 0.0:
            st.cooldown_until = offset + self.config.cooldown_s
        return Event(onset_s=onset, offset_s=offset, label=self._tracked[k], score=score)

    def _mark(self, k: int) -> None:
        if self._states[k].busy:
            self._busy.add(k)
        else:
            self._busy.discard(k)

    # -- validation ----------------------------------------------------------------------------

    def _check_times(self, t_start: Any, t_end: Any) -> tuple[float, float]:
        if not (_is_number(t_start) and _is_number(t_end)
                and math.isfinite(float(t_start)) and math.isfinite(float(t_end))):
            raise EventInputError(f"frame times must be finite numbers of seconds, got "
                                  f"t_start={t_start!r}, t_end={t_end!r}")
        ts, te = float(t_start), float(t_end)
        if te <= ts:
            raise EventInputError(f"frame [{ts}, {te}) s is empty or reversed: expected "
                                  f"t_end > t_start")
        if self._last_t_end is not None and te <= self._last_t_end:
            raise EventInputError(f"time went backwards: t_end {te} s <= previous t_end "
                                  f"{self._last_t_end} s; frames must arrive in time order "
                                  f"(call reset() or flush() to start a new stream)")
        if self._last_t_start is not None and ts <= self._last_t_start:
            raise EventInputError(f"time went backwards: t_start {ts} s <= previous t_start "
                                  f"{self._last_t_start} s; frames must arrive in time order")
        return ts, te

    def _check_probs(self, probs: Any) -> np.ndarray:
        if hasattr(probs, "detach"):  # torch.Tensor, without importing torch here
            probs = probs.detach().cpu().double().numpy()
        try:
            arr = np.asarray(probs, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise EventInputError(f"probs must be numbers, one per label: {exc}") from None
        if arr.shape != (len(self.labels),):
            raise EventInputError(f"probs has shape {tuple(arr.shape)}: expected "
                                  f"({len(self.labels)},), one probability per label")
        if not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise EventInputError(f"probs[{bad}] ({self.labels[bad]!r}) is {arr[bad]}: expected "
                                  f"finite probabilities")
        if arr.min() < 0.0 or arr.max() > 1.0:
            bad = int(np.flatnonzero((arr < 0.0) | (arr > 1.0))[0])
            raise EventInputError(f"probs[{bad}] ({self.labels[bad]!r}) is {arr[bad]}: expected "
                                  f"probabilities in [0, 1] (sigmoid/softmax outputs, not logits)")
        return arr

    def _check_flush_time(self, t_end: Any) -> float:
        if t_end is None:
            return 0.0 if self._last_t_end is None else self._last_t_end
        if not _is_number(t_end) or not math.isfinite(float(t_end)):
            raise EventInputError(f"flush t_end={t_end!r}: expected a finite number of seconds")
        if self._last_t_start is not None and float(t_end) <= self._last_t_start:
            raise EventInputError(f"flush t_end {float(t_end)} s must be after the last frame's "
                                  f"t_start {self._last_t_start} s")
        return float(t_end)

    def _check_state_header(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise ConfigError(f"not an EventTracker state (expected format {STATE_FORMAT!r})")
        if state.get("version") != STATE_VERSION:
            raise ConfigError(f"tracker state version {state.get('version')!r} is not "
                              f"supported: expected {STATE_VERSION}")
        if list(state.get("labels") or []) != self.labels:
            raise ConfigError("tracker state was saved with different labels than this "
                              "tracker's")
        saved = state.get("config")
        mine = self.config.to_dict()
        if not isinstance(saved, Mapping) or dict(saved) != mine:
            diff = sorted(k for k in mine if not isinstance(saved, Mapping)
                          or saved.get(k) != mine[k])
            raise ConfigError(f"tracker state was saved with a different EventConfig "
                              f"(fields {diff} differ): build the tracker with the same config")


def _optional_time(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if not _is_number(value) or not math.isfinite(float(value)):
        raise ConfigError(f"tracker state {name} = {value!r}: expected seconds or None")
    return float(value)


def _class_state_from_dict(label: str, cs: Any) -> _ClassState:
    """Parse one class's saved state, checking every field's type."""
    if not isinstance(cs, Mapping):
        raise ConfigError(f"tracker state of class {label!r} must be a dict")
    try:
        onset = _optional_time(cs.get("onset"), "onset")
        score = float(cs.get("score", 0.0))
        pending_raw = cs.get("pending")
        pending = None
        if pending_raw is not None:
            a, b, c = (float(x) for x in pending_raw)
            pending = (a, b, c)
        cooldown = _optional_time(cs.get("cooldown_until"), "cooldown_until")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tracker state of class {label!r} is malformed: {exc}") from None
    if onset is not None and pending is not None:
        raise ConfigError(f"tracker state of class {label!r} is both open and pending")
    return _ClassState(onset=onset, score=score, pending=pending, cooldown_until=cooldown)


# --------------------------------------------------------------------------------------------
# Offline path
# --------------------------------------------------------------------------------------------

def _as_float_array(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EventInputError(f"{name} must be numeric: {exc}") from None


def detect_events(times: Any, probs: Any, labels: Sequence[str],
                  config: EventConfig | None = None, *, end_s: float | None = None) -> list[Event]:
    """Events of a whole recording, sorted by (onset, label).

    ``times`` is (N, 2) ``[t_start, t_end]`` seconds per frame, ``probs`` (N, C) with one
    column per label. This feeds an :class:`EventTracker` frame by frame and flushes it (at
    ``end_s`` seconds if given), so it equals streaming by construction.
    """
    tracker = EventTracker(labels, config)
    n_labels = len(tracker.labels)
    t = _as_float_array(times, "times")
    p = _as_float_array(probs, "probs")
    if t.size == 0:  # no frames at all, e.g. [] or np.zeros((0, 2))
        t, p = t.reshape(0, 2), p.reshape(0, n_labels)
    if t.ndim != 2 or t.shape[1] != 2:
        raise EventInputError(f"times has shape {tuple(t.shape)}: expected (N, 2) rows of "
                              f"[t_start, t_end] seconds")
    if p.shape != (t.shape[0], n_labels):
        raise EventInputError(f"probs has shape {tuple(p.shape)}: expected "
                              f"({t.shape[0]}, {n_labels}), one row per frame of times and one "
                              f"column per label")
    events: list[Event] = []
    for (ts, te), row in zip(t.tolist(), p):
        events.extend(tracker.update(ts, te, row))
    events.extend(tracker.flush(end_s))
    return _sort_events(events)


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------

PathOrFile = Union[str, os.PathLike, IO[str]]


def _event_rows(events: Iterable[Event]) -> list[list[str]]:
    rows = []
    for i, e in enumerate(events):
        if not isinstance(e, Event):
            raise EventInputError(f"events[{i}] is {type(e).__name__}: expected an Event")
        rows.append([f"{e.onset_s:.3f}", f"{e.offset_s:.3f}", e.label, f"{e.score:.4f}"])
    return rows


def write_events_csv(events: Iterable[Event], path_or_file: PathOrFile, *,
                     overwrite: bool = False) -> None:
    """Write ``onset_s,offset_s,label,score`` rows (times 3 decimals, scores 4).

    A path that already exists is refused with FileExistsError unless ``overwrite=True``;
    an open text file is written to as is.
    """
    rows = _event_rows(events)
    if hasattr(path_or_file, "write"):
        _write_rows(path_or_file, rows)  # type: ignore[arg-type]
        return
    path = Path(path_or_file)
    try:
        with open(path, "w" if overwrite else "x", newline="", encoding="utf-8") as f:
            _write_rows(f, rows)
    except FileExistsError:
        raise FileExistsError(f"events file {str(path)!r} already exists; refusing to overwrite "
                              f"it (pass overwrite=True, or --overwrite on the command line)"
                              ) from None


def _write_rows(f: IO[str], rows: list[list[str]]) -> None:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(rows)


def read_events_csv(path_or_file: PathOrFile) -> list[Event]:
    """Read a file written by :func:`write_events_csv` (header checked, rows validated)."""
    if hasattr(path_or_file, "read"):
        return _parse_rows(path_or_file.read(), "<file>")  # type: ignore[union-attr]
    path = Path(path_or_file)
    return _parse_rows(path.read_text(encoding="utf-8"), str(path))


def _parse_rows(text: str, where: str) -> list[Event]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(header) != CSV_HEADER:
        raise EventInputError(f"{where}: header is {header!r}, expected "
                              f"{','.join(CSV_HEADER)!r}")
    events = []
    for line_no, row in enumerate(reader, start=2):
        if not row:
            continue
        events.append(_parse_row(row, f"{where} line {line_no}"))
    return events


def _parse_row(row: list[str], where: str) -> Event:
    if len(row) != len(CSV_HEADER):
        raise EventInputError(f"{where}: {len(row)} fields, expected {len(CSV_HEADER)} "
                              f"({','.join(CSV_HEADER)})")
    try:
        onset, offset, score = float(row[0]), float(row[1]), float(row[3])
    except ValueError as exc:
        raise EventInputError(f"{where}: {exc}") from None
    if not all(math.isfinite(v) for v in (onset, offset, score)) or offset < onset:
        raise EventInputError(f"{where}: expected finite times with offset_s >= onset_s, got "
                              f"{row!r}")
    return Event(onset_s=onset, offset_s=offset, label=row[2], score=score)


__all__ = ["TIME_EPS_S", "CSV_HEADER", "Event", "EventConfig", "EventInputError", "EventTracker",
           "detect_events", "read_events_csv", "write_events_csv"]
