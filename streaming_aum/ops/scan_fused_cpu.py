"""Fused CPU selective scan (numba): exp, recurrence and read-out in one pass over time.

Why this layout and these numerics:

* A Mamba-1 decay ``exp(dt_t * A[e, s])`` differs per channel and state, so the scan cannot be
  turned into a few large matmuls on a CPU, and materialising all decays costs more memory
  traffic than the recurrence itself. The kernel computes each decay in registers, right where
  it is used.
* Channels are the vector lanes: inputs are channels-last ``(batch, L, E)``, a block of
  ``LANES`` = 16 adjacent channels (one AVX-512 register of float32) is scanned together, and
  blocks run in parallel threads (``prange``). ``B_t``/``C_t`` are scalars broadcast over lanes.
* ``exp(x)`` for ``x <= 0`` is evaluated in float64 as ``P(x/256)^256`` with ``P`` the degree-7
  Taylor polynomial (8 squarings): relative error below 4e-6 only where exp(x) < 1e-30 and
  below 1e-12 for x > -20, vectorisable (numba has no vector ``exp`` without Intel SVML). Inputs
  below -100 are clamped (exp(-100) = 3.7e-44 is a float32 denormal, effectively 0), so large
  step sizes can neither overflow nor produce NaN.
* ``softplus(delta + bias)`` and ``dt * u`` are computed beforehand by torch (vectorised).
* Threads: the kernel itself is serial over a range of channel blocks and releases the GIL
  (``nogil``); ``torch.get_num_threads()`` ranges run on a small Python thread pool. Numba's own
  ``parallel=True`` runs an OpenMP pool beside torch's: the two pools' spinning threads starved
  each other on a 2-core machine (the small ops of a streaming hop became 10x slower), and its
  workqueue layer aborts on concurrent calls. Idle pool threads here block instead of spinning.

The state ``h`` is kept in float32 like the CUDA kernel; the decay is rounded to float32.
Float32 only; other dtypes go to the reference path (see ``dispatch``).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

try:  # numba is a core dependency, but keep the reference path alive if it is broken
    from numba import njit

    HAVE_NUMBA = True
except Exception:  # pragma: no cover - exercised only without numba
    HAVE_NUMBA = False

LANES = 16  # float32 lanes of one AVX-512 register; also fine on AVX2 (two registers)
EXP_CLAMP = -100.0

if HAVE_NUMBA:

    @njit(fastmath=True, cache=True, nogil=True)
    def exp_nonpos(x):  # pragma: no cover - compiled
        """exp(x) for x <= 0 as described above: P(x/256)^256 in float64, clamped at -100."""
        x = max(x, EXP_CLAMP) * 0.00390625
        p = 1.0 + x * (1.0 + x * (0.5 + x * (1.0 / 6 + x * (1.0 / 24 + x * (
            1.0 / 120 + x * (1.0 / 720 + x * (1.0 / 5040)))))))
        p = p * p
        p = p * p
        p = p * p
        p = p * p
        p = p * p
        p = p * p
        p = p * p
        p = p * p
        return p

    @njit(fastmath=True, cache=True, nogil=True)
    def _scan_kernel(dt, dtu, At, Bm, Cm, h0, reverse, y, hT, lo, hi):  # pragma: no cover
        """dt, dtu, y: (nb, L, E) f32; At: (S, E) f32; Bm, Cm: (nb, L, S) f32; h0, hT: (nb, S, E) f32.

        Over (batch, channel-block) items ``lo..hi-1`` writes ``y[b, t, e] = sum_s h_t[s, e] *
        C[b, t, s]`` (no D term) and the last state.
        """
        nb, L, E = dt.shape
        S = At.shape[0]
        nblk = (E + LANES - 1) // LANES
        for idx in range(lo, hi):
            b = idx // nblk
            e0 = (idx - b * nblk) * LANES
            w = min(LANES, E - e0)
            h = np.zeros((S, LANES), np.float32)
            a = np.zeros((S, LANES), np.float32)
            for s in range(S):
                for j in range(w):
                    h[s, j] = h0[b, s, e0 + j]
                    a[s, j] = At[s, e0 + j]
            acc = np.zeros(LANES, np.float32)
            dv = np.zeros(LANES, np.float32)
            duv = np.zeros(LANES, np.float32)
            for step in range(L):
                t = L - 1 - step if reverse else step
                for j in range(w):
                    dv[j] = dt[b, t, e0 + j]
                    duv[j] = dtu[b, t, e0 + j]
                for j in range(LANES):
                    acc[j] = 0.0
                for s in range(S):
                    bs = Bm[b, t, s]
                    cs = Cm[b, t, s]
                    for j in range(LANES):
                        p = exp_nonpos(np.float64(dv[j] * a[s, j]))
                        hs = np.float32(p) * h[s, j] + duv[j] * bs
                        h[s, j] = hs
                        acc[j] += hs * cs
                for j in range(w):
                    y[b, t, e0 + j] = acc[j]
            for s in range(S):
                for j in range(w):
                    hT[b, s, e0 + j] = h[s, j]


_MAX_THREADS = 64
_MIN_PARALLEL_WORK = 16_384  # L * E below which one thread beats the hand-off (streaming hops)
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=_MAX_THREADS,
                                       thread_name_prefix="aum-scan")
        return _POOL


def selective_scan_fused_cpu(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    *,
    h0: torch.Tensor | None = None,
    reverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``selective_scan_reference`` (float32 CPU tensors, no autograd).

    u, delta: (batch, L, E); A: (E, S); B, C: (batch, L, S); D, delta_bias: (E,);
    h0: (batch, E, S). Returns ``(y (batch, L, E), h_last (batch, E, S))``.
    """
    if not HAVE_NUMBA:  # pragma: no cover
        raise RuntimeError("the fused CPU scan needs numba; install it or use the reference path")
    from .scan_reference import softplus_like_cuda

    batch, length, channels = u.shape
    d = delta if delta_bias is None else delta + delta_bias
    h0t = (torch.zeros(batch, A.shape[1], channels, dtype=torch.float32) if h0 is None
           else h0.transpose(1, 2).contiguous())
    y, hT = scan_from_dt(softplus_like_cuda(d).contiguous(), u.contiguous(), A.t().contiguous(),
                         B.contiguous(), C.contiguous(), h0t, reverse)
    if D is not None:
        y = y + D * u
    return y, hT.transpose(1, 2)


