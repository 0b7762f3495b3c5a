"""``aum bench streaming``: the JSON record of one small run, and the P4 harness's exactness.

A depth-1, 32-wide random model and a few hops keep it well under a minute; the full benchmark
of the shipped model (the bare command) and of the random AuM-tiny (``--model random``) and
their figures are in BENCHMARKS.md. The
``--model`` / ``--p4-audio`` tests use a tiny saved keyword model with its own event settings
and short generated wavs (the long validation streams are generated data, not in the repo).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from streaming_aum.bench import streaming
from streaming_aum.cli import main
from streaming_aum.config import streaming_config
from streaming_aum.errors import ConfigError
from streaming_aum.loading import save_model
from streaming_aum.model import AudioMamba

KWS12 = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_unknown_",
         "_silence_"]
EVENTS = {"on_threshold": {"default": 0.3, "yes": 0.35}, "off_threshold": None,
          "min_duration_s": 0.0, "cooldown_s": 0.16}

SMALL = ["--depth", "1", "--embed-dim", "32", "--hops", "5", "--soak-s", "5", "--p4-s", "3"]


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_window_and_hop_arithmetic() -> None:
    assert [streaming.window_columns(w) for w in (0.5, 1, 2, 4)] == [3, 6, 12, 25]
    assert streaming.window_columns(0.01) == 1
    assert streaming.HOP_S == pytest.approx(0.16)
    assert streaming.hops_in(0.1) == 0
    assert streaming.hops_in(0.175) == 1  # 2800 samples complete the first column
    assert streaming.hops_in(3) == 18
    assert streaming.hops_in(3600) == 22499  # the last column needs 240 more samples
    # The stream serves 2800 samples, then 2560 per hop, deterministically.
    a, b = streaming.SynthStream(), streaming.SynthStream()
    sizes = [a.next_chunk().shape[0] for _ in range(3)]
    assert sizes == [2800, 2560, 2560]
    assert bool((b.next_chunk() == streaming.SynthStream().read(2800)).all())
    assert bool((streaming.synth_block(7) == streaming.synth_block(7)).all())


def test_json_record(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "streaming", "--json", *SMALL, "--windows", "0.5,10"])
    out = capsys.readouterr().out
    assert rc == 0
    res = json.loads(out)  # stdout holds only the JSON object
    for key in ("model", "threads", "hop_s", "windows", "hop_ms_p50", "hop_ms_p99",
                "recompute_hop_ms_p50", "recompute_ratio", "rtf", "soak", "p4", "targets"):
        assert key in res, key
    assert res["threads"] == 1
    assert res["hop_s"] == pytest.approx(0.16)
    assert res["model"]["depth"] == 1 and res["model"]["embed_dim"] == 32
    assert res["model"]["num_classes"] == 35
    assert res["model"]["source"] == "random" and "random" in res["model"]["weights"]
    # 1 s is always measured: it carries the headline figures.
    assert [w["window_s"] for w in res["windows"]] == [0.5, 1.0, 10.0]
    for w in res["windows"]:
        assert _positive(w["hop_ms_p50"]) and _positive(w["hop_ms_p99"]) and _positive(w["rtf"])
        assert w["hop_ms_p99"] >= w["hop_ms_p50"]
        assert w["hops"] == 5
        assert w["rtf"] == pytest.approx(w["hop_ms_p50"] / 160, rel=1e-3, abs=1e-5)
    one = res["windows"][1]
    assert res["hop_ms_p50"] == one["hop_ms_p50"] and res["hop_ms_p99"] == one["hop_ms_p99"]
    assert res["rtf"] == one["rtf"]
    assert _positive(res["recompute_hop_ms_p50"]) and _positive(res["recompute_ratio"])
    assert res["recompute_ratio"] == pytest.approx(
        res["recompute_hop_ms_p50"] / res["hop_ms_p50"], rel=1e-2)
    inter = res["interleaved"]  # the second protocol, timed on the same runtimes
    assert inter["recompute_ratio"] == res["recompute_ratio_interleaved"] == pytest.approx(
        inter["recompute_hop_ms_p50"] / inter["hop_ms_p50"], rel=1e-2)
    assert all(_positive(inter[k]) for k in ("hop_ms_p50", "hop_ms_p99", "recompute_hop_ms_p50"))
    assert res["targets"]["recompute_ratio_at_1s_interleaved"]["value"] == inter["recompute_ratio"]

    soak = res["soak"]
    assert soak["hops"] == 31 and 4.9 < soak["audio_s"] <= 5
    for key in ("audio_s", "hop_ms_first", "hop_ms_last", "rss_mb_start", "rss_mb_end"):
        assert _positive(soak[key]), key

    p4 = {e["window_s"]: e for e in res["p4"]}
    assert set(p4) == {0.5, 1.0, 10.0}
    for e in res["p4"]:
        assert e["hops"] == 18
        for fig in (e, e["pool_stream"]):
            assert 0 <= fig["top1_agreement"] <= 1
            assert 0 <= fig["mean_prob_diff"] <= fig["max_prob_diff"] <= 1
    # A window covering the whole 3 s stream must reproduce the unbounded runtime: an exactness
    # check of the harness itself (same audio, same hops, same comparison).
    whole = p4[10.0]
    assert whole["window_columns"] >= whole["hops"]
    assert whole["truncated_hops"] == 0
    assert whole["top1_agreement"] == 1 and whole["max_prob_diff"] == 0
    assert whole["same_span"]["top1_agreement"] == 1 and whole["same_span"]["max_prob_diff"] == 0
    assert whole["pool_stream"]["top1_agreement"] == 1
    assert whole["pool_stream"]["max_prob_diff"] < 1e-4
    assert p4[0.5]["truncated_hops"] == 18 - 3
    # The random model has no event settings: aum eval's plain defaults, over all 35 classes.
    ev = res["p4_setup"]["events"]
    assert ev["config"]["on_threshold"] == 0.5 and len(ev["config"]["classes"]) == 35
    assert "defaults" in ev["settings_from"]
    [stream] = res["p4_setup"]["streams"]
    assert res["p4_setup"]["source"] == "synthetic" and stream["hops"] == 18
    assert stream["reference_events"] > 0  # so the event exactness below can fail
    for fig in (whole, whole["same_span"]):
        e = fig["events"]
        assert e["reference_events"] == stream["reference_events"] == e["events"] == e["tp"]
        assert e["fp"] == e["fn"] == 0 and e["f1"] == 1.0
    # The same-span reference of W = 0.5 s differs from the whole-prefix one.
    assert p4[0.5]["same_span"]["max_prob_diff"] != p4[0.5]["max_prob_diff"]
    assert set(res["targets"]) >= {"recompute_ratio_at_1s", "soak_time_flat", "soak_rss_flat"}


@pytest.mark.parametrize("argv, needle", [
    (["--windows", "one"], "--windows"),
    (["--windows", ""], "--windows"),
    (["--windows", "-1"], "positive"),
    (["--hops", "0"], "--hops"),
    (["--soak-s", "0.01"], "--soak-s"),
])
def test_argument_errors(argv: list[str], needle: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "streaming", "--depth", "1", "--embed-dim", "32", "--hops", "1",
               "--p4-s", "0", *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err


def test_parse_windows() -> None:
    assert streaming.parse_windows("0.5, 1,1,2") == [0.5, 1.0, 2.0]
    with pytest.raises(ConfigError):
        streaming.parse_windows("nan")


# --model and --p4-audio ------------------------------------------------------------------
@pytest.fixture(scope="module")
def kws_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny streaming keyword model with labels and its own event settings (random weights,
    a sharpened head so some keyword crosses its threshold)."""
    torch.manual_seed(3)
    cfg = streaming_config(embed_dim=32, depth=1, mixer="v2", num_classes=12, labels=KWS12,
                           output_activation="softmax",
                           extra={"window_s": 0.96, "events": EVENTS})
    model = AudioMamba(cfg)
    with torch.no_grad():
        model.head.weight.mul_(40.0)
    return save_model(model, tmp_path_factory.mktemp("kws") / "model")


