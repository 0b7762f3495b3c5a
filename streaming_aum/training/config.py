"""The training configuration: one readable TOML file, checked completely before any work starts.

Example (``configs/kws12_small.toml`` is the default model's)::

    [model]
    embed_dim = 96          # or init_from = "aum_base_audioset.pth" to fine-tune
    depth = 4
    mixer = "v2"
    norm = "speechcommands"

    [data]
    kind = "keywords"       # `aum data keywords` output; or "folder": one sub-folder per class
    clips = "~/.cache/streaming_aum/kws"
    task = "kws12"
    background = "~/.cache/streaming_aum/background"   # optional: ambience, events, rooms

    [streams]               # streaming-layout models: also train on stream segments
    fraction = 0.5
    window_s = 1.28

    [train]
    epochs = 20
    batch_size = 64
    lr = 2e-3
    out = "runs/kws12"

Relative paths are taken relative to the config file's folder; ``~`` is expanded.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..audio_constants import SAMPLE_RATE, SAMPLES_PER_COLUMN
from ..errors import ConfigError

DATA_KINDS = ("keywords", "folder")


@dataclass
class ModelSection:
    """The network. ``init_from`` (an official checkpoint or a saved model directory) replaces
    the size settings: its weights are loaded and a fresh head is made for the task's classes."""

    embed_dim: int = 96
    depth: int = 4
    mixer: str = "v2"
    d_state: int = 16
    layout: str = "streaming"  # "streaming" (time-major, freq_rows, mean pool) or "official"
    init_from: str = ""
    input_frames: int = 0  # official layout / init_from: the position grid length (0: as saved)
    norm: str = "speechcommands"


@dataclass
class DataSection:
    kind: str = "keywords"
    clips: str = ""  # `aum data keywords --out` directory (kind = keywords)
    task: str = "kws12"
    train_split: str = "train"
    val_split: str = "val"
    folder: str = ""  # kind = folder: <folder>/<class>/*.wav; a stable 10% goes to validation
    val_fraction: float = 0.1
    background: str = ""  # `aum data background --cache` directory; empty: coloured noise only
    clip_s: float = 1.0


@dataclass
class AugmentSection:
    enabled: bool = True
    p_background: float = 0.8
    snr_db: list[float] = field(default_factory=lambda: [0.0, 20.0])
    p_reverb: float = 0.3
    p_telephone: float = 0.15
    peak: list[float] = field(default_factory=lambda: [0.2, 0.9])
    shift_s: float = 0.1
    p_speed: float = 0.0  # speed perturbation (data.augment.change_speed); 0 = off
    speeds: list[float] = field(default_factory=lambda: [0.9, 0.95, 1.05, 1.1])
    p_vtlp: float = 0.0  # vocal tract length perturbation of the features (data.vtlp); 0 = off
    vtlp_alpha: list[float] = field(default_factory=lambda: [0.9, 1.1])
    spec_augment: bool = True
    # curriculum (0-based epochs): clean clips only before ramp_epochs[0], the configured
    # augmentation (and stream segments) from ramp_epochs[1] on, linear in between
    ramp_epochs: list[int] = field(default_factory=lambda: [0, 0])


@dataclass
class StreamsSection:
    """Stream segments: ``context`` seconds of stream (carried forward state at inference) then
    a ``window_s`` decision window whose content sets the target; the model pools the window's
    columns exactly as ``StreamingRuntime(pool="window")`` does."""

    fraction: float = 0.5  # share of batches that are stream segments (0 disables)
    window_s: float = 1.28
    context_s: list[float] = field(default_factory=lambda: [0.0, 1.28])


