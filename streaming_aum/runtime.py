"""Streaming runtimes: audio chunks of any size in, one result per hop out.

Two runtimes share one interface (``push(chunk) -> list[HopResult]``, ``flush()``, ``reset()``,
``state_dict()`` / ``load_state_dict()``, and the functional ``infer(chunk, state)``):

* ``StreamingRuntime`` for streaming-layout models (time-major tokens, ``freq_rows`` positions,
  no class token). Per layer it carries the forward conv and SSM state at the *frontier* and
  re-evaluates every layer over a sliding window of the last ``window_columns`` patch columns
  (the contract in STREAMING.md): each hop appends ``hop_columns`` new columns, evaluates all
  layers over the window (forward direction from the frontier state, backward direction from
  zeros at the window's end), then finalises the columns beyond the window by advancing each
  layer's frontier state over them with that evaluation's inputs. Per-hop cost O(depth x W).
  On the float32 CPU inference path a finite-window hop runs as a ``hop_plan.HopPlan``: the
  same computation as ``window_step`` (identical bits) with its buffers allocated once.
* ``RecomputeRuntime`` for any model, official checkpoints included: every hop it re-runs the
  offline model on the last ``window_s`` seconds of audio, featurised exactly as offline
  (official models: clip DC removal, zero-padding to the grid). The honest baseline.

Time: a hop ends when its newest column's last sample has arrived; ``t_end`` is that sample
count / 16 kHz (``audio_constants.column_end_sample``). Hop results do not depend on how the
audio was cut into chunks (P1): hops are always processed one at a time, in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from .audio_constants import (FRAME_SAMPLES, FRAMES_PER_PATCH, SAMPLE_RATE, SAMPLES_PER_COLUMN,
                              column_end_sample)
from .audio_io import check_sample_rate
from .errors import ConfigError
from .hop_plan import ColumnEmbedding, HopPlan, plan_applies
from .model import AudioMamba, MixerState
from .offline import features_for_model, model_norm
from .streaming_features import (StreamingFrontEnd, StreamingResampler, StreamStateError,
                                 _chunk_to_float32)

POOLS = ("window", "stream")


@dataclass
class HopResult:
    """One hop's output. Times in seconds of 16 kHz audio since the stream start.

    ``logits``/``probs`` (C,) summarise ``[t_start, t_end)``; ``column_logits`` (h, C), when
    asked for, score each of the hop's ``h`` new patch columns (frame-wise timeline)."""

    index: int
    t_start: float
    t_end: float
    logits: torch.Tensor
    probs: torch.Tensor
    column_logits: torch.Tensor | None = None


