"""``aum bench offline``: offline forward time and peak memory of AuM next to AST-B.

One record per (model, clip length), all measured in one run::

    {"model": "aum-base", "clip_s": 10.0, "frames": 1024, "tokens": 512, "s_per_clip": ...,
     "peak_mb": ..., "params_m": ..., "threads": 2, "backend": "fused", ...}

How each figure is obtained (every (model, clip) runs in its own fresh child process,
``python -m streaming_aum.bench.offline --one SPEC``, so peaks and caches do not mix):

* Clip length -> frames: ``clip_s`` is nominal seconds with 10 s = 1024 frames, the official
  10.24 s AuM/AST input (``OFFICIAL_TARGET_FRAMES``); frames are rounded to whole 16-frame patch
  columns, so 40 s = 4096 frames and 1.28 s = 128 frames. Input: ``torch.randn(1, frames, 128)``.
* Models have random weights. AuM: ``preset_config(size, mixer="v1", num_classes=527,
  spectrogram_frames=frames)``. AST-B: ``transformers.ASTConfig(max_length=frames,
  num_mel_bins=128, num_labels=527)`` with the default base sizes (12 layers, 768 wide, 16x16
  patches at stride 10: 1212 patch tokens at 1024 frames, as the real AST), never
  ``from_pretrained`` (the child also sets ``HF_HUB_OFFLINE=1``).
* ``tokens`` counts patch tokens only (AuM adds one class token, AST two).
* Time: ``torch.inference_mode()``, ``torch.set_num_threads(threads)`` (the numba scan follows
  it), one untimed warm-up forward (which also compiles or loads the numba kernel), then
  ``repeats`` timed forwards; ``s_per_clip`` is their median, ``min_s`` the fastest, ``times_s``
  all of them.
* Memory (``mem_method: "vmhwm"``): after the timed runs, ``gc.collect()`` and ``malloc_trim(0)``
  hand freed heap pages back to the OS, the kernel's peak-RSS mark is reset (``echo 5 >
  /proc/self/clear_refs``), and one more forward runs; ``peak_mb`` = ``VmHWM`` after it minus
  ``VmRSS`` before it, i.e. the peak resident growth of one forward, weights excluded
  (``rss_model_mb`` is the resident size with the model loaded). Where the mark cannot be reset
  a thread polls the RSS every millisecond instead (``mem_method: "poll"``).
* Noise: the figures are only as good as the machine was quiet (with more runnable threads than
  cores, times inflate several-fold). ``others_cpu`` is the share of the machine's CPU time that
  other processes used while the child ran (``/proc/stat`` busy ticks minus the child's own CPU
  time; 0 = undisturbed), ``cpu_busy_before`` the share busy in the 0.5 s before it started,
  ``load_1m`` the 1-minute load average at its start; ``--wait-quiet`` waits for idle CPUs before
  each measurement. Each timed forward has its own share (``others_per_run``), and
  ``--max-others F`` redoes a forward disturbed by more than ``F`` (``discarded_s`` lists them).
* OpenMP: every child imports streaming_aum before torch, so AuM and AST-B alike run with the
  package's shortened OpenMP spin-wait (``openmp_wait``; ``openmp`` in the record says what was
  set; ``STREAMING_AUM_OPENMP=keep`` runs both with OpenMP's defaults).
* ``--rounds N`` measures the whole (clip, model) sequence N times, round after round; records
  carry ``round``, and the table's verdict is the median of the per-round AST-B / AuM-B ratios
  (the two models of a round run minutes apart, while the machine's speed drifts over tens of
  minutes by up to 2x).
* ``--profile`` adds ``breakdown`` from one extra forward with timers around the stages
  (AuM: patch embed, in/out projections, x/dt projections, causal conv, selective scan with its
  numba kernel part, rest; AST: patch embed, q/k/v/o projections, attention core, MLP, rest).
  ``scan_kernel_s`` is the wall time inside the numba kernel (calls running on several threads
  at once count once), ``scan_torch_s`` the rest of the scan calls (softplus, ``dt * u``, layout
  copies, the D skip, thread hand-off). The mixer's fused inference path (``_forward_fused``)
  calls ``scan_fused_cpu.run_scan`` and ``softplus_fused`` itself: both count as scan (nested
  calls of the generic path once); its ``conv1d_silu_fused`` counts as conv, a v2 layer's
  stacked ``pair_projections`` as x/dt projections, the ``gated_output`` gate as rest. With
  ``--max-others`` a disturbed profiled forward is redone like a timed one;
  ``breakdown["others"]`` is its share of other processes.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import openmp_wait
from ..audio_constants import N_MELS, OFFICIAL_TARGET_FRAMES, PATCH_SIZE
from ..errors import ConfigError

AUM_SIZES: dict[str, str] = {"aum-tiny": "tiny", "aum-small": "small", "aum-base": "base"}
AST_MODELS: tuple[str, ...] = ("ast-base",)
MODEL_NAMES: tuple[str, ...] = (*AUM_SIZES, *AST_MODELS)
DEFAULT_MODELS = "aum-tiny,aum-small,aum-base,ast-base"
DEFAULT_CLIPS = "10,40"
NOMINAL_CLIP_S = 10.0  # nominal seconds of OFFICIAL_TARGET_FRAMES (the 10.24 s input)
FRAMES_PER_NOMINAL_S = OFFICIAL_TARGET_FRAMES / NOMINAL_CLIP_S  # 102.4
AST_PATCH, AST_STRIDE = 16, 10  # ASTConfig defaults (patch_size, frequency/time stride)
# Targets of the issue: AST-B time / AuM-B time at these clip lengths.
SPEEDUP_TARGETS: dict[float, float] = {10.0: 2.0, 40.0: 4.0}
RECORD_PREFIX = "AUM_BENCH_RECORD "


# Arithmetic ------------------------------------------------------------------------------
def clip_frames(clip_s: float) -> int:
    """Nominal clip seconds -> fbank frames: 10 s -> 1024, rounded to whole 16-frame columns."""
    columns = max(1, round(clip_s * FRAMES_PER_NOMINAL_S / PATCH_SIZE))
    return columns * PATCH_SIZE


def aum_tokens(frames: int) -> int:
    """Patch tokens of AuM (16x16 non-overlapping): 8 frequency rows x frames // 16 columns."""
    return (N_MELS // PATCH_SIZE) * (frames // PATCH_SIZE)


def ast_tokens(frames: int) -> int:
    """Patch tokens of AST (16x16 patches at stride 10 in both axes): 12 x 101 at 1024 frames."""
    rows = (N_MELS - AST_PATCH) // AST_STRIDE + 1
    cols = (frames - AST_PATCH) // AST_STRIDE + 1
    return rows * cols


def parse_models(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError(f"--models is empty; choose from {', '.join(MODEL_NAMES)}")
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise ConfigError(f"unknown model(s) {', '.join(repr(n) for n in unknown)} in --models; "
                          f"choose from {', '.join(MODEL_NAMES)}")
    return list(dict.fromkeys(names))


def parse_clips(text: str) -> list[float]:
    clips = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"--clips takes comma-separated seconds (e.g. 10,40); got {part!r}")
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"clip lengths must be positive seconds; got {part!r}")
        clips.append(value)
    if not clips:
        raise ConfigError("--clips is empty; give comma-separated seconds, e.g. 10,40")
    return list(dict.fromkeys(clips))


