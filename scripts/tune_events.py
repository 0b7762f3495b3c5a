"""Choose the streaming window W and the event settings of a trained keyword model on
*validation* streams (never on test streams), and print the sweep.

    python scripts/tune_events.py MODEL_DIR VAL_STREAMS_DIR [--windows 0.96,1.28,1.92]
        [--thresholds 0.5,0.6,0.7,0.8,0.9] [--cooldowns 0,0.5] [--min-durations 0,0.16]
        [--max-fa-per-hour 2] [--per-class]

Each (W, threshold, cooldown, minimum duration) is scored with the streaming runtime
(probabilities computed once per W and stream, then the same event post-processing as
`aum eval`); the choice maximises micro F1 among settings with at most --max-fa-per-hour false
alarms per hour (else the lowest false alarm rate). ``--per-class`` then refines the on
threshold class by class (coordinate ascent on micro F1 over the same grid, two rounds,
a change only for a strictly higher F1) and prints the ``{label: threshold}`` dict for
``config.extra["events"]["on_threshold"]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streaming_aum.evaluation import (audio_duration_s, empty_scores, keyword_classes,
                                      match_events, read_truth_csv, stream_events_streaming,
                                      track_events)
from streaming_aum.events import EventConfig
from streaming_aum.loading import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("streams")
    ap.add_argument("--windows", default="0.96,1.28,1.92")
    ap.add_argument("--thresholds", default="0.5,0.6,0.7,0.8,0.9,0.95")
    ap.add_argument("--cooldowns", default="0.0,0.5")
    ap.add_argument("--min-durations", default="0.0")
    ap.add_argument("--max-fa-per-hour", type=float, default=2.0)
    ap.add_argument("--per-class", action="store_true")
    args = ap.parse_args()
    model = load_model(args.model)
    kws = keyword_classes(model.labels)
    wavs = sorted(Path(args.streams).glob("stream_*.wav"))
    rows = []
    runs_by_window = {}
    thresholds = [float(x) for x in args.thresholds.split(",")]
    for w in [float(x) for x in args.windows.split(",")]:
        cols = max(1, round(w / 0.16))
        runs = []
        for wav in wavs:
            res = stream_events_streaming(model, wav, cols, EventConfig(classes=kws))
            runs.append((res, read_truth_csv(wav.with_suffix(".csv")), audio_duration_s(wav)))
        runs_by_window[w] = runs
        for th in thresholds:
            for cd in [float(x) for x in args.cooldowns.split(",")]:
                for md in [float(x) for x in args.min_durations.split(",")]:
                    cfg = EventConfig(on_threshold=th, cooldown_s=cd, min_duration_s=md,
                                      classes=kws)
                    rows.append({"window_s": w, "window_columns": cols, "on_threshold": th,
                                 "cooldown_s": cd, "min_duration_s": md,
                                 **score(model, runs, cfg, kws)})
                    print(json.dumps(rows[-1]), flush=True)
    ok = [r for r in rows if r["fa_per_hour"] <= args.max_fa_per_hour]
    best = (max(ok, key=lambda r: (r["f1"] or 0)) if ok
            else min(rows, key=lambda r: (r["fa_per_hour"], -(r["f1"] or 0))))
    print("CHOSEN", json.dumps(best))
    if args.per_class:
        per_class = refine_per_class(model, runs_by_window[best["window_s"]], best, kws,
                                     thresholds)
        print("PER_CLASS", json.dumps(per_class))


def score(model, runs, cfg: EventConfig, kws: list[str]) -> dict:
    """Micro F1, precision, recall and false alarms per hour of ``cfg`` over all ``runs``."""
    total = empty_scores(kws)
    for res, truth, dur in runs:
        det = track_events(res.times, res.probs, model.labels, cfg)
        total = total + match_events(det, truth, kws, dur)
    d = total.to_dict()
    return {"f1": d["micro"]["f1"], "precision": d["micro"]["precision"],
            "recall": d["micro"]["recall"], "fa_per_hour": d["false_alarms_per_hour"]}


def refine_per_class(model, runs, best: dict, kws: list[str], grid: list[float]) -> dict:
    """Coordinate ascent on micro F1 over per-class on thresholds, starting from ``best``'s
    global threshold; two rounds; a class's threshold changes only for a strictly higher F1."""
    chosen = {k: best["on_threshold"] for k in kws}

    def run(th: dict) -> dict:
        cfg = EventConfig(on_threshold=dict(th), cooldown_s=best["cooldown_s"],
                          min_duration_s=best["min_duration_s"], classes=kws)
        return score(model, runs, cfg, kws)

    current = run(chosen)
    for _ in range(2):
        for k in kws:
            for th in sorted(grid, reverse=True):
                trial = run({**chosen, k: th})
                if (trial["f1"] or 0) > (current["f1"] or 0):
                    chosen, current = {**chosen, k: th}, trial
    return {"on_threshold": chosen, **current}


if __name__ == "__main__":
    main()
