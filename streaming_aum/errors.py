"""Exception types: every user-facing error says what was found and what would be accepted."""

from __future__ import annotations


class AuMError(Exception):
    """Base class of the package's own errors."""


class AudioInputError(AuMError, ValueError):
    """Audio that cannot be used: empty, too short, NaN/Inf, wrong shape/dtype/rate, unreadable file."""


class CheckpointError(AuMError, ValueError):
    """A checkpoint that is not a supported format or does not fit the requested model shapes."""


class ConfigError(AuMError, ValueError):
    """An invalid model or runtime configuration."""


class StreamStateError(AuMError, ValueError):
    """A malformed streaming snapshot, or a push after ``flush()`` without ``reset()``."""


class EventInputError(AuMError, ValueError):
    """Score frames or an events file that cannot be used (times, shapes, values, header)."""
