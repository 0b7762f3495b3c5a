"""Real ambience and event recordings from Debian packages (data.md 1.2, 6, A.4).

:func:`fetch_ambience` downloads packages (``apt-get download``, never installed), unpacks them
(``dpkg -x``), pulls sounds out of GCompris Qt ``.rcc`` files (:func:`rcc_extract`), labels each
file by its path (:func:`classify_path`: speech, voices and music excluded), decodes it to 16 kHz
mono (:func:`decode_16k_mono`) and writes the ambience (at least ``AMBIENCE_MIN_S`` s) and event
(``EVENT_MIN_S``..``EVENT_MAX_S`` s) banks read by :mod:`streaming_aum.data.background`.

Cache layout under ``cache_dir``::

    deb/*.deb                      downloaded packages (apt-get download, never installed)
    unpacked/<package>/...         dpkg -x of each package
    rcc/<resource>/...             sounds pulled out of GCompris Qt .rcc resource files
    ambience/<split>/<class>/*.wav ambience beds, 16 kHz mono int16
    events/<split>/<class>/*.wav   event sounds, 16 kHz mono int16
    ambience.jsonl, events.jsonl   one row per file: path (relative to cache_dir), class, kind,
                                   package, source, licence, split, duration_s, orig_rate

Splits: a file's split comes from a stable hash of its *group* (package + file stem with digits
removed, so ``Fire1.wav``/``Fire2.wav`` and ``wolf-growl-1/-2`` stay together), 30% test.
Licences are per package (``PACKAGE_LICENCES``); see ``unpacked/<pkg>/usr/share/doc/<pkg>/copyright``
for per-file detail. Generated audio stays in the cache and is never committed.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch

from streaming_aum.audio_constants import SAMPLE_RATE
from streaming_aum.audio_io import resample
from streaming_aum.data.manifest_io import write_jsonl
from streaming_aum.data.noise import SILENT_PEAK
from streaming_aum.data.splits import BANK_SPLITS, stable_split
from streaming_aum.errors import AudioInputError, AuMError

__all__ = [
    "AMBIENCE_MIN_S",
    "DEFAULT_PACKAGES",
    "PACKAGE_LICENCES",
    "classify_path",
    "decode_16k_mono",
    "fetch_ambience",
    "rcc_extract",
]

AMBIENCE_MIN_S: float = 2.0  # ambience beds are at least this long
EVENT_MIN_S: float = 0.05
EVENT_MAX_S: float = 8.0  # longer "event" files are dropped (mostly jingles)

DEFAULT_PACKAGES: tuple[str, ...] = (
    "minetest-data",  # 3.6 MB: footsteps per surface, doors, fire, water/lava beds, glass, tnt
    "sound-theme-freedesktop",  # 0.4 MB: bell, phone, alarm clock, camera shutter
    "oxygen-sounds",  # 1.9 MB: phone ring and UI chimes
    "lincity-ng-data",  # 45 MB: ~4 s loops of traffic, industry, water, fire, crowd, farm, train
    "gcompris-qt-data",  # 44 MB: farm animals, rain, factory, train, door, bark, gong (.rcc)
    "wesnoth-1.16-data",  # 146 MB: ambient beds (birds, campfire, night, ship), explosion, wolf
)  # 241 MB of .deb in all

PACKAGE_LICENCES: dict[str, str] = {
    "minetest-data": "CC-BY-SA-3.0 (*.ogg; doors CC-BY-3.0)",
    "sound-theme-freedesktop": "CC-BY-SA-3.0 / CC-BY-3.0 / GPL-2+ (per file)",
    "oxygen-sounds": "LGPL-3.0-or-later",
    "lincity-ng-data": "GPL-2+",
    "gcompris-qt-data": "GPL-3+ / CC-BY(-SA) (per file)",
    "wesnoth-1.16-data": "GPL-2+",
}

AUDIO_EXTENSIONS: tuple[str, ...] = (".ogg", ".oga", ".wav", ".flac")
GCOMPRIS_RCC_DIR = "usr/share/gcompris-qt/rcc"

# Speech, voices, music and instruments never enter a bank (checked before the class rules):
# spoken channel tests, wesnoth unit grunts (-hit/-die/human), lincity loops of people talking
# (school, market, residential, ...), GCompris instruments and world music, game music.
EXCLUDE_RE = re.compile(
    r"(/music/|explore_world_music|/instruments?/|/voices?[-_/]|audio-channel|audio-test-signal|"
    r"wardrums|guitar|fanfare|witch|laugh|intro\.ogg|-die|-hit|human|groan|ugg\.wav|wail|"
    r"school|residential|market|university|health|commune|shanty|youcannot|tuxok|weird|lapause)"
)

# (class, role, regex on the lower-cased "package/relative/path"); the first match wins.
# role "ambience": kept if >= AMBIENCE_MIN_S; role "event": kept if EVENT_MIN_S..EVENT_MAX_S.
CLASS_RULES: tuple[tuple[str, str, str], ...] = (
    # ambience beds
    ("rain", "ambience", r"rain_in_garden|frogsinpond"),
    ("harbor", "ambience", r"harbor\d*\.wav|ambient/ship\.ogg"),
    ("water", "ambience", r"env_sounds_water|/water\d\.wav|parklandlake|water_fill"),
    ("fire", "ambience", r"fire_(fire|large|small)|/fire\d\.wav|firestation|firewasteland|"
                         r"campfire|furnace_active|env_sounds_lava"),
    ("traffic", "ambience", r"trafic|dirttrack"),
    ("train", "ambience", r"railtrain|train_slowing|railroad/.*train\.wav"),
    ("industry", "ambience", r"industry|factory_noise|coalmine|oremine|powercoal|blacksmith|"
                             r"/mill\d|windmill|recycle|/tip\d|monumentconstruction|substation\d|"
                             r"/rocket\d|rockettakeoff|/build\d"),
    ("crowd", "ambience", r"sportscroud"),
    ("birds", "ambience", r"ambient/(birds\d|morning)\.ogg|/green\d\.wav|parklandplane"),
    ("night_insects", "ambience", r"ambient/night\.ogg"),
    ("farm", "ambience", r"(organic)?farm\d\.wav"),
    # events
    ("footsteps", "event", r"footstep|icy_walk"),
    ("door", "event", r"door_open|door_close|doors_|fencegate"),
    ("knock", "event", r"knock"),
    ("bell_chime", "event", r"/bell\.(oga|wav)$|gong"),
    ("phone_alarm", "event", r"phone|alarm-clock|lrring_"),
    ("dog", "event", r"/dog\.ogg|bark_"),
    ("cat", "event", r"/cat\.ogg"),
    ("cow", "event", r"/cow\.ogg"),
    ("pig", "event", r"/pig\.ogg"),
    ("sheep", "event", r"/sheep\.ogg"),
    ("horse", "event", r"/horse\.ogg|horse-canter"),
    ("duck", "event", r"/duck\.ogg"),
    ("chicken", "event", r"/chickens?\.ogg"),
    ("bird", "event", r"/owl\.ogg"),
    ("wolf", "event", r"wolf-growl"),
    ("explosion", "event", r"explo|tnt_explode|fireballs"),
    ("gunshot", "event", r"gunshot"),
    ("glass_break", "event", r"break_glass"),
    ("thunder", "event", r"/lightning\.ogg|/rumble\.ogg"),
    ("car", "event", r"carengine|/car\.wav|cart_moving"),
    ("helicopter", "event", r"helicopter"),
    ("heartbeat", "event", r"heart_beat"),
    ("applause", "event", r"applause"),
    ("water_drop", "event", r"/drip\.wav|/bubble\.wav"),
    ("camera_shutter", "event", r"camera-shutter|screen-capture"),
    ("impact", "event", r"object_falling|hits_\d|/crash\.wav|metal_hit|pickaxe|place_node|"
                        r"/brick\.wav|cave-in|dig_choppy|dig_cracky"),
    ("metal_hit", "event", r"/sword-\d\.ogg|/mace\.(ogg|wav)|/axe\.ogg"),
    ("horn", "event", r"horn-signals/horn-\d"),
    ("ui_sound", "event", r"oxygen-(im|sys|window|k3b)|stereo/(complete|message|dialog-|device-|"
                          r"service-|trash-empty|suspend-error|power-)"),
)
_CLASS_RULES_RE = tuple((c, role, re.compile(rx)) for c, role, rx in CLASS_RULES)


def _group_key(package: str, rel_path: str) -> str:
    """Package + file stem with digit runs removed: numbered variants of one recording share a split."""
    stem = Path(rel_path).stem.lower()
    stem = re.sub(r"\d+", "", stem)
    stem = re.sub(r"[-_. ]+", "_", stem).strip("_")
    return f"{package}/{stem}"


def rcc_extract(path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Path]:
    """Extract the files of a Qt ``.rcc`` resource whose names end in ``extensions`` (data.md A.4).

    Handles format versions 1-3 and zlib-compressed entries; zstd entries (flag 4, not used by
    GCompris 3.1) are skipped. Returns the written paths (existing ones are kept, not rewritten).
    """
    b = Path(path).read_bytes()
    if b[:4] != b"qres":
        raise AudioInputError(f"{path} is not a Qt resource file (no 'qres' magic)")
    ver, tree, data, names = struct.unpack(">IIII", b[4:20])
    node = 14 if ver == 1 else 22
    out: list[Path] = []

    def name(off: int) -> str:
        o = names + off
        (ln,) = struct.unpack(">H", b[o:o + 2])
        return b[o + 6:o + 6 + 2 * ln].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        i, prefix = stack.pop()
        o = tree + i * node
        noff, flags = struct.unpack(">IH", b[o:o + 6])
        p = f"{prefix}/{name(noff)}" if i else ""
        if flags & 2:  # directory
            cnt, first = struct.unpack(">II", b[o + 6:o + 14])
            stack.extend((c, p) for c in range(first, first + cnt))
            continue
        if not p.lower().endswith(extensions) or flags & 4:
            continue
        target = Path(out_dir) / p.lstrip("/")
        if not target.exists():
            d = data + struct.unpack(">I", b[o + 10:o + 14])[0]
            (size,) = struct.unpack(">I", b[d:d + 4])
            blob = b[d + 4:d + 4 + size]
            if flags & 1:
                blob = zlib.decompress(blob[4:])
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(blob)
            tmp.replace(target)
        out.append(target)
    return sorted(out)


def classify_path(key: str) -> tuple[str, str] | None:
    """``(class, role)`` for a ``package/relative/path`` key, or None (excluded or unlabelled)."""
    k = key.lower()
    if EXCLUDE_RE.search(k):
        return None
    for cls, role, rx in _CLASS_RULES_RE:
        if rx.search(k):
            return cls, role
    return None


def _download(packages: Sequence[str], deb_dir: Path, log: list[str]) -> dict[str, Path]:
    deb_dir.mkdir(parents=True, exist_ok=True)
    have: dict[str, Path] = {}
    for pkg in packages:
        found = sorted(deb_dir.glob(f"{pkg}_*.deb"))
        if not found:
            try:
                res = subprocess.run(["apt-get", "download", pkg], cwd=deb_dir, capture_output=True,
                                     text=True, timeout=1200)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.append(f"{pkg}: apt-get download failed ({exc})")
                continue
            found = sorted(deb_dir.glob(f"{pkg}_*.deb"))
            if res.returncode != 0 or not found:
                log.append(f"{pkg}: apt-get download failed: {res.stderr.strip()[-300:]}")
                continue
        have[pkg] = found[-1]
    return have


def _unpack(pkg: str, deb: Path, root: Path, log: list[str]) -> Path | None:
    dest = root / pkg
    marker = dest / ".unpacked"
    if marker.exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    try:
        res = subprocess.run(["dpkg", "-x", str(deb), str(dest)], capture_output=True, text=True,
                             timeout=1200)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.append(f"{pkg}: dpkg -x failed ({exc})")
        return None
    if res.returncode != 0:
        log.append(f"{pkg}: dpkg -x failed: {res.stderr.strip()[-300:]}")
        return None
    marker.write_text(deb.name + "\n")
    return dest


def _candidates(pkg: str, unpacked: Path, rcc_root: Path) -> list[tuple[str, Path]]:
    """``(key, file)`` pairs: key = ``package/relative/path`` (rcc entries: ``package/rcc/name/...``)."""
    out: list[tuple[str, Path]] = []
    for f in sorted(unpacked.rglob("*")):
        if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS:
            out.append((f"{pkg}/{f.relative_to(unpacked).as_posix()}", f))
    rcc_dir = unpacked / GCOMPRIS_RCC_DIR
    if rcc_dir.is_dir():
        for rcc in sorted(rcc_dir.glob("*.rcc")):
            dest = rcc_root / rcc.stem
            marker = rcc_root / f".{rcc.stem}.done"
            if not marker.exists():
                rcc_extract(rcc, dest)
                rcc_root.mkdir(parents=True, exist_ok=True)
                marker.write_text("ok\n")
            if dest.is_dir():
                for f in sorted(dest.rglob("*")):
                    if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS:
                        out.append((f"{pkg}/rcc/{rcc.stem}/{f.relative_to(dest).as_posix()}", f))
    return out


def decode_16k_mono(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Decode any libsndfile-readable file to 16 kHz mono float32 ``(n,)``; returns (audio, orig_rate)."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise AudioInputError(f"cannot decode {path} ({exc})") from exc
    if data.size == 0:
        raise AudioInputError(f"{path} holds no samples")
    mono = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    y = resample(mono, int(rate), SAMPLE_RATE).numpy().astype(np.float32)
    if not np.all(np.isfinite(y)):
        raise AudioInputError(f"{path} decodes to NaN/Inf samples")
    return y, int(rate)


def fetch_ambience(cache_dir: str | os.PathLike[str],
                   packages: Sequence[str] = DEFAULT_PACKAGES) -> dict:
    """Download, unpack, classify and decode real recordings into the ambience and event banks.

    Runs ``apt-get download`` (no install, no scripts) for each package missing from
    ``cache_dir/deb``, ``dpkg -x`` into ``cache_dir/unpacked/<package>``, extracts GCompris
    ``.rcc`` sounds, keeps the files that a rule of :data:`CLASS_RULES` labels (speech, voice and
    music excluded), decodes them to 16 kHz mono and writes them as int16 wav under
    ``cache_dir/{ambience,events}/<split>/<class>/`` with the manifests ``ambience.jsonl`` and
    ``events.jsonl``. Idempotent: packages, unpacked trees and decoded files that exist are reused;
    the manifests are rewritten from what is on disk.

    Returns a summary: counts per bank/split/class, total seconds, packages used, and a ``log`` of
    problems (a package that failed to download is reported there and skipped).

    Raises:
        AuMError: when no package could be obtained at all.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    debs = _download(list(packages), cache / "deb", log)
    if not debs:
        raise AuMError(f"none of the packages {', '.join(packages)} could be downloaded with "
                       f"apt-get download into {cache / 'deb'}: " + "; ".join(log))
    rows: dict[str, list[dict]] = {"ambience": [], "events": []}
    for pkg, deb in debs.items():
        unpacked = _unpack(pkg, deb, cache / "unpacked", log)
        if unpacked is None:
            continue
        for key, src in _candidates(pkg, unpacked, cache / "rcc"):
            label = classify_path(key)
            if label is None:
                continue
            cls, role = label
            row = _bank_file(cache, pkg, key, src, cls, role, log)
            if row is not None:
                rows["ambience" if role == "ambience" else "events"].append(row)
    summary: dict = {"packages": sorted(debs), "log": log}
    for bank, bank_rows in rows.items():
        bank_rows.sort(key=lambda r: r["path"])
        write_jsonl(cache / f"{bank}.jsonl", bank_rows)
        summary[bank] = _count(bank_rows)
    return summary


