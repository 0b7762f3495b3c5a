"""The TTS keyword generator (``aum data keywords``): vocabularies, the speaker-disjoint voice
split, and a real smoke generation with espeak-ng + sox (output layout, audio, determinism,
resumability, refusal of other settings)."""

from __future__ import annotations

import argparse
import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from streaming_aum.data import voices as voices_mod
from streaming_aum.data.keywords import (
    CLIP_SAMPLES, MANIFEST_KEYS, PRESETS, OutputDirError, generate_keywords, plan_clips,
    read_manifest,
)
from streaming_aum.data.voices import (
    Voice, VoiceSplitError, check_disjoint, discover_voices, split_voices,
)
from streaming_aum.data.words import (
    COMMANDS10, KWS12_LABELS, KWS37_LABELS, SC35, SILENCE, TASKS, UNKNOWN, UNKNOWN_EXTRA,
    label_for,
)
from streaming_aum.errors import AuMError, ConfigError

needs_tts = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="needs the Debian packages espeak-ng and sox (apt-get install espeak-ng sox)")

SEED = 7


# --------------------------------------------------------------------------------------------
# words
# --------------------------------------------------------------------------------------------


def test_word_lists() -> None:
    assert len(SC35) == len(set(SC35)) == 35
    assert SC35[:10] == COMMANDS10
    assert {"marvin", "sheila", "visual", "zero", "nine"} <= set(SC35)
    assert 140 <= len(UNKNOWN_EXTRA) == len(set(UNKNOWN_EXTRA)) <= 160
    assert not set(UNKNOWN_EXTRA) & set(SC35)
    near_misses = {"know", "now", "yet", "yep", "cup", "dub", "top", "goal", "window"}
    assert near_misses <= set(UNKNOWN_EXTRA)
    assert all(" " not in w and w == w.lower() for w in UNKNOWN_EXTRA)
    assert KWS12_LABELS == COMMANDS10 + [UNKNOWN, SILENCE]
    assert KWS37_LABELS == SC35 + [UNKNOWN, SILENCE]
    assert TASKS == {"kws12": KWS12_LABELS, "kws37": KWS37_LABELS}


def test_label_for() -> None:
    assert label_for("yes", "kws12") == "yes"
    assert label_for("zero", "kws12") == UNKNOWN
    assert label_for("zero", "kws37") == "zero"
    assert label_for("window", "kws37") == UNKNOWN
    assert label_for(SILENCE, "kws12") == SILENCE
    assert label_for(UNKNOWN, "kws37") == UNKNOWN
    with pytest.raises(ConfigError, match="kws12, kws37") as exc:
        label_for("yes", "kws35")
    assert isinstance(exc.value, ValueError)


# --------------------------------------------------------------------------------------------
# voice split
# --------------------------------------------------------------------------------------------


@needs_tts
def test_split_of_discovered_voices_is_disjoint() -> None:
    found = discover_voices(["espeak-ng"])
    assert len(found) >= 7 * 50  # 7 accents x ~101 variants with espeak-ng 1.51
    splits = split_voices(found, seed=42)
    ids = {s: {v.voice_id for v in vs} for s, vs in splits.items()}
    assert ids["train"] and ids["test_voice"]
    assert ids["val"] == ids["train"]
    assert not ids["train"] & ids["test_voice"]
    assert not splits["test_engine"] or {v.engine for v in splits["test_engine"]} == {"piper"}
    # disjoint on accent *and* variant, not just on the id
    tr, te = splits["train"], splits["test_voice"]
    assert not {v.voice for v in tr} & {v.voice for v in te}
    assert not {v.variant for v in tr} & {v.variant for v in te}
    assert len({v.variant for v in tr}) == int(0.75 * len({v.variant for v in found}))
    assert split_voices(found, seed=42) == splits  # seeded, reproducible


