"""``aum bench train``: CPU training-step throughput, fused scan backward vs the reference scan,
side by side in one run.

What is timed: one optimiser step (forward, cross-entropy, backward, AdamW) of a streaming-layout
model on a batch of random normalised log-mel features of 1 s clips (96 frames x 128 bins, i.e.
6 columns = 48 tokens); the default size is the shipped model's (``configs/kws12_small.toml``:
embed_dim 96, depth 4, mixer v2). For each backend (``fused``: the numba forward + backward
kernels of ``ops.scan_fused_grad``; ``reference``: per-step torch ops differentiated by
autograd) ``--warmup`` untimed steps (numba compilation) are followed by ``--steps`` timed ones,
alternating backends step by step so that both see the same machine state; the median step time
is reported, and ``clips_per_s = batch / median``. ``speedup = reference / fused``.

Output: a table, or one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

BACKENDS = ("fused", "reference")


def _step(model, opt, feats: torch.Tensor, target: torch.Tensor) -> None:
    loss = torch.nn.functional.cross_entropy(model(feats), target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from ..config import streaming_config
    from ..model import AudioMamba
    from ..ops.dispatch import scan_backend

    torch.manual_seed(0)
    cfg = streaming_config(embed_dim=args.embed_dim, depth=args.depth, mixer=args.mixer,
                           num_classes=12, spectrogram_frames=96, output_activation="softmax")
    models = {b: AudioMamba(cfg) for b in BACKENDS}
    for b in BACKENDS[1:]:
        models[b].load_state_dict(models[BACKENDS[0]].state_dict())
    opts = {b: torch.optim.AdamW(models[b].parameters(), lr=1e-3) for b in BACKENDS}
    feats = torch.randn(args.batch, 96, 128) * 0.5
    target = torch.randint(0, 12, (args.batch,))
    times: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for i in range(args.warmup + args.steps):
        for b in BACKENDS:
            with scan_backend(b):
                t0 = time.perf_counter()
                _step(models[b], opts[b], feats, target)
                dt = time.perf_counter() - t0
            if i >= args.warmup:
                times[b].append(dt)
    out: dict[str, Any] = {
        "model": {"embed_dim": args.embed_dim, "depth": args.depth, "mixer": args.mixer,
                  "parameters": sum(p.numel() for p in models["fused"].parameters())},
        "batch": args.batch, "tokens": 48, "threads": torch.get_num_threads(),
        "steps": args.steps}
    for b in BACKENDS:
        med = statistics.median(times[b])
        out[b] = {"step_s_median": round(med, 4), "clips_per_s": round(args.batch / med, 1)}
    out["speedup"] = round(out["reference"]["step_s_median"] / out["fused"]["step_s_median"], 2)
    return out


def run(args: argparse.Namespace) -> int:
    res = run_benchmark(args)
    if args.json:
        print(json.dumps(res))
        return 0
    m = res["model"]
    print(f"training step, d{m['embed_dim']} L{m['depth']} {m['mixer']} ({m['parameters']} "
          f"parameters), batch {res['batch']} x 48 tokens, {res['threads']} threads")
    for b in BACKENDS:
        r = res[b]
        print(f"  {b:<9} {r['step_s_median'] * 1000:8.1f} ms/step  {r['clips_per_s']:7.1f} clips/s")
    print(f"  speedup (reference / fused): {res['speedup']:.2f}x")
    return 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="training-step throughput: fused scan backward vs reference",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--embed-dim", type=int, default=96)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--mixer", choices=["none", "v1", "v2"], default="v2")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
    return p
