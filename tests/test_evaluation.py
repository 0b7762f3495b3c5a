"""Evaluation: event matching by hand, decision times, streaming vs offline scores, clip accuracy
against an explicit per-file loop, and the ``aum eval`` command."""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from streaming_aum import eval_cli
from streaming_aum.config import streaming_config
from streaming_aum.errors import AuMError, ConfigError, EventInputError
from streaming_aum import evaluation
from streaming_aum.evaluation import (DecisionTracker, Detection, StreamDetections, clip_accuracy,
                                      column_frame_times, det_curve, det_event_configs,
                                      evaluate_streams, match_events, offline_column_logits,
                                      stream_events_offline, stream_events_streaming,
                                      track_events)
from streaming_aum.audio_io import load_audio
from streaming_aum.events import Event, EventConfig, detect_events
from streaming_aum.loading import load_model, save_model
from streaming_aum.model import AudioMamba
from streaming_aum.offline import classify_file, classify_waveform

KWS12 = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_unknown_",
         "_silence_"]
KEYWORDS = KWS12[:10]


def _explicit_label(word: str) -> str:
    """The KWS-12 mapping written out independently of data.words.label_for."""
    if word == "_silence_":
        return "_silence_"
    return word if word in KEYWORDS else "_unknown_"


def det(label: str, decision: float, onset: float | None = None, score: float = 0.9) -> Detection:
    onset = decision - 0.16 if onset is None else onset
    return Detection(onset, decision + 0.3, label, score, decision)


def truth(label: str, onset: float, offset: float, kind: str = "kw") -> dict:
    return {"onset_s": onset, "offset_s": offset, "label": label, "kind": kind}


def counts(scores, label=None):
    c = scores.micro if label is None else scores.per_keyword[label]
    return c.tp, c.fp, c.fn


# ---------------------------------------------------------------------------------------------
# match_events by hand
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t, hit", [(0.9, True), (2.25, True), (1.2, True),
                                    (0.89, False), (2.26, False)])
def test_match_window_boundaries(t, hit):
    s = match_events([det("yes", t)], [truth("yes", 1.0, 1.5)], KEYWORDS, 60.0)
    assert counts(s) == ((1, 0, 0) if hit else (0, 1, 1))
    if hit:
        assert s.latencies_s["yes"] == [pytest.approx(t - 1.5)]


def test_one_to_one_and_wrong_label():
    s = match_events([det("yes", 1.2), det("yes", 1.4)], [truth("yes", 1.0, 1.5)], KEYWORDS, 60)
    assert counts(s) == (1, 1, 0)
    assert s.hits[0][0].decision_s == 1.2  # the earlier detection takes the event
    s = match_events([det("no", 1.2)], [truth("yes", 1.0, 1.5)], KEYWORDS, 60)
    assert counts(s, "no") == (0, 1, 0) and counts(s, "yes") == (0, 0, 1)


def test_greedy_in_time_order_takes_earliest_event():
    gt = [truth("go", 1.0, 1.4), truth("go", 1.8, 2.2)]
    # 1.9 lies in both windows: it takes the first event; 2.5 then takes the second.
    s = match_events([det("go", 2.5), det("go", 1.9)], gt, KEYWORDS, 60)
    assert counts(s) == (2, 0, 0)
    assert s.latencies_s["go"] == pytest.approx([1.9 - 1.4, 2.5 - 2.2])


def test_non_keywords_ignored_and_plain_events_use_onset():
    gt = [truth("yes", 1.0, 1.5), truth("_unknown_", 3.0, 3.5, "unk"), truth("cat", 5, 6, "env"),
          truth("go", 7.0, 7.5, "env")]  # a keyword-named env sound is not a keyword event
    dets = [det("_unknown_", 3.2), det("_silence_", 9.0),
            Event(onset_s=0.95, offset_s=1.4, label="yes", score=0.8)]
    s = match_events(dets, gt, KEYWORDS, 60)
    assert counts(s) == (1, 0, 0)
    assert s.latencies_s["yes"] == [pytest.approx(0.95 - 1.5)]


