"""Why ``streaming_aum.openmp_wait`` shortens torch's OpenMP spin-wait, measured in one process
per setting (OpenMP reads its settings once, when torch loads it).

    python scripts/openmp_spin_probe.py [--settings default,auto,PASSIVE] [--rounds 20]
        [--hops 300]

For each setting a fresh child process (2 threads) measures:

1. ``scan after GEMM`` / ``scan after idle``: one AuM-B-sized v1 scan call (513 x 1536 x 16,
   ``run_scan`` on the package's two pool threads) started right after a torch matmul
   (512 x 768 x 3072), against the same call after the matmul and 50 ms of sleep, alternated
   ``--rounds`` times, medians. While torch's idle OpenMP worker spins, one pool thread shares
   its core: the first figure is then the larger.
2. ``hop p50 / p99`` (``--hops`` > 0): the shipped model's streaming hop at W = 1 s with 2
   torch threads, where a hop's many small torch ops want the workers awake (a setting that
   sleeps at once, ``PASSIVE``, pays a wake-up per op).

Settings: ``auto`` (the package's: no variable set, so the import sets them), ``default``
(OpenMP's own: ``STREAMING_AUM_OPENMP=keep``), a number N
(``GOMP_SPINCOUNT=N``), ``PASSIVE`` (``OMP_WAIT_POLICY=PASSIVE``). Timings on the shared 2-core
machine drift between phases: compare the two figures of one child, and children run back to
back; repeat the whole script to see the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def child(rounds: int, hops: int) -> dict:
    from streaming_aum import openmp_wait  # first: before torch loads OpenMP

    import numpy as np
    import torch

    from streaming_aum.ops import scan_fused_cpu as sf

    torch.set_num_threads(2)
    L, E, S = 513, 1536, 16
    g = torch.Generator().manual_seed(0)
    dt = torch.rand(1, L, E, generator=g) * 0.1
    u = torch.randn(1, L, E, generator=g)
    At = (-torch.rand(S, E, generator=g) * 16).numpy()
    Abt = (-torch.rand(S, E, generator=g) * 16).numpy()
    B, C = torch.randn(1, L, S, generator=g), torch.randn(1, L, S, generator=g)
    D = np.ones(E, np.float32)
    a, w = torch.randn(512, 768, generator=g), torch.randn(3072, 768, generator=g)

    def scan() -> float:
        t0 = time.perf_counter()
        sf.run_scan(dt, u, At, Abt, B, C, D, None, 2, -1)
        return time.perf_counter() - t0

    scan()
    after, idle = [], []
    for _ in range(rounds):
        torch.nn.functional.linear(a, w)
        after.append(scan())
        torch.nn.functional.linear(a, w)
        time.sleep(0.05)
        idle.append(scan())
    out = {"openmp": openmp_wait.STATUS,
           "scan_after_gemm_ms": round(1e3 * float(np.median(after)), 2),
           "scan_after_idle_ms": round(1e3 * float(np.median(idle)), 2)}
    if hops > 0:
        from streaming_aum import load_model
        from streaming_aum.bench.streaming import measure_window

        res = measure_window(load_model(), 1.0, hops)
        out.update({k: res[k] for k in ("hop_ms_p50", "hop_ms_p99")})
    return out


def env_for(setting: str) -> dict[str, str]:
    from streaming_aum import openmp_wait  # (this parent never imports torch)

    env = {k: v for k, v in os.environ.items()
           if k not in (*openmp_wait.USER_VARIABLES, openmp_wait.ENV_CHOICE)}
    if setting == "auto":
        pass  # what importing streaming_aum does (openmp_wait.apply)
    elif setting == "default":
        env[openmp_wait.ENV_CHOICE] = "keep"
    elif setting.upper() == "PASSIVE":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif setting.isdigit():
        env["GOMP_SPINCOUNT"] = setting
    else:
        raise SystemExit(f"a setting is auto, default, PASSIVE or a spin count; got {setting!r}")
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", default="default,auto,PASSIVE")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--hops", type=int, default=300)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.rounds, args.hops)))
        return 0
    for setting in args.settings.split(","):
        setting = setting.strip()
        proc = subprocess.run([sys.executable, __file__, "--child", "--rounds", str(args.rounds),
                               "--hops", str(args.hops)], env=env_for(setting),
                              capture_output=True, text=True)
        if proc.returncode:
            print(f"{setting}: failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        hop = (f" | hop p50 {r['hop_ms_p50']:.2f} ms, p99 {r['hop_ms_p99']:.2f} ms"
               if "hop_ms_p50" in r else "")
        print(f"{setting:>8}: scan after GEMM {r['scan_after_gemm_ms']:.2f} ms, after idle "
              f"{r['scan_after_idle_ms']:.2f} ms{hop}   [{r['openmp']}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
