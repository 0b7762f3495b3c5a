"""Stream audio through an exported streaming-step graph with numpy and onnxruntime only.

No torch and no package code: this file can be copied next to the ``.onnx`` file. It mirrors
``streaming_aum.runtime.StreamingRuntime``: samples of any chunk size in (float32 in [-1, 1]
or int16, mono, 16 kHz), one result per hop out; ``reset()``; ``state_dict()`` snapshots.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000
SAMPLES_PER_COLUMN = 2560  # 16 frames x 160-sample hop
COLUMN_SPAN_SAMPLES = 2800  # a column's frames span 15 hops + one 400-sample window
META_PREFIX = "streaming_aum."


class OnnxStreamRunner:
    def __init__(self, path: str, providers: list[str] | None = None,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads is not None:  # e.g. 1 for a real-time thread beside the audio callback
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, sess_options=opts,
                                            providers=providers or ["CPUExecutionProvider"])
        raw = self.session.get_modelmeta().custom_metadata_map
        meta = {k[len(META_PREFIX):]: json.loads(v) for k, v in raw.items()
                if k.startswith(META_PREFIX)}
        if meta.get("kind") != "streaming_step":
            raise ValueError(f"{path}: not a streaming-step graph (export it with "
                             "`aum export --streaming`)")
        self.meta = meta
        self.window_columns = int(meta["window_columns"])
        self.hop_columns = int(meta["hop_columns"])
        self.rows = int(meta["rows"])
        self.labels = list(meta["labels"])
        self.reset()

    def reset(self) -> None:
        D = int(self.meta["embed_dim"])
        self._audio = np.zeros(0, np.float32)  # samples from self._audio_start on
        self._audio_start = 0
        self._next_column = 0  # first column of the next hop
        self._window = np.zeros((1, 0, D), np.float32)
        self._conv = np.zeros(self.meta["conv_state_shape"], np.float32)
        self._ssm = np.zeros(self.meta["ssm_state_shape"], np.float32)
        self._hops = 0

    def state_dict(self) -> dict[str, Any]:
        return {"audio": self._audio.copy(), "audio_start": self._audio_start,
                "next_column": self._next_column, "window": self._window.copy(),
                "conv": self._conv.copy(), "ssm": self._ssm.copy(), "hops": self._hops}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._audio = np.asarray(state["audio"], np.float32).copy()
        self._audio_start = int(state["audio_start"])
        self._next_column = int(state["next_column"])
        self._window = np.asarray(state["window"], np.float32).copy()
        self._conv = np.asarray(state["conv"], np.float32).copy()
        self._ssm = np.asarray(state["ssm"], np.float32).copy()
        self._hops = int(state["hops"])

    @staticmethod
    def _to_float(chunk: Any) -> np.ndarray:
        x = np.asarray(chunk)
        if x.ndim != 1:
            raise ValueError(f"expected a 1-D chunk of mono samples, got shape {x.shape}")
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        elif x.dtype.kind == "f":
            x = x.astype(np.float32)
        else:
            raise ValueError(f"expected int16 or float samples, got {x.dtype}")
        if not np.isfinite(x).all():
            raise ValueError("chunk contains NaN/Inf samples")
        return x

    def push(self, chunk: Any) -> list[dict[str, Any]]:
        """Add samples; return ``{"index", "t_end", "logits", "probs", "column_logits"}`` per
        completed hop (times in seconds)."""
        self._audio = np.concatenate([self._audio, self._to_float(chunk)])
        n_hop = int(self.meta["hop_samples"])
        results = []
        while True:
            start = self._next_column * SAMPLES_PER_COLUMN
            if self._audio_start + self._audio.shape[0] < start + n_hop:
                break
            offset = start - self._audio_start
            results.append(self._hop(self._audio[offset:offset + n_hop]))
        drop = self._next_column * SAMPLES_PER_COLUMN - self._audio_start
        self._audio = self._audio[drop:]
        self._audio_start += drop
        return results

    def _hop(self, samples: np.ndarray) -> dict[str, Any]:
        rows, h = self.rows, self.hop_columns
        n_cols = self._window.shape[1] // rows + h
        fin = max(0, n_cols - self.window_columns) * rows
        logits, column_logits, window, conv, ssm = self.session.run(None, {
            "samples": samples, "finalize": self._window[:, :fin],
            "window": self._window[:, fin:], "conv_state": self._conv, "ssm_state": self._ssm})
        self._window, self._conv, self._ssm = window, conv, ssm
        last_column = self._next_column + h - 1
        self._next_column += h
        t_end = (last_column * SAMPLES_PER_COLUMN + COLUMN_SPAN_SAMPLES) / SAMPLE_RATE
        result = {"index": self._hops, "t_end": t_end, "logits": logits[0],
                  "probs": self._activate(logits[0]), "column_logits": column_logits}
        self._hops += 1
        return result

    def _activate(self, logits: np.ndarray) -> np.ndarray:
        if self.meta["activation"] == "softmax":
            e = np.exp(logits - logits.max())
            return e / e.sum()
        return 1.0 / (1.0 + np.exp(-logits))
