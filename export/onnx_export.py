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

Two kinds of input (metadata ``input_kind``):

* ``"fbank"`` (default): normalised log-mel ``fbank (B, T, 128)``; consumers make it with
  ``streaming_aum.features`` (or any Kaldi-compatible fbank) as ``offline.features_for_model``.
* ``"waveform"`` (``waveform_input=True``, ``aum export --waveform``): ``waveform (B, N)``
  float32 mono samples at 16 kHz, dynamic B and N; the graph holds the front end of
  ``features_for_model`` (``streaming_aum.batched_fbank``: Kaldi fbank as plain ops, then the
  same pad/crop rule and normalisation), so a consumer needs no Python audio code. Official
  (grid) models: clip DC removed, exactly ``spectrogram_frames`` frames (zero log-mel rows
  appended, or cropped); streaming-layout models: every frame, no clip DC removal. All rows of
  a batch share one ``N``: never pad a waveform to batch it (padding samples change the clip
  mean and add frames); ``OnnxScorer`` batches equal lengths only. A graph cannot raise, so
  callers must give at least ``min_samples`` samples (metadata; 400 = one frame for grid
  models, one patch column = 2800 for streaming-layout ones): ``OnnxScorer`` checks it.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from streaming_aum.audio_constants import FRAME_SAMPLES, HOP_SAMPLES, SAMPLE_RATE
from streaming_aum.batched_fbank import BatchedFrontEnd
from streaming_aum.errors import AuMError, ConfigError
from streaming_aum.features import NORM_PRESETS
from streaming_aum.model import AudioMamba
from streaming_aum.offline import features_for_model, model_norm
from streaming_aum.ops import scan_backend

INPUT_NAME = "fbank"
WAVEFORM_INPUT_NAME = "waveform"
OUTPUT_NAME = "logits"
META_PREFIX = "streaming_aum."
EXPORT_FRAMES = 160  # time length traced for dynamic-time models: 10 columns
CHECK_FRAMES = (96, 333)  # lengths checked after export, not EXPORT_FRAMES
EXPORT_SAMPLES = 20_000  # waveform length traced for waveform-input exports (1.25 s)
CHECK_BATCHES = (1, 3)
WAVEFORM_CHECK_BATCHES = (1, 2)


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


def min_waveform_samples(model: AudioMamba) -> int:
    """Fewest samples a waveform-input graph of ``model`` accepts: one fbank frame (400) for
    grid models (shorter clips are padded), one patch column (2800 for 16-frame patches) for
    streaming-layout models, which take every frame as is."""
    cfg = model.config
    if cfg.pos_embed == "grid":
        return FRAME_SAMPLES
    return FRAME_SAMPLES + (cfg.patch_size - 1) * HOP_SAMPLES


def metadata_for(model: AudioMamba, norm: str | None = None,
                 waveform_input: bool = False) -> dict[str, str]:
    """The ``streaming_aum.*`` metadata of an export (all values are strings, JSON where not
    plain): what a consumer needs to prepare the input and read the output."""
    cfg = model.config
    meta = {
        META_PREFIX + "config": json.dumps(cfg.to_dict()),
        META_PREFIX + "labels": json.dumps(model.labels),
        META_PREFIX + "norm": model_norm(model, norm),
        META_PREFIX + "activation": cfg.output_activation,
        META_PREFIX + "dynamic_frames": json.dumps(cfg.pos_embed == "freq_rows"),
        META_PREFIX + "frames": json.dumps(None if cfg.pos_embed == "freq_rows"
                                           else cfg.spectrogram_frames),
        META_PREFIX + "input": WAVEFORM_INPUT_NAME if waveform_input else INPUT_NAME,
        META_PREFIX + "output": OUTPUT_NAME,
        META_PREFIX + "input_kind": "waveform" if waveform_input else "fbank",
    }
    if waveform_input:
        meta[META_PREFIX + "sample_rate"] = json.dumps(SAMPLE_RATE)
        meta[META_PREFIX + "min_samples"] = json.dumps(min_waveform_samples(model))
    return meta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The export's metadata: config (dict), labels, norm, activation, dynamic_frames, frames,
    input / output (tensor names), input_kind (``"fbank"``, also for exports older than the
    key, or ``"waveform"``), sample_rate and min_samples (waveform input; else ``None``)."""
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
            "input": raw.get("input", INPUT_NAME), "output": raw.get("output", OUTPUT_NAME),
            "input_kind": raw.get("input_kind", "fbank"),
            "sample_rate": json.loads(raw.get("sample_rate", "null")),
            "min_samples": json.loads(raw.get("min_samples", "null"))}


class WaveformClassifier(torch.nn.Module):
    """``waveform (B, N)`` float32 mono samples at 16 kHz -> ``logits (B, C)``: the front end of
    ``offline.features_for_model`` (batched and exportable, ``front_end_for_model``) followed
    by ``model``. What ``export_onnx(..., waveform_input=True)`` traces."""

    def __init__(self, model: AudioMamba, norm: str | None = None) -> None:
        super().__init__()
        self.front_end = front_end_for_model(model, norm)
        self.model = model

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` samples, ``N >= min_waveform_samples(model)`` -> logits ``(B, C)``."""
        return self.model(self.front_end(waveform))