def _bank_file(cache: Path, pkg: str, key: str, src: Path, cls: str, role: str,
               log: list[str]) -> dict | None:
    split = stable_split(_group_key(pkg, key))
    bank = "ambience" if role == "ambience" else "events"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key.split("/", 1)[1].replace("/", "__"))
    out = cache / bank / split / cls / f"{pkg}__{Path(safe).stem}.wav"
    if out.exists():
        n = sf.info(str(out)).frames
        orig_rate = int(sf.info(str(src)).samplerate)
    else:
        try:
            y, orig_rate = decode_16k_mono(src)
        except AudioInputError as exc:
            log.append(str(exc))
            return None
        dur = y.size / SAMPLE_RATE
        if float(np.max(np.abs(y))) < SILENT_PEAK:
            return None
        if role == "ambience" and dur < AMBIENCE_MIN_S:
            return None
        if role == "event" and not (EVENT_MIN_S <= dur <= EVENT_MAX_S):
            return None
        peak = float(np.max(np.abs(y)))
        if peak > 1.0:
            y = y / peak
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.stem + ".part.wav")
        sf.write(str(tmp), y, SAMPLE_RATE, subtype="PCM_16")
        tmp.replace(out)
        n = y.size
    return {"path": out.relative_to(cache).as_posix(), "class": cls, "kind": role,
            "package": pkg, "source": key.split("/", 1)[1], "licence": PACKAGE_LICENCES.get(
                pkg, f"see usr/share/doc/{pkg}/copyright"), "split": split,
            "duration_s": round(n / SAMPLE_RATE, 3), "orig_rate": orig_rate}


def _count(rows: list[dict]) -> dict:
    out: dict = {"files": len(rows), "seconds": round(sum(r["duration_s"] for r in rows), 1)}
    for split in BANK_SPLITS:
        sel = [r for r in rows if r["split"] == split]
        classes: dict[str, int] = {}
        for r in sel:
            classes[r["class"]] = classes.get(r["class"], 0) + 1
        out[split] = {"files": len(sel), "seconds": round(sum(r["duration_s"] for r in sel), 1),
                      "classes": dict(sorted(classes.items()))}
    return out
