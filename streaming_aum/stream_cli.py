"""``aum stream AUDIO_FILE --model PATH``: feed a file through a streaming runtime in chunks and
print one record per hop (jsonl / csv / table); optionally write post-processed events."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from .audio_constants import SAMPLES_PER_COLUMN, SAMPLE_RATE
from .audio_io import check_sample_rate
from .errors import AudioInputError
from .loading import load_model
from .model import AudioMamba
from .records import FORMATS, make_record, render

DEFAULT_STREAMING_WINDOW_S = 1.92  # 12 columns; to be re-chosen from the P4 curve (issue 5)
DEFAULT_RECOMPUTE_WINDOW_S = 10.24  # the official input length


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stream", help="stream an audio file through the runtime, one record per hop",
                       description="Feed AUDIO_FILE in chunks through the streaming runtime.")
    p.add_argument("audio", metavar="AUDIO_FILE")
    p.add_argument("--model", default=None,
                   help="official AuM checkpoint (.pth/.pt) or a saved model directory "
                        "(default: the shipped keyword spotter)")
    p.add_argument("--chunk-samples", type=int, default=1600,
                   help="samples per pushed chunk, at the file's own rate (default 1600)")
    p.add_argument("--window-s", default=None,
                   help="window in seconds, or 'inf' (unbounded: every hop equals offline on the "
                        f"audio so far). Default: {DEFAULT_STREAMING_WINDOW_S} for streaming-"
                        f"layout models, {DEFAULT_RECOMPUTE_WINDOW_S} for official ones")
    p.add_argument("--hop-columns", type=int, default=1, help="0.16 s patch columns per hop")
    p.add_argument("--logits", action="store_true", help="add raw logits to jsonl records")
    p.add_argument("--column-scores", action="store_true",
                   help="add per-column (0.16 s, frame-wise) probabilities of each hop's new "
                        "columns to jsonl records as \"column_probs\" (streaming-layout models)")
    p.add_argument("--format", choices=FORMATS, default="jsonl")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--events", default=None, metavar="FILE.csv",
                   help="write post-processed events (onset_s,offset_s,label,score)")
    p.add_argument("--threshold", type=float, default=None,
                   help="event on-threshold (default: the model's tuned one, else 0.5)")
    p.set_defaults(func=run)


def parse_window(text: str | None, model: AudioMamba) -> float | None:
    """'inf' -> None (unbounded); a number of seconds > 0; None -> the window the model was
    trained with (``config.extra["window_s"]``), else the model kind's default."""
    if text is None:
        trained = model.config.extra.get("window_s")
        if isinstance(trained, (int, float)) and trained > 0:
            return float(trained)
        streaming = model.config.pos_embed == "freq_rows"
        return DEFAULT_STREAMING_WINDOW_S if streaming else DEFAULT_RECOMPUTE_WINDOW_S
    if text.strip().lower() in ("inf", "infinity", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise AudioInputError(f"--window-s must be a positive number of seconds or 'inf', got "
                              f"{text!r}")
    return value


def make_runtime(model: AudioMamba, window_s: float | None, *, hop_columns: int,
                 input_rate: int, column_scores: bool = False):
    """The state-carrying runtime for streaming-layout models, recomputation otherwise."""
    from .runtime import RecomputeRuntime, StreamingRuntime

    if model.config.pos_embed == "freq_rows":
        cols = None if window_s is None else max(1, round(window_s * SAMPLE_RATE / SAMPLES_PER_COLUMN))
        return StreamingRuntime(model, window_columns=cols, hop_columns=hop_columns,
                                input_rate=input_rate, column_scores=column_scores)
    if column_scores:
        raise AudioInputError("--column-scores needs a streaming-layout model (per-column "
                              "tokens); official checkpoints have one class-token readout")
    return RecomputeRuntime(model, window_s=window_s, hop_columns=hop_columns,
                            input_rate=input_rate)


def read_chunks(path: str | Path, chunk: int) -> tuple[int, Iterator[np.ndarray]]:
    """(file rate, iterator of mono float32 chunks of ``chunk`` samples), in bounded memory."""
    import soundfile as sf

    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioInputError(f"{path}: cannot read audio ({exc})") from exc
    rate = check_sample_rate(f.samplerate, f"sample rate of {path}")

    def gen() -> Iterator[np.ndarray]:
        with f:
            for block in f.blocks(blocksize=chunk, dtype="float32", always_2d=True):
                yield block.mean(axis=1)

    return rate, gen()


def run(args: argparse.Namespace) -> int:
    if args.chunk_samples < 1:
        raise AudioInputError(f"--chunk-samples must be at least 1, got {args.chunk_samples}")
    events_path = Path(args.events) if args.events else None
    if events_path is not None and events_path.exists():
        raise FileExistsError(f"{events_path} exists; remove it or choose another --events file")
    model = load_model(args.model)
    rate, chunks = read_chunks(args.audio, args.chunk_samples)
    runtime = make_runtime(model, parse_window(args.window_s, model),
                           hop_columns=args.hop_columns, input_rate=rate,
                           column_scores=args.column_scores)
    tracker = None
    if events_path is not None:
        from .events import EventConfig, EventTracker

        from .evaluation import keyword_classes

        # the model's tuned settings (shipped model), classes other than _unknown_/_silence_
        tuned = dict(model.config.extra.get("events") or {})
        if args.threshold is not None:
            tuned["on_threshold"] = args.threshold
        tracker = EventTracker(model.labels, EventConfig(
            **{k: v for k, v in tuned.items() if k in ("on_threshold", "off_threshold",
                                                       "min_duration_s", "cooldown_s")},
            classes=keyword_classes(model.labels) or None))
    events = []
    header_done = False
    n_samples = 0
    event_frame_end = 0.0  # events are placed on each hop's new audio: [previous t_end, t_end)

    def emit(results) -> None:
        nonlocal header_done, event_frame_end
        records = [make_record(model.labels, r.t_start, r.t_end, r.probs,
                               r.logits if args.logits else None) for r in results]
        if args.column_scores:
            for rec, r in zip(records, results):
                rec["column_probs"] = model.probabilities(r.column_logits).tolist()
        for r in results:
            if tracker is not None:
                events.extend(tracker.update(event_frame_end, r.t_end, r.probs))
                event_frame_end = r.t_end
        if not records:
            return
        text = render(records, args.format, top_k=args.top)
        if args.format != "jsonl" and header_done:
            text = text.split("\n", 1)[1]
        header_done = True
        sys.stdout.write(text)
        sys.stdout.flush()

    for block in chunks:
        n_samples += block.shape[0]
        emit(runtime.push(block))
    emit(runtime.flush())
    if n_samples == 0:
        raise AudioInputError(f"{args.audio}: the file holds no samples")
    if tracker is not None:
        from .events import write_events_csv

        events.extend(tracker.flush())
        write_events_csv(events, events_path)
    return 0