# Resident-memory measurement (child side) -------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_bytes() -> int | None:
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb * 1024
    try:  # non-Linux: psutil if it is there
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM); Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_kb("VmHWM") is not None
    except OSError:
        return False


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS, so reused pages count again as growth."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def peak_rss_growth() -> Iterator[dict[str, Any]]:
    """``with peak_rss_growth() as m: work()`` -> ``m["peak_mb"]``, ``m["method"]``."""
    gc.collect()
    _malloc_trim()
    result: dict[str, Any] = {}
    before = _rss_bytes() or 0
    if _reset_peak_rss():
        result["method"] = "vmhwm"
        yield result
        result["peak_mb"] = max(0.0, (_status_kb("VmHWM") or 0) * 1024 - before) / 2**20
        return
    result["method"] = "poll"
    peak = [before]
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes() or 0)
            stop.wait(0.001)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
    peak[0] = max(peak[0], _rss_bytes() or 0)
    result["peak_mb"] = max(0, peak[0] - before) / 2**20


# Stage timers (child side, --profile) ------------------------------------------------------
class _StageClock:
    def __init__(self) -> None:
        self.acc: dict[str, float] = defaultdict(float)
        self._starts: dict[int, float] = {}
        self.intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def wrap_wall(self, name: str, fn: Callable) -> Callable:
        """Like ``wrap`` for a function that may run in several threads at once: records
        intervals, so that ``wall(name)`` counts overlapping calls once."""
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.intervals[name].append((t0, time.perf_counter()))
        return timed

    def wall(self, name: str) -> float:
        total, end = 0.0, float("-inf")
        for a, b in sorted(self.intervals.get(name, [])):
            if b > end:
                total += b - max(a, end)
                end = b
        return total

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.acc[name] += time.perf_counter() - t0
        return timed

    def hook(self, module: Any, name: str) -> list[Any]:
        key = id(module)

        def pre(*_: Any) -> None:
            self._starts[key] = time.perf_counter()

        def post(*_: Any) -> None:
            self.acc[name] += time.perf_counter() - self._starts.pop(key)

        return [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]


