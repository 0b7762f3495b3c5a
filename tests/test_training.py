"""`aum train`: config checking, learning on a small exact task, exact resumption, refusal of
foreign run directories, stream-segment construction, and two-process data parallelism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from streaming_aum.audio_constants import SAMPLES_PER_COLUMN
from streaming_aum.errors import ConfigError
from streaming_aum.loading import load_model
from streaming_aum.training.config import config_from_dict, load_train_config
from streaming_aum.training.samples import ClipSet, StreamSegmentMaker, segment_samples
from streaming_aum.training.trainer import epoch_batches, train

from fake_keywords import make_fake_keywords

WORDS = ["yes", "no", "up", "apple"]  # apple -> _unknown_ in kws12


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return make_fake_keywords(tmp_path_factory.mktemp("kws"), WORDS,
                              {"train": 16, "val": 6}, seed=1)


def _raw(clips: Path, out: Path, epochs: int = 2, **train_over) -> dict:
    return {
        "model": {"embed_dim": 32, "depth": 2, "mixer": "v2", "d_state": 8},
        "data": {"kind": "keywords", "clips": str(clips), "task": "kws12"},
        "augment": {"p_reverb": 0.0, "p_telephone": 0.0, "snr_db": [15.0, 25.0]},
        "streams": {"fraction": 0.25, "window_s": 0.64, "context_s": [0.0, 0.32]},
        "train": {"epochs": epochs, "batch_size": 16, "lr": 5e-3, "loader_workers": 0,
                  "out": str(out), "warmup_epochs": 0.5, **train_over},
    }


def test_config_rejects_typos_and_bad_values(tmp_path):
    good = _raw(tmp_path, tmp_path / "run")
    config_from_dict(good)
    bad = json.loads(json.dumps(good))
    bad["train"]["epocs"] = 3
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epocs'\] in \[train\]"):
        config_from_dict(bad)
    bad = json.loads(json.dumps(good))
    bad["model"]["mixer"] = "v3"
    with pytest.raises(ConfigError, match="mixer must be none, v1 or v2"):
        config_from_dict(bad)
    bad = json.loads(json.dumps(good))
    bad["train"]["batch_size"] = "64"
    with pytest.raises(ConfigError, match="batch_size = '64' must be of type int"):
        config_from_dict(bad)
    with pytest.raises(ConfigError, match="unknown section"):
        config_from_dict({**good, "optimiser": {}})
    for speeds, p_speed in (([1.07], 0.5), ([], 0.5), ([3.0], 0.5), ([0.9], 1.5)):
        bad = json.loads(json.dumps(good))
        bad.setdefault("augment", {}).update(speeds=speeds, p_speed=p_speed)
        with pytest.raises(ConfigError, match="speeds must be|p_speed must be"):
            config_from_dict(bad)
    for alpha, p_vtlp in (([1.1, 0.9], 0.5), ([0.4, 1.1], 0.5), ([0.9], 0.5), ([0.9, 1.1], -0.1)):
        bad = json.loads(json.dumps(good))
        bad.setdefault("augment", {}).update(vtlp_alpha=alpha, p_vtlp=p_vtlp)
        with pytest.raises(ConfigError, match="vtlp_alpha must be|p_vtlp must be"):
            config_from_dict(bad)
    # relative paths are relative to the config file
    (tmp_path / "c.toml").write_text('[data]\nclips = "kws"\n[train]\nout = "runs/x"\n')
    cfg = load_train_config(tmp_path / "c.toml")
    assert cfg.data.clips == str(tmp_path / "kws") and cfg.train.out == str(tmp_path / "runs/x")


def test_stream_segment_geometry_and_targets(clips):
    """A segment is exactly context + W columns of frames; the window holds the target word
    (its energy lies inside the window), and the context never reaches into the window."""
    from streaming_aum.data.background import BackgroundBank

    cs = ClipSet.from_keywords(clips, "train", "kws12")
    maker = StreamSegmentMaker(cs, BackgroundBank.noise_only(), window_columns=4,
                               context_columns=(0, 2), snr_db=(30.0, 30.0))
    labels = cs.labels
    seen = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        wave, target = maker.make(2, rng)
        assert wave.shape == (segment_samples(6),) and wave.dtype == np.float32
        seen.add(labels[target])
        if labels[target] in ("yes", "no", "up"):
            # the target tone's frequency dominates the window part
            win = wave[2 * SAMPLES_PER_COLUMN:]
            spec = np.abs(np.fft.rfft(win))
            f_peak = np.argmax(spec) * 16000 / len(win)
            f_word = 250.0 * 1.5 ** WORDS.index(labels[target])
            assert abs(f_peak - f_word) < 20, (seed, f_peak, f_word)
    assert {"yes", "no", "up", "_unknown_", "_silence_"} <= seen


def test_epoch_plan_is_seeded_and_mixes_segments():
    a = epoch_batches(100, 10, seed=3, epoch=1, segment_fraction=0.5, context_range=(0, 4))
    b = epoch_batches(100, 10, seed=3, epoch=1, segment_fraction=0.5, context_range=(0, 4))
    c = epoch_batches(100, 10, seed=3, epoch=2, segment_fraction=0.5, context_range=(0, 4))
    assert a == b and a != c
    kinds = [k for k, _ in a]
    assert kinds.count("clip") == 10 and kinds.count("segment") == 10
    clip_ids = sorted(e.index for k, batch in a if k == "clip" for e in batch)
    assert clip_ids == list(range(100))  # each clip exactly once per epoch


def test_training_learns_a_small_task(clips, tmp_path):
    """Tone "words" (clips and stream segments): far above chance (0.2) in 16 short epochs.
    (Augmentation is off here: at this size it only slows learning; it is tested in
    test_data_augment.py and runs in the resume test below.)"""
    torch.set_num_threads(1)
    out = tmp_path / "run"
    raw = _raw(clips, out, epochs=16, batch_size=8)
    raw["augment"]["enabled"] = False
    train(config_from_dict(raw), progress=False, log=lambda *_: None)
    metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == list(range(1, 17))
    assert max(m["val_accuracy"] for m in metrics) >= 0.5, metrics
    best = load_model(out / "best")
    assert best.config.labels[:3] == ["yes", "no", "up"]
    assert best.config.extra["norm"] == "speechcommands" and best.config.extra["window_s"] == 0.64
    saved = json.loads((out / "best" / "training.json").read_text())
    assert saved["val_accuracy"] == max(m["val_accuracy"] for m in metrics)


def test_resume_is_exact_and_foreign_runs_are_refused(clips, tmp_path):
    """Interrupted after 2 of 3 epochs and rerun: the same weights as 3 epochs straight."""
    torch.set_num_threads(1)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    quiet = dict(progress=False, log=lambda *_: None)
    train(config_from_dict(_raw(clips, straight, epochs=3)), **quiet)
    train(config_from_dict(_raw(clips, resumed, epochs=3)), stop_after_epochs=2, **quiet)
    assert torch.load(resumed / "checkpoint.pt", weights_only=False)["epoch"] == 1
    train(config_from_dict(_raw(clips, resumed, epochs=3)), **quiet)
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(resumed / "checkpoint.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"]
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)
    rows = (resumed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]
    # a different config into the same run directory is refused, nothing overwritten
    before = (resumed / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="different config"):
        train(config_from_dict(_raw(clips, resumed, epochs=3, lr=1e-3)), **quiet)
    assert (resumed / "metrics.jsonl").read_text() == before
    # and so is a directory that is not a run
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a training run directory"):
        train(config_from_dict(_raw(clips, tmp_path / "mine", epochs=1)), **quiet)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_two_process_data_parallel(clips, tmp_path):
    cfg = _raw(clips, tmp_path / "ddp", epochs=1)
    lines = []
    for section, values in cfg.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    (tmp_path / "ddp.toml").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    import socket
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port),
                           "-m", "streaming_aum.cli", "train",
                           str(tmp_path / "ddp.toml"), "--no-progress"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(l) for l in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["processes"] == 2  # rank 0 alone logs
    plan = epoch_batches(80, 16, seed=0, epoch=0, segment_fraction=0.25, context_range=(0, 2))
    assert rows[0]["examples"] == 2 * (len(plan) // 2) * 16
    assert (tmp_path / "ddp" / "best" / "model.safetensors").is_file()


def test_fine_tune_an_official_checkpoint_on_a_folder(tmp_path):
    """The documented fine-tuning path (configs/finetune_folder.toml): an official-format
    checkpoint, a folder with one sub-folder per class, a fresh head for those classes."""
    import soundfile as sf

    from fake_keywords import tone_word

    rng = np.random.default_rng(0)
    words = ["beep", "boop"]
    for w in words:
        (tmp_path / "clips" / w).mkdir(parents=True)
        for i in range(10):
            y = np.zeros(20480, np.float32)
            x = tone_word(w, words, rng)
            y[2000:2000 + len(x)] = x
            sf.write(tmp_path / "clips" / w / f"{i}.wav", y, 16000)
    official = Path(__file__).parent / "fixtures" / "aum_official" / "v1_d96_L4.pt"
    raw = {"model": {"init_from": str(official), "input_frames": 128},
           "data": {"kind": "folder", "folder": str(tmp_path / "clips"), "val_fraction": 0.2,
                    "clip_s": 1.28},
           "augment": {"enabled": False}, "streams": {"fraction": 0.0},
           "train": {"epochs": 1, "batch_size": 8, "lr": 1e-4, "loader_workers": 0,
                     "out": str(tmp_path / "ft")}}
    best = train(config_from_dict(raw), progress=False, log=lambda *_: None)
    model = load_model(best)
    assert model.config.labels == words and model.config.num_classes == 2
    assert model.config.spectrogram_frames == 128 and model.config.class_token == "middle"
    # the body is the official one (unchanged shapes), the head is new
    base = load_model(official, input_frames=128)
    assert model.layers[0].mixer.in_proj.weight.shape == base.layers[0].mixer.in_proj.weight.shape
    with pytest.raises(ConfigError, match="at least 2 are needed"):
        ClipSet.from_folder(tmp_path / "clips" / "beep", "train", 0.2)


def test_augmentation_curriculum(tmp_path):
    from streaming_aum.training.trainer import augment_strength, make_augmenter

    raw = _raw(tmp_path, tmp_path / "run")
    raw["augment"]["ramp_epochs"] = [2, 5]
    raw["augment"]["p_background"] = 0.8
    cfg = config_from_dict(raw)
    assert [augment_strength(cfg, e) for e in range(7)] == [0, 0, 0.25, 0.5, 0.75, 1.0, 1.0]
    aug, _, _ = make_augmenter(cfg, "train", 0.5)
    assert aug.config.p_background == pytest.approx(0.4)
    assert aug.config.snr_db == (20.0, 25.0)  # [15, 25] narrowed towards its top
    raw["augment"]["ramp_epochs"] = [3, 1]
    with pytest.raises(ConfigError, match="ramp_epochs"):
        config_from_dict(raw)
