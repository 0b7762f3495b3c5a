"""Keyword vocabularies and the label views of the synthetic keyword-spotting data.

One generator makes clips of single spoken words; the task decides how a word becomes a label:

* **KWS-37** (``kws37``): the 35 Speech Commands v2 words, plus ``_unknown_`` and ``_silence_``;
* **KWS-12** (``kws12``, the SC v2-12 protocol used for streaming): the 10 command words, plus
  ``_unknown_`` (the other 25 SC words and :data:`UNKNOWN_EXTRA`) and ``_silence_``.

Recipe: shared/docs/data.md section 5.1.
"""

from __future__ import annotations

from streaming_aum.errors import ConfigError

__all__ = [
    "COMMANDS10",
    "KWS12_LABELS",
    "KWS37_LABELS",
    "SC35",
    "SILENCE",
    "TASKS",
    "UNKNOWN",
    "UNKNOWN_EXTRA",
    "label_for",
]

SILENCE: str = "_silence_"  # 1 s of background / noise only
UNKNOWN: str = "_unknown_"  # any word that is not a class of the task

COMMANDS10: list[str] = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]

# The Speech Commands v2 list, in data.md's order: commands, digits, then the auxiliary words.
SC35: list[str] = COMMANDS10 + [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual",
]

# Extra non-keyword words for ``_unknown_``: the near-misses of data.md 5.1 first (words that
# sound like a keyword), then common English words. None of them is an SC35 word.
_NEAR_MISSES: list[str] = [
    "know", "now", "yet", "yep", "cup", "dub", "top", "stock", "goal", "gone", "often", "of",
    "lift", "light", "write", "bright", "town", "dawn", "cap", "kit", "bet", "tray", "free",
    "wall", "mouse", "martin", "shelter", "fortune", "hollow", "lean", "visible", "apple",
    "window",
]
_MORE_NEAR_MISSES: list[str] = [
    "yell", "nope", "knee", "pup", "loft", "fight", "own",
    "shop", "step", "grow", "glow", "hero", "won", "ten", "through", "tea", "floor",
    "hive", "fix", "seventy", "ate", "line", "bad", "bud", "curd", "hat", "dug", "hippy",
    "horse", "marble", "sheet", "vow", "back", "for", "fellow", "lawn", "usual",
]
_COMMON: list[str] = [
    "water", "paper", "garden", "table", "chair", "music", "river", "mountain", "orange",
    "banana", "yellow", "purple", "silver", "morning", "evening", "weather", "summer", "winter",
    "spring", "autumn", "doctor", "teacher", "pencil", "letter", "number", "camera", "planet",
    "rocket", "bottle", "kitchen", "jacket", "pocket", "basket", "monkey", "rabbit", "tiger",
    "turtle", "dragon", "castle", "bridge", "island", "forest", "desert", "ocean", "cloud",
    "thunder", "rainbow", "candle", "button", "ladder", "mirror", "pillow", "blanket", "carpet",
    "engine", "signal", "picture", "coffee", "butter", "cookie", "dinner", "market", "village",
    "city", "street", "travel", "ticket", "station", "airport", "office", "money", "power",
    "energy", "simple", "little", "quiet", "gentle", "quick", "slow", "early", "later", "maybe",
    "always", "never", "together", "hello", "thanks", "please", "sorry", "welcome", "nothing",
    "something", "people", "family", "friend", "brother", "sister", "mother", "father", "baby",
]

UNKNOWN_EXTRA_SIZE: int = 150
UNKNOWN_EXTRA: list[str] = list(dict.fromkeys(_NEAR_MISSES + _MORE_NEAR_MISSES + _COMMON))[
    :UNKNOWN_EXTRA_SIZE]

KWS12_LABELS: list[str] = COMMANDS10 + [UNKNOWN, SILENCE]
KWS37_LABELS: list[str] = SC35 + [UNKNOWN, SILENCE]
TASKS: dict[str, list[str]] = {"kws12": KWS12_LABELS, "kws37": KWS37_LABELS}

assert len(set(SC35)) == 35, "SC35 must hold 35 distinct words"
assert not set(UNKNOWN_EXTRA) & set(SC35), "UNKNOWN_EXTRA must not contain an SC35 word"


def label_for(word: str, task: str) -> str:
    """The label of a spoken ``word`` (or :data:`SILENCE`) under ``task`` (``kws12``/``kws37``).

    Returns the word itself when it is a class of the task, :data:`SILENCE` for silence, and
    :data:`UNKNOWN` for any other word.

    Raises:
        ConfigError: ``task`` is not one of :data:`TASKS`.
    """
    try:
        labels = TASKS[task]
    except KeyError:
        raise ConfigError(
            f"unknown keyword task {task!r}; accepted: {', '.join(sorted(TASKS))}") from None
    if word == SILENCE:
        return SILENCE
    if word in labels and word != UNKNOWN:
        return word
    return UNKNOWN