class _LinearByWeight:
    """Stand-in for ``torch.nn.functional`` inside the mixer module: times ``F.linear`` calls by
    which weight they use and forwards everything else."""

    def __init__(self, functional: Any, clock: _StageClock, names: dict[int, str]) -> None:
        self._functional = functional
        self._clock = clock
        self._names = names

    def linear(self, input: Any, weight: Any, bias: Any = None) -> Any:  # noqa: A002
        t0 = time.perf_counter()
        try:
            return self._functional.linear(input, weight, bias)
        finally:
            name = self._names.get(id(weight), "other_linear")
            self._clock.acc[name] += time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._functional, name)


@contextlib.contextmanager
def _aum_stage_timers(model: Any, clock: _StageClock) -> Iterator[None]:
    """Time the stages of an AudioMamba forward by wrapping the names the mixer calls through.

    Patches module globals for the duration only (the model code is not changed): the mixer's
    ``selective_scan``, ``causal_conv1d`` and ``F``, and the numba ``_scan_kernel``.
    """
    from ..model import mixer as mixer_mod
    from ..ops import scan_fused_cpu

    names: dict[int, str] = {}
    for block in model.layers:
        m = block.mixer
        names[id(m.out_proj.weight)] = "in_out_proj"
        names[id(m.in_proj.weight)] = "in_out_proj"  # the fused path calls F.linear on it
        for proj in ("x_proj", "dt_proj", "x_proj_b", "dt_proj_b"):
            if hasattr(m, proj):
                names[id(getattr(m, proj).weight)] = "x_dt_proj"
    saved = {
        (mixer_mod, "selective_scan"): mixer_mod.selective_scan,
        (mixer_mod, "causal_conv1d"): mixer_mod.causal_conv1d,
        (mixer_mod, "F"): mixer_mod.F,
        (mixer_mod, "softplus_fused"): mixer_mod.softplus_fused,
        (mixer_mod, "conv1d_silu_fused"): mixer_mod.conv1d_silu_fused,
        (mixer_mod, "pair_projections"): mixer_mod.pair_projections,
        (scan_fused_cpu, "run_scan"): scan_fused_cpu.run_scan,
    }
    if scan_fused_cpu.HAVE_NUMBA:
        saved[(scan_fused_cpu, "_scan_kernel")] = scan_fused_cpu._scan_kernel
    handles = clock.hook(model.patch_embed, "patch_embed")
    for block in model.layers:
        handles += clock.hook(block.mixer.in_proj, "in_out_proj")
    try:
        # "scan" as intervals: the generic path's selective_scan calls run_scan inside
        mixer_mod.selective_scan = clock.wrap_wall("scan", mixer_mod.selective_scan)
        scan_fused_cpu.run_scan = clock.wrap_wall("scan", scan_fused_cpu.run_scan)
        mixer_mod.softplus_fused = clock.wrap_wall("scan", mixer_mod.softplus_fused)
        mixer_mod.causal_conv1d = clock.wrap("conv", mixer_mod.causal_conv1d)
        mixer_mod.conv1d_silu_fused = clock.wrap("conv", mixer_mod.conv1d_silu_fused)
        mixer_mod.pair_projections = clock.wrap("x_dt_proj", mixer_mod.pair_projections)
        mixer_mod.F = _LinearByWeight(mixer_mod.F, clock, names)
        if scan_fused_cpu.HAVE_NUMBA:
            # the kernel may run on several pool threads at once: count its wall time
            scan_fused_cpu._scan_kernel = clock.wrap_wall("scan_kernel",
                                                          scan_fused_cpu._scan_kernel)
        yield
    finally:
        for (mod, attr), value in saved.items():
            setattr(mod, attr, value)
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _ast_stage_timers(model: Any, clock: _StageClock) -> Iterator[None]:
    handles = clock.hook(model.audio_spectrogram_transformer.embeddings, "patch_embed")
    for mod_name, mod in model.named_modules():
        kind = type(mod).__name__
        if kind == "ASTAttention":
            handles += clock.hook(mod, "attention")
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                handles += clock.hook(getattr(mod, proj), "qkvo_proj")
        elif kind == "ASTMLP":
            handles += clock.hook(mod, "mlp")
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _breakdown(acc: dict[str, float], total: float, order: list[str]) -> dict[str, float]:
    out = {f"{k}_s": round(acc.get(k, 0.0), 4) for k in order}
    out["rest_s"] = round(max(0.0, total - sum(acc.get(k, 0.0) for k in order)), 4)
    out["total_s"] = round(total, 4)
    return out


