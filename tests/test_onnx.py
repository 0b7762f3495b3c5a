"""ONNX export (``aum export``) and ONNX Runtime scoring (``aum score-onnx``), end to end.

Each model is exported once per module (an export takes 15-40 s on a small CPU box): the two
official fixtures and a small random streaming-layout model.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from export.onnx_export import EXPORT_FRAMES, read_metadata  # noqa: E402
from export.onnx_scoring import OnnxScorer  # noqa: E402
from streaming_aum.cli import main  # noqa: E402
from streaming_aum.config import streaming_config  # noqa: E402
from streaming_aum.errors import ConfigError  # noqa: E402
from streaming_aum.loading import load_model, save_model  # noqa: E402
from streaming_aum.model import AudioMamba  # noqa: E402

HAVE_CUDA_EP = "CUDAExecutionProvider" in ort.get_available_providers()
FIXTURES = Path(__file__).parent / "fixtures" / "aum_official"


def _cli(argv: list[str]) -> tuple[int, str, str]:
    """``aum ARGV`` in-process, for module-scoped fixtures (capsys is per test)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _export(model_path: Path, out: Path) -> tuple[Path, dict]:
    rc, stdout, stderr = _cli(["export", "--model", str(model_path), "--out", str(out)])
    assert rc == 0, stderr
    return out, json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def v1_export(onnx_dir):
    return _export(FIXTURES / "v1_d96_L4.pt", onnx_dir / "v1.onnx")


@pytest.fixture(scope="module")
def v2_export(onnx_dir):
    return _export(FIXTURES / "v2_d96_L4.pt", onnx_dir / "v2.onnx")


@pytest.fixture(scope="module")
def streaming_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = AudioMamba(streaming_config(embed_dim=32, depth=2, mixer="v2", num_classes=3)).eval()
    return save_model(model, tmp_path_factory.mktemp("streaming_model"))


@pytest.fixture(scope="module")
def streaming_export(onnx_dir, streaming_model_dir):
    return _export(streaming_model_dir, onnx_dir / "streaming.onnx")


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory) -> list[Path]:
    """Wav files of different lengths cut from sample.wav, two of equal length, one longer than
    the official fixtures' 256 frames, and one 44.1 kHz stereo file; listed out of name order."""
    d = tmp_path_factory.mktemp("audio")
    audio, rate = sf.read(FIXTURES / "sample.wav", dtype="int16")
    assert rate == 16000
    cuts = {"e_1s.wav": (0, 16000), "b_2.5s.wav": (16000, 56000), "d_2.5s.wav": (60000, 100000),
            "a_4s.wav": (90000, 154000), "c_full.wav": (0, len(audio)),
            "f_0.3s.wav": (20000, 24800)}
    files = []
    for name, (a, b) in cuts.items():
        sf.write(d / name, audio[a:b], rate)
        files.append(d / name)
    x = audio[30000:30000 + 3 * 44100].astype(np.float32) / 32768
    stereo = np.stack([x, 0.5 * x[::-1]], axis=1)
    sf.write(d / "g_stereo_44k.wav", stereo, 44100, subtype="FLOAT")
    files.insert(2, d / "g_stereo_44k.wav")
    return files


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# (1) export --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["v1", "v2"])
def test_export_official_fixture_validated(name, request):
    path, report = request.getfixturevalue(f"{name}_export")
    assert path.is_file() and report["path"] == str(path)
    assert report["dynamic_frames"] is False
    assert {c["frames"] for c in report["checks"]} == {256}
    assert {c["batch"] for c in report["checks"]} >= {1, 3}
    assert max(c["max_abs_diff"] for c in report["checks"]) < 1e-4
    meta = read_metadata(path)
    assert meta["frames"] == 256 and meta["dynamic_frames"] is False
    assert meta["norm"] == "audioset" and meta["activation"] == "sigmoid"
    assert meta["labels"] == [f"class_{i}" for i in range(10)]
    assert meta["config"]["mixer"] == name


def test_export_streaming_model_checks_unseen_lengths(streaming_export):
    path, report = streaming_export
    assert report["dynamic_frames"] is True
    lengths = {c["frames"] for c in report["checks"]}
    assert len(lengths) >= 2 and EXPORT_FRAMES not in lengths
    assert max(c["max_abs_diff"] for c in report["checks"]) < 1e-4
    meta = read_metadata(path)
    assert meta["dynamic_frames"] is True and meta["frames"] is None


