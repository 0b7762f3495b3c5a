"""``aum train CONFIG``: train (or resume, or fine-tune) a model from a TOML config."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train or fine-tune a model from a TOML config (resumable)",
        description="Train from a TOML config (see streaming_aum/training/config.py and "
                    "configs/). Rerunning the same command resumes from <out>/checkpoint.pt. "
                    "Data parallel: torchrun --nproc_per_node N -m streaming_aum.cli train CONFIG.")
    p.add_argument("config", help="the TOML config file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .training.config import load_train_config
    from .training.trainer import train

    cfg = load_train_config(args.config)
    best = train(cfg, progress=not args.no_progress)
    import os
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"best model: {best}")
    return 0
