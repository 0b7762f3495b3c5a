"""Vectorised float32 pointwise functions for the CPU inference path (numba): softplus and SiLU.

Why: PyTorch's CPU ``softplus`` is not vectorised (3.5-12 ns per element on this machine
depending on load), and numba's own ``exp``/``log1p`` do not vectorise without Intel SVML,
which llvmlite's wheels lack. Both functions here are built from the scan kernel's float32
exp (range reduction and polynomial, ``exp_f32_nonpos``: one AVX-512 register per 16
lanes) and polynomials.

Numerics (tested against float64):

* ``softplus(x) = max(x, 0) + log1p(exp(-|x|))``, and ``x`` itself above 20 (the threshold of
  ``F.softplus(threshold=20)`` and of the CUDA kernels). ``log1p(e)`` for ``e`` in (0, 1] is
  ``2 atanh(s)``, ``s = e / (2 + e)`` in (0, 1/3], by its odd series to ``s^15`` (remainder
  below 2e-9 relative). Within 3 ulp of the float64 value; below -87 the clamped exp gives
  ``1.6e-38`` (the true value is smaller still: both are 0 for any use as a step size).
* ``silu(a) = a * sigmoid(a)``, ``sigmoid`` from ``exp(-|a|)`` (no overflow), and 0 below
  -87 (true value below 1.7e-38).
* Bit-reproducible: the same inputs give the same bits wherever the arrays lie in memory
  (see ``POINTWISE_FASTMATH``; tested).

``error_model="numpy"`` lets the divisions vectorise (numba's default checks each division
for zero, which keeps it scalar).
"""

from __future__ import annotations

import numpy as np
import torch

from .scan_fused_cpu import HAVE_NUMBA, run_split

_SOFTPLUS_THRESHOLD = 20.0
_BLOCK = 4096  # elements per work item when a large tensor is split over threads
_MIN_PARALLEL = 65_536  # elements below which one thread beats the hand-off

if HAVE_NUMBA:
    from numba import njit

    from .scan_fused_cpu import _EXP_F32_LO, exp_f32_nonpos, fma_f32, prefer_512_bit_vectors

    # No "contract" (FMA fusion left to LLVM) and no "arcp"/"afn": these kernels loop over a
    # variable number of elements, so LLVM emits a vector body, a scalar remainder and a
    # scalar fallback taken when a runtime check on the arrays' addresses cannot rule out
    # overlap. With fusion left to the backend the forms rounded differently, so about 2% of
    # calls gave other last bits depending on where the arrays lay in memory: a streaming hop
    # was not bit-reproducible (the P5 snapshot test failed at random). The multiply-adds
    # that matter for speed are explicit ``fma_f32`` calls instead: one rounding, the same in
    # every form.
    POINTWISE_FASTMATH = {"nnan", "ninf", "nsz"}

    @njit(fastmath=POINTWISE_FASTMATH, nogil=True, inline="always", error_model="numpy")
    def silu_f32(a):  # pragma: no cover - compiled
        """a * sigmoid(a): sigmoid(a) = 1 / (1 + e) for a >= 0 and e / (1 + e) below, with
        e = exp(-|a|) in (0, 1]. ``exp_f32_nonpos`` clamps at exp(-87), so below -87 the
        sigmoid is taken as 0: silu(-1e30) is 0, not -1e30 * 1.6e-38."""
        e = exp_f32_nonpos(-abs(a))
        r = np.float32(1.0) / (np.float32(1.0) + e)
        sig = r if a >= np.float32(0.0) else (e * r if a > _EXP_F32_LO else np.float32(0.0))
        return a * sig

    @njit(fastmath=POINTWISE_FASTMATH, nogil=True, inline="always", error_model="numpy")
    def softplus_f32(v):  # pragma: no cover - compiled
        """softplus with threshold 20 (see the module docstring)."""
        e = exp_f32_nonpos(-abs(v))
        s = e / (np.float32(2.0) + e)  # log1p(e) = 2 atanh(s), s in (0, 1/3]
        s2 = s * s
        p = np.float32(1.0 / 15.0)
        p = fma_f32(p, s2, np.float32(1.0 / 13.0))
        p = fma_f32(p, s2, np.float32(1.0 / 11.0))
        p = fma_f32(p, s2, np.float32(1.0 / 9.0))
        p = fma_f32(p, s2, np.float32(1.0 / 7.0))
        p = fma_f32(p, s2, np.float32(1.0 / 5.0))
        p = fma_f32(p, s2, np.float32(1.0 / 3.0))
        p = fma_f32(p, s2, np.float32(1.0))
        r = fma_f32(np.float32(2.0) * s, p, max(v, np.float32(0.0)))
        return v if v > np.float32(_SOFTPLUS_THRESHOLD) else r

    @njit(fastmath=POINTWISE_FASTMATH, cache=True, nogil=True, error_model="numpy")
    def _softplus_kernel(x, out, lo, hi):  # pragma: no cover - compiled
        """out[i] = softplus(x[i]) for flat float32 arrays, blocks ``lo..hi-1`` of _BLOCK."""
        prefer_512_bit_vectors()
        end = min(hi * _BLOCK, x.size)
        for i in range(lo * _BLOCK, end):
            out[i] = softplus_f32(x[i])


