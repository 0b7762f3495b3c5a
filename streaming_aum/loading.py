"""Loading official AuM checkpoints and the project's own saved models; saving the latter.

Official checkpoints are bare ``state_dict``s written by ``torch.save`` (optionally with DDP's
``module.`` prefix, or wrapped in ``{"model": ...}`` / ``{"state_dict": ...}``). They are read with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects. The network's shapes
are read off the tensors (aum-reference.md section 7):

* mixer kind: ``conv1d_b`` present -> v2, else ``A_b_log`` -> v1, else ``none``;
* D from ``patch_embed.proj.weight`` (D, 1, p, p); E, S from ``A_log``; K from ``conv1d.weight``;
  R from ``dt_proj.weight``; depth from ``layers.{i}``; classes from ``head.weight``;
* the position grid from ``pos_embed.pos_embed`` rows, assuming 128 mel bins as the official
  loader does; the class token sits in the middle (every official model).

The project's own models are a directory with ``model.safetensors`` and ``config.json``.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from .audio_constants import N_MELS
from .config import AuMConfig
from .errors import CheckpointError
from .model import AudioMamba
from .model.embed import resample_pos_grid

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

#: The model shipped inside the package (a small streaming-layout KWS-12 keyword spotter, see
#: its MODEL_CARD.md); ``load_model()`` with no path, and every CLI command without --model.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "default_model"


def _read_official_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
        if found is None:
            raise CheckpointError(f"{path}: not a readable torch checkpoint (corrupt or not a "
                                  "pickle). Expected a state_dict saved with torch.save, or a "
                                  f"directory with {WEIGHTS_NAME} + {CONFIG_NAME}.") from exc
        raise CheckpointError(
            f"{path}: refusing to unpickle it: it holds objects other than tensors and plain "
            f"containers ({found.group(1)}). Expected a bare state_dict saved with "
            "torch.save(model.state_dict()).") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({exc}). Expected a "
                              "state_dict saved with torch.save, or a directory with "
                              f"{WEIGHTS_NAME} + {CONFIG_NAME}.") from exc
    if isinstance(obj, dict):
        for wrapper in ("model", "state_dict"):
            if wrapper in obj and isinstance(obj[wrapper], dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: expected a non-empty state_dict (name -> tensor), found "
                              f"{type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: expected only tensors in the state_dict; "
                              f"{len(bad)} entries are not (first: {bad[0]!r})")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _need(sd: dict[str, torch.Tensor], key: str, path: Path, dims: int) -> torch.Tensor:
    if key not in sd:
        raise CheckpointError(f"{path}: not an AuM checkpoint: key {key!r} is missing "
                              f"(found keys like {sorted(sd)[:5]})")
    t = sd[key]
    if t.dim() != dims:
        raise CheckpointError(f"{path}: {key} has shape {tuple(t.shape)}; expected {dims} dims")
    return t


def config_from_official(sd: dict[str, torch.Tensor], path: Path) -> AuMConfig:
    """Reconstruct the official model's config from the tensor shapes."""
    patch_w = _need(sd, "patch_embed.proj.weight", path, 4)
    embed_dim, in_ch, p1, p2 = patch_w.shape
    if in_ch != 1 or p1 != p2:
        raise CheckpointError(f"{path}: patch_embed.proj.weight {tuple(patch_w.shape)}; expected "
                              "(D, 1, p, p)")
    depth = len({int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k))})
    if depth == 0:
        raise CheckpointError(f"{path}: no layers.{{i}}.* keys; not an AuM checkpoint")
    a_log = _need(sd, "layers.0.mixer.A_log", path, 2)
    d_inner, d_state = a_log.shape
    d_conv = _need(sd, "layers.0.mixer.conv1d.weight", path, 3).shape[-1]
    dt_rank = _need(sd, "layers.0.mixer.dt_proj.weight", path, 2).shape[1]
    num_classes = _need(sd, "head.weight", path, 2).shape[0]
    if "layers.0.mixer.conv1d_b.weight" in sd:
        mixer = "v2"
    elif "layers.0.mixer.A_b_log" in sd:
        mixer = "v1"
    else:
        mixer = "none"
    if "cls_token" in sd:
        class_token, prefix = "middle", 1
    elif "cls_token_head" in sd and "cls_token_tail" in sd:
        class_token, prefix = "double", 2
    else:
        class_token, prefix = "none", 0
    pos = _need(sd, "pos_embed.pos_embed", path, 3)
    n_patches = pos.shape[1] - prefix
    freq_rows = N_MELS // p1
    if d_inner % embed_dim or n_patches <= 0 or n_patches % freq_rows:
        raise CheckpointError(
            f"{path}: inconsistent shapes: d_inner {d_inner} vs embed_dim {embed_dim}, "
            f"{n_patches} position rows for {freq_rows} frequency rows of {N_MELS} mel bins")
    return AuMConfig(embed_dim=embed_dim, depth=depth, d_state=d_state, d_conv=d_conv,
                     expand=d_inner // embed_dim, dt_rank=dt_rank, mixer=mixer,
                     class_token=class_token, n_mels=N_MELS,
                     spectrogram_frames=(n_patches // freq_rows) * p1, patch_size=p1,
                     num_classes=num_classes, extra={"source": "official", "norm": "audioset"})


def _load_into(model: AudioMamba, sd: dict[str, torch.Tensor], path: Path,
               skip: tuple[str, ...] = ()) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(sd) - set(skip))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path}: keys do not match an AuM {model.config.mixer!r} model: "
                              f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
                              f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")
    for k, v in sd.items():
        if k in skip:
            continue
        if own[k].shape != v.shape:
            raise CheckpointError(f"{path}: {k} has shape {tuple(v.shape)}; the model built from "
                                  f"this checkpoint's other tensors expects {tuple(own[k].shape)}")
        if not torch.isfinite(v).all():
            raise CheckpointError(f"{path}: {k} contains NaN/Inf values")
    with torch.no_grad():
        for k, v in sd.items():
            if k not in skip:
                own[k].copy_(v.to(own[k].dtype))


