"""``aum demo`` on a tiny synthetic stream with a random model: live event lines, ground-truth
summary, timeline SVG, never overwriting an existing SVG, real-time pacing, clear errors."""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import soundfile as sf
import torch

from streaming_aum import demo_cli
from streaming_aum.config import streaming_config
from streaming_aum.errors import AuMError
from streaming_aum.evaluation import stream_events_streaming
from streaming_aum.loading import save_model
from streaming_aum.model import AudioMamba

KWS12 = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_unknown_",
         "_silence_"]


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aum")
    sub = parser.add_subparsers(dest="command")
    demo_cli.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (AuMError, FileExistsError) as exc:
        print(f"aum: error: {exc}", file=sys.stderr)
        return 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(11)
    model = AudioMamba(streaming_config(embed_dim=32, depth=2, num_classes=12, labels=KWS12,
                                        output_activation="softmax"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.head.weight.mul_(150.0)
    model_dir = save_model(model, tmp_path_factory.mktemp("m") / "model")
    d = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(5)
    n = 5 * 16000
    x = 0.01 * rng.standard_normal(n)
    t = np.arange(n) / 16000
    for start in (0.6, 2.0, 3.4):
        m = (t >= start) & (t < start + 0.4)
        x[m] += 0.3 * np.sin(2 * np.pi * rng.uniform(300, 2500) * t[m])
    wav = d / "stream_x.wav"
    sf.write(wav, (x * 32767).astype(np.int16), 16000, subtype="PCM_16")
    (d / "stream_x.csv").write_text("onset_s,offset_s,label,kind,snr_db,source,word\n"
                                    "0.600,1.000,yes,kw,10,a.wav|espeak,yes\n"
                                    "2.000,2.400,_unknown_,unk,10,b.wav|pico,cat\n"
                                    "3.400,3.800,go,kw,10,c.wav|flite,go\n")
    # a threshold in the widest gap of the top keyword scores the demo will see (W = 12)
    probs = stream_events_streaming(model, wav, 12).probs
    top = np.unique(np.round(probs[:, :10].max(1), 4))
    top = top[top > 0.15]
    i = int(np.argmax(np.diff(top)))
    return model_dir, wav, float((top[i] + top[i + 1]) / 2)


def test_demo_prints_events_and_never_overwrites(setup, tmp_path, monkeypatch, capsys):
    model_dir, wav, thr = setup
    monkeypatch.chdir(tmp_path)
    argv = ["demo", "--model", str(model_dir), "--audio", str(wav), "--threshold", f"{thr}",
            "--chunk-ms", "70"]
    assert run_cli(argv) == 0
    out = capsys.readouterr().out
    lines = re.findall(r"^\[\s*(\d+\.\d\d) s\] (\S+)\s+\(p=(\d\.\d\d)\)$", out, re.M)
    assert lines and all(label in KWS12[:10] for _, label, _ in lines)
    assert all(float(p) >= thr - 0.005 for _, _, p in lines)
    assert "Ground truth stream_x.csv:" in out and "hit(s)" in out
    assert "wrote aum-demo-timeline.svg" in out
    first = (tmp_path / "aum-demo-timeline.svg").read_bytes()
    root = ET.fromstring(first.split(b"\n", 1)[1])
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert len(root.findall(".//s:rect[@class='event']", ns)) >= len(lines)
    assert len(root.findall(".//s:rect[@class='truth']", ns)) == 3

    assert run_cli(argv) == 0
    assert "wrote aum-demo-timeline-1.svg" in capsys.readouterr().out
    assert (tmp_path / "aum-demo-timeline.svg").read_bytes() == first
    assert (tmp_path / "aum-demo-timeline-1.svg").is_file()

    (tmp_path / "mine.svg").write_text("keep")
    assert run_cli(argv + ["--out", "mine.svg"]) == 0
    assert "wrote mine-1.svg" in capsys.readouterr().out
    assert (tmp_path / "mine.svg").read_text() == "keep"


def test_demo_realtime_paces_audio(setup, tmp_path, monkeypatch, capsys):
    model_dir, wav, thr = setup
    monkeypatch.chdir(tmp_path)
    slept = []
    clock = [0.0]
    monkeypatch.setattr(demo_cli.time, "monotonic", lambda: clock[0])

    def sleep(s):
        slept.append(s)
        clock[0] += s

    monkeypatch.setattr(demo_cli.time, "sleep", sleep)
    assert run_cli(["demo", "--model", str(model_dir), "--audio", str(wav), "--realtime",
                    "--chunk-ms", "250", "--out", "rt.svg"]) == 0
    assert "real time" in capsys.readouterr().out
    assert len(slept) == 20 and sum(slept) == pytest.approx(5.0)


def test_demo_errors(setup, tmp_path, monkeypatch, capsys):
    model_dir, wav, _ = setup
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo_cli, "ASSET_DIR", tmp_path / "no_assets")
    assert run_cli(["demo", "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert "demo_stream.wav" in err and "--audio" in err

    import streaming_aum.loading as loading

    if hasattr(loading, "DEFAULT_MODEL_DIR"):  # load_model() without a path, asset missing
        monkeypatch.setattr(loading, "DEFAULT_MODEL_DIR", tmp_path / "no_model")
        assert run_cli(["demo", "--audio", str(wav)]) == 2
        assert "--model" in capsys.readouterr().err

    def load_model_needing_path(path):  # an install without a shipped default model
        raise AssertionError("not reached")

    monkeypatch.setattr(loading, "load_model", load_model_needing_path)
    assert run_cli(["demo", "--audio", str(wav)]) == 2
    assert "--model" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.svg"))


def test_demo_uses_a_models_per_class_thresholds(setup, tmp_path, monkeypatch, capsys):
    """A model whose tuned events hold a {label: threshold} dict: the demo (and its banner,
    which once formatted the threshold as one number and crashed) runs, the dict decides per
    class, and the timeline draws no single threshold line."""
    from streaming_aum.loading import load_model

    model_dir, wav, thr = setup
    monkeypatch.chdir(tmp_path)
    argv = ["demo", "--audio", str(wav), "--chunk-ms", "70"]
    assert run_cli(argv + ["--model", str(model_dir), "--threshold", f"{thr}",
                           "--out", "single.svg"]) == 0
    pattern = r"^\[\s*(\d+\.\d\d) s\] (\S+)\s+\(p=(\d\.\d\d)\)$"
    single = re.findall(pattern, capsys.readouterr().out, re.M)
    assert single
    silenced = single[0][1]
    model = load_model(model_dir)
    per_class = {k: thr for k in KWS12[:10]} | {silenced: 0.99999}
    model.config.extra["events"] = {"on_threshold": per_class, "cooldown_s": 0.0}
    per_class_dir = save_model(model, tmp_path / "per_class")
    assert run_cli(argv + ["--model", str(per_class_dir), "--out", "per_class.svg"]) == 0
    out = capsys.readouterr().out
    lo, hi = sorted({thr, 0.99999})
    assert f"threshold per class {lo:g}-{hi:g}" in out
    got = re.findall(pattern, out, re.M)
    assert got == [row for row in single if row[1] != silenced]
    svg = (tmp_path / "per_class.svg").read_bytes()
    root = ET.fromstring(svg.split(b"\n", 1)[1])
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert root.findall(".//s:line[@class='threshold']", ns) == []
    assert len(ET.fromstring((tmp_path / "single.svg").read_bytes().split(b"\n", 1)[1])
               .findall(".//s:line[@class='threshold']", ns)) == 1