def test_split_assertion_fires_on_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(VoiceSplitError, match="test_voice"):
        check_disjoint({"train": ["espeak-ng/en-us/m1"], "test_voice": ["espeak-ng/en-us/m1"]})
    with pytest.raises(VoiceSplitError, match="engine"):
        check_disjoint({"train": ["espeak-ng/en-us/m1"], "test_engine": ["espeak-ng/en-gb/f1"]})
    check_disjoint({"train": ["noise/white"], "test_voice": ["noise/white"]})  # silence is fine
    # inject an overlap into split_voices: the same accent on both sides, all variants in both
    monkeypatch.setattr(voices_mod, "ESPEAK_NG_TEST_ACCENTS", ("en-us",))
    monkeypatch.setattr(voices_mod, "_split_variants", lambda names, seed: (set(names),) * 2)
    voices = [Voice("espeak-ng", "en-us", v) for v in ("m1", "f2")]
    with pytest.raises(VoiceSplitError, match="leak"):
        split_voices(voices, seed=0)
    assert issubclass(VoiceSplitError, AuMError)


# --------------------------------------------------------------------------------------------
# smoke generation
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kw") / "smoke"
    rec = generate_keywords(out, preset="smoke", seed=SEED, workers=2, progress=False)
    assert rec["complete"] and rec["made"] == sum(rec["clips"].values()) and rec["skipped"] == 0
    return out


