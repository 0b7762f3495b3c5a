"""``ops.ssm_block_cpu.ssm_block`` (softplus, state transposes, scan and gate in one numba call)
against the separate kernels it calls: the same bits."""

from __future__ import annotations

import numpy as np
import pytest

from streaming_aum.ops import scan_fused_cpu
from streaming_aum.ops.pointwise_cpu import _gate_kernel, _softplus_kernel
from streaming_aum.ops.ssm_block_cpu import ssm_block

F32 = np.float32


@pytest.mark.parametrize("states", [16, 5])
def test_ssm_block_equals_the_separate_kernels(states):
    rng = np.random.default_rng(states)
    for trial in range(12):
        L = int(rng.integers(1, 70))
        E = int(rng.choice([24, 40, 96]))
        pair = bool(trial % 2)
        nb, R = (2 if pair else 1), 3
        mode = 3 if pair else int(rng.choice([0, 2]))
        delta = (3 * rng.standard_normal((nb, L, E)) - 1).astype(F32)
        u = rng.standard_normal((nb, L, E)).astype(F32)
        x_dbl = rng.standard_normal((nb, L, R + 2 * states)).astype(F32)
        Bm, Cm = x_dbl[..., R:R + states], x_dbl[..., R + states:]
        At = -np.exp(rng.standard_normal((states, E))).astype(F32)
        Abt = -np.exp(rng.standard_normal((states, E))).astype(F32)
        D, Db = rng.standard_normal(E).astype(F32), rng.standard_normal(E).astype(F32)
        ssm_prev = rng.standard_normal((1, E, states)).astype(F32)
        xz = rng.standard_normal((1, L, 2 * E)).astype(F32)
        split = int(rng.integers(-1, L + 1))  # -1: no mid-sequence state, the last one
        lanes = scan_fused_cpu.LANES
        items, blocks = nb * ((E + lanes - 1) // lanes), (delta.size + 4095) // 4096
        kernel = (scan_fused_cpu._scan_kernel_s16 if states == 16
                  else scan_fused_cpu._scan_kernel_any)

        dt1 = np.empty_like(delta)
        _softplus_kernel(delta.reshape(-1), dt1.reshape(-1), 0, blocks)
        h0t = np.ascontiguousarray(ssm_prev.transpose(0, 2, 1))
        y1, hmid1 = np.empty((nb, L, E), F32), np.zeros((1, states, E), F32)
        hT1 = np.empty((1, states, E), F32)
        kernel(dt1, u, At, Abt, Bm, Cm, D, Db, h0t, mode, split, y1, hmid1, hT1, 0, items)
        g1 = np.empty((1, L, E), F32)
        _gate_kernel(y1, xz, g1, pair)

        dt2, h0t2 = np.empty_like(delta), np.empty((1, states, E), F32)
        y2, hmid2 = np.empty((nb, L, E), F32), np.zeros((1, states, E), F32)
        hT2, nxt = np.empty((1, states, E), F32), np.empty((1, E, states), F32)
        g2 = np.empty((1, L, E), F32)
        ssm_block(delta.reshape(-1), dt2, dt2.reshape(-1), blocks, ssm_prev, h0t2, u, At, Abt,
                  Bm, Cm, D, Db, mode, split, y2, hmid2, hT2, items, nxt, xz, g2, pair)
        assert np.array_equal(dt1, dt2) and np.array_equal(h0t, h0t2)
        assert np.array_equal(y1, y2) and np.array_equal(hmid1, hmid2)
        assert np.array_equal(hT1, hT2) and np.array_equal(g1, g2)
        assert np.array_equal(nxt[0], (hmid1 if split >= 0 else hT1)[0].T)
