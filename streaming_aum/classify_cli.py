"""``aum classify FILE|DIR ... --model PATH``: whole-file offline scores, one record per file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import AudioInputError
from .loading import load_model
from .offline import classify_file
from .records import FORMATS, make_record, render

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="classify whole audio files (offline model)",
                       description="Score each audio file with the offline (bidirectional) model.")
    p.add_argument("inputs", nargs="+", metavar="AUDIO", help="audio files or directories")
    p.add_argument("--model", default=None,
                   help="official AuM checkpoint (.pth/.pt) or a saved model directory "
                        "(default: the shipped keyword spotter)")
    p.add_argument("--mode", choices=["offline"], default="offline",
                   help="offline: the whole file through the bidirectional model")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--logits", action="store_true", help="add raw logits to jsonl records")
    p.add_argument("--norm", default=None, help="normalisation preset (default: the model's)")
    p.add_argument("--top", type=int, default=5, help="scores shown per row in csv/table")
    p.set_defaults(func=run)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given; directories expanded (sorted, recursive) to their audio files."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise AudioInputError(f"{path}: directory holds no audio files "
                                      f"({', '.join(AUDIO_SUFFIXES)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise AudioInputError(f"{path}: no such file or directory")
    return files


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise AudioInputError(f"--top must be at least 1, got {args.top}")
    model = load_model(args.model)
    files = expand_inputs(args.inputs)
    with_file = len(files) > 1 or any(Path(i).is_dir() for i in args.inputs)
    records = []
    for f in files:
        res = classify_file(model, f, norm=args.norm)
        extra = {"file": str(f)} if with_file else {}
        records.append(make_record(model.labels, res.t_start, res.t_end, res.probs,
                                   res.logits if args.logits else None, **extra))
    sys.stdout.write(render(records, args.format, top_k=args.top))
    return 0

