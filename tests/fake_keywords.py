"""A tiny stand-in for `aum data keywords` output (no TTS needed): each "word" is a tone burst
of its own frequency at a random place in a 1 s clip, written with the generator's manifest
format, so training and evaluation code can be tested fast and exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def tone_word(word: str, words: list[str], rng: np.random.Generator, seconds: float = 0.3
              ) -> np.ndarray:
    k = words.index(word)
    t = np.arange(int(seconds * SR)) / SR
    f = 250.0 * (1.5 ** k)
    env = np.sin(np.pi * t / seconds) ** 2
    return (0.5 * env * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28))).astype(np.float32)


def make_fake_keywords(root: Path, words: list[str], per_word: dict[str, int], seed: int = 0
                       ) -> Path:
    """Clips of ``words`` (+ ``_silence_``) for each split in ``per_word`` (split -> count)."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, count in per_word.items():
        for word in words + ["_silence_"]:
            for i in range(count):
                y = (rng.standard_normal(SR) * 1e-3).astype(np.float32)
                onset, speech = 0.0, 0.0
                if word != "_silence_":
                    x = tone_word(word, words, rng)
                    off = int(rng.integers(0, SR - len(x)))
                    y[off:off + len(x)] += x
                    onset, speech = off / SR, len(x) / SR
                rel = f"clips/{split}/{word}/{split}_{len(rows):06d}.wav"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / rel, y, SR, subtype="PCM_16")
                rows.append({"path": rel, "split": split, "word": word, "voice_id": "tone/0",
                             "engine": "tone", "onset_s": onset, "speech_s": speech,
                             "rate": 1.0, "pitch": 0.5, "tempo": 1.0, "cents": 0.0, "seed": i})
    with open(root / "manifest.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return root
