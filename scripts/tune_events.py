"""Choose the streaming window W and the event settings of a trained keyword model on
*validation* streams (never on test streams), and print the sweep.

    python scripts/tune_events.py MODEL_DIR VAL_STREAMS_DIR [--windows 0.96,1.28,1.92]
        [--thresholds 0.5,0.6,0.7,0.8,0.9] [--max-fa-per-hour 2]

Each (W, threshold) is scored with the streaming runtime (probabilities computed once per W and
stream, then the same event post-processing as `aum eval`); the choice maximises micro F1 among
settings with at most --max-fa-per-hour false alarms per hour (else the lowest false alarm rate).
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
    ap.add_argument("--max-fa-per-hour", type=float, default=2.0)
    args = ap.parse_args()
    model = load_model(args.model)
    kws = keyword_classes(model.labels)
    wavs = sorted(Path(args.streams).glob("stream_*.wav"))
    rows = []
    for w in [float(x) for x in args.windows.split(",")]:
        cols = max(1, round(w / 0.16))
        runs = []
        for wav in wavs:
            res = stream_events_streaming(model, wav, cols, EventConfig(classes=kws))
            runs.append((res, read_truth_csv(wav.with_suffix(".csv")), audio_duration_s(wav)))
        for th in [float(x) for x in args.thresholds.split(",")]:
            for cd in [float(x) for x in args.cooldowns.split(",")]:
                cfg = EventConfig(on_threshold=th, cooldown_s=cd, classes=kws)
                total = empty_scores(kws)
                for res, truth, dur in runs:
                    det = track_events(res.times, res.probs, model.labels, cfg)
                    total = total + match_events(det, truth, kws, dur)
                d = total.to_dict()
                rows.append({"window_s": w, "window_columns": cols, "on_threshold": th,
                             "cooldown_s": cd, "f1": d["micro"]["f1"],
                             "precision": d["micro"]["precision"], "recall": d["micro"]["recall"],
                             "fa_per_hour": d["false_alarms_per_hour"]})
                print(json.dumps(rows[-1]), flush=True)
    ok = [r for r in rows if r["fa_per_hour"] <= args.max_fa_per_hour]
    best = (max(ok, key=lambda r: (r["f1"] or 0)) if ok
            else min(rows, key=lambda r: (r["fa_per_hour"], -(r["f1"] or 0))))
    print("CHOSEN", json.dumps(best))


if __name__ == "__main__":
    main()