def zero_frontier(model: AudioMamba, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked stream-start states: conv (depth, B, K-1, E) and SSM (depth, B, E, S)."""
    param = next(model.parameters())
    states = [blk.mixer.zero_state(batch, dtype=param.dtype, device=param.device)
              for blk in model.layers]
    return torch.stack([s.conv for s in states]), torch.stack([s.ssm for s in states])


def window_step(model: AudioMamba, finalize: torch.Tensor, window: torch.Tensor,
                new: torch.Tensor, conv: torch.Tensor, ssm: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One hop of the state-carrying runtime; the PyTorch runtime and the exported streaming
    graph both run exactly this.

    Layer-0 input tokens (B, n*F', D), oldest first: ``finalize`` (the columns leaving the
    window this hop, possibly none), ``window`` (the rest of the window) and ``new`` (this
    hop's columns). ``conv`` (depth, B, K-1, E) / ``ssm`` (depth, B, E, S): the forward states
    at the frontier, i.e. before ``finalize``. Every layer is evaluated over all the tokens;
    the returned states are advanced over ``finalize`` only.

    Returns ``(out (B, L, D) final features of all tokens, kept (B, L - len(finalize), D)
    layer-0 tokens that form the next window, conv', ssm')``.
    """
    x = torch.cat([finalize, window, new], dim=1)
    split = finalize.shape[1]
    states = [MixerState(conv=conv[i], ssm=ssm[i]) for i in range(conv.shape[0])]
    out, new_states = model.run_layers(x, states, split=split)
    return (out, x[:, split:], torch.stack([s.conv for s in new_states]),
            torch.stack([s.ssm for s in new_states]))


def _check_model(model: AudioMamba) -> None:
    if not isinstance(model, AudioMamba):
        raise ConfigError(f"expected an AudioMamba model, got {type(model).__name__}")


def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


class StreamingRuntime:
    """State-carrying runtime for a streaming-layout ``AudioMamba`` (batch 1, inference).

    Args:
        model: time-major tokens, ``freq_rows`` positions, ``class_token="none"``.
        window_columns: W, the sliding window in patch columns (0.16 s each); ``None`` means
            unbounded (every hop then equals the offline model on the audio so far, P2).
        hop_columns: columns per hop (default 1: one result every 0.16 s).
        pool: ``"window"``: mean of the final features of the last W columns' tokens (all
            seen for W=None); ``"stream"``: mean over every token since the start (finalised
            tokens keep their last evaluated features).
        input_rate: sample rate of the pushed audio (converted chunk-invariantly).
        column_scores: also return per-column logits of each hop's new columns.
    """

    def __init__(self, model: AudioMamba, *, window_columns: int | None = 12,
                 hop_columns: int = 1, pool: str = "window", input_rate: int = SAMPLE_RATE,
                 norm: str | None = None, column_scores: bool = False) -> None:
        _check_model(model)
        cfg = model.config
        if (cfg.token_order, cfg.pos_embed, cfg.class_token) != ("time_major", "freq_rows", "none"):
            raise ConfigError(
                "StreamingRuntime needs a streaming-layout model (token_order='time_major', "
                "pos_embed='freq_rows', class_token='none'); this one has "
                f"{cfg.token_order!r}, {cfg.pos_embed!r}, {cfg.class_token!r}. Use "
                "RecomputeRuntime for official-layout checkpoints.")
        if pool not in POOLS:
            raise ConfigError(f"pool must be one of {POOLS}, got {pool!r}")
        self.model = model.eval()
        self.window_columns = None if window_columns is None else _positive_int(
            window_columns, "window_columns")
        self.hop_columns = _positive_int(hop_columns, "hop_columns")
        self.pool = pool
        self.column_scores = column_scores
        self.rows = cfg.freq_patches  # tokens per column
        self.front_end = StreamingFrontEnd(input_rate, norm=model_norm(model, norm))
        self._param = next(model.parameters())
        self._plans: dict[tuple[int, int], HopPlan] = {}  # buffers only, no stream state
        self._embedding: ColumnEmbedding | None = None  # bound operands only, no stream state
        self.reset()

    # State ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to exactly a fresh runtime."""
        D = self.model.config.embed_dim
        self.front_end.reset()
        self._frames = torch.zeros(0, self.model.config.n_mels)  # frames of the next column
        self._new_tokens = self._param.new_zeros(1, 0, D)  # columns waiting for a full hop
        self._window = self._param.new_zeros(1, 0, D)  # layer-0 inputs of the window columns
        self._conv, self._ssm = zero_frontier(self.model)  # forward states at the frontier
        self._first_window_column = 0  # index of the window's oldest column
        self._hops = 0
        self._stream_sum = torch.zeros(D, dtype=torch.float64)
        self._stream_tokens = 0

    @property
    def columns_seen(self) -> int:
        return self._first_window_column + self._window.shape[1] // self.rows

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (tensors and ints) that ``load_state_dict`` restores exactly."""
        return {
            "kind": "StreamingRuntime", "window_columns": self.window_columns,
            "hop_columns": self.hop_columns, "pool": self.pool,
            "front_end": self.front_end.state_dict(), "frames": self._frames.clone(),
            "new_tokens": self._new_tokens.clone(), "window": self._window.clone(),
            "conv": self._conv.clone(), "ssm": self._ssm.clone(),
            "first_window_column": self._first_window_column, "hops": self._hops,
            "stream_sum": self._stream_sum.clone(), "stream_tokens": self._stream_tokens,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        try:
            if state["kind"] != "StreamingRuntime":
                raise StreamStateError(f"snapshot is of a {state['kind']}, not a StreamingRuntime")
            for key in ("window_columns", "hop_columns", "pool"):
                if state[key] != getattr(self, key):
                    raise StreamStateError(f"snapshot has {key}={state[key]!r}; this runtime has "
                                           f"{getattr(self, key)!r}")
            D = self.model.config.embed_dim
            for key in ("new_tokens", "window"):
                if state[key].dim() != 3 or state[key].shape[-1] != D:
                    raise StreamStateError(f"snapshot {key} has shape {tuple(state[key].shape)}; "
                                           f"expected (1, L, {D})")
            for key, ref in (("conv", self._conv), ("ssm", self._ssm)):
                if tuple(state[key].shape) != tuple(ref.shape):
                    raise StreamStateError(f"snapshot {key} state has shape "
                                           f"{tuple(state[key].shape)}; this model needs "
                                           f"{tuple(ref.shape)}")
            self.front_end.load_state_dict(state["front_end"])
            self._frames = state["frames"].clone()
            self._new_tokens = state["new_tokens"].clone()
            self._window = state["window"].clone()
            self._conv, self._ssm = state["conv"].clone(), state["ssm"].clone()
            self._first_window_column = int(state["first_window_column"])
            self._hops = int(state["hops"])
            self._stream_sum = state["stream_sum"].clone()
            self._stream_tokens = int(state["stream_tokens"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise StreamStateError(f"malformed StreamingRuntime snapshot: {exc!r}") from exc

    # Streaming --------------------------------------------------------------------------
    def push(self, chunk: Any) -> list[HopResult]:
        """Add audio (1-D, any length, int PCM or float, at ``input_rate``); return the hops
        completed by it, in order."""
        return self._consume(self.front_end.push(chunk))

    def flush(self) -> list[HopResult]:
        """End of stream: hops completed by the resampler's tail and a last partial hop (fewer
        than ``hop_columns`` new columns). Trailing frames that do not fill a column are
        dropped, as the offline model drops them."""
        results = self._consume(self.front_end.flush())
        if self._new_tokens.shape[1]:
            results.append(self._run_hop(self._new_tokens))
            self._new_tokens = self._new_tokens[:, :0]
        return results

    def infer(self, chunk: Any, state: Mapping[str, Any] | None = None
              ) -> tuple[list[HopResult], dict[str, Any]]:
        """Functional form (torchaudio Emformer style): ``(results, new_state)``; ``state=None``
        starts a fresh stream. The runtime's own state is replaced by ``state`` first."""
        if state is None:
            self.reset()
        else:
            self.load_state_dict(state)
        results = self.push(chunk)
        return results, self.state_dict()

    def _consume(self, frames: torch.Tensor) -> list[HopResult]:
        if frames.shape[0] == 0:
            return []
        if self._frames.shape[0]:
            frames = torch.cat([self._frames, frames])
        n_cols = frames.shape[0] // FRAMES_PER_PATCH
        self._frames = frames[n_cols * FRAMES_PER_PATCH:]
        if n_cols == 0:
            return []
        spec = frames[: n_cols * FRAMES_PER_PATCH].unsqueeze(0)
        with torch.inference_mode():
            # one column per call (1, n_cols * F', D), time-major: the inference path's patch
            # embedding is a matmul whose rounding depends on its row count, so embedding the
            # columns a chunk happens to complete together would make hops depend on the
            # chunking; one at a time they are bit-identical for any chunking (P1, P5).
            # On the inference path a ColumnEmbedding (its operands bound) does it; the same
            # decision as AudioMamba.embed_tokens, taken once per push
            emb = self._embedding
            if emb is None or not emb.usable(spec):
                emb = self._embedding = (ColumnEmbedding(self.model)
                                         if self.model.streaming_embedding_applies(spec)
                                         else None)
            if emb is not None:
                cols = [emb(frames[c * FRAMES_PER_PATCH: (c + 1) * FRAMES_PER_PATCH])
                        for c in range(n_cols)]
            else:
                embed = self.model.embed_tokens
                cols = [embed(spec[:, c * FRAMES_PER_PATCH: (c + 1) * FRAMES_PER_PATCH])[0]
                        for c in range(n_cols)]
            tokens = cols[0] if n_cols == 1 else torch.cat(cols, dim=1)
        pending = torch.cat([self._new_tokens, tokens], dim=1)
        step = self.hop_columns * self.rows
        results = []
        while pending.shape[1] >= step:
            results.append(self._run_hop(pending[:, :step]))
            pending = pending[:, step:]
        self._new_tokens = pending
        return results

    def _plan_for(self, new_tokens: torch.Tensor, length: int, split: int) -> HopPlan | None:
        """The ``HopPlan`` for a hop of ``length`` tokens finalising ``split`` of them, when one
        applies (``hop_plan.plan_applies``; finite windows only, so that a handful of shapes
        recur: the filling window's, then one); built on first use, rebuilt when a parameter
        changed."""
        if self.window_columns is None:
            return None
        key = (length, split)
        plan = self._plans.get(key)
        if plan is not None and plan.usable(new_tokens):  # the steady state: one cheap check
            return plan
        if not plan_applies(self.model, new_tokens):
            return None
        if plan is None or not plan.current():
            if len(self._plans) > self.window_columns + 2:
                self._plans.clear()
            plan = self._plans[key] = HopPlan(self.model, length, split)
        return plan

    def _run_hop(self, new_tokens: torch.Tensor) -> HopResult:
        rows = self.rows
        n_cols = (self._window.shape[1] + new_tokens.shape[1]) // rows
        W = self.window_columns
        n_final = 0 if W is None else max(0, n_cols - W)
        fin = n_final * rows
        with torch.inference_mode():
            plan = self._plan_for(new_tokens, n_cols * rows, fin)
            if plan is None:
                out, kept, conv, ssm = window_step(self.model, self._window[:, :fin],
                                                   self._window[:, fin:], new_tokens,
                                                   self._conv, self._ssm)
            else:  # the same computation with preallocated buffers (hop_plan)
                x = torch.cat([self._window, new_tokens], dim=1)
                out, conv, ssm = plan.run(x, self._conv, self._ssm)
                kept = x[:, fin:]
            keep = n_cols - n_final
            if self.pool == "window":
                pooled = out[0, fin:].mean(0)
            else:
                total = self._stream_sum + out[0].double().sum(0)
                pooled = (total / (self._stream_tokens + out.shape[1])).to(out.dtype)
            logits = self.model.forward_head(pooled)
            column_logits = None
            if self.column_scores:
                n_new = new_tokens.shape[1] // rows
                cols = out[0, (n_cols - n_new) * rows:].reshape(n_new, rows, -1).mean(1)
                column_logits = self.model.forward_head(cols)
        last_col = self._first_window_column + n_cols - 1
        first_col = last_col - keep + 1 if self.pool == "window" else 0
        result = HopResult(self._hops, first_col * SAMPLES_PER_COLUMN / SAMPLE_RATE,
                           column_end_sample(last_col) / SAMPLE_RATE, logits,
                           self.model.probabilities(logits), column_logits)
        self._conv, self._ssm = conv, ssm
        if self.pool == "stream":  # (the only reader of the running sum)
            self._stream_sum += out[0, :fin].double().sum(0)
        self._stream_tokens += fin
        self._window = kept
        self._first_window_column += n_final
        self._hops += 1
        return result


