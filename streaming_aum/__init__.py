"""streaming_aum: real-time audio classification with Audio Mamba (AuM, arXiv 2406.03344)."""

from __future__ import annotations

__version__ = "0.1.0"
