"""streaming_aum: real-time audio classification with Audio Mamba (AuM, arXiv 2406.03344)."""

from __future__ import annotations

__version__ = "0.1.0"

# Before anything imports torch: OpenMP reads its spin-wait settings when torch loads it
from . import openmp_wait as _openmp_wait  # noqa: E402

_openmp_wait.apply()

from .config import AuMConfig, preset_config, streaming_config  # noqa: E402
from .loading import load_model, save_model  # noqa: E402
from .model import AudioMamba  # noqa: E402

__all__ = ["AuMConfig", "AudioMamba", "load_model", "preset_config", "save_model",
           "streaming_config", "__version__"]
