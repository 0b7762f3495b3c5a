"""Every scan/conv path against an explicit per-step float64 loop (tests/explicit_reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streaming_aum.errors import ConfigError
from streaming_aum.ops import causal_conv1d, resolve_backend, scan_backend, selective_scan
from streaming_aum.ops.dispatch import initial_state_by_linearity
from streaming_aum.ops.scan_fused_cpu import HAVE_NUMBA, selective_scan_fused_cpu
from streaming_aum.ops.scan_reference import selective_scan_reference

from explicit_reference import causal_conv_loop, scan_loop, softplus


def make_inputs(L, E=8, S=16, batch=2, dtype=torch.float32, delta_scale=1.0, delta_shift=0.0,
                seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return dict(
        u=r(batch, L, E).to(dtype),
        delta=(r(batch, L, E) * delta_scale + delta_shift).to(dtype),
        A=-torch.exp(r(E, S)).to(dtype),
        B=r(batch, L, S).to(dtype), C=r(batch, L, S).to(dtype),
        D=r(E).to(dtype), delta_bias=(r(E) * 0.5).to(dtype),
        h0=r(batch, E, S).to(dtype),
    )


def loop_reference(inp, *, reverse=False, use_h0=True):
    """float64 explicit loop on every batch element."""
    f = {k: v.double().numpy() for k, v in inp.items()}
    ys, hs = [], []
    for b in range(f["u"].shape[0]):
        dt = softplus(f["delta"][b] + f["delta_bias"])
        y, h = scan_loop(f["u"][b], dt, f["A"], f["B"][b], f["C"][b], f["D"],
                         h0=f["h0"][b] if use_h0 else None, reverse=reverse)
        ys.append(y)
        hs.append(h)
    return np.stack(ys), np.stack(hs)


def run(fn, inp, **kw):
    return fn(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["delta_bias"],
              h0=inp["h0"], **kw)


@pytest.mark.parametrize("reverse", [False, True])
def test_reference_float64_equals_explicit_loop(reverse):
    inp = make_inputs(37, dtype=torch.float64)
    y, h = run(selective_scan_reference, inp, reverse=reverse)
    y_ref, h_ref = loop_reference(inp, reverse=reverse)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h.numpy(), h_ref, rtol=1e-12, atol=1e-12)


needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="numba not importable")


@needs_numba
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("E", [8, 21, 40, 130])  # not multiples of the 64-channel blocks too
def test_fused_equals_explicit_loop(reverse, E):
    inp = make_inputs(300, E=E)
    y, h = run(selective_scan_fused_cpu, inp, reverse=reverse)
    y_ref, h_ref = loop_reference(inp, reverse=reverse)
    scale = np.abs(y_ref).max()
    assert np.abs(y.numpy() - y_ref).max() < 2e-5 * scale
    assert np.abs(h.numpy() - h_ref).max() < 2e-5 * np.abs(h_ref).max()


@needs_numba
def test_fused_channels_do_not_depend_on_their_block():
    """Channels are the kernel's lanes: nothing is summed across them, so a channel's output
    and state are the same bits whichever block (``LANES`` wide, padded at the end) it lands
    in: the first 80 channels alone equal those channels of a 200-channel call, for every
    mode (v1 pair included)."""
    inp = make_inputs(40, E=200, seed=3)
    sub = {k: (v[..., :80] if k in ("u", "delta", "D", "delta_bias") else
               v[:80] if k == "A" else v[:, :80] if k == "h0" else v) for k, v in inp.items()}
    sub = {k: v.contiguous() for k, v in sub.items()}
    for kw in ({}, {"reverse": True}, {"state_at": 17}, {"A_b": inp["A"] * 0.5}):
        kw_sub = {**kw, "A_b": kw["A_b"][:80].contiguous()} if "A_b" in kw else kw
        y, h = run(selective_scan_fused_cpu, inp, **kw)
        y_s, h_s = run(selective_scan_fused_cpu, sub, **kw_sub)
        assert torch.equal(y[..., :80], y_s) and torch.equal(h[:, :80], h_s)


@needs_numba
@pytest.mark.parametrize("E", [16, 21])
@pytest.mark.parametrize("at", [None, 0, 33, 80])
def test_fused_fo_bi_one_call_equals_two_explicit_loops(E, at):
    """v1 in one kernel call: forward scan from h0 plus reverse scan of the same inputs with
    A_b from zeros, D counted in both, forward state after ``at`` steps."""
    inp = make_inputs(80, E=E)
    A_b = -torch.exp(torch.randn(E, 16, generator=torch.Generator().manual_seed(9)))
    y, h = run(selective_scan_fused_cpu, inp, state_at=at, A_b=A_b)
    y_f, h_f = loop_reference(inp)
    y_b, _ = loop_reference({**inp, "A": A_b}, reverse=True, use_h0=False)
    y_ref = y_f + y_b
    if at is not None:
        head = {k: (v[:, :at] if k in ("u", "delta", "B", "C") else v) for k, v in inp.items()}
        h_f = loop_reference(head)[1] if at else inp["h0"].double().numpy()
    assert np.abs(y.numpy() - y_ref).max() < 2e-5 * np.abs(y_ref).max()
    assert np.abs(h.numpy() - h_f).max() < 2e-5 * np.abs(h_f).max()
    with pytest.raises(ValueError, match="forward scans"):
        run(selective_scan_fused_cpu, inp, reverse=True, A_b=A_b)


@needs_numba
@pytest.mark.parametrize("E", [16, 21])
@pytest.mark.parametrize("at", [-1, 0, 33, 80])
def test_run_scan_v2_pair_mode_equals_two_calls_and_explicit_loops(E, at):
    """Mode 3 (a v2 layer's two branches stacked on the batch axis, one kernel call): the
    forward rows equal mode 0 from h0 (states too), the backward rows mode 1 from zeros with
    their own A_b and D_b, bit for bit, and both equal float64 loops."""
    from streaming_aum.ops.scan_fused_cpu import run_scan

    f = make_inputs(80, E=E, seed=1)
    b = make_inputs(80, E=E, seed=2)  # the backward branch's own dt, u, B, C, A_b, D_b
    dt_f = torch.from_numpy(softplus((f["delta"] + f["delta_bias"]).double().numpy())).float()
    dt_b = torch.from_numpy(softplus((b["delta"] + b["delta_bias"]).double().numpy())).float()
    At, Abt = f["A"].t().contiguous(), b["A"].t().contiguous()
    h0t = f["h0"].transpose(1, 2).contiguous()
    stack = lambda x, y: torch.cat([x, y]).contiguous()  # noqa: E731
    y, hmid, hT = run_scan(stack(dt_f, dt_b), stack(f["u"], b["u"]), At, Abt,
                           stack(f["B"], b["B"]), stack(f["C"], b["C"]), f["D"], h0t, 3, at,
                           b["D"])
    y_f, hmid_f, hT_f = run_scan(dt_f.contiguous(), f["u"], At, At, f["B"], f["C"], f["D"],
                                 h0t, 0, at)
    y_b, _, _ = run_scan(dt_b.contiguous(), b["u"], Abt, Abt, b["B"], b["C"], b["D"], None, 1,
                         -1)
    assert torch.equal(y, torch.cat([y_f, y_b]))
    assert torch.equal(hT, hT_f) and torch.equal(hmid, hmid_f)
    ref_f, h_ref = loop_reference(f)
    ref_b, _ = loop_reference(b, reverse=True, use_h0=False)
    ref = np.concatenate([ref_f, ref_b])
    assert np.abs(y.numpy() - ref).max() < 2e-5 * np.abs(ref).max()
    assert np.abs(hT.transpose(1, 2).numpy() - h_ref).max() < 2e-5 * np.abs(h_ref).max()
    with pytest.raises(ValueError, match=r"h0t has shape"):  # the kernel reads h0t unchecked
        run_scan(dt_f.contiguous(), f["u"], At, At, f["B"], f["C"], f["D"], h0t[:, :8], 0, -1)
    with pytest.raises(ValueError, match="even batch"):
        run_scan(dt_f[:1].contiguous(), f["u"][:1].contiguous(), At, Abt, f["B"][:1],
                 f["C"][:1], f["D"], None, 3, -1)


@needs_numba
def test_kernel_float32_exp_within_1_5_ulp_and_clamped():
    """The kernel's exp (range reduction + bitcasts) against float64 numpy on [-100, 0]."""
    from numba import njit

    from streaming_aum.ops.scan_fused_cpu import exp_f32_nonpos

    @njit
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = exp_f32_nonpos(x[i])

    x = np.concatenate([-np.logspace(-9, 2, 100001), np.linspace(-100, 0, 100001),
                        [0.0, -0.5 * np.log(2), -87.0, -87.5, -1000.0]]).astype(np.float32)
    got = np.empty_like(x)
    apply(x, got)
    want = np.exp(x.astype(np.float64))
    normal = want > 1.2e-38 * 2
    assert np.all(np.isfinite(got)) and got[np.flatnonzero(x == 0)[0]] == 1.0
    rel = np.abs(got[normal] - want[normal]) / want[normal]
    assert rel.max() < 1.5 * 2.0 ** -24 * 2  # 1.5 ulp of float32 (ulp = 2^-23 relative)
    assert np.abs(got[~normal] - want[~normal]).max() < 2e-38  # clamped at exp(-87)


@needs_numba
def test_kernel_float32_exp2_within_1_ulp_and_clamped():
    """The scan's decay, 2^x (``exp2_f32_nonpos``), against float64 numpy on [-130, 0]: within
    1 ulp wherever 2^x is a normal float32 (the docstring's 0.66 ulp bound, plus the final
    rounding), exact at integers, clamped at 2^-126 below that, finite for any input; and
    ``2^(dt * fl(A log2 e))`` stays within ~2 ulp of ``exp(dt A)`` at decays the scan keeps."""
    from numba import njit

    from streaming_aum.ops.scan_fused_cpu import _LOG2E, exp2_f32_nonpos

    @njit
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = exp2_f32_nonpos(x[i])

    x = np.concatenate([-np.logspace(-9, 2.1, 100001), np.linspace(-130, 0, 100001),
                        np.linspace(-0.5, 0.5, 20001) - 7.0, -np.arange(0, 127),
                        [0.0, -0.5, -125.99, -126.0, -126.5, -1000.0, -3e38]]).astype(np.float32)
    got = np.empty_like(x)
    apply(x, got)
    want = np.exp2(x.astype(np.float64))
    normal = x >= -126.0
    assert np.all(np.isfinite(got)) and np.all(got > 0)
    ints = x == np.round(x)
    assert np.array_equal(got[ints & normal], want[ints & normal].astype(np.float32))
    rel = np.abs(got[normal] - want[normal]) / want[normal]
    assert rel.max() < 2.0 ** -23  # 1 ulp of float32
    assert np.all(got[~normal] == np.float32(2.0 ** -126))
    # the decay as the kernel forms it, against float64 exp(dt A)
    rng = np.random.default_rng(0)
    dt = np.exp(rng.uniform(-7, 1, 200000)).astype(np.float32)  # softplus outputs
    a = -np.exp(rng.uniform(-2, 3, 200000)).astype(np.float32)  # -exp(A_log)
    dec = np.empty_like(dt)
    apply((dt * (a * _LOG2E)).astype(np.float32), dec)
    ref = np.exp(dt.astype(np.float64) * a.astype(np.float64))
    keep = ref > 1e-6  # smaller decays weigh < 1e-6 of the state
    rel = np.abs(dec[keep] - ref[keep]) / ref[keep]
    assert rel.max() < 2e-6 and np.median(rel) < 1.2e-7


@needs_numba
def test_prefer_512_bit_vectors_marks_the_compiled_function():
    """The kernels' vector-width preference reaches LLVM as a function attribute (a string
    attribute slipped past llvmlite's keyword list: guard against llvmlite changing that)."""
    from numba import njit

    from streaming_aum.ops.scan_fused_cpu import prefer_512_bit_vectors

    @njit
    def marked(x):
        prefer_512_bit_vectors()
        return x + 1.0

    @njit
    def plain(x):
        return x + 1.0

    assert marked(1.0) == plain(1.0) == 2.0
    ir_marked = "".join(marked.inspect_llvm().values())
    assert '"prefer-vector-width"="512"' in ir_marked
    assert '"prefer-vector-width"="512"' not in "".join(plain.inspect_llvm().values())


@needs_numba
def test_fused_softplus_matches_float64_over_its_whole_range():
    """The kernel's own softplus (threshold 20, series log1p) against numpy float64, through a
    one-step scan: with B = C = 1, h0 = 0 and u = 1 the output is y = dt = softplus(delta)."""
    x = torch.cat([torch.linspace(-90, 40, 20001), torch.tensor([19.99, 20.0, 20.01, -1e-7])])
    n = x.numel()
    ones = torch.ones(1, 1, n)
    y, _ = selective_scan_fused_cpu(ones, x.view(1, 1, n), -torch.ones(n, 16),
                                    torch.ones(1, 1, 16) / 16, torch.ones(1, 1, 16))
    want = softplus(x.double().numpy())
    got = y[0, 0].double().numpy()
    # a few float32 ulps: the 16 state products are summed in float32
    np.testing.assert_allclose(got, want, rtol=6e-7, atol=1e-30)


@needs_numba
def test_fused_long_sequence_and_large_steps_no_overflow():
    # 4096 tokens; deltas up to ~+60 (dt ~ 60, exp(dt*A) down to exp(-1e3)) and down to -60.
    inp = make_inputs(4096, E=16, batch=1, delta_scale=30.0, seed=3)
    y, h = run(selective_scan_fused_cpu, inp)
    assert torch.isfinite(y).all() and torch.isfinite(h).all()
    y_ref, h_ref = loop_reference(inp)
    assert np.abs(y.numpy() - y_ref).max() < 2e-5 * np.abs(y_ref).max()
    assert np.abs(h.numpy() - h_ref).max() < 2e-5 * max(np.abs(h_ref).max(), 1.0)


@needs_numba
def test_fused_slow_decay_long_memory():
    # dt tiny and A near 0: decays near 1 over 5000 steps, the case where exp errors accumulate.
    inp = make_inputs(5000, E=16, batch=1, delta_shift=-8.0, delta_scale=0.1, seed=4)
    inp["A"] = -torch.rand(16, 16, dtype=torch.float64).mul(0.1).float()
    y, h = run(selective_scan_fused_cpu, inp)
    y_ref, h_ref = loop_reference(inp)
    assert np.abs(y.numpy() - y_ref).max() < 5e-5 * np.abs(y_ref).max()


@pytest.mark.parametrize("reverse", [False, True])
def test_export_scan_equals_explicit_loop(reverse):
    """The ONNX-exportable scan (a scan higher-order op) run eagerly, in float64."""
    from streaming_aum.ops.scan_export import selective_scan_export

    inp = make_inputs(40, dtype=torch.float64)
    y, h = run(selective_scan_export, inp, reverse=reverse)
    y_ref, h_ref = loop_reference(inp, reverse=reverse)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h.numpy(), h_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference", "fused", "export"])
def test_chunked_scan_equals_full(backend):
    if backend == "fused" and not HAVE_NUMBA:
        pytest.skip("numba not importable")
    inp = make_inputs(90, E=24)
    with scan_backend(backend):
        y_full, h_full = run(selective_scan, inp)
        parts, h = [], inp["h0"]
        for lo, hi in [(0, 1), (1, 1), (1, 40), (40, 90)]:
            sl = {k: (v[:, lo:hi] if k in ("u", "delta", "B", "C") else v) for k, v in inp.items()}
            sl["h0"] = h
            y, h = run(selective_scan, sl)
            parts.append(y)
    torch.testing.assert_close(torch.cat(parts, 1), y_full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("reverse", [False, True])
def test_initial_state_by_linearity(reverse):
    """The CUDA path adds h0 by linearity; check the algebra with the reference path."""
    inp = make_inputs(50, dtype=torch.float64)
    y0, h_zero = selective_scan_reference(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"],
                                          inp["D"], inp["delta_bias"], reverse=reverse)
    dy, dh = initial_state_by_linearity(inp["delta"], inp["delta_bias"], inp["A"], inp["C"],
                                        inp["h0"], reverse)
    y_ref, h_ref = loop_reference(inp, reverse=reverse)
    np.testing.assert_allclose((y0 + dy).numpy(), y_ref, atol=1e-5)
    np.testing.assert_allclose((h_zero + dh).numpy(), h_ref, atol=1e-5)


def test_conv_matches_loop_and_carries_state():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 30, 6, generator=g, dtype=torch.float64)
    w = torch.randn(6, 1, 4, generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    out, state = causal_conv1d(x, w, b)
    for i in range(2):
        ref, ref_state = causal_conv_loop(x[i].numpy(), w[:, 0].numpy(), b.numpy())
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-12)
        np.testing.assert_allclose(state[i].numpy(), ref_state, atol=0)
    # chunks of 0, 1, 2 and the rest continue exactly
    outs, st = [], None
    for lo, hi in [(0, 0), (0, 1), (1, 3), (3, 30)]:
        o, st = causal_conv1d(x[:, lo:hi], w, b, conv_state=st)
        outs.append(o)
    torch.testing.assert_close(torch.cat(outs, 1), out, atol=1e-12, rtol=0)
    # anti-causal = causal on the reversed sequence
    rev, _ = causal_conv1d(x, w, b, reverse=True)
    ref, _ = causal_conv_loop(x[0].numpy()[::-1].copy(), w[:, 0].numpy(), b.numpy())
    np.testing.assert_allclose(rev[0].numpy(), ref[::-1], atol=1e-12)


@pytest.mark.parametrize("L", [1, 2, 3, 4, 29])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_anticausal_conv_equals_the_flipped_causal_conv(L, dtype):
    """The v2 backward branch's conv without flipped copies equals flip(causal(flip(x))) to
    one rounding (same taps, same order; torch fuses multiply-adds in its vector loops only),
    the state exactly, sequences shorter than K-1 too."""
    from streaming_aum.ops.scan_reference import (anticausal_conv1d_reference,
                                                  causal_conv1d_reference)

    g = torch.Generator().manual_seed(L)
    x = (torch.randn(2, L, 37, generator=g) * 3).to(dtype)
    w = torch.randn(37, 1, 4, generator=g).to(dtype)
    b = torch.randn(37, generator=g).to(dtype)
    for bias in (b, None):
        with torch.no_grad():
            got, got_state = anticausal_conv1d_reference(x, w, bias)
            want, want_state = causal_conv1d_reference(x.flip(1), w, bias)
        eps = torch.finfo(dtype).eps
        torch.testing.assert_close(got, want.flip(1), rtol=0,
                                   atol=2 * eps * float(want.abs().max()))
        assert torch.equal(got_state, want_state)
    via_dispatch, _ = causal_conv1d(x, w, b, reverse=True)
    torch.testing.assert_close(via_dispatch, anticausal_conv1d_reference(x, w, b)[0],
                               rtol=0, atol=0)


@pytest.mark.parametrize("E", [6, 16, 37])
def test_float32_conv_matches_float64_loop_states_chunks_and_reverse(E):
    """The inference conv (float32, shifted multiply-adds + SiLU) against the explicit float64
    loop: outputs to float32 rounding, states bit-exact, chunking, state_at, anti-causal."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 30, E, generator=g) * 4
    x[0, 5, :] = 200.0  # SiLU at extremes: x and 0, no overflow
    x[1, 6, :] = -200.0
    w = torch.randn(E, 1, 4, generator=g)
    b = torch.randn(E, generator=g)
    st0 = torch.randn(2, 3, E, generator=g)
    with torch.no_grad():
        out, state = causal_conv1d(x, w, b, conv_state=st0)
    for i in range(2):
        with np.errstate(over="ignore"):  # the loop's exp(-x) overflows to inf: SiLU = -0
            ref, ref_state = causal_conv_loop(x[i].double().numpy(), w[:, 0].double().numpy(),
                                              b.double().numpy(), state=st0[i].double().numpy())
        np.testing.assert_allclose(out[i].numpy(), ref, atol=2e-5 * np.abs(ref).max(), rtol=0)
        np.testing.assert_allclose(state[i].numpy(), ref_state, atol=0)
    with torch.no_grad():
        outs, st = [], st0
        for lo, hi in [(0, 0), (0, 1), (1, 3), (3, 30)]:
            o, st = causal_conv1d(x[:, lo:hi], w, b, conv_state=st)
            outs.append(o)
        # SIMD bodies and tails may differ by an ulp (FMA contraction) between lengths
        torch.testing.assert_close(torch.cat(outs, 1), out, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(st, state, atol=0, rtol=0)
        for at in (0, 1, 2, 17):
            _, s_at = causal_conv1d(x, w, b, conv_state=st0, state_at=at)
            _, s_ref = causal_conv1d(x[:, :at], w, b, conv_state=st0)
            torch.testing.assert_close(s_at, s_ref, atol=0, rtol=0)
        for length in (1, 2, 30):  # shorter and longer than the K-1 = 3 state
            rev, _ = causal_conv1d(x[:, :length], w, b, reverse=True)
            with np.errstate(over="ignore"):
                ref, _ = causal_conv_loop(x[0, :length].double().numpy()[::-1].copy(),
                                          w[:, 0].double().numpy(), b.double().numpy())
            np.testing.assert_allclose(rev[0].numpy(), ref[::-1],
                                       atol=2e-5 * np.abs(ref).max(), rtol=0)


def test_backend_selection_rules():
    x32 = torch.zeros(1, 3, 4)
    assert resolve_backend(x32) == ("fused" if HAVE_NUMBA else "reference")
    assert resolve_backend(x32.double()) == "reference"
    # training on the CPU: the fused kernel has a backward (tests/test_scan_grad.py)
    assert resolve_backend(x32.requires_grad_()) == ("fused" if HAVE_NUMBA else "reference")
    with scan_backend("fused"):
        with pytest.raises(ConfigError, match="float32 CPU"):
            resolve_backend(torch.zeros(1, 3, 4, dtype=torch.float64))
    with pytest.raises(ConfigError, match="unknown scan backend"):
        with scan_backend("fast"):
            pass


def test_reference_gradients_match_finite_differences():
    inp = make_inputs(6, E=3, S=4, batch=1, dtype=torch.float64)
    names = ("u", "delta", "A", "B", "C", "D", "delta_bias", "h0")
    args = tuple(inp[n].clone().requires_grad_() for n in names)

    def fn(u, delta, A, B, C, D, delta_bias, h0):
        y, h = selective_scan(u, delta, A, B, C, D, delta_bias, h0=h0)
        return y, h

    assert torch.autograd.gradcheck(fn, args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_paths_match_reference():
    from streaming_aum.ops import scan_cuda

    if not scan_cuda.HAVE_MAMBA_SSM:
        pytest.skip("mamba-ssm not installed")
    inp = make_inputs(257, E=64)
    for reverse in (False, True):
        y_ref, h_ref = run(selective_scan_reference, inp, reverse=reverse)
        cuda_inp = {k: v.cuda() for k, v in inp.items()}
        with scan_backend("cuda"):
            y, h = run(selective_scan, cuda_inp, reverse=reverse)
        torch.testing.assert_close(y.cpu(), y_ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(h.cpu(), h_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", ["reference", "fused", "export"])
@pytest.mark.parametrize("at", [0, 17, 60])
def test_state_at_returns_the_intermediate_state(backend, at):
    """One scan over L steps, state after ``at`` steps (the streaming frontier)."""
    if backend == "fused" and not HAVE_NUMBA:
        pytest.skip("numba not importable")
    inp = make_inputs(60, E=24)
    head = {k: (v[:, :at] if k in ("u", "delta", "B", "C") else v) for k, v in inp.items()}
    with scan_backend(backend):
        y, h_at = run(selective_scan, inp, state_at=at)
        y_full, _ = run(selective_scan, inp)
        _, h_ref = run(selective_scan_reference, head)
    torch.testing.assert_close(y, y_full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_at, h_ref, atol=1e-5, rtol=1e-5)
    x = torch.randn(2, 60, 5)
    w, b = torch.randn(5, 1, 4), torch.randn(5)
    _, st = causal_conv1d(x, w, b, state_at=at)
    _, st_ref = causal_conv1d(x[:, :at], w, b)
    torch.testing.assert_close(st, st_ref, atol=0, rtol=0)


@needs_numba
def test_fused_threads_split_channels_exactly_and_concurrent_calls_are_safe():
    """The kernel's channel blocks run on a thread pool: any thread count gives the same result,
    and scans called from several Python threads at once (a mic callback beside the main
    thread) stay correct."""
    from concurrent.futures import ThreadPoolExecutor

    inp = make_inputs(3000, E=100, batch=3)  # above the parallel-work threshold
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        y1, h1 = run(selective_scan_fused_cpu, inp)
        torch.set_num_threads(2)
        y2, h2 = run(selective_scan_fused_cpu, inp)
        with ThreadPoolExecutor(4) as ex:
            outs = list(ex.map(lambda _: run(selective_scan_fused_cpu, inp), range(8)))
    finally:
        torch.set_num_threads(before)
    # torch's vectorised softplus may round differently at its own thread-chunk boundaries,
    # so equality is to float32 rounding, not bitwise.
    close = dict(atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(y2, y1, **close)
    torch.testing.assert_close(h2, h1, **close)
    for y, h in outs:
        torch.testing.assert_close(y, y1, **close)
        torch.testing.assert_close(h, h1, **close)
