"""The log-mel front end inside the offline ONNX graph (``aum export --waveform``).

* ``streaming_aum.batched_fbank`` against torchaudio's Kaldi fbank (``features.kaldi_fbank``):
  the same definition (float64, ~1e-12) and float32 agreement to 1e-4 wherever float32 can
  resolve a mel energy (see the module docstring for why not on rounding-noise entries);
* the exported waveform graph against PyTorch ``model(features_for_model(...))``;
* ``aum score-onnx`` on a waveform graph against ``aum classify --mode offline``;
* too-short audio is an ``AudioInputError``, never an ONNX Runtime failure.

Two tiny random models (an official-layout grid model of 128 frames, a streaming-layout one),
each exported once per module.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from streaming_aum.audio_io import load_audio
from streaming_aum.batched_fbank import BatchedFbank, batched_kaldi_fbank
from streaming_aum.cli import main
from streaming_aum.config import AuMConfig, streaming_config
from streaming_aum.errors import AudioInputError
from streaming_aum.features import kaldi_fbank, kaldi_fbank_unchecked
from streaming_aum.loading import save_model
from streaming_aum.model import AudioMamba
from streaming_aum.offline import features_for_model

FIXTURES = Path(__file__).parent / "fixtures" / "aum_official"
DEMO = Path(__file__).parents[1] / "streaming_aum" / "assets" / "demo" / "demo_stream.wav"
GRID_FRAMES = 128


def _have_onnx() -> bool:
    """onnx and onnxruntime importable (the 'onnx' extra); the export tests skip otherwise."""
    try:
        for name in ("onnx", "onnxruntime", "onnxscript"):
            importlib.import_module(name)
    except ImportError:
        return False
    return True


needs_onnx = pytest.mark.skipif(not _have_onnx(), reason="needs the 'onnx' extra")


# (1) batched fbank vs torchaudio ---------------------------------------------------------------
def _signals() -> list[tuple[str, torch.Tensor]]:
    """Real audio (speech fixture, demo stream) and noise, several lengths incl. one frame."""
    speech = load_audio(FIXTURES / "sample.wav")
    demo = load_audio(DEMO)
    g = torch.Generator().manual_seed(0)
    return [("speech_400", speech[20_000:20_400]), ("speech_559", speech[30_000:30_559]),
            ("speech_560", speech[40_000:40_560]), ("speech_all", speech),
            ("demo_3s", demo[100_000:148_000]),
            ("noise_401", 0.3 * torch.randn(401, generator=g) + 0.1),
            ("noise_1s", 0.1 * torch.randn(16_000, generator=g) + 0.3)]


def _resolvable(x64: torch.Tensor, remove_clip_dc: bool, rel: float = 1e-6) -> torch.Tensor:
    """(T, 128) mask of mel energies float32 can resolve: >= rel (~8 float32 eps) of the frame's
    spectral energy (float64 reference), or exactly 0 (a filter between two DFT bins: both sides
    give the floor). The rest is rounding noise in any float32 fbank. The lowest filters each
    see one DFT bin, attenuated by pre-emphasis: those are the usual unresolvable entries."""
    fb = BatchedFbank(remove_clip_dc, torch.float64)
    w = fb.centre(x64.unsqueeze(0))
    frames = fb.frames(w, (w.shape[1] - 400) // 160 + 1)
    power = fb.power_spectrum(frames)[0]
    empty = (fb.mel == 0).all(dim=0)  # (128,)
    return (power @ fb.mel >= rel * power.sum(dim=-1, keepdim=True)) | empty


@pytest.mark.parametrize("remove_clip_dc", [True, False])
def test_batched_fbank_is_kaldi_fbank_in_float64(remove_clip_dc):
    """The definition: float64 batched fbank == torchaudio's fbank run in float64."""
    fb = BatchedFbank(remove_clip_dc, torch.float64)
    for name, x in _signals():
        x64 = x.double()
        ref = kaldi_fbank_unchecked(x64 - x64.mean() if remove_clip_dc else x64)
        got = fb(x64.unsqueeze(0))[0]
        assert got.shape == ref.shape == (1 + (len(x) - 400) // 160, 128), name
        assert float((got - ref).abs().max()) < 1e-9, name


@pytest.mark.parametrize("remove_clip_dc", [True, False])
def test_batched_fbank_matches_kaldi_fbank_in_float32(remove_clip_dc):
    """float32, what the export computes: <= 1e-4 from torchaudio on every resolvable entry,
    and overall about as far from the float64 value as torchaudio's float32 itself (0.2x to 2x
    its error in 30 one-second trials, median 0.8x)."""
    for name, x in _signals():
        ours = batched_kaldi_fbank(x, remove_clip_dc=remove_clip_dc)
        theirs = kaldi_fbank(x, remove_clip_dc=remove_clip_dc)
        assert ours.shape == theirs.shape and ours.dtype == torch.float32, name
        x64 = x.double()
        exact = kaldi_fbank_unchecked(x64 - x64.mean() if remove_clip_dc else x64)
        ok = _resolvable(x64, remove_clip_dc)
        assert float(ok.double().mean()) > 0.6, name  # 0.67 .. 1.0 measured
        assert float((ours - theirs).abs()[ok].max()) <= 1e-4, name
        ours_err = float((ours.double() - exact).abs().max())
        theirs_err = float((theirs.double() - exact).abs().max())
        assert ours_err <= max(1e-4, 3 * theirs_err), (name, ours_err, theirs_err)


def test_batched_fbank_rows_are_independent():
    """A (3, N) batch with different offsets per row == each row alone through torchaudio."""
    speech = load_audio(FIXTURES / "sample.wav")
    x = torch.stack([speech[i * 9_000:i * 9_000 + 12_345] + 0.05 * i for i in range(3)])
    batch = batched_kaldi_fbank(x)
    assert batch.shape == (3, 1 + (12_345 - 400) // 160, 128)
    for i in range(3):
        alone = batched_kaldi_fbank(x[i])
        assert torch.allclose(batch[i], alone, atol=1e-5)
        ok = _resolvable(x[i].double(), True)
        assert float((batch[i] - kaldi_fbank(x[i])).abs()[ok].max()) <= 1e-4


def test_batched_fbank_rejects_bad_audio():
    with pytest.raises(AudioInputError, match=r"399 samples.*at least 400.*one fbank frame"):
        batched_kaldi_fbank(torch.zeros(399))
    with pytest.raises(AudioInputError, match="NaN/Inf"):
        batched_kaldi_fbank(torch.tensor([float("nan")] * 400))
    with pytest.raises(AudioInputError, match="floating-point"):
        batched_kaldi_fbank(torch.zeros(2, 400, dtype=torch.int16))
    with pytest.raises(AudioInputError, match=r"\(B, N\)"):
        batched_kaldi_fbank(torch.zeros(1, 2, 400))


# (2) the exported waveform graph ---------------------------------------------------------------
def _cli(argv: list[str]) -> tuple[int, str, str]:
    """``aum ARGV`` in-process, for module-scoped fixtures (capsys is per test)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _tiny(layout: str) -> AudioMamba:
    torch.manual_seed(0 if layout == "official" else 1)
    if layout == "official":
        cfg = AuMConfig(embed_dim=16, depth=1, num_classes=3, spectrogram_frames=GRID_FRAMES)
    else:
        cfg = streaming_config(embed_dim=16, depth=1, mixer="v2", num_classes=3)
    return AudioMamba(cfg).eval()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wave_models")
    return {name: save_model(_tiny(name), root / name) for name in ("official", "streaming")}


@pytest.fixture(scope="module")
def exports(model_dirs, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    if not _have_onnx():
        pytest.skip("needs the 'onnx' extra")
    out_dir = tmp_path_factory.mktemp("wave_onnx")
    done = {}
    for name, model_dir in model_dirs.items():
        out = out_dir / f"{name}.onnx"
        rc, stdout, stderr = _cli(["export", "--model", str(model_dir), "--out", str(out),
                                   "--waveform"])
        assert rc == 0, stderr
        done[name] = (out, json.loads(stdout.strip().splitlines()[-1]))
    return done


@needs_onnx
@pytest.mark.parametrize("layout", ["official", "streaming"])
def test_waveform_export_report_and_metadata(layout, exports):
    import onnx

    from export.onnx_export import EXPORT_SAMPLES, read_metadata

    path, report = exports[layout]
    assert report["input_kind"] == "waveform" and report["path"] == str(path)
    lengths = {c["samples"] for c in report["checks"]}
    assert len(lengths) >= 2 and EXPORT_SAMPLES not in lengths
    assert {c["batch"] for c in report["checks"]} >= {1, 2}
    assert max(c["max_abs_diff"] for c in report["checks"]) < 1e-4
    meta = read_metadata(path)
    assert meta["input_kind"] == "waveform" and meta["input"] == "waveform"
    assert meta["sample_rate"] == 16000
    assert meta["min_samples"] == (400 if layout == "official" else 2800)
    assert meta["frames"] == (GRID_FRAMES if layout == "official" else None)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert len(dims) == 2 and all(d.dim_param and not d.dim_value for d in dims)  # (B, N)


@needs_onnx
@pytest.mark.parametrize("layout", ["official", "streaming"])
def test_waveform_graph_equals_pytorch(layout, exports, model_dirs):
    """Speech rows, batch 2, at lengths the export never saw: one frame / one column, a padded
    and a cropped grid, a partial hop; vs PyTorch model(features_for_model(row))."""
    import onnxruntime as ort

    from streaming_aum.loading import load_model

    model = load_model(model_dirs[layout])
    session = ort.InferenceSession(str(exports[layout][0]), providers=["CPUExecutionProvider"])
    speech = load_audio(FIXTURES / "sample.wav")
    lengths = (400, 3_000, 31_337) if layout == "official" else (2_800, 7_777, 31_337)
    for n in lengths:
        x = torch.stack([speech[5_000:5_000 + n], speech[60_000:60_000 + n]])
        with torch.no_grad():
            expected = model(torch.stack([features_for_model(model, row) for row in x]))
        got = session.run(["logits"], {"waveform": x.numpy()})[0]
        assert got.shape == (2, 3)
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, err_msg=f"{n} samples")


# (3) score-onnx == classify --------------------------------------------------------------------
@pytest.fixture(scope="module")
def audio_files(tmp_path_factory) -> list[Path]:
    """Cuts of sample.wav: two consecutive files of one length (they batch), shorter and longer
    than the official model's 1.28 s grid, and a 44.1 kHz stereo file."""
    d = tmp_path_factory.mktemp("wave_audio")
    audio, rate = sf.read(FIXTURES / "sample.wav", dtype="int16")
    cuts = {"a_1s.wav": (0, 16_000), "b_2.5s.wav": (16_000, 56_000),
            "c_2.5s.wav": (60_000, 100_000), "d_0.2s.wav": (20_000, 23_200),
            "e_full.wav": (0, len(audio))}
    files = []
    for name, (a, b) in cuts.items():
        sf.write(d / name, audio[a:b], rate)
        files.append(d / name)
    x = audio[30_000:30_000 + 3 * 44_100].astype(np.float32) / 32768
    sf.write(d / "f_stereo_44k.wav", np.stack([x, 0.5 * x[::-1]], axis=1), 44_100,
             subtype="FLOAT")
    files.insert(1, d / "f_stereo_44k.wav")
    return files


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@needs_onnx
@pytest.mark.parametrize("layout", ["official", "streaming"])
def test_score_onnx_waveform_equals_classify_offline(layout, exports, model_dirs, audio_files,
                                                     capsys):
    files = [str(f) for f in audio_files]
    rc = main(["score-onnx", str(exports[layout][0]), *files, "--batch-size", "2",
               "--format", "jsonl", "--logits"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    got = _jsonl(out.out)
    rc = main(["classify", *files, "--model", str(model_dirs[layout]), "--mode", "offline",
               "--format", "jsonl", "--logits"])
    assert rc == 0
    want = _jsonl(capsys.readouterr().out)
    assert [r["file"] for r in got] == files == [r["file"] for r in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g["logits"], w["logits"], atol=1e-4, err_msg=g["file"])
        np.testing.assert_allclose(list(g["scores"].values()), list(w["scores"].values()),
                                   atol=1e-4)
        assert g["scores"].keys() == w["scores"].keys() and g["top"] == w["top"]
        assert g["t_start"] == w["t_start"] == 0 and g["t_end"] == pytest.approx(w["t_end"])


@needs_onnx
def test_waveform_scorer_batches_equal_lengths_only(exports, audio_files):
    from export.onnx_scoring import OnnxScorer

    scorer = OnnxScorer(exports["official"][0], threads=1)
    assert scorer.waveform_input and scorer.min_samples == 400
    sizes = []
    original = scorer.score_batch

    def spy(items):
        sizes.append([np.shape(i) for i in items])
        return original(items)

    scorer.score_batch = spy
    batched = list(scorer.score_files(audio_files, batch_size=4))
    # only the two consecutive 2.5 s files share a batch; waveforms are never padded
    assert [len(s) for s in sizes] == [1, 1, 2, 1, 1]
    assert all(len(set(s)) == 1 and len(s[0]) == 1 for s in sizes)
    scorer.score_batch = original
    single = list(scorer.score_files(audio_files, batch_size=1))
    assert [r[0] for r in batched] == [r[0] for r in single] == list(audio_files)
    for (_, a, _, da), (_, b, _, db) in zip(batched, single):
        np.testing.assert_allclose(a, b, atol=1e-5)
        assert da == db


# (4) errors ------------------------------------------------------------------------------------
@needs_onnx
@pytest.mark.parametrize("layout, samples, need", [("official", 399, 400),
                                                   ("streaming", 399, 2800),
                                                   ("streaming", 2000, 2800)])
def test_too_short_audio_is_an_audio_input_error(layout, samples, need, exports, tmp_path,
                                                 capsys):
    from export.onnx_scoring import OnnxScorer

    path = exports[layout][0]
    short = tmp_path / "short.wav"
    sf.write(short, np.full(samples, 1000, dtype=np.int16), 16_000)
    rc = main(["score-onnx", str(path), str(short)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert f"{samples} samples" in err and f"at least {need}" in err and "short.wav" in err
    scorer = OnnxScorer(path, threads=1)
    with pytest.raises(AudioInputError, match=f"at least {need}"):
        scorer.inputs(np.zeros(samples, dtype=np.float32))
    with pytest.raises(AudioInputError, match=f"at least {need}"):
        scorer.score_batch([np.zeros(samples, dtype=np.float32)])
    with pytest.raises(AudioInputError, match="one length"):
        scorer.score_batch([np.zeros(3000, dtype=np.float32), np.zeros(3001, dtype=np.float32)])


def test_waveform_flag_rejected_with_streaming_export(tmp_path, capsys):
    rc = main(["export", "--out", str(tmp_path / "x.onnx"), "--streaming", "--waveform"])
    err = capsys.readouterr().err
    assert rc == 2 and "--waveform" in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_feature_metadata_says_fbank():
    from export.onnx_export import metadata_for

    model = _tiny("streaming")
    meta = metadata_for(model)
    assert meta["streaming_aum.input_kind"] == "fbank" and meta["streaming_aum.input"] == "fbank"
    assert "streaming_aum.min_samples" not in meta
    wave = metadata_for(model, waveform_input=True)
    assert wave["streaming_aum.input"] == "waveform" and wave["streaming_aum.min_samples"] == "2800"
