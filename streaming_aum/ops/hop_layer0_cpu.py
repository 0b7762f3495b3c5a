"""Layer 0 of a streaming hop, reusing what the previous hop computed (numba, for ``HopPlan``).

A hop evaluates every layer over the window (``L`` tokens, the oldest ``split`` of which are
then finalised). Layer 0 is special: its input tokens are patch embeddings, which never change,
and its forward branch is causal from the frontier state. When a hop's window is the previous
hop's window moved on by ``n = split`` tokens, and the frontier (conv and SSM state) is the one
that hop left, then for the ``L - n`` shared tokens layer 0's in-projection, forward conv,
forward x/dt projections, softplus and forward-scan outputs are exactly what the previous hop
computed for them, ``n`` rows further down. Only the ``n`` new rows need them, plus the forward
scan over the ``split`` rows being finalised (the new frontier state; the previous hop's scan
passed that point but did not keep the state there). The backward branch starts from zeros at
the window's end, which moved, so it is recomputed over the whole window, as are the gate and
the out-projection. For the default model (4 layers, 56 tokens) this is ~10% of a hop.

The functions here do the numba parts of that layer: ``layer0_reuse`` (check that the cache
applies and move the kept rows up), ``layer0_conv`` (forward conv of the new rows, the
backward conv of all rows, the new conv state) and ``layer0_ssm`` (softplus of the new inputs,
the forward scans, the backward scan, the gate, the new SSM state). Each element is computed by
the same arithmetic as on the uncached path (the same inlined conv row code, the same scan
body, softplus and gate kernels: ``conv_fused_cpu``, ``scan_fused_cpu``, ``pointwise_cpu``),
and the rows a hop keeps are the previous hop's values for the same tokens and state. So the
results do not depend on whether a hop reused anything (tested against ``window_step``).
"""

from __future__ import annotations

from .scan_fused_cpu import HAVE_NUMBA