class RecomputeRuntime:
    """Windowed recomputation: every hop runs the offline model on the last ``window_s``
    seconds of audio (``None``: all audio so far), featurised exactly as offline.

    Works for official checkpoints (the only way to reproduce their logits while streaming) and
    for streaming-layout models (the baseline the state-carrying runtime is measured against).
    The audio buffer holds at most ``window_s`` of samples plus one chunk (unbounded for
    ``window_s=None``).
    """

    def __init__(self, model: AudioMamba, *, window_s: float | None = 10.24,
                 hop_columns: int = 1, input_rate: int = SAMPLE_RATE,
                 norm: str | None = None) -> None:
        _check_model(model)
        self.model = model.eval()
        if window_s is not None and (not math.isfinite(window_s) or window_s <= 0):
            raise ConfigError(f"window_s must be a positive number of seconds or None, got "
                              f"{window_s!r}")
        self.window_samples = None if window_s is None else int(round(window_s * SAMPLE_RATE))
        self.hop_columns = _positive_int(hop_columns, "hop_columns")
        self.norm = model_norm(model, norm)
        self.input_rate = check_sample_rate(input_rate, "input_rate")
        self._resampler = (StreamingResampler(self.input_rate, SAMPLE_RATE)
                           if self.input_rate != SAMPLE_RATE else None)
        self.reset()

    def reset(self) -> None:
        if self._resampler is not None:
            self._resampler.reset()
        self._audio = torch.zeros(0)  # the last samples at 16 kHz
        self._audio_start = 0  # sample index of self._audio[0]
        self._hops = 0
        self._flushed = False

    def _hop_end(self, hop: int) -> int:
        return column_end_sample((hop + 1) * self.hop_columns - 1)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "RecomputeRuntime", "window_samples": self.window_samples,
                "hop_columns": self.hop_columns, "audio": self._audio.clone(),
                "audio_start": self._audio_start, "hops": self._hops, "flushed": self._flushed,
                "resampler": (self._resampler.state_dict()
                              if self._resampler is not None else None)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        try:
            if state["kind"] != "RecomputeRuntime":
                raise StreamStateError(f"snapshot is of a {state['kind']}, not a RecomputeRuntime")
            for key in ("window_samples", "hop_columns"):
                if state[key] != getattr(self, key):
                    raise StreamStateError(f"snapshot has {key}={state[key]!r}; this runtime has "
                                           f"{getattr(self, key)!r}")
            if (state["resampler"] is None) != (self._resampler is None):
                raise StreamStateError("snapshot was taken at another input rate")
            if state["resampler"] is not None:
                self._resampler.load_state_dict(state["resampler"])
            self._audio = state["audio"].clone()
            self._audio_start = int(state["audio_start"])
            self._hops = int(state["hops"])
            self._flushed = bool(state["flushed"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise StreamStateError(f"malformed RecomputeRuntime snapshot: {exc!r}") from exc

    def infer(self, chunk: Any, state: Mapping[str, Any] | None = None
              ) -> tuple[list[HopResult], dict[str, Any]]:
        if state is None:
            self.reset()
        else:
            self.load_state_dict(state)
        return self.push(chunk), self.state_dict()

    def push(self, chunk: Any) -> list[HopResult]:
        if self._flushed:
            raise StreamStateError("the stream was flushed; call reset() to start a new one")
        x = _chunk_to_float32(chunk)
        resampler = self._resampler
        if resampler is not None:
            x = resampler._push_validated(x)
        return self._consume(x)

    def flush(self) -> list[HopResult]:
        """End of stream: remaining hops, then one last result over the whole tail if audio
        arrived after the last hop's end (so the last result covers the entire stream)."""
        if self._flushed:
            raise StreamStateError("the stream was already flushed; call reset()")
        resampler = self._resampler
        results = self._consume(resampler.flush() if resampler is not None else torch.zeros(0))
        self._flushed = True
        end = self._audio_start + self._audio.shape[0]
        last_end = self._hop_end(self._hops - 1) if self._hops else 0
        if end > last_end and end - max(0, end - (self.window_samples or end)) >= FRAME_SAMPLES:
            results.append(self._evaluate(end))
        return results

    def _consume(self, x: torch.Tensor) -> list[HopResult]:
        self._audio = torch.cat([self._audio, x])
        results = []
        while self._audio_start + self._audio.shape[0] >= self._hop_end(self._hops):
            results.append(self._evaluate(self._hop_end(self._hops)))
        if self.window_samples is not None:  # keep only what the next hop can need
            next_start = self._hop_end(self._hops) - self.window_samples
            drop = max(0, min(next_start - self._audio_start, self._audio.shape[0]))
            self._audio = self._audio[drop:]
            self._audio_start += drop
        return results

    def _evaluate(self, end: int) -> HopResult:
        start = 0 if self.window_samples is None else max(0, end - self.window_samples)
        segment = self._audio[start - self._audio_start: end - self._audio_start]
        feats = features_for_model(self.model, segment, norm=self.norm)
        with torch.inference_mode():
            logits = self.model(feats.unsqueeze(0).to(next(self.model.parameters()).dtype))[0]
        result = HopResult(self._hops, start / SAMPLE_RATE, end / SAMPLE_RATE, logits,
                           self.model.probabilities(logits))
        self._hops += 1
        return result


__all__ = ["HopResult", "RecomputeRuntime", "StreamingRuntime"]
