"""Background and event banks for augmentation and long streams (data.md 1.2, 1.4, 5.2, A.3).

Both banks hold 16 kHz mono float32 arrays of one bank half (``train`` or ``test``, which never
share a source; see :mod:`streaming_aum.data.splits`):

* **ambience beds** (:class:`BackgroundBank`): real non-speech recordings of at least 2 s made by
  :func:`streaming_aum.data.fetch.fetch_ambience`, plus coloured noise
  (:func:`streaming_aum.data.noise.colored_noise`); samples are unit RMS;
* **event sounds** (:class:`EventBank`): short class-labelled recordings from the same fetch plus
  the procedural classes of :mod:`streaming_aum.data.procedural`, so a stream always has "other
  sounds" even when nothing was fetched.

They load ``ambience.jsonl`` / ``events.jsonl`` and the wavs they list from the cache written by
``aum data background`` (manifests through :mod:`streaming_aum.data.manifest_io`, shared with
:mod:`streaming_aum.data.fetch` and :mod:`streaming_aum.data.rooms`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from streaming_aum.audio_constants import SAMPLE_RATE
from streaming_aum.audio_io import resample
from streaming_aum.data.noise import (
    NOISE_KINDS, SILENT_PEAK, _check_rng, colored_noise, loop_to_length, rms)
from streaming_aum.data.procedural import PROCEDURAL_CLASSES, procedural_event
from streaming_aum.data.manifest_io import read_jsonl
from streaming_aum.data.splits import bank_split
from streaming_aum.errors import ConfigError

__all__ = [
    "BackgroundBank",
    "EventBank",
]

P_AMBIENCE: float = 0.6  # BackgroundBank.sample: real ambience vs coloured noise
P_PROCEDURAL: float = 0.25  # EventBank.sample: procedural vs recorded when both exist


def _load_bank_rows(cache_dir: str | os.PathLike[str], manifest: str, split: str) -> list[dict]:
    path = Path(cache_dir) / manifest
    if not path.exists():
        raise ConfigError(f"no {manifest} in {cache_dir}; build the banks with `aum data "
                          f"background --cache {cache_dir}` (or use the noise-only/procedural banks)")
    half = bank_split(split)
    return [r for r in read_jsonl(path) if r["split"] == half]


def _read_wav(path: Path) -> np.ndarray:
    y, rate = sf.read(str(path), dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if rate != SAMPLE_RATE:
        y = resample(torch.from_numpy(np.ascontiguousarray(y)), int(rate), SAMPLE_RATE).numpy()
    return np.asarray(y, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# banks
# --------------------------------------------------------------------------------------------


@dataclass
class BackgroundBank:
    """Ambience beds of one split (16 kHz float32 arrays) plus coloured noise.

    ``sample(n, rng)`` returns unit-RMS background: with probability ``p_ambience`` a random
    segment of a random ambience file (looped with a crossfade when shorter than ``n``), else
    white/pink/brown noise. Without ambience it is always noise.
    """

    ambience: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    split: str = "train"
    p_ambience: float = P_AMBIENCE

    @classmethod
    def load(cls, cache_dir: str | os.PathLike[str], split: str) -> "BackgroundBank":
        """The ambience files of ``split``'s half (``train``/``val`` -> train, ``test*`` -> test)."""
        rows = _load_bank_rows(cache_dir, "ambience.jsonl", split)
        arrays = [_read_wav(Path(cache_dir) / r["path"]) for r in rows]
        return cls(arrays, [r["path"] for r in rows], bank_split(split))

    @classmethod
    def noise_only(cls, split: str = "train") -> "BackgroundBank":
        """A bank with no recordings: every sample is coloured noise."""
        return cls([], [], bank_split(split))

    def __len__(self) -> int:
        return len(self.ambience)

    def sample_ambience(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """A unit-RMS ambience segment ``(n,)`` and its name (coloured noise if the bank is empty)."""
        rng = _check_rng(rng)
        if self.ambience:
            i = int(rng.integers(len(self.ambience)))
            x = self.ambience[i]
            seg = loop_to_length(x, n, int(rng.integers(x.size)))
            r = rms(seg)
            if r > SILENT_PEAK * 0.1:
                return (seg / r).astype(np.float32), self.names[i]
        kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
        return colored_noise(n, kind, rng), f"noise:{kind}"

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Unit-RMS background, float32 ``(n,)``: ambience (p=p_ambience) or coloured noise."""
        rng = _check_rng(rng)
        if self.ambience and rng.random() < self.p_ambience:
            return self.sample_ambience(n, rng)[0]
        kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
        return colored_noise(n, kind, rng)


@dataclass
class EventBank:
    """Class-labelled event sounds of one split: recordings plus the procedural classes.

    ``sample(rng)`` returns ``(wave float32 (n,), class, source)``: a procedural event with
    probability ``p_procedural`` (always when there are no recordings), else a recording of a
    uniformly drawn class (class-balanced: UI chimes would otherwise dominate).
    """

    waves: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    split: str = "train"
    p_procedural: float = P_PROCEDURAL

    @classmethod
    def load(cls, cache_dir: str | os.PathLike[str], split: str,
             p_procedural: float = P_PROCEDURAL) -> "EventBank":
        rows = _load_bank_rows(cache_dir, "events.jsonl", split)
        waves = [_read_wav(Path(cache_dir) / r["path"]) for r in rows]
        return cls(waves, [r["class"] for r in rows],
                   [f"{r['package']}/{r['source']}" for r in rows], bank_split(split), p_procedural)

    @classmethod
    def procedural_only(cls, split: str = "train") -> "EventBank":
        return cls([], [], [], bank_split(split), 1.0)

    def __len__(self) -> int:
        return len(self.waves)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
        rng = _check_rng(rng)
        if not self.waves or rng.random() < self.p_procedural:
            kind = PROCEDURAL_CLASSES[int(rng.integers(len(PROCEDURAL_CLASSES)))]
            return procedural_event(kind, rng, self.split), kind, f"procedural:{kind}:{self.split}"
        classes = sorted(set(self.labels))
        cls = classes[int(rng.integers(len(classes)))]  # class-balanced: class first, then file
        members = [i for i, lab in enumerate(self.labels) if lab == cls]
        i = members[int(rng.integers(len(members)))]
        return self.waves[i], self.labels[i], self.sources[i]
