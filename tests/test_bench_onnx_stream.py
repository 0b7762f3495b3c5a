"""``aum bench onnx-stream`` measures the graph and the PyTorch runtime on the same hops, and
the two agree (the harness compares like with like)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")

from streaming_aum.cli import main  # noqa: E402


def test_onnx_stream_bench_record(capsys):
    assert main(["bench", "onnx-stream", "--json", "--depth", "1", "--embed-dim", "16",
                 "--hops", "4", "--warmup", "3", "--window-s", "0.32"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["hops_timed"] == 4 and rec["window_s"] == pytest.approx(0.32)
    for key in ("torch_hop_ms_p50", "onnx_hop_ms_p50", "torch_hop_ms_p99", "onnx_hop_ms_p99"):
        assert rec[key] > 0
    assert rec["torch_hop_ms_p99"] >= rec["torch_hop_ms_p50"]
    assert rec["max_logit_diff"] < 1e-4