# One measurement (child side) --------------------------------------------------------------
MAX_TRIES_PER_REPEAT = 3  # with --max-others: at most 3 * repeats timed forwards in all


def _others_share(j0: tuple[int, int] | None, j1: tuple[int, int] | None,
                  own_cpu_s: float) -> float | None:
    """Share of all CPUs' time between two /proc/stat samples used by processes other than the
    one(s) whose CPU time is ``own_cpu_s``."""
    if j0 is None or j1 is None or j1[1] <= j0[1]:
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = (j1[0] - j0[0]) - own_cpu_s * tick
    return round(min(1.0, max(0.0, busy / (j1[1] - j0[1]))), 3)


def _self_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return ru.ru_utime + ru.ru_stime


def _timed_share_of_others(fn: Callable[[], Any]) -> tuple[float, float | None]:
    """(wall seconds of ``fn()``, share of the machine's CPU time other processes used meanwhile)."""
    j0, c0 = _cpu_jiffies(), _self_cpu_s()
    t0 = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    return elapsed, _others_share(j0, _cpu_jiffies(), _self_cpu_s() - c0)


def _build(name: str, frames: int) -> tuple[Any, Any, dict[str, Any]]:
    import torch

    torch.manual_seed(0)
    x = torch.randn(1, frames, N_MELS)
    if name in AUM_SIZES:
        from ..config import preset_config
        from ..model.audio_mamba import AudioMamba
        from ..ops import resolve_backend

        cfg = preset_config(AUM_SIZES[name], mixer="v1", num_classes=527,
                            spectrogram_frames=frames)
        model = AudioMamba(cfg).eval()
        with torch.inference_mode():
            probe = torch.zeros(1, 1, cfg.d_inner)
            backend = resolve_backend(probe, model.layers[0].mixer.dt_proj.bias)
        info = {"tokens": cfg.num_patches, "backend": backend}
        return model, x, info
    from transformers import ASTConfig, ASTForAudioClassification

    config = ASTConfig(max_length=frames, num_mel_bins=N_MELS, num_labels=527)
    model = ASTForAudioClassification(config).eval()
    pos_rows = model.audio_spectrogram_transformer.embeddings.position_embeddings.shape[1]
    tokens = ast_tokens(frames)
    if pos_rows - 2 != tokens:  # pragma: no cover - a transformers change of the patch grid
        raise RuntimeError(f"AST has {pos_rows - 2} patch tokens, expected {tokens}")
    attn = getattr(model.config, "_attn_implementation", None) or "eager"
    return model, x, {"tokens": tokens, "backend": f"attention:{attn}"}