def test_streaming_graph_is_a_scan_loop_not_unrolled(streaming_export, streaming_model_dir):
    path, _ = streaming_export
    proto = onnx.load(str(path))
    ops = [n.op_type for n in proto.graph.node]
    assert "Scan" in ops
    # 2 layers: a handful of nodes per layer; an unrolled loop over 160 frames (10 columns x
    # 8 rows = 80 tokens per direction and layer) would need thousands
    assert len(ops) < 2000
    time_dim = proto.graph.input[0].type.tensor_type.shape.dim[1]
    assert time_dim.dim_param and not time_dim.dim_value  # symbolic length
    # and it runs at lengths far from the export length, equal to PyTorch
    model = load_model(streaming_model_dir)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(1)
    for frames in (16, 41, 1000):
        x = torch.randn(2, frames, 128, generator=g)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(["logits"], {"fbank": x.numpy()})[0]
        np.testing.assert_allclose(got, expected, atol=1e-4)


# (2) official logits ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["v1", "v2"])
def test_onnx_reproduces_official_logits(name, request):
    path, _ = request.getfixturevalue(f"{name}_export")
    fbank = torch.load(FIXTURES / "inputs.pt", weights_only=True)["fbank"]
    expected = torch.load(FIXTURES / f"logits_{name}.pt", weights_only=True).numpy()
    assert fbank.shape == (3, 256, 128)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"fbank": fbank.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    scorer = OnnxScorer(path, threads=1)
    np.testing.assert_allclose(scorer.score_batch(list(fbank.numpy())), expected, atol=1e-4)


def test_scorer_features_equal_official_pipeline(v1_export):
    """sample.wav -> the export's featurisation == clip 2 of inputs.pt (official, 256 frames)."""
    from streaming_aum.audio_io import load_audio

    scorer = OnnxScorer(v1_export[0])
    feats = scorer.features(load_audio(FIXTURES / "sample.wav"))
    expected = torch.load(FIXTURES / "inputs.pt", weights_only=True)["fbank"][2].numpy()
    assert feats.shape == (256, 128) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, expected, atol=5e-4)


# (3) score-onnx == classify --------------------------------------------------------------------
@pytest.mark.parametrize("which", ["official", "streaming"])
def test_score_onnx_equals_classify_offline(which, request, audio_files, capsys):
    if which == "official":
        path, _ = request.getfixturevalue("v1_export")
        model = str(FIXTURES / "v1_d96_L4.pt")
    else:
        path, _ = request.getfixturevalue("streaming_export")
        model = str(request.getfixturevalue("streaming_model_dir"))
    files = [str(f) for f in audio_files]
    rc = main(["score-onnx", str(path), *files, "--batch-size", "2", "--format", "jsonl",
               "--logits"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    got = _jsonl(out.out)
    rc = main(["classify", *files, "--model", model, "--mode", "offline", "--format", "jsonl",
               "--logits"])
    assert rc == 0
    want = _jsonl(capsys.readouterr().out)
    assert [r["file"] for r in got] == files == [r["file"] for r in want]  # input order
    for g, w in zip(got, want):
        np.testing.assert_allclose(g["logits"], w["logits"], atol=1e-4)
        assert g["scores"].keys() == w["scores"].keys()
        np.testing.assert_allclose(list(g["scores"].values()), list(w["scores"].values()),
                                   atol=1e-4)
        assert g["t_start"] == w["t_start"] == 0 and g["t_end"] == pytest.approx(w["t_end"])
        assert g["top"] == w["top"]


def test_score_onnx_csv_and_directory(v1_export, audio_files, capsys):
    directory = audio_files[0].parent
    rc = main(["score-onnx", str(v1_export[0]), str(directory), "--batch-size", "3",
               "--format", "csv", "--top", "2"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "file,t_start,t_end,top,top2"  # one header
    expected = sorted(str(f) for f in audio_files)
    assert [line.split(",")[0] for line in lines[1:]] == expected


def test_dynamic_model_batches_only_equal_lengths(streaming_export, tmp_path):
    audio, rate = sf.read(FIXTURES / "sample.wav", dtype="int16")
    lengths = [16000, 16000, 32000, 16000, 16000, 16000]
    files = []
    for i, n in enumerate(lengths):
        sf.write(tmp_path / f"{i}.wav", audio[i * 1000:i * 1000 + n], rate)
        files.append(tmp_path / f"{i}.wav")
    scorer = OnnxScorer(streaming_export[0])
    sizes = []
    original = scorer.score_batch

    def spy(feats):
        sizes.append(len(feats))
        return original(feats)

    scorer.score_batch = spy
    results = list(scorer.score_files(files, batch_size=2))
    assert sizes == [2, 1, 2, 1]
    assert [r[0] for r in results] == files
    # batching does not change the scores: one at a time gives the same
    scorer.score_batch = original
    single = list(scorer.score_files(files, batch_size=1))
    for (_, a, pa, da), (_, b, pb, db) in zip(results, single):
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(pa, 1 / (1 + np.exp(-a)), rtol=1e-5)
        assert da == db


# (4) errors ------------------------------------------------------------------------------------
@pytest.mark.skipif(HAVE_CUDA_EP, reason="the CUDA provider is available here")
def test_cuda_provider_missing_names_gpu_extra(v1_export, audio_files, capsys):
    rc = main(["score-onnx", str(v1_export[0]), str(audio_files[0]), "--provider", "cuda"])
    err = capsys.readouterr().err
    assert rc == 2 and "gpu-onnx" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="gpu-onnx"):
        OnnxScorer(v1_export[0], provider="cuda")


def test_export_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "exists.onnx"
    out.write_bytes(b"keep me")
    rc = main(["export", "--model", str(FIXTURES / "v1_d96_L4.pt"), "--out", str(out)])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"


def test_non_export_onnx_gives_clear_error(tmp_path, audio_files, capsys):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph), str(path))
    rc = main(["score-onnx", str(path), str(audio_files[0])])
    err = capsys.readouterr().err
    assert rc == 2 and "metadata" in err and "aum export" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="metadata"):
        OnnxScorer(path)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    rc = main(["score-onnx", str(tmp_path / "junk.onnx"), str(audio_files[0])])
    assert rc == 2 and "junk.onnx" in capsys.readouterr().err


