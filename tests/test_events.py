"""Event post-processing: hand-computed cases, streaming/offline parity, independent reference."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streaming_aum.errors import ConfigError
from streaming_aum.events import (Event, EventConfig, EventInputError, EventTracker,
                                  detect_events, read_events_csv, write_events_csv)

HOP = 0.5  # seconds, exact in binary so hand-computed times compare exactly


def contiguous(n: int, hop: float = HOP, t0: float = 0.0) -> list[list[float]]:
    """(n, 2) [t_start, t_end] seconds of back-to-back frames."""
    return [[t0 + i * hop, t0 + (i + 1) * hop] for i in range(n)]


def run1(scores: Sequence[float], hop: float = HOP, label: str = "a", **cfg: Any) -> list[Event]:
    """Events of one class from a list of per-frame probabilities."""
    return detect_events(contiguous(len(scores), hop), [[s] for s in scores], [label],
                         EventConfig(**cfg))


def ev(onset: float, offset: float, score: float, label: str = "a") -> Event:
    return Event(onset_s=onset, offset_s=offset, label=label, score=score)


# ---------------------------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------------------------

def test_simple_on_off() -> None:
    assert run1([0.1, 0.6, 0.7, 0.2, 0.1], on_threshold=0.5) == [ev(0.5, 1.5, 0.7)]


def test_threshold_is_inclusive_and_open_event_closes_at_stream_end() -> None:
    assert run1([0.5, 0.1, 0.5, 0.9], on_threshold=0.5) == [ev(0.0, 0.5, 0.5), ev(1.0, 2.0, 0.9)]


def test_hysteresis_keeps_event_through_dips() -> None:
    scores = [0.1, 0.7, 0.4, 0.5, 0.65, 0.2, 0.1]
    assert run1(scores, on_threshold=0.6, off_threshold=0.3) == [ev(0.5, 2.5, 0.7)]
    # Without hysteresis the dips split it.
    assert run1(scores, on_threshold=0.6) == [ev(0.5, 1.0, 0.7), ev(2.0, 2.5, 0.65)]


def test_hysteresis_does_not_start_below_on_threshold() -> None:
    assert run1([0.4, 0.5, 0.4], on_threshold=0.6, off_threshold=0.3) == []


def test_min_duration_drops_short_blip() -> None:
    scores = [0.0, 0.9, 0.0, 0.0, 0.8, 0.8, 0.8, 0.0]
    assert run1(scores, min_duration_s=1.0) == [ev(2.0, 3.5, 0.8)]
    # Exactly the minimum is kept.
    assert run1([0.0, 0.9, 0.9, 0.0], min_duration_s=1.0) == [ev(0.5, 1.5, 0.9)]


def test_cooldown_suppresses_retrigger_and_allows_one_after() -> None:
    # First event [0.5, 1.0): cooldown until 2.0; the 1.5 s trigger is ignored, 3.5 s is not.
    scores = [0.0, 0.9, 0.0, 0.9, 0.0, 0.0, 0.0, 0.9, 0.0]
    assert run1(scores, cooldown_s=1.0) == [ev(0.5, 1.0, 0.9), ev(3.5, 4.0, 0.9)]
    assert run1(scores) == [ev(0.5, 1.0, 0.9), ev(1.5, 2.0, 0.9), ev(3.5, 4.0, 0.9)]


def test_cooldown_boundary_frame_may_start() -> None:
    # Scores that stay high through the cooldown start an event at its end (2.0 s).
    scores = [0.0, 0.9, 0.0, 0.9, 0.9, 0.9, 0.0]
    assert run1(scores, cooldown_s=1.0) == [ev(0.5, 1.0, 0.9), ev(2.0, 3.0, 0.9)]


def test_dropped_event_starts_no_cooldown() -> None:
    scores = [0.9, 0.0, 0.9, 0.9, 0.9, 0.0]
    assert run1(scores, cooldown_s=5.0, min_duration_s=1.0) == [ev(1.0, 2.5, 0.9)]


def test_warmup_masks_early_frames() -> None:
    scores = [0.9, 0.95, 0.8, 0.0]
    # Frame [0, 0.5) ends before 1.0 s: masked; [0.5, 1.0) ends at 1.0 s: kept.
    assert run1(scores, warmup_s=1.0) == [ev(0.5, 1.5, 0.95)]
    # Its score never counts either.
    assert run1([1.0, 0.6, 0.0], warmup_s=1.0) == [ev(0.5, 1.0, 0.6)]
    assert run1(scores, warmup_s=1.5) == [ev(1.0, 1.5, 0.8)]
    assert run1(scores, warmup_s=1.5, on_threshold=0.0, off_threshold=0.0) == [ev(1.0, 2.0, 0.8)]


def test_per_class_thresholds() -> None:
    labels = ["dog", "cat", "cow"]
    probs = [[0.5, 0.5, 0.5], [0.9, 0.0, 0.45], [0.0, 0.0, 0.0]]
    cfg = EventConfig(on_threshold={"dog": 0.8, "default": 0.3},
                      off_threshold={"cow": 0.1})
    assert detect_events(contiguous(3), probs, labels, cfg) == [
        ev(0.0, 0.5, 0.5, "cat"), ev(0.0, 1.0, 0.5, "cow"), ev(0.5, 1.0, 0.9, "dog")]
    # Without a "default" key the others fall back to 0.5.
    cfg = EventConfig(on_threshold={"dog": 0.8})
    assert cfg.thresholds_for(labels) == {"dog": (0.8, 0.8), "cat": (0.5, 0.5), "cow": (0.5, 0.5)}


def test_classes_restricts_detection() -> None:
    probs = [[0.9, 0.9], [0.0, 0.0]]
    cfg = EventConfig(classes=["b"])
    assert detect_events(contiguous(2), probs, ["a", "b"], cfg) == [ev(0.0, 0.5, 0.9, "b")]
    assert EventTracker(["a", "b"], cfg).tracked_classes == ["b"]


def test_gap_merge() -> None:
    scores = [0.0, 0.9, 0.0, 0.7, 0.0, 0.0, 0.8, 0.0]
    # Gap 0.5 s merges; gap 1.0 s does not.
    assert run1(scores, max_gap_s=0.5) == [ev(0.5, 2.0, 0.9), ev(3.0, 3.5, 0.8)]
    assert run1(scores, max_gap_s=1.0) == [ev(0.5, 3.5, 0.9)]
    assert len(run1(scores)) == 3


def test_gap_merge_tolerates_inexact_hop_times() -> None:
    # 0.5 - 0.2 is 0.30000000000000004 in floating point; it still merges with max_gap 0.3.
    assert run1([0.0, 0.9, 0.0, 0.0, 0.0, 0.9, 0.0], hop=0.1, max_gap_s=0.3) == [
        ev(0.1, 0.6000000000000001, 0.9)]


def test_merge_before_min_duration_and_cooldown_from_merged_offset() -> None:
    blips = [0.0, 0.9, 0.0, 0.9, 0.0, 0.0]
    assert run1(blips, min_duration_s=1.0) == []
    assert run1(blips, min_duration_s=1.0, max_gap_s=0.5) == [ev(0.5, 2.0, 0.9)]
    # Cooldown counts from the merged offset 2.0 s (not the first part's 1.0 s): the trigger
    # at 3.0 s (too far to merge) is suppressed, 3.5 s is allowed.
    scores = [0.0, 0.9, 0.0, 0.9, 0.0, 0.0, 0.9, 0.9, 0.0]
    assert run1(scores, max_gap_s=0.5, cooldown_s=1.5) == [ev(0.5, 2.0, 0.9), ev(3.5, 4.0, 0.9)]


def test_multi_class_independence() -> None:
    a = [0.0, 0.9, 0.9, 0.0, 0.9, 0.0, 0.0, 0.0]
    b = [0.9, 0.0, 0.9, 0.9, 0.9, 0.9, 0.0, 0.9]
    cfg = dict(cooldown_s=0.5, max_gap_s=0.5, min_duration_s=0.5)
    both = detect_events(contiguous(8), np.array([a, b]).T, ["a", "b"], EventConfig(**cfg))
    alone = run1(a, label="a", **cfg) + run1(b, label="b", **cfg)
    assert both == sorted(alone, key=lambda e: (e.onset_s, e.label))
    assert {e.label for e in both} == {"a", "b"}


def test_events_become_final_as_soon_as_settled() -> None:
    frames = contiguous(8)
    scores = [0.0, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    tr = EventTracker(["a"], EventConfig())
    out = [tr.update(*frames[i], [s]) for i, s in enumerate(scores)]
    assert out[2] == [ev(0.5, 1.0, 0.9)] and sum(map(len, out)) == 1
    # With a 1 s merge window it is final once a frame starts more than 1 s after the offset.
    tr = EventTracker(["a"], EventConfig(max_gap_s=1.0))
    out = [tr.update(*frames[i], [s]) for i, s in enumerate(scores)]
    assert out[5] == [ev(0.5, 1.0, 0.9)] and sum(map(len, out)) == 1
    assert tr.flush() == []


def test_open_events_and_flush() -> None:
    tr = EventTracker(["a", "b"], EventConfig())
    tr.update(0.0, 0.5, [0.6, 0.1])
    tr.update(0.5, 1.0, torch.tensor([0.8, 0.1]))
    assert tr.open_events() == {"a": (0.0, pytest.approx(0.8))}
    assert tr.flush(0.75) == [ev(0.0, 0.75, pytest.approx(0.8))]
    # flush resets: a new stream may start at 0 s again.
    assert tr.open_events() == {} and tr.state_dict()["last_t_end"] is None
    tr.update(0.0, 0.5, np.array([0.9, 0.0]))
    assert tr.flush() == [ev(0.0, 0.5, 0.9)]


def test_overlapping_windows() -> None:
    # 2 s windows every 0.5 s: onset/offset are window starts.
    times = [[i * 0.5, i * 0.5 + 2.0] for i in range(6)]
    probs = [[0.1], [0.7], [0.8], [0.2], [0.1], [0.9]]
    assert detect_events(times, probs, ["a"], EventConfig()) == [
        ev(0.5, 1.5, 0.8), ev(2.5, 4.5, 0.9)]


def test_empty_input() -> None:
    assert detect_events(np.zeros((0, 2)), np.zeros((0, 3)), ["a", "b", "c"]) == []
    assert EventTracker(["a"]).flush() == []


# ---------------------------------------------------------------------------------------------
# Random scenarios: parity, snapshot/restore, invariants, independent reference
# ---------------------------------------------------------------------------------------------

LEVELS = [0.0, 0.2, 0.3, 0.5, 0.6, 0.8, 1.0]


@st.composite
def scenarios(draw: st.DrawFn, *, merge_and_cooldown: bool = True) -> dict[str, Any]:
    """Random labels, frame times (s), scores and a valid EventConfig."""
    labels = [f"c{i}" for i in range(draw(st.integers(1, 3)))]
    n = draw(st.integers(0, 30))
    hop = draw(st.sampled_from([0.1, 0.25, 0.5]))
    window = hop * draw(st.sampled_from([1, 2, 4]))
    t0 = draw(st.sampled_from([0.0, 0.3, 10.0]))
    times = [[t0 + i * hop, t0 + i * hop + window] for i in range(n)]
    probs = draw(st.lists(st.lists(st.sampled_from(LEVELS), min_size=len(labels),
                                   max_size=len(labels)), min_size=n, max_size=n))
    ons = {c: draw(st.sampled_from([0.0, 0.3, 0.5, 0.6, 0.8])) for c in labels}
    offs = {c: ons[c] * draw(st.sampled_from([1.0, 0.5, 0.0])) for c in labels}
    per_class = draw(st.booleans())
    cfg = EventConfig(
        on_threshold=ons if per_class else ons[labels[0]],
        off_threshold=(offs if per_class else offs[labels[0]]) if draw(st.booleans()) else None,
        min_duration_s=draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])),
        warmup_s=draw(st.sampled_from([0.0, 0.5, 1.0, 3.7, 11.0])),
        classes=draw(st.one_of(st.none(), st.lists(st.sampled_from(labels), min_size=1,
                                                   unique=True))),
        cooldown_s=draw(st.sampled_from([0.0, 0.3, 0.5, 1.25])) if merge_and_cooldown else 0.0,
        max_gap_s=draw(st.sampled_from([0.0, 0.2, 0.5, 1.0])) if merge_and_cooldown else 0.0,
    )
    return {"labels": labels, "times": times, "probs": probs, "config": cfg,
            "snapshot_at": draw(st.integers(0, n))}


def stream(sc: dict[str, Any]) -> list[tuple[int, Event]]:
    """Feed the tracker frame by frame (torch rows), snapshot + restore into a new tracker via
    JSON at ``snapshot_at``; returns (frame index, event) pairs, flush as index N."""
    labels, cfg = sc["labels"], sc["config"]
    tr = EventTracker(labels, cfg)
    out: list[tuple[int, Event]] = []
    for i, ((ts, te), row) in enumerate(zip(sc["times"], sc["probs"])):
        if i == sc["snapshot_at"]:
            state = json.loads(json.dumps(tr.state_dict(), allow_nan=False))
            tr = EventTracker(labels, cfg)
            tr.load_state_dict(state)
        out += [(i, e) for e in tr.update(ts, te, torch.tensor(row, dtype=torch.float64))]
    out += [(len(sc["times"]), e) for e in tr.flush()]
    return out


def by_onset(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.onset_s, e.label))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_streaming_with_snapshot_equals_offline(sc: dict[str, Any]) -> None:
    offline = detect_events(sc["times"], sc["probs"], sc["labels"], sc["config"])
    streamed = stream(sc)
    assert by_onset([e for _, e in streamed]) == offline
    # Final means final: an event returned at frame i ended no later than that frame's start.
    for i, e in streamed:
        if i < len(sc["times"]):
            assert e.offset_s <= sc["times"][i][0]


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_event_invariants(sc: dict[str, Any]) -> None:
    cfg: EventConfig = sc["config"]
    thresholds = cfg.thresholds_for(sc["labels"])
    events = detect_events(sc["times"], sc["probs"], sc["labels"], cfg)
    for label in sc["labels"]:
        mine = [e for e in events if e.label == label]
        assert not mine or label in thresholds
        for e in mine:
            assert e.duration_s >= cfg.min_duration_s - 1e-6 and e.duration_s > 0
            assert thresholds[label][0] <= e.score <= 1.0
        for prev, nxt in zip(mine, mine[1:]):
            assert nxt.onset_s - prev.offset_s >= cfg.cooldown_s - 1e-6
            assert nxt.onset_s >= prev.offset_s
            if cfg.max_gap_s > 0:
                assert nxt.onset_s - prev.offset_s > cfg.max_gap_s


def reference_events(times: list[list[float]], probs: list[list[float]], labels: list[str],
                     cfg: EventConfig) -> list[Event]:
    """Plain threshold-crossing scan (no merge, no cooldown), written independently."""
    thresholds = cfg.thresholds_for(labels)
    n = len(times)
    found = []
    for c, label in enumerate(labels):
        if label not in thresholds:
            continue
        on, off = thresholds[label]
        # Warm-up frames get a score below every threshold.
        col = [probs[i][c] if times[i][1] >= cfg.warmup_s - 1e-6 else -1.0 for i in range(n)]
        i = 0
        while i < n:
            if col[i] < on:
                i += 1
                continue
            j = i
            while j + 1 < n and col[j + 1] >= off:
                j += 1
            onset = times[i][0]
            offset = times[j + 1][0] if j + 1 < n else times[-1][1]
            if offset - onset >= cfg.min_duration_s - 1e-6:
                found.append(Event(onset, offset, label, max(col[i:j + 1])))
            i = j + 1
    return by_onset(found)


@settings(max_examples=200, deadline=None)
@given(scenarios(merge_and_cooldown=False))
def test_matches_independent_reference(sc: dict[str, Any]) -> None:
    got = detect_events(sc["times"], sc["probs"], sc["labels"], sc["config"])
    assert got == reference_events(sc["times"], sc["probs"], sc["labels"], sc["config"])


def test_snapshot_mid_event_and_mid_gap_is_json_and_continues() -> None:
    cfg = EventConfig(max_gap_s=1.0, cooldown_s=0.5, off_threshold=0.3)
    frames = contiguous(10)
    scores = [0.0, 0.9, 0.4, 0.0, 0.0, 0.9, 0.0, 0.0, 0.0, 0.9]
    expected = run1(scores, max_gap_s=1.0, cooldown_s=0.5, off_threshold=0.3)
    for cut in range(len(scores) + 1):
        tr, got = EventTracker(["a"], cfg), []
        for i, s in enumerate(scores):
            if i == cut:
                restored = EventTracker(["a"], cfg)
                restored.load_state_dict(json.loads(json.dumps(tr.state_dict())))
                assert restored.state_dict() == tr.state_dict()
                tr = restored
            got += tr.update(*frames[i], [s])
        assert got + tr.flush() == expected


def test_load_state_dict_rejects_other_config_or_labels() -> None:
    state = EventTracker(["a", "b"], EventConfig()).state_dict()
    with pytest.raises(ConfigError, match="on_threshold"):
        EventTracker(["a", "b"], EventConfig(on_threshold=0.7)).load_state_dict(state)
    with pytest.raises(ConfigError, match="labels"):
        EventTracker(["a", "c"], EventConfig()).load_state_dict(state)
    with pytest.raises(ConfigError, match="format"):
        EventTracker(["a", "b"]).load_state_dict({"classes": {}})


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------

def test_csv_round_trip(tmp_path: Path) -> None:
    events = [ev(0.5, 1.25, 0.9123, "Speech"), ev(2.0, 3.5, 0.5, "Male speech, man speaking"),
              ev(2.0, 2.5, 1.0, 'quote "q"')]
    path = tmp_path / "ev.csv"
    write_events_csv(events, path)
    text = path.read_text()
    assert text.splitlines()[0] == "onset_s,offset_s,label,score"
    assert text.splitlines()[1] == "0.500,1.250,Speech,0.9123"
    assert read_events_csv(path) == events
    assert read_events_csv(str(path)) == events


def test_csv_rounds_times_and_scores(tmp_path: Path) -> None:
    buf = io.StringIO()
    write_events_csv([ev(1 / 3, 2 / 3, 2 / 3)], buf)
    assert buf.getvalue() == "onset_s,offset_s,label,score\n0.333,0.667,a,0.6667\n"
    assert read_events_csv(io.StringIO(buf.getvalue())) == [ev(0.333, 0.667, 0.6667)]


def test_csv_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "ev.csv"
    path.write_text("precious\n")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_events_csv([ev(0.0, 1.0, 0.9)], path)
    assert path.read_text() == "precious\n"
    write_events_csv([ev(0.0, 1.0, 0.9)], path, overwrite=True)
    assert read_events_csv(path) == [ev(0.0, 1.0, 0.9)]


def test_csv_bad_header_and_rows(tmp_path: Path) -> None:
    with pytest.raises(EventInputError, match="header"):
        read_events_csv(io.StringIO("start,end,label,score\n0,1,a,0.5\n"))
    with pytest.raises(EventInputError, match="header"):
        read_events_csv(io.StringIO(""))
    with pytest.raises(EventInputError, match="line 2"):
        read_events_csv(io.StringIO("onset_s,offset_s,label,score\nx,1,a,0.5\n"))
    with pytest.raises(EventInputError, match="line 3"):
        read_events_csv(io.StringIO("onset_s,offset_s,label,score\n0,1,a,0.5\n2,1,a,0.5\n"))


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(on_threshold=1.5), r"on_threshold = 1\.5.*\[0, 1\]"),
    (dict(on_threshold=-0.1), r"on_threshold"),
    (dict(on_threshold=float("nan")), r"on_threshold"),
    (dict(on_threshold="high"), r"on_threshold = 'high'"),
    (dict(on_threshold=True), r"on_threshold"),
    (dict(on_threshold={"a": 2.0}), r"on_threshold\['a'\] = 2\.0"),
    (dict(off_threshold=0.7, on_threshold=0.5), r"off_threshold = 0\.7.*above"),
    (dict(min_duration_s=-1.0), r"min_duration_s = -1\.0.*>= 0"),
    (dict(cooldown_s=float("inf")), r"cooldown_s"),
    (dict(warmup_s=-0.5), r"warmup_s"),
    (dict(max_gap_s=-0.1), r"max_gap_s"),
    (dict(classes=[]), r"classes"),
    (dict(classes="a"), r"classes"),
    (dict(classes=["a", "a"]), r"more than once"),
])
def test_config_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        EventConfig(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(on_threshold={"a": 0.5, "zebra": 0.5}),
     r"on_threshold names unknown classes \['zebra'\]"),
    (dict(off_threshold={"zebra": 0.1}), r"off_threshold names unknown"),
    (dict(classes=["a", "zebra"]), r"classes names unknown classes \['zebra'\]"),
    (dict(on_threshold={"a": 0.4}, off_threshold=0.45), r"class 'a': off_threshold 0\.45"),
    (dict(on_threshold=0.4, off_threshold={"b": 0.6}), r"class 'b'"),
])
def test_label_dependent_config_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        EventTracker(["a", "b"], EventConfig(**kwargs))


def test_label_errors() -> None:
    with pytest.raises(ConfigError, match="more than once"):
        EventTracker(["a", "a"])
    with pytest.raises(ConfigError, match="non-empty"):
        EventTracker([])


@pytest.mark.parametrize("t_start, t_end, probs, match", [
    (1.0, 1.5, [float("nan"), 0.1], r"probs\[0\] \('a'\) is nan"),
    (1.0, 1.5, [0.1, float("inf")], r"finite"),
    (1.0, 1.5, [0.1, 0.2, 0.3], r"shape \(3,\).*\(2,\)"),
    (1.0, 1.5, [[0.1, 0.2]], r"shape"),
    (1.0, 1.5, ["x", 0.2], r"numbers"),
    (1.0, 1.5, [3.0, 0.2], r"\[0, 1\].*logits"),
    (0.25, 0.75, [0.1, 0.2], r"t_end 0\.75 s <= previous t_end 1\.0 s"),
    (0.5, 1.0, [0.1, 0.2], r"backwards"),
    (0.5, 1.25, [0.1, 0.2], r"t_start 0\.5 s <= previous t_start 0\.5 s"),
    (1.5, 1.5, [0.1, 0.2], r"t_end > t_start"),
    (float("nan"), 2.0, [0.1, 0.2], r"finite"),
])
def test_update_errors_leave_state_unchanged(t_start: float, t_end: float, probs: Any,
                                             match: str) -> None:
    tr = EventTracker(["a", "b"], EventConfig(max_gap_s=1.0))
    tr.update(0.0, 0.5, [0.9, 0.0])
    tr.update(0.5, 1.0, [0.0, 0.9])
    before = tr.state_dict()
    with pytest.raises(EventInputError, match=match):
        tr.update(t_start, t_end, probs)
    assert tr.state_dict() == before
    assert tr.update(1.0, 1.5, [0.0, 0.0]) == []
    assert tr.flush() == [ev(0.0, 0.5, 0.9, "a"), ev(0.5, 1.0, 0.9, "b")]


def test_detect_events_shape_errors_and_flush_time() -> None:
    with pytest.raises(EventInputError, match=r"times has shape \(3,\)"):
        detect_events([0.0, 0.5, 1.0], [[0.1]] * 3, ["a"])
    with pytest.raises(EventInputError, match=r"probs has shape \(2, 1\)"):
        detect_events(contiguous(3), [[0.1]] * 2, ["a"])
    with pytest.raises(EventInputError, match=r"probs has shape \(3, 2\): expected \(3, 1\)"):
        detect_events(contiguous(3), [[0.1, 0.2]] * 3, ["a"])
    tr = EventTracker(["a"])
    tr.update(0.0, 1.0, [0.9])
    with pytest.raises(EventInputError, match="after the last frame"):
        tr.flush(0.0)
    assert detect_events(contiguous(2), [[0.9], [0.9]], ["a"], end_s=0.8) == [ev(0.0, 0.8, 0.9)]
    assert math.isclose(tr.flush(2.0)[0].offset_s, 2.0)


def test_describe_and_single_threshold():
    from streaming_aum.events import describe_threshold, single_threshold

    assert describe_threshold(0.7) == "0.7"
    assert describe_threshold({"yes": 0.8, "no": 0.6, "go": 0.7}) == "per class 0.6-0.8"
    assert describe_threshold({"yes": 0.5}) == "per class 0.5"
    assert describe_threshold(None) == "none"
    assert single_threshold(0.25) == 0.25
    assert single_threshold({"yes": 0.5}) is None
