"""Export the state-carrying streaming runtime's hop as a stateful ONNX graph.

The graph is ``runtime.window_step`` plus the front end of one hop, so the PyTorch runtime and
the graph compute the same thing:

inputs
  ``samples`` (2560*h + 240,) float32, 16 kHz: the audio of the hop's h new patch columns
  (column c needs samples [2560 c, 2560 c + 2800); consecutive hops overlap by 240 samples);
  ``finalize`` (1, 8*f, D) and ``window`` (1, 8*w, D): layer-0 tokens of the window, split by
  the caller into the f oldest columns that leave the window this hop and the rest;
  ``conv_state`` (depth, 1, K-1, E) and ``ssm_state`` (depth, 1, E, S): the frontier.
outputs
  ``logits`` (1, C): mean pool of the last (w + h) columns' final features -> head;
  ``column_logits`` (h, C): per-column scores of the new columns;
  ``window_out`` (1, 8*(w+h), D): the next window's tokens; ``conv_state_out``, ``ssm_state_out``.

f and w are dynamic (0 included); the runner (``onnx_stream_runner``, numpy + onnxruntime)
chooses ``f = max(0, w_prev + h - W)`` each hop, exactly as ``StreamingRuntime``. The log-mel
front end (Kaldi fbank + normalisation) is inside the graph, so the runner needs no audio code.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from streaming_aum.audio_constants import (COLUMN_SPAN_SAMPLES, FRAMES_PER_PATCH,
                                           SAMPLES_PER_COLUMN)
from streaming_aum.errors import ConfigError
from streaming_aum.features import kaldi_fbank_unchecked, resolve_norm
from streaming_aum.model import AudioMamba
from streaming_aum.offline import model_norm
from streaming_aum.ops import scan_backend
from streaming_aum.runtime import StreamingRuntime, window_step, zero_frontier

from .onnx_export import META_PREFIX, _require_onnx, prepare_export

STREAM_INPUTS = ("samples", "finalize", "window", "conv_state", "ssm_state")
STREAM_OUTPUTS = ("logits", "column_logits", "window_out", "conv_state_out", "ssm_state_out")


def hop_samples(hop_columns: int) -> int:
    """Samples fed per hop: h columns of hop plus the 240-sample tail of the last window."""
    return (hop_columns - 1) * SAMPLES_PER_COLUMN + COLUMN_SPAN_SAMPLES


class StreamingStepGraph(nn.Module):
    def __init__(self, model: AudioMamba, norm: str | None = None) -> None:
        super().__init__()
        self.model = model.eval()
        stats = resolve_norm(model_norm(model, norm))
        self.mean, self.std = float(stats.mean), float(stats.std)
        self.rows = model.config.freq_patches

    def forward(self, samples, finalize, window, conv_state, ssm_state):
        frames = (kaldi_fbank_unchecked(samples) - self.mean) / (2.0 * self.std)
        new, _ = self.model.embed_tokens(frames.unsqueeze(0))
        out, kept, conv, ssm = window_step(self.model, finalize, window, new, conv_state,
                                           ssm_state)
        logits = self.model.forward_head(out[:, finalize.shape[1]:].mean(1))
        new_out = out[:, out.shape[1] - new.shape[1]:]
        cols = new_out.reshape(new_out.shape[1] // self.rows, self.rows, -1).mean(1)
        return logits, self.model.forward_head(cols), kept, conv, ssm


def export_streaming_onnx(model: AudioMamba, out: str | Path, *, window_columns: int = 12,
                          hop_columns: int = 1, norm: str | None = None,
                          overwrite: bool = False) -> dict[str, Any]:
    """Export the hop graph of ``StreamingRuntime(model, window_columns, hop_columns)``."""
    onnx, _ = _require_onnx()
    StreamingRuntime(model, window_columns=window_columns, hop_columns=hop_columns)  # validates
    if window_columns < hop_columns:
        raise ConfigError(f"window_columns ({window_columns}) must be at least hop_columns "
                          f"({hop_columns}) for the streaming graph")
    model, out = prepare_export(model, out, overwrite)
    cfg = model.config
    graph = StreamingStepGraph(model, norm)
    rows, D = cfg.freq_patches, cfg.embed_dim
    conv, ssm = zero_frontier(model)
    example = (torch.randn(hop_samples(hop_columns)) * 0.1, torch.randn(1, 2 * rows, D),
               torch.randn(1, 3 * rows, D), conv + 0.1, ssm + 0.1)
    fin = torch.export.Dim("finalize_columns", min=0, max=4096)
    win = torch.export.Dim("window_columns", min=0, max=1 << 16)
    dynamic = {"samples": None, "finalize": {1: rows * fin}, "window": {1: rows * win},
               "conv_state": None, "ssm_state": None}
    with scan_backend("export"), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(graph, example, input_names=list(STREAM_INPUTS),
                                    output_names=list(STREAM_OUTPUTS), dynamic_shapes=dynamic,
                                    dynamo=True, verbose=False)
    proto = program.model_proto
    meta = {"kind": "streaming_step", "window_columns": window_columns,
            "hop_columns": hop_columns, "rows": rows, "embed_dim": D,
            "hop_samples": hop_samples(hop_columns), "labels": model.labels,
            "activation": cfg.output_activation, "conv_state_shape": list(conv.shape),
            "ssm_state_shape": list(ssm.shape), "config": cfg.to_dict()}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, json.dumps(value)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    onnx.checker.check_model(str(out), full_check=True)
    return {"path": str(out), "window_columns": window_columns, "hop_columns": hop_columns,
            "frames_per_hop": hop_columns * FRAMES_PER_PATCH}