def test_unreadable_audio_exits_2_after_earlier_records(v1_export, audio_files, tmp_path, capsys):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF0000WAVEjunk")
    rc = main(["score-onnx", str(v1_export[0]), str(audio_files[0]), str(junk),
               str(audio_files[1]), "--batch-size", "4"])
    out = capsys.readouterr()
    assert rc == 2 and "junk.wav" in out.err
    assert [r["file"] for r in _jsonl(out.out)] == [str(audio_files[0])]
    rc = main(["score-onnx", str(v1_export[0]), str(tmp_path / "missing.wav")])
    assert rc == 2 and "missing.wav" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["score-onnx", str(v1_export[0]), str(audio_files[0]), "--batch-size", "0"])
    assert exc.value.code == 2


# (5) CUDA --------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_CUDA_EP, reason="needs onnxruntime-gpu (the 'gpu-onnx' extra) "
                                             "and a CUDA device")
def test_cuda_io_binding_equals_cpu(v1_export, audio_files):
    gpu = OnnxScorer(v1_export[0], provider="cuda")
    assert gpu.session.get_providers()[0] == "CUDAExecutionProvider"
    cpu = OnnxScorer(v1_export[0], provider="cpu")
    got = list(gpu.score_files(audio_files, batch_size=3))
    want = list(cpu.score_files(audio_files, batch_size=3))
    for (pa, a, _, _), (pb, b, _, _) in zip(got, want):
        assert pa == pb
        np.testing.assert_allclose(a, b, atol=1e-4)


# bench helpers ---------------------------------------------------------------------------------
def test_bench_onnx_helpers():
    from streaming_aum.bench.onnx import parse_batches, summarise_profile

    assert parse_batches("1, 16,1") == [1, 16]
    with pytest.raises(ConfigError):
        parse_batches("0")

    def node(op, ts, dur):
        return {"cat": "Node", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
              node("MatMul", 0, 10), node("Scan", 10, 80), node("Mul", 12, 30),
              node("Exp", 50, 20), node("Add", 90, 10)]
    p = summarise_profile(events)
    assert p["scan_share"] == 0.8 and p["scan_nodes"] == 1
    assert p["top_level_ms"] == {"Scan": 0.08, "MatMul": 0.01, "Add": 0.01}
    assert p["inside_scan_ms"] == {"Mul": 0.03, "Exp": 0.02}
