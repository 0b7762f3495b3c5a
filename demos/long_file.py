"""Chunked streaming inference over a long recording, with a timeline of events.

    python demos/long_file.py RECORDING.wav [--out timeline.svg] [--realtime]

The same as `aum demo --audio RECORDING.wav`: the file is pushed through the streaming runtime
in 100 ms chunks, keywords are printed as they are decided, a ground-truth CSV next to the file
(`RECORDING.csv`, `aum data streams` format) is scored when present, and a timeline SVG is
written (never over an existing file). Events as CSV: `aum stream RECORDING.wav --events E.csv`.
"""

import sys

from streaming_aum.cli import main

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    sys.exit(main(["demo", "--audio", sys.argv[1], *sys.argv[2:]]))
