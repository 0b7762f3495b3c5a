"""The ``aum`` command end to end, checked against the official fixtures."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile as sf
import torch

from streaming_aum.cli import main


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "streaming_aum.cli", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "classify" in out and "bench" in out


def test_classify_reproduces_official_logits(fixtures_dir, capsys):
    """sample.wav -> official pipeline (256 frames) -> model == logits_v1.pt clip 2."""
    expected = torch.load(fixtures_dir / "logits_v1.pt", weights_only=True)[2]
    rc = main(["classify", str(fixtures_dir / "sample.wav"), "--model",
               str(fixtures_dir / "v1_d96_L4.pt"), "--format", "jsonl", "--logits"])
    assert rc == 0
    rec = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(rec["logits"], expected.numpy(), atol=1e-4)
    probs = 1 / (1 + np.exp(-np.array(rec["logits"])))
    assert rec["top"] == f"class_{int(np.argmax(probs))}"
    np.testing.assert_allclose([rec["scores"][f"class_{i}"] for i in range(10)], probs, rtol=1e-6)
    assert rec["t_start"] == 0 and abs(rec["t_end"] - 160029 / 16000) < 1e-6


def test_classify_directory_gives_one_record_per_file(fixtures_dir, tmp_path, capsys):
    audio, rate = sf.read(fixtures_dir / "sample.wav", dtype="int16")
    sf.write(tmp_path / "a.wav", audio[:32000], rate)
    sf.write(tmp_path / "b.flac", audio[32000:80000], rate)
    rc = main(["classify", str(tmp_path), "--model", str(fixtures_dir / "v2_d96_L4.pt"),
               "--format", "jsonl"])
    assert rc == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in recs] == [str(tmp_path / "a.wav"), str(tmp_path / "b.flac")]
    assert [round(r["t_end"], 3) for r in recs] == [2.0, 3.0]


def test_classify_bad_inputs_exit_2_with_message(fixtures_dir, tmp_path, capsys):
    (tmp_path / "junk.wav").write_bytes(b"RIFF0000WAVEjunk")
    rc = main(["classify", str(tmp_path / "junk.wav"), "--model", str(fixtures_dir / "v1_d96_L4.pt")])
    assert rc == 2 and "junk.wav" in capsys.readouterr().err
    rc = main(["classify", str(fixtures_dir / "sample.wav"), "--model", str(tmp_path / "none.pth")])
    assert rc == 2 and "no such file" in capsys.readouterr().err
    sf.write(tmp_path / "short.wav", np.zeros(100, dtype=np.int16), 16000)
    rc = main(["classify", str(tmp_path / "short.wav"), "--model", str(fixtures_dir / "v1_d96_L4.pt")])
    assert rc == 2 and "400 samples" in capsys.readouterr().err