def measure_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Build one model, warm it up, time ``repeats`` forwards, then measure memory (and stages)."""
    import torch

    name, clip_s = spec["model"], float(spec["clip_s"])
    threads, repeats, profile = int(spec["threads"]), int(spec["repeats"]), bool(spec["profile"])
    frames = clip_frames(clip_s)
    load_1m = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    torch.set_num_threads(threads)
    model, x, info = _build(name, frames)
    params = sum(p.numel() for p in model.parameters())
    is_aum = name in AUM_SIZES

    def forward() -> Any:
        return model(x) if is_aum else model(input_values=x).logits

    with torch.inference_mode():
        t0 = time.perf_counter()
        forward()  # warm-up: numba compile / cache load, oneDNN primitives, first-touch pages
        warmup_s = time.perf_counter() - t0
        max_others = spec.get("max_others")
        times, others_kept, discarded = [], [], []
        while len(times) < repeats:
            elapsed, others = _timed_share_of_others(forward)
            budget_left = len(times) + len(discarded) + 1 < MAX_TRIES_PER_REPEAT * repeats
            if (max_others is not None and others is not None and others > max_others
                    and budget_left):
                discarded.append(round(elapsed, 4))
                continue
            times.append(elapsed)
            others_kept.append(others)
        breakdown = None
        if profile:
            timers = _aum_stage_timers if is_aum else _ast_stage_timers
            for _ in range(MAX_TRIES_PER_REPEAT):  # redo a disturbed one, as above
                clock = _StageClock()
                with timers(model, clock):
                    total, profile_others = _timed_share_of_others(forward)
                if (max_others is None or profile_others is None
                        or profile_others <= max_others):
                    break
            if is_aum:
                acc = dict(clock.acc)
                acc["scan"] = clock.wall("scan")
                acc["scan_kernel"] = clock.wall("scan_kernel")
                acc["scan_torch"] = max(0.0, acc.get("scan", 0.0) - acc["scan_kernel"])
                breakdown = _breakdown(acc, total, ["patch_embed", "in_out_proj", "x_dt_proj",
                                                    "conv", "scan_kernel", "scan_torch"])
                breakdown["scan_s"] = round(acc.get("scan", 0.0), 4)
            else:
                acc = dict(clock.acc)
                acc["attention_core"] = acc.get("attention", 0.0) - acc.get("qkvo_proj", 0.0)
                breakdown = _breakdown(acc, total, ["patch_embed", "qkvo_proj",
                                                    "attention_core", "mlp"])
            breakdown["others"] = profile_others
        rss_model = _rss_bytes()
        with peak_rss_growth() as mem:
            forward()
    record: dict[str, Any] = {
        "model": name,
        "clip_s": clip_s,
        "frames": frames,
        "tokens": info["tokens"],
        "s_per_clip": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "peak_mb": round(mem["peak_mb"], 1),
        "params_m": round(params / 1e6, 2),
        "threads": threads,
        "backend": info["backend"],
        "repeats": repeats,
        "times_s": [round(t, 4) for t in times],
        "others_per_run": others_kept,
        "discarded_s": discarded,
        "warmup_s": round(warmup_s, 4),
        "rss_model_mb": None if rss_model is None else round(rss_model / 2**20, 1),
        "mem_method": mem["method"],
        "load_1m": load_1m,
        "openmp": openmp_wait.STATUS,
    }
    if breakdown is not None:
        record["breakdown"] = breakdown
    return record


# Parent side -------------------------------------------------------------------------------
def _child_env(threads: int) -> dict[str, str]:
    """The environment of a measuring child: the user's (without what this process's own
    import of streaming_aum set, ``openmp_wait``), so that every child, AuM or AST-B, applies
    the same OpenMP spin-wait rule itself when it imports streaming_aum: both models run
    under the same settings (``STREAMING_AUM_OPENMP=keep``: OpenMP's defaults for both)."""
    env = openmp_wait.without_package_settings(dict(os.environ))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["NUMBA_NUM_THREADS"] = str(max(threads, int(env.get("NUMBA_NUM_THREADS", "0") or 0)))
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["TRANSFORMERS_VERBOSITY"] = env.get("TRANSFORMERS_VERBOSITY", "error")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat; None off Linux."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return total - idle, total


def cpu_busy_fraction(interval: float = 0.5) -> float | None:
    """Fraction of all CPUs busy over ``interval`` seconds (from /proc/stat); None off Linux."""
    a = _cpu_jiffies()
    time.sleep(interval)
    b = _cpu_jiffies()
    if a is None or b is None or b[1] == a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1])


