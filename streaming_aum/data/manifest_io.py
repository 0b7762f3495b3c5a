"""JSON-lines manifests of the data banks (one JSON object per line, keys sorted).

Written atomically: rows go to ``<name>.part`` first, which then replaces the manifest, so an
interrupted writer never leaves a half-written manifest that a later run would trust.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Write ``rows`` to ``path`` as JSON lines, atomically."""
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file (blank lines skipped)."""
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]