def softplus_fused(x: torch.Tensor) -> torch.Tensor:
    """``F.softplus(x, threshold=20)`` for a float32 CPU tensor without autograd, vectorised
    (a new contiguous tensor of x's shape). Splits large tensors over
    ``torch.get_num_threads()`` threads."""
    if not HAVE_NUMBA:  # pragma: no cover
        raise RuntimeError("softplus_fused needs numba; use scan_reference.softplus_like_cuda")
    if x.dtype != torch.float32 or x.device.type != "cpu":
        raise ValueError(f"softplus_fused takes float32 CPU tensors, got {x.dtype} on {x.device}")
    flat = x.detach().contiguous().view(-1)
    out = torch.empty_like(flat)
    n = flat.numel()
    run_split(_softplus_kernel, (flat.numpy(), out.numpy()), (n + _BLOCK - 1) // _BLOCK,
              serial=n < _MIN_PARALLEL)
    return out.view(x.shape)


if HAVE_NUMBA:

    @njit(fastmath=POINTWISE_FASTMATH, nogil=True, inline="always", error_model="numpy")
    def _gate_body(y, xz, out, pair, lo, hi):  # pragma: no cover - compiled
        """Rows ``lo..hi-1`` of the flattened (nb * L) rows of ``_gate_kernel``."""
        nb, L, E = out.shape
        for r in range(lo, hi):
            b = r // L
            t = r - b * L
            if pair:
                for e in range(E):
                    out[b, t, e] = ((y[b, t, e] + y[nb + b, t, e]) * np.float32(0.5)
                                    * silu_f32(xz[b, t, E + e]))
            else:
                for e in range(E):
                    out[b, t, e] = y[b, t, e] * silu_f32(xz[b, t, E + e])

    @njit(fastmath=POINTWISE_FASTMATH, cache=True, nogil=True, error_model="numpy")
    def _gate_kernel(y, xz, out, pair):  # pragma: no cover - compiled
        """out[b, t, e] = y[b, t, e] * silu(xz[b, t, E + e]); ``pair``: y holds 2 nb rows
        (a v2 layer's forward rows, then its backward rows) and the first factor is
        (y[b] + y[nb + b]) * 0.5. All rows, on the calling thread (the streaming hop's form)."""
        prefer_512_bit_vectors()
        _gate_body(y, xz, out, pair, 0, out.shape[0] * out.shape[1])

    @njit(fastmath=POINTWISE_FASTMATH, cache=True, nogil=True, error_model="numpy")
    def _gate_rows(y, xz, out, pair, lo, hi):  # pragma: no cover - compiled
        """``_gate_kernel`` over rows ``lo..hi-1`` of (nb * L): one thread's part of a large
        call (elementwise, so any split gives the same bits)."""
        prefer_512_bit_vectors()
        _gate_body(y, xz, out, pair, lo, hi)


def gated_output(y: torch.Tensor, xz: torch.Tensor, *, pair: bool = False) -> torch.Tensor:
    """The mixer's gate ``y * silu(z)`` in one pass, ``z = xz[..., E:2E]`` read in place.

    y: contiguous float32 (B, L, E), or (2B, L, E) with ``pair`` (a v2 layer's two branches
    stacked: ``(y_f + y_b) * 0.5`` is gated, as the official ``if_devide_out``); xz:
    contiguous float32 (B, L, 2E), the in-projection's output. Returns (B, L, E)."""
    if not HAVE_NUMBA:  # pragma: no cover
        raise RuntimeError("gated_output needs numba")
    batch, length, two_e = xz.shape
    E = two_e // 2
    rows = 2 * batch if pair else batch
    for name, t in (("y", y), ("xz", xz)):
        if t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(f"{name} must be a contiguous float32 CPU tensor")
    if tuple(y.shape) != (rows, length, E) or two_e % 2:
        raise ValueError(f"y {tuple(y.shape)} and xz {tuple(xz.shape)} do not fit: expected y "
                         f"({rows}, {length}, {E}) for xz (B, L, 2E)")
    out = torch.empty(batch, length, E, dtype=torch.float32)
    run_split(_gate_rows, (y.numpy(), xz.numpy(), out.numpy(), pair), batch * length,
              serial=batch * length * E < _MIN_PARALLEL)
    return out