def _tones(seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.01 * rng.standard_normal(t.shape[0])
    for start in np.arange(0.3, seconds - 0.5, 0.9):
        m = (t >= start) & (t < start + 0.4)
        x[m] += 0.3 * np.sin(2 * np.pi * rng.uniform(300, 2500) * t[m])
    return x


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """4 s mono at 16 kHz, and 3 s stereo at 8 kHz (read as mono 16 kHz by load_audio)."""
    d = tmp_path_factory.mktemp("p4audio")
    a, b = d / "a.wav", d / "b.wav"
    sf.write(a, _tones(4.0, 16000, 1).astype(np.float32), 16000)
    x = _tones(3.0, 8000, 2)
    sf.write(b, np.stack([x, 0.5 * x], axis=1).astype(np.float32), 8000)
    return [a, b]


def test_model_and_p4_audio(kws_model: Path, wavs: list[Path],
                            capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "streaming", "--json", "--model", str(kws_model), "--hops", "3",
               "--soak-s", "0", "--windows", "0.32,30", "--p4-audio", *map(str, wavs)])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0
    m = res["model"]
    assert m["source"] == "path" and m["path"] == str(kws_model)
    assert "random" not in m["name"] and str(kws_model) in m["weights"]
    assert (m["embed_dim"], m["depth"], m["mixer"], m["num_classes"]) == (32, 1, "v2", 12)
    assert m["labels"] == KWS12 and m["model_window_s"] == 0.96 and _positive(m["params_m"])
    assert [w["window_s"] for w in res["windows"]] == [0.32, 1.0, 30.0]
    assert _positive(res["recompute_ratio"]) and "soak" not in res

    setup = res["p4_setup"]
    assert setup["source"] == "audio" and setup["cap_s"] is None
    assert setup["model"] == m
    # Each file from the start, whole (no cap): 4 s -> 24 hops, 3 s (8 kHz) -> 18 hops.
    assert [s["stream"] for s in setup["streams"]] == [str(w) for w in wavs]
    assert [s["hops"] for s in setup["streams"]] == [24, 18]
    assert [s["audio_s"] for s in setup["streams"]] == [4.0, 3.0]
    assert setup["hops"] == 42
    # The model's own event settings, over its keyword classes (as aum eval builds them).
    ev = setup["events"]
    assert ev["config"]["on_threshold"] == EVENTS["on_threshold"]
    assert ev["config"]["cooldown_s"] == 0.16 and ev["config"]["classes"] == KWS12[:10]
    assert "config.extra" in ev["settings_from"]

    p4 = {e["window_s"]: e for e in res["p4"]}
    assert set(p4) == {0.32, 1.0, 30.0}
    for e in res["p4"]:
        assert e["hops"] == 42
        assert [s["hops"] for s in e["per_stream"]] == [24, 18]
        for fig in (e, e["pool_stream"], e["same_span"]):
            assert 0 <= fig["top1_agreement"] <= 1
            assert 0 <= fig["mean_prob_diff"] <= fig["max_prob_diff"] <= 1
            assert fig["events"] is not None
    short = p4[0.32]
    assert short["window_columns"] == 2 and short["truncated_hops"] == (24 - 2) + (18 - 2)
    # Per-stream event counts add up to the totals.
    for kind in ("pool_window", "same_span"):
        total = short if kind == "pool_window" else short["same_span"]
        for key in ("tp", "fp", "fn"):
            assert sum(s[kind]["events"][key] for s in short["per_stream"]) == \
                total["events"][key]

    # Exactness: a window covering every file reproduces the unbounded runtime, events included.
    whole = p4[30.0]
    n_ref = sum(s["reference_events"] for s in setup["streams"])
    assert n_ref > 0  # events occur, so the F1 check below can fail
    assert whole["truncated_hops"] == 0 and whole["top1_agreement_truncated"] is None
    for fig in (whole, whole["same_span"]):
        assert fig["top1_agreement"] == 1 and fig["max_prob_diff"] == 0
        e = fig["events"]
        assert e["reference_events"] == e["events"] == e["tp"] == n_ref
        assert e["fp"] == e["fn"] == 0 and e["precision"] == e["recall"] == e["f1"] == 1.0
    assert whole["pool_stream"]["max_prob_diff"] < 1e-4
    for s in whole["per_stream"]:
        assert s["pool_window"]["events"]["f1"] in (1.0, None)


