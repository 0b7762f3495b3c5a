"""The ``aum`` console command. Each subcommand lives in its own module; this file only wires
argument parsers to them and turns the package's errors into one clear line and exit code 2."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import AuMError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aum", description="Audio Mamba (AuM) audio classification: offline and streaming.")
    parser.add_argument("--version", action="version", version=f"streaming_aum {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    from . import classify_cli
    classify_cli.add_parser(sub)
    from . import stream_cli
    stream_cli.add_parser(sub)
    from . import train_cli
    train_cli.add_parser(sub)
    from . import eval_cli
    eval_cli.add_parser(sub)
    from . import demo_cli
    demo_cli.add_parser(sub)
    from . import listen_cli
    listen_cli.add_parser(sub)
    from . import data_cli
    data_cli.add_parser(sub)
    from export import export_cli
    export_cli.add_parser(sub)
    from export import score_cli
    score_cli.add_parser(sub)

    bench = sub.add_parser("bench", help="speed and memory benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    bench_sub.required = True
    from .bench import offline as bench_offline
    bench_offline.add_parser(bench_sub)
    from .bench import streaming as bench_streaming
    bench_streaming.add_parser(bench_sub)
    from .bench import onnx as bench_onnx
    bench_onnx.add_parser(bench_sub)
    from .bench import onnx_stream as bench_onnx_stream
    bench_onnx_stream.add_parser(bench_sub)
    from .bench import training as bench_training
    bench_training.add_parser(bench_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AuMError as exc:
        print(f"aum: error: {exc}", file=sys.stderr)
        return 2
    except FileExistsError as exc:
        print(f"aum: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