def test_false_alarms_per_hour_and_scores():
    dets = [det("up", 10.0), det("up", 20.0), det("down", 30.0), det("yes", 1.1)]
    s = match_events(dets, [truth("yes", 1.0, 1.5), truth("left", 40, 40.5)], KEYWORDS, 1800.0)
    assert counts(s) == (1, 3, 1)
    assert s.false_alarms_per_hour == pytest.approx(3 / 0.5)
    m = s.micro
    assert (m.precision, m.recall, m.f1) == pytest.approx((0.25, 0.5, 2 / (2 + 3 + 1)))
    assert s.per_keyword["right"].precision is None and s.per_keyword["right"].f1 is None
    d = s.to_dict()
    assert d["micro"]["fp"] == 3 and d["false_alarms_per_hour"] == pytest.approx(6.0)
    json.dumps(d)
    both = s + s
    assert counts(both) == (2, 6, 2) and both.false_alarms_per_hour == pytest.approx(6.0)


def test_latency_median_p90_match_numpy():
    rng = np.random.default_rng(0)
    onsets = np.arange(11) * 5.0 + 1.0
    gt = [truth("stop", o, o + 0.4) for o in onsets]
    decisions = onsets + rng.uniform(0.0, 1.1, size=onsets.size)
    s = match_events([det("stop", float(t)) for t in decisions], gt, KEYWORDS, 100.0)
    assert counts(s) == (11, 0, 0)
    expected = decisions - (onsets + 0.4)
    assert s.latency["median_s"] == pytest.approx(np.median(expected))
    assert s.latency["p90_s"] == pytest.approx(np.percentile(expected, 90))


def test_match_errors():
    with pytest.raises(ConfigError, match="duration_s"):
        match_events([], [], KEYWORDS, 0.0)
    with pytest.raises(EventInputError, match="offset_s"):
        match_events([], [{"onset_s": 1.0, "label": "yes"}], KEYWORDS, 10.0)


# ---------------------------------------------------------------------------------------------
# Decision times
# ---------------------------------------------------------------------------------------------

def test_decision_time_is_t_end_of_first_frame_over_threshold():
    times = [[0.5 * i, 0.5 * (i + 1)] for i in range(8)]
    p = [0.1, 0.7, 0.8, 0.1, 0.1, 0.9, 0.1, 0.1]
    probs = [[x, 1 - x] for x in p]
    dets = track_events(times, probs, ["a", "b"], EventConfig(on_threshold=0.6, classes=["a"]))
    assert [(d.onset_s, d.offset_s, d.decision_s) for d in dets] == [(0.5, 1.5, 1.0),
                                                                    (2.5, 3.0, 3.0)]
    # min duration 1.0 s: the first event is decided once 1.0 s of it is known, the second dropped
    cfg = EventConfig(on_threshold=0.6, classes=["a"], min_duration_s=1.0)
    dets = track_events(times, probs, ["a", "b"], cfg)
    assert [(d.onset_s, d.decision_s) for d in dets] == [(0.5, 1.5)]
    assert [Event(d.onset_s, d.offset_s, d.label, d.score) for d in dets] == \
        detect_events(times, probs, ["a", "b"], cfg)


def test_decision_tracker_announces_once_and_merges_keep_first_decision():
    cfg = EventConfig(on_threshold=0.5, max_gap_s=0.6)
    tr = DecisionTracker(["a"], cfg)
    seen = []
    for i, x in enumerate([0.9, 0.9, 0.1, 0.9, 0.1, 0.1, 0.1]):
        ann, fin = tr.update(0.5 * i, 0.5 * (i + 1), [x])
        seen.append((ann, fin))
    announced = [a for ann, _ in seen for a in ann]
    assert [(a.onset_s, a.decision_s) for a in announced] == [(0.0, 0.5)]
    final = [d for _, fin in seen for d in fin] + tr.flush()[1]
    assert [(d.onset_s, d.offset_s, d.decision_s) for d in final] == [(0.0, 2.0, 0.5)]


# ---------------------------------------------------------------------------------------------
# Streaming vs offline on a small random model
# ---------------------------------------------------------------------------------------------

