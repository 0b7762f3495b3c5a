"""``aum bench onnx``: ONNX Runtime (CPU) vs PyTorch eager on the same model, 10 s clips.

One JSON object (``--json``)::

    {"model": {...}, "frames": 1024, "threads": 2, "export_s": ..., "onnx_nodes": ...,
     "records": [{"batch": 1, "eager_s": ..., "eager_reference_s": ..., "ort_s": ...,
                  "speedup": ..., "speedup_vs_reference": ..., "target_met": ...,
                  "max_abs_diff": ..., ...}, ...],
     "profile": {...}}                                          # with --profile

How each figure is obtained:

* Model: random weights (seed 0), ``preset_config(size, mixer="v1", num_classes=527)``: the
  official layout (grid positions, middle class token) at 1024 frames = the official 10.24 s
  input; ``--size`` picks tiny (default), small or base. Random weights cost the same compute
  as trained ones.
* Export: ``export.onnx_export.export_onnx`` (validated against PyTorch as always) into a
  temporary directory, once per run; ``export_s`` is its wall time (export + validation).
  ``--onnx FILE`` writes the export there instead, or reuses FILE if it already exists (it must
  be an export of the same configuration; the ``max_abs_diff`` column checks that).
* Input: ``torch.randn(batch, 1024, 128)`` from a generator seeded with the batch size; the
  same array feeds both runtimes.
* Threads: ``torch.set_num_threads(threads)`` (the numba scan follows it) and ONNX Runtime
  ``intra_op_num_threads=threads``, ``inter_op_num_threads=1``, sequential execution,
  ``graph_optimization_level=ORT_ENABLE_ALL``; default 2 threads.
* Time: per (runtime, batch) one untimed warm-up call (numba compilation / ORT's first-run
  allocations), then ``--repeats`` timed calls; ``*_s`` is their median, ``*_times_s`` all of
  them. PyTorch runs under ``torch.inference_mode()``:
  - ``eager_s``: the default ``auto`` scan backend, i.e. the fused numba kernel on CPU;
  - ``eager_reference_s``: ``scan_backend("reference")`` (per-step torch ops), for context;
    it is slow, so it gets ``--reference-repeats`` (default 1) timed calls and no warm-up
    (there is nothing to compile); ``--reference-repeats 0`` skips it.
* ``speedup`` = ``eager_s / ort_s`` (issue target: ONNX Runtime at least 1.3x faster,
  ``target_met``); ``speedup_vs_reference`` = ``eager_reference_s / ort_s``.
* ``--profile``: one extra ONNX Runtime call at the smallest batch size with
  ``enable_profiling`` (the profiler records every Scan step; at batch 16 for AuM-tiny it
  exhausted 24 GB of memory, hence the smallest batch only); ``profile``
  gives the share of the run spent in ``Scan`` nodes (the selective scans, one per direction
  and layer), the top-level operators outside them and the operators run inside the Scan
  bodies (profiled per step, which inflates small ops: read them as proportions).
* Noise: ``load_1m`` (1-minute load average) and ``cpus`` are recorded; on a shared machine
  with more runnable threads than cores every figure inflates, ratios less so.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..audio_constants import OFFICIAL_TARGET_FRAMES
from ..errors import ConfigError

SPEEDUP_TARGET = 1.3
SIZES = ("tiny", "small", "base")
NUM_CLASSES = 527
SEED = 0


def parse_batches(text: str) -> list[int]:
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise ConfigError(f"--batches takes comma-separated positive integers (e.g. 1,16); "
                              f"got {part!r}")
        if value < 1:
            raise ConfigError(f"batch sizes must be positive; got {value}")
        values.append(value)
    if not values:
        raise ConfigError("--batches is empty; give e.g. 1,16")
    return list(dict.fromkeys(values))


def _log(msg: str) -> None:
    print(f"[bench onnx] {msg}", file=sys.stderr, flush=True)


def _time(fn: Callable[[], Any], repeats: int, warmup: bool = True) -> list[float]:
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _session(path: str, threads: int, profile: bool = False) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "aum_bench_onnx")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def summarise_profile(events: list[dict[str, Any]]) -> dict[str, Any]:
    """ORT profiler events of one run -> Scan share, top-level and in-Scan op times (ms)."""
    nodes = [e for e in events if e.get("cat") == "Node" and "op_name" in e.get("args", {})]
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    scans = sorted((e["ts"], e["ts"] + e["dur"], id(e)) for e in nodes
                   if e["args"]["op_name"] == "Scan")
    starts = [a for a, _, _ in scans]

    def inside(e: dict[str, Any]) -> bool:  # scans run one after another (sequential executor)
        i = bisect.bisect_right(starts, e["ts"]) - 1
        return i >= 0 and scans[i][2] != id(e) and e["ts"] + e["dur"] <= scans[i][1]

    top, body = Counter(), Counter()
    for e in nodes:
        (body if inside(e) else top)[e["args"]["op_name"]] += e["dur"]
    run_us = sum(e["dur"] for e in runs) or sum(top.values())
    scan_us = top.get("Scan", 0)
    ms = lambda c: {k: round(v / 1000, 2) for k, v in c.most_common(10)}  # noqa: E731
    return {"run_ms": round(run_us / 1000, 2), "scan_ms": round(scan_us / 1000, 2),
            "scan_share": round(scan_us / run_us, 4) if run_us else None,
            "scan_nodes": len(scans), "top_level_ms": ms(top), "inside_scan_ms": ms(body)}


def profile_ort(path: str, threads: int, x: np.ndarray) -> dict[str, Any]:
    session = _session(path, threads, profile=True)
    session.run(None, {"fbank": x})  # warm-up, profiled too: keep only the last run below
    session.run(None, {"fbank": x})
    trace = session.end_profiling()
    try:
        events = json.loads(Path(trace).read_text())
    finally:
        Path(trace).unlink(missing_ok=True)
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    if len(runs) >= 2:  # drop the warm-up run's events
        start = runs[-1]["ts"]
        events = [e for e in events if e.get("ts", 0) >= start]
    return summarise_profile(events)


def run_bench(size: str = "tiny", batches: list[int] | None = None, repeats: int = 5,
              reference_repeats: int = 1, threads: int = 2, onnx_path: str | None = None,
              profile: bool = False) -> dict[str, Any]:
    import onnx
    import onnxruntime as ort

    from export.onnx_export import export_onnx

    from ..config import preset_config
    from ..loading import describe
    from ..model import AudioMamba
    from ..ops import scan_backend

    if size not in SIZES:
        raise ConfigError(f"--size must be one of {SIZES}; got {size!r}")
    batches = batches or [1, 16]
    if repeats < 1 or reference_repeats < 0 or threads < 1:
        raise ConfigError("--repeats and --threads must be >= 1, --reference-repeats >= 0")
    torch.manual_seed(SEED)
    model = AudioMamba(preset_config(size, mixer="v1", num_classes=NUM_CLASSES)).eval()
    frames = model.config.spectrogram_frames
    assert frames == OFFICIAL_TARGET_FRAMES

    previous_threads = torch.get_num_threads()
    tmp = tempfile.TemporaryDirectory(prefix="aum_bench_onnx_")
    try:
        path = Path(onnx_path) if onnx_path else Path(tmp.name) / f"aum_{size}.onnx"
        export_s = None
        if not path.exists():
            _log(f"exporting AuM-{size} to {path} (export + validation) ...")
            t0 = time.perf_counter()
            export_onnx(model, path)
            export_s = time.perf_counter() - t0
            _log(f"export took {export_s:.1f} s")
        else:
            _log(f"reusing {path}")
        n_nodes = len(onnx.load(str(path), load_external_data=False).graph.node)

        torch.set_num_threads(threads)
        session = _session(str(path), threads)
        records = []
        prof: dict[str, Any] = {}
        for batch in batches:
            g = torch.Generator().manual_seed(batch)
            x = torch.randn(batch, frames, model.config.n_mels, generator=g)
            xn = x.numpy()
            rec: dict[str, Any] = {"batch": batch, "clip_s": frames / 100}
            with torch.inference_mode():
                expected = model(x).numpy()
                _log(f"batch {batch}: PyTorch eager (auto scan backend) ...")
                t = _time(lambda: model(x), repeats)
                rec.update(eager_s=statistics.median(t), eager_times_s=t)
                if reference_repeats:
                    _log(f"batch {batch}: PyTorch eager, reference scan ...")
                    with scan_backend("reference"):
                        t = _time(lambda: model(x), reference_repeats, warmup=False)
                    rec.update(eager_reference_s=statistics.median(t), eager_reference_times_s=t)
            _log(f"batch {batch}: ONNX Runtime ...")
            got = session.run(["logits"], {"fbank": xn})[0]
            rec["max_abs_diff"] = float(np.abs(got - expected).max())
            t = _time(lambda: session.run(["logits"], {"fbank": xn}), repeats)
            rec.update(ort_s=statistics.median(t), ort_times_s=t)
            rec["speedup"] = rec["eager_s"] / rec["ort_s"]
            if "eager_reference_s" in rec:
                rec["speedup_vs_reference"] = rec["eager_reference_s"] / rec["ort_s"]
            rec["target_met"] = rec["speedup"] >= SPEEDUP_TARGET
            rec["load_1m"] = os.getloadavg()[0]
            records.append(rec)
            _log("record: " + json.dumps({k: v for k, v in rec.items() if "times" not in k}))
            if profile and batch == min(batches):
                _log(f"batch {batch}: ONNX Runtime profile ...")
                prof[str(batch)] = profile_ort(str(path), threads, xn)
    finally:
        torch.set_num_threads(previous_threads)
        tmp.cleanup()
    result: dict[str, Any] = {
        "model": {"name": f"aum-{size}", **describe(model)}, "frames": frames,
        "threads": threads, "repeats": repeats, "reference_repeats": reference_repeats,
        "export_s": export_s, "onnx_nodes": n_nodes, "speedup_target": SPEEDUP_TARGET,
        "records": records, "torch": torch.__version__, "onnxruntime": ort.__version__,
        "cpus": os.cpu_count(), "machine": platform.machine()}
    if profile:
        result["profile"] = prof
    return result


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{result['model']['name']} v1, {result['frames']} frames (10.24 s), "
             f"{result['threads']} threads, median of {result['repeats']}; target: ONNX Runtime "
             f">= {SPEEDUP_TARGET}x faster than PyTorch eager"]
    header = ["batch", "eager s", "eager ref s", "ORT s", "eager/ORT", "ref/ORT", "target",
              "max|diff|"]
    rows = []
    for r in result["records"]:
        ref = r.get("eager_reference_s")
        rows.append([str(r["batch"]), f"{r['eager_s']:.3f}", "-" if ref is None else f"{ref:.3f}",
                     f"{r['ort_s']:.3f}", f"{r['speedup']:.2f}x",
                     "-" if ref is None else f"{r['speedup_vs_reference']:.2f}x",
                     "met" if r["target_met"] else "NOT met", f"{r['max_abs_diff']:.1e}"])
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    for row in [header, *rows]:
        lines.append("  ".join(x.rjust(w) for x, w in zip(row, widths)))
    for batch, p in result.get("profile", {}).items():
        lines.append(f"profile batch {batch}: Scan {p['scan_share']:.0%} of {p['run_ms']:.0f} ms; "
                     f"top level {p['top_level_ms']}; inside Scan {p['inside_scan_ms']}")
    return "\n".join(lines) + "\n"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "onnx", help="ONNX Runtime CPU vs PyTorch eager, same model, 10 s clips",
        description="ONNX Runtime CPU vs PyTorch eager on the same random-weight AuM (v1, "
                    "official layout, 1024 frames = 10.24 s), batch 1 and 16, 2 threads. "
                    f"Target: ONNX Runtime at least {SPEEDUP_TARGET}x faster.")
    p.add_argument("--json", action="store_true", help="print the JSON result only")
    p.add_argument("--output", metavar="FILE", default=None, help="also write the JSON to FILE")
    p.add_argument("--size", choices=SIZES, default="tiny", help="AuM size (default: tiny)")
    p.add_argument("--batches", default="1,16", help="comma list of batch sizes (default: 1,16)")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed calls per runtime after one warm-up (default: %(default)s)")
    p.add_argument("--reference-repeats", type=int, default=1,
                   help="timed calls of the slow reference-scan eager run; 0 skips it "
                        "(default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="threads of both runtimes (default: 2)")
    p.add_argument("--onnx", metavar="FILE", default=None,
                   help="write the export to FILE, or reuse FILE if it exists")
    p.add_argument("--profile", action="store_true",
                   help="add an ONNX Runtime profile (Scan share, op breakdown) at the "
                        "smallest batch size")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    result = run_bench(size=args.size, batches=parse_batches(args.batches), repeats=args.repeats,
                       reference_repeats=args.reference_repeats, threads=args.threads,
                       onnx_path=args.onnx, profile=args.profile)
    text = json.dumps(result, indent=1)
    if args.output:
        Path(args.output).write_text(text + "\n")
    sys.stdout.write(text + "\n" if args.json else format_table(result))
    return 0
