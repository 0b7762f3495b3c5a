"""Offline (whole-file) classification: audio -> the model's input features -> scores.

One function per step so streaming and export can reuse them: ``model_norm`` picks the
normalisation, ``features_for_model`` applies the official pad/crop rule for grid models, and
``classify_waveform`` returns logits and probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .audio_constants import FRAME_SAMPLES, SAMPLE_RATE
from .audio_io import load_audio, validate_waveform
from .features import NORM_PRESETS, waveform_to_features
from .ops.fbank_fused_cpu import fbank_frames_fused
from .ops.scan_fused_cpu import HAVE_NUMBA
from .errors import ConfigError
from .model import AudioMamba


def model_norm(model: AudioMamba, override: str | None = None) -> str:
    """The normalisation preset for a model: ``override``, else its config's, else AudioSet."""
    name = override or model.config.extra.get("norm", "audioset")
    if name not in NORM_PRESETS:
        raise ConfigError(f"unknown normalisation preset {name!r}; choose one of "
                          f"{sorted(NORM_PRESETS)}")
    return name


def features_for_model(model: AudioMamba, waveform: torch.Tensor, *,
                       norm: str | None = None) -> torch.Tensor:
    """(n,) samples at 16 kHz -> (T, F) normalised features the model accepts.

    Grid (official) models get the official pipeline: clip DC removed, zero-padded or cropped
    to the model's ``spectrogram_frames`` in the log-mel domain, bit for bit torchaudio's fbank.
    ``freq_rows`` (streaming) models take every frame, without clip-level DC removal (the
    streaming front end cannot know it), computed as the streaming front end computes them
    (``ops.fbank_fused_cpu``: the same frames, each from its own samples alone, within ~1e-7 of
    the op-for-op fbank and several times cheaper), so offline and streaming features agree
    exactly and windowed recomputation pays no more for its features than a hop does.
    """
    cfg = model.config
    preset = model_norm(model, norm)
    if cfg.pos_embed != "grid" and HAVE_NUMBA:
        w = validate_waveform(waveform, min_samples=FRAME_SAMPLES, reason="one fbank frame")
        stats = NORM_PRESETS[preset]
        return fbank_frames_fused(w, mean=stats.mean, std=stats.std)
    grid = cfg.pos_embed == "grid"
    return waveform_to_features(waveform, preset=preset,
                                target_frames=cfg.spectrogram_frames if grid else None,
                                remove_clip_dc=grid)


@dataclass
class Classification:
    """Scores of one audio span: ``logits``/``probs`` (C,), times in seconds."""

    t_start: float
    t_end: float
    logits: torch.Tensor
    probs: torch.Tensor


def classify_waveform(model: AudioMamba, waveform: torch.Tensor, *,
                      norm: str | None = None) -> Classification:
    """Whole-waveform offline result; ``waveform`` is (n,) float32 at 16 kHz."""
    feats = features_for_model(model, waveform, norm=norm)
    with torch.inference_mode():
        logits = model(feats.unsqueeze(0))[0]
    return Classification(0.0, waveform.shape[0] / SAMPLE_RATE, logits, model.probabilities(logits))


def classify_file(model: AudioMamba, path: str | Path, *, norm: str | None = None
                  ) -> Classification:
    return classify_waveform(model, load_audio(path), norm=norm)