if HAVE_NUMBA:
    from numba import njit

    from . import scan_fused_cpu as _sf
    from .conv_fused_cpu import _conv_row
    from .pointwise_cpu import POINTWISE_FASTMATH, _gate_kernel, _softplus_kernel
    from .scan_fused_cpu import prefer_512_bit_vectors

    @njit(fastmath=POINTWISE_FASTMATH, cache=True, nogil=True, error_model="numpy")
    def layer0_reuse(valid, x, prev_x, conv_in, prev_conv, ssm_in, prev_ssm, n, xz, u, xdbl,
                     dt, y):  # pragma: no cover - compiled
        """Whether the previous run's layer-0 rows apply to this hop, and if so move them up.

        ``valid``: a previous run completed and recorded ``prev_x`` (L, D), its layer-0 input,
        and ``prev_conv`` (K-1, E) / ``prev_ssm`` (E, S), the frontier it left. They apply when
        ``x[:L-n] == prev_x[n:]`` and the frontier states ``conv_in`` / ``ssm_in`` are the ones
        it left (bit for bit). Then the first ``L - n`` rows of ``xz`` (L, 2E), ``u``, ``dt``,
        ``y`` (L, E) and ``xdbl`` (L, R+2S) (the forward branch's arrays) become the previous
        rows ``n..L-1``. ``prev_x`` becomes ``x`` either way."""
        L = x.shape[0]
        ok = valid and 0 < n < L
        if ok:
            for t in range(L - n):
                for d in range(x.shape[1]):
                    if x[t, d] != prev_x[t + n, d]:
                        ok = False
                        break
                if not ok:
                    break
        if ok:
            for i in range(conv_in.shape[0]):
                for e in range(conv_in.shape[1]):
                    if conv_in[i, e] != prev_conv[i, e]:
                        ok = False
            for e in range(ssm_in.shape[0]):
                for s in range(ssm_in.shape[1]):
                    if ssm_in[e, s] != prev_ssm[e, s]:
                        ok = False
        if ok:
            for t in range(L - n):
                for c in range(xz.shape[1]):
                    xz[t, c] = xz[t + n, c]
                for c in range(u.shape[1]):
                    u[t, c] = u[t + n, c]
                    dt[t, c] = dt[t + n, c]
                    y[t, c] = y[t + n, c]
                for c in range(xdbl.shape[1]):
                    xdbl[t, c] = xdbl[t + n, c]
        for t in range(L):
            for d in range(x.shape[1]):
                prev_x[t, d] = x[t, d]
        return ok

    @njit(fastmath=POINTWISE_FASTMATH, cache=True, nogil=True, error_model="numpy")
    def layer0_conv(xz3, conv_in, taps, bias, taps_b, bias_b, out, first, split, pair,
                    new_conv, prev_conv):  # pragma: no cover - compiled
        """The forward conv + SiLU of rows ``first..L-1`` of ``xz3`` (1, L, >= E) into
        ``out[0]`` (out: (1 or 2, L, E)), causal from ``conv_in`` (1, K-1, E) before row 0;
        ``pair``: the backward (anti-causal) conv of all rows into ``out[1]`` (both
        ``conv_fused_cpu._conv_row``). ``new_conv`` (1, K-1, E) and ``prev_conv`` (K-1, E):
        the conv inputs before row ``split``."""
        prefer_512_bit_vectors()
        K, E = taps.shape
        lag = K - 1
        _conv_row(xz3, 0, conv_in, taps, bias, out, 0, False, first)
        if pair:
            _conv_row(xz3, 0, conv_in, taps_b, bias_b, out, 1, True, 0)
        for i in range(lag):
            src = split - lag + i
            for e in range(E):
                v = xz3[0, src, e] if src >= 0 else conv_in[0, lag + src, e]
                new_conv[0, i, e] = v
                prev_conv[i, e] = v

    @njit(fastmath=_sf.KERNEL_FASTMATH, nogil=True, inline="always")
    def _scan_rows(dt, u, A, Bm, Cm, D, h0, mode, state_at, y, hmid, hT,
                   items):  # pragma: no cover - compiled
        if A.shape[0] == 16:
            _sf._scan_kernel_s16(dt, u, A, A, Bm, Cm, D, D, h0, mode, state_at, y, hmid, hT,
                                 0, items)
        else:
            _sf._scan_kernel_any(dt, u, A, A, Bm, Cm, D, D, h0, mode, state_at, y, hmid, hT,
                                 0, items)

    @njit(fastmath=_sf.KERNEL_FASTMATH, cache=True, nogil=True, error_model="numpy")
    def layer0_ssm(delta_flat, dt_flat, sp_blocks, reused, ssm_in, h0t, At, D, dt, u, Bm, Cm,
                   y, split, dtA, uA, BA, CA, yA, hA, dtN, uN, BN, CN, yN, hT, back, Ab, Db,
                   dtb, ub, Bb, Cb, yb, zeros, hb, ysum, xz3, gated, new_ssm, prev_ssm,
                   items):  # pragma: no cover - compiled
        """Softplus of ``delta_flat`` into ``dt_flat`` (flat views starting at the first row
        that needs it); ``h0t[0] = ssm_in.T`` (the frontier, (E, S) -> (S, E)); the forward
        scan (``At``, ``D``), then the backward one; the gate; the new frontier state into
        ``new_ssm`` (1, E, S) and ``prev_ssm`` (E, S).

        Forward, not ``reused``: one scan over all rows (``dt``, ``u``, ``Bm``, ``Cm`` ->
        ``y``; (1, L, .) views) from ``h0t``, the state after ``split`` rows into ``hA``, the
        last into ``hT``. ``reused``: the rows before ``L - n`` already hold their outputs;
        the scan over the ``split`` finalised rows (``dtA``.. ``yA`` scratch) from ``h0t``
        gives the new frontier ``hA``, and the scan over the ``n`` new rows (``dtN``..``yN``)
        continues from ``hT``, the previous run's last state, into ``hT``.
        ``back`` 0: no backward branch (mixer ``none``); 1 (v1): reverse scan from zeros
        over the forward branch's own inputs with ``Ab``, ``Db`` into ``yb``, then
        ``ysum = y + yb`` is gated; 2 (v2): reverse scan over the backward branch's inputs
        (``dtb``..``Cb``) into ``yb`` (= ``y`` row 1), and ``(y + yb) / 2`` is gated
        (``pointwise_cpu._gate_kernel`` with ``pair``)."""
        prefer_512_bit_vectors()
        _softplus_kernel(delta_flat, dt_flat, 0, sp_blocks)
        E, S = ssm_in.shape
        for s in range(S):
            for e in range(E):
                h0t[0, s, e] = ssm_in[e, s]
        if reused:
            _scan_rows(dtA, uA, At, BA, CA, D, h0t, 0, -1, yA, hA, hA, items)
            _scan_rows(dtN, uN, At, BN, CN, D, hT, 0, -1, yN, hT, hT, items)
        else:
            _scan_rows(dt, u, At, Bm, Cm, D, h0t, 0, split, y, hA, hT, items)
        for e in range(E):
            for s in range(S):
                new_ssm[0, e, s] = hA[0, s, e]
                prev_ssm[e, s] = hA[0, s, e]
        if back == 0:
            _gate_kernel(y, xz3, gated, False)
            return
        _scan_rows(dtb, ub, Ab, Bb, Cb, Db, zeros, 1, -1, yb, hb, hb, items)
        if back == 2:
            _gate_kernel(ysum, xz3, gated, True)  # ysum: y's (2, L, E) buffer
            return
        for t in range(ysum.shape[1]):
            for e in range(E):
                ysum[0, t, e] = y[0, t, e] + yb[0, t, e]
        _gate_kernel(ysum, xz3, gated, False)
