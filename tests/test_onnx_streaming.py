"""The exported streaming-step graph, run by the numpy + onnxruntime runner, reproduces the
PyTorch StreamingRuntime (P1, P2 and P5 through ONNX)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from export.onnx_stream_runner import OnnxStreamRunner  # noqa: E402
from streaming_aum.cli import main  # noqa: E402
from streaming_aum.config import streaming_config  # noqa: E402
from streaming_aum.loading import save_model  # noqa: E402
from streaming_aum.model import AudioMamba  # noqa: E402
from streaming_aum.runtime import StreamingRuntime  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 3  # columns


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(7)
    m = AudioMamba(streaming_config(embed_dim=32, depth=2, mixer="v2", num_classes=4))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m.eval()


@pytest.fixture(scope="module")
def graphs(model, tmp_path_factory):
    """Export through the CLI: W = 3 columns (0.48 s) and W = 40 columns (covers the tests)."""
    d = tmp_path_factory.mktemp("onnx")
    save_model(model, d / "model")
    paths = {}
    for name, window_s in (("small", "0.48"), ("big", "6.4")):
        paths[name] = d / f"{name}.onnx"
        assert main(["export", "--model", str(d / "model"), "--out", str(paths[name]),
                     "--streaming", "--window-s", window_s]) == 0
    return paths


def audio(n: int, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return (0.1 * g.standard_normal(n) + 0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


def run_onnx(path, x, chunk):
    r = OnnxStreamRunner(str(path))
    out = []
    for i in range(0, len(x), chunk):
        out += r.push(x[i:i + chunk])
    return out


def test_graph_equals_pytorch_runtime_any_chunking(model, graphs):
    x = audio(26000)
    expected = StreamingRuntime(model, window_columns=WINDOW, column_scores=True).push(
        torch.from_numpy(x))
    assert len(expected) == 1 + (26000 - 2800) // 2560
    for chunk in (1, 777, 26000):
        got = run_onnx(graphs["small"], x, chunk)
        assert [g["t_end"] for g in got] == [e.t_end for e in expected]
        np.testing.assert_allclose(np.stack([g["logits"] for g in got]),
                                   torch.stack([e.logits for e in expected]).numpy(), atol=1e-4)
        np.testing.assert_allclose(np.concatenate([g["column_logits"] for g in got]),
                                   torch.cat([e.column_logits for e in expected]).numpy(),
                                   atol=1e-4)


def test_graph_with_window_covering_stream_equals_offline(model, graphs):
    from streaming_aum.features import waveform_to_features

    x = audio(20000, seed=2)
    got = run_onnx(graphs["big"], x, 3000)
    for g in got:
        n = int(round(g["t_end"] * 16000))
        feats = waveform_to_features(torch.from_numpy(x[:n]), target_frames=None,
                                     remove_clip_dc=False)
        with torch.no_grad():
            offline = model(feats.unsqueeze(0))[0].numpy()
        np.testing.assert_allclose(g["logits"], offline, atol=1e-4)


def test_runner_snapshot_resume_and_reset(graphs):
    x = audio(20000, seed=3)
    whole = run_onnx(graphs["small"], x, 20000)
    r = OnnxStreamRunner(str(graphs["small"]))
    first = r.push(x[:9000])
    snap = r.state_dict()
    r.push(audio(5000, seed=9))
    r2 = OnnxStreamRunner(str(graphs["small"]))
    r2.load_state_dict(snap)
    rest = r2.push(x[9000:])
    np.testing.assert_array_equal(np.stack([g["logits"] for g in first + rest]),
                                  np.stack([g["logits"] for g in whole]))
    r.reset()
    again = r.push(x)
    np.testing.assert_array_equal(np.stack([g["logits"] for g in again]),
                                  np.stack([g["logits"] for g in whole]))


def test_runner_needs_no_torch(graphs, tmp_path):
    script = f"""
import sys, json, importlib.util
sys.modules["torch"] = None  # any torch import now fails
spec = importlib.util.spec_from_file_location("runner", {str(ROOT / 'export' / 'onnx_stream_runner.py')!r})
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
import numpy as np
r = mod.OnnxStreamRunner({str(graphs['small'])!r})
out = r.push((np.random.default_rng(0).standard_normal(8000) * 0.1).astype(np.float32))
print(json.dumps([float(o["logits"][0]) for o in out]))
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)) == 3  # hops end at samples 2800, 5360, 7920


def test_streaming_export_errors(model, graphs, tmp_path, capsys):
    from streaming_aum.loading import save_model as save

    save(AudioMamba(streaming_config(embed_dim=16, depth=1, num_classes=2, class_token="middle",
                                     pos_embed="grid")), tmp_path / "official_like")
    assert main(["export", "--model", str(tmp_path / "official_like"), "--out",
                 str(tmp_path / "x.onnx"), "--streaming"]) == 2
    assert "streaming-layout" in capsys.readouterr().err
    before = graphs["small"].read_bytes()
    assert main(["export", "--model", str(graphs["small"].parent / "model"), "--out",
                 str(graphs["small"]), "--streaming"]) == 2
    assert "exists" in capsys.readouterr().err
    assert graphs["small"].read_bytes() == before
    with pytest.raises(ValueError, match="1-D"):
        OnnxStreamRunner(str(graphs["small"])).push(np.zeros((2, 10), np.float32))