def front_end_for_model(model: AudioMamba, norm: str | None = None) -> BatchedFrontEnd:
    """The batched twin of ``offline.features_for_model``: grid (official) models get clip DC
    removal and exactly ``spectrogram_frames`` frames (zero log-mel rows appended, or cropped);
    ``freq_rows`` models every frame without clip DC removal; both the model's normalisation."""
    cfg = model.config
    grid = cfg.pos_embed == "grid"
    return BatchedFrontEnd(NORM_PRESETS[model_norm(model, norm)],
                           target_frames=cfg.spectrogram_frames if grid else None,
                           remove_clip_dc=grid)


def _trace_spec(model: AudioMamba, norm: str | None, waveform_input: bool
                ) -> tuple[torch.nn.Module, torch.Tensor, str, dict[int, Any]]:
    """(module to trace, example input, input name, its dynamic dims) for either input kind."""
    cfg = model.config
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=1 << 16)}
    if waveform_input:
        dims[1] = torch.export.Dim("samples", min=min_waveform_samples(model), max=1 << 30)
        return (WaveformClassifier(model, norm).eval(), torch.randn(2, EXPORT_SAMPLES),
                WAVEFORM_INPUT_NAME, dims)
    dynamic_t = cfg.pos_embed == "freq_rows"
    frames = EXPORT_FRAMES if dynamic_t else cfg.spectrogram_frames
    if dynamic_t:
        dims[1] = torch.export.Dim("frames", min=cfg.patch_size, max=1 << 22)
    return model, torch.randn(2, frames, cfg.n_mels), INPUT_NAME, dims