def wait_until_quiet(max_wait: float, busy_below: float = 0.15) -> float | None:
    """Wait up to ``max_wait`` s for the CPUs to be mostly idle; returns the last busy fraction."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy_fraction()
    while busy is not None and busy >= busy_below and time.monotonic() < deadline:
        busy = cpu_busy_fraction(1.0)
    return busy


def _children_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run_child(spec: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """Run one measurement in a fresh process. Adds ``others_cpu``: the share of the machine's
    CPU time that other processes used while the child ran (0: undisturbed; from /proc/stat
    minus the child's own CPU time)."""
    cmd = [sys.executable, "-m", "streaming_aum.bench.offline", "--one", json.dumps(spec)]
    jiffies0, child0 = _cpu_jiffies(), _children_cpu_s()
    try:
        proc = subprocess.run(cmd, env=_child_env(int(spec["threads"])), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout:g} s")
    others = _others_share(jiffies0, _cpu_jiffies(), _children_cpu_s() - child0)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RECORD_PREFIX):
            record = json.loads(line[len(RECORD_PREFIX):])
            record["others_cpu"] = others
            return record
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    how = f"exit code {proc.returncode}" if proc.returncode >= 0 else f"signal {-proc.returncode}"
    raise RuntimeError(f"measurement process failed ({how}): {' | '.join(tail) or 'no output'}")


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _fmt_busy(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def median_records(records: list[dict[str, Any]]) -> dict[tuple[str, float], dict[str, Any]]:
    """One record per (model, clip_s): the record itself after one round; after several
    (``round`` > 1 present), the first round's record with ``s_per_clip`` and ``peak_mb``
    replaced by their medians over rounds."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["model"], r["clip_s"])].append(r)
    out = {}
    for key, group in groups.items():
        rec = dict(group[0])
        if len(group) > 1:
            rec["s_per_clip"] = statistics.median(r["s_per_clip"] for r in group)
            rec["peak_mb"] = statistics.median(r["peak_mb"] for r in group)
        out[key] = rec
    return out


def round_ratios(records: list[dict[str, Any]], clip_s: float) -> list[float]:
    """AST-B time / AuM-B time at ``clip_s`` for each round that measured both (in round
    order): the two models of one round ran minutes apart, so a ratio per round is less
    exposed to the machine's slow phases than a ratio of medians over the whole run."""
    times: dict[int, dict[str, float]] = defaultdict(dict)
    for r in records:
        if r["clip_s"] == clip_s and r["model"] in ("ast-base", "aum-base"):
            times[r.get("round", 1)][r["model"]] = r["s_per_clip"]
    return [t["ast-base"] / t["aum-base"] for _, t in sorted(times.items())
            if len(t) == 2 and t["aum-base"] > 0]


def format_table(records: list[dict[str, Any]]) -> str:
    lines = []
    head = (f"{'model':<10} {'clip_s':>6} {'frames':>6} {'tokens':>6} {'params_M':>8} "
            f"{'s/clip':>8} {'min_s':>8} {'peak_MB':>8} {'rss_MB':>7} {'others':>6}  backend")
    lines += [head, "-" * len(head)]
    rounds = len({r.get("round", 1) for r in records})
    for r in records:
        name = f"{r['model']}" + (f" #{r.get('round', 1)}" if rounds > 1 else "")
        lines.append(f"{name:<10} {r['clip_s']:>6g} {r['frames']:>6} {r['tokens']:>6} "
                     f"{r['params_m']:>8.2f} {r['s_per_clip']:>8.3f} "
                     f"{r.get('min_s', r['s_per_clip']):>8.3f} {r['peak_mb']:>8.1f} "
                     f"{r.get('rss_model_mb') or 0:>7.0f} {_fmt_busy(r.get('others_cpu')):>6}  "
                     f"{r['backend']}")
    by = median_records(records)
    clips = list(dict.fromkeys(r["clip_s"] for r in records))
    models = list(dict.fromkeys(r["model"] for r in records))
    if "ast-base" in models and "aum-base" in models:
        lines += ["", "AST-B time / AuM-B time (higher: AuM faster)"
                      + (f", per round and the median of {rounds} rounds:" if rounds > 1
                         else ":")]
        for c in clips:
            a, b = by.get(("ast-base", c)), by.get(("aum-base", c))
            if a is None or b is None:
                continue
            per_round = round_ratios(records, c)  # one round: just a / b
            ratio = statistics.median(per_round) if per_round else \
                a["s_per_clip"] / b["s_per_clip"]
            target = SPEEDUP_TARGETS.get(float(c))
            verdict = "" if target is None else \
                f"  (target >= {target:g}x: {'met' if ratio >= target else 'NOT met'})"
            mem = a["peak_mb"] / b["peak_mb"] if b["peak_mb"] > 0 else None
            each = (" [" + ", ".join(f"{x:.2f}x" for x in per_round) + "]") if rounds > 1 else ""
            lines.append(f"  {c:g} s: time {ratio:.2f}x{verdict}{each}; peak memory "
                         f"{_fmt_ratio(mem)}")
    if len(clips) >= 2:
        lo, hi = min(clips), max(clips)
        lines += ["", f"Time growth {hi:g} s / {lo:g} s (linear = {hi / lo:.2f}x; tokens ratio "
                      "per model):"]
        for m in models:
            a, b = by.get((m, lo)), by.get((m, hi))
            if a is None or b is None:
                continue
            lines.append(f"  {m:<10} time {b['s_per_clip'] / a['s_per_clip']:.2f}x, tokens "
                         f"{b['tokens'] / a['tokens']:.2f}x, peak memory "
                         f"{_fmt_ratio(b['peak_mb'] / a['peak_mb'] if a['peak_mb'] > 0 else None)}")
    profiled = [r for r in records if "breakdown" in r]
    if profiled:
        lines += ["", "Where the time goes (one instrumented forward, s and % of its total):"]
        for r in profiled:
            bd = r["breakdown"]
            total = bd["total_s"] or 1.0
            parts = ", ".join(f"{k[:-2]} {v:.3f} ({100 * v / total:.0f}%)" for k, v in bd.items()
                              if k.endswith("_s") and k not in ("total_s", "scan_s"))
            lines.append(f"  {r['model']} {r['clip_s']:g} s: total {bd['total_s']:.3f}: {parts}; "
                         f"others {_fmt_busy(bd.get('others'))}")
    lines += ["", "others: share of the machine's CPU time used by other processes during the "
                  "measurement (0% = undisturbed)."]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    models = parse_models(args.models)
    clips = parse_clips(args.clips)
    if args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    if args.max_others is not None and not 0 <= args.max_others <= 1:
        raise ConfigError(f"--max-others is a fraction in [0, 1], got {args.max_others}")
    ast_repeats = args.repeats if args.ast_repeats is None else args.ast_repeats
    if ast_repeats < 1:
        raise ConfigError(f"--ast-repeats must be at least 1, got {ast_repeats}")
    if any(m in AST_MODELS for m in models) and importlib.util.find_spec("transformers") is None:
        raise ConfigError("the AST-B baseline needs transformers: pip install "
                          "'streaming_aum[bench]', or leave ast-base out of --models")
    if args.rounds < 1:
        raise ConfigError(f"--rounds must be at least 1, got {args.rounds}")
    records, failures = [], []
    for rnd, clip_s, name in ((r, c, m) for r in range(1, args.rounds + 1) for c in clips
                              for m in models):
        spec = {"model": name, "clip_s": clip_s, "threads": args.threads,
                "repeats": ast_repeats if name in AST_MODELS else args.repeats,
                "profile": bool(args.profile), "max_others": args.max_others}
        frames = clip_frames(clip_s)
        what = f"{name} {clip_s:g} s" + (f" (round {rnd})" if args.rounds > 1 else "")
        print(f"[bench offline] {what} ({frames} frames) ...", file=sys.stderr, flush=True)
        if args.wait_quiet > 0:
            busy = wait_until_quiet(args.wait_quiet)
        else:
            busy = cpu_busy_fraction()
        try:
            rec = _run_child(spec, args.timeout)
        except RuntimeError as exc:
            print(f"[bench offline] {what} failed: {exc}", file=sys.stderr)
            failures.append(what)
            continue
        rec["cpu_busy_before"] = None if busy is None else round(busy, 2)
        if args.rounds > 1:
            rec["round"] = rnd
        print(f"[bench offline]   {rec['s_per_clip']:.3f} s/clip, peak {rec['peak_mb']:.0f} MB",
              file=sys.stderr, flush=True)
        records.append(rec)
    if args.output:
        Path(args.output).write_text(json.dumps(records, indent=2) + "\n")
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        print(format_table(records))
    if failures:
        print(f"aum: error: {len(failures)} measurement(s) failed: {', '.join(failures)}",
              file=sys.stderr)
        return 1
    return 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "offline", help="offline forward time and peak memory, AuM sizes vs AST-B",
        description="Offline forward time and peak resident-memory growth for AuM tiny/small/base "
                    "(v1, random weights) next to transformers' AST-B (random weights), one fresh "
                    "process per (model, clip). Clip seconds are nominal: 10 s = 1024 frames "
                    "(the official 10.24 s input), rounded to 16-frame patch columns.")
    p.add_argument("--json", action="store_true",
                   help="print only the JSON list of records on stdout (progress goes to stderr)")
    p.add_argument("--output", metavar="FILE", default=None,
                   help="also write the JSON list of records to FILE (table mode too)")
    p.add_argument("--models", default=DEFAULT_MODELS,
                   help=f"comma list from {', '.join(MODEL_NAMES)} (default: %(default)s)")
    p.add_argument("--clips", default=DEFAULT_CLIPS,
                   help="comma list of clip lengths in nominal seconds (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2,
                   help="torch (and numba) threads in each measurement (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed forwards after one warm-up; the median is reported "
                        "(default: %(default)s)")
    p.add_argument("--ast-repeats", type=int, default=None,
                   help="timed forwards for AST-B (default: --repeats); AST is quadratic in "
                        "length, lower this for long clips")
    p.add_argument("--profile", action="store_true",
                   help="add a per-stage time breakdown ('breakdown') from one extra forward")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each measurement wait up to SECONDS for the CPUs to be idle "
                        "(under 15%% busy); for shared machines (default: no wait)")
    p.add_argument("--max-others", type=float, default=None, metavar="FRACTION",
                   help="discard and redo a timed forward during which other processes used more "
                        "than FRACTION of the machine's CPU time (at most 3 x --repeats forwards "
                        "in all; kept runs' shares are in others_per_run, discarded times in "
                        "discarded_s); for shared machines (default: keep every run)")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every (clip, model) this many times, round after round; the "
                        "table reports AST-B / AuM-B per round and their median (records carry "
                        "'round'); for machines whose speed drifts (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds allowed per (model, clip) process (default: %(default)s)")
    p.set_defaults(func=run)
    return p


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m streaming_aum.bench.offline")
    parser.add_argument("--one", required=True, help="JSON spec of one measurement")
    args = parser.parse_args(argv)
    record = measure_one(json.loads(args.one))
    print(RECORD_PREFIX + json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
