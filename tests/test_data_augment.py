"""Background/event/room banks and on-the-fly augmentation: real-value checks, no network or apt."""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import welch

from streaming_aum.audio_constants import SAMPLE_RATE
from streaming_aum.data import background as bg
from streaming_aum.data.augment import (
    change_speed,
    AugmentConfig, Augmenter, mix_at_snr, spec_augment, spec_augment_spans, telephone_band)
from streaming_aum.data.background import BackgroundBank, EventBank
from streaming_aum.data.fetch import classify_path, fetch_ambience, rcc_extract
from streaming_aum.data.noise import FLOOR_DBFS, colored_noise, loop_to_length, noise_floor
from streaming_aum.data.procedural import PROCEDURAL_CLASSES, PROCEDURAL_RANGES, procedural_event
from streaming_aum.data.rooms import RirBank, apply_rir, make_rir_bank, room_rirs, schroeder_rt60
from streaming_aum.errors import AudioInputError, ConfigError

SR = SAMPLE_RATE


def _db(p: float) -> float:
    return 10.0 * math.log10(p)


def _power(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean(x * x))


def _word(n: int = SR, seed: int = 0) -> np.ndarray:
    """A 1 s clip: a 0.4 s harmonic burst in zeros, like a TTS word placed in its window."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, np.float32)
    length, on = int(0.4 * SR), int(0.3 * SR)
    t = np.arange(length) / SR
    y[on:on + length] = (0.4 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 660 * t)
                         ) * np.hanning(length) + 0.01 * rng.standard_normal(length)
    return y


def _banks(seed: int = 0) -> tuple[BackgroundBank, RirBank]:
    rng = np.random.default_rng(seed)
    amb = [colored_noise(int(2.5 * SR), "pink", rng) * 0.1, np.sin(np.arange(3 * SR) * 0.05)
           .astype(np.float32)]
    t = np.arange(int(0.3 * SR)) / SR
    rirs = [np.r_[np.zeros(10), 1.0, 0.3 * rng.standard_normal(t.size) * np.exp(-t / 0.05)]
            .astype(np.float32) for _ in range(3)]
    return BackgroundBank(amb, ["a", "b"], "train"), RirBank(rirs, [{}] * 3, "train")


# --------------------------------------------------------------------------------------------
# mixing and noise
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.3, 20.0, 35.0])
def test_mix_at_snr_hits_the_requested_snr(snr: float) -> None:
    rng = np.random.default_rng(1)
    s = (rng.standard_normal(SR) * 0.3).astype(np.float32)
    n = colored_noise(SR, "brown", rng) * 5.0
    y = mix_at_snr(s, n, snr)
    assert y.dtype == np.float32 and y.shape == s.shape
    noise_part = y.astype(np.float64) - s
    assert abs(_db(_power(s) / _power(noise_part)) - snr) < 0.01


def test_mix_at_snr_rejects_silence_and_shape_mismatch() -> None:
    x = np.ones(100, np.float32)
    with pytest.raises(AudioInputError, match="zero power"):
        mix_at_snr(np.zeros(100, np.float32), x, 10)
    with pytest.raises(AudioInputError, match="zero power"):
        mix_at_snr(x, np.zeros(100, np.float32), 10)
    with pytest.raises(AudioInputError, match="same shape"):
        mix_at_snr(x, np.ones(99, np.float32), 10)


@pytest.mark.parametrize("kind,slope", [("white", 0.0), ("pink", -3.01), ("brown", -6.02)])
def test_colored_noise_has_unit_rms_and_the_right_spectral_slope(kind: str, slope: float) -> None:
    x = colored_noise(2**18, kind, np.random.default_rng(2))
    assert x.dtype == np.float32 and x.shape == (2**18,)
    assert abs(math.sqrt(_power(x)) - 1.0) < 1e-4
    f, p = welch(x, fs=SR, nperseg=4096)
    band = (f >= 100) & (f <= 4000)
    db_per_octave = np.polyfit(np.log2(f[band]), 10 * np.log10(p[band]), 1)[0]
    assert abs(db_per_octave - slope) < 0.4, (kind, db_per_octave)


def test_colored_noise_rejects_unknown_kind() -> None:
    with pytest.raises(ConfigError, match="white, pink, brown"):
        colored_noise(10, "blue", np.random.default_rng(0))


def test_noise_floor_level_lies_in_range() -> None:
    levels = []
    for seed in range(30):
        x = noise_floor(SR, np.random.default_rng(seed))
        levels.append(20 * math.log10(math.sqrt(_power(x))))
        assert np.count_nonzero(x) == x.size  # never digital zero
    assert min(levels) >= -70.001 and max(levels) <= -44.999
    assert max(levels) - min(levels) > 10  # actually spread over the range
    x = noise_floor(1000, np.random.default_rng(0), (-60.0, -60.0))
    assert abs(20 * math.log10(math.sqrt(_power(x))) + 60.0) < 1e-3


def test_loop_to_length_repeats_with_a_crossfade() -> None:
    x = np.arange(1, 1001, dtype=np.float32)
    assert np.array_equal(loop_to_length(x, 300, 100), x[100:400])  # fits: plain slice
    y = loop_to_length(x, 5000, 0, crossfade=100)
    assert y.shape == (5000,)
    assert np.array_equal(y[:900], x[:900])  # first copy untouched before the first fade
    assert np.allclose(y[1000:1800], x[100:900])  # second copy starts after the 100-sample fade


# --------------------------------------------------------------------------------------------
# banks
# --------------------------------------------------------------------------------------------


def test_background_bank_samples_unit_rms_from_ambience_and_noise() -> None:
    bank, _ = _banks()
    rng = np.random.default_rng(3)
    for n in (100, SR, 5 * SR):  # 5 s is longer than every ambience array: looped
        x = bank.sample(n, rng)
        assert x.shape == (n,) and x.dtype == np.float32
        assert abs(math.sqrt(_power(x)) - 1.0) < 1e-3
    names = {bank.sample_ambience(SR, rng)[1] for _ in range(20)}
    assert names == {"a", "b"}
    only = BackgroundBank.noise_only("test_voice")
    assert len(only) == 0 and only.split == "test"
    assert only.sample_ambience(10, rng)[1].startswith("noise:")


def test_bank_loaders_read_manifests_by_split(tmp_path: Path) -> None:
    rows_a, rows_e = [], []
    for i, split in enumerate(["train", "test", "train"]):
        p = f"ambience/{split}/rain/a{i}.wav"
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / p, np.full(2 * SR, 0.1 * (i + 1), np.float32), SR, subtype="PCM_16")
        rows_a.append({"path": p, "class": "rain", "split": split, "duration_s": 2.0})
        p = f"events/{split}/dog/e{i}.wav"
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / p, np.full(SR // 2, 0.2, np.float32), SR, subtype="PCM_16")
        rows_e.append({"path": p, "class": "dog", "split": split, "package": "pkg",
                       "source": f"e{i}.ogg", "duration_s": 0.5})
    (tmp_path / "ambience.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_a))
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_e))
    assert len(BackgroundBank.load(tmp_path, "train")) == 2
    assert len(BackgroundBank.load(tmp_path, "val")) == 2
    assert len(BackgroundBank.load(tmp_path, "test_engine")) == 1
    ev = EventBank.load(tmp_path, "test_voice", p_procedural=0.0)
    wave, label, source = ev.sample(np.random.default_rng(0))
    assert (label, source, wave.size) == ("dog", "pkg/e1.ogg", SR // 2)
    with pytest.raises(ConfigError, match="aum data background"):
        BackgroundBank.load(tmp_path / "nothing", "train")


@pytest.mark.parametrize("kind", PROCEDURAL_CLASSES)
def test_procedural_events_are_finite_and_deterministic(kind: str) -> None:
    a = procedural_event(kind, np.random.default_rng(5), "train")
    b = procedural_event(kind, np.random.default_rng(5), "train")
    assert a.dtype == np.float32 and a.ndim == 1 and 0.1 * SR < a.size < 5 * SR
    assert np.array_equal(a, b) and np.all(np.isfinite(a))
    assert abs(float(np.max(np.abs(a))) - 0.5) < 1e-6


def test_procedural_train_and_test_ranges_are_disjoint() -> None:
    for kind, halves in PROCEDURAL_RANGES.items():
        assert set(halves["train"]) == set(halves["test"]), kind
        for param, (lo, hi) in halves["train"].items():
            tlo, thi = halves["test"][param]
            assert hi < tlo or thi < lo, (kind, param)


@pytest.mark.parametrize("split", ["train", "test_voice"])
def test_alarm_beep_frequency_follows_its_split(split: str) -> None:
    lo, hi = PROCEDURAL_RANGES["alarm_beep"]["train" if split == "train" else "test"]["freq_hz"]
    for seed in range(3):
        x = procedural_event("alarm_beep", np.random.default_rng(seed), split)
        spec = np.abs(np.fft.rfft(x))
        peak_hz = np.argmax(spec) * SR / x.size
        assert lo - 5 <= peak_hz <= hi + 5


def test_event_bank_without_recordings_is_procedural() -> None:
    ev = EventBank.procedural_only("test_engine")
    labels = {ev.sample(np.random.default_rng(s))[1] for s in range(40)}
    assert labels == set(PROCEDURAL_CLASSES)
    assert ev.sample(np.random.default_rng(0))[2].endswith(":test")


def test_classify_path_labels_events_and_excludes_speech() -> None:
    mt = "minetest-data/usr/share/games/minetest/games/minetest_game/mods"
    assert classify_path(f"{mt}/default/sounds/default_dirt_footstep.1.ogg") == ("footsteps",
                                                                                 "event")
    assert classify_path("lincity-ng-data/usr/share/games/lincity-ng/sounds/TraficLow2.wav") == (
        "traffic", "ambience")
    assert classify_path("gcompris-qt-data/rcc/memory-sound/x/LRBark_1_LA_cut.ogg") == ("dog",
                                                                                        "event")
    fd = "sound-theme-freedesktop/usr/share/sounds/freedesktop/stereo"
    assert classify_path(f"{fd}/audio-channel-front-left.oga") is None  # a spoken voice
    assert classify_path("wesnoth-1.16-data/x/core/sounds/human-die-1.ogg") is None
    assert classify_path("lincity-ng-data/usr/share/games/lincity-ng/music/default/01.ogg") is None


def _write_rcc(path: Path, files: dict[str, bytes]) -> None:
    """A minimal Qt .rcc (format 3): root dir -> 'snd' dir -> files (the first zlib-compressed)."""
    names, name_off = b"", {}
    for n in ["snd", *files]:
        name_off[n] = len(names)
        enc = n.encode("utf-16-be")
        names += struct.pack(">HI", len(n), 0) + enc
    data, data_off, flags = b"", {}, {}
    for i, (n, blob) in enumerate(files.items()):
        data_off[n] = len(data)
        if i == 0:
            payload, flags[n] = struct.pack(">I", len(blob)) + zlib.compress(blob), 1
        else:
            payload, flags[n] = blob, 0
        data += struct.pack(">I", len(payload)) + payload
    nodes = [struct.pack(">IHII", 0, 2, 1, 1) + b"\0" * 8,
             struct.pack(">IHII", name_off["snd"], 2, len(files), 2) + b"\0" * 8]
    for n in files:
        nodes.append(struct.pack(">IHHHI", name_off[n], flags[n], 0, 0, data_off[n]) + b"\0" * 8)
    tree = b"".join(nodes)
    head = 24
    body = tree + data + names
    path.write_bytes(b"qres" + struct.pack(">IIIII", 3, head, head + len(tree),
                                           head + len(tree) + len(data), 0) + body)


def test_rcc_extract_reads_plain_and_zlib_entries(tmp_path: Path) -> None:
    files = {"rain.ogg": b"OggS-compressed" * 20, "dog.wav": b"RIFF-plain", "notes.txt": b"x"}
    _write_rcc(tmp_path / "a.rcc", files)
    out = rcc_extract(tmp_path / "a.rcc", tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in out] == ["snd/dog.wav",
                                                                         "snd/rain.ogg"]
    assert (tmp_path / "out/snd/rain.ogg").read_bytes() == files["rain.ogg"]
    assert (tmp_path / "out/snd/dog.wav").read_bytes() == files["dog.wav"]
    with pytest.raises(AudioInputError, match="qres"):
        (tmp_path / "b.rcc").write_bytes(b"nope")
        rcc_extract(tmp_path / "b.rcc", tmp_path / "out")


def test_fetch_ambience_builds_banks_from_unpacked_packages(tmp_path: Path) -> None:
    """apt is skipped: .deb files and unpacked trees that exist are reused (idempotence path)."""
    rng = np.random.default_rng(0)
    lc = tmp_path / "unpacked/lincity-ng-data/usr/share/games/lincity-ng"
    mt = tmp_path / "unpacked/minetest-data/usr/share/games/minetest/games/minetest_game/mods"
    fd = tmp_path / "unpacked/minetest-data/usr/share/sounds/freedesktop/stereo"
    for d in (lc / "sounds", lc / "music/default", mt / "default/sounds", fd):
        d.mkdir(parents=True)
    sf.write(lc / "sounds/Fire1.wav", 0.1 * rng.standard_normal(3 * 11025), 11025)
    sf.write(lc / "sounds/TraficLow1.wav", 0.1 * rng.standard_normal(11025), 11025)  # < 2 s
    sf.write(lc / "music/default/01 - song.ogg", 0.1 * rng.standard_normal(3 * SR), SR,
             format="OGG", subtype="VORBIS")
    sf.write(mt / "default/sounds/default_dirt_footstep.1.ogg",
             0.3 * rng.standard_normal((22050, 2)), 44100, format="OGG", subtype="VORBIS")
    sf.write(fd / "audio-channel-front-left.oga", 0.1 * rng.standard_normal(SR), SR,
             format="OGG", subtype="VORBIS")
    (tmp_path / "deb").mkdir()
    for pkg in ("lincity-ng-data", "minetest-data"):
        (tmp_path / f"deb/{pkg}_1.0_all.deb").write_bytes(b"")
        (tmp_path / f"unpacked/{pkg}/.unpacked").write_text("fake\n")
    summary = fetch_ambience(tmp_path, ["lincity-ng-data", "minetest-data"])
    amb = [json.loads(x) for x in (tmp_path / "ambience.jsonl").read_text().splitlines()]
    ev = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(r["class"], r["package"], r["orig_rate"]) for r in amb] == [
        ("fire", "lincity-ng-data", 11025)]
    assert [(r["class"], r["licence"][:5]) for r in ev] == [("footsteps", "CC-BY")]
    info = sf.info(str(tmp_path / amb[0]["path"]))
    assert (info.samplerate, info.channels, round(info.duration, 2)) == (SR, 1, 3.0)
    assert amb[0]["split"] in ("train", "test") and summary["ambience"]["files"] == 1
    before = (tmp_path / "events.jsonl").read_text()
    fetch_ambience(tmp_path, ["lincity-ng-data", "minetest-data"])
    assert (tmp_path / "events.jsonl").read_text() == before


# --------------------------------------------------------------------------------------------
# rooms
# --------------------------------------------------------------------------------------------


def test_apply_rir_with_a_unit_impulse_is_identity() -> None:
    x = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    np.testing.assert_allclose(apply_rir(x, np.array([1.0])), x, atol=1e-6)
    # a delayed impulse is aligned on its peak: still the identity
    np.testing.assert_allclose(apply_rir(x, np.r_[np.zeros(37), 0.5]), x, atol=1e-6)


def test_apply_rir_keeps_length_onset_and_energy() -> None:
    x = np.zeros(8000, np.float32)
    x[1000:1400] = np.hanning(400)
    h = np.r_[np.zeros(20), 1.0, np.zeros(300), 0.6, np.zeros(500), 0.3]
    y = apply_rir(x, h)
    assert y.shape == x.shape
    assert np.all(np.abs(y[:1000]) < 1e-6)  # nothing before the dry onset
    assert abs(_power(y) / _power(x) - 1.0) < 1e-5
    assert np.abs(y[1000 + 301:1400 + 301]).max() > 0.1  # the echo 300 samples after


def test_rir_bank_of_three_rooms_splits_by_room(tmp_path: Path) -> None:
    summary = make_rir_bank(tmp_path, count=6, seed=1, workers=1, per_room=2)
    assert summary["rooms"] == 3 and summary["train"]["rirs"] == 4 and summary["test"]["rirs"] == 2
    rows = [json.loads(x) for x in (tmp_path / "rirs.jsonl").read_text().splitlines()]
    train_rooms = {r["room"] for r in rows if r["split"] == "train"}
    test_rooms = {r["room"] for r in rows if r["split"] == "test"}
    assert train_rooms == {0, 1} and test_rooms == {2}
    arr = np.load(tmp_path / "rirs_train.npy")
    assert arr.dtype == np.float16 and arr.shape[0] == 4
    tr, te = RirBank.load(tmp_path, "train"), RirBank.load(tmp_path, "test_voice")
    assert (len(tr), len(te)) == (4, 2)
    for h, row in zip(tr.rirs, tr.rows):
        assert h.size == row["length"] and abs(float(np.max(np.abs(h))) - 1.0) < 1e-3
        assert 0.15 <= row["rt60_target_s"] <= 0.9
    again = make_rir_bank(tmp_path, count=6, seed=1, workers=1, per_room=2)
    assert again["skipped"] is True


def test_capped_order_rir_gets_a_tail_with_the_target_rt60() -> None:
    (h, row), = room_rirs(room=0, seed=3, count=1, rt60_range=(0.8, 0.8))
    assert row["hybrid_tail"] and row["order_used"] < row["sabine_order"]
    assert h.size >= int(0.8 * SR)
    assert 0.6 <= schroeder_rt60(h) <= 1.0


# --------------------------------------------------------------------------------------------
# the augmenter
# --------------------------------------------------------------------------------------------


def test_augmenter_is_deterministic_per_seed() -> None:
    bank, rirs = _banks()
    aug = Augmenter(AugmentConfig(p_reverb=0.5, p_telephone=0.5), bank, rirs)
    x = _word()
    a, b = aug(x, np.random.default_rng(7)), aug(x, np.random.default_rng(7))
    assert a.dtype == np.float32 and a.shape == x.shape and np.array_equal(a, b)
    assert not np.array_equal(a, aug(x, np.random.default_rng(8)))
    plan = aug.draw(x.size, np.random.default_rng(7))
    assert np.array_equal(aug.apply(x, plan), a)


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.05, 1.1])
def test_change_speed_scales_frequency_and_keeps_length(factor: float) -> None:
    """A 1 kHz tone played ``factor`` times as fast becomes a ``factor`` kHz tone (spectral peak,
    within one 0.5 Hz-wide bin of a 2 s window), centred, with the clip's length."""
    n = 2 * SR
    t = np.arange(n) / SR
    x = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    y = change_speed(x, factor)
    assert y.dtype == np.float32 and y.shape == x.shape
    mid = y[n // 4: 3 * n // 4].astype(np.float64)  # away from padding and filter edges
    spec = np.abs(np.fft.rfft(mid * np.hanning(mid.size)))
    peak_hz = np.argmax(spec) * SR / mid.size
    assert abs(peak_hz - 1000.0 * factor) <= SR / mid.size
    np.testing.assert_allclose(np.sqrt(np.mean(mid ** 2)), 0.5 / math.sqrt(2), rtol=0.02)
    if factor > 1:  # shorter: zero padding split evenly around the centred clip
        pad = n - int(np.ceil(n / factor))
        assert np.all(y[: pad // 2 - 1] == 0) and np.all(y[n - pad // 2 + 1:] == 0)
    assert np.array_equal(change_speed(x, 1.0), x)
    with pytest.raises(ConfigError, match="multiple of 0.05"):
        change_speed(x, 1.07)


def test_augmenter_speed_is_drawn_only_when_enabled() -> None:
    """p_speed = 0 (the default) draws nothing, so earlier seeds give the same plans; with
    p_speed = 1 every plan has a factor from ``speeds`` and applying it changes the clip."""
    bank, rirs = _banks()
    x = _word()
    off = Augmenter(AugmentConfig(), bank, rirs)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    plan = off.draw(x.size, rng_a)
    assert plan.speed == 1.0
    Augmenter(AugmentConfig(p_speed=0.0, speeds=(0.9,)), bank, rirs).draw(x.size, rng_b)
    assert rng_a.random() == rng_b.random()  # same number of draws consumed
    on = Augmenter(AugmentConfig(p_speed=1.0, p_background=0.0, p_reverb=0.0,
                                 p_telephone=0.0), bank, rirs)
    speeds = {on.draw(x.size, np.random.default_rng(s)).speed for s in range(40)}
    assert speeds == {0.9, 0.95, 1.05, 1.1}
    plan = on.draw(x.size, np.random.default_rng(0))
    slow = on.apply(x, plan)
    plan.speed = 1.0
    assert not np.array_equal(slow, on.apply(x, plan))
    with pytest.raises(ConfigError, match="speeds"):
        AugmentConfig(speeds=(1.07,))
    with pytest.raises(ConfigError, match="p_speed"):
        AugmentConfig(p_speed=1.5)


def test_augmenter_without_background_reverb_or_band_is_shift_gain_plus_floor() -> None:
    aug = Augmenter(AugmentConfig(p_background=0.0, p_reverb=0.0, p_telephone=0.0), *_banks())
    x = _word()
    for seed in range(5):
        plan = aug.draw(x.size, np.random.default_rng(seed))
        y = aug(x, np.random.default_rng(seed))
        assert plan.background is None and plan.rir is None and not plan.telephone
        assert abs(plan.shift) <= int(0.1 * SR) and 0.2 <= plan.peak <= 0.9
        shifted = np.roll(x.astype(np.float64), plan.shift)  # zeros wrap around: the word is inside
        expected = shifted * plan.peak / np.max(np.abs(shifted)) + plan.floor
        np.testing.assert_allclose(y, expected, atol=2e-7)
        floor_dbfs = 20 * math.log10(math.sqrt(_power(plan.floor)))
        assert -70.001 <= floor_dbfs <= -44.999


def test_augmenter_background_is_mixed_at_the_drawn_snr() -> None:
    aug = Augmenter(AugmentConfig(p_background=1.0, p_reverb=0.0, p_telephone=0.0,
                                  shift_s=0.0, snr_db=(6.0, 6.0)), *_banks())
    x = _word()
    plan = aug.draw(x.size, np.random.default_rng(11))
    y = aug.apply(x, plan).astype(np.float64) - plan.floor
    k = plan.peak / np.max(np.abs(mix_at_snr(x, plan.background, 6.0)))
    speech = x * k
    assert abs(_db(_power(speech) / _power(y - speech)) - 6.0) < 0.01


def test_augmenter_gives_silent_clips_an_absolute_background() -> None:
    aug = Augmenter(AugmentConfig(p_background=1.0), *_banks())
    plan = aug.draw(SR, np.random.default_rng(0))
    y = aug.apply(np.zeros(SR, np.float32), plan)
    assert np.all(np.isfinite(y)) and abs(float(np.max(np.abs(y - plan.floor))) - plan.peak) < 1e-6


def test_augmenter_rejects_bad_input_and_config() -> None:
    aug = Augmenter()
    with pytest.raises(AudioInputError, match="1-D float"):
        aug(np.zeros((2, 10), np.float32), np.random.default_rng(0))
    with pytest.raises(AudioInputError, match="NaN"):
        aug(np.array([0.0, np.nan], np.float32), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="p_reverb"):
        AugmentConfig(p_reverb=1.5)
    with pytest.raises(ConfigError, match="peak"):
        AugmentConfig(peak=(0.5, 1.5))


def test_telephone_band_passes_speech_band_and_removes_the_rest() -> None:
    t = np.arange(SR) / SR
    for f, keep in ((1000.0, True), (5000.0, False), (100.0, False)):
        x = np.sin(2 * np.pi * f * t).astype(np.float32)
        y = telephone_band(x)
        assert y.shape == x.shape
        ratio_db = _db(_power(y[2000:-2000]) / _power(x[2000:-2000]))
        assert (abs(ratio_db) < 1.0) if keep else (ratio_db < -20.0), (f, ratio_db)


# --------------------------------------------------------------------------------------------
# SpecAugment
# --------------------------------------------------------------------------------------------


def test_spec_augment_masks_exactly_the_drawn_spans() -> None:
    feats = torch.randn(4, 100, 128, generator=torch.Generator().manual_seed(0)) + 5.0
    orig = feats.clone()
    out = spec_augment(feats, torch.Generator().manual_seed(42), fill=-1.5)
    spans = spec_augment_spans(4, 100, 128, torch.Generator().manual_seed(42))
    assert torch.equal(feats, orig)  # input untouched
    for i, sp in enumerate(spans):
        mask = torch.zeros(100, 128, dtype=torch.bool)
        for s, w in sp["time"]:
            assert 0 <= w <= 20 and s + w <= 100
            mask[s:s + w, :] = True
        for s, w in sp["freq"]:
            assert 0 <= w <= 24 and s + w <= 128
            mask[:, s:s + w] = True
        assert torch.all(out[i][mask] == -1.5)
        assert torch.equal(out[i][~mask], orig[i][~mask])  # bit-identical elsewhere
    assert len({str(sp) for sp in spans}) == 4  # drawn per example
    again = spec_augment(feats, torch.Generator().manual_seed(42), fill=-1.5)
    assert torch.equal(out, again)


def test_spec_augment_handles_short_inputs_and_rejects_bad_shapes() -> None:
    out = spec_augment(torch.ones(2, 5, 8), torch.Generator().manual_seed(0), max_time=20,
                       max_freq=24)
    assert out.shape == (2, 5, 8)
    with pytest.raises(AudioInputError, match="batch, frames, bins"):
        spec_augment(torch.ones(5, 8), torch.Generator())


def test_module_constants_match_the_recipe() -> None:
    c = AugmentConfig()
    assert (c.p_background, c.snr_db, c.p_reverb, c.p_telephone, c.peak, c.shift_s) == (
        0.8, (0.0, 20.0), 0.3, 0.15, (0.2, 0.9), 0.1)
    assert bg.P_AMBIENCE == 0.6 and FLOOR_DBFS == (-70.0, -45.0)
