"""A mixer's softplus, selective scan and gate as one numba call, for hop-sized work.

A fused-path layer that runs on one thread (``BiMambaMixer._forward_fused_serial`` and
``hop_plan.HopPlan``, a streaming hop's flat sequence of kernel calls) made five calls between
the dt projection and the out-projection (softplus, a state transpose, the scan, a state
transpose, the gate), each paying a dispatch that inside a running hop costs several times its
tight-loop time. ``ssm_block`` makes the same calls from compiled code:
``pointwise_cpu._softplus_kernel``, ``scan_fused_cpu._scan_kernel_s16`` (or ``_any``) and
``pointwise_cpu._gate_kernel`` with the same arguments, so the results are the same bits as
the separate calls (tested on random shapes, modes and splits, and through the plan-versus-
``window_step`` runtime test). Serial only: the callers have checked that the work runs on
one thread (``mixer._runs_serially``).
"""

from __future__ import annotations

from .scan_fused_cpu import HAVE_NUMBA

if HAVE_NUMBA:
    from numba import njit

    from . import scan_fused_cpu as _scan
    from .pointwise_cpu import _gate_kernel, _softplus_kernel

    @njit(fastmath=_scan.KERNEL_FASTMATH, cache=True, nogil=True, error_model="numpy")
    def ssm_block(delta_flat, dt, dt_flat, softplus_blocks, ssm_prev, h0t, u, At, Abt, Bm, Cm,
                  D, Db, mode, state_at, y, hmid, hT, items, ssm_next, xz, gated,
                  pair):  # pragma: no cover - compiled
        """``dt = softplus(delta)`` (flat views ``delta_flat``/``dt_flat`` of (nb, L, E)
        arrays, ``softplus_blocks`` blocks); ``h0t[b] = ssm_prev[b].T`` ((nh, E, S) ->
        (nh, S, E)); the scan (``scan_fused_cpu._scan_kernel`` arguments, items
        ``0..items-1``); ``ssm_next[b] = hmid[b].T``, or ``hT[b].T`` when ``state_at < 0``;
        ``gated = gate(y, xz)`` (``pointwise_cpu._gate_kernel``)."""
        _scan.prefer_512_bit_vectors()
        _softplus_kernel(delta_flat, dt_flat, 0, softplus_blocks)
        nh, S, E = h0t.shape
        for b in range(nh):
            for s in range(S):
                for e in range(E):
                    h0t[b, s, e] = ssm_prev[b, e, s]
        if S == 16:
            _scan._scan_kernel_s16(dt, u, At, Abt, Bm, Cm, D, Db, h0t, mode, state_at, y, hmid,
                                   hT, 0, items)
        else:
            _scan._scan_kernel_any(dt, u, At, Abt, Bm, Cm, D, Db, h0t, mode, state_at, y, hmid,
                                   hT, 0, items)
        last = hmid if state_at >= 0 else hT
        for b in range(nh):
            for e in range(E):
                for s in range(S):
                    ssm_next[b, e, s] = last[b, s, e]
        _gate_kernel(y, xz, gated, pair)
