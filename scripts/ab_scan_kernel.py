"""Same-process A/B of variants of the CPU scan kernel, all compiled here from the shipped
kernel's source: its block width (channels per work item, ``scan_fused_cpu.LANES``) and its
decay (``exp2``: the shipped ``2^(dt * A log2 e)``; ``exp``: the previous range-reduced
``exp(dt * A)``).

    python scripts/ab_scan_kernel.py [--variants exp2@64,exp@64,exp2@16] [--length 513]
        [--rounds 15] [--model-rounds 0] [--threads 2]

1. One AuM-B-sized ``v1`` kernel call (``--length`` tokens x 1536 channels x 16 states, both
   directions, one thread): the variants alternate ``--rounds`` times on the same inputs;
   prints min and median ms, each variant's largest error against a float64 loop, and
   whether its output has the same bits as the first variant's.
2. With ``--model-rounds N``: the whole AuM-B forward (10 s clip, ``--threads`` threads, random
   weights), the module's kernel swapped between the variants for alternating forwards (only
   variants with the shipped block width: the callers size their work items by it).

Timings on the shared 2-core machine swing +-30% and drift with its phases: read ratios of
medians of alternating runs, never two separate processes.
"""

from __future__ import annotations

import argparse
import inspect
import textwrap
import time

import numpy as np
import torch

from streaming_aum.ops import scan_fused_cpu as sf


def kernel_variant(decay: str, lanes: int):
    """The shipped ``_scan_kernel_s16`` recompiled with ``decay`` and ``lanes``-wide blocks."""
    body = textwrap.dedent(inspect.getsource(sf._scan_body.py_func))
    kern = textwrap.dedent(inspect.getsource(sf._scan_kernel_s16.py_func))
    subs = [("def _scan_body(", "def _scan_body_v(")]
    if decay == "exp":
        subs += [("A[s, e0 + j] * _LOG2E", "A[s, e0 + j]"), ("exp2_f32_nonpos(", "exp_f32_nonpos(")]
    elif decay != "exp2":
        raise SystemExit(f"decay must be exp2 or exp, got {decay!r}")
    for old, new in subs:
        assert old in body, old
        body = body.replace(old, new)
    kern = (kern.replace("def _scan_kernel_s16(", "def _kernel_v(")
            .replace("_scan_body(", "_scan_body_v(").replace("cache=True, ", ""))
    ns = dict(sf.__dict__)
    ns["LANES"] = lanes
    exec(body, ns)  # noqa: S102 - our own source, rewritten
    exec(kern, ns)  # noqa: S102
    return ns["_kernel_v"]


def parse_variants(text: str) -> list[tuple[str, int]]:
    out = []
    for item in text.split(","):
        decay, _, lanes = item.strip().partition("@")
        if not lanes.isdigit() or int(lanes) < 1:
            raise SystemExit(f"a variant is DECAY@LANES, e.g. exp2@64; got {item!r}")
        out.append((decay, int(lanes)))
    return out


def kernel_ab(variants: list[tuple[str, int]], L: int, rounds: int) -> None:
    E, S = 1536, 16
    rng = np.random.default_rng(0)
    f32 = np.float32
    dt = np.log1p(np.exp(rng.standard_normal((1, L, E)) - 4)).astype(f32)
    u = rng.standard_normal((1, L, E)).astype(f32)
    base = np.log(np.arange(1, S + 1))[:, None]
    A = (-np.exp(base + 0.3 * rng.standard_normal((S, E)))).astype(f32)
    Ab = (-np.exp(base + 0.3 * rng.standard_normal((S, E)))).astype(f32)
    Bm = rng.standard_normal((1, L, S)).astype(f32)
    Cm = rng.standard_normal((1, L, S)).astype(f32)
    D = rng.standard_normal(E).astype(f32)
    h0 = np.zeros((1, S, E), f32)

    def run(kernel, lanes):
        y = np.empty((1, L, E), f32)
        hm, hT = np.zeros((1, S, E), f32), np.empty((1, S, E), f32)
        kernel(dt, u, A, Ab, Bm, Cm, D, D, h0, 2, -1, y, hm, hT, 0, -(-E // lanes))
        return y[0]

    y64 = np.zeros((L, E))
    d64, u64 = dt[0].astype(np.float64), u[0].astype(np.float64)
    for a, rev in ((A, False), (Ab, True)):
        h = np.zeros((S, E))
        for step in range(L):
            t = L - 1 - step if rev else step
            h = np.exp(d64[t] * a) * h + (d64[t] * u64[t])[None] * Bm[0, t, :, None]
            y64[t] += (h * Cm[0, t, :, None]).sum(0) + D * u64[t]
    kernels = {f"{d}@{n}": (kernel_variant(d, n), n) for d, n in variants}
    first = None
    for name, (k, n) in kernels.items():
        y = run(k, n)
        first = y if first is None else first
        err = np.abs(y - y64).max() / np.abs(y64).max()
        print(f"{name}: max |y - y_float64| / max |y_float64| = {err:.2e}; "
              f"same bits as {variants[0][0]}@{variants[0][1]}: {np.array_equal(y, first)}")
    times: dict[str, list[float]] = {k: [] for k in kernels}
    for _ in range(rounds):
        for name, (k, n) in kernels.items():
            t0 = time.perf_counter()
            run(k, n)
            times[name].append(time.perf_counter() - t0)
    for name, t in times.items():
        print(f"{name}: kernel {L}x{E}x{S} v1, 1 thread: min {1e3 * min(t):.2f} ms, "
              f"median {1e3 * float(np.median(t)):.2f} ms")


def model_ab(variants: list[tuple[str, int]], rounds: int, threads: int) -> None:
    from streaming_aum.config import preset_config
    from streaming_aum.model.audio_mamba import AudioMamba

    usable = [(d, n) for d, n in variants if n == sf.LANES]
    if len(usable) < 2:
        print(f"model A/B skipped: it needs two variants with the shipped width @{sf.LANES}")
        return
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = AudioMamba(preset_config("base", mixer="v1", num_classes=527,
                                     spectrogram_frames=1024)).eval()
    x = torch.randn(1, 1024, 128)
    shipped = sf._scan_kernel_s16
    kernels = {f"{d}@{n}": kernel_variant(d, n) for d, n in usable}
    times: dict[str, list[float]] = {k: [] for k in kernels}
    logits = {}
    try:
        with torch.inference_mode():
            for name, k in kernels.items():
                sf._scan_kernel_s16 = k
                logits[name] = model(x)  # warm-up (compile, oneDNN primitives)
            for _ in range(rounds):
                for name, k in kernels.items():
                    sf._scan_kernel_s16 = k
                    t0 = time.perf_counter()
                    model(x)
                    times[name].append(time.perf_counter() - t0)
    finally:
        sf._scan_kernel_s16 = shipped
    ref = next(iter(logits.values()))
    for name, t in times.items():
        print(f"{name}: AuM-B v1 10 s forward, {threads} threads: min {min(t):.3f} s, median "
              f"{float(np.median(t)):.3f} s; largest logit difference to the first "
              f"{float((logits[name] - ref).abs().max()):.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default=f"exp2@{sf.LANES},exp@{sf.LANES},exp2@16")
    ap.add_argument("--length", type=int, default=513)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--model-rounds", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    variants = parse_variants(args.variants)
    kernel_ab(variants, args.length, args.rounds)
    if args.model_rounds > 0:
        model_ab(variants, args.model_rounds, args.threads)


if __name__ == "__main__":
    main()
