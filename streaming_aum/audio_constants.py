"""Audio and patch-grid constants, each derived from the ones above it.

Every conversion between samples, fbank frames, patch columns and seconds in the package goes
through these names, so that each one is checkable arithmetic (whisper's ``audio.py`` habit).

The Kaldi fbank used by AuM (``torchaudio.compliance.kaldi.fbank`` with ``snip_edges=True``):

* frame ``i`` covers samples ``[HOP_SAMPLES * i, HOP_SAMPLES * i + FRAME_SAMPLES)``;
* ``num_frames(n) = 1 + (n - FRAME_SAMPLES) // HOP_SAMPLES`` for ``n >= FRAME_SAMPLES``, else 0.

A patch column ``t`` is ``FRAMES_PER_PATCH`` consecutive frames by all ``N_MELS`` mel bins, i.e.
``N_MELS // PATCH_SIZE`` tokens of ``PATCH_SIZE x PATCH_SIZE``.
"""

from __future__ import annotations

SAMPLE_RATE: int = 16_000  # Hz; all audio inside the package is mono float32 at this rate
FRAME_LENGTH_MS: float = 25.0
FRAME_SHIFT_MS: float = 10.0
FRAME_SAMPLES: int = int(SAMPLE_RATE * FRAME_LENGTH_MS / 1000)  # 400 samples per analysis window
HOP_SAMPLES: int = int(SAMPLE_RATE * FRAME_SHIFT_MS / 1000)  # 160 samples between frames
N_FFT: int = 512  # FRAME_SAMPLES rounded up to a power of two (Kaldi round_to_power_of_two)
N_MELS: int = 128
LOW_FREQ_HZ: float = 20.0
PREEMPHASIS: float = 0.97
LOG_FLOOR: float = 1.1920929e-07  # float32 machine epsilon, Kaldi's log floor

PATCH_SIZE: int = 16  # tokens are PATCH_SIZE x PATCH_SIZE (mel bins x frames)
FRAMES_PER_PATCH: int = PATCH_SIZE  # non-overlapping patches in time: stride 16 frames
FREQ_PATCHES: int = N_MELS // PATCH_SIZE  # 8 frequency rows F'
SAMPLES_PER_COLUMN: int = FRAMES_PER_PATCH * HOP_SAMPLES  # 2560 samples = 0.16 s of hop per column
COLUMN_SPAN_SAMPLES: int = (FRAMES_PER_PATCH - 1) * HOP_SAMPLES + FRAME_SAMPLES  # 2800 samples

OFFICIAL_TARGET_FRAMES: int = 1024  # 10.24 s of frames, the official AudioSet/VGGSound length


def num_frames(num_samples: int) -> int:
    """Number of Kaldi frames (snip_edges) in ``num_samples`` samples at SAMPLE_RATE."""
    if num_samples < FRAME_SAMPLES:
        return 0
    return 1 + (num_samples - FRAME_SAMPLES) // HOP_SAMPLES


def num_columns(num_frames_: int) -> int:
    """Number of complete patch columns in ``num_frames_`` frames (trailing frames are dropped)."""
    return max(0, num_frames_ // FRAMES_PER_PATCH)


def samples_to_seconds(num_samples: int) -> float:
    return num_samples / SAMPLE_RATE


def column_end_sample(column: int) -> int:
    """Exclusive end sample of patch column ``column``: it is available once this many samples arrived."""
    return column * SAMPLES_PER_COLUMN + COLUMN_SPAN_SAMPLES
