"""Machine-readable result records and their jsonl / csv / table renderings.

A record is ``{"t_start": s, "t_end": s, "top": label, "scores": {label: probability}}``, plus
``"logits": [...]`` (class order) when asked and ``"file"`` when several files are scored. The
same writer serves ``aum classify`` and (later) ``aum stream``.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Sequence

import torch

FORMATS: tuple[str, ...] = ("jsonl", "csv", "table")


def make_record(labels: Sequence[str], t_start: float, t_end: float, probs: torch.Tensor,
                logits: torch.Tensor | None = None, **extra: Any) -> dict[str, Any]:
    p = probs.detach().double().cpu().tolist()
    rec: dict[str, Any] = dict(extra)
    rec.update({"t_start": round(float(t_start), 6), "t_end": round(float(t_end), 6),
                "top": labels[max(range(len(p)), key=p.__getitem__)],
                "scores": {label: float(v) for label, v in zip(labels, p)}})
    if logits is not None:
        rec["logits"] = [float(v) for v in logits.detach().double().cpu().tolist()]
    return rec


def render(records: Sequence[dict[str, Any]], fmt: str, *, top_k: int = 5) -> str:
    """Records -> text. ``csv`` and ``table`` list the ``top_k`` scores of each record."""
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in records)
    rows = []
    for r in records:
        best = sorted(r["scores"].items(), key=lambda kv: -kv[1])[:top_k]
        rows.append([r.get("file", ""), f"{r['t_start']:.3f}", f"{r['t_end']:.3f}", r["top"],
                     " ".join(f"{k}={v:.4f}" for k, v in best)])
    header = ["file", "t_start", "t_end", "top", f"top{top_k}"]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return buf.getvalue()
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines) + "\n"
