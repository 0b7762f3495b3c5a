"""Long labelled streams: exact ground truth, SNRs, determinism, files and the CLI refusal."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streaming_aum.audio_constants import SAMPLE_RATE
from streaming_aum.data import background_cli, streams_cli
from streaming_aum.data.background import BackgroundBank, EventBank
from streaming_aum.data.noise import colored_noise
from streaming_aum.data.streams import (
    TRUTH_COLUMNS, ClipPool, active_span, build_stream, build_stream_parts, generate_streams,
    read_truth_csv, write_stream)
from streaming_aum.data.words import COMMANDS10, SILENCE, UNKNOWN
from streaming_aum.errors import ConfigError, EventInputError

SR = SAMPLE_RATE
WORDS = ["yes", "no", "up", "stop", "bed", "cat", "house", SILENCE]


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake keyword clip dir in the keywords.py format: tone bursts stand in for words."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    rows = []
    for split in ("train", "test_voice"):
        (root / split).mkdir()
        for i in range(24):
            word = WORDS[i % len(WORDS)]
            y = np.zeros(SR, np.float32)
            length = int(rng.uniform(0.25, 0.6) * SR)
            onset = int(rng.integers(0, SR - length))
            if word != SILENCE:
                t = np.arange(length) / SR
                f0 = 150.0 + 40.0 * WORDS.index(word)
                y[onset:onset + length] = (0.5 * np.sin(2 * np.pi * f0 * t) * np.hanning(length))
            path = f"{split}/{word}_{i:03d}.wav"
            sf.write(root / path, y, SR, subtype="PCM_16")
            rows.append({"path": path, "split": split, "word": word, "voice_id": f"fake/v{i % 3}",
                         "engine": "fake", "onset_s": onset / SR, "speech_s": length / SR,
                         "rate": 1.0, "pitch": 0.5, "tempo": 1.0, "cents": 0.0, "seed": i})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _banks() -> tuple[BackgroundBank, EventBank]:
    rng = np.random.default_rng(1)
    amb = [colored_noise(3 * SR, "pink", rng), np.sin(np.arange(int(2.5 * SR)) * 0.03)]
    bark = np.zeros(SR // 2, np.float32)
    bark[800:5000] = rng.standard_normal(4200) * np.hanning(4200)
    return (BackgroundBank([a.astype(np.float32) for a in amb], ["amb0", "amb1"], "test"),
            EventBank([bark], ["dog"], ["pkg/dog.ogg"], "test", p_procedural=0.5))


# --------------------------------------------------------------------------------------------


def test_active_span_keeps_frames_within_35_db() -> None:
    x = np.zeros(SR)
    x[3200:8000] = 1.0  # loud part: frames 20..49
    x[8000:9600] = 10 ** (-30 / 20)  # -30 dB: inside the span
    x[9600:12800] = 10 ** (-40 / 20)  # -40 dB: outside
    assert active_span(x) == (3200, 9600)
    assert active_span(np.zeros(100)) == (0, 0)
    y = np.zeros(1000)
    y[995:] = 1.0  # a partial last frame counts as a whole frame
    assert active_span(y) == (960, 1120)


def test_stream_truth_is_sorted_disjoint_and_holds_the_events(clips_dir: Path) -> None:
    backgrounds, events_bank = _banks()
    parts = build_stream_parts(clips_dir, "test_voice", 40.0, np.random.default_rng(5),
                               backgrounds, events_bank)
    n = 40 * SR
    assert parts.bed.shape == parts.events.shape == (n,)
    rows = parts.rows
    assert len(rows) >= 6
    assert {r["kind"] for r in rows} == {"kw", "unk", "env"}  # every branch below is checked
    assert {r["label"] for r in rows if r["kind"] == "env"} & {"dog"}  # the recorded event too
    inside = np.zeros(n, dtype=bool)
    prev_end = 0.0
    for r in rows:
        on, off = r["onset_s"], r["offset_s"]
        assert prev_end + 0.4 - 1e-9 <= on < off <= 40.0  # sorted, >= 0.4 s apart, in range
        prev_end = off
        assert abs(on * 100 - round(on * 100)) < 1e-9 and abs(off * 100 - round(off * 100)) < 1e-9
        s, e = int(round(on * SR)), int(round(off * SR))
        inside[s:e] = True
        ev = parts.events[s:e].astype(np.float64)
        # the first and last 10 ms frames are active (within 35 dB of the loudest frame)
        frames = np.mean(ev.reshape(-1, 160) ** 2, axis=1)
        assert frames[0] >= frames.max() * 10 ** -3.5 and frames[-1] >= frames.max() * 10 ** -3.5
        # SNR against the bed in the span +-1 s
        ctx = parts.bed[max(0, s - SR):min(n, e + SR)].astype(np.float64)
        snr = 10 * math.log10(np.mean(ev ** 2) / np.mean(ctx ** 2))
        assert abs(snr - r["snr_db"]) < 0.5 and 0.0 <= r["snr_db"] <= 20.0
        if r["kind"] == "kw":
            assert r["label"] == r["word"] and r["word"] in COMMANDS10
            assert r["source"].startswith("test_voice/") and "|fake/v" in r["source"]
        elif r["kind"] == "unk":
            assert r["label"] == UNKNOWN and r["word"] not in COMMANDS10 + [SILENCE]
        else:
            assert r["word"] == "" and r["label"] in {"dog", "siren", "alarm_beep", "car_horn",
                                                      "clock_tick", "door_knock", "engine_idle"}
    assert np.all(parts.events[~inside] == 0.0)  # no event energy outside the truth rows


def test_stream_is_bed_plus_events_peak_limited(clips_dir: Path) -> None:
    backgrounds, events_bank = _banks()
    args = (clips_dir, "test_voice", 30.0)
    parts = build_stream_parts(*args, np.random.default_rng(9), backgrounds, events_bank)
    wave, rows = build_stream(*args, np.random.default_rng(9), backgrounds, events_bank)
    assert wave.dtype == np.float32 and wave.shape == (30 * SR,) and rows == parts.rows
    mix = parts.bed.astype(np.float64) + parts.events
    k = min(1.0, 0.99 / np.max(np.abs(mix)))
    np.testing.assert_allclose(wave, mix * k, atol=1e-6)
    assert np.max(np.abs(wave)) <= 0.99 + 1e-6
    # stream minus the bed recovers the events inside each span
    for r in rows:
        s, e = int(round(r["onset_s"] * SR)), int(round(r["offset_s"] * SR))
        np.testing.assert_allclose(wave[s:e] - k * parts.bed[s:e], k * parts.events[s:e],
                                   atol=1e-5)


def test_loud_events_are_peak_limited_and_bed_level_is_in_range(clips_dir: Path) -> None:
    wave, _ = build_stream(clips_dir, "test_voice", 20.0, np.random.default_rng(2),
                           snr_db=(45.0, 45.0))
    assert abs(float(np.max(np.abs(wave))) - 0.99) < 1e-6
    parts = build_stream_parts(clips_dir, "test_voice", 20.0, np.random.default_rng(2))
    level = 20 * math.log10(math.sqrt(np.mean(parts.bed.astype(np.float64) ** 2)))
    assert -40.001 <= level <= -29.999


def test_stream_is_deterministic_per_seed(clips_dir: Path) -> None:
    backgrounds, events_bank = _banks()
    a = build_stream(clips_dir, "train", 20.0, np.random.default_rng(4), backgrounds, events_bank)
    b = build_stream(clips_dir, "train", 20.0, np.random.default_rng(4), backgrounds, events_bank)
    c = build_stream(clips_dir, "train", 20.0, np.random.default_rng(5), backgrounds, events_bank)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(a[0], c[0])
    assert all(r["source"].startswith("train/") for r in a[1] if r["kind"] != "env")


def test_unit_rir_leaves_the_stream_unchanged(clips_dir: Path) -> None:
    dry, _ = build_stream(clips_dir, "test_voice", 10.0, np.random.default_rng(1))
    wet, _ = build_stream(clips_dir, "test_voice", 10.0, np.random.default_rng(1),
                          rir=np.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(wet, dry, atol=1e-5)


def test_clip_pool_errors_name_the_problem(clips_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no manifest.jsonl"):
        ClipPool.load(tmp_path, "test_voice")
    with pytest.raises(ConfigError, match="it has: test_voice, train"):
        ClipPool.load(clips_dir, "test_engine")
    with pytest.raises(ConfigError, match="no clip of the keywords"):
        ClipPool.load(clips_dir, "train", keywords=["zebra"])
    pool = ClipPool.load(clips_dir, "train")
    assert {r["word"] for r in pool.kw_rows} == {"yes", "no", "up", "stop"}
    assert {r["word"] for r in pool.unk_rows} == {"bed", "cat", "house"}  # never _silence_


def test_write_and_read_truth_round_trip(tmp_path: Path) -> None:
    rows = [{"onset_s": 0.5, "offset_s": 0.87, "label": "yes", "kind": "kw", "snr_db": 3.25,
             "source": "a.wav|v", "word": "yes"},
            {"onset_s": 2.0, "offset_s": 3.5, "label": "dog", "kind": "env", "snr_db": 12.0,
             "source": "pkg/dog.ogg", "word": ""}]
    wave = np.linspace(-0.5, 0.5, SR).astype(np.float32)
    wav, csv_path = write_stream(wave, rows, tmp_path / "s" / "stream_007")
    info = sf.info(str(wav))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (SR, 1, "PCM_16", SR)
    assert csv_path.read_text().splitlines()[0] == ",".join(TRUTH_COLUMNS)
    assert read_truth_csv(csv_path) == rows
    (tmp_path / "bad.csv").write_text("start,end\n1,2\n")
    with pytest.raises(EventInputError, match="lacks the columns"):
        read_truth_csv(tmp_path / "bad.csv")
    (tmp_path / "rev.csv").write_text("onset_s,offset_s,label,kind\n2,1,x,kw\n")
    with pytest.raises(EventInputError, match="onset_s <= offset_s"):
        read_truth_csv(tmp_path / "rev.csv")


def test_generate_streams_writes_files_and_refuses_to_overwrite(clips_dir: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "streams"
    info = generate_streams(clips_dir, out, "test_voice", 2, 12.0, seed=3)
    assert sorted(p.name for p in out.iterdir()) == [
        "stream_000.csv", "stream_000.wav", "stream_001.csv", "stream_001.wav", "streams.json"]
    saved = json.loads((out / "streams.json").read_text())
    assert saved["seed"] == 3 and saved["count"] == 2 and saved == info
    truth = read_truth_csv(out / "stream_000.csv")
    assert len(truth) == info["streams"][0]["events"] > 0
    wav0 = (out / "stream_000.wav").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate_streams(clips_dir, out, "test_voice", 1, 12.0, seed=4)
    assert (out / "stream_000.wav").read_bytes() == wav0  # untouched
    # stream i depends on (seed, i) only: one stream with the same seed is byte-identical
    generate_streams(clips_dir, out, "test_voice", 1, 12.0, seed=3, overwrite=True)
    assert (out / "stream_000.wav").read_bytes() == wav0
    assert not (out / "stream_001.wav").exists()  # the old set was replaced, not mixed
    with pytest.raises(ConfigError, match="reverb needs a RIR bank"):
        generate_streams(clips_dir, tmp_path / "r", "test_voice", 1, 5.0, 0, reverb=True)


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aum")
    sub = parser.add_subparsers(dest="command")
    data_sub = sub.add_parser("data").add_subparsers(dest="data_command")
    background_cli.add_parser(data_sub)
    streams_cli.add_parser(data_sub)
    return parser.parse_args(argv)


def test_streams_cli_runs_and_refuses_existing_output(clips_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    argv = ["data", "streams", "--clips", str(clips_dir), "--out", str(tmp_path / "o"),
            "--split", "test_voice", "--count", "1", "--minutes", "0.2", "--snr", "5", "10",
            "--seed", "3"]
    args = _cli(argv)
    assert (args.count, args.minutes, tuple(args.snr), args.overwrite) == (1, 0.2, (5.0, 10.0),
                                                                           False)
    assert args.func(args) == 0
    assert "wrote 1 streams" in capsys.readouterr().out
    rows = read_truth_csv(tmp_path / "o" / "stream_000.csv")
    assert all(5.0 <= r["snr_db"] <= 10.0 for r in rows)
    with pytest.raises(FileExistsError):
        args.func(_cli(argv))
    assert args.func(_cli(argv + ["--overwrite"])) == 0


def test_background_cli_parses_and_builds_rirs(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    args = _cli(["data", "background", "--cache", str(tmp_path), "--rirs", "0",
                 "--packages", "minetest-data"])
    assert args.packages == ["minetest-data"] and args.rirs == 0 and callable(args.func)
    args = _cli(["data", "rirs", "--cache", str(tmp_path), "--count", "3", "--workers", "1"])
    assert args.func(args) == 0
    assert "rirs: 3 in" in capsys.readouterr().out
    assert (tmp_path / "rirs_train.npy").exists()
