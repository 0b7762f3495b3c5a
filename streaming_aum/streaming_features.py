"""Streaming front end: audio chunks of any length in, fbank frames out, chunk-invariantly.

Three stateful pieces, each with ``push`` / ``flush`` / ``reset`` / ``state_dict`` /
``load_state_dict``:

* :class:`StreamingResampler` -- any input rate -> 16 kHz. The concatenated outputs of any
  chunking, plus ``flush()``, equal ``torchaudio.functional.resample`` of the whole signal
  (same kernel, same zero padding at both ends, same output length).
* :class:`StreamingFbank` -- 16 kHz samples -> Kaldi fbank frames ``(k, N_MELS)``. The
  concatenated outputs equal ``kaldi_fbank(whole_signal, remove_clip_dc=False)`` to float32
  rounding (~1e-7), and ``ops.fbank_fused_cpu.fbank_frames_fused(whole_signal)`` (the offline
  features of streaming-layout models) bit for bit, whatever the chunking (tested): frame ``i``
  covers samples ``[HOP_SAMPLES * i, HOP_SAMPLES * i + FRAME_SAMPLES)`` and is emitted by the
  push that delivers sample ``HOP_SAMPLES * i + FRAME_SAMPLES - 1``.
* :class:`StreamingFrontEnd` -- resampler (if needed) + fbank + optional normalisation.

Chunks are 1-D numpy arrays or torch tensors of int16/int32/uint8 PCM or float16/32/64
(see :func:`streaming_aum.audio_io.to_float32`). A bad chunk (wrong shape/dtype, NaN/Inf) raises
:class:`AudioInputError` and leaves the state exactly as it was. Memory is bounded: only the
samples still needed by a future output are kept.

Snapshots (``state_dict()``) hold plain tensors, ints and bools only, so they round-trip through
``torch.save`` / ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from streaming_aum.audio_constants import FRAME_SAMPLES, HOP_SAMPLES, N_MELS, SAMPLE_RATE, num_frames
from streaming_aum.audio_io import check_finite, check_sample_rate, to_float32
from streaming_aum.errors import AudioInputError, StreamStateError
from streaming_aum.features import (NormLike, NormStats, kaldi_fbank_unchecked, normalize,
                                    resolve_norm)
from streaming_aum.ops.fbank_fused_cpu import fbank_frames_fused
from streaming_aum.ops.scan_fused_cpu import HAVE_NUMBA

__all__ = [
    "StreamStateError",
    "StreamingFbank",
    "StreamingFrontEnd",
    "StreamingResampler",
    "sinc_resample_kernel",
]

#: torchaudio.functional.resample defaults, reproduced by StreamingResampler.
LOWPASS_FILTER_WIDTH: int = 6
ROLLOFF: float = 0.99


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _chunk_to_float32(chunk: Any, name: str = "chunk") -> torch.Tensor:
    """Validate one streamed chunk -> 1-D float32 CPU tensor (possibly empty); no state touched."""
    x = to_float32(chunk).cpu()
    if x.dim() != 1:
        raise AudioInputError(
            f"{name} has shape {tuple(x.shape)}; streamed chunks must be 1-D (n,) mono samples "
            "(mix channels down with streaming_aum.audio_io.to_mono first)"
        )
    check_finite(x, name, note=" (the stream state is unchanged)")
    return x


def _get(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], owner: str) -> Any:
    if not isinstance(d, Mapping):
        raise StreamStateError(f"{owner} state must be a dict; got {type(d).__name__}")
    if key not in d:
        raise StreamStateError(f"{owner} state has no {key!r} entry; keys found: {sorted(d)}")
    value = d[key]
    if isinstance(value, torch.Tensor) and kind is not torch.Tensor and value.dim() == 0:
        value = value.item()  # scalars that went through a tensor-only serialiser
    if isinstance(value, bool) and kind is int:
        raise StreamStateError(f"{owner} state {key!r} must be int; got bool")
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise StreamStateError(f"{owner} state {key!r} must be {names}; got {type(value).__name__}")
    return value


def _get_buffer(d: Mapping[str, Any], key: str, owner: str, max_len: int) -> torch.Tensor:
    buf = _get(d, key, torch.Tensor, owner)
    if buf.dtype != torch.float32 or buf.dim() != 1:
        raise StreamStateError(
            f"{owner} state {key!r} must be a 1-D float32 tensor; got shape {tuple(buf.shape)}, {buf.dtype}"
        )
    if buf.numel() > max_len:
        raise StreamStateError(f"{owner} state {key!r} holds {buf.numel()} samples; at most {max_len} expected")
    if not bool(torch.isfinite(buf).all()):
        raise StreamStateError(f"{owner} state {key!r} contains NaN/Inf")
    return buf.detach().clone().cpu()


def _check_nonneg(value: int, key: str, owner: str) -> int:
    if value < 0:
        raise StreamStateError(f"{owner} state {key!r} must be >= 0; got {value}")
    return value


# --------------------------------------------------------------------------------------------
# fbank
# --------------------------------------------------------------------------------------------


class StreamingFbank:
    """Incremental Kaldi fbank of a 16 kHz stream: ``push(chunk) -> (k, N_MELS)`` new frames.

    Equivalent to ``kaldi_fbank(whole_signal, remove_clip_dc=False)`` for any chunking, to
    float32 rounding (each frame only depends on its own FRAME_SAMPLES samples, and is computed
    by ``ops.fbank_fused_cpu.fbank_frames_fused`` on the buffered samples, the same way
    whatever else the call holds; ~1e-7 from the op-for-op Kaldi code). Latency: frame ``i``
    is emitted as soon as sample ``HOP_SAMPLES * i + FRAME_SAMPLES - 1`` arrives (25 ms
    window, no lookahead beyond it).

    Memory: between pushes the buffer holds ``samples_seen - HOP_SAMPLES * frames_emitted``
    samples, always fewer than FRAME_SAMPLES; during a push, fewer than FRAME_SAMPLES + chunk.
    """

    _OWNER = "StreamingFbank"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Return to the state of a freshly constructed object."""
        self._buffer = torch.zeros(0, dtype=torch.float32)
        self._frames_emitted = 0
        self._samples_seen = 0

    @property
    def frames_emitted(self) -> int:
        """Frames returned so far (10 ms each)."""
        return self._frames_emitted

    @property
    def samples_seen(self) -> int:
        """16 kHz samples pushed so far."""
        return self._samples_seen

    @property
    def buffered_samples(self) -> int:
        """Samples currently held: the start of the next frame up to the last sample pushed."""
        return int(self._buffer.numel())

    def push(self, chunk: Any) -> torch.Tensor:
        """Add a 1-D chunk of 16 kHz samples (any length, 0 included); return the frames it completes.

        Returns:
            ``(k, N_MELS)`` float32, ``k >= 0``: frames ``frames_emitted .. frames_emitted + k - 1``.

        Raises:
            AudioInputError: unsupported dtype, not 1-D, or NaN/Inf (state unchanged).
        """
        x = _chunk_to_float32(chunk)
        return self._push_validated(x)

    def _push_validated(self, x: torch.Tensor, norm: NormStats | None = None) -> torch.Tensor:
        """``push`` of validated float32 samples; ``norm``: return the frames normalised."""
        buf = torch.cat([self._buffer, x]) if x.numel() else self._buffer
        k = num_frames(buf.numel())
        if k == 0:
            frames = torch.zeros(0, N_MELS, dtype=torch.float32)
        else:
            used = (k - 1) * HOP_SAMPLES + FRAME_SAMPLES
            # the samples were validated on the way in (_chunk_to_float32): no second check.
            # The fused form (ops.fbank_fused_cpu: 4 calls, not ~14 ops) equals the op-for-op
            # path to ~1e-7 in the log domain and is chunk-invariant: each frame is computed
            # from its own samples alone, the same way whatever else is in the call
            if HAVE_NUMBA:
                frames = fbank_frames_fused(buf[:used], mean=None if norm is None else norm.mean,
                                            std=None if norm is None else norm.std)
            else:  # pragma: no cover
                frames = kaldi_fbank_unchecked(buf[:used])
                frames = frames if norm is None else normalize(frames, norm)
            buf = buf[k * HOP_SAMPLES :].clone()  # clone: do not pin the whole chunk's storage
        self._buffer = buf
        self._frames_emitted += k
        self._samples_seen += int(x.numel())
        return frames

    def flush(self) -> torch.Tensor:
        """End of stream: Kaldi ``snip_edges`` drops a trailing partial frame, so nothing is added.

        Returns ``(0, N_MELS)``; the object stays usable (``reset()`` to start a new stream).
        """
        return torch.zeros(0, N_MELS, dtype=torch.float32)

    def state_dict(self) -> dict[str, Any]:
        """Snapshot: ``{"buffer": (m,) float32, "frames_emitted": int, "samples_seen": int}``."""
        return {
            "buffer": self._buffer.clone(),
            "frames_emitted": self._frames_emitted,
            "samples_seen": self._samples_seen,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot; raises :class:`StreamStateError` if malformed."""
        owner = self._OWNER
        buf = _get_buffer(state, "buffer", owner, FRAME_SAMPLES - 1)
        frames = _check_nonneg(_get(state, "frames_emitted", int, owner), "frames_emitted", owner)
        seen = _check_nonneg(_get(state, "samples_seen", int, owner), "samples_seen", owner)
        if num_frames(seen) != frames or seen - frames * HOP_SAMPLES != buf.numel():
            raise StreamStateError(
                f"{owner} state is inconsistent: {seen} samples seen give {num_frames(seen)} frames "
                f"and {seen - num_frames(seen) * HOP_SAMPLES} buffered samples, but the snapshot "
                f"has {frames} frames and {buf.numel()} buffered samples"
            )
        self._buffer, self._frames_emitted, self._samples_seen = buf, frames, seen


# --------------------------------------------------------------------------------------------
# resampler
# --------------------------------------------------------------------------------------------


def sinc_resample_kernel(orig: int, new: int) -> tuple[torch.Tensor, int]:
    """The polyphase windowed-sinc kernel of ``torchaudio.functional.resample`` (float32).

    ``orig`` and ``new`` are the rates divided by their gcd. Returns ``(kernel, width)`` with
    kernel ``(new, 1, 2 * width + orig)``: output ``j * new + p`` is the dot product of
    ``kernel[p, 0]`` with input samples ``[j * orig - width, j * orig + width + orig)`` (zeros
    outside the signal). Same arithmetic as torchaudio's ``_get_sinc_resample_kernel`` with the
    defaults (Hann window, ``lowpass_filter_width=6``, ``rolloff=0.99``) and ``dtype=float32``.
    """
    dtype = torch.float32
    base_freq = min(orig, new) * ROLLOFF
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / base_freq)
    idx = torch.arange(-width, width + orig, dtype=dtype)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=dtype)[:, None, None] / new + idx
    t *= base_freq
    t = t.clamp_(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
    window = torch.cos(t * math.pi / LOWPASS_FILTER_WIDTH / 2) ** 2
    t *= math.pi
    scale = base_freq / orig
    kernel = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t)
    kernel *= window * scale
    return kernel, width


class StreamingResampler:
    """Chunk-invariant resampling ``orig_rate -> target_rate`` with the torchaudio kernel.

    With ``g = gcd(orig_rate, target_rate)``, ``o = orig_rate / g`` and ``q = target_rate / g``,
    the signal is processed in blocks of ``o`` input samples, each giving ``q`` output samples.
    Block ``j`` needs input up to index ``j * o + o + width`` (exclusive), ``width`` being the
    filter's one-sided length in input samples; the ``width`` samples before the signal are zeros.

    Outputs: the concatenation of all ``push`` results does not depend on the chunking (dot
    products are accumulated in float64 and rounded once to float32, so they are bit-identical in
    practice). It is a prefix of ``torchaudio.functional.resample(whole_signal)``, up to that
    function's float32 rounding (~1e-7). ``flush()`` appends the tail, computed with the same zero
    right-padding, so pushes + flush equal the whole torchaudio output, including its length
    ``ceil(n * target_rate / orig_rate)``. Until ``flush()``, at most about
    ``latency_input_samples * target_rate / orig_rate`` output samples are held back.

    Latency: an output sample is emitted between ``width + o / q`` and ``width + o`` input samples
    after its own time instant (:attr:`latency_input_samples` is the worst case; e.g. 458 input
    samples = 10.4 ms for 44.1 kHz -> 16 kHz, 22 samples = 0.46 ms for 48 kHz -> 16 kHz,
    8 samples = 1 ms for 8 kHz -> 16 kHz). Equal rates pass samples through with zero latency.

    Memory: fewer than ``2 * width + o`` input samples are kept between pushes.
    """

    _OWNER = "StreamingResampler"

    def __init__(self, orig_rate: int, target_rate: int = SAMPLE_RATE) -> None:
        self.orig_rate = check_sample_rate(orig_rate, "orig_rate")
        self.target_rate = check_sample_rate(target_rate, "target_rate")
        g = math.gcd(self.orig_rate, self.target_rate)
        self._orig, self._new = self.orig_rate // g, self.target_rate // g
        self._passthrough = self.orig_rate == self.target_rate
        if self._passthrough:
            self._kernel, self._width = torch.ones(1, 1, 1), 0
        else:
            self._kernel, self._width = sinc_resample_kernel(self._orig, self._new)
        # float64 accumulation, rounded once to float32: outputs do not depend on the chunking
        # (float32 BLAS rounding would depend on how many blocks are computed together)
        self._taps = self._kernel[:, 0, :].T.to(torch.float64).contiguous()  # (2 * width + o, q)
        self.reset()

    # -- properties ---------------------------------------------------------------------------

    @property
    def width(self) -> int:
        """One-sided filter length in input samples (0 for pass-through)."""
        return self._width

    @property
    def latency_input_samples(self) -> int:
        """Worst-case delay, in input samples, between an output instant and its emission."""
        return 0 if self._passthrough else self._width + self._orig

    @property
    def latency_seconds(self) -> float:
        return self.latency_input_samples / self.orig_rate

    @property
    def samples_seen(self) -> int:
        """Input samples pushed so far."""
        return self._samples_seen

    @property
    def samples_emitted(self) -> int:
        """Output samples returned so far (pushes and flush)."""
        return self._samples_emitted

    @property
    def buffered_samples(self) -> int:
        return int(self._buffer.numel())

    @property
    def finished(self) -> bool:
        """True after ``flush()`` until ``reset()``."""
        return self._finished

    # -- streaming ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Return to the state of a freshly constructed object."""
        # The buffer starts with the `width` zeros that torchaudio pads in front of the signal.
        self._buffer = torch.zeros(self._width, dtype=torch.float32)
        self._samples_seen = 0
        self._samples_emitted = 0
        self._finished = False

    def _check_open(self) -> None:
        if self._finished:
            raise StreamStateError(f"{self._OWNER}: the stream was flushed; call reset() to start a new one")

    def _run_blocks(self, buf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output of every complete block in ``buf`` and the samples kept for the next block."""
        k = self._taps.shape[0]
        if buf.numel() < k:
            return torch.zeros(0, dtype=torch.float32), buf
        blocks = buf.unfold(0, k, self._orig)  # (nb, 2 * width + o)
        out = (blocks.to(torch.float64) @ self._taps).reshape(-1).to(torch.float32)  # (nb * q,)
        return out, buf[blocks.shape[0] * self._orig :].clone()

    def push(self, chunk: Any) -> torch.Tensor:
        """Add a 1-D chunk at ``orig_rate``; return the ``(m,)`` float32 outputs now complete."""
        self._check_open()
        x = _chunk_to_float32(chunk)
        return self._push_validated(x)

    def _push_validated(self, x: torch.Tensor) -> torch.Tensor:
        if self._passthrough:
            out = x.clone()  # never hand back the caller's own tensor
        else:
            buf = torch.cat([self._buffer, x]) if x.numel() else self._buffer
            out, self._buffer = self._run_blocks(buf)
        self._samples_seen += int(x.numel())
        self._samples_emitted += int(out.numel())
        return out

    def flush(self) -> torch.Tensor:
        """End of stream: the remaining ``(m,)`` outputs, zero-padding the input on the right.

        Afterwards the total output length is ``ceil(samples_seen * target_rate / orig_rate)``,
        as for ``torchaudio.functional.resample``. Further pushes need ``reset()`` first.
        """
        self._check_open()
        self._finished = True
        if self._passthrough:
            return torch.zeros(0, dtype=torch.float32)
        pad = torch.zeros(self._width + self._orig, dtype=torch.float32)
        out, _ = self._run_blocks(torch.cat([self._buffer, pad]))
        total = -(-self._samples_seen * self._new // self._orig)
        out = out[: max(0, total - self._samples_emitted)]
        self._buffer = torch.zeros(0, dtype=torch.float32)
        self._samples_emitted += int(out.numel())
        return out

    # -- snapshots ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Snapshot: buffer (float32), counters, the rates and the finished flag."""
        return {
            "orig_rate": self.orig_rate,
            "target_rate": self.target_rate,
            "buffer": self._buffer.clone(),
            "samples_seen": self._samples_seen,
            "samples_emitted": self._samples_emitted,
            "finished": self._finished,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot of a resampler with the same rates."""
        owner = self._OWNER
        rates = (_get(state, "orig_rate", int, owner), _get(state, "target_rate", int, owner))
        if rates != (self.orig_rate, self.target_rate):
            raise StreamStateError(
                f"{owner} snapshot is for {rates[0]} -> {rates[1]} Hz; this resampler is "
                f"{self.orig_rate} -> {self.target_rate} Hz"
            )
        finished = _get(state, "finished", (bool, np.bool_), owner)
        seen = _check_nonneg(_get(state, "samples_seen", int, owner), "samples_seen", owner)
        emitted = _check_nonneg(_get(state, "samples_emitted", int, owner), "samples_emitted", owner)
        kernel_len = self._taps.shape[0]
        buf = _get_buffer(state, "buffer", owner, max(kernel_len - 1, self._width))
        if not finished and not self._passthrough:
            # buffer = padded input from block (emitted / q) on: width + seen - blocks * o samples
            blocks, rem = divmod(emitted, self._new)
            if rem or buf.numel() != self._width + seen - blocks * self._orig:
                raise StreamStateError(
                    f"{owner} state is inconsistent: {seen} samples seen, {emitted} emitted and "
                    f"{buf.numel()} buffered do not fit blocks of {self._orig} -> {self._new} samples"
                )
        self._buffer, self._samples_seen, self._samples_emitted = buf, seen, emitted
        self._finished = bool(finished)


# --------------------------------------------------------------------------------------------
# front end
# --------------------------------------------------------------------------------------------


class StreamingFrontEnd:
    """Audio chunks at ``input_rate`` -> normalised fbank frames ``(k, N_MELS)``, chunk-invariantly.

    ``push`` = :class:`StreamingResampler` (only when ``input_rate != SAMPLE_RATE``) ->
    :class:`StreamingFbank` -> ``normalize`` (unless ``norm is None``). The concatenated outputs
    of all pushes and ``flush()`` equal ``normalize(kaldi_fbank(resample(x), remove_clip_dc=False))``
    of the whole signal ``x``. No padding to a fixed length is done here: that is the consumer's
    choice (see ``features.pad_or_crop``).

    Latency: the resampler's :attr:`StreamingResampler.latency_input_samples`, plus the 25 ms
    fbank window.
    """

    _OWNER = "StreamingFrontEnd"

    def __init__(self, input_rate: int = SAMPLE_RATE, norm: NormLike | None = "audioset") -> None:
        self.input_rate = check_sample_rate(input_rate, "input_rate")
        self.norm: NormStats | None = None if norm is None else resolve_norm(norm)
        self._resampler = StreamingResampler(self.input_rate, SAMPLE_RATE) if self.input_rate != SAMPLE_RATE else None
        self._fbank = StreamingFbank()
        self._finished = False

    @property
    def frames_emitted(self) -> int:
        return self._fbank.frames_emitted

    @property
    def samples_seen(self) -> int:
        """Input samples (at ``input_rate``) pushed so far."""
        return self._resampler.samples_seen if self._resampler is not None else self._fbank.samples_seen

    @property
    def latency_input_samples(self) -> int:
        """Resampler lookahead in input samples (0 at 16 kHz); the fbank window comes on top."""
        return self._resampler.latency_input_samples if self._resampler is not None else 0

    def reset(self) -> None:
        if self._resampler is not None:
            self._resampler.reset()
        self._fbank.reset()
        self._finished = False

    def _finish_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return frames if self.norm is None else normalize(frames, self.norm)

    def push(self, chunk: Any) -> torch.Tensor:
        """Add a 1-D chunk at ``input_rate``; return the new ``(k, N_MELS)`` (normalised) frames."""
        if self._finished:
            raise StreamStateError(f"{self._OWNER}: the stream was flushed; call reset() to start a new one")
        x = _chunk_to_float32(chunk)
        if self._resampler is not None:
            x = self._resampler._push_validated(x)
        return self._fbank._push_validated(x, self.norm)

    def flush(self) -> torch.Tensor:
        """End of stream: frames completed by the resampler's tail (``(k, N_MELS)``, often k = 0)."""
        if self._finished:
            raise StreamStateError(f"{self._OWNER}: the stream was already flushed; call reset()")
        self._finished = True
        if self._resampler is None:
            return self._finish_frames(self._fbank.flush())
        tail = self._resampler.flush()
        return self._fbank._push_validated(tail, self.norm)

    def state_dict(self) -> dict[str, Any]:
        """Snapshot: ``{"input_rate", "finished", "fbank": {...}, "resampler": {...} or absent}``."""
        state: dict[str, Any] = {
            "input_rate": self.input_rate,
            "finished": self._finished,
            "fbank": self._fbank.state_dict(),
        }
        if self._resampler is not None:
            state["resampler"] = self._resampler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot of a front end with the same ``input_rate``."""
        owner = self._OWNER
        rate = _get(state, "input_rate", int, owner)
        if rate != self.input_rate:
            raise StreamStateError(
                f"{owner} snapshot is for input_rate {rate} Hz; this front end has {self.input_rate} Hz"
            )
        finished = bool(_get(state, "finished", (bool, np.bool_), owner))
        fbank = StreamingFbank()
        fbank.load_state_dict(_get(state, "fbank", Mapping, owner))
        resampler = None
        if self._resampler is not None:
            resampler = StreamingResampler(self.input_rate, SAMPLE_RATE)
            resampler.load_state_dict(_get(state, "resampler", Mapping, owner))
        # only commit once every part validated
        self._fbank, self._finished = fbank, finished
        if resampler is not None:
            self._resampler = resampler
