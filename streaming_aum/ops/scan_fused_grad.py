"""Differentiable fused CPU selective scan: the numba forward kernel plus a numba backward kernel,
joined by a ``torch.autograd.Function``. This is what makes CPU training practical: the
reference scan's per-step torch ops cost ~25 tiny autograd nodes per token and layer.

Split of work (why): ``dt = softplus(delta + bias)`` and the ``D * u`` skip term stay in torch,
which differentiates them for free; the kernels handle only the recurrence

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * u_t * B_t,     y_t = <h_t, C_t>

whose per-step graph is what autograd cannot do cheaply. Inputs ``dt, u`` (nb, L, E), ``A``
(E, S), ``B, C`` (nb, L, S), ``h0`` (nb, E, S); outputs ``y`` (nb, L, E) and ``h_last`` (nb, E, S).

Backward (per batch row b, per block of ``LANES`` = 16 channels, lanes = channels as in the forward
kernel): the forward recurrence is recomputed into a local (L, S, LANES) buffer of states and
decays (no activations are kept between forward and backward), then one reverse sweep carries
``g_h``:

    g_h_t   += gy_t * C_t                    gC_t[s] += sum_e gy_t[e] h_t[e, s]
    gB_t[s] += sum_e g_h_t[e, s] dt_t u_t    g(dt u)_t[e] = sum_s g_h_t[e, s] B_t[s]
    g(dA_t)  = g_h_t * h_{t-1}               gdt_t += sum_s g(dA_t) dA_t A,  gA += g(dA_t) dA_t dt_t
    g_h_{t-1} = g_h_t * dA_t                 (and g_h0 is what is left after the first step)

Like the forward kernel, the fixed-size scratch (carried gradient, decay rates, gA sums, the
step's lanes) sits in one flat buffer at constant offsets (S = 16 compiled as a constant), so
LLVM vectorises the lane loops, and the decays are recomputed with the forward kernel's float32
decay function (``2^(dt A log2 e)``), so the saved states equal the forward's. (A first try
that also put the L-long saved states into that buffer made the step slower: offsets depending
on L keep LLVM from ruling out aliasing.) Training step, `aum bench train`: 2.2x faster than the reference scan, was 1.57x.

One work item is one batch row (all its channel blocks), so the B/C gradients, which sum over
channels, are written by exactly one thread; ``gA`` (which sums over the batch) is written per
row and reduced by torch afterwards.
"""

from __future__ import annotations

import numpy as np
import torch

from .scan_fused_cpu import HAVE_NUMBA, run_split, scan_from_dt

# Channels per block of the backward kernel: one AVX-512 register of float32. (The forward
# kernel's blocks are 64 wide, ``scan_fused_cpu.LANES``; here 64 was no faster in a same-process
# A/B, 24.4 vs 24.3 ms for a 32 x 96 x 192 training call, and it reorders the gB/gC sums.)
LANES = 16

