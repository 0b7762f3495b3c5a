"""``aum bench train``: a tiny run's JSON record is complete and self-consistent."""

from __future__ import annotations

import json

from streaming_aum.cli import main


def test_bench_train_record(capsys) -> None:
    assert main(["bench", "train", "--embed-dim", "16", "--depth", "1", "--batch", "2",
                 "--steps", "2", "--warmup", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["model"]["embed_dim"] == 16 and res["steps"] == 2
    for b in ("fused", "reference"):
        r = res[b]
        assert r["step_s_median"] > 0
        assert abs(r["clips_per_s"] - 2 / r["step_s_median"]) < 0.1 * r["clips_per_s"]
    ratio = res["reference"]["step_s_median"] / res["fused"]["step_s_median"]
    assert abs(res["speedup"] - ratio) < 0.01
