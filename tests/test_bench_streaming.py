"""``aum bench streaming``: the JSON record of one small run, and the P4 harness's exactness.

A depth-1, 32-wide model and a few hops keep it well under a minute; the full benchmark of the
default model (random-weight streaming AuM-tiny) and its figures are in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import math

import pytest

from streaming_aum.bench import streaming
from streaming_aum.cli import main
from streaming_aum.errors import ConfigError

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
    assert whole["top1_agreement"] == 1 and whole["max_prob_diff"] < 1e-4
    assert whole["pool_stream"]["top1_agreement"] == 1
    assert whole["pool_stream"]["max_prob_diff"] < 1e-4
    assert p4[0.5]["truncated_hops"] == 18 - 3
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