if HAVE_NUMBA:
    from numba import njit

    from .scan_fused_cpu import _LOG2E, KERNEL_FASTMATH, exp2_f32_nonpos, prefer_512_bit_vectors

    @njit(fastmath=KERNEL_FASTMATH, nogil=True, inline="always")
    def _backward_body(dt, u, At, Bm, Cm, h0, reverse, gy, ghT, gdt, gu, gA, gB, gC, gh0,
                       lo, hi, S):  # pragma: no cover - compiled
        """The backward kernel for ``S`` states, inlined into the entry points below (S = 16
        compiled as a constant). The fixed-size scratch (carried gradient, decay rates, gA
        sums, this step's lanes) lives in one flat buffer at constant offsets, apart from the
        L-long saved states/decays and the gB/gC lane sums; the decays are recomputed with the
        forward kernel's float32 ``2^(dt * A log2(e))`` (``exp2_f32_nonpos``), so the saved
        states equal the forward's; ``A`` itself (not ``A log2(e)``) scales the gradients."""
        nb, L, E = dt.shape
        nblk = (E + LANES - 1) // LANES
        SL = S * LANES
        G = 0
        AA = SL
        GA = 2 * SL
        DV = 3 * SL
        UV = DV + LANES
        GY = UV + LANES
        GDT = GY + LANES
        GDU = GDT + LANES
        DU = GDU + LANES
        A2 = DU + LANES  # A * log2(e), the forward kernel's decay operand
        sm = np.zeros(A2 + SL, np.float32)
        hs = np.zeros((L + 1, SL), np.float32)  # hs[k + 1]: h after step k; hs[0] = h0
        das = np.zeros((L, SL), np.float32)  # decay used at step k
        # Lane-wise partial sums of gB/gC over this row's channel blocks, reduced once at the
        # end of the row, so the inner loops stay vertical (SIMD) with no horizontal sums.
        gbl = np.zeros((L, SL), np.float32)
        gcl = np.zeros((L, SL), np.float32)
        for b in range(lo, hi):
            gbl[:] = 0.0
            gcl[:] = 0.0
            for blk in range(nblk):
                e0 = blk * LANES
                w = min(LANES, E - e0)
                for k in range(3 * SL):
                    sm[k] = 0.0
                for k in range(SL):
                    sm[A2 + k] = 0.0
                for k in range(SL):
                    hs[0, k] = 0.0
                for s in range(S):
                    for j in range(w):
                        hs[0, s * LANES + j] = h0[b, s, e0 + j]
                        sm[AA + s * LANES + j] = At[s, e0 + j]
                        sm[A2 + s * LANES + j] = At[s, e0 + j] * _LOG2E
                        sm[G + s * LANES + j] = ghT[b, s, e0 + j]
                # Forward recompute, keeping states and decays.
                for j in range(LANES):
                    sm[DV + j] = 0.0
                    sm[UV + j] = 0.0
                for k in range(L):
                    t = L - 1 - k if reverse else k
                    for j in range(w):
                        sm[DV + j] = dt[b, t, e0 + j]
                        sm[UV + j] = u[b, t, e0 + j]
                    for j in range(LANES):
                        sm[DU + j] = sm[DV + j] * sm[UV + j]
                    hp = hs[k]
                    hn = hs[k + 1]
                    dk = das[k]
                    for s in range(S):
                        bs = Bm[b, t, s]
                        o = s * LANES
                        for j in range(LANES):
                            da = exp2_f32_nonpos(sm[DV + j] * sm[A2 + o + j])
                            hn[o + j] = da * hp[o + j] + sm[DU + j] * bs
                            dk[o + j] = da
                # Reverse sweep.
                for j in range(LANES):
                    sm[GY + j] = 0.0
                for kk in range(L):
                    k = L - 1 - kk
                    t = L - 1 - k if reverse else k
                    for j in range(w):
                        sm[DV + j] = dt[b, t, e0 + j]
                        sm[UV + j] = u[b, t, e0 + j]
                        sm[GY + j] = gy[b, t, e0 + j]
                    for j in range(LANES):
                        sm[DU + j] = sm[DV + j] * sm[UV + j]
                        sm[GDT + j] = 0.0
                        sm[GDU + j] = 0.0
                    hp = hs[k]
                    hn = hs[k + 1]
                    dk = das[k]
                    gbt = gbl[t]
                    gct = gcl[t]
                    for s in range(S):
                        cs = Cm[b, t, s]
                        bs = Bm[b, t, s]
                        o = s * LANES
                        for j in range(LANES):
                            gh = sm[G + o + j] + sm[GY + j] * cs
                            gct[o + j] += sm[GY + j] * hn[o + j]
                            gbt[o + j] += gh * sm[DU + j]
                            sm[GDU + j] += gh * bs
                            da = dk[o + j]
                            gda = gh * hp[o + j] * da
                            sm[GDT + j] += gda * sm[AA + o + j]
                            sm[GA + o + j] += gda * sm[DV + j]
                            sm[G + o + j] = gh * da
                    for j in range(w):
                        gdt[b, t, e0 + j] = sm[GDT + j] + sm[GDU + j] * sm[UV + j]
                        gu[b, t, e0 + j] = sm[GDU + j] * sm[DV + j]
                for s in range(S):
                    for j in range(w):
                        gh0[b, s, e0 + j] = sm[G + s * LANES + j]
                        gA[b, s, e0 + j] = sm[GA + s * LANES + j]
            for t in range(L):
                for s in range(S):
                    acc_b = np.float32(0.0)
                    acc_c = np.float32(0.0)
                    for j in range(LANES):
                        acc_b += gbl[t, s * LANES + j]
                        acc_c += gcl[t, s * LANES + j]
                    gB[b, t, s] = acc_b
                    gC[b, t, s] = acc_c

    @njit(fastmath=KERNEL_FASTMATH, cache=True, nogil=True)
    def _backward_s16(dt, u, At, Bm, Cm, h0, reverse, gy, ghT, gdt, gu, gA, gB, gC, gh0, lo,
                      hi):  # pragma: no cover - compiled
        prefer_512_bit_vectors()  # ~5% here (same-process A/B), bit-identical
        _backward_body(dt, u, At, Bm, Cm, h0, reverse, gy, ghT, gdt, gu, gA, gB, gC, gh0, lo,
                       hi, 16)

    @njit(fastmath=KERNEL_FASTMATH, cache=True, nogil=True)
    def _backward_any(dt, u, At, Bm, Cm, h0, reverse, gy, ghT, gdt, gu, gA, gB, gC, gh0, lo,
                      hi):  # pragma: no cover - compiled
        prefer_512_bit_vectors()
        _backward_body(dt, u, At, Bm, Cm, h0, reverse, gy, ghT, gdt, gu, gA, gB, gC, gh0, lo,
                       hi, At.shape[0])

    def _scan_backward_kernel(dt, u, At, Bm, Cm, h0, reverse, gy, ghT, gdt, gu, gA, gB, gC,
                              gh0, lo, hi):
        """dt, u, gy, gdt, gu: (nb, L, E); At: (S, E); Bm, Cm, gB, gC: (nb, L, S);
        h0, ghT, gh0: (nb, S, E); gA: (nb, S, E) per-row partial sums. Rows ``lo..hi-1``."""
        kernel = _backward_s16 if At.shape[0] == 16 else _backward_any
        kernel(dt, u, At, Bm, Cm, h0, reverse, gy, ghT, gdt, gu, gA, gB, gC, gh0, lo, hi)


