"""``aum export --model PATH --out FILE.onnx [--waveform]``: export and validate the offline
model; ``--waveform`` puts the log-mel front end inside the graph (input ``waveform (B, N)``
float32 at 16 kHz instead of ``fbank (B, T, 128)``), see ``export.onnx_export``."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the offline model to ONNX (validated)",
                       description="Export the full bidirectional model to ONNX with dynamic "
                                   "batch (and, for streaming-layout models, time) axes, then "
                                   "check it with the ONNX checker and ONNX Runtime.")
    p.add_argument("--model", default=None,
                   help="official AuM checkpoint (.pth/.pt) or a saved model directory "
                        "(default: the shipped keyword spotter)")
    p.add_argument("--out", required=True, help="output .onnx file")
    p.add_argument("--input-frames", type=int, default=None,
                   help="rebuild an official model's position grid for this many frames first")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--waveform", action="store_true",
                   help="offline graph only: take waveform (B, N) float32 mono 16 kHz samples "
                        "and compute the Kaldi log-mel front end inside the graph, so consumers "
                        "need no audio code (rows of a batch share one length)")
    p.add_argument("--streaming", action="store_true",
                   help="export the streaming runtime's hop as a stateful graph instead "
                        "(streaming-layout models; run it with export/onnx_stream_runner.py)")
    p.add_argument("--window-s", type=float, default=1.92,
                   help="--streaming: window in seconds (0.16 s columns), default 1.92")
    p.add_argument("--hop-columns", type=int, default=1, help="--streaming: columns per hop")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streaming_aum.loading import load_model

    from .onnx_export import export_onnx

    if args.streaming and args.waveform:
        from streaming_aum.errors import ConfigError

        raise ConfigError("--waveform applies to the offline graph only; the --streaming hop "
                          "graph takes fbank columns from the streaming front end (drop one "
                          "of the two flags)")
    model = load_model(args.model, input_frames=args.input_frames)
    if args.streaming:
        from streaming_aum.audio_constants import SAMPLE_RATE, SAMPLES_PER_COLUMN

        from .streaming_export import export_streaming_onnx

        if not args.window_s > 0:
            from streaming_aum.errors import ConfigError

            raise ConfigError(f"--window-s must be positive, got {args.window_s}")
        columns = max(1, round(args.window_s * SAMPLE_RATE / SAMPLES_PER_COLUMN))
        report = export_streaming_onnx(model, args.out, window_columns=columns,
                                       hop_columns=args.hop_columns, overwrite=args.overwrite)
    else:
        report = export_onnx(model, args.out, overwrite=args.overwrite,
                             waveform_input=args.waveform)
    sys.stdout.write(json.dumps(report) + "\n")
    return 0
