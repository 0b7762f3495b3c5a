"""A mixer's softplus, selective scan and gate as one numba call, for hop-sized work.

``hop_plan.HopPlan`` runs a streaming hop as a flat sequence of kernel calls; between the dt
projection and the out-projection a layer made five of them (softplus, a state transpose, the
scan, a state transpose, the gate), each paying a dispatch that inside a running hop costs
several times its tight-loop time. ``ssm_block`` makes the same calls from compiled code:
``pointwise_cpu._softplus_kernel``, ``scan_fused_cpu._scan_kernel_s16`` (or ``_any``) and
``pointwise_cpu._gate_kernel`` with the same arguments, so the results are the same bits as
the separate calls (tested on random shapes, modes and splits, and through the plan-versus-
``window_step`` runtime test). Serial only: the caller has checked that the work runs on one
thread (``mixer._runs_serially``).
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
        arrays, ``softplus_blocks`` blocks); ``h0t[0] = ssm_prev[0].T`` ((1, E, S) -> (1, S, E));
        the scan (``scan_fused_cpu._scan_kernel`` arguments, items ``0..items-1``);
        ``ssm_next[0] = hmid[0].T``; ``gated = gate(y, xz)`` (``pointwise_cpu._gate_kernel``)."""
        _scan.prefer_512_bit_vectors()
        _softplus_kernel(delta_flat, dt_flat, 0, softplus_blocks)
        S, E = h0t.shape[1], h0t.shape[2]
        for s in range(S):
            for e in range(E):
                h0t[0, s, e] = ssm_prev[0, e, s]
        if S == 16:
            _scan._scan_kernel_s16(dt, u, At, Abt, Bm, Cm, D, Db, h0t, mode, state_at, y, hmid,
                                   hT, 0, items)
        else:
            _scan._scan_kernel_any(dt, u, At, Abt, Bm, Cm, D, Db, h0t, mode, state_at, y, hmid,
                                   hT, 0, items)
        for e in range(E):
            for s in range(S):
                ssm_next[0, e, s] = hmid[0, s, e]
        _gate_kernel(y, xz, gated, pair)