def scan_from_dt(dt: torch.Tensor, u: torch.Tensor, At: torch.Tensor, B: torch.Tensor,
                 C: torch.Tensor, h0t: torch.Tensor, reverse: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence alone, after softplus, on contiguous float32 tensors in the kernel's
    layouts: dt, u (nb, L, E); At (S, E); B, C (nb, L, S); h0t (nb, S, E). Returns
    ``(y (nb, L, E) without the D term, h_last (nb, S, E))``. Shared by the inference path and
    the forward of the differentiable path (``scan_fused_grad``)."""
    batch, length, channels = u.shape
    y = torch.empty(batch, length, channels, dtype=torch.float32)
    hT = torch.empty(batch, At.shape[0], channels, dtype=torch.float32)
    dtu = (dt * u).contiguous()
    args = (dt.numpy(), dtu.numpy(), At.numpy(), B.numpy(), C.numpy(), h0t.numpy(),
            bool(reverse), y.numpy(), hT.numpy())
    items = batch * ((channels + LANES - 1) // LANES)
    run_split(_scan_kernel, args, items, serial=length * channels < _MIN_PARALLEL_WORK)
    return y, hT


def run_split(kernel, args: tuple, items: int, serial: bool = False) -> None:
    """Run ``kernel(*args, lo, hi)`` over work items ``0..items-1``, split into contiguous ranges
    on ``torch.get_num_threads()`` pool threads (torch's intra-op thread count sets ours too:
    one knob, ``torch.set_num_threads``); in the calling thread when ``serial`` or one part."""
    parts = max(1, min(torch.get_num_threads(), items, _MAX_THREADS))
    if parts == 1 or serial:
        kernel(*args, 0, items)
        return
    bounds = [items * i // parts for i in range(parts + 1)]
    futures = [_pool().submit(kernel, *args, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    for f in futures:
        f.result()