@dataclass
class TrainSection:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.05
    seed: int = 0
    threads: int = 0  # torch threads per process (0: leave torch's default)
    loader_workers: int = 1  # data-loading processes (0: in the training process)
    out: str = "runs/train"
    max_batches_per_epoch: int = 0  # 0: a full pass over the training clips
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    streams: StreamsSection = field(default_factory=StreamsSection)
    train: TrainSection = field(default_factory=TrainSection)
    source: str = ""  # the file it was read from

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d

    # Derived values ---------------------------------------------------------------------
    @property
    def window_columns(self) -> int:
        return max(1, round(self.streams.window_s * SAMPLE_RATE / SAMPLES_PER_COLUMN))

    @property
    def context_columns(self) -> tuple[int, int]:
        lo, hi = (max(0, round(s * SAMPLE_RATE / SAMPLES_PER_COLUMN)) for s in self.streams.context_s)
        return lo, hi

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"{self.source or 'train config'}: {msg}")

        m, d, a, s, t = self.model, self.data, self.augment, self.streams, self.train
        need(m.layout in ("streaming", "official"),
             f"[model] layout must be 'streaming' or 'official', got {m.layout!r}")
        for name in ("embed_dim", "depth", "d_state"):
            need(_pos_int(getattr(m, name)), f"[model] {name} must be a positive integer")
        need(m.mixer in ("none", "v1", "v2"), f"[model] mixer must be none, v1 or v2, got {m.mixer!r}")
        need(d.kind in DATA_KINDS, f"[data] kind must be one of {DATA_KINDS}, got {d.kind!r}")
        if d.kind == "keywords":
            need(bool(d.clips), "[data] clips (an `aum data keywords --out` directory) is required "
                                "for kind = 'keywords'")
        else:
            need(bool(d.folder), "[data] folder (one sub-folder of audio files per class) is "
                                 "required for kind = 'folder'")
        need(0.0 < d.val_fraction < 1.0, "[data] val_fraction must lie in (0, 1)")
        need(0.1 <= d.clip_s <= 30.0, "[data] clip_s must lie in [0.1, 30] seconds")
        need(_pair(a.snr_db) and a.snr_db[0] <= a.snr_db[1], "[augment] snr_db must be [low, high]")
        need(_pair(a.ramp_epochs) and 0 <= a.ramp_epochs[0] <= a.ramp_epochs[1],
             "[augment] ramp_epochs must be [start, full] epochs, start <= full")
        need(_pair(a.peak) and 0 < a.peak[0] <= a.peak[1] <= 1.0,
             "[augment] peak must be [low, high] within (0, 1]")
        for name in ("p_background", "p_reverb", "p_telephone", "p_speed", "p_vtlp"):
            need(0.0 <= getattr(a, name) <= 1.0, f"[augment] {name} must be a probability")
        from ..data.augment import is_speed_factor

        need(isinstance(a.speeds, list) and len(a.speeds) > 0
             and all(map(is_speed_factor, a.speeds)),
             "[augment] speeds must be a list of factors in [0.5, 2], multiples of 0.05")
        from ..data.vtlp import is_alpha_range

        need(is_alpha_range(a.vtlp_alpha),
             "[augment] vtlp_alpha must be [low, high] warp factors within [0.5, 2], low <= high")
        need(0.0 <= s.fraction < 1.0, "[streams] fraction must lie in [0, 1)")
        need(s.window_s >= 0.16, "[streams] window_s must be at least one column (0.16 s)")
        need(_pair(s.context_s) and 0 <= s.context_s[0] <= s.context_s[1],
             "[streams] context_s must be [low, high] seconds, low <= high")
        need(not (s.fraction > 0 and m.layout == "official" and not m.init_from),
             "[streams] stream segments need the streaming layout; set fraction = 0")
        for name in ("epochs", "batch_size"):
            need(_pos_int(getattr(t, name)), f"[train] {name} must be a positive integer")
        need(t.lr > 0 and t.weight_decay >= 0, "[train] lr must be > 0 and weight_decay >= 0")
        need(0.0 <= t.label_smoothing < 1.0, "[train] label_smoothing must lie in [0, 1)")
        need(t.device in ("auto", "cpu", "cuda"), "[train] device must be auto, cpu or cuda")
        need(bool(t.out), "[train] out (the run directory) is required")


def _pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _pair(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


_SECTIONS = {"model": ModelSection, "data": DataSection, "augment": AugmentSection,
             "streams": StreamsSection, "train": TrainSection}
_PATH_KEYS = {("model", "init_from"), ("data", "clips"), ("data", "folder"),
              ("data", "background"), ("train", "out")}


def config_from_dict(raw: dict[str, Any], base_dir: Path | None = None,
                     source: str = "") -> TrainConfig:
    """Build and validate a :class:`TrainConfig`; unknown sections/keys are errors (typos)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a train config must be a table of sections")
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; accepted: {sorted(_SECTIONS)}")
    sections = {}
    for name, cls in _SECTIONS.items():
        values = dict(raw.get(name, {}))
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(values) - known)
        if bad:
            raise ConfigError(f"{source}: unknown key(s) {bad} in [{name}]; accepted: "
                              f"{sorted(known)}")
        for key in list(values):
            if (name, key) in _PATH_KEYS and values[key]:
                p = Path(str(values[key])).expanduser()
                if not p.is_absolute() and base_dir is not None:
                    p = base_dir / p
                values[key] = str(p)
        defaults = cls()
        for key, value in values.items():
            want = type(getattr(defaults, key))
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                values[key] = float(value)
            elif not isinstance(values[key], want) or (want is int and isinstance(value, bool)):
                raise ConfigError(f"{source}: [{name}] {key} = {value!r} must be of type "
                                  f"{want.__name__}")
        sections[name] = cls(**values)
    cfg = TrainConfig(**sections, source=source)
    cfg.validate()
    return cfg


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a TOML train config; paths in it are relative to its folder."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"train config {p} does not exist (expected a .toml file)")
    try:
        raw = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from exc
    return config_from_dict(raw, base_dir=p.resolve().parent, source=str(p))