def _adapt(config: AuMConfig, sd: dict[str, torch.Tensor], input_frames: int | None,
           num_classes: int | None) -> tuple[AuMConfig, dict[str, torch.Tensor], tuple[str, ...]]:
    """Apply the requested input length (grid resampling) and class count (new head)."""
    skip: tuple[str, ...] = ()
    if input_frames is not None:
        if not isinstance(input_frames, int) or input_frames < config.patch_size:
            raise CheckpointError(f"input_frames must be an integer >= {config.patch_size}, got "
                                  f"{input_frames!r}")
        new = config.replace(spectrogram_frames=input_frames)
        if config.pos_embed == "grid":
            sd = dict(sd)
            sd["pos_embed.pos_embed"] = resample_pos_grid(
                sd["pos_embed.pos_embed"], config.num_prefix_tokens,
                (config.freq_patches, config.time_patches), (new.freq_patches, new.time_patches))
        config = new
    if num_classes is not None and num_classes != config.num_classes:
        if not isinstance(num_classes, int) or num_classes <= 0:
            raise CheckpointError(f"num_classes must be a positive integer, got {num_classes!r}")
        log.warning("checkpoint has %d classes, %d requested: the head is re-initialised "
                    "(fine-tuning)", config.num_classes, num_classes)
        config = config.replace(num_classes=num_classes, labels=None)
        config.extra = {**config.extra, "head_reinitialized": True}
        skip = ("head.weight", "head.bias")
    return config, sd, skip


def load_model(path: str | Path | None = None, *, input_frames: int | None = None,
               num_classes: int | None = None) -> AudioMamba:
    """An eval-mode ``AudioMamba`` from an official AuM checkpoint file or a saved model dir;
    with no path, the default model shipped in the package (``DEFAULT_MODEL_DIR``).

    ``input_frames`` rebuilds the position grid for another input length (official bilinear
    resampling); ``num_classes`` different from the checkpoint's gives a fresh head.
    """
    if path is None:
        if not (DEFAULT_MODEL_DIR / WEIGHTS_NAME).is_file():
            raise CheckpointError(f"the default model is missing from this installation "
                                  f"({DEFAULT_MODEL_DIR}); reinstall streaming_aum or pass a "
                                  "model path")
        path = DEFAULT_MODEL_DIR
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_dir() or path.suffix == ".safetensors":
        config, sd = _read_saved_model(path)
    else:
        sd = _read_official_state_dict(path)
        config = config_from_official(sd, path)
    config, sd, skip = _adapt(config, sd, input_frames, num_classes)
    model = AudioMamba(config)
    _load_into(model, sd, path, skip)
    return model.eval()


def _read_saved_model(path: Path) -> tuple[AuMConfig, dict[str, torch.Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = path / WEIGHTS_NAME if path.is_dir() else path
    config_path = weights.parent / CONFIG_NAME
    for p in (weights, config_path):
        if not p.is_file():
            raise CheckpointError(f"{path}: a saved model needs {WEIGHTS_NAME} and {CONFIG_NAME} "
                                  f"side by side; {p.name} is missing")
    try:
        config = AuMConfig.from_dict(json.loads(config_path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from exc
    try:
        sd = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from exc
    return config, sd


def save_model(model: AudioMamba, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``directory``; never overwrites silently."""
    from safetensors.torch import save_file

    directory = Path(directory)
    weights, config_path = directory / WEIGHTS_NAME, directory / CONFIG_NAME
    if not overwrite and (weights.exists() or config_path.exists()):
        raise FileExistsError(f"{directory} already holds a saved model; pass overwrite=True to "
                              "replace it")
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={"format": "streaming_aum"})
    config_path.write_text(json.dumps(model.config.to_dict(), indent=2))
    return directory


def describe(model: AudioMamba) -> dict[str, Any]:
    cfg = model.config
    return {"mixer": cfg.mixer, "embed_dim": cfg.embed_dim, "depth": cfg.depth,
            "token_order": cfg.token_order, "class_token": cfg.class_token,
            "pos_embed": cfg.pos_embed, "spectrogram_frames": cfg.spectrogram_frames,
            "num_classes": cfg.num_classes,
            "parameters": sum(p.numel() for p in model.parameters())}