def _read_wav(path: Path) -> tuple[np.ndarray, int, int, int]:
    with wave.open(str(path), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return x, w.getframerate(), w.getnchannels(), w.getsampwidth()


@needs_tts
def test_smoke_manifest_matches_files(smoke_dir: Path) -> None:
    rows = read_manifest(smoke_dir / "manifest.jsonl")
    raw_lines = (smoke_dir / "manifest.jsonl").read_text().splitlines()
    assert len(rows) == len(raw_lines)
    assert all(tuple(json.loads(ln)) == MANIFEST_KEYS for ln in raw_lines)
    files = {p.relative_to(smoke_dir).as_posix() for p in (smoke_dir / "clips").rglob("*")
             if p.is_file()}
    assert files == {r["path"] for r in rows}
    for r in rows:
        word_dir = r["path"].split("/")[2]
        index = int(r["path"][-10:-4])
        assert r["path"] == f"clips/{r['split']}/{word_dir}/{r['split']}_{index:06d}.wav"
        assert word_dir == r["word"]
    gen = json.loads((smoke_dir / "generator.json").read_text())
    assert gen["config"]["preset"] == "smoke" and gen["config"]["seed"] == SEED
    assert gen["complete"] is True and "espeak-ng" in gen["engine_versions"]
    assert "sox" in gen["engine_versions"] and gen["package_version"]
    counts = {s: sum(r["split"] == s for r in rows) for s in gen["clips"]}
    assert counts == gen["clips"]
    p = PRESETS["smoke"]
    assert counts["train"] == 35 * p.counts["train"].per_word + p.counts["train"].unknown \
        + p.counts["train"].silence
    # every SC35 word in train, unknown words only from the preset's pool
    words = {r["word"] for r in rows}
    assert set(SC35) <= words and SILENCE in words
    assert words - set(SC35) - {SILENCE} <= set(p.unknown_pool)
    # split disjointness re-checked on what was produced
    by_split = {s: {r["voice_id"] for r in rows if r["split"] == s and r["engine"] != "noise"}
                for s in gen["clips"]}
    assert not by_split["train"] & by_split["test_voice"]
    assert by_split["val"] <= set(gen["config"]["voices"]["train"])
    assert by_split["test_voice"] <= set(gen["config"]["voices"]["test_voice"])
    assert {r["engine"] for r in rows} <= {"espeak-ng", "noise"}


@needs_tts
def test_smoke_clips_audio(smoke_dir: Path) -> None:
    rows = read_manifest(smoke_dir / "manifest.jsonl")
    for r in rows:
        x, sr, ch, width = _read_wav(smoke_dir / r["path"])
        assert (x.size, sr, ch, width) == (CLIP_SAMPLES, 16000, 1, 2), r["path"]
        assert np.any(x), r["path"]
        xf = x.astype(np.float64) / 32768.0
        if r["word"] == SILENCE:
            assert r["voice_id"].startswith("noise/") and r["rate"] is None
            dbfs = 20 * np.log10(np.sqrt(np.mean(xf ** 2)))
            assert -72.0 <= dbfs <= -33.0, (r["path"], dbfs)
            continue
        assert 0.6 <= r["rate"] <= 1.15 and 0.0 <= r["pitch"] <= 1.0
        assert 0.9 <= r["tempo"] <= 1.1 and -300 <= r["cents"] <= 500
        assert 0.3 - 1e-3 <= np.abs(xf).max() <= 0.9 + 1e-3
        a = int(round(r["onset_s"] * 16000))
        b = a + int(round(r["speech_s"] * 16000))
        assert 0 <= a < b <= CLIP_SAMPLES and r["speech_s"] > 0.05
        inside = np.sum(xf[a:b] ** 2)
        outside = np.sum(xf[:a] ** 2) + np.sum(xf[b:] ** 2)
        assert outside <= 1e-3 * inside, r["path"]
        # trimmed: the speech starts and ends near its stated span
        assert np.abs(xf[a:a + 320]).max() > 0 and np.abs(xf[b - 320:b]).max() > 0
    onsets = [r["onset_s"] for r in rows if r["word"] != SILENCE]
    assert min(onsets) < 0.2 and max(onsets) > 0.3  # spread over the window


@needs_tts
def test_smoke_is_deterministic(smoke_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "again"
    generate_keywords(other, preset="smoke", seed=SEED, workers=1, progress=False)
    assert (other / "manifest.jsonl").read_bytes() == (smoke_dir / "manifest.jsonl").read_bytes()
    assert (other / "generator.json").read_bytes() == (smoke_dir / "generator.json").read_bytes()
    rows = read_manifest(smoke_dir / "manifest.jsonl")
    for r in rows[::10]:
        assert (other / r["path"]).read_bytes() == (smoke_dir / r["path"]).read_bytes()


def test_plan_depends_on_seed_only() -> None:
    p = PRESETS["smoke"]
    splits = {"train": [Voice("espeak-ng", "en-us", "m1"), Voice("espeak-ng", "en-gb", "f2")],
              "test_voice": [Voice("espeak-ng", "en-gb-scotland", "m3")]}
    splits["val"] = splits["train"]
    splits["test_engine"] = []
    a = plan_clips(p, p.counts, splits, seed=1)
    assert a == plan_clips(p, p.counts, splits, seed=1)
    assert a != plan_clips(p, p.counts, splits, seed=2)
    assert len({c.seed for c in a}) == len(a)
    assert not [c for c in a if c.split == "test_engine"]


@needs_tts
def test_smoke_resumes_after_interruption(smoke_dir: Path, tmp_path: Path) -> None:
    part = tmp_path / "part"
    shutil.copytree(smoke_dir, part)
    lines = (part / "manifest.jsonl").read_text().splitlines(keepends=True)
    rows = [json.loads(ln) for ln in lines]
    for r in rows[5:40:3]:  # files gone, rows still there
        (part / r["path"]).unlink()
    # an interrupted run: unsorted rows, the last ones missing, a half-written line
    kept = lines[:-20]
    kept.reverse()
    (part / "manifest.jsonl").write_text("".join(kept) + lines[-20][:25])
    (part / rows[-1]["path"]).unlink()
    rec = generate_keywords(part, preset="smoke", seed=SEED, workers=2, progress=False)
    assert rec["made"] == 20 + len(rows[5:40:3]) and rec["complete"]
    assert (part / "manifest.jsonl").read_bytes() == (smoke_dir / "manifest.jsonl").read_bytes()
    for r in rows[5:40:3] + rows[-20:]:
        assert (part / r["path"]).read_bytes() == (smoke_dir / r["path"]).read_bytes()
    # a finished directory: nothing to do
    assert generate_keywords(part, preset="smoke", seed=SEED, progress=False)["made"] == 0


@needs_tts
def test_other_settings_into_same_dir_are_refused(smoke_dir: Path, tmp_path: Path) -> None:
    before = (smoke_dir / "manifest.jsonl").read_bytes()
    with pytest.raises(OutputDirError, match="preset"):
        generate_keywords(smoke_dir, preset="small", seed=SEED, engines=["espeak-ng"],
                          progress=False)
    with pytest.raises(OutputDirError, match="seed"):
        generate_keywords(smoke_dir, preset="smoke", seed=SEED + 1, progress=False)
    with pytest.raises(OutputDirError, match="counts"):
        generate_keywords(smoke_dir, preset="smoke", seed=SEED, per_word=1, progress=False)
    assert (smoke_dir / "manifest.jsonl").read_bytes() == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("user data")
    with pytest.raises(OutputDirError, match="not empty"):
        generate_keywords(foreign, preset="smoke", progress=False)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


@needs_tts
def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="smoke, small, full"):
        generate_keywords("/nonexistent/never", preset="huge", progress=False)
    with pytest.raises(ConfigError, match="accepted"):
        generate_keywords("/nonexistent/never", engines=["sam"], progress=False)
    with pytest.raises(ConfigError, match="no training voices"):
        generate_keywords("/nonexistent/never", engines=[], progress=False)


@needs_tts
def test_cli_resume_is_a_no_op(smoke_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streaming_aum.data import keywords_cli

    parser = argparse.ArgumentParser()
    keywords_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["keywords", "--out", str(smoke_dir), "--seed", str(SEED),
                              "--workers", "1", "--engines", "espeak-ng", "--quiet"])
    assert args.func(args) == 0
    assert "0 made" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["keywords", "--out", "x", "--engines", "espeak-ng,sam"])


