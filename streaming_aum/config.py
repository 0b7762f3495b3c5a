"""Typed model configuration for AudioMamba, with the paper's presets.

A config fully determines the network's shapes; it is saved as JSON next to the weights of the
project's own models, and reconstructed from tensor shapes for official checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from .audio_constants import N_MELS, OFFICIAL_TARGET_FRAMES, PATCH_SIZE
from .errors import ConfigError

MixerKind = Literal["none", "v1", "v2"]
TokenOrder = Literal["freq_major", "time_major"]
ClassToken = Literal["middle", "head", "tail", "double", "none"]
PosEmbedKind = Literal["grid", "freq_rows"]

MIXER_KINDS: tuple[str, ...] = ("none", "v1", "v2")
TOKEN_ORDERS: tuple[str, ...] = ("freq_major", "time_major")
CLASS_TOKENS: tuple[str, ...] = ("middle", "head", "tail", "double", "none")
POS_EMBED_KINDS: tuple[str, ...] = ("grid", "freq_rows")
OUTPUT_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "softmax")

# (embed_dim, depth) of the paper's sizes (aum-reference.md section 6); all use d_state 16,
# d_conv 4, expand 2 and dt_rank = ceil(D / 16).
PRESETS: dict[str, tuple[int, int]] = {
    "tiny": (192, 24),
    "small": (384, 24),
    "base": (768, 24),
}


@dataclass
class AuMConfig:
    """Every shape-determining setting of an AudioMamba.

    ``spectrogram_frames`` x ``n_mels`` is the input (T, F) the position grid is built for; a
    ``freq_rows`` model has no time-dependent parameter and accepts any number of frames.
    """

    embed_dim: int = 192
    depth: int = 24
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None  # None -> ceil(embed_dim / 16), Mamba's "auto"
    mixer: MixerKind = "v1"
    token_order: TokenOrder = "freq_major"
    class_token: ClassToken = "middle"
    pos_embed: PosEmbedKind = "grid"
    n_mels: int = N_MELS
    spectrogram_frames: int = OFFICIAL_TARGET_FRAMES
    patch_size: int = PATCH_SIZE
    num_classes: int = 527
    norm_eps: float = 1e-5
    output_activation: Literal["sigmoid", "softmax"] = "sigmoid"
    labels: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # free-form metadata (normalisation preset...)

    def __post_init__(self) -> None:
        if self.dt_rank is None:
            self.dt_rank = math.ceil(self.embed_dim / 16)
        self.validate()

    # Derived shapes -------------------------------------------------------------------------
    @property
    def d_inner(self) -> int:
        return self.expand * self.embed_dim

    @property
    def freq_patches(self) -> int:
        return self.n_mels // self.patch_size

    @property
    def time_patches(self) -> int:
        return self.spectrogram_frames // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.freq_patches * self.time_patches

    @property
    def num_prefix_tokens(self) -> int:
        return {"none": 0, "double": 2}.get(self.class_token, 1)

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        for name in ("embed_dim", "depth", "d_state", "d_conv", "expand", "dt_rank", "n_mels",
                     "spectrogram_frames", "patch_size", "num_classes"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{name} must be a positive integer, got {value!r}")
        need(self.mixer in MIXER_KINDS, f"mixer must be one of {MIXER_KINDS}, got {self.mixer!r}")
        need(self.token_order in TOKEN_ORDERS,
             f"token_order must be one of {TOKEN_ORDERS}, got {self.token_order!r}")
        need(self.class_token in CLASS_TOKENS,
             f"class_token must be one of {CLASS_TOKENS}, got {self.class_token!r}")
        need(self.pos_embed in POS_EMBED_KINDS,
             f"pos_embed must be one of {POS_EMBED_KINDS}, got {self.pos_embed!r}")
        need(self.output_activation in OUTPUT_ACTIVATIONS,
             f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {self.output_activation!r}")
        need(self.n_mels >= self.patch_size,
             f"n_mels ({self.n_mels}) must be at least patch_size ({self.patch_size})")
        need(self.spectrogram_frames >= self.patch_size,
             f"spectrogram_frames ({self.spectrogram_frames}) must be at least one patch "
             f"({self.patch_size} frames)")
        need(self.norm_eps > 0, f"norm_eps must be positive, got {self.norm_eps}")
        if self.labels is not None:
            need(len(self.labels) == self.num_classes,
                 f"labels has {len(self.labels)} entries but num_classes is {self.num_classes}")

    # (De)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AuMConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"a model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; accepted keys: {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as exc:  # pragma: no cover - dataclass signature errors
            raise ConfigError(f"invalid model config: {exc}") from exc

    def replace(self, **changes: Any) -> "AuMConfig":
        data = self.to_dict()
        data.update(changes)
        if "embed_dim" in changes and "dt_rank" not in changes:
            data["dt_rank"] = None
        return AuMConfig.from_dict(data)


def preset_config(name: str, **overrides: Any) -> AuMConfig:
    """The paper's ``tiny`` / ``small`` / ``base`` sizes (official layout unless overridden)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    embed_dim, depth = PRESETS[name]
    return AuMConfig(embed_dim=embed_dim, depth=depth, **overrides)


def streaming_config(**overrides: Any) -> AuMConfig:
    """Defaults of a streaming-layout model: time-major tokens, per-row positions, mean pool."""
    base = dict(token_order="time_major", pos_embed="freq_rows", class_token="none")
    base.update(overrides)
    return AuMConfig(**base)
