"""The AudioMamba network and its parts."""

from .audio_mamba import AudioMamba, Block
from .mixer import BiMambaMixer, MixerState
from .norm import RMSNorm

__all__ = ["AudioMamba", "BiMambaMixer", "Block", "MixerState", "RMSNorm"]
