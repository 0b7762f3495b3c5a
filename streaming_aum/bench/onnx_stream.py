"""``aum bench onnx-stream``: per-hop time of the exported streaming graph (ONNX Runtime, run
by ``export/onnx_stream_runner.py``) next to the PyTorch ``StreamingRuntime``, same model, same
audio, same window, one thread each, measured in one run.

The model is a random-weight streaming-layout AuM (default tiny: D=192, depth 24, v1). Each
runtime gets the audio one column (2560 samples) at a time; the first ``warmup`` hops (the
window filling up) are not timed. Also reports the largest logit difference between the two.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("onnx-stream", help="streaming ONNX graph vs PyTorch runtime, per hop")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--embed-dim", type=int, default=192)
    p.add_argument("--depth", type=int, default=24)
    p.add_argument("--window-s", type=float, default=1.0)
    p.add_argument("--hops", type=int, default=200, help="timed hops")
    p.add_argument("--warmup", type=int, default=20)
    p.set_defaults(func=run)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure(embed_dim: int, depth: int, window_s: float, hops: int, warmup: int
            ) -> dict[str, Any]:
    from export.onnx_stream_runner import OnnxStreamRunner
    from export.streaming_export import export_streaming_onnx
    from streaming_aum.audio_constants import SAMPLE_RATE, SAMPLES_PER_COLUMN
    from streaming_aum.config import streaming_config
    from streaming_aum.model import AudioMamba
    from streaming_aum.runtime import StreamingRuntime

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = AudioMamba(streaming_config(embed_dim=embed_dim, depth=depth, mixer="v1",
                                        num_classes=35)).eval()
    columns = max(1, round(window_s * SAMPLE_RATE / SAMPLES_PER_COLUMN))
    n = (hops + warmup) * SAMPLES_PER_COLUMN + 240
    g = np.random.default_rng(0)
    audio = (0.1 * g.standard_normal(n)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "step.onnx"
        t0 = time.perf_counter()
        export_streaming_onnx(model, path, window_columns=columns)
        export_s = time.perf_counter() - t0
        runner = OnnxStreamRunner(str(path), threads=1)
        runtime = StreamingRuntime(model, window_columns=columns)
        t_torch, t_onnx, diffs = [], [], []
        for i in range(hops + warmup):
            lo = i * SAMPLES_PER_COLUMN
            chunk = audio[lo:lo + SAMPLES_PER_COLUMN + (240 if i == hops + warmup - 1 else 0)]
            s = time.perf_counter()
            a = runtime.push(torch.from_numpy(chunk))
            t1 = time.perf_counter()
            b = runner.push(chunk)
            t2 = time.perf_counter()
            if a and b and i >= warmup:
                t_torch.append((t1 - s) * 1e3)
                t_onnx.append((t2 - t1) * 1e3)
                diffs.append(float(np.abs(a[-1].logits.numpy() - b[-1]["logits"]).max()))
    return {
        "model": {"embed_dim": embed_dim, "depth": depth, "mixer": "v1"},
        "window_s": columns * SAMPLES_PER_COLUMN / SAMPLE_RATE, "threads": 1,
        "hops_timed": len(t_torch), "export_s": round(export_s, 1),
        "torch_hop_ms_p50": statistics.median(t_torch), "torch_hop_ms_p99": _percentile(t_torch, 99),
        "onnx_hop_ms_p50": statistics.median(t_onnx), "onnx_hop_ms_p99": _percentile(t_onnx, 99),
        "onnx_over_torch_p50": statistics.median(t_onnx) / statistics.median(t_torch),
        "max_logit_diff": max(diffs) if diffs else None,
    }


def run(args: argparse.Namespace) -> int:
    res = measure(args.embed_dim, args.depth, args.window_s, args.hops, args.warmup)
    if args.json:
        sys.stdout.write(json.dumps(res) + "\n")
    else:
        for k, v in res.items():
            sys.stdout.write(f"{k:>22}: {v}\n")
    return 0
