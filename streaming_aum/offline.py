"""Offline (whole-file) classification: audio -> the model's input features -> scores.

One function per step so streaming and export can reuse them: ``model_norm`` picks the
normalisation, ``features_for_model`` applies the official pad/crop rule for grid models, and
``classify_waveform`` returns logits and probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .audio_constants import SAMPLE_RATE
from .audio_io import load_audio
from .features import NORM_PRESETS, waveform_to_features
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
    to the model's ``spectrogram_frames`` in the log-mel domain. ``freq_rows`` (streaming) models
    take every frame, without clip-level DC removal (the streaming front end cannot know it).
    """
    cfg = model.config
    grid = cfg.pos_embed == "grid"
    return waveform_to_features(waveform, preset=model_norm(model, norm),
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