def _model(mixer: str) -> AudioMamba:
    torch.manual_seed(7)
    model = AudioMamba(streaming_config(embed_dim=32, depth=2, mixer=mixer, num_classes=12,
                                        labels=KWS12, output_activation="softmax"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.head.weight.mul_(150.0)  # peaky softmax so that events happen
    return model.eval()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {m: save_model(_model(m), root / m) for m in ("none", "v1")}


def _stream_audio(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    x = 0.01 * rng.standard_normal(n)
    t = np.arange(n) / 16000
    for start in np.arange(0.5, seconds - 0.6, 1.3):
        m = (t >= start) & (t < start + 0.4)
        x[m] += 0.3 * np.sin(2 * np.pi * rng.uniform(200, 3000) * t[m])
    return (np.clip(x, -1, 1) * 32767).astype(np.int16)


@pytest.fixture(scope="module")
def stream_wav(tmp_path_factory):
    d = tmp_path_factory.mktemp("streams")
    sf.write(d / "stream_000.wav", _stream_audio(6.0, 1), 16000, subtype="PCM_16")
    (d / "stream_000.csv").write_text(
        "onset_s,offset_s,label,kind,snr_db,source,word\n"
        "0.500,0.900,yes,kw,10.0,a.wav|espeak,yes\n"
        "1.800,2.200,_unknown_,unk,5.0,b.wav|pico,cat\n"
        "3.100,3.500,go,kw,8.0,c.wav|flite,go\n"
        "4.400,4.800,dog,env,3.0,dog.ogg,\n")
    return d / "stream_000.wav"


def _threshold(probs: np.ndarray) -> float:
    """An on-threshold in the widest gap of the top keyword probabilities (robust to 1e-5)."""
    top = np.sort(np.unique(np.round(probs[:, :10].max(1), 4)))
    top = top[top > 0.15]
    i = int(np.argmax(np.diff(top)))
    return float((top[i] + top[i + 1]) / 2)


@pytest.mark.parametrize("readout", ["window", "columns"])
@pytest.mark.parametrize("W", [None, 3])
def test_forward_only_model_streaming_equals_offline(model_dirs, stream_wav, readout, W):
    """Mixer 'none' has no backward direction: streaming = whole-file offline for every W (P3),
    so the scores and the events (same tracker) agree."""
    model = load_model(model_dirs["none"])
    off = stream_events_offline(model, stream_wav, None, window_columns=W, readout=readout)
    cfg = EventConfig(on_threshold=_threshold(off.probs), classes=KEYWORDS)
    off = stream_events_offline(model, stream_wav, cfg, window_columns=W, readout=readout)
    st = stream_events_streaming(model, stream_wav, W, cfg, readout=readout, chunk_samples=1234)
    np.testing.assert_allclose(st.times, off.times, atol=1e-9)
    np.testing.assert_array_equal(off.times, column_frame_times(off.times.shape[0]))
    np.testing.assert_allclose(st.probs, off.probs, atol=1e-5)
    assert len(off.detections) >= 1
    key = lambda d: (d.onset_s, d.offset_s, d.label, d.decision_s)  # noqa: E731
    assert [key(d) for d in st.detections] == [key(d) for d in off.detections]
    np.testing.assert_allclose([d.score for d in st.detections],
                               [d.score for d in off.detections], atol=1e-5)
    assert [Event(d.onset_s, d.offset_s, d.label, d.score) for d in off.detections] == \
        detect_events(off.times, off.probs, model.labels, cfg)


def test_bidirectional_model_agrees_at_last_hop_for_unbounded_window(model_dirs, stream_wav):
    """For v1 the offline pass sees the future, so only the last hop of W=None (the whole file
    in both) must agree; events run on the same frames."""
    model = load_model(model_dirs["v1"])
    cfg = EventConfig(on_threshold=0.5, classes=KEYWORDS)
    st = stream_events_streaming(model, stream_wav, None, cfg)
    off = stream_events_offline(model, stream_wav, cfg, window_columns=None)
    np.testing.assert_allclose(st.times, off.times)
    np.testing.assert_allclose(st.probs[-1], off.probs[-1], atol=1e-5)
    wave = torch.from_numpy(sf.read(stream_wav, dtype="float32")[0])
    logits = offline_column_logits(model, wave)
    assert logits.shape == (off.probs.shape[0], 12)
    whole = classify_file(model, stream_wav)
    np.testing.assert_allclose(logits.mean(0), whole.logits, atol=1e-5)


def test_evaluate_streams(model_dirs, stream_wav):
    model = load_model(model_dirs["v1"])
    res = evaluate_streams(model, stream_wav.parent, 6, EventConfig(on_threshold=0.3))
    assert res["streams"] == ["stream_000"] and res["keywords"] == KEYWORDS
    assert res["duration_s"] == pytest.approx(6.0)
    for mode in ("streaming", "offline"):
        m = res["modes"][mode]["micro"]
        assert m["tp"] + m["fn"] == 2  # two keyword events in the truth
        assert res["per_stream"]["stream_000"][mode] == {k: m[k] for k in ("tp", "fp", "fn")}
    json.dumps(res)
    with pytest.raises(EventInputError, match="stream_"):
        evaluate_streams(model, stream_wav.parent / "nowhere", 6)


# ---------------------------------------------------------------------------------------------
# DET curve over the on-threshold
# ---------------------------------------------------------------------------------------------

DET_GRID = [round(0.05 * i, 2) for i in range(1, 20)]  # 0.05 .. 0.95


@pytest.fixture(scope="module")
def det_streams(model_dirs, stream_wav, tmp_path_factory):
    """Two streams: the fixture stream, and the same audio with a truth CSV built from the v1
    model's own offline detections (so that hits, false alarms and misses all occur)."""
    d = tmp_path_factory.mktemp("det_streams")
    for name in ("stream_000", "stream_001"):
        (d / f"{name}.wav").write_bytes(stream_wav.read_bytes())
    (d / "stream_000.csv").write_text(stream_wav.with_suffix(".csv").read_text())
    model = load_model(model_dirs["v1"])
    cfg = EventConfig(on_threshold=0.3, classes=KEYWORDS)
    dets = stream_events_offline(model, stream_wav, cfg, window_columns=6).detections
    assert len(dets) >= 3
    rows = [f"{d.onset_s:.3f},{d.onset_s + 0.3:.3f},{d.label},kw,0,x.wav,{d.label}"
            for d in dets[:2]]  # two hits at threshold 0.3; the rest are false alarms
    rows.append("5.500,5.900,stop,kw,0,y.wav,stop")  # never detected as 'stop' near there
    (d / "stream_001.csv").write_text("onset_s,offset_s,label,kind,snr_db,source,word\n"
                                      + "\n".join(rows) + "\n")
    return d


@pytest.mark.parametrize("cfg", [EventConfig(on_threshold=0.3),
                                 EventConfig(on_threshold=0.3, off_threshold=0.2, max_gap_s=0.2,
                                             min_duration_s=0.1)])
def test_det_row_at_base_threshold_equals_evaluate_streams(model_dirs, det_streams, monkeypatch,
                                                           cfg):
    model = load_model(model_dirs["v1"])
    calls = []
    for name in ("stream_events_streaming", "stream_events_offline"):
        real = getattr(evaluation, name)
        monkeypatch.setattr(evaluation, name,
                            lambda *a, _real=real, _n=name, **k: calls.append(_n) or _real(*a, **k))
    grid = [0.1, 0.3, 0.6, 0.9]
    res = evaluate_streams(model, det_streams, 6, cfg, det_thresholds=grid)
    assert sorted(calls) == ["stream_events_offline"] * 2 + ["stream_events_streaming"] * 2
    assert set(res["det"]) == {"streaming", "offline"}
    for mode, rows in res["det"].items():
        assert [r["threshold"] for r in rows] == grid
        micro = res["modes"][mode]["micro"]
        base = rows[1]
        assert (base["tp"], base["fp"], base["fn"]) == (micro["tp"], micro["fp"], micro["fn"])
        assert base["f1"] == pytest.approx(micro["f1"])
        assert base["false_alarms_per_hour"] == pytest.approx(
            res["modes"][mode]["false_alarms_per_hour"])
        for r in rows:
            assert r["tp"] + r["fn"] == 2 + 3  # true keyword events: 2 + 3 over both streams
            assert r["miss_rate"] == pytest.approx(r["fn"] / 5)
            assert r["false_alarms_per_hour"] == pytest.approx(r["fp"] / (12.0 / 3600))
    off = res["det"]["offline"][1]
    assert off["tp"] >= 1 and off["fp"] >= 1 and off["fn"] >= 1  # a non-trivial check
    json.dumps(res, allow_nan=False)


def test_det_detections_never_increase_with_threshold(model_dirs, stream_wav):
    """With a fixed off threshold (hysteresis) every event at a higher on-threshold lies in its
    own event at a lower one, so TP + FP cannot grow along the grid (per stream)."""
    model = load_model(model_dirs["v1"])
    truth_rows = evaluation.read_truth_csv(stream_wav.with_suffix(".csv"))
    base = EventConfig(on_threshold=0.5, off_threshold=0.05)
    for res in (stream_events_offline(model, stream_wav, None, window_columns=6),
                stream_events_streaming(model, stream_wav, 6)):
        rows = det_curve([(res, truth_rows, 6.0)], model.labels, KEYWORDS, DET_GRID, base)
        n = [r["tp"] + r["fp"] for r in rows]
        assert all(a >= b for a, b in zip(n, n[1:])), n
        assert n[0] > n[-1]  # the sweep does change something
        # each row is exactly track_events + match_events at that threshold
        for r in rows[::6]:
            cfg = EventConfig(on_threshold=r["threshold"], off_threshold=0.05, classes=KEYWORDS)
            s = match_events(track_events(res.times, res.probs, model.labels, cfg), truth_rows,
                             KEYWORDS, 6.0)
            assert (r["tp"], r["fp"], r["fn"]) == counts(s)


def test_det_curve_by_hand_off_threshold_and_errors():
    """A dip to 0.55 inside an 'a' event: off = on (None) splits it at 0.6 (so detections are
    not monotone without hysteresis); a fixed off threshold 0.5 keeps one event, and is capped
    at thresholds below it."""
    times = column_frame_times(6)
    a = np.array([0.1, 0.7, 0.55, 0.7, 0.1, 0.1])
    res = StreamDetections([], times, np.stack([a, 1 - a], axis=1))
    run = [(res, [truth("a", 0.0, 0.5)], 10.0)]
    rows = det_curve(run, ["a", "b"], ["a"], [0.5, 0.6, 0.8])
    assert [(r["tp"], r["fp"], r["fn"]) for r in rows] == [(1, 0, 0), (1, 1, 0), (0, 0, 1)]
    assert rows[1]["precision"] == 0.5 and rows[1]["false_alarms_per_hour"] == pytest.approx(360)
    assert rows[2]["miss_rate"] == 1.0 and rows[2]["f1"] == 0.0 and rows[2]["precision"] is None
    hyst = EventConfig(on_threshold=0.9, off_threshold=0.5)
    rows = det_curve(run, ["a", "b"], ["a"], [0.3, 0.6], hyst)
    assert [(r["tp"], r["fp"]) for r in rows] == [(1, 0), (1, 0)]
    assert [c.off_threshold for c in det_event_configs([0.3, 0.6], ["a"], hyst)] == [0.3, 0.5]
    assert det_curve(run, ["a", "b"], ["a"], [0.5], None)[0]["miss_rate"] == 0.0
    no_truth = det_curve([(res, [], 10.0)], ["a", "b"], ["a"], [0.5])[0]
    assert no_truth["miss_rate"] is None and no_truth["recall"] is None
    for bad in ([], [1.5], "0.5"):
        with pytest.raises(ConfigError):
            det_curve(run, ["a", "b"], ["a"], bad)
    with pytest.raises(ConfigError, match="runs"):
        det_curve([(res, [])], ["a", "b"], ["a"], [0.5])


# ---------------------------------------------------------------------------------------------
# Clip accuracy
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    (d / "wav").mkdir()
    rng = np.random.default_rng(3)
    words = ["yes", "no", "cat", "_silence_", "go", "up", "house", "stop"]
    rows = []
    for i, w in enumerate(words):
        n = 16000 if i != 5 else 17600  # one longer clip: another batch shape
        x = (0.2 * rng.standard_normal(n) * 32767 / 4).astype(np.int16)
        rel = f"wav/clip_{i}.wav"
        sf.write(d / rel, x, 16000, subtype="PCM_16")
        rows.append({"path": rel, "split": "val" if i % 2 else "test_voice", "word": w,
                     "voice_id": f"v{i}", "engine": "espeak-ng", "onset_s": 0.2, "speech_s": 0.5})
    (d / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d, rows


def test_clip_accuracy_equals_per_file_loop(model_dirs, clip_dir):
    d, rows = clip_dir
    model = load_model(model_dirs["v1"])
    res = clip_accuracy(model, d, ["val", "test_voice", "test_engine"], "kws12", batch_size=2)
    for split in ("val", "test_voice"):
        chosen = [r for r in rows if r["split"] == split]
        conf = np.zeros((12, 12), dtype=int)
        for r in chosen:
            # clips are scored with the fixed evaluation floor (their digital-zero padding is
            # a generator artefact): the same white noise, written out independently here
            x = load_audio(d / r["path"]).numpy()
            rng = np.random.default_rng(zlib.crc32(Path(r["path"]).name.encode()))
            floor = rng.standard_normal(len(x)) * 10 ** (-60 / 20)
            wave = torch.from_numpy((x + floor).astype(np.float32))
            pred = int(classify_waveform(model, wave).probs.argmax())
            conf[KWS12.index(_explicit_label(r["word"])), pred] += 1
        assert res[split]["confusion"] == conf.tolist()
        assert res[split]["n"] == len(chosen)
        assert res[split]["accuracy"] == pytest.approx(np.trace(conf) / len(chosen))
        assert sum(c["n"] for c in res[split]["per_class"].values()) == len(chosen)
    assert res["test_engine"]["n"] == 0 and res["test_engine"]["accuracy"] is None
    json.dumps(res)
    with pytest.raises(ConfigError, match="splits"):
        clip_accuracy(model, d, ["tset"], "kws12")


# ---------------------------------------------------------------------------------------------
# aum eval
# ---------------------------------------------------------------------------------------------

def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aum")
    sub = parser.add_subparsers(dest="command")
    eval_cli.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (AuMError, FileExistsError) as exc:
        print(f"aum: error: {exc}", file=sys.stderr)
        return 2


def test_eval_cli(capsys, model_dirs, clip_dir, stream_wav, tmp_path):
    out = tmp_path / "res.json"
    argv = ["eval", "--model", str(model_dirs["v1"]), "--clips", str(clip_dir[0]),
            "--splits", "val", "test_voice", "--streams", str(stream_wav.parent),
            "--window-s", "0.96", "--threshold", "0.3", "--json", str(out)]
    assert run_cli(argv) == 0
    text = capsys.readouterr().out
    assert "test_voice" in text and "FA/h" in text and "offline" in text and "streaming" in text
    res = json.loads(out.read_text())
    assert set(res["clips"]) == {"val", "test_voice"}
    assert res["streams"]["window_columns"] == 6
    assert res["streams"]["modes"]["streaming"]["micro"]["tp"] + \
        res["streams"]["modes"]["streaming"]["micro"]["fn"] == 2
    before = out.read_text()
    assert run_cli(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_text() == before
    assert run_cli(argv[:7] + ["--json", str(out), "--overwrite"]) == 0


def test_eval_cli_det(capsys, model_dirs, stream_wav, tmp_path):
    out = tmp_path / "det.json"
    base = ["eval", "--model", str(model_dirs["v1"]), "--streams", str(stream_wav.parent),
            "--window-s", "0.96", "--threshold", "0.3"]
    assert run_cli(base + ["--modes", "streaming", "--det", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "DET curve, streaming" in text and "miss %" in text and "offline" not in text
    assert text.index("lat med s") < text.index("DET curve")  # after the stream table
    res = json.loads(out.read_text())["streams"]
    rows = res["det"]["streaming"]
    assert [r["threshold"] for r in rows] == list(eval_cli.DEFAULT_DET_THRESHOLDS)
    at_base = next(r for r in rows if r["threshold"] == 0.3)
    micro = res["modes"]["streaming"]["micro"]
    assert [at_base[k] for k in ("tp", "fp", "fn")] == [micro[k] for k in ("tp", "fp", "fn")]
    table = text[text.index("DET curve, streaming"):].split("\n\n")[0].splitlines()
    assert table[1].split() == ["threshold", "FA/h", "miss", "%", "F1", "%"]
    assert table[2].split()[:2] == ["0.3", f"{rows[0]['false_alarms_per_hour']:.1f}"]
    assert len(table) == 2 + len(rows)

    assert run_cli(base + ["--modes", "offline", "--det", "0.2, 0.7"]) == 0
    text = capsys.readouterr().out
    assert "DET curve, offline" in text and "DET curve, streaming" not in text
    with pytest.raises(SystemExit):
        run_cli(base + ["--det", "0.2,abc"])
    assert "comma-separated" in capsys.readouterr().err
    assert run_cli(["eval", "--model", str(model_dirs["v1"]), "--clips", "x", "--det"]) == 2
    assert "--streams" in capsys.readouterr().err


def test_eval_cli_errors(capsys, monkeypatch, model_dirs):
    assert run_cli(["eval", "--model", str(model_dirs["v1"])]) == 2
    assert "--clips" in capsys.readouterr().err

    def load_model_needing_path(path):  # an install without a shipped default model
        raise AssertionError("not reached")

    monkeypatch.setattr("streaming_aum.loading.load_model", load_model_needing_path)
    assert run_cli(["eval", "--clips", "x"]) == 2
    assert "--model" in capsys.readouterr().err
