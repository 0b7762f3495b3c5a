"""Which bank half, ``train`` or ``test``, a data split or a recorded source uses (data.md 1.2).

:func:`bank_split` maps a data split (``train``/``val`` -> ``train``, ``test``/``test_*`` ->
``test``); :func:`stable_split` puts about ``TEST_FRACTION`` (30%) of source keys in ``test`` by a
stable hash of the key, so a source never changes half between runs. Pure functions of strings.
"""

from __future__ import annotations

import hashlib

from streaming_aum.errors import ConfigError

__all__ = [
    "BANK_SPLITS",
    "TEST_FRACTION",
    "bank_split",
    "stable_split",
]

BANK_SPLITS: tuple[str, ...] = ("train", "test")
TEST_FRACTION: float = 0.3  # share of source groups that go to the test half (70/30)


def bank_split(split: str) -> str:
    """The bank half a data split draws from: ``train``/``val`` -> ``train``, ``test*`` -> ``test``."""
    if split in ("train", "val"):
        return "train"
    if split == "test" or split.startswith("test_"):
        return "test"
    raise ConfigError(f"unknown split {split!r}; accepted: train, val, test, test_voice, "
                      f"test_engine")


def stable_split(key: str, test_fraction: float = TEST_FRACTION) -> str:
    """``'test'`` for about ``test_fraction`` of keys, else ``'train'``; a pure function of ``key``."""
    h = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 2**32
    return "test" if h < test_fraction else "train"
