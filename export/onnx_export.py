"""Export the full bidirectional AudioMamba to ONNX, with dynamic batch (and time) axes.

* The selective scan runs through ``scan_backend("export")``: a ``torch`` scan higher-order op,
  exported as one ONNX ``Scan`` node, so the graph runs at any length with no per-step nodes.
* Axes: batch is always dynamic. Time (fbank frames) is dynamic for ``freq_rows`` models; an
  official ``grid`` model has a fixed position grid (``spectrogram_frames``), exactly as the
  official model: its inputs are padded/cropped to that length (``load_model(...,
  input_frames=N)`` exports another length).
* Every export is validated: the ONNX checker, then ONNX Runtime against PyTorch at two batch
  sizes and (for dynamic time) at lengths not used during export, to ``atol`` (default 1e-4).
* What a consumer needs to featurise audio is stored in the model's metadata
  (``streaming_aum.*`` keys, see ``read_metadata``), so scoring needs no checkpoint.

Not yet: the log-mel front end inside the graph (waveform input); consumers use
``streaming_aum.features`` (or any Kaldi-compatible fbank) to make the (B, T, 128) input.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from streaming_aum.errors import AuMError, ConfigError
from streaming_aum.model import AudioMamba
from streaming_aum.offline import model_norm
from streaming_aum.ops import scan_backend

INPUT_NAME = "fbank"
OUTPUT_NAME = "logits"
META_PREFIX = "streaming_aum."
EXPORT_FRAMES = 160  # time length traced for dynamic-time models: 10 columns
CHECK_FRAMES = (96, 333)  # lengths checked after export, not EXPORT_FRAMES


class ExportError(AuMError, RuntimeError):
    """The exported graph failed validation (checker or numerical comparison)."""


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(f"ONNX export needs the 'onnx' extra (pip install "
                          f"'streaming_aum[onnx]'): {exc}") from exc
    return onnx, onnxruntime


def prepare_export(model: AudioMamba, out: str | Path, overwrite: bool
                   ) -> tuple[AudioMamba, Path]:
    """Refuse to replace ``out`` unless asked; a float32 eval model to trace (a copy when the
    caller's model has another dtype: the caller's model is never changed)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite (overwrite=True) to replace it")
    if next(model.parameters()).dtype != torch.float32:
        model = copy.deepcopy(model).float()
    return model.eval(), out


def metadata_for(model: AudioMamba, norm: str | None = None) -> dict[str, str]:
    cfg = model.config
    return {
        META_PREFIX + "config": json.dumps(cfg.to_dict()),
        META_PREFIX + "labels": json.dumps(model.labels),
        META_PREFIX + "norm": model_norm(model, norm),
        META_PREFIX + "activation": cfg.output_activation,
        META_PREFIX + "dynamic_frames": json.dumps(cfg.pos_embed == "freq_rows"),
        META_PREFIX + "frames": json.dumps(None if cfg.pos_embed == "freq_rows"
                                           else cfg.spectrogram_frames),
        META_PREFIX + "input": INPUT_NAME,
        META_PREFIX + "output": OUTPUT_NAME,
    }


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The export's metadata: config (dict), labels, norm, activation, dynamic_frames, frames."""
    onnx, _ = _require_onnx()
    model = onnx.load(str(path), load_external_data=False)
    raw = {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props
           if p.key.startswith(META_PREFIX)}
    missing = {"config", "labels", "norm", "activation", "dynamic_frames", "frames"} - set(raw)
    if missing:
        raise ConfigError(f"{path}: not a streaming_aum ONNX export (metadata {sorted(missing)} "
                          "missing); export it with `aum export`")
    return {"config": json.loads(raw["config"]), "labels": json.loads(raw["labels"]),
            "norm": raw["norm"], "activation": raw["activation"],
            "dynamic_frames": json.loads(raw["dynamic_frames"]), "frames": json.loads(raw["frames"]),
            "input": raw.get("input", INPUT_NAME), "output": raw.get("output", OUTPUT_NAME)}


def export_onnx(model: AudioMamba, out: str | Path, *, norm: str | None = None,
                overwrite: bool = False, atol: float = 1e-4) -> dict[str, Any]:
    """Export ``model`` (float32 copy, eval) to ``out`` and validate it; returns a report with
    the lengths checked and the max abs differences."""
    onnx, ort = _require_onnx()
    model, out = prepare_export(model, out, overwrite)
    cfg = model.config
    dynamic_t = cfg.pos_embed == "freq_rows"
    frames = EXPORT_FRAMES if dynamic_t else cfg.spectrogram_frames
    example = torch.randn(2, frames, cfg.n_mels)
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=1 << 16)}
    if dynamic_t:
        dims[1] = torch.export.Dim("frames", min=cfg.patch_size, max=1 << 22)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with scan_backend("export"), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME],
                                    dynamic_shapes={"fbank": dims}, dynamo=True, verbose=False)
    proto = program.model_proto
    for key, value in metadata_for(model, norm).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))
    try:
        report = validate_export(model, tmp, atol=atol)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    report["path"] = str(out)
    return report


def validate_export(model: AudioMamba, path: str | Path, *, atol: float = 1e-4) -> dict[str, Any]:
    """ONNX checker + ONNX Runtime vs PyTorch at several batch sizes and lengths."""
    onnx, ort = _require_onnx()
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: the ONNX checker rejects the export: {exc}") from exc
    cfg = model.config
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    lengths = CHECK_FRAMES if cfg.pos_embed == "freq_rows" else (cfg.spectrogram_frames,)
    checks = []
    g = torch.Generator().manual_seed(0)
    for frames in lengths:
        for batch in (1, 3):
            x = torch.randn(batch, frames, cfg.n_mels, generator=g)
            with torch.no_grad():
                expected = model(x).numpy()
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
            diff = float(abs(got - expected).max()) if got.shape == expected.shape else float("inf")
            checks.append({"batch": batch, "frames": frames, "max_abs_diff": diff})
            if not diff <= atol:
                raise ExportError(f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} "
                                  f"(> {atol}) at batch {batch}, {frames} frames; shapes "
                                  f"{got.shape} vs {expected.shape}")
    return {"checks": checks, "dynamic_frames": cfg.pos_embed == "freq_rows"}