def test_p4_audio_cap_and_table(kws_model: Path, wavs: list[Path],
                                capsys: pytest.CaptureFixture[str]) -> None:
    """--p4-s caps each file; the text table prints the event columns."""
    rc = main(["bench", "streaming", "--model", str(kws_model), "--hops", "2", "--soak-s", "0",
               "--windows", "1", "--p4-s", "1", "--p4-audio", *map(str, wavs)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "1 file(s)" not in out and "2 file(s), 12 hops" in out  # 2 x hops_in(1 s) = 2 x 6
    assert "ev F1" in out and "span top1" in out and "random" not in out.split("\n")[0]


def test_default_model_info() -> None:
    """--model default is the shipped trained model, described as such."""
    model, info = streaming.load_bench_model("default")
    assert info["source"] == "default" and "trained" in info["weights"]
    assert info["num_classes"] == 12 and info["model_window_s"] == pytest.approx(0.96)
    cfg, setup = streaming.p4_event_config(model)
    assert setup["config"] == cfg.to_dict() and "extra" in setup["settings_from"]
    assert cfg.cooldown_s == model.config.extra["events"]["cooldown_s"]


@pytest.mark.parametrize("extra, needle", [
    (["--depth", "2"], "--depth"),
    (["--embed-dim", "16"], "--embed-dim"),
    (["--p4-depth", "1"], "--p4-depth"),
    (["--p4-s", "0", "--p4-audio", "WAV"], "--p4-s 0"),
    (["--p4-audio", "MISSING"], "not found"),
    (["--p4-audio", "SHORT"], "shorter than one hop"),
])
def test_model_and_audio_errors(extra: list[str], needle: str, kws_model: Path,
                                wavs: list[Path], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(1000, dtype=np.float32), 16000)
    subst = {"WAV": str(wavs[0]), "MISSING": str(tmp_path / "nope.wav"), "SHORT": str(short)}
    argv = [subst.get(a, a) for a in extra]
    rc = main(["bench", "streaming", "--model", str(kws_model), "--hops", "1", "--soak-s", "0",
               *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err


def test_model_must_be_streaming_layout(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    official = AudioMamba(streaming_config(embed_dim=16, depth=1, num_classes=3).replace(
        token_order="freq_major", pos_embed="grid", class_token="middle",
        spectrogram_frames=64))
    path = save_model(official, tmp_path / "official")
    assert main(["bench", "streaming", "--model", str(path), "--hops", "1", "--soak-s", "0"]) == 2
    assert "streaming-layout" in capsys.readouterr().err
    assert main(["bench", "streaming", "--model", str(tmp_path / "none"), "--hops", "1",
                 "--soak-s", "0", "--p4-s", "0"]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("argv, model, depth", [
    ([], "default", None),  # the bare command measures the shipped model (the ask)
    (["--model", "random"], None, streaming.DEFAULT_DEPTH),
    (["--depth", "3"], None, 3),  # a size flag alone means the random model
    (["--model", "default"], "default", None),
])
def test_model_choice(argv: list[str], model: str | None, depth: int | None) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    streaming.add_parser(parser.add_subparsers())
    args = parser.parse_args(["streaming", *argv])
    streaming._check_args(args)
    assert args.model == model
    assert getattr(args, "depth") == depth


def test_model_default_with_a_size_flag_is_an_error() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    streaming.add_parser(parser.add_subparsers())
    args = parser.parse_args(["streaming", "--model", "default", "--depth", "2"])
    with pytest.raises(ConfigError, match="--model random"):
        streaming._check_args(args)
