"""``aum bench offline``: record format, clip/token arithmetic and argument errors.

One real measurement (AuM-tiny on a 1.28 s clip, 128 frames, one fresh child process), so the
test stays well under a minute; the full benchmark and its figures are in BENCHMARKS.md.
"""

from __future__ import annotations

import json

import pytest

from streaming_aum import openmp_wait
from streaming_aum.bench import offline
from streaming_aum.cli import main
from streaming_aum.errors import ConfigError

RECORD_KEYS = {"model", "clip_s", "frames", "tokens", "s_per_clip", "peak_mb", "params_m",
               "threads", "backend", "repeats", "times_s", "mem_method"}


def test_clip_and_token_arithmetic() -> None:
    assert offline.clip_frames(10) == 1024  # the official 10.24 s input
    assert offline.clip_frames(40) == 4096
    assert offline.clip_frames(1.28) == 128
    assert offline.clip_frames(0.01) == 16  # never below one patch column
    assert offline.aum_tokens(1024) == 512
    assert offline.aum_tokens(4096) == 2048
    assert offline.ast_tokens(1024) == 1212  # 12 x 101, as the real AST


def test_json_record_of_one_measurement(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "offline", "--json", "--models", "aum-tiny", "--clips", "1.28",
               "--repeats", "1", "--threads", "1", "--profile", "--rounds", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    records = json.loads(out)  # stdout holds only the JSON list
    assert isinstance(records, list) and len(records) == 2  # one per round
    assert [r["round"] for r in records] == [1, 2]
    rec = records[0]
    assert RECORD_KEYS <= set(rec)
    assert rec["model"] == "aum-tiny"
    assert rec["clip_s"] == pytest.approx(1.28)
    frames = offline.clip_frames(rec["clip_s"])
    assert rec["frames"] == frames == 128
    assert rec["tokens"] == 8 * (frames // 16) == 64
    assert rec["s_per_clip"] > 0
    assert rec["peak_mb"] >= 0
    assert rec["threads"] == 1 and rec["repeats"] == 1 and len(rec["times_s"]) == 1
    assert rec["params_m"] > 1
    assert rec["backend"] in ("fused", "reference")
    bd = rec["breakdown"]
    for key in ("patch_embed_s", "in_out_proj_s", "x_dt_proj_s", "conv_s", "scan_s",
                "scan_kernel_s", "rest_s", "total_s"):
        assert bd[key] >= 0
    assert bd["scan_kernel_s"] <= bd["scan_s"] <= bd["total_s"]
    # the child's OpenMP spin-wait status: what the package's import does in its environment
    assert rec["openmp"] == openmp_wait.apply(offline._child_env(1),
                                              torch_loaded=False)


@pytest.mark.parametrize("argv, needle", [
    (["--models", "aum-tiny,ast-huge"], "ast-huge"),
    (["--models", ""], "--models"),
    (["--clips", "ten"], "--clips"),
    (["--clips", "-1"], "positive"),
    (["--repeats", "0"], "--repeats"),
    (["--rounds", "0"], "--rounds"),
])
def test_bad_arguments_exit_2(argv: list[str], needle: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "offline", "--json", *argv])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""
    assert captured.err.startswith("aum: error:") and needle in captured.err


def test_unknown_model_message_lists_choices() -> None:
    with pytest.raises(ConfigError) as info:
        offline.parse_models("aum-huge")
    assert "aum-tiny" in str(info.value) and "ast-base" in str(info.value)


def test_table_prints_ratios_and_linearity() -> None:
    def rec(model: str, clip: float, s: float, tokens: int) -> dict:
        return {"model": model, "clip_s": clip, "frames": offline.clip_frames(clip),
                "tokens": tokens, "params_m": 1.0, "s_per_clip": s, "peak_mb": 10.0,
                "rss_model_mb": 100.0, "backend": "x"}

    text = offline.format_table([rec("aum-base", 10, 1.0, 512), rec("ast-base", 10, 2.5, 1212),
                                 rec("aum-base", 40, 4.0, 2048), rec("ast-base", 40, 12.0, 4908)])
    assert "10 s: time 2.50x  (target >= 2x: met)" in text
    assert "40 s: time 3.00x  (target >= 4x: NOT met)" in text
    assert "aum-base   time 4.00x" in text


def test_rounds_give_a_ratio_per_round_and_their_median() -> None:
    """With ``round`` fields the verdict is the median of the per-round ratios, not a ratio of
    per-model medians (those can pair a fast phase with a slow one)."""
    def rec(model: str, clip: float, s: float, rnd: int) -> dict:
        return {"model": model, "clip_s": clip, "frames": offline.clip_frames(clip),
                "tokens": 512, "params_m": 1.0, "s_per_clip": s, "peak_mb": 10.0 * rnd,
                "rss_model_mb": 100.0, "backend": "x", "round": rnd}

    # AuM 1.0, 1.5, 1.1 s; AST 2.2, 2.7, 2.0 s: ratios 2.2, 1.8, 1.818...
    recs = []
    for rnd, (aum, ast) in enumerate([(1.0, 2.2), (1.5, 2.7), (1.1, 2.0)], start=1):
        recs += [rec("aum-base", 10, aum, rnd), rec("ast-base", 10, ast, rnd)]
    assert offline.round_ratios(recs, 10) == pytest.approx([2.2, 1.8, 2.0 / 1.1])
    text = offline.format_table(recs)
    median = sorted([2.2, 1.8, 2.0 / 1.1])[1]
    assert f"10 s: time {median:.2f}x  (target >= 2x: NOT met) [2.20x, 1.80x, 1.82x]" in text
    # the ratio of medians would have said 2.2 / 1.1 = 2.00x: met
    med = offline.median_records(recs)
    assert med[("aum-base", 10)]["s_per_clip"] == 1.1
    assert med[("ast-base", 10)]["s_per_clip"] == 2.2
    assert med[("aum-base", 10)]["peak_mb"] == 20.0
    assert "aum-base #2" in text
    # a round that lost one model's measurement has no ratio
    assert offline.round_ratios(recs[:-1], 10) == pytest.approx([2.2, 1.8])