class _FusedScanFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dt, u, A, B, C, h0, reverse):  # type: ignore[override]
        dt_c, u_c = dt.contiguous(), u.contiguous()
        At = A.t().contiguous()
        B_c, C_c = B.contiguous(), C.contiguous()
        h0t = h0.transpose(1, 2).contiguous()
        y, hT = scan_from_dt(dt_c, u_c, At, B_c, C_c, h0t, bool(reverse))
        ctx.save_for_backward(dt_c, u_c, At, B_c, C_c, h0t)
        ctx.reverse = bool(reverse)
        return y, hT.transpose(1, 2)

    @staticmethod
    def backward(ctx, gy, gh_last):  # type: ignore[override]
        dt, u, At, B, C, h0t = ctx.saved_tensors
        nb, L, E = u.shape
        S = At.shape[0]
        gy = torch.zeros_like(u) if gy is None else gy.to(torch.float32).contiguous()
        ghT = (torch.zeros(nb, S, E, dtype=torch.float32) if gh_last is None
               else gh_last.to(torch.float32).transpose(1, 2).contiguous())
        gdt, gu = torch.empty_like(u), torch.empty_like(u)
        gA_rows = torch.empty(nb, S, E, dtype=torch.float32)
        gB, gC = torch.empty_like(B), torch.empty_like(C)
        gh0 = torch.empty(nb, S, E, dtype=torch.float32)
        args = (dt.numpy(), u.numpy(), At.numpy(), B.numpy(), C.numpy(), h0t.numpy(),
                ctx.reverse, gy.numpy(), ghT.numpy(), gdt.numpy(), gu.numpy(),
                gA_rows.numpy(), gB.numpy(), gC.numpy(), gh0.numpy())
        run_split(_scan_backward_kernel, args, nb)  # one item = one batch row (see above)
        gA = gA_rows.sum(0).t()
        return gdt, gu, gA, gB, gC, gh0.transpose(1, 2), None


def selective_scan_fused_grad(
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
    """Differentiable float32 CPU scan; the contract of ``selective_scan_reference``.

    u, delta: (batch, L, E); A: (E, S); B, C: (batch, L, S); D, delta_bias: (E,);
    h0: (batch, E, S) or None. Returns ``(y (batch, L, E), h_last (batch, E, S))``.
    """
    if not HAVE_NUMBA:  # pragma: no cover
        raise RuntimeError("the fused CPU scan needs numba; install it or use the reference path")
    from .scan_reference import softplus_like_cuda

    d = delta if delta_bias is None else delta + delta_bias
    dt = softplus_like_cuda(d)
    if h0 is None:
        h0 = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    y, h_last = _FusedScanFunction.apply(dt, u, A, B, C, h0, bool(reverse))
    if D is not None:
        y = y + D * u
    return y, h_last
