"""``aum demo``: stream an example recording through the runtime and the event tracker, print
each keyword as it is detected, score it against ground truth, and write a timeline SVG.

With no arguments it uses the default model and the example stream shipped with the package
(``streaming_aum/assets/demo/demo_stream.wav`` + ``demo_stream.csv``). For ``--audio FILE``, a
ground-truth CSV next to it (``FILE`` with suffix ``.csv`` and the stream header) is used when
present. Events are announced at their decision time (see :mod:`streaming_aum.evaluation`);
the printed time is the event's onset, the score the largest probability so far.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AudioInputError, ConfigError, EventInputError

ASSET_DIR = Path(__file__).parent / "assets" / "demo"
DEMO_WAV = "demo_stream.wav"
DEMO_CSV = "demo_stream.csv"
DEFAULT_OUT = "aum-demo-timeline.svg"


def demo_assets() -> tuple[Path, Path]:
    """``(demo_stream.wav, demo_stream.csv)`` shipped in the package; a clear error if missing."""
    wav, truth = ASSET_DIR / DEMO_WAV, ASSET_DIR / DEMO_CSV
    missing = [p.name for p in (wav, truth) if not p.is_file()]
    if missing:
        raise AudioInputError(f"the demo stream is not installed ({', '.join(missing)} missing "
                              f"under {ASSET_DIR}); pass --audio FILE to run the demo on your "
                              f"own recording")
    return wav, truth


def free_path(path: str | Path) -> Path:
    """``path`` if it does not exist, else the first free ``stem-1.suffix``, ``stem-2.suffix``..."""
    path = Path(path)
    if not path.exists():
        return path
    for i in range(1, 100_000):
        candidate = path.with_name(f"{path.stem}-{i}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"no free file name next to {path}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from .eval_cli import add_event_arguments

    p = sub.add_parser("demo", help="live keyword-spotting demo with a timeline SVG",
                       description="Stream a recording (default: the shipped example) through "
                                   "the streaming runtime, print keywords as they are detected "
                                   "and write a timeline SVG.")
    p.add_argument("--model", default=None,
                   help="saved model directory or official checkpoint (default: the shipped "
                        "default model)")
    p.add_argument("--audio", default=None, metavar="FILE",
                   help="recording to stream (default: the shipped demo stream)")
    p.add_argument("--out", default=None, metavar="SVG",
                   help=f"timeline SVG (default {DEFAULT_OUT} in the current directory; an "
                        f"existing file is never overwritten: -1, -2, ... is appended)")
    p.add_argument("--realtime", action="store_true", help="pace the audio in real time")
    p.add_argument("--chunk-ms", type=float, default=100.0,
                   help="milliseconds of audio per pushed chunk (default 100)")
    add_event_arguments(p)
    p.set_defaults(func=run)


def _truth_for(audio: Path) -> Path | None:
    """The ground-truth CSV beside ``audio`` if it has the stream header, else None."""
    from .evaluation import TRUTH_REQUIRED

    csv_path = audio.with_suffix(".csv")
    if not csv_path.is_file():
        return None
    with open(csv_path, encoding="utf-8", errors="replace") as f:
        header = f.readline().strip().split(",")
    return csv_path if all(k in header for k in TRUTH_REQUIRED) else None


def run(args: argparse.Namespace) -> int:
    from .eval_cli import event_config_from_args, load_model_or_default
    from .evaluation import DecisionTracker, keyword_classes, match_events, read_truth_csv
    from .events import describe_threshold, single_threshold
    from .stream_cli import make_runtime, parse_window, read_chunks
    from .timeline import render_timeline_svg

    if not (math.isfinite(args.chunk_ms) and args.chunk_ms > 0):
        raise ConfigError(f"--chunk-ms must be a positive number of milliseconds, got "
                          f"{args.chunk_ms}")
    if args.audio is None:
        audio, truth_path = demo_assets()
    else:
        audio = Path(args.audio)
        truth_path = _truth_for(audio)
    model = load_model_or_default(args.model)
    labels = model.labels
    config = event_config_from_args(args, labels, model.config.extra.get("events"))
    window_s = parse_window(args.window_s, model)
    import soundfile as sf

    try:
        file_rate = sf.info(str(audio)).samplerate
    except (RuntimeError, OSError) as exc:
        raise AudioInputError(f"{audio}: cannot read audio ({exc})") from None
    rate, chunks = read_chunks(audio, max(1, round(file_rate * args.chunk_ms / 1000)))
    runtime = make_runtime(model, window_s, hop_columns=1, input_rate=rate)
    tracker = DecisionTracker(labels, config)
    w = "inf" if window_s is None else f"{window_s:g} s"
    print(f"Streaming {audio} ({rate} Hz) in {args.chunk_ms:g} ms chunks, window {w}, "
          f"threshold {describe_threshold(args.threshold)}"
          f"{', real time' if args.realtime else ''}")
    sys.stdout.flush()

    detections: list[Any] = []
    times: list[float] = []
    rows: list[np.ndarray] = []

    def announce(items) -> None:
        for a in items:
            print(f"[{a.onset_s:7.2f} s] {a.label:<9} (p={a.score:.2f})")
        if items:
            sys.stdout.flush()

    def consume(results) -> None:
        for r in results:
            probs = r.probs.detach().double().cpu().numpy()
            ts = times[-1] if times else 0.0
            new, final = tracker.update(ts, r.t_end, probs)
            announce(new)
            detections.extend(final)
            times.append(r.t_end)
            rows.append(probs)

    start = time.monotonic()
    n_samples = 0
    for block in chunks:
        n_samples += block.shape[0]
        if args.realtime:
            delay = start + n_samples / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        consume(runtime.push(block))
    consume(runtime.flush())
    if n_samples == 0:
        raise AudioInputError(f"{audio}: the file holds no samples")
    late, final = tracker.flush()
    announce(late)
    detections.extend(final)
    detections.sort(key=lambda e: (e.onset_s, e.label))
    duration = n_samples / rate

    print(f"\n{len(detections)} keyword event(s) in {duration:.1f} s of audio", end="")
    counts: dict[str, int] = {}
    for e in detections:
        counts[e.label] = counts.get(e.label, 0) + 1
    print(": " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())) if counts else "")
    truth = None
    if truth_path is not None:
        try:
            truth = read_truth_csv(truth_path)
        except EventInputError as exc:
            print(f"(ground truth not used: {exc})")
    if truth is not None:
        scores = match_events(detections, truth, keyword_classes(labels), duration)
        m = scores.micro
        print(f"Ground truth {truth_path.name}: {m.tp} hit(s), {m.fn} miss(es), "
              f"{m.fp} false alarm(s)")
        for r in scores.misses:
            print(f"  missed      {r['label']:<10} at {r['onset_s']:.2f}-{r['offset_s']:.2f} s")
        for e in scores.false_alarms:
            print(f"  false alarm {e.label:<10} at {e.onset_s:.2f} s (p={e.score:.2f})")
        lat = scores.latency
        if lat["n"]:
            print(f"Latency (decision - word end): median {lat['median_s']:+.2f} s, "
                  f"p90 {lat['p90_s']:+.2f} s")
    t = np.asarray(times, dtype=np.float64)
    p = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(labels))
    threshold = single_threshold(args.threshold)  # a per-class dict draws no line
    target = Path(args.out) if args.out else Path(DEFAULT_OUT)
    while True:  # never overwrite: take the next free name, also if one appears meanwhile
        path = free_path(target)
        try:
            render_timeline_svg(t, p, labels, detections, truth, f"aum demo: {audio.name}",
                                path=path, threshold=threshold, duration_s=duration)
            break
        except FileExistsError:
            if not path.exists():
                raise
    print(f"wrote {path}")
    return 0
