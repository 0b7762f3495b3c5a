"""``aum data streams``: long labelled test/training streams from keyword clips (data.md 5.3)."""

from __future__ import annotations

import argparse
import time

from streaming_aum.data.streams import SPLITS, generate_streams


def add_parser(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "streams", help="build long streams with time-stamped keyword/unknown/sound events",
        description="Write OUT/stream_000.wav (16 kHz) + stream_000.csv (onset_s, offset_s, "
                    "label, kind, snr_db, source, word) ... and OUT/streams.json. Existing "
                    "stream files are never replaced unless --overwrite is given.")
    p.add_argument("--clips", required=True, metavar="DIR",
                   help="keyword clip directory (manifest.jsonl of `aum data keywords`)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--split", default="test_voice", choices=SPLITS,
                   help="clip split to draw words from (default test_voice); train/val use the "
                        "train half of the banks, test_* the test half")
    p.add_argument("--count", type=int, default=2, metavar="N", help="streams (default 2)")
    p.add_argument("--minutes", type=float, default=1.0, metavar="M",
                   help="length of each stream in minutes (default 1)")
    p.add_argument("--snr", type=float, nargs=2, default=(0.0, 20.0), metavar=("LO", "HI"),
                   help="event SNR range in dB against the local background (default 0 20)")
    p.add_argument("--background", default=None, metavar="DIR",
                   help="bank cache of `aum data background` (default: coloured noise and "
                        "procedural sounds only)")
    p.add_argument("--reverb", action="store_true",
                   help="convolve each stream with one RIR of the bank (needs --background)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing stream files in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    info = generate_streams(args.clips, args.out, args.split, args.count, args.minutes * 60.0,
                            args.seed, tuple(args.snr), args.background, args.reverb,
                            overwrite=args.overwrite)
    events = sum(s["events"] for s in info["streams"])
    kw = sum(s["kw"] for s in info["streams"])
    print(f"wrote {info['count']} streams of {args.minutes:g} min to {args.out} "
          f"({events} events, {kw} keywords) in {time.perf_counter() - t0:.1f} s")
    return 0
