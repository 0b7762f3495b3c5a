"""``aum eval``: clip accuracy per split and event-level keyword detection on long streams, in
streaming and offline mode (definitions in :mod:`streaming_aum.evaluation`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .audio_constants import SAMPLE_RATE, SAMPLES_PER_COLUMN
from .errors import CheckpointError, ConfigError
from .model import AudioMamba

DEFAULT_SPLITS = ("val", "test_voice", "test_engine")
DEFAULT_DET_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
"""On-thresholds of ``aum eval --det`` given without values."""


def parse_det_thresholds(text: str) -> list[float]:
    """``"0.3,0.5,0.7"`` -> ``[0.3, 0.5, 0.7]`` (numbers in [0, 1]); argparse type of --det."""
    import math

    parts = [x.strip() for x in text.split(",") if x.strip()]
    try:
        values = [float(x) for x in parts]
    except ValueError:
        values = []
    if not values or any(not math.isfinite(v) or not 0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated thresholds in "
                                         f"[0, 1], e.g. 0.3,0.5,0.7")
    return values


def load_model_or_default(path: str | None) -> AudioMamba:
    """``load_model(path)``, or the package's default model when ``path`` is None, with a clear
    error when there is none."""
    import inspect

    from .loading import load_model

    if path is not None:
        return load_model(path)
    param = inspect.signature(load_model).parameters.get("path")
    if param is not None and param.default is inspect.Parameter.empty:
        raise CheckpointError("no --model given and this installation has no default model "
                              "(load_model() needs a path); pass --model PATH to a saved model "
                              "directory or an official checkpoint")
    try:
        return load_model()  # type: ignore[call-arg]
    except (CheckpointError, OSError) as exc:
        raise CheckpointError(f"no --model given and the default model could not be loaded "
                              f"({exc}); pass --model PATH") from exc


def window_columns(window_s: float | None) -> int | None:
    """Seconds -> patch columns (0.16 s each, at least 1); None stays None (unbounded)."""
    if window_s is None:
        return None
    return max(1, round(window_s * SAMPLE_RATE / SAMPLES_PER_COLUMN))


def add_event_arguments(p: argparse.ArgumentParser) -> None:
    """Event post-processing options shared by ``aum eval`` and ``aum demo``."""
    p.add_argument("--window-s", default=None,
                   help="streaming window in seconds, or 'inf' (default: as `aum stream`); "
                        "the offline mode pools its scores over the same window")
    p.add_argument("--threshold", type=float, default=None,
                   help="event on-threshold (default: the model's tuned value, else 0.5)")
    p.add_argument("--off-threshold", type=float, default=None,
                   help="event release threshold (default: the model's, else the on-threshold)")
    p.add_argument("--min-duration-s", type=float, default=None,
                   help="(default: the model's, else 0)")
    p.add_argument("--cooldown-s", type=float, default=None, help="(default: the model's, else 0)")


#: Event settings used when neither the command line nor the model (``config.extra["events"]``,
#: tuned on validation streams for the shipped model) gives one.
EVENT_DEFAULTS = {"on_threshold": 0.5, "off_threshold": None, "min_duration_s": 0.0,
                  "cooldown_s": 0.0}


def event_config_from_args(args: argparse.Namespace, labels: list[str],
                           model_events: dict | None = None):
    """An EventConfig tracking only the keyword classes of ``labels``: each setting from the
    command line, else the model's ``config.extra["events"]``, else ``EVENT_DEFAULTS``. The
    resolved values are written back to ``args`` (for printing)."""
    from .evaluation import keyword_classes
    from .events import EventConfig

    keywords = keyword_classes(labels)
    if not keywords:
        raise ConfigError(f"the model has no keyword classes (its labels are {labels}); event "
                          f"detection needs labels other than _unknown_ / _silence_")
    model_events = model_events or {}
    resolved = {}
    for key, arg in (("on_threshold", "threshold"), ("off_threshold", "off_threshold"),
                     ("min_duration_s", "min_duration_s"), ("cooldown_s", "cooldown_s")):
        value = getattr(args, arg)
        if value is None:
            value = model_events.get(key, EVENT_DEFAULTS[key])
        resolved[key] = value
        setattr(args, arg, value)
    return EventConfig(**resolved, classes=keywords)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="clip accuracy and stream keyword-detection scores",
                       description="Evaluate a model: top-1 accuracy on 1 s clips per split "
                                   "(--clips) and event-level P/R/F1, false alarms per hour and "
                                   "latency on long streams, streaming vs offline (--streams).")
    p.add_argument("--model", default=None,
                   help="saved model directory or official checkpoint (default: the shipped "
                        "default model)")
    p.add_argument("--clips", default=None, metavar="DIR",
                   help="clip directory with manifest.jsonl")
    p.add_argument("--splits", nargs="+", default=list(DEFAULT_SPLITS),
                   help=f"clip splits to score (default: {' '.join(DEFAULT_SPLITS)})")
    p.add_argument("--task", default="kws12", help="word -> class mapping (default kws12)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--streams", default=None, metavar="DIR",
                   help="directory of stream_*.wav + stream_*.csv")
    p.add_argument("--modes", nargs="+", choices=("streaming", "offline"),
                   default=["streaming", "offline"])
    p.add_argument("--readout", choices=("window", "columns"), default="window",
                   help="scores fed to the event tracker: window-pooled (default) or per column")
    add_event_arguments(p)
    p.add_argument("--det", nargs="?", type=parse_det_thresholds, default=None,
                   const=list(DEFAULT_DET_THRESHOLDS), metavar="T1,T2,...",
                   help="also a DET curve (false alarms/h vs miss rate) over these on-thresholds "
                        "for --streams, other event settings as above (default grid: "
                        f"{','.join(f'{t:g}' for t in DEFAULT_DET_THRESHOLDS)})")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON")
    p.add_argument("--overwrite", action="store_true", help="allow replacing the --json file")
    p.set_defaults(func=run)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _sec(v: float | None) -> str:
    return "-" if v is None else f"{v:+.3f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(x.rjust(w) if i else x.ljust(w)
                               for i, (x, w) in enumerate(zip(row, widths))).rstrip()
                     for row in [header, *rows]) + "\n"


def format_clip_table(results: dict[str, dict[str, Any]]) -> str:
    rows = [[split, str(r["n"]), _pct(r["accuracy"])] for split, r in results.items()]
    return _table(["split", "clips", "accuracy %"], rows)


def format_stream_table(results: dict[str, Any]) -> str:
    rows = []
    for mode, s in results["modes"].items():
        m, lat = s["micro"], s["latency"]
        rows.append([mode, str(m["tp"]), str(m["fp"]), str(m["fn"]), _pct(m["precision"]),
                     _pct(m["recall"]), _pct(m["f1"]), f"{s['false_alarms_per_hour']:.1f}",
                     _sec(lat["median_s"]), _sec(lat["p90_s"])])
    return _table(["mode", "TP", "FP", "FN", "P %", "R %", "F1 %", "FA/h", "lat med s",
                   "lat p90 s"], rows)


def format_det_table(rows: list[dict[str, Any]]) -> str:
    """One DET curve: threshold, false alarms per hour, miss %, F1 %."""
    table = [[f"{r['threshold']:g}", f"{r['false_alarms_per_hour']:.1f}", _pct(r["miss_rate"]),
              _pct(r["f1"])] for r in rows]
    return _table(["threshold", "FA/h", "miss %", "F1 %"], table)


def run(args: argparse.Namespace) -> int:
    from .evaluation import clip_accuracy, evaluate_streams
    from .events import describe_threshold
    from .stream_cli import parse_window

    if args.clips is None and args.streams is None:
        raise ConfigError("nothing to evaluate: give --clips DIR and/or --streams DIR")
    det = getattr(args, "det", None)
    if det is not None and args.streams is None:
        raise ConfigError("--det scores streams: give --streams DIR as well")
    json_path = Path(args.json) if args.json else None
    if json_path is not None and json_path.exists() and not args.overwrite:
        raise FileExistsError(f"{json_path} exists; pass --overwrite to replace it or choose "
                              f"another --json file")
    model = load_model_or_default(args.model)
    out: dict[str, Any] = {"model": args.model}
    if args.clips is not None:
        clips = clip_accuracy(model, args.clips, args.splits, args.task, args.batch_size)
        out["clips"] = clips
        print(f"Clip accuracy ({args.task}, {args.clips})")
        print(format_clip_table(clips))
    if args.streams is not None:
        window_s = parse_window(args.window_s, model)
        cfg = event_config_from_args(args, model.labels, model.config.extra.get("events"))
        streams = evaluate_streams(model, args.streams, window_columns(window_s), cfg,
                                   readout=args.readout, modes=args.modes,
                                   det_thresholds=det)
        streams["window_s"] = window_s
        out["streams"] = streams
        hours = streams["duration_s"] / 3600
        w = "inf" if window_s is None else f"{window_s:g} s"
        print(f"Stream keyword detection ({len(streams['streams'])} streams, {hours:.3f} h, "
              f"window {w}, readout {args.readout}, threshold {describe_threshold(args.threshold)})")
        print(format_stream_table(streams))
        for mode, rows in streams.get("det", {}).items():
            print(f"DET curve, {mode} (on-threshold sweep)")
            print(format_det_table(rows))
    if json_path is not None:
        text = json.dumps(out, indent=2, allow_nan=False, default=_json_default)
        with open(json_path, "w" if args.overwrite else "x", encoding="utf-8") as f:
            f.write(text + "\n")
        print(f"wrote {json_path}")
    return 0


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
