"""Fused CPU selective scan (numba): exp, recurrence and read-out in one pass over time.

Why this layout and these numerics:

* A Mamba-1 decay ``exp(dt_t * A[e, s])`` differs per channel and state, so the scan cannot be
  turned into a few large matmuls on a CPU, and materialising all decays costs more memory
  traffic than the recurrence itself. The kernel computes each decay in registers, right where
  it is used.
* Channels are the vector lanes: inputs are channels-last ``(batch, L, E)``, a block of
  ``LANES`` = 64 adjacent channels (four AVX-512 registers of float32; see ``LANES`` for why
  four) is scanned together, and blocks run in parallel threads. ``B_t``/``C_t`` are scalars
  broadcast over lanes.
* The decay is ``2^(dt * A log2(e))`` (``exp2_f32_nonpos``; ``A log2(e)`` rounded to float32
  once per channel block): base 2 needs no argument reduction beyond the rounding to an
  integer, so a decay is 13 vector ops instead of the 19 of ``exp_f32_nonpos`` below, which
  the softplus and SiLU passes still use. Within 0.7 ulp of 2^x; against float64
  ``exp(dt A)`` the rounding of ``A log2(e)`` adds up to ~1.5e-6 relative at decays near 1e-6
  (|exponent| ~ 14 times the rounding), 2e-8 in the median: the decays that carry the state
  are as exact as before. Training's backward recomputes the decays with the same function.
  (2026-11-27; the kernel's single-thread A/B is in BENCHMARKS.md, "Offline".)
* ``exp(x)`` for ``x <= 0`` (``exp_f32_nonpos``) is evaluated in float32 with the classic
  range reduction: ``x = k ln 2 + r`` (``k`` by magic-number rounding, ``r`` by a Cody-Waite
  split of ln 2), Cephes' degree-7 polynomial for ``exp(r)``, ``2^k`` written into the exponent
  bits by an LLVM bitcast (numba's ``exp`` does not vectorise without Intel SVML, which
  llvmlite's wheels lack). Within 1.4 ulp; inputs below -87 are clamped (exp(-87) = 1.6e-38,
  the smallest normal range, effectively 0), so large step sizes can neither overflow nor
  produce NaN. (It was the scan's decay from 72b1031 to 2026-11-27; before that a float64
  ``P(x/256)^256``, 8 lanes per instruction.)
* Vectorisation needs all per-block scratch in one flat buffer at fixed offsets (see
  ``_scan_body``): with separate scratch arrays LLVM could not rule out aliasing and emitted
  scalar code for the 16-lane loops. With that and the float32 exp, one base-size scan
  (513 x 1536 x 16) takes 18 ms instead of 25 ms on one thread; the v1 pair of a layer in one
  call 26 ms instead of 2 x 25 ms plus the duplicated torch preparation.
* ``softplus(delta + bias)`` is a separate vectorised float32 pass
  (``pointwise_cpu.softplus_fused``; PyTorch's CPU softplus is not vectorised, and an
  in-kernel float64 softplus cost 20 ns per element); ``dt * u`` and the ``D u`` skip are
  formed inside the kernel. One call does a whole layer's scan work: for ``v1`` both
  directions (they share dt, u, B and C; only ``A`` differs), for streaming the forward state
  at the frontier (``state_at``) as well. Separate calls repeated the softplus, the copies and
  the thread hand-off per direction and segment: for the 56-token windows of a streaming hop
  that overhead cost more than the recurrence.
* Threads: the kernel itself is serial over a range of channel blocks and releases the GIL
  (``nogil``); ``torch.get_num_threads()`` ranges run on a small Python thread pool. Numba's own
  ``parallel=True`` runs an OpenMP pool beside torch's: the two pools' spinning threads starved
  each other on a 2-core machine (the small ops of a streaming hop became 10x slower), and its
  workqueue layer aborts on concurrent calls. Idle pool threads here block instead of spinning.

Tried and not kept (2026-11-26, measured on the 2-core dev machine; notes for the next try):

* softplus and the ``silu(z)`` gate inside the kernel (float32 ``2 atanh(e / (2 + e))``
  log1p, one exp per lane): a 56 x 384 v1 call went 0.73 -> 0.90 ms, more than the torch ops
  it replaced (~0.12 ms). They vectorise only under ``error_model="numpy"`` (numba's default
  division checks for zero and raises: that branch keeps a division scalar).
* lane loads through unsigned indices (to drop numba's negative-index wrap-around): LLVM
  emitted gathers (``vgatherqps``), slower; row views (``u[b, t]``) per step cost NRT
  incref/decref calls, slower still. The per-step lane loads/stores stay scalar.
* Four partial accumulators for ``<h, C>`` (to break the chain through memory): slower
  (0.35 -> 0.45 ms); constant-trip lane loads/stores for full 16-channel blocks: no gain.
* (Kept: ``prefer_512_bit_vectors``, 1.3-1.5x; the same-process A/B harness that showed it
  is how kernel variants should be compared here: process-to-process timings swing +-30%.)
* (Kept later: ``BiMambaMixer._forward_fused`` calls ``run_scan`` directly with cached
  ``-exp(A_log)`` layouts; 5-7% per streaming hop in a same-process A/B, both models.)
* (Kept later: the conv + SiLU as its own numba kernel, ``conv_fused_cpu``; and mode 3, a
  v2 layer's two branches stacked on the batch axis so that one conv call, one batched
  matmul per projection, one softplus and one scan call serve both: ~5% per streaming hop of
  the default model in a hop-by-hop interleaved A/B, identical probabilities to 6e-8.)
* (Kept later: softplus and the ``silu(z)`` gate as separate vectorised passes,
  ``pointwise_cpu``. Lesson from it: a numba loop over a variable number of elements has a
  vector body and scalar fallback loops chosen at run time, partly by the arrays' addresses;
  with ``contract`` in the fastmath flags they fused multiply-adds differently, so results
  changed in the last bit with memory placement. Those kernels use explicit FMAs and no
  ``contract``. This kernel's vector loops are over the constant ``LANES`` lanes of the flat
  scratch buffer (one form only): it was checked bit-reproducible under random placement.)
* (Kept later, 2026-11-26 evening: the hop's Python went, not kernel time: residual add +
  RMSNorm as one kernel (``rmsnorm_fused_cpu``), the streaming fbank in four calls
  (``fbank_fused_cpu``), the mixer's kernels called directly on numpy buffers for hop-sized
  calls (``BiMambaMixer._forward_fused_serial``) and a whole hop with preallocated buffers
  (``hop_plan.HopPlan``). Inside a running hop every torch op and Python step cost 2-5x its
  tight-loop time; the scan itself is ~30% of a default-model hop. Making this kernel faster
  would help offline and training most: per token it is as large a share of a 10 s
  recomputation as of a hop.)

Tried and not kept (2026-11-27 morning; same-process A/B of variants compiled from this source,
a base-size v1 call on one thread; notes for the next try):

* The per-step lane copies (``dt``/``u`` in, ``y`` out) as ``llvm.memcpy`` of a constant 256
  bytes instead of element loops, which compile to scalar code with a negative-index check per
  element (about as many instructions as the recurrence): 15.80 -> 15.68 ms, same bits. The
  out-of-order core already overlapped them with the vector work.
* The ``<h, C>`` accumulator in a register (the state loop unrolled by hand inside the lane
  loop, ``B_t``/``C_t`` hoisted to scalars): 11.45 -> 10.95 ms, same bits; not worth generated
  code. (Written as a plain nested loop LLVM did not unroll it and the kernel went scalar,
  75-81 ms.)
* What bounds the kernel: with the decay replaced by a plain product (wrong, for timing only)
  it ran in 6.8-8.5 ms against 10.7-12.6 ms, so the 13 ops of ``exp2_f32_nonpos`` are about a
  third of its time, and the rest does not shrink by removing memory traffic. A faster kernel
  needs fewer vector ops per decay (a degree-5 polynomial: -1 op, 1.37 ulp).
* Outside the kernel, its wall time in a model forward was up to 1.5x its time in isolation:
  torch's idle OpenMP workers spun on the cores that the pool threads wanted. That is fixed
  by ``streaming_aum.openmp_wait`` (``scripts/openmp_spin_probe.py``).

Numba's on-disk cache (``cache=True``) keys each function on its own file: a kernel in another
module that inlines one of these (``ssm_block_cpu``, ``hop_layer0_cpu``, ``pointwise_cpu``)
keeps its cached machine code after an edit here. After changing a kernel in a source
checkout, delete ``streaming_aum/ops/__pycache__/*.nbi`` and ``*.nbc``. (An installed release
is not affected: installing replaces every file.)

The state ``h`` and the decay are float32, as in the CUDA kernel.
Float32 only; other dtypes go to the reference path (see ``dispatch``).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


try:  # numba is a core dependency, but keep the reference path alive if it is broken
    from llvmlite import ir as llvm_ir
    from numba import njit, types
    from numba.extending import intrinsic

    HAVE_NUMBA = True
except Exception:  # pragma: no cover - exercised only without numba
    HAVE_NUMBA = False

# Channels per block (work item): four AVX-512 registers of float32 (eight on AVX2). The kernel
# is bound by latency, not arithmetic: each state's step ends in a store-to-load round trip
# through the flat scratch buffer (the <h, C> accumulator, the state), so one register per
# state step left the vector unit idle. Four independent registers per step fill it: a
# base-size v1 call (513 x 1536 x 16, one thread) took 17.8-19.4 ms against 22.8-25.2 ms
# with 16 channels (medians of alternating runs; 32: ~22 ms, 48: ~19 ms, 128: ~17-18 ms),
# with identical bits (lanes are channels: nothing is summed across them). Every AuM width
# (2 x 96 ... 2 x 768) is a multiple of 64; other widths pad the last block.
LANES = 64

if HAVE_NUMBA:

    # No ``reassoc`` here: it would fold the round-to-integer trick of ``exp_f32_nonpos``
    # ((t + MAGIC) - MAGIC -> t) and the Cody-Waite split of its argument reduction.
    KERNEL_FASTMATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}
    _LOG2E = np.float32(1.4426950408889634)
    _LN2_HI = np.float32(0.693359375)  # Cody-Waite: ln 2 = _LN2_HI + _LN2_LO, _LN2_HI exact
    _LN2_LO = np.float32(-2.12194440e-4)
    _EXP_F32_LO = np.float32(-87.0)  # exp(-87) = 1.6e-38, the smallest normal range: ~0 here
    _MAGIC = np.float32(12582912.0)  # 1.5 * 2^23: t + _MAGIC rounds t to an integer ...
    _MAGIC_BITS = np.int32(0x4B400000)  # ... held in the low mantissa bits of the sum
    _EXP2_F32_LO = np.float32(-126.0)  # 2^-126: the smallest normal float32
    # 1.5 * 2^23 + 127: t + _MAGIC_127 rounds t to an integer k as _MAGIC does, and its bits are
    # 0x4B400000 + 127 + k, whose low 9 bits are k + 127 (1..127 for k in [-126, 0]): the
    # biased exponent of 2^k, ready to shift into place (one integer op fewer than _MAGIC's
    # subtract-and-rebias; 4% of the scan kernel in a same-process A/B)
    _MAGIC_127 = np.float32(12583039.0)
    # 2^f = 1 + f * (c1 + f * (c2 + ... + f * c6)) on [-1/2, 1/2]: minimax for relative error
    # (iteratively reweighted least squares on 2,000 Chebyshev nodes, then rounded to float32;
    # evaluated in float32 FMAs its largest error over 200,001 points is 0.66 ulp, tested)
    EXP2_POLY = (np.float32(0.6931471824645996), np.float32(0.24022647738456726),
                 np.float32(0.055503323674201965), np.float32(0.00961843691766262),
                 np.float32(0.0013398875016719103), np.float32(0.00015353360504377633))

    @intrinsic
    def _f32_bits(typingctx, x):  # pragma: no cover - compiled
        """The IEEE bits of a float32 as int32 (an LLVM bitcast: vectorises)."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], llvm_ir.IntType(32))
        return types.int32(types.float32), codegen

    @intrinsic
    def _f32_from_bits(typingctx, bits):  # pragma: no cover - compiled
        """The float32 with these IEEE bits (an LLVM bitcast: vectorises)."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], llvm_ir.FloatType())
        return types.float32(types.int32), codegen

    @intrinsic
    def prefer_512_bit_vectors(typingctx):  # pragma: no cover - compiled
        """Call first thing in a kernel: marks the compiled function
        ``"prefer-vector-width"="512"``. LLVM's default tuning for AVX-512 Intel cores (the
        ``prefer-256-bit`` feature, against the clock drop of 512-bit work on early Xeons)
        vectorises a 16-lane float32 loop as two 256-bit halves; the scan's exp-heavy loop ran
        1.3-1.5x faster as one 512-bit register (measured in one process, both variants
        compiled side by side, results bit-identical). Only a preference: without AVX-512 LLVM
        keeps 256-bit vectors."""
        def codegen(context, builder, signature, args):
            # llvmlite's attribute set admits only keyword attributes; this is a string one
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
            return context.get_dummy_value()
        return types.none(), codegen

    @intrinsic
    def fma_f32(typingctx, a, b, c):  # pragma: no cover - compiled
        """a * b + c with one rounding (``llvm.fma.f32``; vectorises to vfmadd). Explicit, so
        that the rounding does not depend on whether LLVM chooses to fuse (see
        ``pointwise_cpu.POINTWISE_FASTMATH``)."""
        def codegen(context, builder, signature, args):
            return builder.fma(*args)
        return types.float32(types.float32, types.float32, types.float32), codegen

    @njit(fastmath=KERNEL_FASTMATH, cache=True, nogil=True, inline="always")
    def exp_f32_nonpos(x):  # pragma: no cover - compiled
        """exp(x) for float32 x <= 0, within 1.4 ulp: x = k ln2 + r, |r| <= ln2 / 2 (k by the
        magic-number rounding, r by Cody-Waite), exp(r) by Cephes' degree-7 expf polynomial,
        2^k by writing k into the exponent bits. Clamped at -87 (no denormals, no overflow
        for any step size). All float32 arithmetic and bitcasts: 16 lanes per AVX-512
        instruction, where a float64 exp gets 8. Every multiply-add an explicit FMA (the
        fusions LLVM made here under ``contract`` anyway), so it rounds the same in kernels
        compiled with or without fusion."""
        x = max(x, _EXP_F32_LO)
        tm = fma_f32(x, _LOG2E, _MAGIC)
        kf = tm - _MAGIC
        r = fma_f32(-kf, _LN2_HI, x)
        r = fma_f32(-kf, _LN2_LO, r)
        p = np.float32(1.9875691500e-4)
        p = fma_f32(p, r, np.float32(1.3981999507e-3))
        p = fma_f32(p, r, np.float32(8.3334519073e-3))
        p = fma_f32(p, r, np.float32(4.1665795894e-2))
        p = fma_f32(p, r, np.float32(1.6666665459e-1))
        p = fma_f32(p, r, np.float32(5.0000001201e-1))
        p = fma_f32(p, r * r, r) + np.float32(1.0)
        k = _f32_bits(tm) - _MAGIC_BITS
        return p * _f32_from_bits((k + np.int32(127)) << np.int32(23))

    @njit(fastmath=KERNEL_FASTMATH, cache=True, nogil=True, inline="always")
    def exp2_f32_nonpos(x):  # pragma: no cover - compiled
        """2^x for float32 x <= 0, within 0.7 ulp of the exact 2^x: x = k + f, |f| <= 1/2
        (k by the magic-number rounding; f = x - k is exact), 2^f by a degree-6 minimax
        polynomial (coefficients fitted for relative error on [-1/2, 1/2], ``EXP2_POLY``; max
        0.66 ulp evaluated in float32 FMAs), 2^k into the exponent bits. Clamped at -126
        (2^-126 = 1.2e-38, the smallest normal: no denormals, no overflow for any step size).

        The scan's decay is ``exp(dt A) = 2^(dt * A log2(e))`` with ``A log2(e)`` formed once per
        channel block: against ``exp_f32_nonpos`` this drops the multiply by log2(e) and the
        two-step Cody-Waite reduction (base 2 needs none), a polynomial term and the exponent
        rebias: 13 vector ops instead of 19 per decay, which is most of the scan's inner
        loop."""
        x = max(x, _EXP2_F32_LO)
        tm = x + _MAGIC_127
        kf = tm - _MAGIC_127  # = k, rounded to the nearest integer
        f = x - kf
        p = EXP2_POLY[5]
        p = fma_f32(p, f, EXP2_POLY[4])
        p = fma_f32(p, f, EXP2_POLY[3])
        p = fma_f32(p, f, EXP2_POLY[2])
        p = fma_f32(p, f, EXP2_POLY[1])
        p = fma_f32(p, f, EXP2_POLY[0])
        p = fma_f32(p, f, np.float32(1.0))
        # the low 9 bits of tm's bits hold k + 127 (see _MAGIC_127): shifted into the exponent
        # field they are 2^k, and the magic number's own bits fall off the top
        return p * _f32_from_bits(_f32_bits(tm) << np.int32(23))

    @njit(fastmath=KERNEL_FASTMATH, nogil=True, inline="always")
    def _scan_body(dt, u, Af, Ab, Bm, Cm, D, Db, h0, mode, state_at, y, hmid, hT, lo,
                   hi, S):  # pragma: no cover - compiled
        """The kernel (see ``_scan_kernel``) for ``S`` states. Inlined into the two entry
        points below, so that for ``S = 16`` (every AuM model) the state count is a
        compile-time constant.

        All per-block scratch (state ``h``, decay rates ``a``, accumulators, this step's
        ``dt``, ``dt u``, ``u`` and ``D`` lanes) lives in one flat buffer at fixed offsets:
        with separate arrays LLVM could not prove that a store to ``h`` leaves ``a`` and
        ``dt`` unchanged, and fell back to scalar code for the 16-lane loops (1.5x slower)."""
        nb, L, E = u.shape
        nh = h0.shape[0]  # rows with a forward pass (mode 3: the first half)
        nblk = (E + LANES - 1) // LANES
        HS = S * LANES
        AO = HS
        AC = 2 * HS
        DV = AC + LANES
        DU = DV + LANES
        UV = DU + LANES
        DK = UV + LANES
        buf = np.zeros(2 * HS + 5 * LANES, np.float32)
        npass = 2 if mode == 2 else 1
        for idx in range(lo, hi):
            b = idx // nblk
            e0 = (idx - b * nblk) * LANES
            w = min(LANES, E - e0)
            back = mode == 3 and b >= nh  # mode 3's second half: the backward branch
            for j in range(LANES):
                buf[DK + j] = 0.0
            for j in range(w):
                buf[DK + j] = Db[e0 + j] if back else D[e0 + j]
            for p in range(npass):
                rev = mode == 1 or p == 1 or back
                fwd = p == 0 and not back  # the pass that starts from h0 and writes states
                A = Ab if p == 1 or back else Af
                for k in range(2 * HS):
                    buf[k] = 0.0  # padding lanes: decay rate 0 (decay 1), input 0, state 0
                for s in range(S):
                    for j in range(w):
                        # rounded once here; the decay is 2^(dt * that) (exp2_f32_nonpos)
                        buf[AO + s * LANES + j] = A[s, e0 + j] * _LOG2E
                        if fwd:
                            buf[s * LANES + j] = h0[b, s, e0 + j]
                if fwd and state_at == 0:
                    for s in range(S):
                        for j in range(w):
                            hmid[b, s, e0 + j] = buf[s * LANES + j]
                for j in range(LANES):
                    buf[DV + j] = 0.0
                    buf[UV + j] = 0.0
                for step in range(L):
                    t = L - 1 - step if rev else step
                    for j in range(w):
                        buf[DV + j] = dt[b, t, e0 + j]
                        buf[UV + j] = u[b, t, e0 + j]
                    for j in range(LANES):
                        buf[DU + j] = buf[DV + j] * buf[UV + j]
                        buf[AC + j] = 0.0
                    for s in range(S):
                        bs = Bm[b, t, s]
                        cs = Cm[b, t, s]
                        o = s * LANES
                        for j in range(LANES):
                            decay = exp2_f32_nonpos(buf[DV + j] * buf[AO + o + j])
                            hs = decay * buf[o + j] + buf[DU + j] * bs
                            buf[o + j] = hs
                            buf[AC + j] += hs * cs
                    if p == 0:
                        for j in range(w):
                            y[b, t, e0 + j] = buf[AC + j] + buf[DK + j] * buf[UV + j]
                    else:
                        for j in range(w):
                            y[b, t, e0 + j] += buf[AC + j] + buf[DK + j] * buf[UV + j]
                    if fwd and step + 1 == state_at:
                        for s in range(S):
                            for j in range(w):
                                hmid[b, s, e0 + j] = buf[s * LANES + j]
                if fwd:
                    for s in range(S):
                        for j in range(w):
                            hT[b, s, e0 + j] = buf[s * LANES + j]

    @njit(fastmath=KERNEL_FASTMATH, cache=True, nogil=True)
    def _scan_kernel_s16(dt, u, Af, Ab, Bm, Cm, D, Db, h0, mode, state_at, y, hmid, hT, lo,
                         hi):  # pragma: no cover - compiled
        prefer_512_bit_vectors()
        _scan_body(dt, u, Af, Ab, Bm, Cm, D, Db, h0, mode, state_at, y, hmid, hT, lo, hi, 16)

    @njit(fastmath=KERNEL_FASTMATH, cache=True, nogil=True)
    def _scan_kernel_any(dt, u, Af, Ab, Bm, Cm, D, Db, h0, mode, state_at, y, hmid, hT, lo,
                         hi):  # pragma: no cover - compiled
        prefer_512_bit_vectors()
        _scan_body(dt, u, Af, Ab, Bm, Cm, D, Db, h0, mode, state_at, y, hmid, hT, lo, hi,
                   Af.shape[0])

    def _scan_kernel(dt, u, Af, Ab, Bm, Cm, D, Db, h0, mode, state_at, y, hmid, hT, lo, hi):
        """One layer-direction (or both directions of a v1 or v2 layer) of the selective scan.

        dt (after softplus), u, y: (nb, L, E) f32; D, Db: (E,) f32; Af, Ab: (S, E) f32; Bm,
        Cm: (nb, L, S) f32 (any strides); h0, hmid, hT: (nh, S, E) f32 (nh = nb, or nb / 2 in
        mode 3). ``dt * u`` is formed here. ``mode`` 0: forward from ``h0`` with ``Af``; 1:
        reverse from ``h0`` with ``Af``; 2: forward as 0, then reverse from zeros with ``Ab``
        on the same inputs, added to ``y`` (v1); 3 (v2, both branches in one call): rows
        ``0..nh-1`` forward as 0, rows ``nh..nb-1`` (the backward branch's own dt, u, B, C)
        reverse from zeros with ``Ab`` and ``Db``. Every pass adds its ``D u`` skip (``Db``
        for mode 3's reverse rows). ``hT``: the forward pass's last state; ``hmid``: the
        forward state after ``state_at`` steps (``state_at`` < 0: not written). Over
        (batch, channel-block) items ``lo..hi-1``. Releases the GIL.
        """
        kernel = _scan_kernel_s16 if Af.shape[0] == 16 else _scan_kernel_any
        kernel(dt, u, Af, Ab, Bm, Cm, D, Db, h0, mode, state_at, y, hmid, hT, lo, hi)


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
    state_at: int | None = None,
    A_b: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``selective_scan_reference`` (float32 CPU tensors, no autograd): one
    torch softplus, then one kernel call for ``dt * u``, both recurrences and the D skip.

    u, delta: (batch, L, E); A: (E, S); B, C: (batch, L, S) (any strides); D, delta_bias: (E,);
    h0: (batch, E, S). Returns ``(y (batch, L, E), h (batch, E, S))``: ``h`` is the last state,
    or with ``state_at`` (forward scans) the state after the first ``state_at`` steps (the
    streaming frontier; ``y`` is still that of all L steps). ``A_b`` (v1, Fo-Bi): also scan the
    same inputs in reverse with ``A_b`` from zeros after the end and add that output, D skip
    included again, as the official ``bimamba_inner_fn`` does; ``h`` stays the forward state.
    """
    if not HAVE_NUMBA:  # pragma: no cover
        raise RuntimeError("the fused CPU scan needs numba; install it or use the reference path")
    if reverse and (state_at is not None or A_b is not None):
        raise ValueError("state_at and A_b go with forward scans (reverse=False)")
    channels = u.shape[2]
    zeros_e = torch.zeros(channels, dtype=torch.float32)
    mode = 2 if A_b is not None else 1 if reverse else 0
    At = A.t().contiguous()
    Abt = At if A_b is None else A_b.t().contiguous()
    h0t = None if h0 is None else h0.transpose(1, 2).contiguous()
    from .pointwise_cpu import softplus_fused  # (it imports this module)

    dt = softplus_fused(delta if delta_bias is None else delta + delta_bias)
    y, hmid, hT = run_scan(dt, u.contiguous(), At, Abt, B, C,
                           zeros_e if D is None else D.contiguous(), h0t,
                           mode, -1 if state_at is None else int(state_at))
    return y, (hT if state_at is None else hmid).transpose(1, 2)


def scan_from_dt(dt: torch.Tensor, u: torch.Tensor, At: torch.Tensor, B: torch.Tensor,
                 C: torch.Tensor, h0t: torch.Tensor, reverse: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence alone, after softplus, on contiguous float32 tensors in the kernel's
    layouts: dt, u (nb, L, E); At (S, E); B, C (nb, L, S); h0t (nb, S, E). Returns
    ``(y (nb, L, E) without the D term, h_last (nb, S, E))``. The forward of the differentiable
    path (``scan_fused_grad``); the same kernel as inference."""
    zeros_e = torch.zeros(u.shape[2], dtype=torch.float32)
    y, _, hT = run_scan(dt, u, At, At, B, C, zeros_e, h0t, 1 if reverse else 0, -1)
    return y, hT


def _as_numpy(t: torch.Tensor | np.ndarray) -> np.ndarray:
    # detach: parameters (D, bias, A) keep requires_grad under no_grad; numpy() refuses those
    return t if isinstance(t, np.ndarray) else t.detach().numpy()


def run_scan(dt: torch.Tensor, u: torch.Tensor, At: torch.Tensor | np.ndarray,
             Abt: torch.Tensor | np.ndarray, B: torch.Tensor, C: torch.Tensor,
             D: torch.Tensor | np.ndarray, h0t: torch.Tensor | None, mode: int, state_at: int,
             D_b: torch.Tensor | np.ndarray | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Allocate the outputs and run ``_scan_kernel`` over (batch, channel-block) items.

    dt (after softplus), u: contiguous (nb, L, E) float32; At, Abt (S, E) and D, D_b (E,)
    contiguous, as tensors or numpy arrays (a layer's cached parameters,
    ``BiMambaMixer._fused_params``); B, C (nb, L, S) any strides; h0t (nh, S, E) or None
    (zeros). ``mode`` as ``_scan_kernel``; for mode 3 (v2) the rows are the forward branch's
    ``nh = nb / 2`` rows, then the backward branch's, and ``D_b`` is its skip (default ``D``).
    Returns ``(y (nb, L, E), hmid, hT)``, the states (nh, S, E) in the kernel's layout."""
    batch, length, channels = u.shape
    states = At.shape[0]
    if mode == 3 and batch % 2:
        raise ValueError(f"mode 3 stacks the two v2 branches: an even batch, got {batch}")
    nh = batch // 2 if mode == 3 else batch
    y = torch.empty(batch, length, channels, dtype=torch.float32)
    hmid = torch.zeros(nh, states, channels, dtype=torch.float32)
    hT = torch.empty(nh, states, channels, dtype=torch.float32)
    if h0t is None:
        h0t = torch.zeros(nh, states, channels, dtype=torch.float32)
    elif tuple(h0t.shape) != (nh, states, channels):  # the kernel does not bounds-check
        raise ValueError(f"h0t has shape {tuple(h0t.shape)}; this scan needs "
                         f"({nh}, {states}, {channels})")
    arrays = [_as_numpy(t) for t in (dt, u, At, Abt, B, C, D, D if D_b is None else D_b, h0t)]
    args = (*arrays, int(mode), int(state_at), y.numpy(), hmid.numpy(), hT.numpy())
    items = batch * ((channels + LANES - 1) // LANES)
    run_split(_scan_kernel, args, items, serial=length * channels < _MIN_PARALLEL_WORK)
    return y, hmid, hT


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
