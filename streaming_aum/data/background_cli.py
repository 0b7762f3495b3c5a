"""``aum data background`` and ``aum data rirs``: build the ambience, event and room banks.

``aum data background --cache DIR`` downloads a few Debian packages with real recordings
(``apt-get download``, unpacked with ``dpkg -x``, never installed), builds the ambience and event
banks (:func:`streaming_aum.data.fetch.fetch_ambience`) and, unless ``--rirs 0``, a RIR bank.
``aum data rirs --cache DIR --count N`` builds only the RIR bank.
"""

from __future__ import annotations

import argparse
import time

from streaming_aum.data.fetch import DEFAULT_PACKAGES, fetch_ambience
from streaming_aum.data.rooms import make_rir_bank

DEFAULT_RIRS = 300


def add_parser(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "background", help="fetch ambience/event recordings (Debian packages) and make RIRs",
        description="Download Debian packages with real recordings into --cache, build the "
                    "ambience and event banks (16 kHz wavs + ambience.jsonl/events.jsonl, split "
                    "70/30 by source) and a room impulse response bank. Re-running reuses what "
                    "exists.")
    p.add_argument("--cache", required=True, metavar="DIR", help="cache directory for the banks")
    p.add_argument("--packages", nargs="+", default=list(DEFAULT_PACKAGES), metavar="PKG",
                   help=f"Debian packages to fetch (default: {' '.join(DEFAULT_PACKAGES)})")
    p.add_argument("--rirs", type=int, default=DEFAULT_RIRS, metavar="N",
                   help=f"RIRs to make (default {DEFAULT_RIRS}; 0 = none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the RIR bank (default 0)")
    p.add_argument("--workers", type=int, default=2, help="processes for RIRs (default 2)")
    p.set_defaults(func=run_background)

    r = data_sub.add_parser(
        "rirs", help="make a room impulse response bank (pyroomacoustics shoeboxes)",
        description="Make --count RIRs in random shoebox rooms (RT60 0.15-0.9 s), split 2/3 "
                    "train / 1/3 test by room, saved as float16 .npy plus rirs.jsonl in --cache.")
    r.add_argument("--cache", required=True, metavar="DIR", help="cache directory for the bank")
    r.add_argument("--count", type=int, default=DEFAULT_RIRS, metavar="N",
                   help=f"number of RIRs (default {DEFAULT_RIRS})")
    r.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    r.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    r.set_defaults(func=run_rirs)


def _print_bank(name: str, summary: dict) -> None:
    print(f"{name}: {summary['files']} files, {summary['seconds']} s")
    for split in ("train", "test"):
        s = summary[split]
        classes = ", ".join(f"{k} {v}" for k, v in s["classes"].items())
        print(f"  {split}: {s['files']} files, {s['seconds']} s ({classes})")


def _print_rirs(summary: dict, seconds: float) -> None:
    note = " (existing bank reused)" if summary.get("skipped") else ""
    parts = [f"{split} {summary[split]['rirs']} RIRs in {summary[split]['rooms']} rooms"
             for split in ("train", "test")]
    print(f"rirs: {summary['count']} in {seconds:.1f} s{note}: {'; '.join(parts)}")


def run_background(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    summary = fetch_ambience(args.cache, args.packages)
    print(f"packages: {', '.join(summary['packages'])} ({time.perf_counter() - t0:.1f} s)")
    for line in summary["log"]:
        print(f"  note: {line}")
    _print_bank("ambience", summary["ambience"])
    _print_bank("events", summary["events"])
    if args.rirs > 0:
        t1 = time.perf_counter()
        _print_rirs(make_rir_bank(args.cache, args.rirs, args.seed, args.workers),
                    time.perf_counter() - t1)
    return 0


def run_rirs(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    _print_rirs(make_rir_bank(args.cache, args.count, args.seed, args.workers),
                time.perf_counter() - t0)
    return 0
