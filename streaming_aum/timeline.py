"""A self-contained SVG timeline of a stream: class probabilities, detected events, ground truth.

Layout, top to bottom: title, legend, the probability panel (one line per drawn class over time,
the on-threshold as a dashed line, detected events as shaded spans), the "detected" lane (each
event as a bar labelled with class and score, a black tick at each
:class:`~streaming_aum.evaluation.Detection`'s decision time), an optional ground-truth lane in
the same style, and the time axis (a tick every second, labels every 1/2/5/10/30/60 s so they
never collide). Time runs at ``px_per_s`` pixels per second (default 40: a 2-minute stream is
about 4,900 px wide, scrolled horizontally), reduced only to keep the width under 30,000 px.

Classes named ``_...`` (``_silence_``, ``_unknown_``) are drawn faint and grey (or skipped with
``show_faint=False``). The SVG is built with ``xml.etree`` so every text is escaped. Root
attributes ``data-x0`` and ``data-px-per-s`` give the time -> x mapping
(``x = x0 + t * px_per_s``).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ConfigError, EventInputError
from .events import Event

PALETTE: tuple[str, ...] = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                            "#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31",
                            "#843c39", "#7b4173", "#3182bd", "#e6550d")
FAINT_COLOR = "#9a9a9a"
OTHER_TRUTH_COLOR = "#bdbdbd"

LEFT, RIGHT = 64, 24
TITLE_H, LEGEND_H = 28, 24
PLOT_H = 240
LANE_GAP, LANE_H = 14, 36
AXIS_H = 36
MAX_WIDTH_PX = 30_000
LABEL_STEPS_S = (1, 2, 5, 10, 30, 60, 120, 300, 600)
MIN_LABEL_SPACING_PX = 40


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _is_faint(label: str) -> bool:
    return label.startswith("_")


def class_colors(labels: Sequence[str]) -> dict[str, str]:
    """A colour per label: palette colours for keywords in label order, grey for ``_...``."""
    out, k = {}, 0
    for label in labels:
        if _is_faint(label):
            out[label] = FAINT_COLOR
        else:
            out[label] = PALETTE[k % len(PALETTE)]
            k += 1
    return out


def _check_inputs(times_s: Any, probs: Any, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times_s, dtype=np.float64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    if p.size == 0:
        p = p.reshape(t.shape[0], len(labels))
    if p.shape != (t.shape[0], len(labels)):
        raise EventInputError(f"probs has shape {tuple(p.shape)}: expected ({t.shape[0]}, "
                              f"{len(labels)}), one row per time and one column per label")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise EventInputError("times_s and probs must be finite")
    return t, p


def timeline_svg(times_s: Any, probs: Any, labels: Sequence[str], events: Sequence[Event],
                 truth: Sequence[Mapping[str, Any]] | None = None, title: str = "", *,
                 threshold: float | None = None, duration_s: float | None = None,
                 px_per_s: float = 40.0, show_faint: bool = True) -> str:
    """The SVG document as text. ``times_s`` (T,) seconds of each score row, ``probs`` (T, C)
    in [0, 1] with one column per label, ``events`` detected events (seconds), ``truth`` rows
    with ``onset_s``, ``offset_s``, ``label`` (and ``kind``), ``threshold`` the on threshold."""
    labels = list(labels)
    t, p = _check_inputs(times_s, probs, labels)
    truth = list(truth or [])
    if not (isinstance(px_per_s, (int, float)) and math.isfinite(px_per_s) and px_per_s > 0):
        raise ConfigError(f"px_per_s = {px_per_s!r}: expected a positive number")
    end = max([float(duration_s or 0.0), *(t[-1:].tolist()),
               *(e.offset_s for e in events), *(float(r["offset_s"]) for r in truth), 1.0])
    scale = min(float(px_per_s), (MAX_WIDTH_PX - LEFT - RIGHT) / end)
    plot_w = max(end * scale, 600.0)
    width = LEFT + plot_w + RIGHT
    plot_top = TITLE_H + LEGEND_H + 8
    det_top = plot_top + PLOT_H + LANE_GAP
    lane_top = det_top + LANE_H + LANE_GAP
    axis_top = (lane_top if truth else det_top) + LANE_H + 4
    height = axis_top + AXIS_H

    def X(sec: float) -> float:
        return LEFT + sec * scale

    def Y(prob: float) -> float:
        return plot_top + PLOT_H * (1.0 - prob)

    colors = class_colors(labels)
    drawn = [c for c in labels if show_faint or not _is_faint(c)]

    svg = ET.Element("svg", {
        "xmlns": "http://www.w3.org/2000/svg", "width": _fmt(width), "height": _fmt(height),
        "viewBox": f"0 0 {_fmt(width)} {_fmt(height)}", "font-family": "sans-serif",
        "font-size": "11", "data-x0": str(LEFT), "data-px-per-s": repr(scale)})
    ET.SubElement(svg, "title").text = title or "streaming_aum timeline"
    ET.SubElement(svg, "rect", {"x": "0", "y": "0", "width": _fmt(width),
                                "height": _fmt(height), "fill": "white"})
    if title:
        ET.SubElement(svg, "text", {"x": str(LEFT), "y": "19", "font-size": "15",
                                    "font-weight": "bold", "class": "title"}).text = title

    # Legend ------------------------------------------------------------------------------
    legend = ET.SubElement(svg, "g", {"class": "legend"})
    lx, ly = float(LEFT), TITLE_H + 12
    items = [(c, colors[c], "faint" if _is_faint(c) else "line") for c in drawn]
    if threshold is not None:
        items.append(("threshold", "#444", "dash"))
    items.append(("detected (| = decision)", "#777", "span"))
    if truth:
        items.append(("truth", OTHER_TRUTH_COLOR, "span"))
    for name, color, kind in items:
        if kind == "span":
            ET.SubElement(legend, "rect", {"x": _fmt(lx), "y": _fmt(ly - 6), "width": "18",
                                           "height": "10", "fill": color,
                                           "fill-opacity": "0.35"})
        else:
            attrs = {"x1": _fmt(lx), "y1": _fmt(ly), "x2": _fmt(lx + 18), "y2": _fmt(ly),
                     "stroke": color, "stroke-width": "1" if kind == "faint" else "2.5"}
            if kind in ("dash", "faint"):
                attrs["stroke-dasharray"] = "4 3"
            ET.SubElement(legend, "line", attrs)
        ET.SubElement(legend, "text", {"x": _fmt(lx + 22), "y": _fmt(ly + 4)}).text = name
        lx += 22 + 7 * len(name) + 16

    # Probability panel: frame, grid, events, lines, threshold -------------------------------
    ET.SubElement(svg, "rect", {"x": str(LEFT), "y": _fmt(plot_top), "width": _fmt(plot_w),
                                "height": str(PLOT_H), "fill": "none", "stroke": "#888"})
    grid = ET.SubElement(svg, "g", {"class": "grid", "stroke": "#e4e4e4"})
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        ET.SubElement(grid, "line", {"x1": str(LEFT), "x2": _fmt(LEFT + plot_w),
                                     "y1": _fmt(Y(v)), "y2": _fmt(Y(v))})
        ET.SubElement(svg, "text", {"x": str(LEFT - 6), "y": _fmt(Y(v) + 4),
                                    "text-anchor": "end"}).text = f"{v:g}"
    ET.SubElement(svg, "text", {"x": "14", "y": _fmt(plot_top + PLOT_H / 2),
                                "transform": f"rotate(-90 14 {_fmt(plot_top + PLOT_H / 2)})",
                                "text-anchor": "middle"}).text = "probability"
    step = _label_step(scale)
    for s in range(0, int(math.floor(end / step)) + 1):
        x = X(s * step)
        ET.SubElement(grid, "line", {"x1": _fmt(x), "x2": _fmt(x), "y1": _fmt(plot_top),
                                     "y2": _fmt(plot_top + PLOT_H)})

    ev_group = ET.SubElement(svg, "g", {"class": "events"})
    det_lane = ET.SubElement(svg, "g", {"class": "detected-lane"})
    ET.SubElement(det_lane, "rect", {"x": str(LEFT), "y": _fmt(det_top), "width": _fmt(plot_w),
                                     "height": str(LANE_H), "fill": "#fafafa", "stroke": "#ccc"})
    ET.SubElement(det_lane, "text", {"x": str(LEFT - 6), "y": _fmt(det_top + LANE_H / 2 + 4),
                                     "text-anchor": "end"}).text = "detected"
    for i, e in enumerate(sorted(events, key=lambda e: (e.onset_s, e.label))):
        color = colors.get(e.label, FAINT_COLOR)
        x0, x1 = X(e.onset_s), X(e.offset_s)
        w = _fmt(max(x1 - x0, 1.0))
        ET.SubElement(ev_group, "rect", {
            "class": "event", "data-label": e.label, "x": _fmt(x0), "y": _fmt(plot_top),
            "width": w, "height": str(PLOT_H), "fill": color, "fill-opacity": "0.16"})
        ET.SubElement(det_lane, "rect", {"class": "detected", "data-label": e.label,
                                         "x": _fmt(x0), "y": _fmt(det_top + 3), "width": w,
                                         "height": "12", "fill": color, "fill-opacity": "0.7"})
        decision = getattr(e, "decision_s", None)
        if decision is not None:
            xd = X(float(decision))
            ET.SubElement(det_lane, "line", {"class": "decision", "x1": _fmt(xd),
                                             "x2": _fmt(xd), "y1": _fmt(det_top + 1),
                                             "y2": _fmt(det_top + 17), "stroke": "#000",
                                             "stroke-width": "1.5"})
        ET.SubElement(det_lane, "text", {"x": _fmt(x0), "y": _fmt(det_top + 26 + 8 * (i % 2)),
                                         "font-size": "10", "fill": "#222"}
                      ).text = f"{e.label} {e.score:.2f}"

    lines = ET.SubElement(svg, "g", {"class": "probabilities", "fill": "none"})
    for c in drawn:
        k = labels.index(c)
        if t.size == 0:
            d = ""
        else:
            d = "M" + " L".join(f"{X(a):.1f} {Y(b):.1f}" for a, b in zip(t, p[:, k]))
        attrs = {"class": "prob", "data-label": c, "d": d, "stroke": colors[c],
                 "stroke-width": "1.6", "stroke-linejoin": "round"}
        if _is_faint(c):
            attrs.update({"stroke-width": "1", "stroke-dasharray": "4 3",
                          "stroke-opacity": "0.6"})
        ET.SubElement(lines, "path", attrs)
    if threshold is not None:
        ET.SubElement(svg, "line", {"class": "threshold", "x1": str(LEFT),
                                    "x2": _fmt(LEFT + plot_w), "y1": _fmt(Y(threshold)),
                                    "y2": _fmt(Y(threshold)), "stroke": "#444",
                                    "stroke-dasharray": "6 4"})

    # Ground-truth lane ---------------------------------------------------------------------
    if truth:
        lane = ET.SubElement(svg, "g", {"class": "truth-lane"})
        ET.SubElement(lane, "rect", {"x": str(LEFT), "y": _fmt(lane_top), "width": _fmt(plot_w),
                                     "height": str(LANE_H), "fill": "#fafafa", "stroke": "#ccc"})
        ET.SubElement(lane, "text", {"x": str(LEFT - 6), "y": _fmt(lane_top + LANE_H / 2 + 4),
                                     "text-anchor": "end"}).text = "truth"
        for i, r in enumerate(sorted(truth, key=lambda r: float(r["onset_s"]))):
            label = str(r["label"])
            keyword = r.get("kind", "kw") == "kw" and label in colors and not _is_faint(label)
            color = colors[label] if keyword else OTHER_TRUTH_COLOR
            x0, x1 = X(float(r["onset_s"])), X(float(r["offset_s"]))
            ET.SubElement(lane, "rect", {"class": "truth", "data-label": label, "x": _fmt(x0),
                                         "y": _fmt(lane_top + 3), "width": _fmt(max(x1 - x0, 1)),
                                         "height": "12", "fill": color, "fill-opacity": "0.7"})
            ET.SubElement(lane, "text", {"x": _fmt(x0), "y": _fmt(lane_top + 26 + 8 * (i % 2)),
                                         "font-size": "10",
                                         "fill": "#222" if keyword else "#777"}).text = label

    # Time axis -----------------------------------------------------------------------------
    axis = ET.SubElement(svg, "g", {"class": "axis", "stroke": "#444"})
    ET.SubElement(axis, "line", {"x1": str(LEFT), "x2": _fmt(LEFT + plot_w),
                                 "y1": _fmt(axis_top), "y2": _fmt(axis_top)})
    minor = 1 if scale >= 4 else step
    for s in range(0, int(math.floor(end / minor)) + 1):
        sec = s * minor
        major = sec % step == 0
        ET.SubElement(axis, "line", {"class": "tick", "x1": _fmt(X(sec)), "x2": _fmt(X(sec)),
                                     "y1": _fmt(axis_top), "y2": _fmt(axis_top + (6 if major
                                                                                  else 3))})
        if major:
            ET.SubElement(svg, "text", {"class": "tick-label", "x": _fmt(X(sec)),
                                        "y": _fmt(axis_top + 18), "text-anchor": "middle",
                                        "data-seconds": str(sec)}).text = f"{sec}"
    ET.SubElement(svg, "text", {"x": _fmt(LEFT + plot_w), "y": _fmt(axis_top + 32),
                                "text-anchor": "end"}).text = "time (s)"
    ET.indent(svg, space=" ")
    return ET.tostring(svg, encoding="unicode") + "\n"


def _label_step(scale: float) -> int:
    """The smallest label step (s) whose labels are at least MIN_LABEL_SPACING_PX apart."""
    return next((s for s in LABEL_STEPS_S if s * scale >= MIN_LABEL_SPACING_PX),
                LABEL_STEPS_S[-1])


def render_timeline_svg(times_s: Any, probs: Any, labels: Sequence[str], events: Sequence[Event],
                        truth: Sequence[Mapping[str, Any]] | None = None, title: str = "", *,
                        path: str | Path, threshold: float | None = None,
                        duration_s: float | None = None, px_per_s: float = 40.0,
                        show_faint: bool = True, overwrite: bool = False) -> Path:
    """Write :func:`timeline_svg` to ``path`` (an existing file is refused unless
    ``overwrite``); returns the path."""
    text = timeline_svg(times_s, probs, labels, events, truth, title, threshold=threshold,
                        duration_s=duration_s, px_per_s=px_per_s, show_faint=show_faint)
    path = Path(path)
    try:
        with open(path, "w" if overwrite else "x", encoding="utf-8") as f:
            f.write('<?xml version="1.0" encoding="UTF-8"?>\n')
            f.write(text)
    except FileExistsError:
        raise FileExistsError(f"{path} already exists; refusing to overwrite it (pass "
                              f"overwrite=True or choose another path)") from None
    return path


__all__ = ["class_colors", "render_timeline_svg", "timeline_svg"]
