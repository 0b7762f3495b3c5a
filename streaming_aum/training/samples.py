"""Training examples: isolated clips and stream segments, as waveforms and as model features.

* **Clips** (``ClipSet``): 1 s keyword clips from ``aum data keywords`` (manifest rows, label by
  the task), or a user's folder with one sub-folder per class. Augmented on the fly (noise
  floor, background at an SNR, room, telephone band, gain, shift: ``data.augment``).
* **Stream segments** (``StreamSegmentMaker``): ``context`` columns of stream followed by a
  ``window`` of columns, the span ``StreamingRuntime(pool="window")`` pools at one hop. The
  window holds one whole word (keyword or other word) or no speech (background, or another
  sound); the context before it holds, half of the time, another complete word or sound, so
  that the carried forward state seen at inference (history of other words) is in the training
  distribution. The target is what the window holds; the model pools the window's columns only.

Segment arithmetic: ``n`` columns of 16 frames need ``n * SAMPLES_PER_COLUMN + (FRAME_SAMPLES -
HOP_SAMPLES)`` samples; column ``c`` covers samples ``[c * 2560, c * 2560 + 2800)``.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..audio_constants import FRAME_SAMPLES, HOP_SAMPLES, SAMPLE_RATE, SAMPLES_PER_COLUMN
from ..audio_io import load_audio
from ..errors import ConfigError
from ..features import waveform_to_features

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
SILENCE = "_silence_"
UNKNOWN = "_unknown_"


def segment_samples(columns: int) -> int:
    """Samples that make exactly ``columns`` patch columns of frames."""
    return columns * SAMPLES_PER_COLUMN + (FRAME_SAMPLES - HOP_SAMPLES)


@dataclass
class ClipItem:
    """One labelled clip: ``label`` indexes the task's classes; ``word`` is the spoken word (or
    the class name); ``onset_s``/``speech_s`` locate the speech inside the clip (None: unknown)."""

    path: Path
    label: int
    word: str
    onset_s: float | None = None
    speech_s: float | None = None


class ClipSet:
    """The clips of one split with their class indices. ``labels`` is the class list."""

    def __init__(self, items: list[ClipItem], labels: Sequence[str]) -> None:
        self.items = items
        self.labels = list(labels)

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def from_keywords(cls, clips_dir: str | Path, split: str, task: str) -> "ClipSet":
        """Rows of ``<clips_dir>/manifest.jsonl`` whose split is ``split``."""
        from ..data.words import TASKS, label_for

        root = Path(clips_dir)
        manifest = root / "manifest.jsonl"
        if not manifest.is_file():
            raise ConfigError(f"{manifest} not found: [data] clips must be a directory made by "
                              "`aum data keywords --out DIR`")
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}; accepted: {sorted(TASKS)}")
        labels = TASKS[task]
        index = {name: i for i, name in enumerate(labels)}
        items = []
        with open(manifest) as f:
            for line in f:
                if not line.strip():
                    continue
                row = json.loads(line)
                if row["split"] != split:
                    continue
                items.append(ClipItem(root / row["path"], index[label_for(row["word"], task)],
                                      row["word"], row.get("onset_s"), row.get("speech_s")))
        if not items:
            raise ConfigError(f"{manifest} has no clips of split {split!r}")
        return cls(items, labels)

    @classmethod
    def from_folder(cls, folder: str | Path, part: str, val_fraction: float) -> "ClipSet":
        """``<folder>/<class>/*.{wav,flac,ogg}``; a stable hash of each file name puts
        ``val_fraction`` of each class into ``part="val"``, the rest into ``"train"``."""
        root = Path(folder)
        if not root.is_dir():
            raise ConfigError(f"[data] folder {root} is not a directory (expected one "
                              "sub-folder of audio files per class)")
        labels = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if len(labels) < 2:
            raise ConfigError(f"[data] folder {root} has {len(labels)} class sub-folder(s); at "
                              "least 2 are needed")
        items = []
        for i, name in enumerate(labels):
            files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            if not files:
                raise ConfigError(f"class folder {root / name} holds no audio files "
                                  f"({', '.join(AUDIO_SUFFIXES)})")
            for p in files:
                in_val = (zlib.crc32(str(p.relative_to(root)).encode()) % 1000) < val_fraction * 1000
                if in_val == (part == "val"):
                    items.append(ClipItem(p, i, name))
        return cls(items, labels)


def fit_length(x: np.ndarray, n: int, rng: np.random.Generator | None) -> np.ndarray:
    """Crop (random window, or centred without ``rng``) or zero-pad (random placement) to ``n``."""
    if len(x) == n:
        return x
    if len(x) > n:
        start = (len(x) - n) // 2 if rng is None else int(rng.integers(0, len(x) - n + 1))
        return x[start:start + n]
    out = np.zeros(n, np.float32)
    start = (n - len(x)) // 2 if rng is None else int(rng.integers(0, n - len(x) + 1))
    out[start:start + len(x)] = x
    return out


def read_clip(item: ClipItem, n_samples: int, rng: np.random.Generator | None) -> np.ndarray:
    """The clip as float32 (n_samples,) at 16 kHz."""
    x = load_audio(item.path).numpy().astype(np.float32, copy=False)
    return fit_length(x, n_samples, rng)


def speech_span(item: ClipItem, x: np.ndarray) -> np.ndarray:
    """The spoken part of a clip (``onset_s`` .. ``+speech_s``), else its active span (10 ms
    frames within 35 dB of the loudest, ``data.streams.active_span``, as streams label events);
    the whole clip if that is empty (silence)."""
    if item.onset_s is not None and item.speech_s:
        a = int(round(item.onset_s * SAMPLE_RATE))
        b = int(round((item.onset_s + item.speech_s) * SAMPLE_RATE))
        if b - a >= HOP_SAMPLES:
            return x[a:b]
    from ..data.streams import active_span

    a, b = active_span(x)
    return x[a:b] if b > a else x


def features(wave: np.ndarray, norm: str, target_frames: int | None = None) -> torch.Tensor:
    """(n,) float32 at 16 kHz -> normalised log-mel (T, 128), as the model sees it at
    inference: streaming-layout models without clip DC removal and without padding, official
    layouts padded/cropped to their grid (``target_frames``) with clip DC removed."""
    return waveform_to_features(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)),
                                preset=norm, target_frames=target_frames,
                                remove_clip_dc=target_frames is not None)


class StreamSegmentMaker:
    """Builds stream segments on the fly (see the module docstring).

    Args:
        clips: the split's clips (speech is cut out of them with :func:`speech_span`).
        labels: the task's classes (must contain ``_silence_``; ``_unknown_`` if other words
            are to be placed).
        backgrounds: ``data.background.BackgroundBank`` of the split (ambience + noise).
        rirs: ``data.rooms.RirBank`` or None; ``p_reverb`` of the placed sounds get a room.
        sounds: callable ``rng -> (waveform (n,), class name)`` of non-speech events, or None.
        window_columns / context_columns: W and the (low, high) range of context columns.
        snr_db: (low, high) of each placed sound against the background.
    """

    def __init__(self, clips: ClipSet, backgrounds, *, window_columns: int,
                 context_columns: tuple[int, int], snr_db: Sequence[float] = (0.0, 20.0),
                 rirs=None, p_reverb: float = 0.3, sounds=None,
                 peak: Sequence[float] = (0.2, 0.9)) -> None:
        if SILENCE not in clips.labels:
            raise ConfigError(f"stream segments need a {SILENCE!r} class; the task has "
                              f"{clips.labels}")
        self.clips = clips
        self.labels = clips.labels
        self.silence = clips.labels.index(SILENCE)
        self.by_label: dict[int, list[int]] = {}
        for i, item in enumerate(clips.items):
            if item.word != SILENCE:
                self.by_label.setdefault(item.label, []).append(i)
        self.speech_labels = sorted(self.by_label)
        self.backgrounds = backgrounds
        self.rirs = rirs
        self.p_reverb = p_reverb
        self.sounds = sounds
        self.window_columns = window_columns
        self.context_columns = context_columns
        self.snr_db = tuple(snr_db)
        self.peak = tuple(peak)

    def _word(self, rng: np.random.Generator, label: int | None = None) -> tuple[np.ndarray, int]:
        if label is None:
            label = int(rng.choice(self.speech_labels))
        item = self.clips.items[int(rng.choice(self.by_label[label]))]
        x = load_audio(item.path).numpy().astype(np.float32, copy=False)
        return np.ascontiguousarray(speech_span(item, x)), label

    def _place(self, y: np.ndarray, x: np.ndarray, start: int, rng: np.random.Generator) -> None:
        if self.rirs is not None and rng.random() < self.p_reverb:
            from ..data.rooms import apply_rir
            x = apply_rir(x, self.rirs.sample(rng))
        from ..data.streams import snr_gain

        if not np.any(x):  # a silent sound adds nothing (and has no SNR)
            return
        lo, hi = max(0, start - SAMPLE_RATE), min(len(y), start + len(x) + SAMPLE_RATE)
        snr = rng.uniform(*self.snr_db)
        y[start:start + len(x)] += x * snr_gain(x, y[lo:hi], snr)

    def make(self, context_columns: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """One segment: (waveform (segment_samples(context + W),) float32, target class)."""
        W = self.window_columns
        n = segment_samples(context_columns + W)
        win_start = context_columns * SAMPLES_PER_COLUMN
        bed_level = 10 ** (rng.uniform(-50.0, -25.0) / 20)
        y = self.backgrounds.sample(n, rng).astype(np.float64)
        y *= bed_level / (np.sqrt(np.mean(y ** 2)) + 1e-12)
        # The window: a whole word (p 0.7, one of the speech classes uniformly), else none.
        target = self.silence
        r = rng.random()
        if r < 0.7 and self.speech_labels:
            x, target = self._word(rng)
            room = n - win_start
            if len(x) > room:  # longer than the window: keep its middle
                x = fit_length(x, room, None)
            self._place(y, x, win_start + int(rng.integers(0, room - len(x) + 1)), rng)
        elif r < 0.85 and self.sounds is not None:
            x, _ = self.sounds(rng)
            x = fit_length(np.asarray(x, np.float32), min(len(x), n - win_start), rng)
            self._place(y, x, win_start + int(rng.integers(0, n - win_start - len(x) + 1)), rng)
        # The context: another complete word or sound that ends before the window, half the time.
        if context_columns > 0 and rng.random() < 0.5:
            if self.sounds is not None and rng.random() < 0.3:
                x, _ = self.sounds(rng)
            else:
                x, _ = self._word(rng)
            x = np.asarray(x, np.float32)[: win_start]
            if len(x) > 0:
                self._place(y, x, int(rng.integers(0, win_start - len(x) + 1)), rng)
        peak = float(np.max(np.abs(y))) + 1e-12
        y *= rng.uniform(*self.peak) / peak
        from ..data.noise import noise_floor
        y += noise_floor(n, rng)
        return y.astype(np.float32), target


EVAL_FLOOR_DBFS = -60.0
"""The fixed noise floor added to clips scored clean (validation, ``aum eval``). Generated clips
are padded with digital zeros, which no microphone produces and which training never shows
(its floor is always on, data.md section 0.6): scoring them raw would test that artefact."""


def with_eval_floor(x: np.ndarray, key: str) -> np.ndarray:
    """``x`` (n,) float32 plus white Gaussian noise of RMS ``EVAL_FLOOR_DBFS`` (re full scale
    1.0), seeded by ``key`` (the clip's file name), so an evaluation is reproducible."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    floor = rng.standard_normal(len(x)) * 10 ** (EVAL_FLOOR_DBFS / 20)
    return (x + floor).astype(np.float32)