@needs_tts
def test_a_word_a_voice_cannot_say_is_listed_not_fatal(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """mbrola/us3 has no diphones for 'off'/'on' (sox gets silence): such clips are retried at
    neutral prosody, then listed in generator.json, and the run completes without them."""
    from streaming_aum.data import keywords as kw
    from streaming_aum.data.synth import SynthesisError

    real = kw.synthesize_many
    calls: list[tuple[str, float]] = []

    def flaky(reqs):
        for r in reqs:
            if r.word == "yes":
                calls.append((r.voice.voice_id, r.rate))
                raise SynthesisError(f"{r.voice.voice_id} could not synthesise 'yes': no audio")
        return real(reqs)

    monkeypatch.setattr(kw, "synthesize_many", flaky)
    out = tmp_path / "kw"
    rec = generate_keywords(out, preset="smoke", seed=SEED, workers=1, progress=False)
    rows = kw.read_manifest(out / "manifest.jsonl")
    assert rows and all(r["word"] != "yes" for r in rows)
    failed = rec["unsynthesisable"]
    planned_yes = [c for c in kw.plan_clips(kw.PRESETS["smoke"], kw._resolve_counts(
        kw.PRESETS["smoke"], None), kw._resolve_voices(kw.PRESETS["smoke"], None)[1], SEED)
        if c.word == "yes"]
    assert sorted(f["path"] for f in failed) == sorted(c.path for c in planned_yes)
    assert all(not (out / f["path"]).exists() for f in failed)
    assert len(rows) + len(failed) == sum(rec["clips"].values())
    assert json.loads((out / "generator.json").read_text())["unsynthesisable"] == failed
    # each failing clip was tried as planned, then at neutral settings (rate 1.0 last)
    assert any(rate == 1.0 for _, rate in calls)
