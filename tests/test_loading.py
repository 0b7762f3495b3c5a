"""Checkpoint loading: formats, shape inference, and the errors for everything else."""

from __future__ import annotations

import collections
import json

import pytest
import torch

from streaming_aum.config import AuMConfig, preset_config
from streaming_aum.errors import AudioInputError, CheckpointError, ConfigError
from streaming_aum.loading import config_from_official, load_model, save_model
from streaming_aum.model import AudioMamba


def test_shapes_read_from_official_checkpoint(fixtures_dir):
    for kind, params in (("v1", 323_530), ("v2", 362_698)):  # the fixture README's counts
        model = load_model(fixtures_dir / f"{kind}_d96_L4.pt")
        cfg = model.config
        assert (cfg.mixer, cfg.embed_dim, cfg.depth, cfg.d_inner, cfg.dt_rank) == (kind, 96, 4, 192, 6)
        assert (cfg.spectrogram_frames, cfg.num_classes, cfg.class_token) == (256, 10, "middle")
        assert sum(p.numel() for p in model.parameters()) == params
        assert not model.training


def test_paper_parameter_counts():
    """aum-reference.md section 6: Base v1 92.108M, Small v2 25.539M (527 classes, 1024 frames)."""
    base = AudioMamba(preset_config("base", mixer="v1"))
    small = AudioMamba(preset_config("small", mixer="v2"))
    assert round(sum(p.numel() for p in base.parameters()) / 1e3) == 92_108
    assert round(sum(p.numel() for p in small.parameters()) / 1e3) == 25_539


def test_none_mixer_checkpoint_detected(tmp_path):
    cfg = AuMConfig(embed_dim=32, depth=2, mixer="none", num_classes=4, spectrogram_frames=64)
    model = AudioMamba(cfg)
    torch.save(model.state_dict(), tmp_path / "none.pth")
    loaded = load_model(tmp_path / "none.pth")
    assert loaded.config.mixer == "none"
    x = torch.randn(1, 64, 128)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))


def test_saved_model_round_trip(tmp_path):
    cfg = AuMConfig(embed_dim=32, depth=2, mixer="v2", num_classes=3, token_order="time_major",
                    pos_embed="freq_rows", class_token="none", labels=["a", "b", "c"],
                    spectrogram_frames=64)
    model = AudioMamba(cfg).eval()
    save_model(model, tmp_path / "m")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config.to_dict() == cfg.to_dict()
    x = torch.randn(2, 100, 128)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    assert loaded.labels == ["a", "b", "c"]


def test_refuses_arbitrary_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_model(tmp_path / "evil.pth")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_corrupt_files(tmp_path, content):
    (tmp_path / "bad.pth").write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_model(tmp_path / "bad.pth")


def test_wrong_contents(tmp_path, fixtures_dir):
    sd = torch.load(fixtures_dir / "v1_d96_L4.pt", weights_only=True)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a non-empty state_dict"):
        load_model(tmp_path / "list.pth")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="patch_embed.proj.weight"):
        load_model(tmp_path / "other.pth")
    missing = collections.OrderedDict((k, v) for k, v in sd.items() if k != "layers.1.mixer.D")
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing \['layers.1.mixer.D'\]"):
        load_model(tmp_path / "missing.pth")
    bad_shape = dict(sd)
    bad_shape["layers.2.mixer.x_proj.weight"] = torch.zeros(40, 192)
    torch.save(bad_shape, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"x_proj.weight has shape \(40, 192\)"):
        load_model(tmp_path / "shape.pth")
    nan = dict(sd)
    nan["norm_f.weight"] = torch.full((96,), float("nan"))
    torch.save(nan, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match="NaN"):
        load_model(tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "absent.pth")
    with pytest.raises(CheckpointError, match="input_frames"):
        load_model(fixtures_dir / "v1_d96_L4.pt", input_frames=3)


def test_saved_model_errors(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(tmp_path / "d")
    model = AudioMamba(AuMConfig(embed_dim=16, depth=1, num_classes=2, spectrogram_frames=32))
    save_model(model, tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({"embed_dim": 16, "bogus": 1}))
    with pytest.raises(ConfigError, match="unknown config keys"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps(model.config.to_dict()))
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(tmp_path / "m")


def test_model_input_errors(fixtures_dir):
    model = load_model(fixtures_dir / "v1_d96_L4.pt")
    with pytest.raises(AudioInputError, match=r"\(B, T, 128\)"):
        model(torch.zeros(256, 128))
    with pytest.raises(AudioInputError, match="built for 256 frames"):
        model(torch.zeros(1, 300, 128))
    with pytest.raises(AudioInputError, match="NaN"):
        x = torch.zeros(1, 256, 128)
        x[0, 3, 4] = float("nan")
        model(x)
    with pytest.raises(AudioInputError, match="floating-point"):
        model(torch.zeros(1, 256, 128, dtype=torch.int64))


def test_config_errors():
    with pytest.raises(ConfigError, match="mixer must be one of"):
        AuMConfig(mixer="v3")
    with pytest.raises(ConfigError, match="embed_dim must be a positive integer"):
        AuMConfig(embed_dim=0)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_config("huge")
    with pytest.raises(ConfigError, match="labels has 2 entries"):
        AuMConfig(num_classes=3, labels=["a", "b"])
    assert config_from_official  # imported for the docs; exercised above
