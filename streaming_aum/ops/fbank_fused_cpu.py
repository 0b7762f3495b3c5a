"""The Kaldi fbank of a few streamed frames in three calls (numba, one FFT, numba).

``features.kaldi_fbank_unchecked`` replays torchaudio's ``kaldi.fbank`` op for op (bit for bit):
about a dozen torch ops per call. A streaming hop computes 16 frames (one patch column), where
each op costs dispatch, not arithmetic, and more so inside a running hop than in a tight loop
(measured on the default model: that fbank took 0.65 ms of a ~6.5 ms hop, 0.15 ms alone). Here:

1. ``torch.mean`` of each frame (the DC to remove; PyTorch's own reduction, kept so that step 2
   is bit-identical to the op-for-op path);
2. one numba pass: DC removal, pre-emphasis (the first sample repeats itself, Kaldi's
   ``replicate`` padding), the Hann window and the zero padding to ``N_FFT``, written into one
   (k, 512) buffer. Each element is ``((x_i - dc) - 0.97 * (x_{i-1} - dc)) * window_i`` with the
   same float32 roundings as the torch ops (no fused multiply-adds: ``POINTWISE_FASTMATH``),
   so the FFT input is the same bits (tested);
3. ``torch.fft.rfft`` (pocketfft, as the op-for-op path);
4. one numba pass: the power ``re^2 + im^2``, the mel filters as sparse rows (each of the 128
   Kaldi triangles covers at most a few dozen contiguous bins: 504 non-zeros of the dense
   128 x 257 matrix), ``log(max(mel, eps))`` and optionally the dataset normalisation
   ``(v - mean) / (2 std)``.

Step 4 rounds differently from ``abs().pow(2)``, a dense ``mm`` and torch's ``log`` (a few
float32 ulp of each mel energy, ~1e-7 absolute in the log domain): tested against the
op-for-op path to the streaming front end's tolerance (2e-6 absolute, 1e-6 relative).
The offline pipeline keeps the op-for-op path (official parity, bit for bit with torchaudio).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..audio_constants import FRAME_SAMPLES, HOP_SAMPLES, N_FFT, N_MELS, PREEMPHASIS
from .scan_fused_cpu import HAVE_NUMBA

if HAVE_NUMBA:
    from numba import njit

    from .pointwise_cpu import POINTWISE_FASTMATH
    from .scan_fused_cpu import fma_f32, prefer_512_bit_vectors

    _PRE = np.float32(PREEMPHASIS)

    @njit(fastmath=POINTWISE_FASTMATH, cache=True, nogil=True, error_model="numpy")
    def _pre_fft_kernel(w, dc, window, out):  # pragma: no cover - compiled
        """w (n,) samples, dc (k,) frame means, window (400,), out (k, N_FFT) f32."""
        prefer_512_bit_vectors()
        k = out.shape[0]
        for f in range(k):
            base = f * HOP_SAMPLES
            m = dc[f]
            prev = w[base] - m  # replicate padding: sample -1 of the frame is sample 0
            for i in range(FRAME_SAMPLES):
                xi = w[base + i] - m
                out[f, i] = (xi - _PRE * prev) * window[i]
                prev = xi
            for i in range(FRAME_SAMPLES, out.shape[1]):
                out[f, i] = 0.0

    @njit(fastmath=POINTWISE_FASTMATH, cache=True, nogil=True, error_model="numpy")
    def _power_mel_log_kernel(spec, lo, hi, offsets, weights, floor, mean, scale, normalize,
                              power, out):  # pragma: no cover - compiled
        """spec (k, N_FFT/2+1, 2) f32 (re, im); mel m sums bins lo[m]..hi[m]-1 with
        weights[offsets[m]:]; power (N_FFT/2+1,) scratch; out (k, N_MELS) f32."""
        prefer_512_bit_vectors()
        k, bins = spec.shape[0], spec.shape[1]
        for f in range(k):
            for b in range(bins):
                re = spec[f, b, 0]
                im = spec[f, b, 1]
                power[b] = fma_f32(re, re, im * im)
            for m in range(out.shape[1]):
                acc = np.float32(0.0)
                o = offsets[m] - lo[m]
                for b in range(lo[m], hi[m]):
                    acc = fma_f32(power[b], weights[o + b], acc)
                v = np.log(max(acc, floor))
                out[f, m] = (v - mean) / scale if normalize else v


@functools.lru_cache(maxsize=None)
def _sparse_mel() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                           np.float32]:
    """(window (400,), lo, hi, offsets (N_MELS,) int64, weights (nnz,) f32, log floor) from
    the op-for-op path's constants (``features._fbank_constants``)."""
    from ..features import _fbank_constants

    window, banks, floor = _fbank_constants(torch.float32)
    dense = banks.numpy()
    lo = np.zeros(N_MELS, np.int64)
    hi = np.zeros(N_MELS, np.int64)
    offsets = np.zeros(N_MELS, np.int64)
    weights = []
    nnz = 0
    for m in range(N_MELS):
        nz = np.flatnonzero(dense[m])
        offsets[m] = nnz
        if nz.size:  # a filter narrower than one FFT bin can be empty (row 3 here)
            lo[m], hi[m] = nz[0], nz[-1] + 1
            weights.append(dense[m, lo[m]:hi[m]])
            nnz += hi[m] - lo[m]
    return (window[0].contiguous().numpy(), lo, hi, offsets,
            np.ascontiguousarray(np.concatenate(weights)), np.float32(floor.item()))


def fbank_frames_fused(w: torch.Tensor, *, mean: float | None = None,
                       std: float | None = None) -> torch.Tensor:
    """Kaldi fbank of validated float32 ``(n,)`` samples at 16 kHz (``n >= 400``) -> ``(k,
    N_MELS)`` with ``k = 1 + (n - 400) // 160``, as ``features.kaldi_fbank_unchecked`` (see
    the module docstring for how they differ). With ``mean``/``std``: normalised,
    ``(v - mean) / (2 std)``."""
    if not HAVE_NUMBA:  # pragma: no cover
        raise RuntimeError("fbank_frames_fused needs numba; use features.kaldi_fbank_unchecked")
    if w.dtype != torch.float32 or w.dim() != 1 or w.shape[0] < FRAME_SAMPLES:
        raise ValueError(f"expected (n >= {FRAME_SAMPLES},) float32 samples, got "
                         f"{tuple(w.shape)} {w.dtype}")
    window, lo, hi, offsets, weights, floor = _sparse_mel()
    w = w.contiguous()
    k = 1 + (w.shape[0] - FRAME_SAMPLES) // HOP_SAMPLES
    frames = w.as_strided((k, FRAME_SAMPLES), (HOP_SAMPLES, 1))
    dc = torch.mean(frames, dim=1)
    padded = torch.empty(k, N_FFT, dtype=torch.float32)
    _pre_fft_kernel(w.numpy(), dc.numpy(), window, padded.numpy())
    spec = torch.view_as_real(torch.fft.rfft(padded))
    out = torch.empty(k, N_MELS, dtype=torch.float32)
    norm = mean is not None
    _power_mel_log_kernel(spec.numpy(), lo, hi, offsets, weights, floor,
                          np.float32(mean if norm else 0.0),
                          np.float32(2.0 * std if norm else 1.0), norm,
                          np.empty(N_FFT // 2 + 1, np.float32), out.numpy())
    return out


__all__ = ["fbank_frames_fused"]
