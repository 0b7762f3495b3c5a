"""``aum data keywords``: generate the seeded TTS keyword clips (see :mod:`.keywords`)."""

from __future__ import annotations

import argparse
import logging

__all__ = ["add_parser", "run"]


def _engine_list(text: str) -> list[str]:
    from streaming_aum.data.voices import ENGINES

    names = [e.strip() for e in text.split(",") if e.strip()]
    bad = [e for e in names if e not in ENGINES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown engine(s) {bad or text!r}; accepted (comma-separated): {','.join(ENGINES)}")
    return names


def add_parser(data_sub: argparse._SubParsersAction) -> None:
    from streaming_aum.data.keywords import PRESETS

    p = data_sub.add_parser(
        "keywords", help="seeded, resumable TTS keyword clips (1 s, 16 kHz) with a manifest",
        description="Generate 1 s keyword clips with the installed TTS engines into DIR "
                    "(clips/<split>/<word>/*.wav, manifest.jsonl, generator.json). Rerunning "
                    "with the same arguments resumes an interrupted run.")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--preset", choices=list(PRESETS), default="smoke",
                   help="size: smoke (CI, espeak-ng only), small (KWS-12, ~7k clips), "
                        "full (KWS-35, ~53k clips); default smoke")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--engines", type=_engine_list, default=None, metavar="E1,E2",
                   help="TTS engines to use (default: the preset's, else all installed)")
    p.add_argument("--per-word", type=int, default=None, metavar="N",
                   help="train clips per keyword word; all other counts scale with it")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streaming_aum.data.keywords import generate_keywords

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    rec = generate_keywords(args.out, preset=args.preset, seed=args.seed, workers=args.workers,
                            engines=args.engines, progress=not args.quiet,
                            per_word=args.per_word)
    clips = ", ".join(f"{s} {n}" for s, n in rec["clips"].items())
    print(f"keywords: {args.out}: {clips} clips ({rec['made']} made, {rec['skipped']} already "
          f"there) with {', '.join(rec['config']['engines'])}")
    return 0
