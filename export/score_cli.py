"""``aum score-onnx FILE.onnx AUDIO... [--provider cpu|cuda] [--batch-size B]``: batch-score
many files with an ``aum export`` model in ONNX Runtime, one record per file, streamed.

Records are those of ``aum classify`` (``streaming_aum.records``) and always carry ``"file"``;
each batch's records are written as soon as it completes, in input order. The scores equal
``aum classify --mode offline`` on the same files to 1e-4. Memory stays bounded: one batch of
inputs at a time (see ``export.onnx_scoring``).

Both kinds of ``aum export`` file are read: feature input (the log-mel front end runs here, in
PyTorch) and waveform input (``aum export --waveform``: the front end is in the graph, the
16 kHz waveform is fed; files of the same sample count batch together, never padded).
"""

from __future__ import annotations

import argparse
import sys

import torch

SCORE_FORMATS: tuple[str, ...] = ("jsonl", "csv")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score-onnx", help="batch-score audio files with an exported ONNX model",
                       description="Score audio files (or directories of them) with a model "
                                   "written by `aum export`, in ONNX Runtime: one record per "
                                   "file, written as each batch completes, in input order. "
                                   "Results equal `aum classify --mode offline`.")
    p.add_argument("onnx_file", metavar="FILE.onnx", help="model written by `aum export`")
    p.add_argument("inputs", nargs="+", metavar="AUDIO", help="audio files or directories")
    p.add_argument("--provider", choices=["cpu", "cuda"], default="cpu",
                   help="ONNX Runtime execution provider; cuda needs the 'gpu-onnx' extra "
                        "instead of 'onnx' (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=8,
                   help="files per ONNX Runtime call; streaming-layout (freq_rows) models and "
                        "waveform-input exports batch only consecutive files of equal length "
                        "(default: %(default)s)")
    p.add_argument("--format", choices=SCORE_FORMATS, default="jsonl")
    p.add_argument("--logits", action="store_true", help="add raw logits to jsonl records")
    p.add_argument("--top", type=_positive_int, default=5, help="scores shown per csv row")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="ONNX Runtime intra-op threads (default: one per core)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streaming_aum.classify_cli import expand_inputs
    from streaming_aum.errors import ConfigError
    from streaming_aum.records import make_record, render

    from .onnx_scoring import OnnxScorer

    try:
        from tqdm import tqdm
    except ImportError as exc:
        raise ConfigError(f"aum score-onnx needs tqdm: install the 'onnx' (or 'gpu-onnx') extra "
                          f"({exc})") from exc
    scorer = OnnxScorer(args.onnx_file, provider=args.provider, threads=args.threads)
    files = expand_inputs(args.inputs)
    out = sys.stdout
    if args.format == "csv":
        out.write(render([], "csv", top_k=args.top))  # the header, once
        out.flush()
    # disable=None: tqdm shows the bar only when stderr is a terminal
    with tqdm(total=len(files), unit="file", file=sys.stderr, disable=None,
              desc="score-onnx") as bar:
        for results in scorer.score_batches(files, args.batch_size):
            records = [make_record(scorer.labels, 0.0, duration, torch.from_numpy(probs),
                                   torch.from_numpy(logits) if args.logits else None,
                                   file=str(path))
                       for path, logits, probs, duration in results]
            text = render(records, args.format, top_k=args.top)
            if args.format == "csv":
                text = text.split("\n", 1)[1]  # the header was written once above
            out.write(text)
            out.flush()
            bar.update(len(records))
    return 0
