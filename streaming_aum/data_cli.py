"""``aum data ...``: the data generators. Each generator module registers its own subcommand."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="generate training/evaluation data (TTS keywords, "
                                       "background and room banks, long labelled streams)")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA")
    data_sub.required = True
    from .data import keywords_cli
    keywords_cli.add_parser(data_sub)
    from .data import background_cli
    background_cli.add_parser(data_sub)
    from .data import streams_cli
    streams_cli.add_parser(data_sub)