def export_onnx(model: AudioMamba, out: str | Path, *, norm: str | None = None,
                overwrite: bool = False, atol: float = 1e-4,
                waveform_input: bool = False) -> dict[str, Any]:
    """Export ``model`` (float32 copy, eval) to ``out`` and validate it; returns a report with
    the lengths checked and the max abs differences.

    ``waveform_input=False``: the graph takes ``fbank (B, T, 128)`` normalised log-mel.
    ``waveform_input=True``: it takes ``waveform (B, N)`` float32 samples at 16 kHz (dynamic B
    and N, all rows one length) and holds the front end (see the module docstring); it is
    checked against PyTorch ``model(features_for_model(model, row))`` at lengths not traced.
    """
    onnx, _ = _require_onnx()
    model, out = prepare_export(model, out, overwrite)
    module, example, input_name, dims = _trace_spec(model, norm, waveform_input)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with scan_backend("export"), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), input_names=[input_name],
                                    output_names=[OUTPUT_NAME],
                                    dynamic_shapes={input_name: dims}, dynamo=True,
                                    verbose=False)
    proto = program.model_proto
    for key, value in metadata_for(model, norm, waveform_input).items():
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
    """ONNX checker + ONNX Runtime vs PyTorch at several batch sizes and lengths; the input
    kind and normalisation come from the file's metadata."""
    onnx, ort = _require_onnx()
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: the ONNX checker rejects the export: {exc}") from exc
    meta = read_metadata(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if meta["input_kind"] == "waveform":
        checks = _check_waveform_runs(model, session, path, meta["norm"], atol)
    else:
        checks = _check_fbank_runs(model, session, path, atol)
    return {"checks": checks, "dynamic_frames": model.config.pos_embed == "freq_rows",
            "input_kind": meta["input_kind"]}


def _compare(session: Any, path: str | Path, feed: dict[str, Any], expected: torch.Tensor,
             where: str, atol: float) -> float:
    """Run ``session`` on ``feed``; max abs difference to ``expected`` (ExportError past atol)."""
    try:
        got = session.run([OUTPUT_NAME], feed)[0]
    except Exception as exc:  # e.g. a length the exporter silently fixed
        raise ExportError(f"{path}: ONNX Runtime cannot run the export at {where}: {exc}") from exc
    want = expected.numpy()
    diff = float(abs(got - want).max()) if got.shape == want.shape else float("inf")
    if not diff <= atol:
        raise ExportError(f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} (> {atol}) "
                          f"at {where}; shapes {got.shape} vs {want.shape}")
    return diff


def _check_fbank_runs(model: AudioMamba, session: Any, path: str | Path, atol: float
                      ) -> list[dict[str, Any]]:
    cfg = model.config
    lengths = CHECK_FRAMES if cfg.pos_embed == "freq_rows" else (cfg.spectrogram_frames,)
    checks = []
    g = torch.Generator().manual_seed(0)
    for frames in lengths:
        for batch in CHECK_BATCHES:
            x = torch.randn(batch, frames, cfg.n_mels, generator=g)
            with torch.no_grad():
                expected = model(x)
            diff = _compare(session, path, {INPUT_NAME: x.numpy()}, expected,
                            f"batch {batch}, {frames} frames", atol)
            checks.append({"batch": batch, "frames": frames, "max_abs_diff": diff})
    return checks


def waveform_check_lengths(model: AudioMamba) -> tuple[int, ...]:
    """Sample counts a waveform export is checked at, none of them ``EXPORT_SAMPLES``: grid
    models one shorter than the grid (padded) and one longer (cropped); streaming-layout
    models the shortest accepted (one patch column) and 333 frames plus a partial hop."""
    cfg = model.config
    if cfg.pos_embed == "grid":
        frames = (max(1, cfg.spectrogram_frames // 2), cfg.spectrogram_frames + 40)
        lengths = [FRAME_SAMPLES + (f - 1) * HOP_SAMPLES + 37 for f in frames]
    else:
        lengths = [min_waveform_samples(model), FRAME_SAMPLES + 332 * HOP_SAMPLES + 77]
    return tuple(n + 1 if n == EXPORT_SAMPLES else n for n in lengths)


def _check_waveform_runs(model: AudioMamba, session: Any, path: str | Path, norm: str,
                         atol: float) -> list[dict[str, Any]]:
    """The waveform graph vs ``model(features_for_model(model, row))`` row by row (the PyTorch
    front end: torchaudio's fbank, pad/crop, normalisation)."""
    checks = []
    g = torch.Generator().manual_seed(0)
    for samples in waveform_check_lengths(model):
        for batch in WAVEFORM_CHECK_BATCHES:
            # noise with a DC offset (exercises clip and frame DC removal) at speech-like level
            x = 0.1 * torch.randn(batch, samples, generator=g) + 0.02
            with torch.no_grad():
                feats = torch.stack([features_for_model(model, row, norm=norm) for row in x])
                expected = model(feats)
            diff = _compare(session, path, {WAVEFORM_INPUT_NAME: x.numpy()}, expected,
                            f"batch {batch}, {samples} samples", atol)
            checks.append({"batch": batch, "samples": samples, "frames": int(feats.shape[1]),
                           "max_abs_diff": diff})
    return checks
